"""Training cost on the meta device: backward MACs / FLOPs, activation memory, optimizer memory.

``train_profile(model, img, batch)`` runs, layer by layer, a train-mode forward and a backward of
the **meta** model under the op-level counter (:class:`flopscope.opcount.OpCounter`): no real
compute, no memory in proportion to the image.  The backward aten ops get their rules here, with
the same decorator as the forward ones:

* ``convolution_backward``: its ``output_mask`` says which gradients autograd asks for; grad-input
  (= the forward conv's MACs) only where the input needs a gradient (not for the first conv, not
  after frozen layers), grad-weight (= the forward conv's MACs) only where the weight is trainable,
  grad-bias as one add per gradient element;
* ``mm`` / ``bmm`` (linear and attention backward) are products like the forward ones (rules of the
  op counter); a product whose result has a trainable parameter's shape and whose operands are no
  parameter is a grad-weight term, every other backward product a grad-input term;
* norm / activation / pooling / resampling backward ops: element-wise FLOPs from
  ``ELEMENTWISE_COST`` (keys ``*.backward``).

Each layer's inputs are leaves that need a gradient exactly when an earlier trainable parameter
feeds them (YOLOv5's ``--freeze N``: parameters of layers ``0..N-1`` get ``requires_grad=False``).
A layer output read by k later layers gets k - 1 gradient adds (autograd sums the contributions).

Activation memory: the bytes of the unique storages that autograd saves for backward
(``torch.autograd.graph.saved_tensors_hooks`` on the meta forward), parameters and buffers
excluded, for the dtype of each saved tensor (``--amp``: the forward under an fp16 autocast emulation).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from math import prod

import torch
import torch.nn as nn

from . import units
from .cost import MAC_KINDS
from .errors import ConfigError, FlopscopeError
from .opcount import OpCounter, _first_shape, _n, _ops, ew, mac, not_counted_note, op_rule

aten = torch.ops.aten

# ----------------------------------------------------------------------------------------------
# backward op rules


@op_rule(aten.convolution_backward)
def convolution_backward(grad_out, x, w, bias_sizes=None, stride=None, padding=None, dilation=None, transposed=False,
                         output_padding=None, groups=1, output_mask=(True, True, True), *, out, **kw):
    """grad-input and grad-weight each = the forward conv's MACs, only for the gradients asked for."""
    taps = prod(w[2:])
    per = _n(x) * w[1] * taps if transposed else _n(grad_out) * w[1] * taps
    recs = []
    if output_mask[0]:
        recs.append(mac("conv", per, _n(x)))
    if output_mask[1]:
        recs.append(mac("conv", per, prod(w)))
    if len(output_mask) > 2 and output_mask[2]:
        recs.append(ew("add", _n(grad_out)))  # grad-bias: a sum over every gradient element
    return recs


def _grad_rule(key: str, which: int = 0):
    """ELEMENTWISE_COST[key] per element of the gradient produced (the shape of argument ``which``)."""
    def rule(*args, out, **kw):
        shape = _first_shape(out) or (args[which] if which < len(args) and isinstance(args[which], tuple) else ())
        return [ew(key, _n(shape))]
    rule.__qualname__ = f"backward[{key}]"
    return rule


