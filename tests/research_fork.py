"""A small YOLOv5-like fork, written for the tests (not YOLOv5's code): third-party-style modules in
``models/common.py`` (importing the fork's own ``utils`` package), a YOLOv5-style ``parse_model`` and
``Model`` in ``models/yolo.py``.  The tests build the same YAML with this code (the oracle) and with
flopscope, and compare layer by layer.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

UTILS_GENERAL = '''\
import math


def make_divisible(x, divisor):
    return math.ceil(x / divisor) * divisor
'''

COMMON = '''\
# the fork's models/common.py: YOLOv5-style blocks plus modules pasted from an attention collection
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.general import make_divisible  # the fork's own utils package


def autopad(k, p=None, d=1):
    if p is None:
        p = k // 2
    return p


class Conv(nn.Module):
    default_act = nn.SiLU()

    def __init__(self, c1, c2, k=1, s=1, p=None, g=1, d=1, act=True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p, d), groups=g, dilation=d, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = self.default_act if act is True else nn.Identity()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c1, c2, shortcut=True, g=1, e=0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        return x + self.cv2(self.cv1(x)) if self.add else self.cv2(self.cv1(x))


class C3(nn.Module):
    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x):
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    def __init__(self, c1, c2, k=5):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x):
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class Concat(nn.Module):
    def __init__(self, dimension=1):
        super().__init__()
        self.d = dimension

    def forward(self, x):
        return torch.cat(x, self.d)


class SEAttention(nn.Module):
    # edited by the researcher: reduction 16 -> 4
    def __init__(self, channel=512, reduction=4):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(channel, channel // reduction, bias=False), nn.ReLU(inplace=True),
                                nn.Linear(channel // reduction, channel, bias=False), nn.Sigmoid())

    def forward(self, x):
        b, c, _, _ = x.size()
        y = self.fc(self.avg_pool(x).view(b, c)).view(b, c, 1, 1)
        return x * y.expand_as(x)


class MLCA(nn.Module):
    # the second parameter is NOT an output channel count: MLCA(256, 256) would pool to 256 x 256
    def __init__(self, in_size, local_size=5, gamma=2, b=1, local_weight=0.5):
        super().__init__()
        self.local_size = local_size
        t = int(abs(math.log(in_size, 2) + b) / gamma)
        k = t if t % 2 else t + 1
        self.conv = nn.Conv1d(1, 1, kernel_size=k, padding=(k - 1) // 2, bias=False)
        self.conv_local = nn.Conv1d(1, 1, kernel_size=k, padding=(k - 1) // 2, bias=False)
        self.local_weight = local_weight
        self.local_arv_pool = nn.AdaptiveAvgPool2d(local_size)
        self.global_arv_pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        local_arv = self.local_arv_pool(x)
        global_arv = self.global_arv_pool(local_arv)
        b, c, m, n = x.shape
        b_local, c_local, m_local, n_local = local_arv.shape
        temp_local = local_arv.view(b, c_local, -1).transpose(-1, -2).reshape(b, 1, -1)
        temp_global = global_arv.view(b, c, -1).transpose(-1, -2)
        y_local = self.conv_local(temp_local)
        y_global = self.conv(temp_global)
        y_local_transpose = y_local.reshape(b, self.local_size * self.local_size, c).transpose(-1, -2).view(
            b, c, self.local_size, self.local_size)
        y_global_transpose = y_global.transpose(-1, -2).unsqueeze(-1)
        att_local = y_local_transpose.sigmoid()
        att_global = F.adaptive_avg_pool2d(y_global_transpose.sigmoid(), [self.local_size, self.local_size])
        att_all = F.adaptive_avg_pool2d(att_global * (1 - self.local_weight) + (att_local * self.local_weight),
                                        [m, n])
        return x * att_all


class ZPool(nn.Module):
    def forward(self, x):
        return torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)), dim=1)


class AttentionGate(nn.Module):
    def __init__(self):
        super().__init__()
        self.compress = ZPool()
        self.conv = nn.Conv2d(2, 1, 7, 1, 3, bias=False)

    def forward(self, x):
        return x * torch.sigmoid(self.conv(self.compress(x)))


class TripletAttention(nn.Module):
    # takes no channel count at all
    def __init__(self, no_spatial=False):
        super().__init__()
        self.cw = AttentionGate()
        self.hc = AttentionGate()
        self.no_spatial = no_spatial
        if not no_spatial:
            self.hw = AttentionGate()

    def forward(self, x):
        x_out1 = self.cw(x.permute(0, 2, 1, 3).contiguous()).permute(0, 2, 1, 3).contiguous()
        x_out2 = self.hc(x.permute(0, 3, 2, 1).contiguous()).permute(0, 3, 2, 1).contiguous()
        if not self.no_spatial:
            return 1 / 3 * (self.hw(x) + x_out1 + x_out2)
        return 1 / 2 * (x_out1 + x_out2)


class SpatialGroupEnhance(nn.Module):
    # takes the number of groups, not channels
    def __init__(self, groups=8):
        super().__init__()
        self.groups = groups
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.weight = nn.Parameter(torch.zeros(1, groups, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, groups, 1, 1))
        self.sig = nn.Sigmoid()

    def forward(self, x):
        b, c, h, w = x.shape
        x = x.view(b * self.groups, -1, h, w)
        xn = x * self.avg_pool(x)
        xn = xn.sum(dim=1, keepdim=True)
        t = xn.view(b * self.groups, -1)
        t = t - t.mean(dim=1, keepdim=True)
        std = t.std(dim=1, keepdim=True) + 1e-5
        t = (t / std).view(b, self.groups, h, w)
        t = t * self.weight + self.bias
        x = x * self.sig(t.view(b * self.groups, 1, h, w))
        return x.view(b, c, h, w)


class CSPMix(nn.Module):
    # its parse_model branch scales the hidden widths (args[2], args[3]) by width_multiple too
    def __init__(self, c1, c2, c_hidden, c_attn):
        super().__init__()
        self.cv1 = Conv(c1, c_hidden, 1)
        self.cv2 = Conv(c_hidden, c_attn, 3)
        self.cv3 = Conv(c_attn + c1, c2, 1)

    def forward(self, x):
        return self.cv3(torch.cat((self.cv2(self.cv1(x)), x), 1))
'''

YOLO = '''\
# the fork's models/yolo.py: parse_model and Model in YOLOv5's style (written for the tests)
import sys
from copy import deepcopy
from pathlib import Path

FILE = Path(__file__).resolve()
ROOT = FILE.parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

import torch
import torch.nn as nn

from models.common import *  # noqa: F401,F403
from utils.general import make_divisible


class Detect(nn.Module):
    stride = None

    def __init__(self, nc=80, anchors=(), ch=()):
        super().__init__()
        self.nc = nc
        self.no = nc + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        self.grid = [torch.empty(0) for _ in range(self.nl)]
        self.register_buffer("anchors", torch.tensor(anchors).float().view(self.nl, -1, 2))
        self.m = nn.ModuleList(nn.Conv2d(x, self.no * self.na, 1) for x in ch)

    def forward(self, x):
        z = []
        for i in range(self.nl):
            x[i] = self.m[i](x[i])
            bs, _, ny, nx = x[i].shape
            x[i] = x[i].view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            if not self.training:
                z.append(x[i].sigmoid().view(bs, -1, self.no))
        return x if self.training else (torch.cat(z, 1), x)


def parse_model(d, ch):
    anchors, nc, gd, gw = d["anchors"], d["nc"], d["depth_multiple"], d["width_multiple"]
    na = (len(anchors[0]) // 2) if isinstance(anchors, list) else anchors
    no = na * (nc + 5)
    layers, save, c2 = [], [], ch[-1]
    for i, (f, n, m, args) in enumerate(d["backbone"] + d["head"]):
        m = eval(m) if isinstance(m, str) else m
        for j, a in enumerate(args):
            try:
                args[j] = eval(a) if isinstance(a, str) else a
            except NameError:
                pass
        n = n_ = max(round(n * gd), 1) if n > 1 else n
        if m in {Conv, Bottleneck, SPPF, C3}:
            c1, c2 = ch[f], args[0]
            if c2 != no:
                c2 = make_divisible(c2 * gw, 8)
            args = [c1, c2, *args[1:]]
            if m in {C3}:
                args.insert(2, n)
                n = 1
        elif m is CSPMix:
            c1, c2 = ch[f], make_divisible(args[0] * gw, 8)
            args = [c1, c2, *args[1:]]
            args[2] = make_divisible(args[2] * gw, 8)
            args[3] = make_divisible(args[3] * gw, 8)
        elif m in {SEAttention, MLCA}:  # the attention collection's readme: c2 = ch[f]; args = [c2, *args]
            c2 = ch[f]
            args = [c2, *args]
        elif m is Concat:
            c2 = sum(ch[x] for x in f)
        elif m is Detect:
            args.append([ch[x] for x in f])
            if isinstance(args[1], int):
                args[1] = [list(range(args[1] * 2))] * len(f)
        else:
            c2 = ch[f]
        m_ = nn.Sequential(*(m(*args) for _ in range(n))) if n > 1 else m(*args)
        t = str(m)[8:-2].replace("__main__.", "")
        m_.i, m_.f, m_.type, m_.np = i, f, t, sum(x.numel() for x in m_.parameters())
        m_.args = list(args)  # kept for the tests' comparison of constructor calls
        save.extend(x % i for x in ([f] if isinstance(f, int) else f) if x != -1)
        layers.append(m_)
        if i == 0:
            ch = []
        ch.append(c2)
    return nn.Sequential(*layers), sorted(save)


class Model(nn.Module):
    def __init__(self, cfg="yolov5s.yaml", ch=3, nc=None):
        super().__init__()
        import yaml

        with open(cfg) as f:
            self.yaml = yaml.safe_load(f)
        ch = self.yaml["ch"] = self.yaml.get("ch", ch)
        if nc:
            self.yaml["nc"] = nc
        self.model, self.save = parse_model(deepcopy(self.yaml), ch=[ch])
        m = self.model[-1]
        s = 256
        m.stride = torch.tensor([s / x.shape[-2] for x in self.forward(torch.zeros(1, ch, s, s))])
        a = m.anchors.prod(-1).mean(-1).view(-1)
        if (a[-1] - a[0]).sign() != (m.stride[-1] - m.stride[0]).sign():  # YOLOv5's anchor-order check
            m.anchors[:] = m.anchors.flip(0)
        m.anchors /= m.stride.view(-1, 1, 1)
        self.stride = m.stride
        print("Model summary:", sum(x.numel() for x in self.parameters()), "parameters")

    def forward(self, x):
        y = []
        for m in self.model:
            if m.f != -1:
                x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
            x = m(x)
            y.append(x if m.i in self.save else None)
        return x
'''

YAML = '''\
nc: 80
depth_multiple: 0.33
width_multiple: 0.25
anchors:
  - [10,13, 16,30, 33,23]
  - [30,61, 62,45, 59,119]
backbone:
  [[-1, 1, Conv, [64, 6, 2, 2]],
   [-1, 1, Conv, [128, 3, 2]],
   [-1, 3, C3, [128]],
   [-1, 1, Conv, [256, 3, 2]],
   [-1, 1, SEAttention, []],
   [-1, 1, MLCA, []],
   [-1, 1, TripletAttention, []],
   [-1, 1, SpatialGroupEnhance, [8]],
   [-1, 1, Conv, [512, 3, 2]],
   [-1, 1, CSPMix, [512, 256, 128]],
   [-1, 1, SPPF, [512, 5]],
  ]
head:
  [[-1, 1, nn.Upsample, [None, 2, 'nearest']],
   [[-1, 7], 1, Concat, [1]],
   [-1, 1, C3, [256, False]],
   [[13, 10], 1, Detect, [nc, anchors]],
  ]
'''


def write_fork(root: Path, yaml_text: str = YAML) -> Path:
    """Write the fork under ``root``; returns the YAML's path (``models/yolov5s_research.yaml``)."""
    (root / "utils").mkdir(parents=True, exist_ok=True)
    (root / "models").mkdir(parents=True, exist_ok=True)
    (root / "utils" / "__init__.py").write_text("")
    (root / "utils" / "general.py").write_text(UTILS_GENERAL)
    (root / "models" / "__init__.py").write_text("")
    (root / "models" / "common.py").write_text(COMMON)
    (root / "models" / "yolo.py").write_text(YOLO)
    y = root / "models" / "yolov5s_research.yaml"
    y.write_text(yaml_text)
    return y


