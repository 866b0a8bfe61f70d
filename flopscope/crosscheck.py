"""Cross-check: our per-layer MACs against fvcore, thop, ptflops (pytorch and aten backends) and
FlopCounterMode on one real forward each, every difference explained by the rules of
:mod:`flopscope.rules` -- or shown as unexplained.

All columns are MACs: fvcore, thop and ptflops report MACs (with their own extras); FlopCounterMode
reports FLOPs = 2 x MACs and is halved.  For each layer and counter the rules predict what the counter
reports from our op-labelled terms (each with the module whose formula recorded it, from
:class:`OwnerTracer`); when the counter's number equals the prediction (to the MAC), the difference to
ours is the sum of the rules whose terms differ, listed as reason codes with their MACs.  Rules may name
alternatives (``a @ b`` instead of ``torch.matmul``), taken only when they make the numbers match
exactly; anything else is an *unexplained* Δ, shown as such.

Per-layer attribution: fvcore ``by_module()['model.<i>']``, thop ``ret_layer_info`` (``model`` ->
``<i>``), FlopCounterMode ``get_flop_counts()['<Root>.model.<i>']``, ptflops (which deletes its
per-module counters before returning) and ptflops' aten backend by snapshots taken at each YAML layer's
boundaries during their own forward.  A counter that is not installed, or fails on the model, fills its column with the
reason; the others still run.
"""
from __future__ import annotations

import contextlib
import copy
import io
import sys
import time
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from typing import Callable

import torch

from .errors import FlopscopeError, suggestion
from .rules import COUNTERS, LABELS, Context, evaluate, ours, owner_chain, predict, rule_for
from .tracer import Tracer

THRESHOLD_PCT = 0.5  # a Δ beyond this (relative to our layer MACs) gets its reason codes shown
TOLERANCE = 0.5  # measured == predicted when within half a MAC
DEFAULT_COUNTERS = "fvcore,thop,ptflops,fcm"
UNITS = ("all counter columns in MACs (multiply-accumulates): fvcore, thop and ptflops report MACs; "
         "FlopCounterMode reports FLOPs = 2 per MAC and is halved here")
PACKAGES = {"fvcore": "fvcore", "thop": "thop", "ptflops": "ptflops", "ptflops-aten": "ptflops", "fcm": "torch"}


def parse_counters(spec: str | list | None) -> list[str]:
    """'fvcore,thop,ptflops,fcm' -> counter names; 'ptflops' means both of its backends."""
    if spec is None:
        spec = DEFAULT_COUNTERS
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    aliases = {"ptflops": ["ptflops", "ptflops-aten"], "ptflops-pytorch": ["ptflops"], "ptflops-aten": ["ptflops-aten"],
               "ptflops_aten": ["ptflops-aten"], "flopcountermode": ["fcm"], "fcm": ["fcm"], "fvcore": ["fvcore"],
               "thop": ["thop"], "all": list(COUNTERS)}
    for raw in items:
        name = raw.strip().lower()
        if not name:
            continue
        if name not in aliases:
            raise FlopscopeError(f"--counters: unknown counter {raw.strip()!r}{suggestion(name, list(aliases))} "
                                 f"(choose from fvcore, thop, ptflops, ptflops-aten, fcm)")
        for c in aliases[name]:
            if c not in out:
                out.append(c)
    if not out:
        raise FlopscopeError("--counters: name at least one counter (fvcore, thop, ptflops, ptflops-aten, fcm)")
    return [c for c in COUNTERS if c in out]


# ------------------------------------------------------------------------------------------------
# counter adapters: (model, x) -> per-layer MACs, total MACs, notes, extra


@dataclass
class CounterRun:
    per_layer: list[float]
    total: float
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


class CounterFailed(Exception):
    """A counter ran but gave no result (its own message)."""


@contextlib.contextmanager
def _quiet():
    """Counters print (ptflops tracebacks, thop info) and warn (JIT tracer); keep the terminal clean."""
    out, err = io.StringIO(), io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        warnings.simplefilter("ignore")
        yield out, err


def _layers(model):
    return list(model.model)


