"""Convolution variants that run their convolution functionally (hook counters miss them).

* ``DSConv`` -- Distribution-Shifting Convolution, Nascimento, Fawcett, Prisacariu, ICCV 2019
  (arXiv 1901.01928), YOLO form (objectdetection_script ``yolov5-DSConv``): a ``_ConvNd`` subclass whose
  forward is ``F.conv2d`` (the kernel-distribution-shift step is disabled in that form, so it is a plain
  convolution that thop cannot see).  ``DSConv2D`` = YOLO ``Conv`` with it; ``C3_DSConv`` uses it for both
  bottleneck convs.  (Not the depth-wise-separable or the dynamic-snake ``DSConv``: see spec section 2.7.)
* ``SAConv2d`` -- Switchable Atrous Convolution, Qiao, Chen, Yuille, "DetectoRS", CVPR 2021 (arXiv 2006.02334),
  YOLO form (objectdetection_script ``yolov5-SAConv``): weight-standardised conv, two convs (dilation d and
  3d) blended by a per-pixel switch, global pre/post context; + BN + act.  ``C3_SAC``: bottleneck cv2 is one.
"""
from __future__ import annotations

from math import prod

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.utils import _pair

from flopscope.channels import conv_like, conv_like_repeat
from flopscope.cost import ELEMENTWISE_COST
from flopscope.registry import formula, register
from flopscope.shapes import ShapeError, check_channels, conv_out

from .yolov5 import C3, Conv, autopad, bottleneck_cost, c3_cost, conv_cost


def _out_hw(m, h, w, padding, dilation):
    (kh, kw), (sh, sw) = m.kernel_size, m.stride
    ho, wo = conv_out(h, kh, sh, padding[0], dilation[0]), conv_out(w, kw, sw, padding[1], dilation[1])
    if ho <= 0 or wo <= 0:
        raise ShapeError(f"{type(m).__name__}(k={kh}x{kw}, s={sh}) gives an empty output on a {h}x{w} map")
    return ho, wo


