"""Deploy (fused) models: each framework's ``fuse()`` as a registry of fuse rules.

A fuse rule sits next to the module it describes, like a cost formula::

    @fuser(Conv)                      # YOLOv5's fuse(): isinstance(m, (Conv, DWConv)) -> BN folded
    def fuse_conv(m):
        ...                           # change ``m`` in place and return True,
                                      # or return a replacement module, or None/False (nothing to do)

Rules are looked up along the class's MRO (the most specific registered class wins), because the
frameworks' own ``fuse()`` test with ``isinstance``: a subclass of YOLOv5's ``Conv`` is fused like
``Conv``.  :func:`fuse_model` walks every sub-module once (as ``model.modules()`` does) and applies
the rules; it works on the meta device (the folded conv is allocated on the weights' device: no
values on meta, the real fold on CPU / CUDA).  Modules of other frameworks (Ultralytics' RepConv,
RepVGGDW, v10Detect ...) add their own rule in their own file with the same decorator.
"""
from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn

from .registry import RegistryError, _where

FUSERS: dict[type, Callable] = {}


def fuser(*classes: type):
    """Function decorator: the fuse rule of module class(es) (and their subclasses)."""

    def deco(fn):
        for cls in classes:
            if cls in FUSERS and FUSERS[cls] is not fn:
                raise RegistryError(f"a fuse rule for {cls.__qualname__} is defined twice: "
                                    f"{_where(FUSERS[cls])} and {_where(fn)}")
            FUSERS[cls] = fn
        return fn

    return deco


#: classes the framework's own fuse() changes but that have no fuse rule here yet: class -> (what fuse()
#: does to them, predicate on the module).  ``--fuse`` on a model holding one is refused in one line
#: rather than printing the unfused figure as "fused".
PENDING: dict[type, tuple[str, Callable]] = {}


def fuse_pending(cls: type, what: str, when: Callable | None = None) -> None:
    """Declare (next to the module) that its framework's fuse() changes ``cls`` in a way not yet ruled here."""
    PENDING[cls] = (what, when or (lambda m: True))


def _pending(m: nn.Module):
    if fuser_for(type(m)) is not None:
        return None
    for base in type(m).__mro__:
        if base in PENDING:
            what, when = PENDING[base]
            return what if when(m) else None
    return None


def fuser_for(cls: type):
    """The fuse rule of ``cls`` or of its nearest registered base class."""
    for base in cls.__mro__:
        if base in FUSERS:
            return FUSERS[base]
    return None


@dataclass
class FuseSummary:
    fused: Counter = field(default_factory=Counter)  # class name -> modules changed
    unfused_norms: Counter = field(default_factory=Counter)  # owner class name -> norms left as they are

    def notes(self, framework: str = "YOLOv5") -> list[str]:
        done = ", ".join(f"{n} {c}" for c, n in sorted(self.fused.items())) or "nothing"
        out = [f"fused as {framework}'s fuse() leaves the model: {done} (BatchNorm folded into the conv, "
               f"which gets a bias)"]
        if self.unfused_norms:
            left = ", ".join(f"{n} in {c}" for c, n in sorted(self.unfused_norms.items()))
            out.append(f"norm layers {framework}'s fuse() leaves in place (still counted): {left}")
        return out


def fuse_model(model: nn.Module) -> FuseSummary:
    """Apply every registered fuse rule to ``model`` in place; returns what was changed."""
    from .registry import load_zoo

    load_zoo()
    pending = Counter()
    for m in model.modules():
        what = _pending(m)
        if what:
            pending[f"{type(m).__name__} ({what})"] += 1
    if pending:
        from .errors import FlopscopeError

        left = ", ".join(f"{n} x{c}" for n, c in sorted(pending.items()))
        raise FlopscopeError(f"--fuse: the framework's fuse() also changes {left}, which flopscope has no fuse rule "
                             f"for yet; refusing rather than printing a wrong fused figure (count without --fuse)")
    summary = FuseSummary()
    parents = {}
    for m in model.modules():
        for cname, child in m.named_children():
            parents[id(child)] = (m, cname)
    for name, m in list(model.named_modules()):
        fn = fuser_for(type(m))
        if fn is None:
            continue
        res = fn(m)
        if isinstance(res, nn.Module) and res is not m:
            parent, cname = parents[id(m)]
            setattr(parent, cname, res)
            summary.fused[type(m).__name__] += 1
        elif res:
            summary.fused[type(m).__name__] += 1
    for owner in model.modules():
        for child in owner.children():
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                summary.unfused_norms[type(owner).__name__] += 1
    model.flopscope_fused = True
    model.flopscope_fuse_summary = summary
    return summary


def fused_copy(model: nn.Module) -> nn.Module:
    """A fused deep copy (the caller's model is left as it is)."""
    m = copy.deepcopy(model)
    fuse_model(m)
    return m


def is_fused(model: nn.Module) -> bool:
    return bool(getattr(model, "flopscope_fused", False))


def fold_conv_bn(conv: nn.Module, bn: nn.Module) -> nn.Conv2d:
    """One ``nn.Conv2d`` with bias equal to ``bn(conv(x))`` (eval statistics), as frameworks fold it.

    On the meta device only the shapes exist; elsewhere the folded weights are computed:
    ``w' = w * gamma / sqrt(var + eps)`` per output channel, ``b' = beta + (b - mean) * gamma / sqrt(var + eps)``.
    """
    w = conv.weight
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                      padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True,
                      padding_mode=getattr(conv, "padding_mode", "zeros"), device=w.device, dtype=w.dtype)
    fused.requires_grad_(False)
    if w.device.type != "meta":
        with torch.no_grad():
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            fused.weight.copy_(w * scale.reshape(-1, *([1] * (w.dim() - 1))))
            b = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            fused.bias.copy_(bn.bias + (b - bn.running_mean) * scale)
    return fused
