"""``profile()``: a model's per-layer record (params, shapes, MACs by kind, element-wise FLOPs).

(Named ``report`` so that ``flopscope.profile`` is only the function.)  Configs and our built models
are counted here; any other ``nn.Module`` by :mod:`flopscope.modelreport`.

The record is plain data; :mod:`flopscope.render` turns the same record into a rich table,
JSON, CSV or Markdown.  JSON schema (stable; later features add keys, never rename)::

    {"model", "img": [H, W], "batch",
     "layers": [{"index", "from", "n", "module", "args", "out_shape", "params", "macs", "flops",
                 "elementwise_flops", "linear_in_hw", "counted_by", "macs_by_kind", "model_info_flops",
                 "channel_rule": {"name", "source"}, "model_info_current_flops"}],
     "totals": {"params", "macs", "flops", "elementwise_flops", "macs_by_kind", "flops_incl_elementwise"},
     "model_info_gflops", "model_info_probe", "stride", "units", "notes", "fused",
     "model_info_current_gflops", "model_info_current_method"}

``model_info_gflops`` is what the dialect's own ``model.info()`` prints: YOLOv5's legacy figure (thop 0.1.1 on a
stride-sized probe x area) for YOLOv5-dialect configs, ultralytics' ``get_flops`` (ultralytics-thop 2.x,
stride-aware) for Ultralytics-dialect ones.  ``model_info_current_gflops`` is what current Ultralytics and current
YOLOv5 print (both call ultralytics' ``get_flops``; :mod:`flopscope.counters.thop2_info`), for every dialect;
``model_info_current_method`` says how ultralytics-thop gets it (its proxies or a full-size run).  Either is null,
with a note saying why, where it cannot be known or the real one prints none.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn as nn

from . import units
from .builder import DetectionModel, build_model
from .dialects import get_dialect
from .config import show
from .cost import MAC_KINDS
from .engine import count_layers
from .errors import FlopscopeError
from .inputs import MAX_IMG, parse_img  # noqa: F401  (re-exported: profile.parse_img)
from .fuse import fused_copy, is_fused
from .counters.thop2_info import current_model_info
from .rules import thop_macs
from .scaling import proportional_when_doubled
from .rows import RowKey, jsonable  # noqa: F401  (jsonable re-exported: report.jsonable)
from .tracer import NOT_COUNTED

UNITS = units.pick(
    ("params", "count"), "macs", "flops", "elementwise_flops", "model_info_gflops", "fused",
    "model_info_current_gflops")


@dataclass
class LayerRecord(RowKey):
    out_shape: object
    params: int
    macs_by_kind: dict
    elementwise_flops: int
    linear_in_hw: bool | None
    counted_by: str
    model_info_flops: float | None = None
    terms: list = field(default_factory=list, repr=False)
    notes: list = field(default_factory=list, repr=False)  # typed notes (flopscope.tracer.Note) behind counted_by
    channel_rule: dict | None = None  # {"name", "source"}: which rule built the row and where it came from
    model_info_current_flops: float | None = None  # this row's share of model_info_current_gflops (FLOPs)

    @property
    def macs(self) -> int:
        return sum(self.macs_by_kind.values())

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def to_dict(self) -> dict:
        return {
            **self.key_dict(),
            "out_shape": jsonable(self.out_shape), "params": self.params, "macs": self.macs, "flops": self.flops,
            "elementwise_flops": self.elementwise_flops, "linear_in_hw": self.linear_in_hw,
            "counted_by": self.counted_by, "macs_by_kind": dict(self.macs_by_kind),
            "model_info_flops": self.model_info_flops, "channel_rule": self.channel_rule,
            "model_info_current_flops": self.model_info_current_flops,
        }


@dataclass
class Report:
    model: str
    img: tuple
    batch: int
    layers: list[LayerRecord]
    model_info_gflops: float | None
    model_info_probe: int | None
    stride: list
    notes: list[str] = field(default_factory=list)
    fused: bool = False
    train: object = None  # flopscope.train.TrainReport with --train
    model_info_current_gflops: float | None = None  # what current Ultralytics / YOLOv5 print (thop 2.x)
    model_info_current_method: str | None = None  # how ultralytics-thop's stride-aware profile gets it
    model_info_stride_aware: bool = False  # model_info_gflops is ultralytics' get_flops (Ultralytics dialect)

    @property
    def params(self) -> int:
        return sum(r.params for r in self.layers)

    @property
    def macs_by_kind(self) -> dict:
        return {k: sum(r.macs_by_kind[k] for r in self.layers) for k in MAC_KINDS}

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.layers)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def elementwise_flops(self) -> int:
        return sum(r.elementwise_flops for r in self.layers)

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    @property
    def model_info_current_differs(self) -> bool:
        """A YOLOv5-dialect report whose current model_info figure (ultralytics-thop 2.x) prints differently from the
        legacy one (for Ultralytics configs the two are one figure)."""
        cur, mi = self.model_info_current_gflops, self.model_info_gflops
        return cur is not None and not self.model_info_stride_aware and (mi is None or f"{cur:.1f}" != f"{mi:.1f}")

    def totals(self) -> dict:
        return {"params": self.params, "macs": self.macs, "flops": self.flops,
                "elementwise_flops": self.elementwise_flops, "macs_by_kind": self.macs_by_kind,
                "flops_incl_elementwise": self.flops + self.elementwise_flops}

    def _units(self) -> dict:
        if self.train is None:
            return UNITS
        from .train import UNITS as TRAIN_UNITS

        return {**UNITS, **TRAIN_UNITS}

    def to_dict(self) -> dict:
        layers, totals = [r.to_dict() for r in self.layers], self.totals()
        extra = {}
        if self.train is not None:  # --train: keys added per layer and in totals, details under "train"
            for row, t in zip(layers, self.train.layers):
                row.update(t.to_dict())
            totals.update(self.train.totals())
            extra["train"] = self.train.to_dict()
        return {"model": self.model, "img": list(self.img), "batch": self.batch, **extra,
                "layers": layers, "totals": totals,
                "model_info_gflops": self.model_info_gflops, "model_info_probe": self.model_info_probe,
                "stride": self.stride, "units": self._units(), "notes": list(self.notes), "fused": self.fused,
                "model_info_current_gflops": self.model_info_current_gflops,
                "model_info_current_method": self.model_info_current_method}


MAX_BATCH = 1_000_000


def check_img(model: DetectionModel, hw: tuple[int, int], notes: list[str]) -> tuple[int, int]:
    s = int(max(model.stride.max().item(), 1))
    fixed = tuple(-(-v // s) * s for v in hw)
    if fixed != tuple(hw):
        notes.append(f"image size {hw[0]}x{hw[1]} is not a multiple of the max stride {s}; "
                     f"counted at {fixed[0]}x{fixed[1]} as YOLOv5 would")
    return fixed


def _layer_costs(model, batch, hw):
    return count_layers(model, (batch, model.ch, hw[0], hw[1]))


ACCEPTED = ("profile() takes a bundled config name, a YAML path, a config dict, a built DetectionModel or any "
            "torch.nn.Module")


def _check_batch(batch) -> None:
    if isinstance(batch, bool) or not isinstance(batch, int) or batch <= 0:
        raise FlopscopeError(f"--batch must be a positive integer, got {batch!r}")
    if batch > MAX_BATCH:
        raise FlopscopeError(f"--batch {show(batch)} is not a plausible batch size (max {MAX_BATCH})")


def profile(cfg_or_module, img=640, batch: int = 1, nc: int | None = None, *, inputs=None,
            depth: int = 1, fuse: bool = False, train: bool = False, freeze: int = 0, amp: bool = False,
            optimizer: str = "sgd", gpu_mem=None) -> Report:
    """Count a model: a config (bundled name, YAML path, dict), a built :class:`DetectionModel`, or
    any ``nn.Module`` on any device (a meta copy is counted; the module is left untouched).

    For a module, ``inputs`` may be a shape ``(1, 3, 640, 640)``, a list of shapes (one per
    positional input), example tensors, or a dict of keyword inputs (tensors or shapes); without
    it, ``img`` and ``batch`` make a ``(batch, C, H, W)`` image, C from the module's first conv.
    A YOLO-style model object (a ``.model`` sequence of layers carrying ``.f`` and ``.i``) gets the
    per-row report of a config; any other module a per-module tree down to ``depth``.  Registered
    formulas count the classes they are registered for, the op-level counter everything else.

    ``fuse=True`` counts the model as the framework's ``fuse()`` leaves it (a given model is copied
    first, never changed).  ``train=True`` adds the training cost (:func:`flopscope.train.train_profile`:
    backward MACs, activation memory; ``freeze`` / ``amp`` / ``optimizer`` / ``gpu_mem``).
    """
    _check_batch(batch)
    extra = dict(fuse=fuse, train=train, freeze=freeze, amp=amp, optimizer=optimizer, gpu_mem=gpu_mem)
    if isinstance(cfg_or_module, DetectionModel):
        return _profile_built(cfg_or_module, img, batch, **extra)
    if isinstance(cfg_or_module, nn.Module):
        from .modelreport import profile_module

        return profile_module(cfg_or_module, img=img, batch=batch, inputs=inputs, depth=depth)
    from .config import ModelConfig

    if not isinstance(cfg_or_module, (str, dict, ModelConfig)) and not hasattr(cfg_or_module, "__fspath__"):
        raise FlopscopeError(f"{ACCEPTED}; got {type(cfg_or_module).__name__}")
    return _profile_built(build_model(cfg_or_module, nc=nc), img, batch, **extra)


def _profile_built(model, img, batch: int, fuse: bool = False, train: bool = False, freeze: int = 0,
                   amp: bool = False, optimizer: str = "sgd", gpu_mem=None) -> Report:
    notes: list[str] = list(getattr(model, "fork_notes", [])) + list(getattr(getattr(model, "config", None), "notes", []))
    if fuse and not is_fused(model):
        model = fused_copy(model)
    if is_fused(model):
        notes.extend(model.fuse_summary.notes())
    hw = check_img(model, parse_img(img), notes)
    layers = _layer_costs(model, batch, hw)
    doubled = _safe(lambda: _layer_costs(model, batch, (2 * hw[0], 2 * hw[1])))
    dialect = get_dialect(getattr(model.config, "dialect", "yolov5"))
    probe = dialect.model_info_probe(model)
    probed = _safe(lambda: _layer_costs(model, 1, (probe, probe))) if probe else None
    probe = probe or int(max(model.stride.max().item(), 32))
    scale = hw[0] * hw[1] / probe ** 2
    records = []
    for k, (info, lc) in enumerate(zip(model.layers, layers)):
        m = model.model[k]
        records.append(LayerRecord(
            info.index, info.f, info.n, info.module, info.args, lc.out_shape,
            sum(p.numel() for p in m.parameters()), lc.cost.by_kind(), lc.cost.elementwise_flops,
            linear_in_hw(lc, doubled[k] if doubled is not None else None),
            lc.counted_by, 2 * thop_macs(probed[k].cost.terms) * scale if probed is not None else None,
            lc.cost.terms, list(lc.notes), rule_record(info)))
    notes.extend(replacement_notes(model))
    current = current_model_info(model, hw, dialect.model_info_min_cells(model))
    if current.per_layer is not None:
        for rec, v in zip(records, current.per_layer):
            rec.model_info_current_flops = v
    mi = None
    if dialect.model_info_stride_aware:  # the dialect's model.info() is ultralytics' get_flops
        mi = current.gflops
        for rec in records:
            rec.model_info_flops = rec.model_info_current_flops
        if mi is None:
            notes.append(f"model_info_gflops: ultralytics' model.info() figure: {current.reason}")
    elif probed is not None:
        mi = sum(r.model_info_flops for r in records) / 1e9
    elif dialect.model_info_note:
        notes.append(dialect.model_info_note)
    else:
        notes.append(f"YOLOv5's {probe}x{probe} model_info probe does not run on this model")
    if current.gflops is None and not dialect.model_info_stride_aware:
        notes.append(f"model_info_current_gflops (what current YOLOv5 prints, ultralytics-thop 2.x): {current.reason}")
    notes.extend(f"model_info (ultralytics-thop 2.x): {n}" for n in current.notes)
    tr = None
    if train:
        from .train import train_profile

        tr = train_profile(model, hw, batch, freeze=freeze, amp=amp, optimizer=optimizer, gpu_mem=gpu_mem)
        # a module whose train-mode forward here is not its framework's training forward says so (``train_caveat``)
        caveats = dict.fromkeys(c for m in model.modules() if (c := getattr(type(m), "train_caveat", None)))
        notes.extend(f"--train: {c}" for c in caveats)
    elif freeze or amp or gpu_mem is not None:
        raise FlopscopeError("--freeze, --amp and --gpu-mem describe training: add --train")
    notes.extend(not_counted_totals(records))
    return Report(model.name, hw, batch, records, mi, probe, [float(s) for s in model.stride.tolist()], notes,
                  fused=is_fused(model), train=tr, model_info_current_gflops=current.gflops,
                  model_info_current_method=current.method or None,
                  model_info_stride_aware=dialect.model_info_stride_aware)


def linear_in_hw(lc, doubled) -> bool | None:
    """Whether a row's cost quadruples when H and W double (None when the doubled size did not run)."""
    if doubled is None:
        return None
    a = lc.cost.macs() + lc.cost.elementwise_flops
    return proportional_when_doubled(a, doubled.cost.macs() + doubled.cost.elementwise_flops)