def run_fvcore(model, x) -> CounterRun:
    from fvcore.nn import FlopCountAnalysis

    fa = FlopCountAnalysis(model, (x,))
    fa.unsupported_ops_warnings(False)
    fa.uncalled_modules_warnings(False)
    fa.tracer_warnings("none")
    total = fa.total()
    by_module = fa.by_module()
    per = [float(by_module.get(f"model.{i}", 0)) for i in range(len(_layers(model)))]
    unsupported = dict(sorted(fa.unsupported_ops().items(), key=lambda kv: -kv[1]))
    notes = []
    if unsupported:
        ops = ", ".join(f"{k.replace('aten::', '')} x{v}" for k, v in unsupported.items())
        notes.append(f"fvcore: element-wise ops unsupported, counted 0 (as in our MACs): {ops}")
    uncalled = sorted(fa.uncalled_modules())  # e.g. work whose output is unused: dropped from the trace
    return CounterRun(per, float(total), notes, {"unsupported_ops": unsupported, "uncalled_modules": uncalled})


def thop_installed() -> tuple[str | None, str | None]:
    """(distribution, version) that provides the importable ``thop`` module: ``ultralytics-thop`` and
    ``thop`` both install a top-level ``thop``; the one whose files hold ``thop/__init__.py`` as imported
    wins.  (None, None) when thop cannot be imported."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("thop")
    if spec is None or not spec.origin:
        return None, None
    origin = Path(spec.origin).resolve()
    found = (None, None)
    for dist in ("ultralytics-thop", "thop"):
        try:
            d = metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            continue
        if found == (None, None):
            found = (dist, d.version)
        try:
            if Path(d.locate_file("thop/__init__.py")).resolve() == origin:
                return dist, d.version
        except (OSError, TypeError):
            continue
    return found


def thop_major() -> int | None:
    _dist, version = thop_installed()
    try:
        return int(version.split(".")[0]) if version else None
    except ValueError:
        return None


def _thop_layers(model, x):
    import thop

    m = copy.deepcopy(model)
    functional = _thop_functional_marks(m)
    try:
        total, _params, info = thop.profile(m, inputs=(x,), verbose=False, ret_layer_info=True)
    finally:
        functional.close()
    layers = info["model"][2]
    n = len(_layers(model))
    per = [float(layers[str(i)][0]) if str(i) in layers else 0.0 for i in range(n)]
    extra = functional.per_layer(n)
    if extra is not None:  # thop 2.x: functional products are in the total only; attributed by layer boundaries
        per = [a + b for a, b in zip(per, extra)]
    return per, float(total)


class _thop_functional_marks:
    """thop 2.x counts functional products (matmul, `@`, einsum, F.linear, SDPA) in a TorchFunctionMode
    whose running sum is in its total only; snapshots of that sum at every YAML layer's entry attribute
    them to layers (nothing to do for thop 0.1.x)."""

    def __init__(self, model):
        self.modes: list = []
        self.marks: list = []
        self.handles: list = []
        self.module = sys.modules.get("thop.profile")
        self.original = getattr(self.module, "_FunctionCounter", None)
        if self.original is None:
            return
        modes = self.modes

        class Recording(self.original):  # the mode thop.profile creates, recorded so layer hooks can read it
            def __init__(self, state):
                super().__init__(state)
                modes.append(self)

        self.module._FunctionCounter = Recording
        self.marks, self.handles = _boundary_hooks(model, lambda: float(modes[-1].state["ops"]) if modes else 0.0)

    def per_layer(self, n):
        if self.original is None:
            return None
        m = self.marks
        return [m[i + 1] - m[i] if i + 1 < len(m) else 0.0 for i in range(n)]

    def close(self):
        if self.original is not None:
            self.module._FunctionCounter = self.original
        for h in self.handles:
            h.remove()


def run_thop(model, x, probe: int | None = None) -> CounterRun:
    per, total = _thop_layers(model, x)
    run = CounterRun(per, total)
    if thop_major() != 0:  # model_info's legacy probe is thop 0.1.x's; another thop's is not that figure
        probe = None
    else:
        run.notes.append("thop 0.1.x installed: its rules (the legacy model_info figure's) are applied")
    if probe:  # YOLOv5's model_info: thop on a stride-sized probe, scaled by area
        try:
            xp = torch.zeros((1, x.shape[1], probe, probe), device=x.device, dtype=x.dtype)
            run.extra["probe_per_layer"], run.extra["probe_total"] = _thop_layers(model, xp)
        except Exception as e:  # noqa: BLE001 - the probe failing is itself a finding
            run.notes.append(f"thop on the {probe}x{probe} model_info probe failed: {type(e).__name__}: {e}"[:300])
    return run


def _boundary_hooks(model, snapshot: Callable[[], object]):
    """Snapshots of a running counter at every YAML layer's entry and after the whole forward."""
    marks: list = []
    handles = [m.register_forward_pre_hook(lambda mod, args: marks.append(snapshot())) for m in _layers(model)]
    handles.append(model.register_forward_hook(lambda mod, args, out: marks.append(snapshot())))
    return marks, handles


