"""``sweep(cfg, sizes)``: a model counted at several image sizes, and how each layer's cost scales.

Per layer, the scaling exponent is the least-squares slope of ``log(cost)`` against
``log(H·W)`` over the sizes: 1 means cost ∝ H·W (every convolution, norm, activation ...),
2 means ∝ (H·W)² (global self-attention's ``q·kᵀ`` and ``attn·v``), 0 a constant cost.  A layer
is flagged *non-linear* when its FLOPs exponent (or, for layers without MACs, its element-wise
exponent) differs from 1 by more than :data:`TOLERANCE`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import units
from .builder import build_model
from .errors import FlopscopeError
from .report import Report, check_img, parse_img, profile
from .rows import RowKey
from .scaling import TOLERANCE, fit_exponent, is_proportional_exponent  # noqa: F401  (re-exported here)

DEFAULT_SIZES = "320,480,640,960,1280"

UNITS = units.pick(
    "img", ("params", "count"), ("macs", "macs_per_batch"), ("flops", "flops_per_batch"),
    ("elementwise_flops", "elementwise_flops_per_batch"), ("model_info_gflops", "model_info_gflops_short"), "model_info_current_gflops", "exponent",
    "elementwise_exponent")


def parse_sizes(text) -> list[tuple[int, int]]:
    """'320,480,640' -> square sizes; an item 'HxW' (e.g. 640x384) is a rectangle."""
    if isinstance(text, (list, tuple)):
        items = list(text)
    else:
        items = [p.strip() for p in str(text).split(",") if p.strip()]
    if not items:
        raise FlopscopeError(f"--img needs one or more sizes such as {DEFAULT_SIZES}, got {text!r}")
    sizes = []
    for it in items:
        if isinstance(it, str) and "x" in it:
            sizes.append(parse_img(it))
        else:
            try:
                v = int(it)
            except (TypeError, ValueError):
                raise FlopscopeError(f"--img: {it!r} is not an image size (use e.g. {DEFAULT_SIZES})") from None
            sizes.append(parse_img(v))
    return sizes


@dataclass
class LayerSweep(RowKey):
    params: int
    flops: list[int]
    elementwise_flops: list[int]
    exponent: float | None
    elementwise_exponent: float | None

    @property
    def nonlinear(self) -> bool:
        e = self.exponent if self.exponent is not None else self.elementwise_exponent
        return not is_proportional_exponent(e)

    def to_dict(self) -> dict:
        return {**self.key_dict(), "params": self.params, "flops": list(self.flops), "elementwise_flops": list(self.elementwise_flops),
                "exponent": self.exponent, "elementwise_exponent": self.elementwise_exponent,
                "nonlinear": self.nonlinear}


@dataclass
class SweepReport:
    model: str
    file: str
    batch: int
    requested: list[tuple[int, int]]
    reports: list[Report]
    layers: list[LayerSweep]
    notes: list[str] = field(default_factory=list)

    @property
    def sizes(self) -> list[tuple[int, int]]:
        return [tuple(r.img) for r in self.reports]

    @property
    def exponent(self) -> float | None:
        return fit_exponent([h * w for h, w in self.sizes], [r.flops for r in self.reports])

    @property
    def elementwise_exponent(self) -> float | None:
        return fit_exponent([h * w for h, w in self.sizes], [r.elementwise_flops for r in self.reports])

    @property
    def nonlinear_layers(self) -> list[int]:
        return [l.index for l in self.layers if l.nonlinear]

    def to_dict(self) -> dict:
        return {
            "model": self.model, "file": self.file, "batch": self.batch,
            "img": [list(s) for s in self.sizes], "requested": [list(s) for s in self.requested],
            "totals": [{"img": list(r.img), "params": r.params, "macs": r.macs, "flops": r.flops,
                        "elementwise_flops": r.elementwise_flops, "model_info_gflops": r.model_info_gflops,
                        "model_info_current_gflops": r.model_info_current_gflops}
                       for r in self.reports],
            "exponent": self.exponent, "elementwise_exponent": self.elementwise_exponent,
            "layers": [l.to_dict() for l in self.layers], "nonlinear_layers": self.nonlinear_layers,
            "tolerance": TOLERANCE, "units": UNITS, "notes": list(self.notes),
            "fused": bool(self.reports and self.reports[0].fused),
        }


def sweep(cfg, sizes=DEFAULT_SIZES, batch: int = 1, nc: int | None = None, fuse: bool = False) -> SweepReport:
    """Count ``cfg`` at every size (built once, on the meta device) and fit per-layer exponents."""
    requested = parse_sizes(sizes)
    model = build_model(cfg, nc=nc, fuse=fuse)
    notes: list[str] = []
    seen, order = set(), []
    for hw in requested:
        eff = check_img(model, hw, [])
        if eff != tuple(hw):
            notes.append(f"{hw[0]}x{hw[1]} is not a multiple of the max stride; counted at {eff[0]}x{eff[1]}")
        if eff in seen:
            notes.append(f"{eff[0]}x{eff[1]} requested twice (after rounding); counted once")
            continue
        seen.add(eff)
        order.append(eff)
    order.sort(key=lambda s: s[0] * s[1])
    reports = [profile(model, img=hw, batch=batch) for hw in order]
    for r in reports:
        for n in r.notes:
            if n not in notes and "not a multiple of the max stride" not in n:
                notes.append(n)
    if len(reports) < 2:
        notes.append("one image size only: scaling exponents need two or more")
    areas = [h * w for h, w in order]
    layers = []
    for k, rec in enumerate(reports[0].layers):
        flops = [r.layers[k].flops for r in reports]
        ew = [r.layers[k].elementwise_flops for r in reports]
        layers.append(LayerSweep(rec.index, rec.f, rec.n, rec.module, rec.args, rec.params, flops, ew,
                                 fit_exponent(areas, flops), fit_exponent(areas, ew)))
    return SweepReport(reports[0].model, model.config.file, batch, requested, reports, layers, notes)


# -- rendering ----------------------------------------------------------------------------------


def _e(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def summary_lines(s: SweepReport) -> list[str]:
    sizes = ", ".join(f"{h}x{w}" if h != w else str(h) for h, w in s.sizes)
    lines = [f"{s.model}: {s.reports[0].params:,} params; GFLOPs at {sizes}: "
             + ", ".join(f"{r.gflops:.3f}" for r in s.reports),
             f"whole model: FLOPs ∝ (H·W)^{_e(s.exponent)}, element-wise FLOPs ∝ (H·W)^{_e(s.elementwise_exponent)}"]
    nl = [l for l in s.layers if l.nonlinear]
    if nl:
        lines.append("≁ layers whose cost is not ∝ H·W (|exponent - 1| > "
                     f"{TOLERANCE}): " + ", ".join(
                         f"{l.index} {l.module} ({_e(l.exponent if l.exponent is not None else l.elementwise_exponent)})"
                         for l in nl))
    else:
        lines.append(f"every layer's cost is ∝ H·W (|exponent - 1| <= {TOLERANCE})")
    lines.extend(s.notes)
    return lines


def table(s: SweepReport):
    from rich.table import Table

    from .render import args_str

    t = Table(title=f"{s.model}: GFLOPs by image size, batch {s.batch}", header_style="bold")
    t.add_column("idx", justify="right")
    t.add_column("module")
    t.add_column("args")
    for h, w in s.sizes:
        t.add_column(f"{h}" if h == w else f"{h}x{w}", justify="right")
    t.add_column("exponent", justify="right")
    t.add_column("elem. exp.", justify="right")
    t.add_column("", justify="center")
    for l in s.layers:
        t.add_row(str(l.index), l.module, args_str(l.args, 32), *(f"{v / 1e9:.3f}" for v in l.flops), _e(l.exponent),
                  _e(l.elementwise_exponent), "≁" if l.nonlinear else "", style="yellow" if l.nonlinear else None)
    t.add_section()
    t.add_row("", "total", "", *(f"{r.gflops:.3f}" for r in s.reports), _e(s.exponent), _e(s.elementwise_exponent),
              "", style="bold")
    return t


def print_sweep(s: SweepReport, console=None) -> None:
    import sys

    from rich.console import Console

    if console is None:
        console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(table(s))
    for line in summary_lines(s):
        console.print(line, highlight=False, markup=False)


def to_csv(s: SweepReport) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["idx", "module", *(f"gflops@{h}x{w_}" for h, w_ in s.sizes), "exponent", "elementwise_exponent",
                "nonlinear"])
    for l in s.layers:
        w.writerow([l.index, l.module, *(v / 1e9 for v in l.flops), l.exponent, l.elementwise_exponent, l.nonlinear])
    w.writerow(["total", "", *(r.gflops for r in s.reports), s.exponent, s.elementwise_exponent, ""])
    return buf.getvalue()
