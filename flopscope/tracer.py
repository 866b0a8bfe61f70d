"""Shape propagation with cost formulas: run a module's formula instead of its forward.

A :class:`Tracer` is called like a module, but with shapes (tuples of ints, or lists of them for
multi-input modules).  It looks up the formula registered for ``type(module)``, which records
terms and returns the output shape.  Modules without a formula are counted by
``torch.utils.flop_counter.FlopCounterMode`` on a real (meta-device, else CPU) forward of that
module alone, and the layer says so -- an unknown module is never silently 0.
"""
from __future__ import annotations

from math import prod

import torch

from .cost import ELEMENTWISE_COST, Cost
from .errors import FlopscopeError
from .registry import formula_for
from .shapes import Shape, ShapeError, cat_channels, check_channels, conv_out  # noqa: F401  (re-exported here)


class Tracer:
    """Collects the terms of one top-level call (one YAML layer)."""

    def __init__(self, allow_fallback: bool = True):
        self.cost = Cost()
        self.notes: list[str] = []  # how parts were counted, besides formulas
        self._prefix: list[str] = []
        self.allow_fallback = allow_fallback

    # -- recording -------------------------------------------------------------------------
    def _name(self, name: str) -> str:
        return ".".join([*self._prefix, name] if name else self._prefix)

    def mac(self, name: str, kind: str, op: str, value: int, elems: int = 0, rule: str | None = None) -> None:
        """Record MACs of ``kind`` ('conv', 'linear' or 'matmul')."""
        self.cost.add(self._name(name), kind, op, value, elems, rule)
        if rule:
            self.note(f"hand rule: {rule}")

    def ew(self, name: str, op: str, elems: int, per_elem: float | None = None, rule: str | None = None) -> None:
        """Record element-wise FLOPs: ``elems`` elements at ``ELEMENTWISE_COST[op]`` each."""
        c = ELEMENTWISE_COST[op] if per_elem is None else per_elem
        self.cost.add(self._name(name), "elementwise", op, round(c * elems), elems, rule)
        if rule:
            self.note(f"hand rule: {rule}")

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    # -- running -----------------------------------------------------------------------------
    def __call__(self, module, *inputs, name: str = ""):
        if isinstance(inputs[-1], str) and not name:  # t(child, x, "name")
            *inputs, name = inputs
        fn = formula_for(type(module))
        if name:
            self._prefix.append(name)
        try:
            if fn is None:
                return self._fallback(module, inputs)
            return fn(module, self, *inputs)
        finally:
            if name:
                self._prefix.pop()

    def _fallback(self, module, inputs):
        if not self.allow_fallback:
            raise FlopscopeError(f"no cost formula for {type(module).__qualname__}")
        out, counts, device = fcm_count(module, inputs)
        label = f"FlopCounterMode ({type(module).__name__}{', on CPU' if device == 'cpu' else ''})"
        self.note(label)
        for kind, macs in counts.items():
            if macs:
                self.cost.add(self._name(kind), kind, "FlopCounterMode", macs)
        return out


_FCM_KIND = {
    "convolution": "conv", "_convolution": "conv", "conv2d": "conv",
    "mm": "linear", "addmm": "linear", "linear": "linear",
    "bmm": "matmul", "baddbmm": "matmul", "_scaled_dot_product_efficient_attention": "matmul",
    "_scaled_dot_product_flash_attention": "matmul", "_scaled_dot_product_cudnn_attention": "matmul",
}


def _tensors(shapes, device):
    if isinstance(shapes, (list, tuple)) and shapes and isinstance(shapes[0], (list, tuple)):
        return [_tensors(s, device) for s in shapes]
    return torch.zeros(tuple(shapes), device=device)


def _shapes(out):
    if isinstance(out, torch.Tensor):
        return tuple(out.shape)
    if isinstance(out, (list, tuple)):
        return type(out)(_shapes(o) for o in out) if not isinstance(out, tuple) else tuple(_shapes(o) for o in out)
    return None


def fcm_count(module, inputs):
    """Run ``module`` on zero tensors of the given shapes under FlopCounterMode.

    Returns (output shapes, MACs by kind, device used).  Tries the module's own device (meta by
    default), then CPU with materialised weights.
    """
    from torch.utils.flop_counter import FlopCounterMode

    try:
        device = next(module.parameters()).device
    except StopIteration:
        device = torch.device("meta")
    attempts = [device] if device.type == "cpu" else [device, torch.device("cpu")]
    last = None
    for dev in attempts:
        if dev.type == "cpu" and last is not None:
            _check_cpu_budget(module, inputs, last)
        try:
            m = module
            if dev.type == "cpu" and device.type == "meta":
                import copy
                m = copy.deepcopy(module).to_empty(device="cpu")
                with torch.no_grad():
                    for p in m.parameters():
                        p.normal_(0, 0.01)
            args = [_tensors(s, dev) for s in inputs]
            with torch.no_grad(), FlopCounterMode(display=False) as fcm:
                out = m(*args)
            counts: dict[str, int] = {"conv": 0, "linear": 0, "matmul": 0}
            for op, flops in fcm.get_flop_counts().get("Global", {}).items():
                kind = _FCM_KIND.get(getattr(op, "__name__", str(op)).split(".")[0], "matmul")
                counts[kind] += int(flops) // 2
            return _shapes(out), counts, dev.type
        except Exception as e:  # noqa: BLE001 - report the last failure below
            last = e
    raise FlopscopeError(f"{type(module).__name__} has no cost formula and could not run for FlopCounterMode: "
                         f"{type(last).__name__}: {last}")


#: a module without formula that cannot run on meta is run on CPU only below this many bytes
#: of inputs + weights (the analytic path must never allocate memory in proportion to the image)
CPU_FALLBACK_BYTES = 1 << 30


def _numel(shapes) -> int:
    if isinstance(shapes, (list, tuple)) and shapes and isinstance(shapes[0], (list, tuple)):
        return sum(_numel(s) for s in shapes)
    return prod(shapes) if isinstance(shapes, (list, tuple)) else 0


def _check_cpu_budget(module, inputs, last) -> None:
    need = 4 * (sum(_numel(s) for s in inputs) + sum(p.numel() for p in module.parameters()))
    if need > CPU_FALLBACK_BYTES:
        raise FlopscopeError(
            f"{type(module).__name__} has no cost formula and does not run on the meta device "
            f"({type(last).__name__}: {str(last)[:120]}); counting it with a real CPU forward would need about "
            f"{need / 2**30:.1f} GiB, more than the {CPU_FALLBACK_BYTES >> 30} GiB allowed -- use a smaller --img")


numel = prod
