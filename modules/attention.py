"""Attention and context blocks pasted into YOLOv5 by the seed posts: SE, CBAM, SimAM, CoordConv, ASPP, CAM.

Each is the form the YOLO community code uses (see the design spec, sections 3.5-3.9 and 3.25), rewritten here.
Pooled FCs (SE, CBAM) and ASPP's image-pool conv cost the same at every input size: YOLOv5's 32-px probe
scaled by area over-reports them.
"""
from __future__ import annotations

from math import prod

import torch
import torch.nn as nn
import torch.nn.functional as F

from flopscope.channels import conv_like, custom, passthrough, same_channel
from flopscope.cost import ELEMENTWISE_COST
from flopscope.registry import formula, register
from flopscope.shapes import cat_channels

from .yolov5 import Conv


# --------------------------------------------------------------------------------------------
@register(channels=same_channel, aliases=("SEAttention",),
          description="Squeeze-and-Excitation (Hu et al., CVPR 2018): avg-pool -> FC C/r -> ReLU -> FC C -> sigmoid "
                      "gate; args [c1, r=16]")
class SE(nn.Module):
    def __init__(self, c1, r=16):
        super().__init__()
        hidden = max(c1 // r, 1)  # the reference's c1 // r, kept >= 1 so that narrow layers still build
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(c1, hidden, bias=False)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, c1, bias=False)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        b, c = x.shape[:2]
        y = self.gate(self.fc2(self.act(self.fc1(self.pool(x).view(b, c)))))
        return x * y.view(b, c, 1, 1)


@formula(SE)
def se_cost(m, t, x):
    b, c = x[:2]
    t(m.pool, x, "squeeze")
    y = t(m.fc1, (b, c), "excite fc1")
    y = t(m.gate, t(m.fc2, t(m.act, y, "relu"), "excite fc2"), "sigmoid")
    t.ew("scale", "mul", prod(x))
    return x


# --------------------------------------------------------------------------------------------
@register(channels=same_channel, aliases=("CBAMBlock",),
          description="CBAM (Woo et al., ECCV 2018), YOLO form (External-Attention-pytorch CBAMBlock): shared 1x1-conv "
                      "MLP on avg+max pools, 7x7 spatial conv on channel mean+max, + input; args [c1, r=16, k=7]")
