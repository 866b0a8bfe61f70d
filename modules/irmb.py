"""iRMB (Inverted Residual Mobile Block, EMO: Zhang et al., ICCV 2023, arXiv 2301.01146) as seed 004 defines it,
``C2f_iRMB``, and the C3 that seed 004's code really built.

Seed 004's iRMB is EMO's (zhangzjn/EMO ``model/emo.py``) with ``dim_out`` fixed to ``dim_in`` and ``dim_head=8``.
Window attention runs on the map zero-padded up to multiples of ``window_size``; the windows are EMO's
``'b c (h1 n1) (w1 n2) -> (b n1 n2) c h1 w1'`` split (a strided grid: window (i, j) holds every n1-th row and
n2-th column).  timm's ``SqueezeExcite`` / ``DropPath`` are replaced by the pure-PyTorch equivalents below.

Seed 004 also pastes a new ``Bottleneck`` (3x3 cv1, 3x3 cv2, then ``iRMB(c2)``) into ``models/common.py`` after
YOLOv5's own one; the later definition wins, so every ``C3`` of its model was built with it (spec 2.3).
``C3_iRMBseed`` is that C3; ``yolov5_iRMB_seed.yaml`` is that model.
"""
from __future__ import annotations

import math
from math import prod

import torch.nn as nn
import torch.nn.functional as F

from flopscope.channels import conv_like_repeat, same_channel
from flopscope.cost import ELEMENTWISE_COST
from flopscope.registry import formula, register
from flopscope.shapes import ShapeError

from ._layers import DropPath
from .c2f import Bottleneck_v8, C2f, c2f_cost
from .yolov5 import C3, c3_cost

_NORMS = {"none": nn.Identity, "bn_2d": lambda c: nn.BatchNorm2d(c, eps=1e-6)}
_ACTS = {"none": nn.Identity, "relu": nn.ReLU, "relu6": nn.ReLU6, "silu": nn.SiLU}


def _act(name: str, inplace: bool = True) -> nn.Module:
    return nn.Identity() if name == "none" else _ACTS[name](inplace=inplace)


class SqueezeExcite(nn.Module):
    """timm ``SqueezeExcite``: mean over H, W -> 1x1 conv (bias) -> act -> 1x1 conv (bias) -> sigmoid gate."""

    def __init__(self, c: int, rd_ratio: float = 0.25, act: str = "relu"):
        super().__init__()
        rd = round(c * rd_ratio)
        self.conv_reduce = nn.Conv2d(c, rd, 1, bias=True)
        self.act1 = _act(act)
        self.conv_expand = nn.Conv2d(rd, c, 1, bias=True)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.conv_expand(self.act1(self.conv_reduce(s))))


@formula(SqueezeExcite)
def squeeze_excite_cost(m, t, x):
    b, c, h, w = x
    s = (b, c, 1, 1)
    t.ew("squeeze", "mean", prod(x))
    s = t(m.gate, t(m.conv_expand, t(m.act1, t(m.conv_reduce, s, "reduce"), "act"), "expand"), "gate")
    t.ew("excite", "mul", prod(x))
    return x


class ConvNormAct(nn.Module):
    """EMO's ConvNormAct: Conv2d (padding ceil((k - s) / 2)) -> norm -> act (+ input when ``skip``)."""

    def __init__(self, dim_in, dim_out, kernel_size, stride=1, dilation=1, groups=1, bias=False, skip=False,
                 norm_layer="bn_2d", act_layer="relu", inplace=True, drop_path_rate=0.0):
        super().__init__()
        self.has_skip = skip and dim_in == dim_out
        padding = math.ceil((kernel_size - stride) / 2)
        self.conv = nn.Conv2d(dim_in, dim_out, kernel_size, stride, padding, dilation, groups, bias)
        self.norm = _NORMS[norm_layer](dim_out)
        self.act = _act(act_layer, inplace)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate else nn.Identity()

    def forward(self, x):
        y = self.act(self.norm(self.conv(x)))
        return self.drop_path(y) + x if self.has_skip else y


@formula(ConvNormAct)
def conv_norm_act_cost(m, t, x):
    y = t(m.act, t(m.norm, t(m.conv, x, "conv"), "norm"), "act")
    if m.has_skip:
        t.ew("residual", "add", prod(y))
    return y


