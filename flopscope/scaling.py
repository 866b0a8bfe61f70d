"""Whether, and how, a cost scales with the input's H·W: the one place that decides it.

* :func:`proportional_when_doubled` -- exact: the cost at (2H, 2W) is 4x the cost at (H, W) (the ``≁`` mark of
  ``flopscope model``; ``linear_in_hw`` in its JSON);
* :func:`fit_exponent` / :func:`is_proportional_exponent` -- the log-log slope over a sweep of sizes
  (``flopscope sweep``: 1 = ∝ H·W, non-linear beyond :data:`TOLERANCE`);
* :func:`classify` / :func:`classify_total` -- exact fits of a term's values at several sizes to
  constant / proportional / quadratic / step / other (``flopscope layer``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

N_MULTIPLES = 4  # the first N_MULTIPLES probe sizes (flopscope.layer.probe_sizes) are multiples of the requested size
TOLERANCE = 0.02  # a fitted exponent within this of 1 counts as proportional to H·W


def proportional_when_doubled(base: int, doubled: int) -> bool:
    """Exactly proportional to H·W between (H, W) and (2H, 2W): the cost quadruples."""
    return doubled == 4 * base


def is_proportional_exponent(exponent: float | None, tolerance: float = TOLERANCE) -> bool:
    """A fitted exponent (:func:`fit_exponent`) that says ∝ H·W (within ``tolerance``); None counts as proportional."""
    return exponent is None or abs(exponent - 1) <= tolerance


def fit_exponent(areas: list[float], costs: list[float]) -> float | None:
    """Least-squares slope of log(cost) on log(area); None with < 2 distinct areas or a zero cost."""
    pts = [(math.log(a), math.log(c)) for a, c in zip(areas, costs) if c > 0]
    if len(pts) != len(costs) or len({x for x, _ in pts}) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    sxy = sum((x - mx) * (y - my) for x, y in pts)
    return sxy / sxx


# -- fitting ----------------------------------------------------------------------------------
def _close(pred, y) -> bool:
    return abs(pred - y) <= Fraction(1, 2) + abs(y) * Fraction(1, 10 ** 12)


def fit(rows: list[list[int]], ys: list[int]) -> list[Fraction] | None:
    """Exact least-squares fit ``ys ≈ rows @ coef`` (Fractions); ``None`` unless it holds at every point."""
    k = len(rows[0])
    if len(rows) < k:
        return None
    m = [[Fraction(sum(r[i] * r[j] for r in rows)) for j in range(k)]
         + [Fraction(sum(r[i] * y for r, y in zip(rows, ys)))] for i in range(k)]
    for col in range(k):
        piv = next((r for r in range(col, k) if m[r][col] != 0), None)
        if piv is None:
            return None
        m[col], m[piv] = m[piv], m[col]
        for r in range(k):
            if r != col and m[r][col] != 0:
                f = m[r][col] / m[col][col]
                m[r] = [a - f * b for a, b in zip(m[r], m[col])]
    coef = [m[i][k] / m[i][i] for i in range(k)]
    if all(_close(sum(c * v for c, v in zip(coef, r)), y) for r, y in zip(rows, ys)):
        return coef
    return None


_BASES = {  # name -> (function of (h, w), label)
    "1": (lambda h, w: 1, "1"),
    "HW": (lambda h, w: h * w, "H·W"),
    "HW2": (lambda h, w: (h * w) ** 2, "(H·W)²"),
    "H": (lambda h, w: h, "H"),
    "W": (lambda h, w: w, "W"),
    "H+W": (lambda h, w: h + w, "(H+W)"),
    "HW(H+W)": (lambda h, w: h * w * (h + w), "H·W·(H+W)"),
}

# (bases, class) tried in order; the first exact fit wins
_TERM_FITS = [
    (("HW",), "proportional"),
    (("HW2",), "quadratic"),
    (("HW", "HW2"), "quadratic"),
    (("1", "HW2"), "quadratic"),
    (("1", "HW", "HW2"), "quadratic"),
    (("1", "HW"), "other"),
    (("H",), "other"),
    (("W",), "other"),
    (("H+W",), "other"),
    (("1", "H+W"), "other"),
    (("HW", "H+W"), "other"),
    (("HW(H+W)",), "other"),
]


def _num(x: Fraction) -> str:
    v = float(x)
    if v == int(v) and abs(v) < 1e7:
        return f"{int(v)}"
    return f"{v:.4g}"


def _formula(bases, coef) -> str:
    parts = []
    for b, c in zip(bases, coef):
        if c == 0:
            continue
        label = _BASES[b][1]
        parts.append(_num(c) if b == "1" else f"{_num(c)}·{label}")
    return " + ".join(parts).replace("+ -", "- ") or "0"


def _try(bases, pts, vals):
    rows = [[_BASES[b][0](h, w) for b in bases] for h, w in pts]
    return fit(rows, vals)


def _rounded(v: int, s: int, o: int) -> int:
    return (v + o) // s


def _round_label(s: int, o: int) -> tuple[str, str]:
    if o == 0:
        return f"⌊H/{s}⌋", f"⌊W/{s}⌋"
    if o == s - 1:
        return f"⌈H/{s}⌉", f"⌈W/{s}⌉"
    sign = "+" if o > 0 else "-"
    return f"⌊(H{sign}{abs(o)})/{s}⌋", f"⌊(W{sign}{abs(o)})/{s}⌋"


def _step_fit(pts, vals):
    """``v = a·R(H)·R(W)`` or ``a·(R(H)·R(W))²`` with ``R(x) = ⌊(x+o)/s⌋`` (a stride, a padded window)."""
    smallest = min(min(p) for p in pts)
    for s in range(2, min(64, smallest // 2) + 1):
        for o in dict.fromkeys((s - 1, 0, 1, -1, 2, -2)):  # ceil, floor, then small conv offsets
            areas = [_rounded(h, s, o) * _rounded(w, s, o) for h, w in pts]
            if min(areas) <= 0:
                continue
            for power, suffix in ((1, ""), (2, "²")):
                coef = fit([[a ** power] for a in areas], vals)
                if coef is not None and coef[0] != 0:
                    rh, rw = _round_label(s, o)
                    body = f"{rh}·{rw}" if power == 1 else f"({rh}·{rw})²"
                    return power, f"∝ {body}"
    return None


@dataclass
class Scaling:
    cls: str  # constant | proportional | quadratic | step | other (| affine, for totals)
    detail: str
    ratio_2x: float | None = None  # value(2H, 2W) / value(H, W)
    coefficients: dict | None = None  # basis label ('1', 'H·W', '(H·W)²') -> coefficient, for exact fits

    def to_dict(self) -> dict:
        return {"class": self.cls, "detail": self.detail, "ratio_2x": self.ratio_2x,
                "coefficients": None if self.coefficients is None else dict(self.coefficients)}


def _ratio(pts, vals) -> float | None:
    """value at twice the requested size over the value at the requested size (the first two probes)."""
    if len(pts) >= 2 and pts[1] == (2 * pts[0][0], 2 * pts[0][1]) and vals[0]:
        return vals[1] / vals[0]
    return None


def _step_scaling(power: int, detail: str, ratio) -> Scaling:
    """A rounded-size fit: proportional to it is a step; its square (padded attention) stays quadratic."""
    return Scaling("step", detail, ratio) if power == 1 else Scaling("quadratic", f"{detail} (padding steps)", ratio)


def classify(pts: list[tuple[int, int]], vals: list[int], n_multiples: int = N_MULTIPLES) -> Scaling:
    """Scaling class of one term from its values at the probe sizes (fitted, exact)."""
    ratio = _ratio(pts, vals)
    if len(set(vals)) == 1:
        return Scaling("constant", "constant" if vals[0] else "0 at every size", ratio)
    if any(v == 0 for v in vals):
        zero = [f"{h}x{w}" for (h, w), v in zip(pts, vals) if v == 0]
        return Scaling("step", f"zero at {', '.join(zero[:3])}{'…' if len(zero) > 3 else ''}; non-zero at other "
                               f"sizes (padding / rounding)", ratio)
    if len(pts) < 3:
        return Scaling("other", "too few sizes to fit", ratio)
    for bases, cls in _TERM_FITS:
        coef = _try(bases, pts, vals)
        if coef is not None and all(c != 0 for c in coef):
            detail = f"∝ {_BASES[bases[0]][1]}" if len(bases) == 1 else f"= {_formula(bases, coef)}"
            return Scaling(cls, detail, ratio)
    step = _step_fit(pts, vals)
    if step:  # a rounded / padded size; padded global attention stays quadratic
        power, detail = step
        return _step_scaling(power, detail, ratio)
    mult = list(range(min(n_multiples, len(pts))))
    if len(mult) >= 3:
        for bases, what, cls in ((("HW",), "H·W", "step"), (("HW2",), "(H·W)²", "quadratic")):
            if _try(bases, [pts[i] for i in mult], [vals[i] for i in mult]) is not None:
                return Scaling(cls, f"∝ {what} at multiples of the requested size; differs at odd sizes "
                                    f"(padding / rounding)", ratio)
    return Scaling("other", "no simple fit in H, W", ratio)


def classify_total(pts, vals, term_classes, n_multiples: int = N_MULTIPLES) -> Scaling:
    """Scaling of a sum of terms: constant / proportional / affine / quadratic (exact fits), else step / other."""
    ratio = _ratio(pts, vals)
    if not any(vals):
        return Scaling("constant", "0 at every size", ratio)
    if len(set(vals)) == 1:
        return Scaling("constant", f"= {_num(Fraction(vals[0]))} at every size", ratio)
    for bases, cls in ((("HW",), "proportional"), (("1", "HW"), "affine"), (("HW", "HW2"), "quadratic"),
                       (("HW2",), "quadratic"), (("1", "HW", "HW2"), "quadratic")):
        coef = _try(bases, pts, vals) if len(pts) >= 3 else None
        if coef is not None and all(c != 0 for c in coef):
            return Scaling(cls, f"= {_formula(bases, coef)}", ratio,
                           {_BASES[b][1]: float(c) for b, c in zip(bases, coef)})
    step = _step_fit(pts, vals) if len(pts) >= 3 else None
    if step:
        power, detail = step
        return _step_scaling(power, detail, ratio)
    # exact at multiples of the requested size only: padding / rounding steps at other sizes
    mult = list(range(min(n_multiples, len(pts))))
    if len(mult) >= 3:
        for bases in (("HW",), ("1", "HW"), ("HW", "HW2"), ("HW2",), ("1", "HW", "HW2")):
            coef = _try(bases, [pts[i] for i in mult], [vals[i] for i in mult])
            if coef is not None and all(c != 0 for c in coef):
                return Scaling("quadratic" if "HW2" in bases else "step",
                               f"= {_formula(bases, coef)} at multiples of the requested size; steps at other "
                               f"sizes (padding / rounding)", ratio,
                               {_BASES[b][1]: float(c) for b, c in zip(bases, coef)})
    if "step" in term_classes:
        return Scaling("step", "steps at sizes that are not multiples of the requested size (padding / rounding)",
                       ratio)
    return Scaling("other", "not a simple function of H·W", ratio)
