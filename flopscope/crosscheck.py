"""Cross-check: our per-layer MACs against other counters on one real forward each, every difference explained
by the counters' rules -- or shown as unexplained.  The orchestrator: the counters themselves (how each runs, its
rule tables) are objects in :mod:`flopscope.counters`; applying rules is :mod:`flopscope.counters.explain`; the
table is drawn by :mod:`flopscope.check_render`.

All columns are MACs: fvcore, thop and ptflops report MACs (with their own extras); FlopCounterMode reports
FLOPs = 2 x MACs and is halved.  For each layer and counter the rules predict what the counter reports from our
op-labelled terms (each with the module whose formula recorded it, from
:class:`~flopscope.counters.owners.OwnerTracer`); when the counter's number equals the prediction (to the MAC),
the difference to ours is the sum of the rules whose terms differ, listed as reason codes with their MACs.
A counter that is not installed, or fails on the model, fills its column with the reason; the others still run.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from . import units
from .devices import resolve_device
from .check_render import ProgressBar, cell_reasons, fmt_signed, print_check  # noqa: F401  (re-exported)
from .counters import COUNTERS, Counter, CounterFailed, CounterRun, parse_counters, quiet  # noqa: F401
from .counters.explain import THRESHOLD_PCT, TOLERANCE, Cell, explain  # noqa: F401
from .counters.owners import OwnerTracer, trace_layers  # noqa: F401
from .counters.rules import Table, ours, owner_chain, predict
from .counters.thop import THOP01, thop_installed, thop_major  # noqa: F401
from .errors import FlopscopeError

DEFAULT_COUNTERS = "fvcore,thop,ptflops,fcm"
UNITS = units.DESCRIPTIONS["check.columns"]


def counter_version(name: str) -> str | None:
    return COUNTERS[name].version()


# ------------------------------------------------------------------------------------------------
# results


@dataclass
class Column:
    """One counter's run: status 'ok' | 'missing' | 'failed'."""

    name: str
    status: str
    version: str | None = None
    reason: str | None = None
    run: CounterRun | None = None
    seconds: float = 0.0

    @property
    def counter(self) -> Counter:
        return COUNTERS[self.name]

    @property
    def table(self) -> Table:
        """This column's rule table: the counter's, for its installed version (thop 0.1.x or 2.x)."""
        return self.counter.table(self.version)

    @property
    def rules(self) -> str:
        """Key of the rule table (JSON ``rules``): ``thop`` (0.1.x) or ``thop2`` for thop."""
        return self.table.key

    @property
    def label(self) -> str:
        """The counter's label; for a counter whose rules depend on its version, that table's (``thop 2.x``)."""
        return self.table.label if self.counter.select is not None else self.counter.label

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def short(self) -> str:
        return "not installed" if self.status == "missing" else "failed"

    def to_dict(self) -> dict:
        d = {"label": self.label, "status": self.status, "version": self.version, "reason": self.reason,
             "seconds": round(self.seconds, 3), "rules": self.rules}
        if self.run is not None:
            d.update({"total": self.run.total, "per_layer_sum": sum(self.run.per_layer),
                      "notes": list(self.run.notes)})
            if "unsupported_ops" in self.run.extra:
                d["unsupported_ops"] = dict(self.run.extra["unsupported_ops"])
        return d


@dataclass
class LayerCheck:
    index: int
    f: object
    module: str
    ours: int
    cells: dict  # counter -> Cell
    model_info: dict | None = None
    elementwise: dict | None = None  # ours vs the op-level counter's element-wise FLOPs (when it ran)


