"""YOLOv9 blocks as ultralytics 8.4.x builds them (``ultralytics/nn/modules/{conv,block}.py``), Ultralytics dialect.

YOLOv9 (Wang et al. 2024, "Learning What You Want to Learn Using Programmable Gradient Information"):
GELAN blocks (``RepNCSPELAN4``, ``ELAN1``), the down-samplers ``ADown`` / ``AConv``, ``SPPELAN``, and the
auxiliary reversible branch of yolov9e (``CBLinear`` -> ``CBFuse``).  ``RepConv`` is the re-parameterisable 3x3 +
1x1 conv (YOLOv9's "RepConvN"; ultralytics uses its RT-DETR ``RepConv`` in ``RepBottleneck``), shared with RT-DETR's
``RepC3`` (modules/ul_rtdetr.py).

Channel rules are parse_model's: ``RepNCSPELAN4``, ``ELAN1``, ``ADown``, ``AConv``, ``SPPELAN`` are plain modules
(``c2 = make_divisible(min(args[0], max_channels) * width, 8)``, the other channel arguments unscaled, ``n`` of
``RepNCSPELAN4`` is its 4th YAML argument, not the row's repeats); ``CBLinear``'s ``c2s`` are used as written
(a list: the layer has one output per entry); ``CBFuse`` keeps the channels of its last input.

Element-wise work FlopCounterMode does not see: the functional pools of ``ADown`` / ``AConv``
(``avg_pool2d(x, 2, 1)``: 4 adds per output; ``max_pool2d(x, 3, 2, 1)``: 9 compares per output), ``CBFuse``'s
nearest resizes (1 per output element) and its sum ((k - 1) adds per element for k inputs).
"""
from __future__ import annotations

from math import prod

import torch
import torch.nn as nn
import torch.nn.functional as F

from flopscope.channels import conv_like, custom
from flopscope.cost import ELEMENTWISE_COST
from flopscope.registry import formula, register
from flopscope.shapes import ShapeError, cat_channels, check_channels

from .c2f import Bottleneck_v8
from .yolov5 import C3, Conv, autopad, c3_cost

UL = "ultralytics"


# -- RepConv (YOLOv9's RepConvN; RT-DETR's RepConv) ----------------------------------------------------------
@register(channels=conv_like, dialect=UL,
          description="re-parameterisable conv: act(Conv3x3+BN + Conv1x1+BN [+ BN(x)]), training form; "
                      "args [c2, k=3, s=1, p=1, g=1, d=1, act=True, bn=False]")
class RepConv(nn.Module):
    def __init__(self, c1, c2, k=3, s=1, p=1, g=1, d=1, act=True, bn=False, deploy=False):
        super().__init__()
        if k != 3 or p != 1:
            raise ValueError(f"RepConv needs k=3, p=1 (got k={k}, p={p})")
        # ultralytics' RepConv keeps its own default activation (SiLU): a config's `activation:` changes Conv only
        self.act = nn.SiLU() if act is True else act if isinstance(act, nn.Module) else nn.Identity()
        self.bn = nn.BatchNorm2d(c1) if bn and c2 == c1 and s == 1 else None
        self.conv1 = Conv(c1, c2, k, s, p=p, g=g, act=False)
        self.conv2 = Conv(c1, c2, 1, s, p=p - k // 2, g=g, act=False)

    def forward(self, x):
        identity = 0 if self.bn is None else self.bn(x)
        return self.act(self.conv1(x) + self.conv2(x) + identity)

    def forward_fuse(self, x):
        """After fuse(): one 3x3 conv with bias."""
        return self.act(self.conv(x))


@formula(RepConv)
def repconv_cost(m, t, x):
    if not hasattr(m, "conv1"):  # fused: one 3x3 conv
        return t(m.act, t(m.conv, x, "conv"), "act")
    y = t(m.conv1, x, "conv1")
    t(m.conv2, x, "conv2")
    if m.bn is not None:
        t(m.bn, x, "bn")
    # conv1 + conv2 + identity: two tensor adds (the identity is the int 0 without its BN: still an add)
    t.ew("branch sum", "add", 2 * prod(y))
    return t(m.act, y, "act")


class RepBottleneck(Bottleneck_v8):
    """Ultralytics bottleneck whose first 3x3 conv is a RepConv."""

    def __init__(self, c1, c2, shortcut=True, g=1, k=(3, 3), e=0.5):
        super().__init__(c1, c2, shortcut, g, k, e)
        self.cv1 = RepConv(c1, int(c2 * e), k[0], 1)


class RepCSP(C3):
    """C3 with RepBottlenecks (3x3 RepConv + 3x3 Conv)."""

    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = nn.Sequential(*(RepBottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))


formula(RepCSP)(c3_cost)


# -- GELAN ----------------------------------------------------------------------------------------------------
class _ELAN(nn.Module):
    """cv1 1x1 c1 -> c3, split in halves; cv2 on the second half, cv3 on cv2's output; concat (c3 + 2 c4) -> cv4."""

    def forward(self, x):
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in (self.cv2, self.cv3))
        return self.cv4(torch.cat(y, 1))


