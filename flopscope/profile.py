"""``profile()``: a model's per-layer record (params, shapes, MACs by kind, element-wise FLOPs).

The record is plain data; :mod:`flopscope.render` turns the same record into a rich table,
JSON, CSV or Markdown.  JSON schema (stable; later features add keys, never rename)::

    {"model", "img": [H, W], "batch",
     "layers": [{"index", "from", "n", "module", "args", "out_shape", "params", "macs", "flops",
                 "elementwise_flops", "linear_in_hw", "counted_by", "macs_by_kind", "model_info_flops"}],
     "totals": {"params", "macs", "flops", "elementwise_flops", "macs_by_kind", "flops_incl_elementwise"},
     "model_info_gflops", "model_info_probe", "stride", "units", "notes", "fused"}
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn as nn

from . import units
from .builder import DetectionModel, build_model
from .config import show
from .cost import MAC_KINDS
from .engine import count_layers
from .errors import FlopscopeError
from .inputs import MAX_IMG, parse_img  # noqa: F401  (re-exported: profile.parse_img)
from .fuse import fused_copy, is_fused
from .rules import thop_macs
from .scaling import proportional_when_doubled

UNITS = units.pick(
    ("params", "count"), "macs", "flops", "elementwise_flops", "model_info_gflops", "fused")


@dataclass
class LayerRecord:
    index: int
    f: int | list
    n: int
    module: str
    args: list
    out_shape: object
    params: int
    macs_by_kind: dict
    elementwise_flops: int
    linear_in_hw: bool | None
    counted_by: str
    model_info_flops: float | None = None
    terms: list = field(default_factory=list, repr=False)

    @property
    def macs(self) -> int:
        return sum(self.macs_by_kind.values())

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def to_dict(self) -> dict:
        return {
            "index": self.index, "from": self.f, "n": self.n, "module": self.module, "args": jsonable(self.args),
            "out_shape": jsonable(self.out_shape), "params": self.params, "macs": self.macs, "flops": self.flops,
            "elementwise_flops": self.elementwise_flops, "linear_in_hw": self.linear_in_hw,
            "counted_by": self.counted_by, "macs_by_kind": dict(self.macs_by_kind),
            "model_info_flops": self.model_info_flops,
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

    def totals(self) -> dict:
        return {"params": self.params, "macs": self.macs, "flops": self.flops,
                "elementwise_flops": self.elementwise_flops, "macs_by_kind": self.macs_by_kind,
                "flops_incl_elementwise": self.flops + self.elementwise_flops}

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
                "stride": self.stride, "units": UNITS, "notes": list(self.notes), "fused": self.fused}


def jsonable(v):
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, nn.Module):
        return repr(v)
    return str(v)


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


def profile(cfg_or_module, img=640, batch: int = 1, nc: int | None = None, fuse: bool = False, train: bool = False,
            freeze: int = 0, amp: bool = False, optimizer: str = "sgd", gpu_mem=None) -> Report:
    """Count a model (config name / path / dict, or a built :class:`DetectionModel`).

    ``fuse=True`` counts the model as the framework's ``fuse()`` leaves it (a given model is copied
    first, never changed).  ``train=True`` adds the training cost (:func:`flopscope.train.train_profile`:
    backward MACs, activation memory; ``freeze`` / ``amp`` / ``optimizer`` / ``gpu_mem``)."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch <= 0:
        raise FlopscopeError(f"--batch must be a positive integer, got {batch!r}")
    if batch > MAX_BATCH:
        raise FlopscopeError(f"--batch {show(batch)} is not a plausible batch size (max {MAX_BATCH})")
    model = cfg_or_module if isinstance(cfg_or_module, DetectionModel) else build_model(cfg_or_module, nc=nc)
    notes: list[str] = []
    if fuse and not is_fused(model):
        model = fused_copy(model)
    if is_fused(model):
        notes.extend(model.flopscope_fuse_summary.notes())
    hw = check_img(model, parse_img(img), notes)
    layers = _layer_costs(model, batch, hw)
    doubled = _safe(lambda: _layer_costs(model, batch, (2 * hw[0], 2 * hw[1])))
    probe = int(max(model.stride.max().item(), 32))
    probed = _safe(lambda: _layer_costs(model, 1, (probe, probe)))
    scale = hw[0] * hw[1] / probe ** 2
    records = []
    for k, (info, lc) in enumerate(zip(model.layers, layers)):
        m = model.model[k]
        linear = None
        if doubled is not None:
            a = lc.cost.macs() + lc.cost.elementwise_flops
            b = doubled[k].cost.macs() + doubled[k].cost.elementwise_flops
            linear = proportional_when_doubled(a, b)
        records.append(LayerRecord(
            info.index, info.f, info.n, info.module, info.args, lc.out_shape,
            sum(p.numel() for p in m.parameters()), lc.cost.by_kind(), lc.cost.elementwise_flops, linear,
            lc.counted_by, 2 * thop_macs(probed[k].cost.terms) * scale if probed is not None else None,
            lc.cost.terms))
    mi = None
    if probed is not None:
        mi = sum(r.model_info_flops for r in records) / 1e9
    else:
        notes.append(f"YOLOv5's {probe}x{probe} model_info probe does not run on this model")
    tr = None
    if train:
        from .train import train_profile

        tr = train_profile(model, hw, batch, freeze=freeze, amp=amp, optimizer=optimizer, gpu_mem=gpu_mem)
    elif freeze or amp or gpu_mem is not None:
        raise FlopscopeError("--freeze, --amp and --gpu-mem describe training: add --train")
    return Report(model.name, hw, batch, records, mi, probe, [float(s) for s in model.stride.tolist()], notes,
                  fused=is_fused(model), train=tr)


def _safe(fn):
    try:
        return fn()
    except FlopscopeError:
        return None