def oracle_model(root: Path, cfg: Path, nc=None):
    """The test's own build: the fork's Model on CPU, imported the way YOLOv5 is run (ROOT on sys.path);
    the fork's modules are removed from sys.modules afterwards."""
    saved = list(sys.path)
    before = {k: v for k, v in sys.modules.items() if k.split(".")[0] in ("models", "utils")}
    for k in before:
        del sys.modules[k]
    sys.path.insert(0, str(root))
    try:
        yolo = importlib.import_module("models.yolo")
        model = yolo.Model(str(cfg), nc=nc)
    finally:
        sys.path[:] = saved
        for k in [k for k in sys.modules if k.split(".")[0] in ("models", "utils")]:
            del sys.modules[k]
        sys.modules.update(before)
    return model.eval()


def per_layer(model, img: int):
    """Per layer of a real CPU forward: (params by sum(numel), FLOPs by FlopCounterMode)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    out = []
    y = []
    x = torch.zeros(1, 3, img, img)
    with torch.no_grad():
        for m in model.model:
            if m.f != -1:
                x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
            with FlopCounterMode(display=False) as fcm:
                x = m(x)
            y.append(x if m.i in model.save else None)
            out.append((sum(p.numel() for p in m.parameters()), fcm.get_total_flops()))
    return out