def run_ptflops(model, x) -> CounterRun:
    import ptflops.pytorch_engine as pe
    import torch.nn.functional as F
    from ptflops import get_model_complexity_info

    m = copy.deepcopy(model)
    layers = _layers(m)

    def collectors():
        cs = []
        for fn in (F.relu, torch.matmul):  # patched by ptflops while it runs: wrappers that hold a collector
            c = getattr(fn, "collector", None)
            if isinstance(c, list) and all(c is not d for d in cs):
                cs.append(c)
        return cs

    seen: dict = {}

    def snapshot():
        cs = collectors()
        seen["collectors"] = cs
        return [len(c) for c in cs]

    module_flops: list[float] = []

    def accumulate(mod):
        if pe.is_supported_instance(mod):
            return getattr(mod, "__flops__", 0)
        return sum(accumulate(c) for c in mod.children())

    def at_end(mod, args, out):
        module_flops.extend(float(accumulate(layer)) for layer in layers)

    marks, handles = _boundary_hooks(m, snapshot)
    handles.append(m.register_forward_hook(at_end))
    try:
        with _quiet() as (out, err):
            macs, _params = get_model_complexity_info(m, tuple(x.shape[1:]), input_constructor=lambda _: x,
                                                      print_per_layer_stat=False, as_strings=False, backend="pytorch",
                                                      ost=io.StringIO())
    finally:
        for h in handles:
            h.remove()
    if macs is None:
        raise CounterFailed(_last_error(out.getvalue() + err.getvalue()))
    b = x.shape[0]
    cs = seen.get("collectors", [])
    per = []
    for i in range(len(layers)):
        func = 0.0
        if i + 1 < len(marks):
            for k, c in enumerate(cs):
                func += float(sum(c[marks[i][k]:marks[i + 1][k]]))
        per.append(module_flops[i] / b + func if module_flops else func)
    return CounterRun(per, float(macs))


def run_ptflops_aten(model, x) -> CounterRun:
    import ptflops.aten_engine as ae
    from ptflops import get_model_complexity_info

    m = copy.deepcopy(model)
    modes: list = []
    original = ae.FlopCounterMode

    class Recording(original):  # the mode get_flops_aten creates, recorded so layer boundaries can read it
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            modes.append(self)

    def snapshot():
        return float(sum(modes[-1].flop_counts["Global"].values())) if modes else 0.0

    marks, handles = _boundary_hooks(m, snapshot)
    seen_inputs: dict[str, tuple] = {}  # nn.Linear input layout decides addmm (bias counted) vs matmul + add

    def linear_pre(name):
        def hook(mod, args):
            if name not in seen_inputs and args and isinstance(args[0], torch.Tensor):
                seen_inputs[name] = (args[0].dim(), args[0].is_contiguous())
        return hook

    for name, sub in m.named_modules():
        if isinstance(sub, torch.nn.Linear):
            handles.append(sub.register_forward_pre_hook(linear_pre(name)))
    ae.FlopCounterMode = Recording
    try:
        with _quiet() as (out, err):
            macs, _params = get_model_complexity_info(m, tuple(x.shape[1:]), input_constructor=lambda _: x,
                                                      print_per_layer_stat=False, as_strings=False, backend="aten",
                                                      ost=io.StringIO())
    finally:
        ae.FlopCounterMode = original
        for h in handles:
            h.remove()
    if macs is None:
        raise CounterFailed(_last_error(out.getvalue() + err.getvalue()))
    for name, facts in seen_inputs.items():  # read by the rules (flopscope.rules._aten_linear)
        try:
            model.get_submodule(name).flopscope_input = facts
        except AttributeError:
            pass
    n = len(_layers(m))
    per = [marks[i + 1] - marks[i] if i + 1 < len(marks) else 0.0 for i in range(n)]
    return CounterRun(per, float(macs))