_BACKWARD = {
    "BatchNorm.backward": ("native_batch_norm_backward", "cudnn_batch_norm_backward", "miopen_batch_norm_backward",
                           "batch_norm_backward", "_batch_norm_backward"),
    "LayerNorm.backward": ("native_layer_norm_backward",),
    "GroupNorm.backward": ("native_group_norm_backward",),
    "ReLU.backward": ("threshold_backward",),
    "LeakyReLU.backward": ("leaky_relu_backward", "rrelu_with_noise_backward", "prelu_backward",
                           "_prelu_kernel_backward"),
    "ReLU6.backward": ("hardtanh_backward",),
    "SiLU.backward": ("silu_backward",),
    "Sigmoid.backward": ("sigmoid_backward",),
    "Tanh.backward": ("tanh_backward",),
    "Hardswish.backward": ("hardswish_backward",),
    "Hardsigmoid.backward": ("hardsigmoid_backward",),
    "GELU.backward": ("gelu_backward",),
    "Mish.backward": ("mish_backward",),
    "ELU.backward": ("elu_backward", "softplus_backward", "log_sigmoid_backward", "glu_backward"),
    "softmax.backward": ("_softmax_backward_data",),
    "log_softmax.backward": ("_log_softmax_backward_data",),
    "MaxPool2d.backward": ("max_pool2d_with_indices_backward", "max_pool3d_with_indices_backward",
                           "adaptive_max_pool2d_backward", "max_pool2d_backward"),
    "AdaptiveAvgPool2d": ("_adaptive_avg_pool2d_backward", "_adaptive_avg_pool3d_backward"),
    "Upsample.nearest.backward": ("upsample_nearest2d_backward", "_upsample_nearest_exact2d_backward",
                                  "upsample_nearest1d_backward", "upsample_nearest3d_backward"),
    "Upsample.bilinear.backward": ("upsample_bilinear2d_backward", "upsample_linear1d_backward",
                                   "upsample_bicubic2d_backward", "_upsample_bilinear2d_aa_backward"),
    "grid_sample.backward": ("grid_sampler_2d_backward", "grid_sampler_3d_backward",
                             "_grid_sampler_2d_cpu_fallback_backward"),
    "add": ("embedding_dense_backward", "masked_scatter", "index_add", "index_add_", "scatter_add",
            "scatter_add_", "_index_put_impl", "index_reduce", "scatter_reduce"),
}
for _key, _names in _BACKWARD.items():
    op_rule(*_ops(*_names))(_grad_rule(_key))


@op_rule(*_ops("avg_pool2d_backward", "avg_pool3d_backward"))
def avg_pool_backward(grad_out, x, kernel_size, *args, out, **kw):
    """1 add per window element of every output gradient."""
    k = kernel_size if isinstance(kernel_size, (list, tuple)) else [kernel_size] * (len(x) - 2)
    return [ew("AvgPool2d.backward", _n(grad_out), prod(k))]


# ----------------------------------------------------------------------------------------------
# the report

OPTIMIZER_STATES = {"sgd": 1, "adamw": 2, "adam": 2}  # fp32 buffers per trainable parameter
UNITS = units.pick("backward_macs", "backward_flops", "backward_elementwise_flops", "train_flops",
                   "activation_bytes", "memory")  #: added to the report's units with --train


@dataclass
class TrainLayer:
    index: int
    forward_macs: dict
    backward_macs: dict  # kind -> MACs
    grad_input_macs: int
    grad_weight_macs: int
    backward_elementwise_flops: int
    activation_bytes: int
    trainable_params: int
    frozen_params: int
    not_counted: Counter = field(default_factory=Counter)

    @property
    def backward_flops(self) -> int:
        return 2 * sum(self.backward_macs.values())

    @property
    def train_flops(self) -> int:
        return 2 * sum(self.forward_macs.values()) + self.backward_flops

    def to_dict(self) -> dict:
        return {"backward_macs": sum(self.backward_macs.values()), "backward_flops": self.backward_flops,
                "grad_input_macs": self.grad_input_macs, "grad_weight_macs": self.grad_weight_macs,
                "backward_elementwise_flops": self.backward_elementwise_flops, "train_flops": self.train_flops,
                "activation_bytes": self.activation_bytes, "trainable_params": self.trainable_params,
                "frozen_params": self.frozen_params}


