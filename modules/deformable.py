"""Modulated deformable convolution (DCNv2) in pure PyTorch, and C3 with deformable bottlenecks.

Zhu, Hu, Lin, Dai, "Deformable ConvNets v2: More Deformable, Better Results", CVPR 2019 (arXiv 1811.11168);
YOLO form (objectdetection_script ``yolov5-DCN``): ``DCNv2(c1, c2, k, stride=1, padding=1, dilation=1,
groups=1, deformable_groups=1)`` + BN + activation, with a zero-initialised offset/mask conv.

Instead of ``torchvision.ops.deform_conv2d`` (not available here) the sampling is done with
``F.grid_sample`` (bilinear, zero padding: the same interpolation as torchvision's kernel) and the
convolution as a GEMM with ``torch.matmul`` on the sampled columns.  FlopCounterMode sees the offset conv
and the GEMM but not the sampling; the sampling is counted by the hand rule
:func:`deformable_sampling_cost` (element-wise FLOPs, ``rule="deformable bilinear sampling"``).
"""
from __future__ import annotations

import math
from math import prod

import torch
import torch.nn as nn
import torch.nn.functional as F

from flopscope.channels import conv_like, conv_like_repeat
from flopscope.registry import formula, register
from flopscope.shapes import ShapeError, check_channels, conv_out
from .yolov5 import C3, Conv, bottleneck_cost, c3_cost

SAMPLING_RULE = "deformable bilinear sampling"