@register(channels=conv_like, dialect=UL,
          description="YOLOv9 GELAN block: cv1 1x1 -> split; cv2 = RepCSP(n) + 3x3, cv3 = RepCSP(n) + 3x3 chained; "
                      "concat all -> cv4 1x1; args [c2, c3, c4, n=1]")
class RepNCSPELAN4(_ELAN):
    def __init__(self, c1, c2, c3, c4, n=1):
        super().__init__()
        self.c = c3 // 2
        self.cv1 = Conv(c1, c3, 1, 1)
        self.cv2 = nn.Sequential(RepCSP(c3 // 2, c4, n), Conv(c4, c4, 3, 1))
        self.cv3 = nn.Sequential(RepCSP(c4, c4, n), Conv(c4, c4, 3, 1))
        self.cv4 = Conv(c3 + 2 * c4, c2, 1, 1)


@register(channels=conv_like, dialect=UL,
          description="YOLOv9-t/s ELAN: cv1 1x1 -> split; cv2 3x3, cv3 3x3 chained; concat all -> cv4 1x1; "
                      "args [c2, c3, c4]")
class ELAN1(_ELAN):
    def __init__(self, c1, c2, c3, c4):
        super().__init__()
        self.c = c3 // 2
        self.cv1 = Conv(c1, c3, 1, 1)
        self.cv2 = Conv(c3 // 2, c4, 3, 1)
        self.cv3 = Conv(c4, c4, 3, 1)
        self.cv4 = Conv(c3 + 2 * c4, c2, 1, 1)


@formula(RepNCSPELAN4, ELAN1)
def elan_cost(m, t, x):
    b, c3, h, w = t(m.cv1, x, "cv1")
    if c3 % 2:
        raise ShapeError(f"{type(m).__name__}: cv1's {c3} channels do not split in two halves")
    ys = [(b, c3 // 2, h, w), (b, c3 // 2, h, w)]
    ys.append(t(m.cv2, ys[-1], "cv2"))
    ys.append(t(m.cv3, ys[-1], "cv3"))
    return t(m.cv4, cat_channels(ys), "cv4")


# -- down-sampling ----------------------------------------------------------------------------------------------
def _avg_pool_2x2_s1(t, x, name):
    """``F.avg_pool2d(x, 2, 1, 0, False, True)``: (H-1) x (W-1), 4 adds per output."""
    b, c, h, w = x
    if h < 2 or w < 2:
        raise ShapeError(f"avg_pool2d(2, stride 1) needs at least 2x2, got {h}x{w}")
    y = (b, c, h - 1, w - 1)
    t.ew(name, "F.avg_pool2d", prod(x), ELEMENTWISE_COST["AvgPool2d"] * 4 * prod(y) / prod(x))
    return y


@register(channels=conv_like, dialect=UL,
          description="YOLOv9 AConv: avg-pool 2x2 stride 1, then Conv 3x3 stride 2; args [c2]")
class AConv(nn.Module):
    def __init__(self, c1, c2):
        super().__init__()
        self.cv1 = Conv(c1, c2, 3, 2, 1)

    def forward(self, x):
        return self.cv1(F.avg_pool2d(x, 2, 1, 0, False, True))


@formula(AConv)
def aconv_cost(m, t, x):
    return t(m.cv1, _avg_pool_2x2_s1(t, x, "avg_pool"), "cv1")


@register(channels=conv_like, dialect=UL,
          description="YOLOv9 ADown: avg-pool 2x2 s1, split; half 1 Conv 3x3 s2, half 2 max-pool 3x3 s2 + Conv 1x1; "
                      "concat; args [c2]")
class ADown(nn.Module):
    def __init__(self, c1, c2):
        super().__init__()
        self.c = c2 // 2
        self.cv1 = Conv(c1 // 2, self.c, 3, 2, 1)
        self.cv2 = Conv(c1 // 2, self.c, 1, 1, 0)

    def forward(self, x):
        x = F.avg_pool2d(x, 2, 1, 0, False, True)
        x1, x2 = x.chunk(2, 1)
        return torch.cat((self.cv1(x1), self.cv2(F.max_pool2d(x2, 3, 2, 1))), 1)


@formula(ADown)
def adown_cost(m, t, x):
    b, c, h, w = _avg_pool_2x2_s1(t, x, "avg_pool")
    if c % 2:
        raise ShapeError(f"ADown: {c} input channels do not split in two halves")
    half = (b, c // 2, h, w)
    y1 = t(m.cv1, half, "cv1")
    pooled = (b, c // 2, (h - 1) // 2 + 1, (w - 1) // 2 + 1)  # max_pool2d(3, 2, 1)
    t.ew("max_pool", "F.max_pool2d", prod(pooled), ELEMENTWISE_COST["MaxPool2d"] * 9)
    y2 = t(m.cv2, pooled, "cv2")
    return cat_channels([y1, y2])


@register(channels=conv_like, dialect=UL,
          description="YOLOv9 SPP-ELAN: cv1 1x1 -> c3, three chained k x k max-pools, concat 4 c3 -> cv5 1x1; "
                      "args [c2, c3, k=5]")
class SPPELAN(nn.Module):
    def __init__(self, c1, c2, c3, k=5):
        super().__init__()
        self.c = c3
        self.cv1 = Conv(c1, c3, 1, 1)
        self.cv2 = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)
        self.cv3 = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)
        self.cv4 = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)
        self.cv5 = Conv(4 * c3, c2, 1, 1)

    def forward(self, x):
        y = [self.cv1(x)]
        y.extend(m(y[-1]) for m in (self.cv2, self.cv3, self.cv4))
        return self.cv5(torch.cat(y, 1))


@formula(SPPELAN)
def sppelan_cost(m, t, x):
    ys = [t(m.cv1, x, "cv1")]
    for name in ("cv2", "cv3", "cv4"):
        ys.append(t(getattr(m, name), ys[-1], name))
    return t(m.cv5, cat_channels(ys), "cv5")


# -- the auxiliary reversible branch (yolov9e) -------------------------------------------------------------------
@custom("cblinear", "c1 = ch[from]; c2s = args[0] (a list, used as written: one output per entry); "
                    "args = [c1, c2s, k=1, s=1, p=None, g=1]")
def _cblinear_rule(row):
    c1 = row.c_in()
    c2s = row.args[0] if row.args else None
    if not (isinstance(c2s, list) and c2s and all(isinstance(c, int) and not isinstance(c, bool) and c > 0
                                                  for c in c2s)):
        raise row.error(f"CBLinear's first argument must be a list of output channels, got {c2s!r}")
    return [c1, list(c2s), *row.args[1:]], list(c2s), row.n


@register(channels=_cblinear_rule, dialect=UL,
          description="YOLOv9 CBLinear: one Conv2d (with bias) to sum(c2s) channels, split into len(c2s) outputs; "
                      "args [[c2, ...], k=1, s=1, p=None, g=1]")
class CBLinear(nn.Module):
    def __init__(self, c1, c2s, k=1, s=1, p=None, g=1):
        super().__init__()
        self.c2s = c2s
        self.conv = nn.Conv2d(c1, sum(c2s), k, s, autopad(k, p), groups=g, bias=True)

    def forward(self, x):
        return self.conv(x).split(self.c2s, dim=1)


@formula(CBLinear)
def cblinear_cost(m, t, x):
    b, _, h, w = t(m.conv, x, "conv")
    return [(b, c, h, w) for c in m.c2s]


@custom("cbfuse", "c2 = ch[from[-1]]; args = [idx] as written (idx[i]: which output of the i-th CBLinear input)")
def _cbfuse_rule(row):
    f = row.inputs()
    idx = row.args[0] if row.args else None
    if not (isinstance(idx, list) and len(idx) == len(f) - 1 and all(isinstance(i, int) for i in idx)):
        raise row.error(f"CBFuse needs [idx] with one index per input but the last ({len(f) - 1}), got {idx!r}")
    return list(row.args), row.ch[f[-1]], row.n


@register(channels=_cbfuse_rule, dialect=UL,
          description="YOLOv9 CBFuse: pick output idx[i] of each CBLinear input, nearest-resize to the last input's "
                      "size, sum with it; args [[idx, ...]]")
class CBFuse(nn.Module):
    def __init__(self, idx):
        super().__init__()
        self.idx = idx

    def forward(self, xs):
        size = xs[-1].shape[2:]
        res = [F.interpolate(x[self.idx[i]], size=size, mode="nearest") for i, x in enumerate(xs[:-1])]
        return torch.sum(torch.stack(res + xs[-1:]), dim=0)


@formula(CBFuse)
def cbfuse_cost(m, t, xs):
    *branches, last = xs
    b, c, h, w = last
    for i, x in enumerate(branches):
        if not isinstance(x, list) or m.idx[i] >= len(x):
            raise ShapeError(f"CBFuse input {i} has no output {m.idx[i]} (is it a CBLinear?)")
        check_channels(m, x[m.idx[i]][1], c)
        t.ew(f"resize.{i}", "F.interpolate.nearest", b * c * h * w, ELEMENTWISE_COST["Upsample.nearest"])
    t.ew("sum", "add", len(branches) * b * c * h * w)
    return last


from flopscope.fuse import bn_scale_shift, conv2d_like, fuser  # noqa: E402


@fuser(RepConv, what="3x3 + 1x1 (+ identity BatchNorm) branches merged into one 3x3 conv with bias")
def fuse_repconv(m):
    """ultralytics' RepConv.fuse_convs(): each branch's BN folded into its kernel (the identity BN into a 3x3
    kernel with 1 at the centre of channel i % (c1 / g)), the 1x1 kernel zero-padded to 3x3, all summed; conv1,
    conv2 and bn go, ``conv`` (3x3, conv1's geometry, bias) stays."""
    if not hasattr(m, "conv1"):
        return False
    c3, c1 = m.conv1.conv, m.conv2.conv
    w = b = None
    if c3.weight.device.type != "meta":
        with torch.no_grad():
            s3, b3 = bn_scale_shift(m.conv1.bn)
            s1, b1 = bn_scale_shift(m.conv2.bn)
            w = c3.weight * s3.view(-1, 1, 1, 1) + F.pad(c1.weight * s1.view(-1, 1, 1, 1), [1, 1, 1, 1])
            b = b3 + b1
            if m.bn is not None:
                cin = c3.in_channels // c3.groups
                eye = torch.zeros_like(c3.weight)
                for i in range(c3.in_channels):
                    eye[i, i % cin, 1, 1] = 1
                sid, bid = bn_scale_shift(m.bn)
                w, b = w + eye * sid.view(-1, 1, 1, 1), b + bid
    m.conv = conv2d_like(c3, w, b)
    del m.conv1, m.conv2, m.bn
    m.forward = m.forward_fuse
    return True