@dataclass
class TrainReport:
    layers: list[TrainLayer]
    batch: int
    freeze: int
    amp: bool
    optimizer: str
    params: int
    trainable_params: int
    param_bytes: int
    grad_bytes: int
    optimizer_bytes: int
    activation_bytes_per_image: float | None
    activation_bytes_fixed: float | None
    gpu_mem: int | None = None
    max_batch: int | None = None
    notes: list[str] = field(default_factory=list)

    def _sum(self, attr) -> int:
        return sum(getattr(r, attr) for r in self.layers)

    @property
    def backward_flops(self) -> int:
        return self._sum("backward_flops")

    @property
    def train_flops(self) -> int:
        return self._sum("train_flops")

    @property
    def activation_bytes(self) -> int:
        return self._sum("activation_bytes")

    @property
    def static_bytes(self) -> int:
        return self.param_bytes + self.grad_bytes + self.optimizer_bytes

    def totals(self) -> dict:
        return {"backward_macs": self.backward_flops // 2, "backward_flops": self.backward_flops,
                "grad_input_macs": self._sum("grad_input_macs"), "grad_weight_macs": self._sum("grad_weight_macs"),
                "backward_elementwise_flops": self._sum("backward_elementwise_flops"),
                "train_flops": self.train_flops, "activation_bytes": self.activation_bytes,
                "trainable_params": self.trainable_params, "frozen_params": self.params - self.trainable_params}

    def to_dict(self) -> dict:
        return {"batch": self.batch, "freeze": self.freeze, "amp": self.amp, "optimizer": self.optimizer,
                "memory": {"params_bytes": self.param_bytes, "grads_bytes": self.grad_bytes,
                           "optimizer_bytes": self.optimizer_bytes, "activation_bytes": self.activation_bytes,
                           "total_bytes": self.static_bytes + self.activation_bytes,
                           "activation_bytes_per_image": self.activation_bytes_per_image,
                           "activation_bytes_fixed": self.activation_bytes_fixed},
                "gpu_mem_bytes": self.gpu_mem, "max_batch_estimate": self.max_batch,
                "max_batch_note": MAX_BATCH_NOTE if self.gpu_mem else None}


MAX_BATCH_NOTE = ("estimate: params + grads + optimizer state + saved activations (linear in batch) must fit; "
                  "excludes the CUDA context, cuDNN workspaces, the transient gradients of backward, the loss "
                  "and allocator fragmentation (keep a margin)")


# ----------------------------------------------------------------------------------------------
# counting


def freeze_layers(model: nn.Module, n: int) -> None:
    """YOLOv5's ``--freeze N``: parameters whose name contains ``model.{x}.`` for x < N are frozen."""
    names = [f"model.{x}." for x in range(n)]
    for k, v in model.named_parameters():
        v.requires_grad_(not any(x in k for x in names))


def _tensors(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in _tensors(v)]
    if isinstance(out, dict):
        return [t for v in out.values() for t in _tensors(v)]
    return []


def _leaf(v):
    """The layer output as the next layer's input: a leaf (graph cut), needing a grad as it did."""
    if isinstance(v, torch.Tensor):
        leaf = v.detach()
        return leaf.requires_grad_(v.requires_grad) if v.is_floating_point() else leaf
    if isinstance(v, list):
        return [_leaf(t) for t in v]
    if isinstance(v, tuple):
        return tuple(_leaf(t) for t in v)
    return v


def _storage_key(t: torch.Tensor):
    return t.untyped_storage()._cdata