@dataclass
class CheckResult:
    model: str
    img: tuple
    device: str
    counters: list[str]
    columns: dict  # name -> Column
    layers: list[LayerCheck]
    report: object
    model_info: dict | None
    notes: list[str] = field(default_factory=list)

    @property
    def ours_total(self) -> int:
        return sum(lc.ours for lc in self.layers)

    def total_cell(self, name: str) -> Cell | None:
        col = self.columns[name]
        if not col.ok:
            return None
        cells = [lc.cells[name] for lc in self.layers]
        reasons: dict[str, float] = {}
        for c in cells:
            for k, v in c.reasons:
                reasons[k] = reasons.get(k, 0) + v
        unpred = [f"layer {lc.index}: {u}" for lc in self.layers for u in lc.cells[name].unpredictable]
        pred = None if unpred else sum(c.predicted for c in cells)
        total = col.run.total
        outside = total - sum(col.run.per_layer)
        if abs(outside) > TOLERANCE:
            unpred.append(f"{outside:+,.0f} MACs reported outside the YAML layers")
        cell = Cell(total, self.ours_total, pred, sorted(reasons.items(), key=lambda kv: -abs(kv[1])), unpred)
        return cell

    def unexplained_layers(self, name: str) -> list[int]:
        if not self.columns[name].ok:
            return []
        return [lc.index for lc in self.layers if not lc.cells[name].explained]

    def to_dict(self) -> dict:
        totals = {}
        for name in self.counters:
            cell = self.total_cell(name)
            totals[name] = (cell.to_dict() | {"unexplained_layers": self.unexplained_layers(name)}) if cell else \
                {"status": self.columns[name].status, "reason": self.columns[name].reason}
        layers = []
        for lc in self.layers:
            row = {"index": lc.index, "from": lc.f, "module": lc.module, "ours": lc.ours, "counters": {}}
            for name in self.counters:
                col = self.columns[name]
                row["counters"][name] = lc.cells[name].to_dict() if col.ok else \
                    {"status": col.status, "reason": col.reason}
            if lc.model_info is not None:
                row["model_info"] = lc.model_info
            if lc.elementwise is not None:
                row["elementwise"] = lc.elementwise
            layers.append(row)
        return {"model": self.model, "img": list(self.img), "batch": 1, "device": self.device, "units": UNITS,
                "threshold_pct": THRESHOLD_PCT, "counters": {n: self.columns[n].to_dict() for n in self.counters},
                "layers": layers, "totals": {"ours": self.ours_total, "counters": totals},
                "model_info": self.model_info, "notes": list(self.notes),
                "rules": "docs/crosscheck.md; flopscope.rules", "fused": bool(getattr(self.report, "fused", False))}


# ------------------------------------------------------------------------------------------------
# the check


def _resolve_device(device: str) -> str:
    return resolve_device(device, default="cpu")  # the one --device parser (flopscope.devices)


def crosscheck(cfg, img=640, counters=None, device: str = "cpu", nc: int | None = None,
               progress: Callable[[str, int, int], None] | None = None, fuse: bool = False) -> CheckResult:
    """Build ``cfg`` once with real weights and run every counter on the same input (batch 1)."""
    from .builder import DetectionModel, build_model
    from .memory import check_fits
    from .report import profile

    names = parse_counters(counters)
    device = _resolve_device(device)
    step = progress or (lambda *a: None)
    steps = len(names) + 1
    step("counting (analytic)", 0, steps)
    meta = cfg if isinstance(cfg, DetectionModel) else build_model(cfg, nc=nc)
    report = profile(meta, img=img, batch=1, fuse=fuse)
    check_fits(report, device)
    step("building the model with real weights", 0, steps)
    model = build_model(meta.config, device=device) if not isinstance(cfg, DetectionModel) or \
        next(cfg.parameters(), torch.empty(0, device="meta")).device.type == "meta" else cfg
    model.eval()
    from .fuse import fused_copy, is_fused

    if report.fused and not is_fused(model):

        model = fused_copy(model)  # the real fold of the real weights
    h, w = report.img
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn((1, model.ch, h, w), generator=gen).to(device)
    probe = report.model_info_probe

    columns: dict[str, Column] = {}
    for k, name in enumerate(names):
        step(f"running {COUNTERS[name].label}", k + 1, steps)
        columns[name] = _run_counter(name, model, x, probe)

    notes = list(report.notes)
    traced = _traced(model, report, (1, model.ch, h, w), notes)
    layers = []
    hidden = {name: _hidden_modules(model, columns[name]) for name in names}
    observed = {name: _observed(model, columns[name]) for name in names}
    for i, (rec, (terms, chains)) in enumerate(zip(report.layers, traced)):
        cells = {}
        for name in names:
            col = columns[name]
            if col.ok:
                cells[name] = explain(col.table, terms, chains, col.run.per_layer[i], hidden[name], observed[name])
        layers.append(LayerCheck(rec.index, rec.f, rec.module, rec.macs, cells))
    for name in names:
        if columns[name].ok:
            notes.extend(columns[name].run.notes)
    _elementwise(columns.get("opcount"), report, layers, notes)
    mi = _model_info(model, report, layers, traced, columns.get("thop"))
    step("done", steps, steps)
    return CheckResult(model.name, tuple(report.img), device, names, columns, layers, report, mi, notes)


