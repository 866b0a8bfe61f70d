"""YOLO12's area-attention blocks as ultralytics 8.4.x builds them (``ultralytics/nn/modules/block.py``).

YOLO12 (Tian, Ye, Doermann 2025, "YOLOv12: Attention-Centric Real-Time Object Detectors"):

* ``AAttn(dim, num_heads, area=1)``: area attention.  qkv 1x1 conv (no act) to 3 * dim; the H*W positions (in
  row-major order) are cut into ``area`` equal areas (``area`` > 1: the batch becomes B * area, N / area positions
  each), softmax attention per head inside each area (``q * head_dim**-0.5``, ``qᵀk``, softmax, ``v attnᵀ``), then
  ``+ pe(v)`` (7x7 depth-wise conv, no act) and a 1x1 projection.  H*W must be divisible by ``area``.
* ``ABlock(dim, num_heads, mlp_ratio=1.2, area=1)``: ``x + attn(x)``, then ``x + mlp(x)`` (1x1 -> dim*mlp_ratio,
  1x1 back, no act).
* ``A2C2f(c1, c2, n=1, a2=True, area=1, residual=False, mlp_ratio=2.0, e=0.5, g=1, shortcut=True)``: R-ELAN;
  cv1 1x1 -> c_ = c2*e, n chained blocks (two ABlocks with c_ // 32 heads when ``a2``, else a C3k with 2
  bottlenecks), concat (1 + n) c_ -> cv2 1x1; with ``a2 and residual``: ``x + gamma * y`` (gamma: c2 params).

Channel rule (parse_model): as a repeat module (``[c1, c2, n, *args[1:]]``), the row switches the detection heads
out of ``legacy`` mode, and at scales ``l`` / ``x`` ``(True, 1.2)`` is appended (``residual``, ``mlp_ratio``).
"""
from __future__ import annotations

from math import prod

import torch
import torch.nn as nn

from flopscope.channels import conv_like_repeat, custom
from flopscope.registry import formula, register
from flopscope.shapes import ShapeError, cat_channels

from .ul_blocks import C3k
from .yolov5 import Conv

UL = "ultralytics"


class AAttn(nn.Module):
    def __init__(self, dim, num_heads, area=1):
        super().__init__()
        self.area = area
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.all_head_dim = self.head_dim * num_heads
        self.qkv = Conv(dim, self.all_head_dim * 3, 1, act=False)
        self.proj = Conv(self.all_head_dim, dim, 1, act=False)
        self.pe = Conv(self.all_head_dim, self.all_head_dim, 7, 1, 3, g=self.all_head_dim, act=False)

    def forward(self, x):
        b, _, h, w = x.shape
        n = h * w
        qkv = self.qkv(x).flatten(2).transpose(1, 2)  # (B, N, 3 * all_head_dim)
        if self.area > 1:
            qkv = qkv.reshape(b * self.area, n // self.area, self.all_head_dim * 3)
        bt, nt, _ = qkv.shape
        q, k, v = qkv.view(bt, nt, self.num_heads, self.head_dim * 3).permute(0, 2, 3, 1).split(
            [self.head_dim] * 3, dim=2)  # each (Bt, heads, head_dim, Nt)
        attn = ((q * self.head_dim ** -0.5).transpose(-2, -1) @ k).softmax(dim=-1)
        out = (v @ attn.transpose(-2, -1)).permute(0, 3, 1, 2)  # (Bt, Nt, heads, head_dim)
        v = v.permute(0, 3, 1, 2)
        out = out.reshape(b, h, w, self.all_head_dim).permute(0, 3, 1, 2)
        v = v.reshape(b, h, w, self.all_head_dim).permute(0, 3, 1, 2)
        return self.proj(out + self.pe(v))


@formula(AAttn)
def aattn_cost(m, t, x):
    b, _, h, w = x
    n = h * w
    area = max(m.area, 1)
    if n % area:
        raise ShapeError(f"area attention: {h}x{w} = {n} positions do not split into {area} areas")
    bt, nt, nh, hd = b * area, n // area, m.num_heads, m.head_dim
    t(m.qkv, x, "qkv")
    t.ew("q scale", "mul", bt * nh * hd * nt)
    t.mac("qᵀ·k", "matmul", "matmul", bt * nh * nt * nt * hd, bt * nh * nt * nt)
    t.ew("softmax", "softmax", bt * nh * nt * nt)
    t.mac("v·attnᵀ", "matmul", "matmul", bt * nh * hd * nt * nt, bt * nh * hd * nt)
    y = (b, m.all_head_dim, h, w)
    t(m.pe, y, "pe")
    t.ew("pe add", "add", prod(y))
    return t(m.proj, y, "proj")


class ABlock(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=1.2, area=1):
        super().__init__()
        self.attn = AAttn(dim, num_heads=num_heads, area=area)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(Conv(dim, hidden, 1), Conv(hidden, dim, 1, act=False))

    def forward(self, x):
        x = x + self.attn(x)
        return x + self.mlp(x)


@formula(ABlock)
def ablock_cost(m, t, x):
    y = t(m.attn, x, "attn")
    t.ew("attn residual", "add", prod(y))
    y = t(m.mlp, y, "mlp")
    t.ew("mlp residual", "add", prod(y))
    return y


@custom("a2c2f", "as conv+n (args [c1, c2, n, *args[1:]]); switches the heads out of legacy mode; at scales "
                 "l/x appends (residual=True, mlp_ratio=1.2)")
def _a2c2f_rule(row):
    args, c2, n = conv_like_repeat(row)
    row.state["legacy"] = False
    if row.scale in ("l", "x"):
        args.extend((True, 1.2))
    return args, c2, n


@register(channels=_a2c2f_rule, dialect=UL,
          description="YOLO12 R-ELAN (A2C2f): cv1 1x1, n chained blocks (2 area-attention ABlocks, or C3k), concat "
                      "-> cv2 1x1 (+ gamma-scaled residual at l/x); args [c2, a2=True, area=1]")
class A2C2f(nn.Module):
    def __init__(self, c1, c2, n=1, a2=True, area=1, residual=False, mlp_ratio=2.0, e=0.5, g=1, shortcut=True):
        super().__init__()
        c_ = int(c2 * e)
        if a2 and c_ % 32:
            raise ValueError(f"A2C2f: the ABlock width {c_} must be a multiple of 32")
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv((1 + n) * c_, c2, 1)
        self.gamma = nn.Parameter(0.01 * torch.ones(c2)) if a2 and residual else None
        self.m = nn.ModuleList(
            nn.Sequential(*(ABlock(c_, c_ // 32, mlp_ratio, area) for _ in range(2))) if a2
            else C3k(c_, c_, 2, shortcut, g)
            for _ in range(n))

    def forward(self, x):
        y = [self.cv1(x)]
        y.extend(m(y[-1]) for m in self.m)
        y = self.cv2(torch.cat(y, 1))
        return x + self.gamma.view(-1, self.gamma.shape[0], 1, 1) * y if self.gamma is not None else y


@formula(A2C2f)
def a2c2f_cost(m, t, x):
    ys = [t(m.cv1, x, "cv1")]
    for i, block in enumerate(m.m):
        ys.append(t(block, ys[-1], f"m.{i}"))
    y = t(m.cv2, cat_channels(ys), "cv2")
    if m.gamma is not None:
        if tuple(x) != tuple(y):
            raise ShapeError(f"A2C2f residual: input {tuple(x)} and output {tuple(y)} differ")
        t.ew("gamma scale", "mul", prod(y))
        t.ew("residual", "add", prod(y))
    return y