class _BackwardCounter(OpCounter):
    """The op counter, also splitting backward products into grad-input and grad-weight terms."""

    def __init__(self, root, trainable_shapes):
        super().__init__(root)
        self.trainable_shapes = trainable_shapes
        self.grad_input = 0
        self.grad_weight = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        before = {k: v[0] for k, v in self.records.items() if k[2] in MAC_KINDS}
        out = super().__torch_dispatch__(func, types, args, kwargs)
        packet = func._overloadpacket
        added = sum(v[0] for k, v in self.records.items() if k[2] in MAC_KINDS) - sum(before.values())
        if not added:
            return out
        if packet is aten.convolution_backward:
            mask = args[10] if len(args) > 10 else (kwargs or {}).get("output_mask", (True, True, True))
            w = args[2]
            taps = prod(w.shape[2:])
            transposed = args[7] if len(args) > 7 else False
            per = (args[1].numel() if transposed else args[0].numel()) * w.shape[1] * taps
            self.grad_input += per if mask[0] else 0
            self.grad_weight += per if mask[1] else 0
        else:
            ops = [a for a in args if isinstance(a, torch.Tensor)]
            uses_param = any(id(a._base if a._is_view() else a) in self._params for a in ops)
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else None
            if not uses_param and shape is not None and (shape in self.trainable_shapes or
                                                         shape[::-1] in self.trainable_shapes):
                self.grad_weight += added
            else:
                self.grad_input += added
        return out


def _consumers(model) -> Counter:
    c: Counter = Counter()
    for info in model.layers:
        for j in [info.f] if isinstance(info.f, int) else info.f:
            c[info.index - 1 if j == -1 else (j % info.index if j < 0 else j)] += 1
    return c


def _count(model, batch: int, hw, amp: bool):
    """Per layer: (forward counter, backward counter, saved storages first seen there, trainable/frozen)."""
    from .engine import layer_inputs

    params = {id(p) for p in model.parameters()} | {id(b) for b in model.buffers()}
    param_storages = {_storage_key(p) for p in model.parameters()} | {_storage_key(b) for b in model.buffers()}
    seen: dict = {}
    keep: list = []  # saved meta tensors stay referenced: their storage keys stay unique
    x = torch.empty((batch, model.ch, hw[0], hw[1]), device="meta")
    y: list = []
    out_layers = []
    consumers = _consumers(model)
    for m, info in zip(model.model, model.layers):
        xin = layer_inputs(info.f, x, y)
        saved_here = [0]

        def pack(t):
            p = t._base if t._is_view() else t
            if id(p) in params:
                if amp and p.dim() >= 2 and ("w", id(p)) not in seen:  # autocast's saved fp16 weight copy
                    seen["w", id(p)] = info.index
                    saved_here[0] += 2 * p.numel()
                return t
            key = _storage_key(t)
            if key in param_storages:
                return t
            if key not in seen:
                seen[key] = info.index
                saved_here[0] += t.untyped_storage().nbytes()
                keep.append(t)
            return t

        trainable = {tuple(p.shape) for p in m.parameters() if p.requires_grad}
        try:
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), _autocast(amp), \
                    OpCounter(m) as fwd:
                out = m(xin)
            outs = [t for t in _tensors(out) if t.requires_grad]
            bwd = _BackwardCounter(m, trainable)
            if outs:
                with bwd:
                    grads = [torch.ones_like(t) for t in outs]
                    torch.autograd.backward(outs, grads)
        except FlopscopeError:
            raise
        except Exception as e:  # noqa: BLE001 - e.g. train-mode BatchNorm on a 1x1 map at batch 1
            msg = str(e).replace("\n", " ")[:200]
            raise ConfigError(f"{info.module}: cannot run a training step at batch {batch}, image {hw[0]}x{hw[1]}: "
                              f"{type(e).__name__}: {msg} (use a larger --img or --batch)",
                              file=model.config.file, layer=info.index, field="train") from e
        for t in _tensors(xin):
            t.grad = None
        extra_adds = max(consumers.get(info.index, 0) - 1, 0) * sum(t.numel() for t in _tensors(out)
                                                                    if t.requires_grad)
        x = _leaf(out)
        y.append(x)
        n_train = sum(p.numel() for p in m.parameters() if p.requires_grad)
        n_all = sum(p.numel() for p in m.parameters())
        out_layers.append((info, fwd, bwd, saved_here[0], extra_adds, n_train, n_all - n_train))
        for p in m.parameters():
            p.grad = None
    return out_layers