class CBAM(nn.Module):
    """Channel gate ``sigmoid(MLP(avgpool) + MLP(maxpool))``, then spatial gate ``sigmoid(conv_k([max_c, mean_c]))``
    (bias, no BN), then the block input is added back (as the YOLO copies of ``CBAMBlock`` do)."""

    def __init__(self, c1, r=16, k=7):
        super().__init__()
        hidden = max(c1 // r, 1)
        self.max_pool = nn.AdaptiveMaxPool2d(1)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.mlp = nn.Sequential(nn.Conv2d(c1, hidden, 1, bias=False), nn.ReLU(), nn.Conv2d(hidden, c1, 1, bias=False))
        self.channel_gate = nn.Sigmoid()
        self.spatial = nn.Conv2d(2, 1, k, padding=k // 2)
        self.spatial_gate = nn.Sigmoid()

    def forward(self, x):
        y = x * self.channel_gate(self.mlp(self.max_pool(x)) + self.mlp(self.avg_pool(x)))
        s = torch.cat([y.max(dim=1, keepdim=True)[0], y.mean(dim=1, keepdim=True)], 1)
        return y * self.spatial_gate(self.spatial(s)) + x


@formula(CBAM)
def cbam_cost(m, t, x):
    b, c, h, w = x
    pooled = t(m.max_pool, x, "channel max-pool")
    t(m.avg_pool, x, "channel avg-pool")
    t(m.mlp, pooled, "channel MLP (max)")
    t(m.mlp, pooled, "channel MLP (avg)")
    t.ew("channel logits add", "add", prod(pooled))
    t(m.channel_gate, pooled, "channel sigmoid")
    t.ew("channel scale", "mul", prod(x))
    t.ew("spatial max over C", "max", b * h * w, c)
    t.ew("spatial mean over C", "mean", b * h * w, c)
    t(m.spatial_gate, t(m.spatial, (b, 2, h, w), "spatial conv"), "spatial sigmoid")
    t.ew("spatial scale", "mul", prod(x))
    t.ew("residual", "add", prod(x))
    return x


# --------------------------------------------------------------------------------------------
@register(channels=passthrough,
          description="SimAM (Yang et al., ICML 2021): parameter-free energy attention x*sigmoid(energy); "
                      "args [λ=1e-4]")
class SimAM(nn.Module):
    def __init__(self, e_lambda=1e-4):
        super().__init__()
        self.e_lambda = e_lambda
        self.act = nn.Sigmoid()

    def forward(self, x):
        n = x.shape[2] * x.shape[3] - 1
        d = (x - x.mean(dim=(2, 3), keepdim=True)).pow(2)
        energy = d / (4 * (d.sum(dim=(2, 3), keepdim=True) / n + self.e_lambda)) + 0.5
        return x * self.act(energy)


@formula(SimAM)
def simam_cost(m, t, x):
    n, per_channel = prod(x), prod(x[:2])
    t.ew("channel mean", "mean", n)
    t.ew("centre", "sub", n)
    t.ew("square", "mul", n)
    t.ew("variance sum", "add", n - per_channel)  # H*W - 1 adds per channel
    t.ew("variance (/n, +λ, ×4)", "mul", per_channel, 3)
    t.ew("energy (/, +0.5)", "div", n, 2)
    t(m.act, x, "sigmoid")
    t.ew("scale", "mul", n)
    return x


# --------------------------------------------------------------------------------------------
@register(channels=conv_like,
          description="CoordConv (Liu et al., NeurIPS 2018): concat x, y (and r) coordinate planes in [-1, 1], then "
                      "YOLO Conv; args [c1, c2, k=1, s=1, with_r=False]")
class CoordConv(nn.Module):
    def __init__(self, c1, c2, k=1, s=1, with_r=False):
        super().__init__()
        self.with_r = with_r
        self.conv = Conv(c1 + 2 + int(with_r), c2, k, s)

    def forward(self, x):
        b, _, h, w = x.shape
        ys = torch.linspace(-1, 1, h, dtype=x.dtype, device=x.device).view(1, 1, h, 1).expand(b, 1, h, w)
        xs = torch.linspace(-1, 1, w, dtype=x.dtype, device=x.device).view(1, 1, 1, w).expand(b, 1, h, w)
        planes = [x, xs, ys]
        if self.with_r:
            planes.append(torch.sqrt((xs - 0.5) ** 2 + (ys - 0.5) ** 2))  # about (0.5, 0.5), as the YOLO code has it
        return self.conv(torch.cat(planes, 1))


@formula(CoordConv)
def coord_conv_cost(m, t, x):
    b, c, h, w = x
    if m.with_r:
        t.ew("radius plane", "mul", b * h * w, 6)  # 2 subs, 2 squares, add, sqrt
    return t(m.conv, (b, c + 2 + int(m.with_r), h, w), "conv")


# --------------------------------------------------------------------------------------------
@register(channels=conv_like,
          description="ASPP, YOLO-blog form: image pool 1x1 + 1x1 + 3x3 dilations 6/12/18 (biased convs, no BN), "
                      "concat 5*c2 -> 1x1; args [c1, c2]")
class ASPP(nn.Module):
    def __init__(self, c1, c2=256):
        super().__init__()
        self.mean = nn.AdaptiveAvgPool2d((1, 1))
        self.conv = nn.Conv2d(c1, c2, 1, 1)
        self.atrous_block1 = nn.Conv2d(c1, c2, 1, 1)
        self.atrous_block6 = nn.Conv2d(c1, c2, 3, 1, padding=6, dilation=6)
        self.atrous_block12 = nn.Conv2d(c1, c2, 3, 1, padding=12, dilation=12)
        self.atrous_block18 = nn.Conv2d(c1, c2, 3, 1, padding=18, dilation=18)
        self.conv_1x1_output = nn.Conv2d(c2 * 5, c2, 1, 1)

    def forward(self, x):
        image = F.interpolate(self.conv(self.mean(x)), size=x.shape[2:], mode="bilinear", align_corners=False)
        branches = [image, self.atrous_block1(x), self.atrous_block6(x), self.atrous_block12(x), self.atrous_block18(x)]
        return self.conv_1x1_output(torch.cat(branches, 1))


@formula(ASPP)
def aspp_cost(m, t, x):
    b, c, h, w = x
    pooled = t(m.conv, t(m.mean, x, "image pool"), "image pool 1x1")
    image = (b, pooled[1], h, w)
    # F.interpolate, not an nn.Upsample module: same per-element cost, invisible to hook counters
    t.ew("image pool upsample", "F.interpolate.bilinear", prod(image), ELEMENTWISE_COST["Upsample.bilinear"])
    branches = [image] + [t(getattr(m, f"atrous_block{d}"), x, f"atrous {d}") for d in (1, 6, 12, 18)]
    return t(m.conv_1x1_output, cat_channels(branches), "projection")


# --------------------------------------------------------------------------------------------
CAM_MODES = ("weight", "adaptive", "concat")


@custom("cam", "c1 = ch[from]; args = [c1, mode]; c2 = 3*c1 if mode == 'concat' else c1 (mode: weight|adaptive|concat)")
def _cam_rule(row):
    c1 = row.c_in()
    mode = row.args[0] if row.args else "weight"
    if mode not in CAM_MODES:
        raise row.error(f"CAM fusion must be one of {', '.join(CAM_MODES)}, got {mode!r}")
    return [c1, mode], 3 * c1 if mode == "concat" else c1, row.n


@register(channels=_cam_rule,
          description="Context Augmentation Module (Xiao et al. 2021): 3x3 Convs at dilations 1/3/5, 1x1 fusions, "
                      "combined by 'weight' (sum), 'adaptive' (softmax weights) or 'concat'; args [c1, mode]")
class CAM(nn.Module):
    def __init__(self, c1, fusion="weight"):
        super().__init__()
        if fusion not in CAM_MODES:
            raise ValueError(f"CAM fusion must be one of {CAM_MODES}, got {fusion!r}")
        self.fusion = fusion
        self.conv1 = Conv(c1, c1, 3, 1, None, 1, 1)
        self.conv2 = Conv(c1, c1, 3, 1, None, 1, 3)
        self.conv3 = Conv(c1, c1, 3, 1, None, 1, 5)
        self.fusion_1 = Conv(c1, c1, 1)
        self.fusion_2 = Conv(c1, c1, 1)
        self.fusion_3 = Conv(c1, c1, 1)
        if fusion == "adaptive":
            self.fusion_4 = Conv(c1 * 3, 3, 1)

    def forward(self, x):
        x1, x2, x3 = self.conv1(x), self.conv2(x), self.conv3(x)
        f1, f2, f3 = self.fusion_1(x1), self.fusion_2(x2), self.fusion_3(x3)
        if self.fusion == "weight":
            return f1 + f2 + f3
        if self.fusion == "adaptive":
            w1, w2, w3 = F.softmax(self.fusion_4(torch.cat([f1, f2, f3], 1)), dim=1).split([1, 1, 1], 1)
            return x1 * w1 + x2 * w2 + x3 * w3
        return torch.cat([f1, f2, f3], 1)


@formula(CAM)
def cam_cost(m, t, x):
    xs = [t(getattr(m, f"conv{i}"), x, f"dilated 3x3 d={d}") for i, d in ((1, 1), (2, 3), (3, 5))]
    fs = [t(getattr(m, f"fusion_{i + 1}"), y, f"fusion 1x1 {i + 1}") for i, y in enumerate(xs)]
    if m.fusion == "concat":
        return cat_channels(fs)
    if m.fusion == "weight":
        t.ew("sum", "add", 2 * prod(fs[0]))
        return fs[0]
    wts = t(m.fusion_4, cat_channels(fs), "fusion weights")
    t.ew("weights softmax", "softmax", prod(wts))
    t.ew("weighted sum (muls)", "mul", 3 * prod(xs[0]))
    t.ew("weighted sum (adds)", "add", 2 * prod(xs[0]))
    return xs[0]