def not_counted_totals(records) -> list[str]:
    """The totals' note listing every op without a rule, over all rows ("not counted: aten.foo x3")."""
    from collections import Counter

    total: Counter = Counter()
    for r in records:
        for n in r.notes:
            if getattr(n, "kind", None) == NOT_COUNTED:
                total.update(n.data)
    from .opcount import not_counted_note

    note = not_counted_note(total)
    return [f"{note} (op-level counter: ops without a rule; their work is missing from the figures)"] if note else []


def rule_record(info) -> dict | None:
    """``{"name", "source"}`` of the channel rule that built a row (``source`` 'built-in' for the zoo)."""
    spec = getattr(info, "spec", None)
    if spec is None:
        return None
    source = getattr(info, "rule_source", None) or spec.rule_source or (
        "built-in" if spec.origin in ("flopscope", "torch") else "register()")
    return {"name": spec.channels.name, "source": source}


def replacement_notes(model) -> list[str]:
    """One note per plugin class that replaced a registered module of the same name in this run."""
    out, seen = [], set()
    for info in model.layers:
        spec = getattr(info, "spec", None)
        old = getattr(spec, "replaces", None)
        if old is None or spec.name in seen:
            continue
        seen.add(spec.name)
        kind = "built-in" if old.origin in ("flopscope", "torch") else f"plugin {old.origin}"
        out.append(f"{spec.name}: built from your class ({spec.where}), which replaces the {kind} {spec.name} "
                   f"({old.where}) in this run; the {kind} is '{spec.replaced_as}'")
    return out


def _safe(fn):
    try:
        return fn()
    except FlopscopeError:
        return None
