"""CARAFE: Content-Aware ReAssembly of FEatures (Wang et al., ICCV 2019, arXiv 1905.02188), YOLO form.

Pure-PyTorch port (objectdetection_script ``yolov5-CARAFE``, unofficial): a 1x1 compressor and a k_enc x k_enc
encoder predict, for every output pixel, a softmax-normalised k_up x k_up reassembly kernel; the input is
nearest-upsampled, unfolded into k_up x k_up neighbourhoods (dilation = scale) and combined with the kernels by
``torch.einsum`` (a batched matmul: thop 0.1 misses it, FlopCounterMode counts it).
YAML: ``[-1, 1, CARAFE, [k_enc, k_up, c_mid, scale]]`` -- c = c2 = ch[from] is prepended.
"""
from __future__ import annotations

from math import prod

import torch
import torch.nn as nn

from flopscope.channels import same_channel
from flopscope.registry import formula, register
from flopscope.shapes import ShapeError, check_channels

from .yolov5 import Conv


@register(channels=same_channel, description="Content-aware upsampling (CARAFE, YOLO form): c2 = ch[from], "
                                             "H and W x scale; args [k_enc, k_up, c_mid, scale]")
class CARAFE(nn.Module):
    def __init__(self, c, k_enc=3, k_up=5, c_mid=64, scale=2):
        super().__init__()
        self.c, self.k_up, self.scale = c, k_up, scale
        self.comp = Conv(c, c_mid)
        self.enc = Conv(c_mid, (scale * k_up) ** 2, k=k_enc, act=False)
        self.pix_shf = nn.PixelShuffle(scale)
        self.upsmp = nn.Upsample(scale_factor=scale, mode="nearest")
        self.unfold = nn.Unfold(kernel_size=k_up, dilation=scale, padding=k_up // 2 * scale)

    def forward(self, x):
        b, c, h, w = x.shape
        hs, ws = h * self.scale, w * self.scale
        kernels = torch.softmax(self.pix_shf(self.enc(self.comp(x))), dim=1)  # (B, k_up^2, sH, sW)
        patches = self.unfold(self.upsmp(x)).view(b, c, -1, hs, ws)  # (B, C, k_up^2, sH, sW)
        return torch.einsum("bkhw,bckhw->bchw", kernels, patches)


@formula(CARAFE)
def carafe_cost(m, t, x):
    check_channels(m, x[1], m.c)
    if m.k_up % 2 == 0:
        raise ShapeError(f"CARAFE needs an odd k_up (its unfold keeps the map size only then), got {m.k_up}")
    kernels = t(m.pix_shf, t(m.enc, t(m.comp, x, "comp"), "enc"), "pix_shf")
    t.ew("kernel softmax", "softmax", prod(kernels))
    up = t(m.upsmp, x, "upsmp")
    if m.k_up == 1:  # a contraction of length 1: einsum runs it as a broadcast multiply
        t.ew("reassembly", "mul", prod(up))
    else:
        t.mac("reassembly", "matmul", "einsum", prod(up) * m.k_up ** 2, prod(up))
    return up
