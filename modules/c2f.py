"""YOLOv8's C2f block (Ultralytics ``nn/modules/block.py``; no paper), usable in YOLOv5 configs.

``C2f(c1, c2, n=1, shortcut=False, g=1, e=0.5)``: c = int(c2 * e); Conv 1x1 c1 -> 2c, split in two halves, n
bottlenecks chained on the second half with every output kept, concat (2 + n) * c -> Conv 1x1 -> c2.
Its bottleneck is Ultralytics' (3x3 + 3x3 convs), not YOLOv5's (1x1 + 3x3).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from flopscope.channels import conv_like_repeat
from flopscope.registry import formula, register
from flopscope.shapes import cat_channels

from .yolov5 import Conv, bottleneck_cost


class Bottleneck_v8(nn.Module):  # noqa: N801
    """Ultralytics bottleneck: Conv k[0] -> Conv k[1] (+ residual when c1 == c2)."""

    def __init__(self, c1, c2, shortcut=True, g=1, k=(3, 3), e=0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, k[0], 1)
        self.cv2 = Conv(c_, c2, k[1], 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        return x + self.cv2(self.cv1(x)) if self.add else self.cv2(self.cv1(x))


formula(Bottleneck_v8)(bottleneck_cost)


@register(channels=conv_like_repeat, description="YOLOv8 CSP bottleneck with 2 convs (split, n chained 3x3+3x3 "
                                                 "bottlenecks, concat all); args [c2, shortcut=False, g, e]")
class C2f(nn.Module):
    def __init__(self, c1, c2, n=1, shortcut=False, g=1, e=0.5):
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(Bottleneck_v8(self.c, self.c, shortcut, g, k=(3, 3), e=1.0) for _ in range(n))

    def forward(self, x):
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


@formula(C2f)
def c2f_cost(m, t, x):
    b, _, h, w = t(m.cv1, x, "cv1")
    ys = [(b, m.c, h, w), (b, m.c, h, w)]
    for i, block in enumerate(m.m):
        ys.append(t(block, ys[-1], f"m.{i}"))
    return t(m.cv2, cat_channels(ys), "cv2")
