"""FasterNet blocks (Chen et al., "Run, Don't Walk: Chasing Higher FLOPS for Faster Neural Networks", CVPR 2023,
arXiv 2303.03667; JierunChen/FasterNet), YOLO forms (objectdetection_script).

* ``Partial_conv3`` -- a 3x3 conv on the first dim/n_div channels only, the rest passed through (split + cat).
* ``PConv`` -- partial 3x3 then a YOLO Conv 1x1 dim -> c2 (the yolov7 port).
* ``Faster_Block`` -- [1x1 Conv inc -> dim when they differ] -> partial 3x3 -> MLP (Conv 1x1 dim -> r*dim with
  BN + act, Conv2d 1x1 r*dim -> dim) -> DropPath (identity at eval) -> residual; optional layer scale.
* ``C3_Faster`` -- C3 with n Faster_Blocks.
"""
from __future__ import annotations

from math import prod

import torch
import torch.nn as nn

from flopscope.channels import conv_like, conv_like_repeat
from flopscope.registry import formula, register
from flopscope.shapes import ShapeError, cat_channels, check_channels

from ._layers import DropPath
from .yolov5 import C3, Conv, c3_cost


class Partial_conv3(nn.Module):  # noqa: N801 - FasterNet's name
    """3x3 conv on dim // n_div channels; the untouched channels are concatenated back ('split_cat')."""

    def __init__(self, dim, n_div=4):
        super().__init__()
        self.dim = dim
        self.dim_conv3 = dim // n_div
        if self.dim_conv3 < 1:
            raise ValueError(f"dim {dim} has no channel to convolve with n_div={n_div}")
        self.dim_untouched = dim - self.dim_conv3
        self.partial_conv3 = nn.Conv2d(self.dim_conv3, self.dim_conv3, 3, 1, 1, bias=False)

    def forward(self, x):
        x1, x2 = torch.split(x, [self.dim_conv3, self.dim_untouched], dim=1)
        return torch.cat((self.partial_conv3(x1), x2), 1)


@formula(Partial_conv3)
def partial_conv3_cost(m, t, x):
    b, c, h, w = x
    check_channels(m, c, m.dim)
    y = t(m.partial_conv3, (b, m.dim_conv3, h, w), "partial_conv3")
    return cat_channels([y, (b, m.dim_untouched, h, w)])


@register(channels=conv_like, description="Partial conv (FasterNet): 3x3 on dim/n_div channels, then Conv 1x1 "
                                          "dim -> c2; args [c2, n_div]")
class PConv(nn.Module):
    def __init__(self, dim, ouc, n_div=4):
        super().__init__()
        self.spatial = Partial_conv3(dim, n_div)
        self.conv = Conv(dim, ouc, 1)

    def forward(self, x):
        return self.conv(self.spatial(x))


@formula(PConv)
def pconv_cost(m, t, x):
    return t(m.conv, t(m.spatial, x, "spatial"), "conv")


@register(channels=conv_like, description="FasterNet block: partial 3x3 + MLP (1x1 expand, 1x1 project) + residual; "
                                          "args [c2, n_div, mlp_ratio, drop_path, layer_scale]")
class Faster_Block(nn.Module):  # noqa: N801 - YAML name
    def __init__(self, inc, dim, n_div=4, mlp_ratio=2, drop_path=0.1, layer_scale_init_value=0.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.adjust_channel = Conv(inc, dim, 1) if inc != dim else None
        self.spatial_mixing = Partial_conv3(dim, n_div)
        self.mlp = nn.Sequential(Conv(dim, hidden, 1), nn.Conv2d(hidden, dim, 1, bias=False))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.layer_scale = (nn.Parameter(layer_scale_init_value * torch.ones(dim))
                            if layer_scale_init_value > 0 else None)

    def forward(self, x):
        if self.adjust_channel is not None:
            x = self.adjust_channel(x)
        y = self.mlp(self.spatial_mixing(x))
        if self.layer_scale is not None:
            y = self.layer_scale.view(-1, 1, 1) * y
        return x + self.drop_path(y)


@formula(Faster_Block)
def faster_block_cost(m, t, x):
    if m.adjust_channel is not None:
        x = t(m.adjust_channel, x, "adjust_channel")
    y = t(m.mlp, t(m.spatial_mixing, x, "spatial_mixing"), "mlp")
    if y != x:
        raise ShapeError(f"Faster_Block's MLP output {list(y)} does not match its shortcut {list(x)}")
    if m.layer_scale is not None:
        t.ew("layer_scale", "mul", prod(y))
    t(m.drop_path, y, "drop_path")
    t.ew("residual", "add", prod(y))
    return y


@register(channels=conv_like_repeat, description="C3 with FasterNet blocks")
class C3_Faster(C3):  # noqa: N801 - YAML name
    def __init__(self, c1, c2, n=1, shortcut=False, g=1, e=0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = nn.Sequential(*(Faster_Block(c_, c_) for _ in range(n)))


formula(C3_Faster)(c3_cost)