def window_grid(h: int, w: int, window_size: int) -> tuple[int, int, int, int]:
    """(window height, window width, windows along H, windows along W) after padding H, W up to window multiples;
    ``window_size <= 0`` means one window covering the whole map."""
    wh, ww = (h, w) if window_size <= 0 else (window_size, window_size)
    return wh, ww, -(-h // wh), -(-w // ww)


@register(channels=same_channel, description="Inverted Residual Mobile Block (EMO, ICCV 2023), seed-004 form: "
                                             "window MHSA (dim_head 8, window 7, padded) + 3x3 DW conv")
class iRMB(nn.Module):  # noqa: N801 - the name the seed's YAML uses
    def __init__(self, dim_in, norm_in=True, has_skip=True, exp_ratio=1.0, norm_layer="bn_2d", act_layer="relu",
                 v_proj=True, dw_ks=3, stride=1, dilation=1, se_ratio=0.0, dim_head=8, window_size=7, attn_s=True,
                 qkv_bias=False, attn_drop=0.0, drop=0.0, drop_path=0.0, v_group=False, attn_pre=False):
        super().__init__()
        dim_out = dim_in
        self.norm = _NORMS[norm_layer](dim_in) if norm_in else nn.Identity()
        dim_mid = int(dim_in * exp_ratio)
        self.has_skip = (dim_in == dim_out and stride == 1) and has_skip
        self.attn_s = attn_s
        if attn_s:
            if dim_in % dim_head:
                raise ValueError(f"iRMB: dim {dim_in} is not divisible by dim_head {dim_head}")
            self.dim_head = dim_head
            self.window_size = window_size
            self.num_head = dim_in // dim_head
            self.scale = dim_head ** -0.5
            self.attn_pre = attn_pre
            self.qk = ConvNormAct(dim_in, dim_in * 2, 1, bias=qkv_bias, norm_layer="none", act_layer="none")
            self.v = ConvNormAct(dim_in, dim_mid, 1, groups=self.num_head if v_group else 1, bias=qkv_bias,
                                 norm_layer="none", act_layer=act_layer)
            self.attn_drop = nn.Dropout(attn_drop)
        elif v_proj:
            self.v = ConvNormAct(dim_in, dim_mid, 1, bias=qkv_bias, norm_layer="none", act_layer=act_layer)
        else:
            self.v = nn.Identity()
        self.conv_local = ConvNormAct(dim_mid, dim_mid, dw_ks, stride, dilation, groups=dim_mid, norm_layer="bn_2d",
                                      act_layer="silu")
        self.se = SqueezeExcite(dim_mid, se_ratio, act_layer) if se_ratio > 0.0 else nn.Identity()
        self.proj_drop = nn.Dropout(drop)
        self.proj = ConvNormAct(dim_mid, dim_out, 1, norm_layer="none", act_layer="none")
        self.drop_path = DropPath(drop_path) if drop_path else nn.Identity()

    def _heads(self, x):
        """(B, heads*d, h, w) -> (B, heads, h*w, d)"""
        b, c, h, w = x.shape
        return x.reshape(b, self.num_head, c // self.num_head, h * w).transpose(-2, -1)

    def forward(self, x):
        shortcut = x
        x = self.norm(x)
        b, c, h, w = x.shape
        if self.attn_s:
            wh, ww, n1, n2 = window_grid(h, w, self.window_size)
            x = F.pad(x, (0, n2 * ww - w, 0, n1 * wh - h))
            # 'b c (h1 n1) (w1 n2) -> (b n1 n2) c h1 w1'
            x = x.view(b, c, wh, n1, ww, n2).permute(0, 3, 5, 1, 2, 4).reshape(b * n1 * n2, c, wh, ww)
            bw = x.shape[0]
            qk = self.qk(x).view(bw, 2, self.num_head, self.dim_head, wh * ww).permute(1, 0, 2, 4, 3)
            attn = ((qk[0] @ qk[1].transpose(-2, -1)) * self.scale).softmax(dim=-1)
            attn = self.attn_drop(attn)
            if self.attn_pre:
                y = (attn @ self._heads(x)).transpose(-2, -1).reshape(bw, c, wh, ww)
                y = self.v(y)
            else:
                v = self.v(x)
                y = (attn @ self._heads(v)).transpose(-2, -1).reshape(bw, v.shape[1], wh, ww)
            cy = y.shape[1]
            # '(b n1 n2) c h1 w1 -> b c (h1 n1) (w1 n2)', then crop the padding
            x = y.view(b, n1, n2, cy, wh, ww).permute(0, 3, 4, 1, 5, 2).reshape(b, cy, wh * n1, ww * n2)
            x = x[:, :, :h, :w].contiguous()
        else:
            x = self.v(x)
        x = x + self.se(self.conv_local(x)) if self.has_skip else self.se(self.conv_local(x))
        x = self.proj(self.proj_drop(x))
        return shortcut + self.drop_path(x) if self.has_skip else x


@formula(iRMB)
def irmb_cost(m, t, x):
    x = t(m.norm, x, "pre-norm")
    b, c, h, w = x
    if m.attn_s:
        wh, ww, n1, n2 = window_grid(h, w, m.window_size)
        windows = (b * n1 * n2, c, wh, ww)  # the padded map, split into windows
        tokens, heads = wh * ww, m.num_head
        t(m.qk, windows, "qk projection")
        scores = windows[0] * heads * tokens * tokens
        t.mac("q·kᵀ", "matmul", "matmul", scores * m.dim_head, scores)
        t.ew("attention scale", "mul", scores)
        # Tensor.softmax, not F.softmax: hook counters that patch F.softmax do not see it
        t.ew("attention softmax", "Tensor.softmax", scores, ELEMENTWISE_COST["softmax"])
        if m.attn_pre:
            t.mac("attn·x", "matmul", "matmul", scores * (c // heads), windows[0] * c * tokens)
            v = t(m.v, windows, "v projection")
        else:
            v = t(m.v, windows, "v projection")
            if v[1] % heads:
                raise ShapeError(f"iRMB: {v[1]} value channels cannot be split into {heads} heads")
            t.mac("attn·v", "matmul", "matmul", scores * (v[1] // heads), prod(v))
        x = (b, v[1], h, w)  # merged and cropped
    else:
        x = t(m.v, x, "v projection")
    y = t(m.se, t(m.conv_local, x, "depthwise"), "se")
    if m.has_skip:
        t.ew("inner residual", "add", prod(y))
    y = t(m.proj, t(m.proj_drop, y, "proj_drop"), "output projection")
    if m.has_skip:
        y = t(m.drop_path, y, "drop_path")
        t.ew("outer residual", "add", prod(y))
    return y


# --------------------------------------------------------------------------------------------
class BottleneckIRMB(Bottleneck_v8):
    """Seed 004's pasted ``Bottleneck``: Conv k[0] -> Conv k[1] -> iRMB(c2) (+ input when shortcut and c1 == c2)."""

    def __init__(self, c1, c2, shortcut=True, g=1, k=(3, 3), e=0.5):
        super().__init__(c1, c2, shortcut, g, k, e)
        self.iRMB = iRMB(c2)

    def forward(self, x):
        y = self.iRMB(self.cv2(self.cv1(x)))
        return x + y if self.add else y


@formula(BottleneckIRMB)
def bottleneck_irmb_cost(m, t, x):
    y = t(m.iRMB, t(m.cv2, t(m.cv1, x, "cv1"), "cv2"), "iRMB")
    if m.add:
        t.ew("residual", "add", prod(y))
    return y


@register(channels=conv_like_repeat,
          description="C3 as seed 004's code built it: its pasted Bottleneck (3x3 cv1, 3x3 cv2, iRMB) "
                      "shadowed YOLOv5's")
class C3_iRMBseed(C3):  # noqa: N801
    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        # C3 calls Bottleneck(c_, c_, shortcut, g, e=1.0); the pasted class's k defaults to (3, 3)
        self.m = nn.Sequential(*(BottleneckIRMB(c_, c_, shortcut, g, e=1.0) for _ in range(n)))


formula(C3_iRMBseed)(c3_cost)


@register(channels=conv_like_repeat,
          description="YOLOv8 C2f whose bottlenecks are seed 004's (3x3 cv1, 3x3 cv2, iRMB)")
class C2f_iRMB(C2f):  # noqa: N801
    def __init__(self, c1, c2, n=1, shortcut=False, g=1, e=0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        self.m = nn.ModuleList(BottleneckIRMB(self.c, self.c, shortcut, g, k=(3, 3), e=1.0) for _ in range(n))


formula(C2f_iRMB)(c2f_cost)
