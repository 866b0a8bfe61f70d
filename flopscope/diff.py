"""``diff_models(A, B)``: two models' layers aligned, with what changed, and the cost deltas.

Alignment.  When both configs have the same number of rows and every row pair has the same
``from`` and the same module name or the same args, rows are paired by index.  Otherwise rows are
aligned as sequences (difflib) on ``(module, args)`` as written in the YAML; the unmatched
stretches are aligned again on ``(args, n)`` and then on the module name, so ``C3 [256]`` pairs
with ``C3_iRMBseed [256]`` and an inserted ``iRMB []`` row shows as *added*.

Status of a pair.  *changed* when anything about the **built** layer differs -- its module name,
YAML args or repeats, its structure (class tree and parameter shapes of the built module), its
params, its cost or its output shape -- otherwise *same*.  The structure check is what makes
seed 004's surprise visible: its C3 rows read like YOLOv5's, but the module built from them is
not (a pasted ``Bottleneck`` with a 3x3 cv1 and an iRMB).  Unpaired rows are *added* (only in B)
or *removed* (only in A).  A row whose input now comes from a different (e.g. an added) layer is
``rewired``; that alone does not make it changed.

Deltas are B - A of each model's own :func:`~flopscope.report.profile` (added rows count all of
B's cost, removed rows minus all of A's), so row deltas sum to the totals' delta.
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field

from . import units
from .builder import DetectionModel, build_model
from .report import Report, jsonable, profile

UNITS = units.pick(
    ("params", "count"), ("macs", "macs_per_batch"), ("flops", "flops_per_batch"),
    ("elementwise_flops", "elementwise_flops_per_batch_listed"), ("model_info_gflops", "model_info_gflops_short"),
    "delta", "pct", ("model_info_current_gflops", "model_info_current_gflops_short"))

STATUSES = ("same", "changed", "added", "removed")


@dataclass
class Side:
    model: DetectionModel
    report: Report
    rows: list  # config rows (YAML as written)
    signatures: list  # per layer: (class tree, parameter shapes)


@dataclass
class DiffRow:
    status: str
    a: int | None  # layer index in A
    b: int | None  # layer index in B
    reasons: list[str] = field(default_factory=list)
    detail: str = ""
    rewired: bool = False


@dataclass
class DiffReport:
    a: Side
    b: Side
    img: tuple
    batch: int
    alignment: str
    rows: list[DiffRow]
    notes: list[str] = field(default_factory=list)

    # -- per row --------------------------------------------------------------------------------
    def layer(self, side: str, idx: int | None):
        if idx is None:
            return None
        return (self.a if side == "a" else self.b).report.layers[idx]

    def row_delta(self, r: DiffRow) -> dict:
        la, lb = self.layer("a", r.a), self.layer("b", r.b)
        out = {}
        for key in ("params", "macs", "flops", "elementwise_flops"):
            va = getattr(la, key) if la is not None else 0
            vb = getattr(lb, key) if lb is not None else 0
            out[key] = vb - va
        return out

    @property
    def counts(self) -> dict:
        return {s: sum(r.status == s for r in self.rows) for s in STATUSES}

    def totals(self) -> dict:
        ra, rb = self.a.report, self.b.report
        out = {}
        for key in ("params", "macs", "flops", "elementwise_flops"):
            va, vb = getattr(ra, key), getattr(rb, key)
            out[key] = {"a": va, "b": vb, "delta": vb - va, "pct": _pct(va, vb)}
        for key in ("model_info_gflops", "model_info_current_gflops"):
            ma, mb = getattr(ra, key, None), getattr(rb, key, None)
            out[key] = {"a": ma, "b": mb, "delta": None if ma is None or mb is None else mb - ma,
                        "pct": None if ma is None or mb is None else _pct(ma, mb)}
        return out

    def to_dict(self) -> dict:
        rows = []
        for r in self.rows:
            rows.append({
                "status": r.status, "a_index": r.a, "b_index": r.b,
                "a": self._side_row(self.a, r.a), "b": self._side_row(self.b, r.b),
                "delta": self.row_delta(r), "out_shape_changed": self._shape_changed(r),
                "rewired": r.rewired, "reasons": list(r.reasons), "detail": r.detail,
            })
        return {
            "a": _side_head(self.a), "b": _side_head(self.b), "img": list(self.img), "batch": self.batch,
            "alignment": self.alignment, "counts": self.counts, "rows": rows, "totals": self.totals(),
            "units": UNITS, "notes": list(self.notes), "fused": bool(self.a.report.fused and self.b.report.fused),
        }

    def _shape_changed(self, r: DiffRow) -> bool | None:
        la, lb = self.layer("a", r.a), self.layer("b", r.b)
        if la is None or lb is None:
            return None
        return jsonable(la.out_shape) != jsonable(lb.out_shape)

    @staticmethod
    def _side_row(side: Side, idx: int | None):
        if idx is None:
            return None
        rec = side.report.layers[idx]
        return {"index": rec.index, "from": rec.f, "n": rec.n, "module": rec.module,
                "yaml_args": jsonable(side.rows[idx].args), "args": jsonable(rec.args),
                "out_shape": jsonable(rec.out_shape), "params": rec.params, "macs": rec.macs, "flops": rec.flops,
                "elementwise_flops": rec.elementwise_flops, "counted_by": rec.counted_by}


def _side_head(side: Side) -> dict:
    return {"model": side.report.model, "file": side.model.config.file, "layers": len(side.report.layers)}


def _pct(a, b):
    return None if not a else 100.0 * (b - a) / a


# -- structure ----------------------------------------------------------------------------------


def signature(module) -> tuple[tuple, tuple]:
    """What a built layer is made of: (path, class) for every sub-module, (path, shape) for every
    parameter.  Classes are told apart by module + qualified name (a plugin's ``Bottleneck`` is
    not the zoo's)."""
    tree = tuple((name, f"{type(m).__module__}.{type(m).__qualname__}") for name, m in module.named_modules())
    params = tuple((name, tuple(p.shape)) for name, p in module.named_parameters())
    return tree, params


def _cls_label(qual: str) -> str:
    return qual.rsplit(".", 1)[-1]


def _shape(s) -> str:
    return "×".join(map(str, s))


def structure_detail(sa, sb, limit: int = 3) -> str:
    """A short account of how two signatures differ: sub-modules of another class, the first
    parameter of another shape, sub-modules only in B (+) or only in A (−)."""
    (ta, pa), (tb, pb) = sa, sb
    da, db = dict(ta), dict(tb)
    parts = []
    swapped = [(p, da[p], c) for p, c in tb if p in da and da[p] != c]
    inner = [x for x in swapped if x[0]]
    for p, ca, cb in _group([x for x in (inner or swapped) if x[0] in _tops([y[0] for y in (inner or swapped)])]):
        same = _cls_label(ca) == _cls_label(cb)
        parts.append(f"{p}: {_cls_label(ca)} → {_cls_label(cb)}" + (" (same name, another class)" if same else ""))
    qa = dict(pa)
    for path, shape in pb:
        if path in qa and qa[path] != shape:
            parts.append(f"{path} {_shape(qa[path])} → {_shape(shape)}")
            break
    for sign, paths, d in (("+", [p for p, _ in tb if p not in da], db), ("−", [p for p, _ in ta if p not in db], da)):
        for p, c, _ in _group([(q, d[q], "") for q in _tops(paths)]):
            parts.append(f"{sign} {_cls_label(c)} at {p}")
    return "; ".join(parts[:limit])


def _group(items: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Merge entries with the same (class, class) change: ('m.0, m.1, m.2', a, b)."""
    groups: dict[tuple, list[str]] = {}
    for p, a, b in items:
        groups.setdefault((a, b), []).append(p or "layer")
    out = []
    for (a, b), paths in groups.items():
        out.append((", ".join(paths[:3]) + (f" … ({len(paths)})" if len(paths) > 3 else ""), a, b))
    return out


def _tops(paths: list[str]) -> list[str]:
    """The outermost of a set of module paths, in order."""
    out = []
    for p in paths:
        if not any(p.startswith(q + ".") for q in out):
            out.append(p)
    return out


# -- alignment ----------------------------------------------------------------------------------


def _key_module_args(row):
    return row.module, json.dumps(jsonable(row.args))


def _key_args(row):
    return json.dumps(jsonable(row.args)), row.n


def _key_module(row):
    return row.module


_LEVELS = (_key_module_args, _key_args, _key_module)


def align(rows_a: list, rows_b: list) -> tuple[str, list[tuple[int | None, int | None]]]:
    """Pairs (i, j), (i, None) removed, (None, j) added, in row order."""
    if len(rows_a) == len(rows_b) and all(
            ra.f == rb.f and (ra.module == rb.module or _key_args(ra) == _key_args(rb)) for ra, rb in zip(rows_a, rows_b)):
        return "index", [(i, i) for i in range(len(rows_a))]
    return "sequence", _align(rows_a, rows_b, list(range(len(rows_a))), list(range(len(rows_b))), 0)


def _align(rows_a, rows_b, ia: list[int], ib: list[int], level: int) -> list:
    if level >= len(_LEVELS):
        return [(i, None) for i in ia] + [(None, j) for j in ib]
    key = _LEVELS[level]
    ka, kb = [key(rows_a[i]) for i in ia], [key(rows_b[j]) for j in ib]
    sm = difflib.SequenceMatcher(None, ka, kb, autojunk=False)
    out = []
    for op, a0, a1, b0, b1 in sm.get_opcodes():
        if op == "equal":
            out.extend(zip(ia[a0:a1], ib[b0:b1]))
        elif op == "delete":
            out.extend((i, None) for i in ia[a0:a1])
        elif op == "insert":
            out.extend((None, j) for j in ib[b0:b1])
        else:
            out.extend(_align(rows_a, rows_b, ia[a0:a1], ib[b0:b1], level + 1))
    return out


# -- the diff -----------------------------------------------------------------------------------


def _side(cfg, img, batch, nc, fuse=False) -> Side:
    model = cfg if isinstance(cfg, DetectionModel) else build_model(cfg, nc=nc, fuse=fuse)
    from .fuse import fused_copy, is_fused

    if fuse and not is_fused(model):

        model = fused_copy(model)
    report = profile(model, img=img, batch=batch)
    return Side(model, report, list(model.config.rows), [signature(m) for m in model.model])


def _absolute(f, i: int) -> list:
    """Absolute source rows of a 'from' field; 'input' for the image."""
    out = []
    for x in f if isinstance(f, list) else [f]:
        x = x if x >= 0 else i + x
        out.append("input" if x < 0 else x)
    return out


def diff_models(cfg_a, cfg_b, img=640, batch: int = 1, nc: int | None = None, fuse: bool = False) -> DiffReport:
    """Profile A and B at the same size and align their layers (see the module docstring)."""
    a, b = _side(cfg_a, img, batch, nc, fuse), _side(cfg_b, img, batch, nc, fuse)
    notes = []
    if tuple(a.report.img) != tuple(b.report.img):
        notes.append(f"A is counted at {a.report.img[0]}x{a.report.img[1]}, B at {b.report.img[0]}x{b.report.img[1]} "
                     f"(image sizes rounded up to each model's max stride)")
    method, pairs = align(a.rows, b.rows)
    a2b = {i: j for i, j in pairs if i is not None and j is not None}
    rows = []
    for i, j in pairs:
        if i is None:
            rows.append(DiffRow("added", None, j))
            continue
        if j is None:
            rows.append(DiffRow("removed", i, None))
            continue
        rows.append(_compare(a, b, i, j, a2b))
    return DiffReport(a, b, tuple(b.report.img), batch, method, rows, notes)


def _compare(a: Side, b: Side, i: int, j: int, a2b: dict) -> DiffRow:
    la, lb = a.report.layers[i], b.report.layers[j]
    ra, rb = a.rows[i], b.rows[j]
    reasons = []
    if ra.module != rb.module:
        reasons.append("module")
    if jsonable(ra.args) != jsonable(rb.args):
        reasons.append("args")
    if la.n != lb.n:
        reasons.append("n")
    structure = a.signatures[i] != b.signatures[j]
    if structure:
        reasons.append("structure")
    if jsonable(la.args) != jsonable(lb.args) and "args" not in reasons:
        reasons.append("constructor args")  # e.g. width_multiple or input channels
    if la.params != lb.params:
        reasons.append("params")
    if la.macs_by_kind != lb.macs_by_kind or la.elementwise_flops != lb.elementwise_flops:
        reasons.append("cost")
    if jsonable(la.out_shape) != jsonable(lb.out_shape):
        reasons.append("out_shape")
    mapped = [x if x == "input" else a2b.get(x) for x in _absolute(ra.f, i)]
    rewired = mapped != _absolute(rb.f, j)
    details = []
    if structure:
        d = structure_detail(a.signatures[i], b.signatures[j])
        if ra.module == rb.module and "args" not in reasons and "n" not in reasons:
            details.append("built differently from the same YAML row" + (f": {d}" if d else ""))
        elif d:
            details.append(d)
    if rewired:
        srcs = _absolute(rb.f, j)
        added = [s for s in srcs if s != "input" and s not in a2b.values()]
        details.append(f"input from {rb.f}" + (f" (added row{'s' if len(added) > 1 else ''} "
                                               f"{', '.join(map(str, added))})" if added else ""))
    return DiffRow("changed" if reasons else "same", i, j, reasons, "; ".join(details), rewired)


# -- rendering ----------------------------------------------------------------------------------

_STYLE = {"same": "dim", "changed": "yellow", "added": "green", "removed": "red"}
_MARK = {"same": "=", "changed": "~", "added": "+", "removed": "−"}


def _signed(v: float, fmt: str) -> str:
    if v == 0:
        return "0"
    return ("+" if v > 0 else "−") + format(abs(v), fmt)


def _pair(va, vb) -> str:
    return va if va == vb else f"{va} → {vb}"


def summary_lines(d: DiffReport) -> list[str]:
    t = d.totals()
    c = d.counts
    how = ("rows paired by index (same row structure)" if d.alignment == "index"
           else "rows aligned as sequences on (module, args)")
    lines = [
        f"A = {d.a.report.model} ({d.a.model.config.file}), B = {d.b.report.model} ({d.b.model.config.file}) "
        f"@ {d.img[0]}x{d.img[1]}, batch {d.batch}; {how}",
        f"{len(d.a.rows)} → {len(d.b.rows)} rows: {c['same']} same, {c['changed']} changed, {c['added']} added, "
        f"{c['removed']} removed",
    ]

    def line(label, key, scale, fmt):
        x = t[key]
        if x["a"] is None or x["b"] is None:
            return
        pct = "" if x["pct"] is None else f", {_signed(x['pct'], '.2f')}%"
        va, vb, dv = (x["a"], x["b"], x["delta"]) if scale == 1 else (x["a"] / scale, x["b"] / scale,
                                                                        x["delta"] / scale)
        lines.append(f"{label}: {format(va, fmt)} → {format(vb, fmt)}  (Δ {_signed(dv, fmt)}{pct})")

    line("params", "params", 1, ",")
    line("GFLOPs", "flops", 1e9, ".3f")
    line("element-wise GFLOPs", "elementwise_flops", 1e9, ".3f")
    line("YOLOv5 model_info GFLOPs", "model_info_gflops", 1, ".1f")
    legacy, current = t["model_info_gflops"], t["model_info_current_gflops"]
    if any(legacy[k] is None or current[k] is None or f"{legacy[k]:.1f}" != f"{current[k]:.1f}" for k in "ab"):
        line("current model.info GFLOPs (ultralytics-thop 2.x)", "model_info_current_gflops", 1, ".1f")
    same_yaml = [r for r in d.rows if r.status == "changed" and r.detail.startswith("built differently")]
    if same_yaml:
        lines.append(f"{len(same_yaml)} row(s) read the same in both YAMLs but build differently: "
                     f"{', '.join(str(r.b) for r in same_yaml)}")
    lines.extend(d.notes + d.a.report.notes + d.b.report.notes)
    return lines


def table(d: DiffReport, show_same: bool = True):
    from rich.table import Table

    from .render import args_str, shape_str

    t = Table(title=f"diff {d.a.report.model} → {d.b.report.model} @ {d.img[0]}x{d.img[1]}", header_style="bold")
    for col, just in (("A", "right"), ("B", "right"), ("", "center"), ("status", "left"), ("module", "left"),
                      ("args", "left"), ("output", "left"), ("params Δ", "right"), ("GFLOPs Δ", "right"),
                      ("what differs", "left")):
        t.add_column(col, justify=just, no_wrap=col not in ("what differs", "args"))
    for r in d.rows:
        if r.status == "same" and not show_same:
            continue
        la, lb = d.layer("a", r.a), d.layer("b", r.b)
        ya = args_str(d.a.rows[r.a].args, 30) if r.a is not None else None
        yb = args_str(d.b.rows[r.b].args, 30) if r.b is not None else None
        sa = shape_str(la.out_shape) if la is not None else None
        sb = shape_str(lb.out_shape) if lb is not None else None
        module = _pair(la.module if la else lb.module, lb.module if lb else la.module)
        delta = d.row_delta(r)
        what = ", ".join(x for x in r.reasons if x not in ("params", "cost"))
        if r.detail:
            what = f"{what}: {r.detail}" if what else r.detail
        t.add_row("" if r.a is None else str(r.a), "" if r.b is None else str(r.b), _MARK[r.status], r.status, module,
                  _pair(ya if ya is not None else yb, yb if yb is not None else ya),
                  _pair(sa if sa is not None else sb, sb if sb is not None else sa),
                  _signed(delta["params"], ","), _signed(delta["flops"] / 1e9, ".3f"), what,
                  style=_STYLE[r.status])
    t.add_section()
    tot = d.totals()
    t.add_row("", "", "", "total", "", "", "", _signed(tot["params"]["delta"], ","),
              _signed(tot["flops"]["delta"] / 1e9, ".3f"), "", style="bold")
    return t


def print_diff(d: DiffReport, console=None, show_same: bool = True) -> None:
    import sys

    from rich.console import Console

    if console is None:
        console = Console() if sys.stdout.isatty() else Console(width=220)
    console.print(table(d, show_same))
    for line in summary_lines(d):
        console.print(line, highlight=False, markup=False)