def _functional_conv(m, t, x, name="", padding=None, dilation=None):
    """A convolution with ``m``'s weight called through ``F.conv2d``; returns the output shape."""
    b, c, h, w = x
    check_channels(m, c, m.in_channels)
    ho, wo = _out_hw(m, h, w, padding or m.padding, dilation or m.dilation)
    y = (b, m.out_channels, ho, wo)
    t.mac(name, "conv", "F.conv2d", prod(y) * (m.in_channels // m.groups) * prod(m.kernel_size), prod(y))
    return y


# --------------------------------------------------------------------------------------------
@register(channels=conv_like, description="Distribution-shifting conv, YOLO form: _ConvNd subclass + F.conv2d "
                                          "(plain conv math, invisible to thop); args [c2, k, s, p, d, g]")
class DSConv(nn.modules.conv._ConvNd):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=None, dilation=1, groups=1,
                 padding_mode="zeros", bias=False, block_size=32, KDSBias=False, CDS=False):  # noqa: N803
        padding = _pair(autopad(kernel_size, padding, dilation))
        super().__init__(in_channels, out_channels, _pair(kernel_size), _pair(stride), padding, _pair(dilation),
                         False, _pair(0), groups, bias, padding_mode)
        # block structure of the distribution shift (kept for reference; the YOLO form does not apply it)
        self.block_size, self.KDSBias, self.CDS = block_size, KDSBias, CDS
        self.blocks = -(-in_channels // (block_size * groups))

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


@formula(DSConv)
def dsconv_cost(m, t, x):
    return _functional_conv(m, t, x)


@register(channels=conv_like, description="YOLO Conv (BN + act) whose conv is a DSConv")
class DSConv2D(Conv):
    def __init__(self, c1, c2, k=1, s=1, p=None, g=1, d=1, act=True):
        super().__init__(c1, c2, k, s, p, g, d, act)
        self.conv = DSConv(c1, c2, k, s, p, d, g)


formula(DSConv2D)(conv_cost)


class Bottleneck_DSConv(nn.Module):  # noqa: N801 - name of the YOLO port
    """YOLOv5 bottleneck with DSConv2D for both convs (1x1 -> 3x3, + residual)."""

    def __init__(self, c1, c2, shortcut=True, g=1, e=0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = DSConv2D(c1, c_, 1, 1)
        self.cv2 = DSConv2D(c_, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        return x + self.cv2(self.cv1(x)) if self.add else self.cv2(self.cv1(x))


formula(Bottleneck_DSConv)(bottleneck_cost)


@register(channels=conv_like_repeat, description="C3 with DSConv bottlenecks")
class C3_DSConv(C3):  # noqa: N801 - YAML name
    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = nn.Sequential(*(Bottleneck_DSConv(c_, c_, shortcut, g, e=1.0) for _ in range(n)))


formula(C3_DSConv)(c3_cost)


# --------------------------------------------------------------------------------------------
class ConvAWS2d(nn.Conv2d):
    """Conv2d with weight standardisation (zero mean, unit variance per filter, then gamma * w + beta)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        self.register_buffer("weight_gamma", torch.ones(out_channels, 1, 1, 1))
        self.register_buffer("weight_beta", torch.zeros(out_channels, 1, 1, 1))

    def standardized_weight(self, weight):
        mean = weight.mean(dim=(1, 2, 3), keepdim=True)
        weight = weight - mean
        std = torch.sqrt(weight.view(weight.size(0), -1).var(dim=1) + 1e-5).view(-1, 1, 1, 1)
        return self.weight_gamma * (weight / std) + self.weight_beta

    def forward(self, x):
        return self._conv_forward(x, self.standardized_weight(self.weight), self.bias)


@formula(ConvAWS2d)
def conv_aws2d_cost(m, t, x):
    t.ew("weight_std", "weight_std", m.weight.numel())  # tensor methods on the weight, constant in H*W
    return _functional_conv(m, t, x)


@register(channels=conv_like, description="Switchable atrous conv (DetectoRS) + BN + act, YOLO form; "
                                          "args [c2, k, s, p, g, d, act]")
class SAConv2d(ConvAWS2d):
    default_act = nn.SiLU()  # as YOLO's Conv (a config's `activation:` replaces it)

    def __init__(self, in_channels, out_channels, kernel_size, s=1, p=None, g=1, d=1, act=True, bias=True):
        super().__init__(in_channels, out_channels, kernel_size, stride=s, padding=autopad(kernel_size, p, d),
                         dilation=d, groups=g, bias=bias)
        self.switch = nn.Conv2d(in_channels, 1, kernel_size=1, stride=s, bias=True)
        self.weight_diff = nn.Parameter(torch.zeros_like(self.weight))
        self.pre_context = nn.Conv2d(in_channels, in_channels, kernel_size=1, bias=True)
        self.post_context = nn.Conv2d(out_channels, out_channels, kernel_size=1, bias=True)
        for conv, w, b in ((self.switch, 0.0, 1.0), (self.pre_context, 0.0, 0.0), (self.post_context, 0.0, 0.0)):
            nn.init.constant_(conv.weight, w)
            nn.init.constant_(conv.bias, b)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = self.default_act if act is True else act if isinstance(act, nn.Module) else nn.Identity()

    @property
    def large_padding_dilation(self):
        """The second conv: 3x the padding and the dilation."""
        return tuple(3 * p for p in self.padding), tuple(3 * d for d in self.dilation)

    def forward(self, x):
        x = x + self.pre_context(F.adaptive_avg_pool2d(x, 1)).expand_as(x)
        switch = self.switch(F.avg_pool2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), kernel_size=5, stride=1))
        weight = self.standardized_weight(self.weight)
        out_s = F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        p, d = self.large_padding_dilation
        out_l = F.conv2d(x, weight + self.weight_diff, self.bias, self.stride, p, d, self.groups)
        out = switch * out_s + (1 - switch) * out_l
        out = out + self.post_context(F.adaptive_avg_pool2d(out, 1)).expand_as(out)
        return self.act(self.bn(out))


@formula(SAConv2d)
def saconv2d_cost(m, t, x):
    b, c, h, w = x
    check_channels(m, c, m.in_channels)
    if h <= 2 or w <= 2:
        raise ShapeError(f"SAConv2d's reflect padding of 2 needs maps larger than 2x2, gets {h}x{w}")
    n = prod(x)
    # pre-context: GAP -> 1x1 conv -> broadcast add
    t.ew("pre_context.pool", "mean", n)
    t(m.pre_context, (b, c, 1, 1), "pre_context")
    t.ew("pre_context.add", "add", n)
    # switch: reflect pad 2 -> 5x5 average -> 1x1 conv (stride s)
    padded = b * c * (h + 4) * (w + 4)  # F.avg_pool2d reads the padded map (elems); 25 adds per output
    t.ew("switch.avg_pool", "F.avg_pool2d", padded, ELEMENTWISE_COST["AvgPool2d"] * 25 * n / padded)
    sw = t(m.switch, x, "switch")
    # two convs sharing the standardised weight (the second adds weight_diff)
    t.ew("weight_std", "weight_std", m.weight.numel())
    t.ew("weight_diff.add", "add", m.weight.numel())
    y = _functional_conv(m, t, x, "conv_s")
    p, d = m.large_padding_dilation
    if _functional_conv(m, t, x, "conv_l", p, d) != y or sw[2:] != y[2:]:
        raise ShapeError(f"SAConv2d's two convs / switch give different output sizes on a {h}x{w} map")
    # switch * out_s + (1 - switch) * out_l
    t.ew("blend.one_minus", "sub", prod(sw))
    t.ew("blend.mul", "mul", prod(y), 2)
    t.ew("blend.add", "add", prod(y))
    # post-context
    t.ew("post_context.pool", "mean", prod(y))
    t(m.post_context, (y[0], y[1], 1, 1), "post_context")
    t.ew("post_context.add", "add", prod(y))
    return t(m.act, t(m.bn, y, "bn"), "act")


class Bottleneck_SAC(nn.Module):  # noqa: N801 - name of the YOLO port
    """YOLOv5 bottleneck with a switchable atrous 3x3: Conv 1x1 -> SAConv2d 3x3 (+ residual)."""

    def __init__(self, c1, c2, shortcut=True, g=1, e=0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = SAConv2d(c_, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        return x + self.cv2(self.cv1(x)) if self.add else self.cv2(self.cv1(x))


formula(Bottleneck_SAC)(bottleneck_cost)


@register(channels=conv_like_repeat, description="C3 with switchable-atrous-conv bottlenecks")
class C3_SAC(C3):  # noqa: N801 - YAML name
    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = nn.Sequential(*(Bottleneck_SAC(c_, c_, shortcut, g, e=1.0) for _ in range(n)))


formula(C3_SAC)(c3_cost)
