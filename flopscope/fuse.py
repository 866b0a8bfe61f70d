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
#: class -> what its fuse rule does, in words (for the report's notes)
WHAT: dict[type, str] = {}
DEFAULT_WHAT = "BatchNorm folded into the conv, which gets a bias"


def fuser(*classes: type, what: str = DEFAULT_WHAT):
    """Function decorator: the fuse rule of module class(es) (and their subclasses); ``what`` says in words
    what the framework's fuse() does to them (shown in the notes of a fused report)."""

    def deco(fn):
        for cls in classes:
            if cls in FUSERS and FUSERS[cls] is not fn:
                raise RegistryError(f"a fuse rule for {cls.__qualname__} is defined twice: "
                                    f"{_where(FUSERS[cls])} and {_where(fn)}")
            FUSERS[cls] = fn
            WHAT[cls] = what
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


def _what_for(cls: type) -> str:
    for base in cls.__mro__:
        if base in FUSERS:
            return WHAT.get(base, DEFAULT_WHAT)
    return DEFAULT_WHAT


@dataclass
class FuseSummary:
    fused: Counter = field(default_factory=Counter)  # class name -> modules changed
    unfused_norms: Counter = field(default_factory=Counter)  # owner class name -> norms left as they are
    framework: str = "YOLOv5"
    what: dict = field(default_factory=dict)  # class name -> what its rule did, in words

    def notes(self, framework: str | None = None) -> list[str]:
        framework = framework or self.framework
        groups: dict[str, list[str]] = {}
        for c, n in sorted(self.fused.items()):
            groups.setdefault(self.what.get(c, DEFAULT_WHAT), []).append(f"{n} {c}")
        done = "; ".join(f"{', '.join(names)} ({what})" for what, names in groups.items()) or "nothing"
        whose = f"{framework}'" if framework.endswith("s") else f"{framework}'s"
        out = [f"fused as {whose} fuse() leaves the model: {done}"]
        if self.unfused_norms:
            left = ", ".join(f"{n} in {c}" for c, n in sorted(self.unfused_norms.items()))
            out.append(f"norm layers {whose} fuse() leaves in place (still counted): {left}")
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
    dialect = getattr(getattr(model, "config", None), "dialect", "yolov5")
    summary = FuseSummary(framework="Ultralytics" if dialect == "ultralytics" else "YOLOv5")

    def visit(m: nn.Module, parent: nn.Module | None, cname: str | None):
        # pre-order, children read after the parent's rule ran -- as ``for m in model.modules()`` in the
        # frameworks' fuse(): a RepConv merges its branches (reading their BatchNorms) before its Convs are
        # visited, and the branches a head drops are never visited
        fn = fuser_for(type(m))
        if fn is not None:
            res = fn(m)
            if res is not None and res is not False:
                summary.fused[type(m).__name__] += 1
                summary.what[type(m).__name__] = _what_for(type(m))
            if isinstance(res, nn.Module) and res is not m:
                setattr(parent, cname, res)
                m = res
        for n, child in list(m.named_children()):
            if child is not None:
                visit(child, m, n)

    visit(model, None, None)
    for owner in model.modules():
        for child in owner.children():
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                summary.unfused_norms[type(owner).__name__] += 1
    model.fuse_summary = summary  # DetectionModel's declared field (is_fused reads it)
    return summary


def fused_copy(model: nn.Module) -> nn.Module:
    """A fused deep copy (the caller's model is left as it is)."""
    m = copy.deepcopy(model)
    fuse_model(m)
    return m


def is_fused(model: nn.Module) -> bool:
    """Whether ``fuse_model`` has folded this model (a DetectionModel's ``fuse_summary``)."""
    return getattr(model, "fuse_summary", None) is not None


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


def bn_scale_shift(bn: nn.Module, bias=None):
    """(scale, shift) of a BatchNorm in eval mode, so that ``bn(y + bias) = y * scale + shift`` per channel."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    b = bias if bias is not None else torch.zeros_like(bn.running_mean)
    return scale, bn.bias + (b - bn.running_mean) * scale


def conv2d_like(conv: nn.Module, weight=None, bias=None, kernel_size=None, padding=None) -> nn.Conv2d:
    """A bias-carrying ``nn.Conv2d`` with ``conv``'s geometry (optionally another kernel size / padding), on
    ``conv``'s device, gradients off; ``weight`` / ``bias`` copied in unless on the meta device."""
    w = conv.weight
    out = nn.Conv2d(conv.in_channels, conv.out_channels, kernel_size or conv.kernel_size, stride=conv.stride,
                    padding=conv.padding if padding is None else padding, dilation=conv.dilation, groups=conv.groups,
                    bias=True, padding_mode=getattr(conv, "padding_mode", "zeros"), device=w.device, dtype=w.dtype)
    out.requires_grad_(False)
    if w.device.type != "meta" and weight is not None:
        with torch.no_grad():
            out.weight.copy_(weight)
            out.bias.copy_(bias)
    return out


def fold_deconv_bn(deconv: nn.ConvTranspose2d, bn: nn.Module) -> nn.ConvTranspose2d:
    """One ``nn.ConvTranspose2d`` with bias equal to ``bn(deconv(x))`` (eval statistics): the BN scale of output
    channel ``o`` multiplies the weight slice ``[:, o % (c_out / g)]`` of its group (weights are
    ``[c_in, c_out / g, kh, kw]``)."""
    w = deconv.weight
    out = nn.ConvTranspose2d(deconv.in_channels, deconv.out_channels, deconv.kernel_size, stride=deconv.stride,
                             padding=deconv.padding, output_padding=deconv.output_padding, groups=deconv.groups,
                             bias=True, dilation=deconv.dilation, device=w.device, dtype=w.dtype)
    out.requires_grad_(False)
    if w.device.type != "meta":
        with torch.no_grad():
            g, (ci, co, *k) = deconv.groups, w.shape
            scale, shift = bn_scale_shift(bn, deconv.bias)
            out.weight.copy_((w.view(g, ci // g, co, *k) * scale.view(g, 1, co, 1, 1)).view_as(w))
            out.bias.copy_(shift)
    return out
