"""YOLO26 dense-prediction heads of Ultralytics 8.4.x (``ultralytics/nn/modules/head.py``), Ultralytics dialect:
``Depth`` (monocular depth, ``yolo26-depth.yaml``) and ``SemanticSegment`` (``yolo26-sem.yaml``).

Facts (8.4.190) the classes below reproduce:

* parse_model: ``Depth``: ``args = [args[0] (c_mid), [ch[x] for x in from]]``; ``SemanticSegment``:
  ``args = [*args (nc), [ch[x] for x in from]]``.  Neither is width-scaled.
* Depth: ``proj`` (1x1 Conv of every level to c_mid), ``refine`` (two 3x3 Convs after each of the nl-1 top-down
  fusions), ``head`` = Conv 3x3 c_mid/2, ConvTranspose2d 2x2 s2 (bias), Conv 3x3 c_mid/4, Conv2d 1x1 -> 1 (bias).
  Eval forward: project, then from the coarsest level down: bilinear x2 (align_corners), add the finer projection,
  refine; head; clamp(-4, 5); ``exp(cal_a * out + cal_b)`` -> (B, 1, H/4, W/4).  DepthModel is a DetectionModel
  whose head is not a Detect: stride 32.
* SemanticSegment: ``classifier`` = Conv 3x3 (c = ch[0]) + Conv2d 1x1 -> nc on P3; ``aux_head`` (Conv 3x3 from P4,
  Conv2d 1x1) runs in training only (its parameters count).  Eval returns the P3 logits.
  SemanticSegmentationModel's stride: 256 / the smallest feature map of a 256x256 forward (the deepest backbone
  stride, 32 for the official configs).
"""
from __future__ import annotations

from math import prod

import torch
import torch.nn as nn
import torch.nn.functional as F

from flopscope.channels import custom
from flopscope.cost import ELEMENTWISE_COST
from flopscope.registry import formula, register
from flopscope.shapes import ShapeError, check_channels

from .ul_heads import _levels  # [ch[x] for x in from], as the other heads
from .yolov5 import Conv

UL = "ultralytics"


@custom("ul-depth", "args = [args[0] (c_mid), [ch[x] for x in from]] (not width-scaled)")
def _depth_rule(row):
    c_mid = row.require_int_arg(0, "c_mid")
    return [c_mid, _levels(row)], 1, row.n


@register("Depth", channels=_depth_rule, dialect=UL,
          description="YOLO26 depth head: 1x1 projections to c_mid, top-down bilinear fusion with 3x3 refinement, "
                      "2x transposed-conv head to a log-depth map at H/4; args [c_mid]")
class Depth(nn.Module):
    def __init__(self, c_mid: int = 256, ch=()):
        super().__init__()
        self.nl = len(ch)
        self.proj = nn.ModuleList(Conv(c, c_mid, k=1) for c in ch)
        self.refine = nn.ModuleList(nn.Sequential(Conv(c_mid, c_mid, k=3), Conv(c_mid, c_mid, k=3)) for _ in ch[:-1])
        self.head = nn.Sequential(
            Conv(c_mid, c_mid // 2, k=3),
            nn.ConvTranspose2d(c_mid // 2, c_mid // 2, kernel_size=2, stride=2, bias=True),
            Conv(c_mid // 2, c_mid // 4, k=3),
            nn.Conv2d(c_mid // 4, 1, kernel_size=1),
        )
        self.register_buffer("cal_a", torch.ones(1))
        self.register_buffer("cal_b", torch.zeros(1))

    def model_stride(self, shapes, head_inputs, s):
        """DepthModel is a DetectionModel whose head is no Detect: ultralytics' default stride."""
        return [32.0]

    def forward(self, x):
        feats = [self.proj[i](x[i]) for i in range(self.nl)]
        out = feats[-1]
        for i in range(self.nl - 2, -1, -1):
            out = F.interpolate(out, scale_factor=2, mode="bilinear", align_corners=True)
            out = self.refine[i](out + feats[i])
        out = self.head(out).clamp(-4.0, 5.0)
        if self.training:
            return {"depth": torch.exp(out)}
        return torch.exp(self.cal_a * out + self.cal_b)


@formula(Depth)
def depth_cost(m, t, xs):
    if not isinstance(xs, list) or len(xs) != m.nl:
        raise ShapeError(f"Depth has {m.nl} levels but receives {len(xs) if isinstance(xs, list) else 1} input(s)")
    feats = [t(m.proj[i], x, f"proj.{i}") for i, x in enumerate(xs)]
    out = feats[-1]
    for i in range(m.nl - 2, -1, -1):
        b, c, h, w = out
        if (2 * h, 2 * w) != tuple(feats[i][2:]):
            raise ShapeError(f"Depth: level {i + 1} ({h}x{w}) x2 does not match level {i} "
                             f"({feats[i][2]}x{feats[i][3]})")
        out = (b, c, 2 * h, 2 * w)
        # F.interpolate, not an nn.Upsample module: same per-element cost, invisible to hook counters (thop)
        t.ew(f"upsample.{i}", "F.interpolate.bilinear", prod(out), ELEMENTWISE_COST["Upsample.bilinear"])
        t.ew(f"add.{i}", "add", prod(out))
        out = t(m.refine[i], out, f"refine.{i}")
    y = t(m.head, out, "head")
    n = prod(y)
    t.ew("clamp", "max", n)  # clamp(-4, 5): one compare-select per element, as the op-level counter rules clamp
    t.ew("calibrate.mul", "mul", n)
    t.ew("calibrate.add", "add", n)
    t.ew("exp", "exp", n)
    return y


@custom("ul-semseg", "args = [*args (nc), [ch[x] for x in from]] (not width-scaled)")
def _semseg_rule(row):
    nc = row.require_int_arg(0, "nc")
    return [*row.args, _levels(row)], nc, row.n


@register("SemanticSegment", channels=_semseg_rule, dialect=UL,
          description="YOLO26 semantic-segmentation head: Conv 3x3 + 1x1 -> nc logits on P3 (an auxiliary P4 "
                      "classifier trains only); args [nc]")
class SemanticSegment(nn.Module):
    def __init__(self, nc: int = 19, ch=()):
        super().__init__()
        self.nc = nc
        self.nl = len(ch)
        c_mid = ch[0]
        self.classifier = nn.Sequential(Conv(c_mid, c_mid, 3), nn.Conv2d(c_mid, nc, 1))
        self.aux_head = nn.Sequential(Conv(ch[1], c_mid, 3), nn.Conv2d(c_mid, nc, 1)) if len(ch) > 1 else None

    def model_stride(self, shapes, head_inputs, s):
        """As SemanticSegmentationModel: s / the smallest feature map height of an s x s forward."""
        hs = [x[-2] for x in shapes if isinstance(x, tuple) and len(x) == 4]
        return [s / min([s, *hs])]

    def forward(self, x):
        logits = self.classifier(x[0])
        if self.training and self.aux_head is not None:
            return logits, self.aux_head(x[1])
        return logits


@formula(SemanticSegment)
def semseg_cost(m, t, xs):
    xs = xs if isinstance(xs, list) else [xs]
    check_channels(m, xs[0][1], m.classifier[0].conv.in_channels)
    return t(m.classifier, xs[0], "classifier")