def _hidden_modules(model, col: Column) -> dict:
    """Modules a counter never saw run: fvcore's uncalled modules (JIT tracing drops work whose output is
    unused, e.g. an auxiliary head in eval)."""
    if not col.ok or not col.run.extra.get("uncalled_modules"):
        return {}
    out = {}
    for name in col.run.extra["uncalled_modules"]:
        try:
            mod = model.get_submodule(name)
        except AttributeError:
            continue
        out[id(mod)] = f"{col.label}: {name} absent from the JIT trace (output unused), counted 0"
    return out


def _elementwise(col, report, layers, notes) -> None:
    """Element-wise FLOPs: ours (formulas) beside the op-level counter's, per layer.  Both price work from
    ``ELEMENTWISE_COST``, but per op as dispatched vs per formula term: a difference is listed as such (reason
    ``op-level: element-wise ops dispatched differ from the formula's terms``), never explained away."""
    if col is None or not col.ok or "elementwise_per_layer" not in col.run.extra:
        return
    code = "op-level: element-wise ops dispatched differ from the formula's terms"
    differ = []
    for lc, rec, ew in zip(layers, report.layers, col.run.extra["elementwise_per_layer"]):
        delta = ew - rec.elementwise_flops
        lc.elementwise = {"ours": rec.elementwise_flops, "op_level": ew, "delta": delta,
                          "reason": code if abs(delta) > TOLERANCE else None}
        if abs(delta) > TOLERANCE:
            differ.append(f"{lc.index} ({delta:+,.0f})")
    if differ:
        notes.append(f"element-wise FLOPs, op-level vs formulas, differ on layers {', '.join(differ)}: {code}")


def _observed(model, col: Column) -> dict:
    """A counter's observed facts by module path -> by id of our model's module (what its rules look up)."""
    out = {}
    if col.ok:
        for name, facts in col.run.observed.items():
            try:
                out[id(model.get_submodule(name))] = facts
            except AttributeError:
                continue
    return out


def _run_counter(name: str, model, x, probe) -> Column:
    c = COUNTERS[name]
    version = c.version()
    t0 = time.perf_counter()
    try:
        with quiet():
            run = c.run(model, x, probe=probe)
    except ImportError as e:
        pkg = c.package
        if (getattr(e, "name", None) or "").split(".")[0] == pkg or version is None:
            return Column(name, "missing", version, f"not installed ({e}); pip install {pkg}",
                          seconds=time.perf_counter() - t0)
        return Column(name, "failed", version, f"failed: cannot import {pkg}: {type(e).__name__}: {e}"[:300],
                      seconds=time.perf_counter() - t0)
    except CounterFailed as e:
        return Column(name, "failed", version, f"failed: {e}", seconds=time.perf_counter() - t0)
    except Exception as e:  # noqa: BLE001 - a counter crashing on a module must not stop the others
        msg = str(e).replace("\n", " ")
        return Column(name, "failed", version, f"failed: {type(e).__name__}: {msg}"[:300],
                      seconds=time.perf_counter() - t0)
    return Column(name, "ok", version, None, run, time.perf_counter() - t0)