class _autocast:
    """``--amp``: the forward as CUDA's fp16 autocast runs it (emulated, since autocast does not apply to
    meta tensors): convolutions and products take fp16 casts of their inputs; softmax, norms other than
    BatchNorm and reductions run in fp32; everything else in the dtype it gets."""

    def __init__(self, on: bool):
        self.on = on
        self.mode = None

    def __enter__(self):
        if self.on:
            from .amp import AutocastEmulation

            self.mode = AutocastEmulation()
            self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        if self.mode is not None:
            self.mode.__exit__(*exc)


def parse_mem(text) -> int:
    """'24GiB', '24GB', '24G', '24000MiB', 24e9 -> bytes."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return int(text)
    s = str(text).strip().replace(" ", "")
    units = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 2**10, "m": 1e6, "mb": 1e6, "mib": 2**20, "g": 1e9,
             "gb": 1e9, "gib": 2**30, "t": 1e12, "tb": 1e12, "tib": 2**40}
    i = len(s)
    while i and not (s[i - 1].isdigit() or s[i - 1] == "."):
        i -= 1
    num, unit = s[:i], s[i:].lower()
    try:
        value = float(num)
    except ValueError:
        value = -1
    if unit not in units or value <= 0:
        raise FlopscopeError(f"--gpu-mem must be a size such as 24GiB, 24GB or 16000MiB, got {text!r}")
    return int(value * units[unit])


def train_profile(model, img, batch: int = 1, freeze: int = 0, amp: bool = False, optimizer: str = "sgd",
                  gpu_mem=None) -> TrainReport:
    """Training cost of a built (meta) :class:`DetectionModel` at ``img`` (H, W) and ``batch``."""
    opt = str(optimizer).lower()
    if opt not in OPTIMIZER_STATES:
        from .errors import suggestion

        raise FlopscopeError(f"--optimizer must be sgd or adamw, got {optimizer!r}{suggestion(opt, OPTIMIZER_STATES)}")
    if isinstance(freeze, bool) or not isinstance(freeze, int) or freeze < 0:
        raise FlopscopeError(f"--freeze must be a non-negative integer (layers 0..N-1 frozen), got {freeze!r}")
    if freeze > len(model.layers):
        raise FlopscopeError(f"--freeze {freeze}: the model has only {len(model.layers)} layers")
    mem = parse_mem(gpu_mem) if gpu_mem is not None else None
    from .fuse import is_fused

    if is_fused(model):
        raise FlopscopeError("--train counts the training graph; --fuse is the deploy graph: use one of them")
    if next(model.parameters(), torch.empty(0, device="meta")).device.type != "meta":
        raise FlopscopeError("train_profile needs a model on the meta device (build_model(cfg))")
    import copy

    model = copy.deepcopy(model)
    model.train()
    freeze_layers(model, freeze)
    pbytes = sum(p.numel() * p.element_size() for p in model.parameters())
    gbytes = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    if amp:
        model.half()  # the fp16 forward autocast runs; master params, grads and optimizer state stay fp32
    layers = _count(model, batch, img, amp)
    per_image = fixed = None
    if mem is not None:
        # activation memory is linear in the batch up to per-channel statistics: one more image tells the slope
        act1 = sum(r[3] for r in layers)
        per_image = sum(r[3] for r in _count(model, batch + 1, img, amp)) - act1
        fixed = act1 - per_image * batch
    notes: list[str] = []
    records = []
    unruled: Counter = Counter()
    for info, fwd, bwd, act, extra_adds, n_train, n_frozen in layers:
        ft, bt = fwd.total(), bwd.total()
        unruled.update(bwd.not_counted)
        records.append(TrainLayer(info.index, {k: ft[k] for k in MAC_KINDS}, {k: bt[k] for k in MAC_KINDS},
                                  bwd.grad_input, bwd.grad_weight, bt["elementwise"] + extra_adds, act, n_train,
                                  n_frozen, bwd.not_counted))
    note = not_counted_note(unruled)
    if note:
        notes.append(f"backward element-wise FLOPs: {note}")
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    obytes = OPTIMIZER_STATES[opt] * gbytes
    rep = TrainReport(records, batch, freeze, amp, opt, n_params, n_train, pbytes, gbytes, obytes, per_image, fixed,
                      mem)
    if freeze:
        notes.append(f"--freeze {freeze}: layers 0..{freeze - 1} frozen (YOLOv5's rule), {n_params - n_train:,} "
                     f"frozen / {n_train:,} trainable params")
    if amp:
        notes.append("--amp: activations as CUDA fp16 autocast saves them (emulated on meta: products in fp16, "
                     "softmax / LayerNorm / GroupNorm / reductions in fp32); params, grads and optimizer state fp32")
    if mem is not None:
        free = mem - rep.static_bytes - fixed
        rep.max_batch = max(int(free // per_image), 0) if per_image > 0 else None
        notes.append(f"largest batch that fits {mem / 2**30:.1f} GiB: {rep.max_batch} ({MAX_BATCH_NOTE})")
    rep.notes = notes
    return rep


def fmt_bytes(n) -> str:
    if n is None:
        return "-"
    for unit, k in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= k:
            return f"{n / k:.2f} {unit}"
    return f"{int(n)} B"


def summary_lines(rep: TrainReport) -> list[str]:
    t = rep.totals()
    lines = [
        f"training (batch {rep.batch}{', fp16 autocast' if rep.amp else ''}): backward {t['backward_macs'] / 1e9:.3f} "
        f"GMACs = {t['backward_flops'] / 1e9:.3f} GFLOPs (grad-input {t['grad_input_macs'] / 1e9:.3f} G + grad-weight "
        f"{t['grad_weight_macs'] / 1e9:.3f} G MACs; + {t['backward_elementwise_flops'] / 1e9:.3f} element-wise "
        f"GFLOPs), forward + backward {t['train_flops'] / 1e9:.3f} GFLOPs",
        f"memory: activations saved for backward {fmt_bytes(rep.activation_bytes)}, params {fmt_bytes(rep.param_bytes)}"
        f" + grads {fmt_bytes(rep.grad_bytes)} + {rep.optimizer} state {fmt_bytes(rep.optimizer_bytes)} = "
        f"{fmt_bytes(rep.static_bytes + rep.activation_bytes)}; trainable {rep.trainable_params:,}, frozen "
        f"{rep.params - rep.trainable_params:,} params",
    ]
    return lines + rep.notes


def print_train(report, console=None) -> None:
    """The training table (per layer: backward GFLOPs, grad-input / grad-weight GMACs, forward+backward GFLOPs,
    activation MiB, trainable params) and the summary lines."""
    import sys

    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console() if sys.stdout.isatty() else Console(width=200)
    rep = report.train
    tab = Table(title=f"{report.model}: training cost (batch {rep.batch}"
                      f"{', --freeze ' + str(rep.freeze) if rep.freeze else ''}{', fp16 autocast' if rep.amp else ''})")
    for col in ("idx", "module", "bwd GFLOPs", "grad-in GMACs", "grad-w GMACs", "bwd elem. GFLOPs", "fwd+bwd GFLOPs",
                "activations", "trainable"):
        tab.add_column(col, justify="left" if col == "module" else "right")
    for r, t in zip(report.layers, rep.layers):
        tab.add_row(str(r.index), r.module, f"{t.backward_flops / 1e9:.3f}", f"{t.grad_input_macs / 1e9:.3f}",
                    f"{t.grad_weight_macs / 1e9:.3f}", f"{t.backward_elementwise_flops / 1e9:.3f}",
                    f"{t.train_flops / 1e9:.3f}", fmt_bytes(t.activation_bytes),
                    f"{t.trainable_params:,}" + (" (frozen)" if t.frozen_params and not t.trainable_params else ""))
    console.print(tab)
    for line in summary_lines(rep):
        console.print(line, highlight=False, markup=False)