def modulated_deform_conv2d(x, offset, mask, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                            deformable_groups=1):
    """DCNv2: ``y[p] = sum_k w_k * x(p0 + p_k + dp_k) * m_k`` with bilinear x(.) (zero outside the map).

    Layouts as torchvision's ``deform_conv2d``: ``offset`` (B, 2*dg*k*k, Ho, Wo) holding (dy, dx) pairs per
    group and kernel tap; ``mask`` (B, dg*k*k, Ho, Wo); ``weight`` (Cout, Cin/groups, kh, kw).
    """
    b, c, h, w = x.shape
    cout, _, kh, kw = weight.shape
    ho, wo = offset.shape[-2:]
    kk, dg = kh * kw, deformable_groups
    dev, dt = x.device, x.dtype
    # regular grid p0 + p_k for every tap and output pixel: (kk, Ho, Wo)
    tap_y = (torch.arange(kh, device=dev, dtype=dt) * dilation).view(kh, 1, 1, 1)
    tap_x = (torch.arange(kw, device=dev, dtype=dt) * dilation).view(1, kw, 1, 1)
    out_y = (torch.arange(ho, device=dev, dtype=dt) * stride - padding).view(1, 1, ho, 1)
    out_x = (torch.arange(wo, device=dev, dtype=dt) * stride - padding).view(1, 1, 1, wo)
    base_y = (tap_y + out_y).expand(kh, kw, ho, wo).reshape(kk, ho, wo)
    base_x = (tap_x + out_x).expand(kh, kw, ho, wo).reshape(kk, ho, wo)
    off = offset.view(b, dg, kk, 2, ho, wo)
    py, px = base_y + off[:, :, :, 0], base_x + off[:, :, :, 1]  # (B, dg, kk, Ho, Wo), pixel units
    # grid_sample(align_corners=False) reads pixel i at normalised (2i + 1) / size - 1
    grid = torch.stack(((2 * px + 1) / w - 1, (2 * py + 1) / h - 1), dim=-1).view(b * dg, kk * ho, wo, 2)
    sampled = F.grid_sample(x.reshape(b * dg, c // dg, h, w), grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)  # (B*dg, Cin/dg, kk*Ho, Wo)
    cols = sampled.view(b, dg, c // dg, kk, ho * wo) * mask.view(b, dg, 1, kk, ho * wo)
    cols = cols.view(b, groups, (c // groups) * kk, ho * wo)
    y = torch.matmul(weight.view(groups, cout // groups, (c // groups) * kk), cols)  # (B, groups, Cout/g, L)
    y = y.view(b, cout, ho, wo)
    return y if bias is None else y + bias.view(1, -1, 1, 1)


def deformable_sampling_cost(t, b: int, c_in: int, deformable_groups: int, taps: int, out_hw: int) -> None:
    """Hand rule for the bilinear sampling of a deformable conv (FlopCounterMode does not see it).

    * per sampling point -- one (sample, deformable group, kernel tap, output pixel): 10 FLOPs
      (``ELEMENTWISE_COST['bilinear.coords']``): p0 + p_k + dp (2 adds), fractional parts (2), 1 - frac (2),
      the four corner weights (4 muls); shared by the Cin/dg channels of the group;
    * per sampled value -- one input channel at one point: 7 FLOPs (``ELEMENTWISE_COST['bilinear.interp']``):
      4 corner values x weights, 3 adds.
    """
    t.ew("sampling.coords", "bilinear.coords", b * deformable_groups * taps * out_hw, rule=SAMPLING_RULE)
    t.ew("sampling.interp", "bilinear.interp", b * c_in * taps * out_hw, rule=SAMPLING_RULE)


# --------------------------------------------------------------------------------------------
@register(channels=conv_like, description="Modulated deformable conv v2 + BN + act (pure PyTorch, grid_sample); "
                                          "args [c2, k, stride, padding=1, dilation, groups, deformable_groups]")
class DCNv2(nn.Module):
    default_act = nn.SiLU()  # as YOLO's Conv (a config's `activation:` replaces it)

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=1, dilation=1, groups=1,
                 deformable_groups=1, act=True):
        super().__init__()
        if in_channels % groups or out_channels % groups or in_channels % deformable_groups:
            raise ValueError(f"channels {in_channels}->{out_channels} do not divide into groups={groups}, "
                             f"deformable_groups={deformable_groups}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.groups, self.deformable_groups = groups, deformable_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.conv_offset_mask = nn.Conv2d(in_channels, 3 * deformable_groups * kernel_size ** 2, kernel_size,
                                          stride, padding, dilation, bias=True)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = self.default_act if act is True else act if isinstance(act, nn.Module) else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1 / math.sqrt(self.in_channels * self.kernel_size ** 2)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.zeros_(self.bias)
        nn.init.zeros_(self.conv_offset_mask.weight)  # start as a plain conv (zero offsets, mask 0.5)
        nn.init.zeros_(self.conv_offset_mask.bias)

    def forward(self, x):
        o1, o2, mask = torch.chunk(self.conv_offset_mask(x), 3, dim=1)
        y = modulated_deform_conv2d(x, torch.cat((o1, o2), 1), torch.sigmoid(mask), self.weight, self.bias,
                                    self.stride, self.padding, self.dilation, self.groups, self.deformable_groups)
        return self.act(self.bn(y))


@formula(DCNv2)
def dcnv2_cost(m, t, x):
    b, c, h, w = x
    check_channels(m, c, m.in_channels)
    k, dg = m.kernel_size, m.deformable_groups
    ho = conv_out(h, k, m.stride, m.padding, m.dilation)
    wo = conv_out(w, k, m.stride, m.padding, m.dilation)
    if ho <= 0 or wo <= 0:
        raise ShapeError(f"DCNv2(k={k}, s={m.stride}, p={m.padding}) gives an empty output on a {h}x{w} map")
    t(m.conv_offset_mask, x, "conv_offset_mask")
    no = ho * wo
    t.ew("mask sigmoid", "Sigmoid", b * dg * k * k * no)
    deformable_sampling_cost(t, b, c, dg, k * k, no)
    t.ew("modulation", "mul", b * c * k * k * no)
    y = (b, m.out_channels, ho, wo)
    t.mac("gemm", "matmul", "matmul", prod(y) * (c // m.groups) * k * k, prod(y))
    return t(m.act, t(m.bn, y, "bn"), "act")


class Bottleneck_DCN(nn.Module):  # noqa: N801 - name of the YOLO port
    """YOLOv5 bottleneck with a deformable 3x3: Conv 1x1 -> DCNv2 3x3 (+ residual)."""

    def __init__(self, c1, c2, shortcut=True, g=1, e=0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = DCNv2(c_, c2, 3, 1, groups=g)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        return x + self.cv2(self.cv1(x)) if self.add else self.cv2(self.cv1(x))


formula(Bottleneck_DCN)(bottleneck_cost)


@register(channels=conv_like_repeat, description="C3 with deformable (DCNv2) bottlenecks")
class C3_DCN(C3):  # noqa: N801 - YAML name
    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = nn.Sequential(*(Bottleneck_DCN(c_, c_, shortcut, g, e=1.0) for _ in range(n)))


formula(C3_DCN)(c3_cost)