def _thop_pred(terms, owners) -> float:
    """thop 0.1.x's MACs predicted by its rules (unpredictable terms: 0): the legacy model_info figure's."""
    total = 0.0
    for t, chain in zip(terms, owners):
        v, _ = predict(THOP01, t, chain=chain, terms=terms)
        total += v or 0
    return total


def _traced(model, report, shape, notes=None):
    """Our terms with their owners; the report's terms with name-resolved owners if tracing differs."""
    try:
        traced = trace_layers(model, shape)
        if report is None or all(sum(ours(t) for t in terms) == rec.macs and len(terms) == len(rec.terms)
                                 for (terms, _), rec in zip(traced, report.layers)):
            return traced
    except FlopscopeError:
        if report is None:
            raise
    if notes is not None:
        notes.append("owners of terms resolved from their names (tracing with owners did not reproduce the report)")
    return [(rec.terms, [owner_chain(layer, t.name) for t in rec.terms])
            for layer, rec in zip(model.model, report.layers)]


def _model_info(model, report, layers, traced, thop_col) -> dict | None:
    """YOLOv5's model_info: 2 x thop on a stride-sized probe x (H*W / probe^2), against the true figure (None for a
    dialect whose model.info() is ultralytics-thop 2.x's stride-aware figure: ``report.model_info_current_gflops``)."""
    probe = report.model_info_probe
    if probe is None or getattr(report, "model_info_stride_aware", False):
        return None
    h, w = report.img
    scale = h * w / probe ** 2
    try:
        probed = _traced(model, None, (1, model.ch, probe, probe))
    except FlopscopeError as e:
        return {"probe": probe, "error": f"the {probe}x{probe} probe does not run on this model: {e}"}
    measured = None
    if thop_col is not None and thop_col.ok and "probe_per_layer" in thop_col.run.extra:
        measured = thop_col.run.extra["probe_per_layer"]
    rows = []
    for i, (lc, rec, (terms, chains), (pterms, pchains)) in enumerate(zip(layers, report.layers, traced, probed)):
        true = 2.0 * rec.macs
        thop_full = 2.0 * _thop_pred(terms, chains)
        mi = 2.0 * _thop_pred(pterms, pchains) * scale
        conventions = thop_full - true
        extrapolation = mi - thop_full
        why = []
        if abs(conventions) > TOLERANCE:
            codes: dict[str, float] = {}
            for t, chain in zip(terms, chains):
                v, code = predict(THOP01, t, chain=chain, terms=terms)
                if v is not None and code:
                    codes[code] = codes.get(code, 0) + 2 * (v - ours(t))
            why.extend(f"{k} ({fmt_signed(v, 'FLOPs')})" for k, v in sorted(codes.items(), key=lambda kv: -abs(kv[1]))
                       if v)
        if abs(extrapolation) > TOLERANCE:
            why.append(f"probe x area: cost not proportional to H·W ({fmt_signed(extrapolation, 'FLOPs')})")
        delta = mi - true
        pct = (100.0 * delta / true) if true else (None if abs(delta) <= TOLERANCE else float("inf"))
        row = {"index": lc.index, "module": lc.module, "true_flops": true, "model_info_flops": mi,
               "thop_conventions_flops": conventions, "probe_extrapolation_flops": extrapolation,
               "delta_flops": delta, "wrong": pct is not None and abs(pct) > THRESHOLD_PCT, "why": why}
        if measured is not None:
            row["measured_model_info_flops"] = 2.0 * measured[i] * scale
        lc.model_info = row
        rows.append(row)
    printed = sum(r["model_info_flops"] for r in rows) / 1e9
    out = {"probe": probe, "scale": scale, "printed_gflops": printed,
           "true_gflops": sum(r["true_flops"] for r in rows) / 1e9,
           "wrong_layers": [r["index"] for r in rows if r["wrong"]]}
    if measured is not None:
        out["measured_gflops"] = 2.0 * sum(measured) * scale / 1e9
    return out
