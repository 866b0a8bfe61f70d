"""EVCBlock, the Explicit Visual Center of CFPNet (Quan et al., "Centralized Feature Pyramid for Object
Detection", IEEE TIP 2023, arXiv 2210.02093), in its YOLOv5 port (YOLO ``Conv`` blocks with ReLU in the stem and
the LVC branch; QY1994-0919/CFPNet for the original).

Stem 7x7 Conv -> 3x3 max-pool (stride 1), then two branches on the same map, concatenated and fused by a 1x1 conv:
* LVC: a ResNet bottleneck (1x1, 3x3, 1x1, 1x1 projection shortcut) -> 1x1 Conv -> Encoding (64 learnable
  codewords, soft-assigned by scaled squared distance) -> BN1d -> ReLU -> mean over codes -> Linear + sigmoid ->
  ``relu(x + x * gamma)``.  The Encoding is all broadcast element-wise math (no MACs for any counter).
* LightMLP: GroupNorm(1) -> depthwise 1x1 Conv -> 1x1 Conv -> layer scale -> residual; GroupNorm(1) -> 1x1 conv to
  4C -> GELU -> 1x1 conv -> layer scale -> residual.
"""
from __future__ import annotations

from math import prod

import torch
import torch.nn as nn
import torch.nn.functional as F

from flopscope.channels import same_channel
from flopscope.cost import ELEMENTWISE_COST
from flopscope.registry import formula, register
from flopscope.shapes import cat_channels

from .yolov5 import Conv

NUM_CODES = 64  # the reference code forces 64 codewords whatever is passed


class Encoding(nn.Module):
    """Soft-assignment encoding, (B, C, H, W) -> (B, K, C): ``e_k = sum_n softmax_k(s_k |x_n - c_k|^2) (x_n - c_k)``."""

    def __init__(self, c, num_codes=NUM_CODES):
        super().__init__()
        std = 1.0 / (num_codes * c) ** 0.5
        self.codewords = nn.Parameter(torch.empty(num_codes, c).uniform_(-std, std))
        self.scale = nn.Parameter(torch.empty(num_codes).uniform_(-1, 0))

    def forward(self, x):
        b, c = x.shape[:2]
        x = x.view(b, c, -1).transpose(1, 2).unsqueeze(2)  # (B, N, 1, C)
        residual = x - self.codewords  # (B, N, K, C)
        weights = F.softmax(self.scale * residual.pow(2).sum(3), dim=2)  # (B, N, K)
        return (weights.unsqueeze(3) * residual).sum(1)


@formula(Encoding)
def encoding_cost(m, t, x):
    b, c, h, w = x
    k = m.codewords.shape[0]
    pairs = b * h * w * k  # (pixel, code) pairs
    # x - c_k once per (pair, channel), then squared and summed over C (C - 1 adds per pair)
    t.ew("distance (sub, square, sum over C)", "sub", 3 * pairs * c - pairs, 1)
    t.ew("distance scale", "mul", pairs)
    t.ew("assignment softmax", "softmax", pairs)
    # weights x residual (the residual reused, not recomputed), summed over the N pixels (N - 1 adds per (code, C))
    t.ew("aggregate (mul, sum over N)", "mul", 2 * pairs * c - b * k * c, 1)
    return (b, k, c)


class ConvBlock(nn.Module):
    """ResNet bottleneck with a 1x1 projection shortcut (width C/4), ReLU after the add."""

    def __init__(self, c1, c2, res_conv=False):
        super().__init__()
        c = c2 // 4
        self.conv1 = Conv(c1, c, act=nn.ReLU())
        self.conv2 = Conv(c, c, k=3, act=nn.ReLU())
        self.conv3 = Conv(c, c2, 1, act=False)
        self.act3 = nn.ReLU(inplace=True)
        if res_conv:
            self.residual_conv = nn.Conv2d(c1, c2, 1, bias=False)
            self.residual_bn = nn.BatchNorm2d(c2, eps=1e-6)
        self.res_conv = res_conv

    def forward(self, x):
        y = self.conv3(self.conv2(self.conv1(x)))
        if self.res_conv:
            x = self.residual_bn(self.residual_conv(x))
        return self.act3(y + x)


@formula(ConvBlock)
def conv_block_cost(m, t, x):
    y = t(m.conv3, t(m.conv2, t(m.conv1, x, "conv1"), "conv2"), "conv3")
    if m.res_conv:
        x = t(m.residual_bn, t(m.residual_conv, x, "shortcut conv"), "shortcut bn")
    t.ew("residual", "add", prod(y))
    return t(m.act3, y, "relu")


