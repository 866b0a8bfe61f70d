"""``profile()``: a model's per-layer record (params, shapes, MACs by kind, element-wise FLOPs).

The record is plain data; :mod:`flopscope.render` turns the same record into a rich table,
JSON, CSV or Markdown.  JSON schema (stable; later features add keys, never rename)::

    {"model", "img": [H, W], "batch",
     "layers": [{"index", "from", "n", "module", "args", "out_shape", "params", "macs", "flops",
                 "elementwise_flops", "linear_in_hw", "counted_by", "macs_by_kind", "model_info_flops"}],
     "totals": {"params", "macs", "flops", "elementwise_flops", "macs_by_kind", "flops_incl_elementwise"},
     "model_info_gflops", "model_info_probe", "stride", "units", "notes"}
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn as nn

from .builder import DetectionModel, build_model
from .dialects import get_dialect
from .config import show
from .cost import MAC_KINDS
from .engine import count_layers
from .errors import FlopscopeError
from .rules import thop_macs

UNITS = {
    "params": "count",
    "macs": "multiply-accumulates (conv + linear + matmul); bias adds not counted",
    "flops": "2 x macs",
    "elementwise_flops": "FLOPs of norms, activations, pooling, upsampling, softmax, adds/muls (per-element table)",
    "model_info_gflops": "what YOLOv5's model_info prints: thop MACs on a stride-sized probe x 2 x (H*W / probe^2), in G",
}


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
        return {"model": self.model, "img": list(self.img), "batch": self.batch,
                "layers": [r.to_dict() for r in self.layers], "totals": self.totals(),
                "model_info_gflops": self.model_info_gflops, "model_info_probe": self.model_info_probe,
                "stride": self.stride, "units": UNITS, "notes": list(self.notes)}


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


MAX_IMG = 1_000_000  # pixels per side; the analytic path handles it without memory, figures stay exact ints
MAX_BATCH = 1_000_000


def parse_img(img) -> tuple[int, int]:
    """640 -> (640, 640); '640,384' or (640, 384) -> (640, 384) as (H, W)."""
    if isinstance(img, str):
        parts = [p.strip() for p in img.replace("x", ",").split(",") if p.strip()]
        try:
            vals = [int(p) for p in parts]
        except ValueError:
            raise FlopscopeError(f"--img must be an integer or H,W integers, got {show(img)}") from None
    elif isinstance(img, int) and not isinstance(img, bool):
        vals = [img]
    elif isinstance(img, (tuple, list)):
        vals = list(img)
    else:
        raise FlopscopeError(f"--img must be an integer or H,W integers, got {show(img)}")
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in vals):
        raise FlopscopeError(f"--img must be one or two positive integers, got {show(img)}")
    if max(vals) > MAX_IMG:
        raise FlopscopeError(f"--img {show(img).strip(chr(39))} is not a plausible image size (max {MAX_IMG})")
    return vals[0], vals[1]


def check_img(model: DetectionModel, hw: tuple[int, int], notes: list[str]) -> tuple[int, int]:
    s = int(max(model.stride.max().item(), 1))
    fixed = tuple(-(-v // s) * s for v in hw)
    if fixed != tuple(hw):
        notes.append(f"image size {hw[0]}x{hw[1]} is not a multiple of the max stride {s}; "
                     f"counted at {fixed[0]}x{fixed[1]} as YOLOv5 would")
    return fixed


def _layer_costs(model, batch, hw):
    return count_layers(model, (batch, model.ch, hw[0], hw[1]))


def profile(cfg_or_module, img=640, batch: int = 1, nc: int | None = None) -> Report:
    """Count a model (config name / path / dict, or a built :class:`DetectionModel`)."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch <= 0:
        raise FlopscopeError(f"--batch must be a positive integer, got {batch!r}")
    if batch > MAX_BATCH:
        raise FlopscopeError(f"--batch {show(batch)} is not a plausible batch size (max {MAX_BATCH})")
    model = cfg_or_module if isinstance(cfg_or_module, DetectionModel) else build_model(cfg_or_module, nc=nc)
    notes: list[str] = list(getattr(model.config, "notes", []))
    hw = check_img(model, parse_img(img), notes)
    layers = _layer_costs(model, batch, hw)
    doubled = _safe(lambda: _layer_costs(model, batch, (2 * hw[0], 2 * hw[1])))
    dialect = get_dialect(model.config.dialect)
    probe = dialect.model_info_probe(model)
    probed = _safe(lambda: _layer_costs(model, 1, (probe, probe))) if probe else None
    probe = probe or int(max(model.stride.max().item(), 32))
    scale = hw[0] * hw[1] / probe ** 2
    records = []
    for k, (info, lc) in enumerate(zip(model.layers, layers)):
        m = model.model[k]
        linear = None
        if doubled is not None:
            a = lc.cost.macs() + lc.cost.elementwise_flops
            b = doubled[k].cost.macs() + doubled[k].cost.elementwise_flops
            linear = b == 4 * a
        records.append(LayerRecord(
            info.index, info.f, info.n, info.module, info.args, lc.out_shape,
            sum(p.numel() for p in m.parameters()), lc.cost.by_kind(), lc.cost.elementwise_flops, linear,
            lc.counted_by, 2 * thop_macs(probed[k].cost.terms) * scale if probed is not None else None,
            lc.cost.terms))
    mi = None
    if probed is not None:
        mi = sum(r.model_info_flops for r in records) / 1e9
    elif dialect.model_info_note:
        notes.append(dialect.model_info_note)
    else:
        notes.append(f"YOLOv5's {probe}x{probe} model_info probe does not run on this model")
    return Report(model.name, hw, batch, records, mi, probe, [float(s) for s in model.stride.tolist()], notes)


def _safe(fn):
    try:
        return fn()
    except FlopscopeError:
        return None