def run_fcm(model, x) -> CounterRun:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fcm:
        model(x)
    counts = fcm.get_flop_counts()
    root = type(model).__name__
    per = [sum(counts.get(f"{root}.model.{i}", {}).values()) / 2 for i in range(len(_layers(model)))]
    return CounterRun([float(v) for v in per], fcm.get_total_flops() / 2)


ADAPTERS: dict[str, Callable] = {"fvcore": run_fvcore, "thop": run_thop, "ptflops": run_ptflops,
                                 "ptflops-aten": run_ptflops_aten, "fcm": run_fcm}


def _last_error(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln or "Exception" in ln:
            return ln[:300]
    return (lines[-1] if lines else "no result")[:300]


def counter_version(name: str) -> str | None:
    if name == "fcm":
        return f"torch {torch.__version__}"
    if name == "thop":
        dist, version = thop_installed()
        return None if dist is None else version if dist == "thop" else f"{dist} {version}"
    try:
        return metadata.version(PACKAGES[name])
    except metadata.PackageNotFoundError:
        return None


# ------------------------------------------------------------------------------------------------
# our terms, each with the module whose formula recorded it


class OwnerTracer(Tracer):
    """A :class:`~flopscope.tracer.Tracer` that remembers, for every term, the chain of modules whose
    formulas were running when it was recorded (innermost first), each with the term's name relative to
    that module -- the owners the counter rules look at (a term's name need not be a module path)."""

    def __init__(self):
        super().__init__()
        self._calls: list[tuple[object, str]] = []  # (module, its name prefix) of the calls in progress
        self.chains: list[list] = []

    def __call__(self, module, *inputs, name: str = ""):
        if inputs and isinstance(inputs[-1], str) and not name:
            *inputs, name = inputs
        self._calls.append((module, ".".join([*self._prefix, name] if name else self._prefix)))
        try:
            return super().__call__(module, *inputs, name=name)
        finally:
            self._sync()
            self._calls.pop()

    def mac(self, *args, **kwargs) -> None:
        super().mac(*args, **kwargs)
        self._sync()

    def ew(self, *args, **kwargs) -> None:
        super().ew(*args, **kwargs)
        self._sync()

    def _sync(self) -> None:
        for t in self.cost.terms[len(self.chains):]:
            chain = []
            for mod, prefix in reversed(self._calls):
                if not prefix:
                    local = t.name
                elif t.name == prefix:
                    local = ""
                elif t.name.startswith(prefix + "."):
                    local = t.name[len(prefix) + 1:]
                else:
                    local = t.name
                chain.append((mod, local))
            self.chains.append(chain)


def trace_layers(model, shape) -> list[tuple[list, list]]:
    """(terms, owner chains) of every YAML layer for an input of ``shape`` (B, C, H, W)."""
    out, ys, x = [], [], tuple(shape)
    for m, info in zip(model.model, model.layers):
        f = info.f
        xin = x if f == -1 else ys[f] if isinstance(f, int) else [x if j == -1 else ys[j] for j in f]
        t = OwnerTracer()
        x = t(m, xin)
        ys.append(x)
        out.append((list(t.cost.terms), t.chains))
    return out


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
    def rules(self) -> str:
        """Key of this column's rule table (flopscope.rules.RULES): thop's depends on its installed version."""
        if self.name == "thop" and self.version and not self.version.split()[-1].startswith("0."):
            return "thop2"
        return self.name

    @property
    def label(self) -> str:
        return LABELS[self.rules]

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
class Cell:
    """One layer x one counter: what it measured, what the rules predict, and why it differs from ours."""

    measured: float
    ours: int
    predicted: float | None
    reasons: list[tuple[str, float]]
    unpredictable: list[str] = field(default_factory=list)

    @property
    def delta(self) -> float:
        return self.measured - self.ours

    @property
    def delta_pct(self) -> float | None:
        if self.ours == 0:
            return None if abs(self.delta) < TOLERANCE else float("inf") if self.delta > 0 else float("-inf")
        return 100.0 * self.delta / self.ours

    @property
    def explained(self) -> bool:
        return self.predicted is not None and abs(self.measured - self.predicted) <= TOLERANCE

    @property
    def residual(self) -> float | None:
        return None if self.predicted is None else self.measured - self.predicted

    @property
    def significant(self) -> bool:
        p = self.delta_pct
        return p is not None and abs(p) > THRESHOLD_PCT

    def to_dict(self) -> dict:
        p = self.delta_pct
        return {"measured": self.measured, "predicted": self.predicted, "delta": self.delta,
                "delta_pct": None if p is None or abs(p) == float("inf") else p,
                "explained": self.explained, "significant": self.significant,
                "reasons": [{"code": c, "macs": v} for c, v in self.reasons],
                "unexplained": None if self.explained else (self.residual if self.residual is not None else self.delta),
                "unpredictable": list(self.unpredictable)}


MAX_TRIALS = 200_000  # alternative assignments tried per cell, fewest alternatives first


def explain(counter: str, terms, owners, measured: float, hidden: dict | None = None) -> Cell:
    """Apply ``counter``'s rules to a layer's terms and compare with what it measured.

    ``owners``: each term's owner chain (see :class:`OwnerTracer`).  ``hidden``: ``id(module) -> reason``
    for modules the counter never saw run (fvcore's JIT trace drops work whose output is unused); their
    terms count 0.  When the primary rules do not reproduce the measurement, the rules' alternatives
    (``a @ b`` instead of ``torch.matmul`` ...) are tried, together for the terms of one rule that have
    the same name in the same kind of owner (repeated blocks run the same code), fewest alternatives
    first; one assignment is kept only if the numbers then match exactly.
    """
    total_ours = sum(ours(t) for t in terms)
    fixed: list[tuple] = []  # (term, value, reason) of terms in hidden modules
    groups: dict[tuple, list] = {}  # (rule, owner class, name in owner) -> [rule, [(term, owner)]]
    layer_terms = tuple(terms)
    for t, chain in zip(terms, owners):
        gone = next((hidden[id(mod)] for mod, _ in chain if hidden and id(mod) in hidden), None)
        if gone is not None:
            fixed.append((t, 0.0, gone if ours(t) else None))
            continue
        rule, owner = rule_for(counter, t, chain=chain)
        key = (id(rule), type(chain[0][0]).__name__ if chain else "", chain[0][1] if chain else t.name)
        groups.setdefault(key, [rule, []])[1].append((t, owner, Context(tuple(chain), layer_terms)))

    # every group's options: option 0 = the primary rule, k = its k-th alternative (where it applies)
    options: list[list[list[tuple]]] = []
    for rule, members in groups.values():
        primary = [(t, *evaluate(counter, rule, t, owner, ctx)) for t, owner, ctx in members]
        opts = [primary]
        for alt in rule.alts:
            vals = []
            for (t, owner, ctx), p in zip(members, primary):
                v, why = evaluate(counter, alt, t, owner, ctx)
                vals.append(p if v is None else (t, v, why))
            opts.append(vals)
        options.append(opts)

    def total(vals):
        return None if any(v is None for _, v, _ in vals) else sum(v for _, v, _ in vals)

    choice = [0] * len(options)
    base = total(fixed + [x for opts in options for x in opts[0]])
    if base is not None and abs(measured - base) > TOLERANCE:
        deltas = []  # (group, option, Δ to the primary) that change the prediction
        for g, opts in enumerate(options):
            t0 = total(opts[0])
            for k in range(1, len(opts)):
                tk = total(opts[k])
                if t0 is not None and tk is not None and tk != t0:
                    deltas.append((g, k, tk - t0))
        found = _subset_match(deltas, measured - base)
        if found is not None:
            for g, k in found:
                choice[g] = k
    best = fixed + [x for opts, k in zip(options, choice) for x in opts[k]]
    reasons: dict[str, float] = {}
    for t, v, why in best:
        if v is not None and v != ours(t):
            reasons[why] = reasons.get(why, 0) + (v - ours(t))
    unpred = [f"{t.name or '(layer)'}: {why}" for t, v, why in best if v is None]
    ordered = sorted(((k, v) for k, v in reasons.items() if v), key=lambda kv: -abs(kv[1]))
    return Cell(float(measured), total_ours, total(best), ordered, unpred)


def _subset_match(deltas: list[tuple], target: float):
    """The fewest (group, option) switches, at most one per group, whose Δs sum to ``target``."""
    import itertools

    by_group: dict[int, list] = {}
    for g, k, d in deltas:
        by_group.setdefault(g, []).append((k, d))
    gids = list(by_group)
    trials = 0
    for r in range(1, len(gids) + 1):
        for subset in itertools.combinations(gids, r):
            for picks in itertools.product(*(by_group[g] for g in subset)):
                trials += 1
                if trials > MAX_TRIALS:
                    return None
                if abs(sum(d for _, d in picks) - target) <= TOLERANCE:
                    return [(g, k) for g, (k, _) in zip(subset, picks)]
    return None


@dataclass
class LayerCheck:
    index: int
    f: object
    module: str
    ours: int
    cells: dict  # counter -> Cell
    model_info: dict | None = None


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
            layers.append(row)
        return {"model": self.model, "img": list(self.img), "batch": 1, "device": self.device, "units": UNITS,
                "threshold_pct": THRESHOLD_PCT, "counters": {n: self.columns[n].to_dict() for n in self.counters},
                "layers": layers, "totals": {"ours": self.ours_total, "counters": totals},
                "model_info": self.model_info, "notes": list(self.notes),
                "rules": "docs/crosscheck.md; flopscope.rules", "fused": bool(getattr(self.report, "fused", False))}


# ------------------------------------------------------------------------------------------------
# the check


def _resolve_device(device: str) -> str:
    device = (device or "cpu").strip().lower()
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise FlopscopeError(f"--device {device}: CUDA is not available (torch {torch.__version__}); "
                                 f"use --device cpu")
        return device
    if device != "cpu":
        raise FlopscopeError(f"--device must be cpu or cuda, got {device!r}")
    return device


def crosscheck(cfg, img=640, counters=None, device: str = "cpu", nc: int | None = None,
               progress: Callable[[str, int, int], None] | None = None, fuse: bool = False) -> CheckResult:
    """Build ``cfg`` once with real weights and run every counter on the same input (batch 1)."""
    from .builder import DetectionModel, build_model
    from .memory import check_fits
    from .profile import profile

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
    if report.fused and not getattr(model, "flopscope_fused", False):
        from .fuse import fused_copy

        model = fused_copy(model)  # the real fold of the real weights
    h, w = report.img
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn((1, model.ch, h, w), generator=gen).to(device)
    probe = report.model_info_probe

    columns: dict[str, Column] = {}
    for k, name in enumerate(names):
        step(f"running {LABELS[name]}", k + 1, steps)
        columns[name] = _run_counter(name, model, x, probe)

    notes = list(report.notes)
    traced = _traced(model, report, (1, model.ch, h, w), notes)
    layers = []
    hidden = {name: _hidden_modules(model, columns[name]) for name in names}
    for i, (rec, (terms, chains)) in enumerate(zip(report.layers, traced)):
        cells = {}
        for name in names:
            col = columns[name]
            if col.ok:
                cells[name] = explain(col.rules, terms, chains, col.run.per_layer[i], hidden[name])
        layers.append(LayerCheck(rec.index, rec.f, rec.module, rec.macs, cells))
    for name in names:
        if columns[name].ok:
            notes.extend(columns[name].run.notes)
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


def _run_counter(name: str, model, x, probe) -> Column:
    version = counter_version(name)
    t0 = time.perf_counter()
    try:
        with _quiet():
            fn = ADAPTERS[name]
            run = fn(model, x, probe) if name == "thop" else fn(model, x)
    except ImportError as e:
        pkg = PACKAGES[name]
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
    """thop's MACs predicted by its rules (unpredictable terms: 0)."""
    total = 0.0
    for t, chain in zip(terms, owners):
        v, _ = predict("thop", t, chain=chain, terms=terms)
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
    """YOLOv5's model_info: 2 x thop on a stride-sized probe x (H*W / probe^2), against the true figure."""
    probe = report.model_info_probe
    if probe is None:
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
                v, code = predict("thop", t, chain=chain, terms=terms)
                if v is not None and code:
                    codes[code] = codes.get(code, 0) + 2 * (v - ours(t))
            why.extend(f"{k} ({_fmt_signed(v, 'FLOPs')})" for k, v in sorted(codes.items(), key=lambda kv: -abs(kv[1]))
                       if v)
        if abs(extrapolation) > TOLERANCE:
            why.append(f"probe x area: cost not proportional to H·W ({_fmt_signed(extrapolation, 'FLOPs')})")
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


# ------------------------------------------------------------------------------------------------
# rendering


def _unit(total: float) -> tuple[float, str]:
    if total >= 1e9:
        return 1e9, "G"
    if total >= 1e6:
        return 1e6, "M"
    return 1e3, "k"


def _fmt_signed(v: float, what: str = "MACs") -> str:
    a = abs(v)
    for div, u in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{v / div:+.3f} {u}{what}"
    return f"{v:+,.0f} {what}"


def _pct(p: float | None) -> str:
    if p is None:
        return ""
    if abs(p) == float("inf"):
        return "new"
    return f"{p:+.1f}%"


def cell_reasons(label: str, cell: Cell, always: bool = False) -> list[str]:
    """Reason lines for one cell ('' when the Δ is within the threshold and explained)."""
    if cell.explained and not (cell.significant or always):
        return []
    if cell.explained:
        return [f"{code} ({_fmt_signed(v)})" for code, v in cell.reasons] or \
               [f"{label}: {_fmt_signed(cell.delta)} (no rule difference?)"]
    if cell.predicted is None:
        return [f"{label}: unexplained Δ {_fmt_signed(cell.delta)} (no rule predicts: "
                f"{'; '.join(cell.unpredictable[:2])}{' …' if len(cell.unpredictable) > 2 else ''})"]
    known = "; ".join(f"{c} {_fmt_signed(v)}" for c, v in cell.reasons)
    return [f"{label}: unexplained Δ {_fmt_signed(cell.residual)} beyond the rules"
            f"{(' (' + known + ')') if known else ''}"]


def print_check(result: CheckResult, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console() if sys.stdout.isatty() else Console(width=220)
    div, u = _unit(result.ours_total)
    names = result.counters
    h, w = result.img
    console.print(f"{result.model} @ {h}x{w}, batch 1, {result.device}: cross-check of "
                  f"{', '.join(result.columns[n].label for n in names)}", style="bold", highlight=False)
    console.print(f"Units: {u}MACs; {UNITS}. Reasons shown where |Δ| > {THRESHOLD_PCT} % of ours; each is a rule "
                  f"of docs/crosscheck.md confirmed by the numbers (measured = rules' prediction, to the MAC).",
                  highlight=False, markup=False)
    vers = "; ".join(f"{result.columns[n].label} {result.columns[n].version or '?'}" for n in names)
    console.print(f"Versions: {vers}", highlight=False, markup=False)
    for n in names:
        col = result.columns[n]
        if not col.ok:
            console.print(f"{col.label}: {col.reason}", style="yellow", highlight=False, markup=False)

    t = Table(title=None, header_style="bold", expand=False)
    t.add_column("idx", justify="right", no_wrap=True)
    t.add_column("module", no_wrap=True)
    t.add_column(f"ours", justify="right", no_wrap=True)
    for n in names:
        t.add_column(result.columns[n].label, justify="right", no_wrap=True)
    t.add_column("Δ reasons", overflow="fold", min_width=40)
    for lc in result.layers:
        vals, why = [], []
        for n in names:
            col = result.columns[n]
            if not col.ok:
                vals.append(f"[dim]{col.short()}[/dim]")
                continue
            c = lc.cells[n]
            txt = f"{c.measured / div:.3f}"
            if c.significant or not c.explained:
                txt += f" [dim]{_pct(c.delta_pct)}[/dim]"
            if not c.explained:
                txt = f"[red]{txt} ?[/red]"
            vals.append(txt)
            why.extend(_escape(r) if c.explained else f"[red]{_escape(r)}[/red]" for r in cell_reasons(col.label, c))
        t.add_row(str(lc.index), lc.module, f"{lc.ours / div:.3f}", *vals, "\n".join(why))
    t.add_section()
    tot_vals = []
    for n in names:
        cell = result.total_cell(n)
        if cell is None:
            tot_vals.append(f"[dim]{result.columns[n].short()}[/dim]")
            continue
        txt = f"{cell.measured / div:.3f} [dim]{_pct(cell.delta_pct)}[/dim]"
        tot_vals.append(txt if cell.explained else f"[red]{txt} ?[/red]")
    t.add_row("", "total", f"{result.ours_total / div:.3f}", *tot_vals, "", style="bold")
    console.print(t)

    console.print("Totals, to the MAC:", style="bold", highlight=False)
    console.print(f"  ours {result.ours_total:,} MACs", highlight=False, markup=False)
    for n in names:
        cell = result.total_cell(n)
        col = result.columns[n]
        if cell is None:
            console.print(f"  {col.label}: {col.reason}", highlight=False, markup=False)
            continue
        parts = " ".join(f"{'+' if v >= 0 else '-'} {abs(v):,.0f} [{code}]" for code, v in cell.reasons)
        if cell.explained:
            status = "explained exactly"
        elif cell.predicted is None:
            status = "UNEXPLAINED (no rule predicts: " + "; ".join(cell.unpredictable[:3]) + ")"
        else:
            status = f"UNEXPLAINED residual {cell.residual:+,.0f} MACs"
        bad = result.unexplained_layers(n)
        if bad:
            status += f"; unexplained layers: {', '.join(map(str, bad))}"
        console.print(f"  {col.label} {cell.measured:,.0f} = ours {parts or '(no difference)'}: {status}",
                      style=None if cell.explained else "red", highlight=False, markup=False)
    for note in result.notes:
        console.print(note, highlight=False, markup=False)
    _print_model_info(result, console)


def _escape(s: str) -> str:
    from rich.markup import escape

    return escape(s)


def _print_model_info(result: CheckResult, console) -> None:
    from rich.table import Table

    mi = result.model_info
    if mi is None:
        return
    if "error" in mi:
        console.print(f"YOLOv5 model_info: {mi['error']}", highlight=False, markup=False)
        return
    p = mi["probe"]
    console.print()
    console.print(f"What YOLOv5's model_info prints: 2 x thop MACs on a {p}x{p} probe x (H·W / {p}²) = "
                  f"{mi['printed_gflops']:.3f} GFLOPs (it shows {mi['printed_gflops']:.1f}); true: "
                  f"{mi['true_gflops']:.3f} GFLOPs (2 x our MACs)"
                  + (f"; thop really run on the probe: {mi['measured_gflops']:.3f}" if "measured_gflops" in mi else ""),
                  style="bold", highlight=False, markup=False)
    t = Table(header_style="bold", expand=False)
    for col, just in (("idx", "right"), ("module", "left"), ("true GFLOPs", "right"), ("model_info", "right"),
                      ("thop on probe", "right"), ("Δ", "right"), ("", "center"), ("why", "left")):
        t.add_column(col, justify=just, no_wrap=col != "why", overflow="fold")
    for lc in result.layers:
        r = lc.model_info
        if r is None:
            continue
        pct = (100 * r["delta_flops"] / r["true_flops"]) if r["true_flops"] else None
        meas = r.get("measured_model_info_flops")
        ok_meas = meas is None or abs(meas - r["model_info_flops"]) <= 2 * TOLERANCE * mi["scale"] + 1e-6 * abs(meas)
        meas_txt = "-" if meas is None else f"{meas / 1e9:.4f}" + ("" if ok_meas else " [red]≠[/red]")
        t.add_row(str(r["index"]), r["module"], f"{r['true_flops'] / 1e9:.4f}", f"{r['model_info_flops'] / 1e9:.4f}",
                  meas_txt, _pct(pct) if pct is not None else ("" if abs(r["delta_flops"]) < 1 else "new"),
                  "[yellow]![/yellow]" if r["wrong"] else "", _escape("; ".join(r["why"])) if r["wrong"] else "")
    console.print(t)
    if mi["wrong_layers"]:
        console.print(f"! layers that make model_info wrong (|Δ| > {THRESHOLD_PCT} %): "
                      f"{', '.join(map(str, mi['wrong_layers']))}", highlight=False, markup=False)


class ProgressBar:
    """A rich progress bar on stderr while the counters run (nothing when stderr is not a terminal)."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        console = Console(file=sys.stderr)
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=True,
                                 disable=not console.is_terminal)
        self.task = None

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def __call__(self, description: str, done: int, total: int) -> None:
        if self.task is None:
            self.task = self.progress.add_task(description, total=total)
        self.progress.update(self.task, description=description, completed=done, total=total)
