"""``compare_table(cfgs)``: one row per config for papers -- Params (M), GFLOPs, GFLOPs as YOLOv5
prints them, and (``latency=True``) measured latency and FPS from :mod:`flopscope.bench`."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from . import units
from .builder import DetectionModel, build_model
from .errors import FlopscopeError
from .report import profile

UNITS = units.pick(
    ("params", "count"), "params_m", "gflops", "elementwise_gflops", "yolov5_gflops",
    ("latency_ms", "table.latency_ms"), "fps", "model_info_current_gflops")


@dataclass
class TableRow:
    model: str
    file: str
    img: tuple
    params: int
    flops: int
    elementwise_flops: int
    yolov5_gflops: float | None
    latency_ms: float | None = None
    fps: float | None = None
    latency: dict | None = None  # bench details: device, dtype, batch, warmup, iters, p10, p90
    report: object = field(default=None, repr=False, compare=False)  # the profile (HTML page); not in JSON
    fused: bool = False
    model_info_current_gflops: float | None = None  # what current Ultralytics / YOLOv5 print (thop 2.x)

    def to_dict(self) -> dict:
        return {"model": self.model, "file": self.file, "img": list(self.img), "params": self.params,
                "params_m": self.params / 1e6, "gflops": self.flops / 1e9,
                "elementwise_gflops": self.elementwise_flops / 1e9, "yolov5_gflops": self.yolov5_gflops,
                "latency_ms": self.latency_ms, "fps": self.fps, "latency": self.latency, "fused": self.fused,
                "model_info_current_gflops": self.model_info_current_gflops}


@dataclass
class CompareTable:
    rows: list[TableRow]
    img: tuple
    latency_requested: bool
    notes: list[str] = field(default_factory=list)

    @property
    def measured(self) -> bool:
        return any(r.latency_ms is not None for r in self.rows)

    def to_dict(self) -> dict:
        return {"img": list(self.img), "rows": [r.to_dict() for r in self.rows],
                "latency_measured": self.measured, "units": UNITS, "notes": list(self.notes),
                "fused": bool(self.rows) and all(r.fused for r in self.rows)}


def compare_table(cfgs: list, img=640, nc: int | None = None, latency: bool = False, device: str = "auto",
                  dtype: str = "fp32", batch: int = 1, warmup: int | None = None, iters: int | None = None,
                  progress=None, fuse: bool = False) -> CompareTable:
    if not cfgs:
        raise FlopscopeError("table needs one or more configs")
    rows, notes = [], []
    bench = None
    if latency:
        try:
            from . import bench as bench  # noqa: PLW0127
        except ImportError:
            notes.append("latency not measured: flopscope.bench is not available in this installation")
            bench = None
    first_img = None
    for cfg in cfgs:
        model = cfg if isinstance(cfg, DetectionModel) else build_model(cfg, nc=nc)  # once per config
        rep = profile(model, img=img, batch=1, fuse=fuse)
        first_img = first_img or tuple(rep.img)
        for n in rep.notes:
            msg = f"{rep.model}: {n}"
            if msg not in notes:
                notes.append(msg)
        row = TableRow(rep.model, _file(cfg), tuple(rep.img), rep.params, rep.flops, rep.elementwise_flops,
                       rep.model_info_gflops, report=rep, fused=rep.fused,
                       model_info_current_gflops=rep.model_info_current_gflops)
        if bench is not None:
            if progress:
                progress(f"measuring {rep.model} ...")
            res = bench.run_bench(model, img=img, batch=[batch], device=device, dtype=dtype, warmup=warmup,
                                  iters=iters, fuse=fuse)
            run = res["runs"][0]
            lat = run["latency_ms"]
            row.latency_ms = lat["median"]
            row.fps = batch * 1e3 / lat["median"] if lat["median"] > 0 else None
            row.latency = {"device": res["device"], "device_label": res["environment"]["label"], "dtype": res["dtype"],
                           "batch": batch, "warmup": res["warmup"], "iters": res["iters"], "p10_ms": lat["p10"],
                           "p90_ms": lat["p90"], "torch": res["environment"]["torch"]}
        rows.append(row)
    if len({r.img for r in rows}) > 1:
        notes.append("configs were counted at different image sizes (each rounded up to its max stride)")
    return CompareTable(rows, first_img, latency, notes)


def _file(cfg) -> str:
    from . import config as cfgmod

    if isinstance(cfg, (str, bytes)) or hasattr(cfg, "__fspath__"):
        try:
            return cfgmod.resolve(cfg)[1]
        except FlopscopeError:
            return str(cfg)
    return "<dict>"


# -- rendering ----------------------------------------------------------------------------------

HEAD = ["Model", "Params (M)", "GFLOPs", "GFLOPs (YOLOv5)"]
HEAD_LAT = ["Latency (ms)", "FPS"]


def _g(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def show_current(t: CompareTable) -> bool:
    """The current model.info figure gets its own column when it differs from the legacy one on some row."""
    return any(_g(r.model_info_current_gflops) != _g(r.yolov5_gflops) for r in t.rows)


def _head(t: CompareTable) -> list[str]:
    return HEAD + ([units.LABELS["table_current"]] if show_current(t) else []) + \
        (HEAD_LAT if t.latency_requested else [])


def _cells(r: TableRow, with_latency: bool, current: bool = False) -> list[str]:
    out = [r.model, f"{r.params / 1e6:.2f}", f"{r.flops / 1e9:.1f}", _g(r.yolov5_gflops)]
    if current:
        out.append(_g(r.model_info_current_gflops))
    if with_latency:
        out += ["-" if r.latency_ms is None else f"{r.latency_ms:.2f}", "-" if r.fps is None else f"{r.fps:.1f}"]
    return out


def footnotes(t: CompareTable) -> list[str]:
    h, w = t.img
    lines = [f"GFLOPs: 2 x MACs per image at {h}x{w} (flopscope, exact); GFLOPs (YOLOv5): what YOLOv5's model_info "
             f"prints for the same model and size (Ultralytics-dialect configs: their own model.info())."]
    if show_current(t):
        lines.append(f"{units.LABELS['table_current']}: what current Ultralytics / YOLOv5 print (model_info from "
                     f"ultralytics: ultralytics-thop 2.x, stride-aware get_flops).")
    lat = next((r.latency for r in t.rows if r.latency), None)
    if lat:
        lines.append(f"Latency: median of {lat['iters']} forwards after {lat['warmup']} warm-up, batch {lat['batch']}, "
                     f"{lat['dtype']}, {lat['device_label']}, torch {lat['torch']}; FPS = batch x 1000 / latency.")
    return lines + t.notes


def to_markdown(t: CompareTable) -> str:
    from .render import md_escape

    lat = t.latency_requested
    head = _head(t)
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for r in t.rows:
        out.append("| " + " | ".join(md_escape(c) for c in _cells(r, lat, show_current(t))) + " |")
    out.append("")
    out.extend(md_escape(n) for n in footnotes(t))
    return "\n".join(out) + "\n"


CSV_COLUMNS = ["model", "file", "img", "params", "params_m", "gflops", "elementwise_gflops", "yolov5_gflops",
               "latency_ms", "fps", "model_info_current_gflops"]


def to_csv(t: CompareTable) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in t.rows:
        d = r.to_dict()
        d["img"] = f"{r.img[0]}x{r.img[1]}"
        w.writerow({k: ("" if d[k] is None else d[k]) for k in CSV_COLUMNS})
    return buf.getvalue()


def print_table(t: CompareTable, console=None) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console() if sys.stdout.isatty() else Console(width=200)
    lat = t.latency_requested
    tab = Table(header_style="bold")
    for i, h in enumerate(_head(t)):
        tab.add_column(h, justify="left" if i == 0 else "right")
    for r in t.rows:
        tab.add_row(*_cells(r, lat, show_current(t)))
    console.print(tab)
    for n in footnotes(t):
        console.print(n, highlight=False, markup=False)