class LVCBlock(nn.Module):
    """Learnable visual center: bottleneck -> 1x1 Conv -> Encoding -> BN1d -> ReLU -> mean over codes -> gate."""

    def __init__(self, c):
        super().__init__()
        self.conv_1 = ConvBlock(c, c, res_conv=True)
        self.conv = Conv(c, c, 1, act=nn.ReLU())
        self.encoding = Encoding(c, NUM_CODES)
        self.bn = nn.BatchNorm1d(NUM_CODES)
        self.act = nn.ReLU(inplace=True)
        self.fc = nn.Linear(c, c)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        x = self.conv_1(x)
        codes = self.act(self.bn(self.encoding(self.conv(x)))).mean(dim=1)  # (B, C)
        gamma = self.gate(self.fc(codes))
        return F.relu_(x + x * gamma.view(*gamma.shape, 1, 1))


@formula(LVCBlock)
def lvc_block_cost(m, t, x):
    x = t(m.conv_1, x, "bottleneck")
    codes = t(m.act, t(m.bn, t(m.encoding, t(m.conv, x, "conv"), "encoding"), "bn1d"), "relu")
    b, k, c = codes
    t.ew("mean over codes", "mean", prod(codes))
    t(m.gate, t(m.fc, (b, c), "fc"), "sigmoid")
    t.ew("x + x*gamma", "mul", prod(x), 2)
    t.ew("relu", "F.relu_", prod(x), ELEMENTWISE_COST["ReLU"])  # in-place functional: no hook sees it
    return x


class Mlp(nn.Module):
    """1x1 conv C -> hidden, GELU, 1x1 conv hidden -> C (both with bias)."""

    def __init__(self, c, hidden):
        super().__init__()
        self.fc1 = nn.Conv2d(c, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, c, 1)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


@formula(Mlp)
def mlp_cost(m, t, x):
    return t(m.fc2, t(m.act, t(m.fc1, x, "fc1"), "gelu"), "fc2")


class LightMLPBlock(nn.Module):
    """Two pre-norm (GroupNorm 1) residual units with layer scale: depthwise 1x1 + pointwise Conv, then an MLP x4."""

    def __init__(self, c, mlp_ratio=4.0, layer_scale_init_value=1e-5):
        super().__init__()
        self.dconv = Conv(c, c, 1, g=c)
        self.pconv = Conv(c, c, 1)
        self.linear = nn.Linear(c, c)  # defined but never called by the reference forward; kept for its params
        self.norm1 = nn.GroupNorm(1, c)
        self.norm2 = nn.GroupNorm(1, c)
        self.mlp = Mlp(c, int(c * mlp_ratio))
        self.layer_scale_1 = nn.Parameter(layer_scale_init_value * torch.ones(c))
        self.layer_scale_2 = nn.Parameter(layer_scale_init_value * torch.ones(c))

    def forward(self, x):
        x = x + self.layer_scale_1.view(-1, 1, 1) * self.pconv(self.dconv(self.norm1(x)))
        return x + self.layer_scale_2.view(-1, 1, 1) * self.mlp(self.norm2(x))


@formula(LightMLPBlock)
def light_mlp_block_cost(m, t, x):
    y = t(m.pconv, t(m.dconv, t(m.norm1, x, "norm1"), "depthwise 1x1"), "pointwise 1x1")
    t.ew("layer scale 1 + residual", "mul", prod(y), 2)
    y = t(m.mlp, t(m.norm2, x, "norm2"), "mlp")
    t.ew("layer scale 2 + residual", "mul", prod(y), 2)
    return y


@register(channels=same_channel,
          description="CFPNet Explicit Visual Center (TIP 2023), YOLOv5 port: 7x7 stem + LVC (codebook encoding) and "
                      "LightMLP branches, concat -> 1x1; args [c1, c2=c1]")
class EVCBlock(nn.Module):
    def __init__(self, c1, c2=None, channel_ratio=4, base_channel=16):
        super().__init__()
        if c2 not in (None, c1):  # the LightMLP residuals and the 2*c2 fuse conv need c2 == c1
            raise ValueError(f"EVCBlock keeps the channel count: out_channels {c2} != in_channels {c1}")
        self.conv1 = Conv(c1, c1, k=7, act=nn.ReLU())
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        self.lvc = LVCBlock(c1)
        self.l_MLP = LightMLPBlock(c1)
        self.cnv1 = nn.Conv2d(c1 * 2, c1, 1)

    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        return self.cnv1(torch.cat((self.lvc(x), self.l_MLP(x)), 1))


@formula(EVCBlock)
def evc_block_cost(m, t, x):
    x = t(m.maxpool, t(m.conv1, x, "stem 7x7"), "stem max-pool")
    y = cat_channels([t(m.lvc, x, "lvc"), t(m.l_MLP, x, "light mlp")])
    return t(m.cnv1, y, "fuse 1x1")
