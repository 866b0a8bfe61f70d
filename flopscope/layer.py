"""One registered module on its own: ``build_layer`` and ``profile_layer``.

``build_layer("C3", 128, 256)`` builds the module exactly as a YAML row ``[-1, 1, C3, [256]]``
would after a layer with 128 output channels: through the module's own channel rule, with a
synthetic :class:`~flopscope.channels.Row` (``ch=[c1]``, ``from=-1``, ``n=1``, width 1.0).

``profile_layer`` counts it with the cost formulas at one input size, names each term, and says
how each term and the total grow with the input's H·W.  The scaling classes are found by
*fitting* the counted values at several sizes (multiples of the requested size, and odd sizes
that are not multiples of 2, 3, 5 or 7), never by reading the module type:

* ``constant`` -- the same at every size (an FC after global pooling);
* ``proportional`` -- exactly ``a·H·W``;
* ``quadratic`` -- exactly ``a·(H·W)²`` (global attention: ``q·kᵀ``, ``attn·v``), or that of a padded
  size (attention over regions of a map padded to a multiple of the window count);
* ``step`` -- proportional to a rounded size (``⌈H/2⌉·⌈W/2⌉`` for a stride-2 conv, windows padded
  to a multiple of 7 ...), or present only at sizes that need padding;
* ``other`` -- anything else (the fit that holds, if a simple one does, is given as detail).

JSON schema of :meth:`LayerReport.to_dict` (later features add keys, never rename)::

    {"module", "c1", "c2", "n", "args", "constructor_args", "channel_rule", "hw": [H, W], "batch",
     "in_shape", "out_shape", "params", "macs", "flops", "elementwise_flops", "macs_by_kind",
     "terms": [{"name", "kind", "op", "value", "unit", "share", "scaling", "scaling_detail", "values"}],
     "sizes": [[H, W], ...], "scaling": {"macs": {...}, "elementwise_flops": {...}},
     "summary", "notes", "units"}
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from fractions import Fraction

import torch
import torch.nn as nn

from .channels import Row, concat, conv_like, conv_like_repeat, detect
from .cost import MAC_KINDS
from .errors import ConfigError, FlopscopeError
from .registry import ModuleSpec, lookup
from .tracer import ShapeError, Tracer

CONV_RULES = ("conv", "conv+n", "c3k2", "c2fcib", "sppf")  # rules whose first YAML argument is the output channels
LIST_INPUT_RULES = ("concat", "detect", "segment", "ul-detect", "ul-segment", "v10detect")  # take a list of inputs
MAX_CHANNELS = 1_000_000
MAX_HW = 100_000

UNITS = {
    "params": "count",
    "macs": "multiply-accumulates (conv + linear + matmul); bias adds not counted",
    "flops": "2 x macs",
    "elementwise_flops": "FLOPs of norms, activations, pooling, upsampling, softmax, adds/muls (per-element table)",
    "terms.value": "MACs for kinds conv/linear/matmul, FLOPs for kind elementwise (see 'unit')",
    "terms.share": "fraction of the layer's MACs (MAC terms) or of its element-wise FLOPs (element-wise terms)",
    "terms.values": "the term's value at each of 'sizes' (input H, W), batch as given",
}


# -- building ---------------------------------------------------------------------------------
@dataclass
class _LayerRow(Row):
    """A synthetic YAML row; errors name the module and the --args instead of a file/layer."""

    module: str = ""

    def error(self, message: str, field: str = "args") -> ConfigError:
        return ConfigError(f"{self.module} (args {self.args!r}): {message}")


def _layer_dialect(name: str) -> str:
    """The name space a module name is looked up in: ``--dialect`` if given, else the common (YOLOv5) one, else the
    one dialect that has the name (``C3k2`` -> ultralytics)."""
    from .config import _READING
    from .registry import COMMON, SPACES, load_zoo

    load_zoo()
    chosen = _READING.get().get("dialect")
    if chosen:
        return chosen
    if name in SPACES[COMMON]:
        return COMMON
    owners = [d for d, sp in SPACES.items() if name in sp]
    return owners[0] if len(owners) == 1 else COMMON


def is_conv_rule(rule) -> bool:
    return rule is conv_like or rule is conv_like_repeat or rule.name in CONV_RULES


def takes_list_input(rule) -> bool:
    return rule is concat or rule is detect or rule.name in LIST_INPUT_RULES


def _check_int(v, what: str, limit: int = MAX_CHANNELS) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise FlopscopeError(f"{what} must be a positive integer, got {v!r}")
    if v > limit:
        raise FlopscopeError(f"{what} = {v} is not plausible (max {limit})")
    return v


@dataclass
class BuiltLayer:
    module: nn.Module
    spec: ModuleSpec
    yaml_args: list  # the row's args as the rule received them
    constructor_args: list
    c2: object  # int, or a list for multi-output modules
    notes: list = field(default_factory=list)


def _build(name: str, c1: int, c2=None, args=None, device="meta", n: int = 1) -> BuiltLayer:
    from .builder import _construct, skip_init

    if not isinstance(name, str) or not name:
        raise FlopscopeError(f"module name must be a non-empty string, got {name!r}")
    dialect = _layer_dialect(name)
    spec = lookup(name, dialect)
    c1 = _check_int(c1, "c1 (input channels)")
    if c2 is not None:
        c2 = _check_int(c2, "c2 (output channels)")
    n = _check_int(n, "n (repeats)", 1000)
    if args is None:
        args = []
    elif isinstance(args, tuple):
        args = list(args)
    elif not isinstance(args, list):
        raise FlopscopeError(f"args must be a list (the YAML row's args), got {args!r}")
    rule = spec.channels
    notes: list[str] = []
    conv = is_conv_rule(rule)
    yaml_args = [c1 if c2 is None else c2, *args] if conv else list(args)
    from .config import _READING

    row = _LayerRow(0, -1, n, list(yaml_args), [c1], 1.0, 80, 3 * 85 if dialect == "yolov5" else 0, None,
                    dialect=dialect, scale=_READING.get().get("scale") or "", module=name)
    try:
        ctor_args, c2_out, n_seq = rule(row)
    except FlopscopeError as e:
        if args:
            raise
        raise FlopscopeError(f"{e} (give the YAML row's args: args=[...], or --args '[...]' on the command "
                             f"line)") from None
    except Exception as e:  # noqa: BLE001 - a rule that cannot use these args
        raise FlopscopeError(f"{name}: channel rule {rule.name!r} cannot use args {yaml_args!r}: "
                             f"{type(e).__name__}: {e}"[:300]) from None
    want = c1 if (conv and c2 is None) else c2
    if want is not None and c2_out != want:
        if conv:
            notes.append(f"c2 {want} -> {c2_out} by the channel rule (make_divisible(c2, 8))")
        elif rule.name == "same":
            raise FlopscopeError(f"{name} keeps the channel count (channel rule 'same'): c2 must equal c1 ({c1}) "
                                 f"or be omitted, got {c2}")
        else:
            raise FlopscopeError(f"{name}'s output channels follow its channel rule {rule.name!r} "
                                 f"({rule.description}): {c2_out} here, not {c2}; omit c2")
    dev = torch.device(device)
    init_ctx = skip_init() if dev.type == "meta" else contextlib.nullcontext()
    try:
        with torch.device(dev), init_ctx:
            m = _construct(spec, ctor_args, n_seq)
    except FlopscopeError:
        raise
    except Exception as e:  # noqa: BLE001 - any constructor failure is a user error here
        raise FlopscopeError(f"{name}{_short(ctor_args)} failed to build: {type(e).__name__}: {e}"[:400]) from None
    m.eval()
    if getattr(m, "flopscope_built_on", None) == "cpu" and dev.type == "meta":
        notes.append("built on CPU (its constructor cannot run on the meta device)")
    return BuiltLayer(m, spec, yaml_args, list(ctor_args), c2_out, notes)


def build_layer(name: str, c1: int, c2: int | None = None, args: list | None = None, device="meta",
                n: int = 1) -> nn.Module:
    """Build one registered module from its YAML name, through its own channel rule.

    ``c1`` is the input channel count (``ch[from]``).  For conv-like rules the YAML row's
    ``args`` are ``[c2, *args]`` (``c2`` defaults to ``c1``; ``args`` are the ones after the
    channel count, e.g. ``[3, 2]`` for a 3x3 stride-2 ``Conv``); for other rules ``args`` are
    the row's args as written and ``c2``, if given, must be what the rule gives (``c1`` for
    same-channel modules).  ``n`` is the row's repeat count.  On ``meta`` no weight is allocated.
    """
    return _build(name, c1, c2, args, device, n).module


def _short(args) -> str:
    s = "(" + ", ".join(map(repr, args)) + ")"
    return s if len(s) < 120 else s[:117] + "...)"


# -- counting ---------------------------------------------------------------------------------
def _trace(m: nn.Module, x, list_input: bool):
    """Trace ``m`` on shape ``x``; modules taking a list of inputs get ``[x]``."""
    first, second = ([x], x) if list_input else (x, [x])
    try:
        t = Tracer()
        return t(m, first), t, first
    except ShapeError:
        raise
    except (FlopscopeError, TypeError, ValueError, IndexError, AttributeError) as e:
        try:
            t = Tracer()
            return t(m, second), t, second
        except Exception:  # noqa: BLE001 - report the first failure
            raise e from None


def _group(terms) -> dict:
    """(name, kind, op) -> summed value, in first-seen order (a child called 3 times is one term)."""
    out: dict = {}
    for t in terms:
        key = (t.name, t.kind, t.op)
        out[key] = out.get(key, 0) + t.value
    return out


def _odd_sizes(v: int, count: int = 3) -> list[int]:
    """Sizes above ``v`` that are not multiples of 2, 3, 5 or 7 (so no padding/rounding rule hides)."""
    out, x = [], v + 1
    while len(out) < count:
        if all(x % p for p in (2, 3, 5, 7)):
            out.append(x)
        x += 1
    return out


def probe_sizes(h: int, w: int) -> list[tuple[int, int]]:
    """The sizes a layer is evaluated at: ``(h, w) x {1, 2, 3, 4}``, then three odd, non-square sizes."""
    hs, ws = _odd_sizes(h), _odd_sizes(w)
    return [(h * k, w * k) for k in (1, 2, 3, 4)] + [(hs[0], ws[1]), (hs[1], ws[2]), (hs[2], ws[0])]


N_MULTIPLES = 4  # the first N_MULTIPLES probe sizes are multiples of the requested size


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


# -- the report -------------------------------------------------------------------------------
@dataclass
class LayerTerm:
    name: str
    kind: str
    op: str
    value: int
    share: float | None
    scaling: Scaling
    values: list[int]

    @property
    def unit(self) -> str:
        return "FLOPs" if self.kind == "elementwise" else "MACs"

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "op": self.op, "value": self.value, "unit": self.unit,
                "share": self.share, "scaling": self.scaling.cls, "scaling_detail": self.scaling.detail,
                "values": list(self.values)}


@dataclass
class LayerReport:
    module: str
    c1: int
    c2: object
    n: int
    args: list  # YAML args as given
    constructor_args: list
    channel_rule: str
    hw: tuple
    batch: int
    in_shape: object
    out_shape: object
    params: int
    terms: list[LayerTerm]
    sizes: list[tuple[int, int]]
    scaling: dict  # 'macs' / 'elementwise_flops' -> Scaling
    notes: list[str] = field(default_factory=list)

    @property
    def macs_by_kind(self) -> dict:
        return {k: sum(t.value for t in self.terms if t.kind == k) for k in MAC_KINDS}

    @property
    def macs(self) -> int:
        return sum(t.value for t in self.terms if t.kind != "elementwise")

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def elementwise_flops(self) -> int:
        return sum(t.value for t in self.terms if t.kind == "elementwise")

    def summary(self) -> str:
        """One sentence on how the layer's cost grows with the input's H·W."""
        return scaling_sentence(self)

    def to_dict(self) -> dict:
        from .profile import jsonable

        return {
            "module": self.module, "c1": self.c1, "c2": jsonable(self.c2), "n": self.n, "args": jsonable(self.args),
            "constructor_args": jsonable(self.constructor_args), "channel_rule": self.channel_rule,
            "hw": list(self.hw), "batch": self.batch, "in_shape": jsonable(self.in_shape),
            "out_shape": jsonable(self.out_shape), "params": self.params, "macs": self.macs, "flops": self.flops,
            "elementwise_flops": self.elementwise_flops, "macs_by_kind": self.macs_by_kind,
            "terms": [t.to_dict() for t in self.terms], "sizes": [list(s) for s in self.sizes],
            "scaling": {k: v.to_dict() for k, v in self.scaling.items()}, "summary": self.summary(),
            "notes": list(self.notes), "units": UNITS,
        }


def parse_hw(hw) -> tuple[int, int]:
    """80 -> (80, 80); '80,60', '80x60' or (80, 60) -> (80, 60) as (H, W)."""
    if isinstance(hw, str):
        parts = [p.strip() for p in hw.lower().replace("x", ",").split(",")]
        try:
            vals = [int(p) for p in parts]
        except ValueError:
            raise FlopscopeError(f"--hw must be an integer or H,W integers, got {hw!r}") from None
    elif isinstance(hw, int) and not isinstance(hw, bool):
        vals = [hw]
    elif isinstance(hw, (tuple, list)):
        vals = list(hw)
    else:
        raise FlopscopeError(f"--hw must be an integer or H,W integers, got {hw!r}")
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in vals):
        raise FlopscopeError(f"--hw must be one or two positive integers, got {hw!r}")
    if max(vals) > MAX_HW:
        raise FlopscopeError(f"--hw {hw} is not a plausible feature-map size (max {MAX_HW})")
    return vals[0], vals[1]


def profile_layer(name: str, c1: int, c2: int | None = None, hw=(80, 80), batch: int = 1, args: list | None = None,
                  n: int = 1) -> LayerReport:
    """Count one registered module on a ``(batch, c1, H, W)`` input: params, output shape, named terms,
    and how each term and the total scale with H·W (fitted at several sizes, see module docs)."""
    h, w = parse_hw(hw)
    batch = _check_int(batch, "batch", 1_000_000)
    built = _build(name, c1, c2, args, "meta", n)
    m, spec = built.module, built.spec
    list_input = takes_list_input(spec.channels)
    notes = list(built.notes)
    sizes = probe_sizes(h, w)
    evaluated: list[tuple[int, int]] = []
    grouped: list[dict] = []
    base = None
    for k, (hh, ww) in enumerate(sizes):
        try:
            out, t, x_used = _trace(m, (batch, c1, hh, ww), list_input)
        except FlopscopeError as e:
            if k == 0:
                raise FlopscopeError(f"{name} at {hh}x{ww}: {e}") from None
            notes.append(f"not evaluated at {hh}x{ww}: {str(e)[:160]}")
            continue
        except Exception as e:  # noqa: BLE001 - a formula that breaks on this shape
            if k == 0:
                raise FlopscopeError(f"{name} at {hh}x{ww}: {type(e).__name__}: {e}"[:300]) from None
            notes.append(f"not evaluated at {hh}x{ww}: {type(e).__name__}: {str(e)[:160]}")
            continue
        if k == 0:
            base = (x_used, out, t)
        for note in t.notes:
            if note not in notes:
                notes.append(note)
        evaluated.append((hh, ww))
        grouped.append(_group(t.cost.terms))
    x_used, out, t0 = base
    keys = list(grouped[0])
    for g in grouped[1:]:
        for key in g:
            if key not in keys:
                keys.append(key)  # a term that appears only at some sizes (padding)
    total_macs = sum(v for (nm, kind, op), v in grouped[0].items() if kind != "elementwise")
    total_ew = sum(v for (nm, kind, op), v in grouped[0].items() if kind == "elementwise")
    terms = []
    for key in keys:
        nm, kind, op = key
        vals = [g.get(key, 0) for g in grouped]
        denom = total_ew if kind == "elementwise" else total_macs
        terms.append(LayerTerm(nm or name, kind, op, vals[0], vals[0] / denom if denom else None,
                               classify(evaluated, vals), vals))
    by_class = {}
    for kinds, label in (((*MAC_KINDS,), "macs"), (("elementwise",), "elementwise_flops")):
        vals = [sum(v for (nm, kind, op), v in g.items() if kind in kinds) for g in grouped]
        classes = {t.scaling.cls for t in terms if t.kind in kinds and t.value}
        by_class[label] = classify_total(evaluated, vals, classes)
    params = sum(p.numel() for p in m.parameters())
    ctor = [a for a in built.constructor_args]
    return LayerReport(name, c1, built.c2, n, built.yaml_args, ctor, spec.channels.name, (h, w), batch, x_used, out,
                       params, terms, evaluated, by_class, notes)


_CLASS_WORDS = {
    "constant": "constant (independent of H and W)",
    "proportional": "proportional to H·W",
    "affine": "a constant part plus a part proportional to H·W",
    "quadratic": "quadratic in H·W",
    "step": "proportional to H·W up to padding / rounding steps",
    "other": "not a simple function of H·W",
}


def _pct(x: float) -> str:
    p = 100 * x
    return f"{p:.0f}%" if p >= 10 else f"{p:.2g}%"


def _describe(s: Scaling, hw) -> str:
    extra = []
    if s.cls != "constant" and s.detail:
        extra.append(s.detail)
    if s.ratio_2x is not None and s.cls != "constant":
        extra.append(f"×{s.ratio_2x:.2f} when H and W double")
    c = s.coefficients or {}
    area = hw[0] * hw[1]
    if s.cls == "quadratic" and c.get("(H·W)²"):
        q = c["(H·W)²"] * area ** 2
        tot = sum(v * {"1": 1, "H·W": area, "(H·W)²": area ** 2}[k] for k, v in c.items())
        if tot:
            extra.append(f"the (H·W)² part is {_pct(q / tot)} at {hw[0]}x{hw[1]}")
        if c.get("H·W", 0) > 0:
            side = math.sqrt(c["H·W"] / c["(H·W)²"])
            extra.append(f"it overtakes the H·W part above about {side:.0f}x{side:.0f}")
    elif s.cls == "affine" and c.get("1"):
        tot = c["1"] + c.get("H·W", 0) * area
        if tot:
            extra.append(f"the constant part is {_pct(c['1'] / tot)} at {hw[0]}x{hw[1]}")
    words = _CLASS_WORDS.get(s.cls, s.cls)
    return words + (f" ({'; '.join(extra)})" if extra else "")


def scaling_sentence(r: LayerReport) -> str:
    parts = []
    for label, key in (("MACs", "macs"), ("element-wise FLOPs", "elementwise_flops")):
        s = r.scaling[key]
        total = r.macs if key == "macs" else r.elementwise_flops
        if not total and s.cls == "constant":
            continue
        parts.append(f"{label}: {_describe(s, r.hw)}")
    if not parts:
        return "no counted work at any size"
    return "; ".join(parts) + "."
