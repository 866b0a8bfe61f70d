"""Detection heads beyond YOLOv5's ``Detect``.

* ``Decoupled_Detect`` -- efficient decoupled head (YOLOv6, Li et al., arXiv 2209.02976; decoupled heads from
  YOLOX, arXiv 2107.08430), YOLOv5 port: per level a 1x1 stem, then a classification branch (Conv 3x3 ->
  1x1 na*nc) and a regression branch (Conv 3x3 -> 1x1 na*4 box and 1x1 na objectness).  The per-level output
  has Detect's layout (na x (4 + 1 + nc) channels, anchor-major), so Detect's decode and eval output apply.
* ``Detect_Aux`` -- YOLOv7-style auxiliary head (Wang et al., arXiv 2207.02696; ``IAuxDetect`` without the
  implicit layers), YOLOv5-AUX port: 2 x nl inputs, ``m`` 1x1 convs on the nl main levels and ``m2`` on the
  nl aux levels.  Eval returns the main predictions only, but the aux convs still run (and are counted):
  a deploy profile would drop them.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from flopscope.channels import custom, detect
from flopscope.registry import formula, register
from flopscope.shapes import ShapeError, check_channels

from .yolov5 import Conv, Detect, detect_cost, detect_levels


class DecoupledHead(nn.Module):
    """One level of the efficient decoupled head: stem 1x1, cls 3x3 -> 1x1, reg 3x3 -> 1x1 box + 1x1 obj."""

    def __init__(self, c, nc, na):
        super().__init__()
        self.c, self.nc, self.na = c, nc, na
        self.stem = Conv(c, c, 1)
        self.cls_conv = Conv(c, c, 3)
        self.reg_conv = Conv(c, c, 3)
        self.cls_pred = nn.Conv2d(c, na * nc, 1)
        self.reg_pred = nn.Conv2d(c, na * 4, 1)
        self.obj_pred = nn.Conv2d(c, na, 1)

    def forward(self, x):
        x = self.stem(x)
        b, _, h, w = x.shape
        cls = self.cls_pred(self.cls_conv(x)).view(b, self.na, self.nc, h, w)
        r = self.reg_conv(x)
        box = self.reg_pred(r).view(b, self.na, 4, h, w)
        obj = self.obj_pred(r).view(b, self.na, 1, h, w)
        return torch.cat((box, obj, cls), 2).view(b, -1, h, w)  # Detect's (na, 5 + nc) channel layout


@formula(DecoupledHead)
def decoupled_head_cost(m, t, x):
    check_channels(m, x[1], m.c)
    x = t(m.stem, x, "stem")
    t(m.cls_pred, t(m.cls_conv, x, "cls_conv"), "cls_pred")
    r = t(m.reg_conv, x, "reg_conv")
    t(m.reg_pred, r, "reg_pred")
    b, _, h, w = t(m.obj_pred, r, "obj_pred")
    return (b, m.na * (m.nc + 5), h, w)


@register(channels=detect, description="Efficient decoupled head (YOLOv6-style, YOLOv5 port): per level stem 1x1, "
                                       "cls 3x3 + 1x1, reg 3x3 + 1x1 box/obj; output as Detect")
class Decoupled_Detect(Detect):  # noqa: N801 - YAML name
    def __init__(self, nc=80, anchors=(), ch=(), inplace=True):
        super().__init__(nc, anchors, ch, inplace)
        self.m = nn.ModuleList(DecoupledHead(x, nc, self.na) for x in ch)


formula(Decoupled_Detect)(detect_cost)


# --------------------------------------------------------------------------------------------
@custom("detect_aux", "as detect with 2 x nl inputs (nl main levels, then nl aux levels); an int 'anchors' "
                      "expands to nl = len(from) / 2 levels")
def _detect_aux_rule(row):
    f = row.f if isinstance(row.f, list) else [row.f]
    if len(f) % 2:
        raise row.error(f"an aux head takes 2 x nl inputs (main levels, then aux levels), gets {len(f)}", "from")
    args, c2, n = detect(row)
    if isinstance(row.args[1], int):
        args[1] = args[1][: len(f) // 2]
    return args, c2, n


@register(channels=_detect_aux_rule, description="Detect with an auxiliary head (YOLOv7 IAuxDetect idea, YOLOv5-AUX "
                                                 "port): 2 x nl inputs; eval returns main predictions, aux convs run")
class Detect_Aux(Detect):  # noqa: N801 - YAML name
    def __init__(self, nc=80, anchors=(), ch=(), inplace=True):
        nl = len(anchors)
        if len(ch) != 2 * nl:
            raise ValueError(f"Detect_Aux with {nl} anchor levels needs {2 * nl} inputs, gets {len(ch)}")
        super().__init__(nc, anchors, ch[:nl], inplace)
        self.m2 = nn.ModuleList(nn.Conv2d(x, self.no * self.na, 1) for x in ch[nl:])

    def forward(self, x):
        aux = []
        for i, conv in enumerate(self.m2):
            a = conv(x[self.nl + i])
            bs, _, ny, nx = a.shape
            aux.append(a.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous())
        out = Detect.forward(self, list(x[: self.nl]))
        return out + aux if self.training else out


@formula(Detect_Aux)
def detect_aux_cost(m, t, xs):
    if len(xs) != 2 * m.nl:
        raise ShapeError(f"Detect_Aux has {m.nl} levels and takes {2 * m.nl} inputs, gets {len(xs)}")
    for i, x in enumerate(xs[m.nl:]):
        t(m.m2[i], x, f"m2.{i}")
    return detect_levels(m, t, list(xs[: m.nl]))
