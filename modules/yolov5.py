"""YOLOv5's own blocks (ultralytics/yolov5 ``models/common.py`` and ``models/yolo.py``, v7.0).

Parameter shapes are identical to YOLOv5's, so parameter counts match its ``parse_model`` log.
Each class sits next to its YAML registration (channel rule) and its cost formula.
"""
from __future__ import annotations

import math
from math import prod

import torch
import torch.nn as nn

from flopscope.channels import concat, conv_like, conv_like_repeat, custom, detect, make_divisible, passthrough
from flopscope.fuse import fold_conv_bn, fuser
from flopscope.registry import add_module, formula, register
from flopscope.shapes import ShapeError, cat_channels


def autopad(k, p=None, d=1):
    """'same' padding for odd kernels (YOLOv5 rule)."""
    if d > 1:
        k = d * (k - 1) + 1 if isinstance(k, int) else [d * (x - 1) + 1 for x in k]
    if p is None:
        p = k // 2 if isinstance(k, int) else [x // 2 for x in k]
    return p


# --------------------------------------------------------------------------------------------
@register(channels=conv_like, description="Conv2d(bias=False) + BatchNorm2d + activation (SiLU)")
class Conv(nn.Module):
    default_act = nn.SiLU()  # replaced (for one build) by a config's `activation:`

    def __init__(self, c1, c2, k=1, s=1, p=None, g=1, d=1, act=True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p, d), groups=g, dilation=d, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = self.default_act if act is True else act if isinstance(act, nn.Module) else nn.Identity()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))

    def forward_fuse(self, x):
        """After fuse(): the conv carries the folded BatchNorm."""
        return self.act(self.conv(x))


@register(channels=conv_like, description="Depth-wise Conv (groups = gcd(c1, c2))")
class DWConv(Conv):
    def __init__(self, c1, c2, k=1, s=1, d=1, act=True):
        super().__init__(c1, c2, k, s, g=math.gcd(c1, c2), d=d, act=act)


@formula(Conv, DWConv)
def conv_cost(m, t, x):
    y = t(m.conv, x, "conv")
    if getattr(m, "bn", None) is not None:  # fused: no bn (its bias add, like every bias add, is not counted)
        y = t(m.bn, y, "bn")
    return t(m.act, y, "act")


@fuser(Conv)  # YOLOv5's fuse(): isinstance(m, (Conv, DWConv)) and hasattr(m, "bn") -- subclasses too
def fuse_conv(m):
    if not hasattr(m, "bn"):
        return False
    m.conv = fold_conv_bn(m.conv, m.bn)
    del m.bn
    m.forward = m.forward_fuse
    return True


# --------------------------------------------------------------------------------------------
class TransformerLayer(nn.Module):
    """Transformer layer (LayerNorm removed for better performance), YOLOv5 form."""

    def __init__(self, c, num_heads):
        super().__init__()
        self.q = nn.Linear(c, c, bias=False)
        self.k = nn.Linear(c, c, bias=False)
        self.v = nn.Linear(c, c, bias=False)
        self.ma = nn.MultiheadAttention(embed_dim=c, num_heads=num_heads)
        self.fc1 = nn.Linear(c, c, bias=False)
        self.fc2 = nn.Linear(c, c, bias=False)

    def forward(self, x):
        x = self.ma(self.q(x), self.k(x), self.v(x))[0] + x
        return self.fc2(self.fc1(x)) + x


@formula(TransformerLayer)
def transformer_layer_cost(m, t, x):
    q, k, v = t(m.q, x, "q"), t(m.k, x, "k"), t(m.v, x, "v")
    y = t(m.ma, q, k, v, "ma")[0]
    t.ew("residual 1", "add", prod(y))
    y = t(m.fc2, t(m.fc1, y, "fc1"), "fc2")
    t.ew("residual 2", "add", prod(y))
    return y


class TransformerBlock(nn.Module):
    """Vision Transformer block (https://arxiv.org/abs/2010.11929), YOLOv5 form."""

    def __init__(self, c1, c2, num_heads, num_layers):
        super().__init__()
        self.conv = None
        if c1 != c2:
            self.conv = Conv(c1, c2)
        self.linear = nn.Linear(c2, c2)  # learnable position embedding
        self.tr = nn.Sequential(*(TransformerLayer(c2, num_heads) for _ in range(num_layers)))
        self.c2 = c2

    def forward(self, x):
        if self.conv is not None:
            x = self.conv(x)
        b, _, w, h = x.shape
        p = x.flatten(2).permute(2, 0, 1)
        return self.tr(p + self.linear(p)).permute(1, 2, 0).reshape(b, self.c2, w, h)


@formula(TransformerBlock)
def transformer_block_cost(m, t, x):
    if m.conv is not None:
        x = t(m.conv, x, "conv")
    b, c, w, h = x
    p = (w * h, b, c)
    t(m.linear, p, "linear")
    t.ew("position add", "add", prod(p))
    t(m.tr, p, "tr")
    return (b, m.c2, w, h)


# --------------------------------------------------------------------------------------------
@register(channels=conv_like, description="Standard bottleneck: 1x1 Conv -> 3x3 Conv (+ residual)")
class Bottleneck(nn.Module):
    def __init__(self, c1, c2, shortcut=True, g=1, e=0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        return x + self.cv2(self.cv1(x)) if self.add else self.cv2(self.cv1(x))


@formula(Bottleneck)
def bottleneck_cost(m, t, x):
    y = t(m.cv2, t(m.cv1, x, "cv1"), "cv2")
    if m.add:
        t.ew("residual", "add", prod(y))
    return y


@register(channels=conv_like_repeat, description="CSP Bottleneck (https://github.com/WongKinYiu/CrossStagePartialNetworks)")
class BottleneckCSP(nn.Module):
    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = nn.Conv2d(c1, c_, 1, 1, bias=False)
        self.cv3 = nn.Conv2d(c_, c_, 1, 1, bias=False)
        self.cv4 = Conv(2 * c_, c2, 1, 1)
        self.bn = nn.BatchNorm2d(2 * c_)
        self.act = nn.SiLU()
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x):
        y1 = self.cv3(self.m(self.cv1(x)))
        y2 = self.cv2(x)
        return self.cv4(self.act(self.bn(torch.cat((y1, y2), 1))))


@formula(BottleneckCSP)
def bottleneck_csp_cost(m, t, x):
    y1 = t(m.cv3, t(m.m, t(m.cv1, x, "cv1"), "m"), "cv3")
    y2 = t(m.cv2, x, "cv2")
    y = t(m.act, t(m.bn, cat_channels([y1, y2]), "bn"), "act")
    return t(m.cv4, y, "cv4")


@register(channels=conv_like, description="Cross convolution: (1,k) then (k,1) Conv")
class CrossConv(nn.Module):
    def __init__(self, c1, c2, k=3, s=1, g=1, e=1.0, shortcut=False):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, (1, k), (1, s))
        self.cv2 = Conv(c_, c2, (k, 1), (s, 1), g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        return x + self.cv2(self.cv1(x)) if self.add else self.cv2(self.cv1(x))


formula(CrossConv)(bottleneck_cost)


@register(channels=conv_like_repeat, description="CSP Bottleneck with 3 convolutions")
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


@register(channels=conv_like_repeat, description="C3 with cross-convolutions")
class C3x(C3):
    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = nn.Sequential(*(CrossConv(c_, c_, 3, 1, g, 1.0, shortcut) for _ in range(n)))


@register(channels=conv_like_repeat, description="C3 with a TransformerBlock (global multi-head self-attention)")
class C3TR(C3):
    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = TransformerBlock(c_, c_, 4, n)


@register(channels=conv_like, description="C3 with an SPP block")
class C3SPP(C3):
    def __init__(self, c1, c2, k=(5, 9, 13), n=1, shortcut=True, g=1, e=0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = SPP(c_, c_, k)


@register(channels=conv_like_repeat, description="C3 with Ghost bottlenecks")
class C3Ghost(C3):
    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = nn.Sequential(*(GhostBottleneck(c_, c_) for _ in range(n)))


@formula(C3, C3x, C3TR, C3SPP, C3Ghost)
def c3_cost(m, t, x):
    a = t(m.m, t(m.cv1, x, "cv1"), "m")
    b = t(m.cv2, x, "cv2")
    return t(m.cv3, cat_channels([a, b]), "cv3")


# --------------------------------------------------------------------------------------------
@register(channels=conv_like, description="Spatial pyramid pooling (parallel max-pools 5/9/13)")
class SPP(nn.Module):
    def __init__(self, c1, c2, k=(5, 9, 13)):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * (len(k) + 1), c2, 1, 1)
        self.m = nn.ModuleList([nn.MaxPool2d(kernel_size=x, stride=1, padding=x // 2) for x in k])

    def forward(self, x):
        x = self.cv1(x)
        return self.cv2(torch.cat([x] + [m(x) for m in self.m], 1))


@formula(SPP)
def spp_cost(m, t, x):
    x = t(m.cv1, x, "cv1")
    ys = [x] + [t(p, x, f"m.{i}") for i, p in enumerate(m.m)]
    return t(m.cv2, cat_channels(ys), "cv2")


@register(channels=conv_like, description="Fast SPP: three chained 5x5 max-pools (= SPP 5/9/13)")
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


@formula(SPPF)
def sppf_cost(m, t, x):
    x = t(m.cv1, x, "cv1")
    y1 = t(m.m, x, "m")
    y2 = t(m.m, y1, "m")
    y3 = t(m.m, y2, "m")
    return t(m.cv2, cat_channels([x, y1, y2, y3]), "cv2")


@register(channels=conv_like, description="Focus: space-to-depth (x4 channels, /2 spatial) then Conv")
class Focus(nn.Module):
    def __init__(self, c1, c2, k=1, s=1, p=None, g=1, act=True):
        super().__init__()
        self.conv = Conv(c1 * 4, c2, k, s, p, g, act=act)

    def forward(self, x):
        return self.conv(torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), 1))


@formula(Focus)
def focus_cost(m, t, x):
    b, c, h, w = x
    return t(m.conv, (b, 4 * c, (h + 1) // 2, (w + 1) // 2), "conv")


# --------------------------------------------------------------------------------------------
@register(channels=conv_like, description="Ghost convolution (https://github.com/huawei-noah/ghostnet)")
class GhostConv(nn.Module):
    def __init__(self, c1, c2, k=1, s=1, g=1, act=True):
        super().__init__()
        c_ = c2 // 2
        self.cv1 = Conv(c1, c_, k, s, None, g, act=act)
        self.cv2 = Conv(c_, c_, 5, 1, None, c_, act=act)

    def forward(self, x):
        y = self.cv1(x)
        return torch.cat((y, self.cv2(y)), 1)


@formula(GhostConv)
def ghost_conv_cost(m, t, x):
    y = t(m.cv1, x, "cv1")
    return cat_channels([y, t(m.cv2, y, "cv2")])


@register(channels=conv_like, description="Ghost bottleneck (https://github.com/huawei-noah/ghostnet)")
class GhostBottleneck(nn.Module):
    def __init__(self, c1, c2, k=3, s=1):
        super().__init__()
        c_ = c2 // 2
        self.conv = nn.Sequential(
            GhostConv(c1, c_, 1, 1),
            DWConv(c_, c_, k, s, act=False) if s == 2 else nn.Identity(),
            GhostConv(c_, c2, 1, 1, act=False))
        self.shortcut = nn.Sequential(DWConv(c1, c1, k, s, act=False),
                                      Conv(c1, c2, 1, 1, act=False)) if s == 2 else nn.Identity()

    def forward(self, x):
        return self.conv(x) + self.shortcut(x)


@formula(GhostBottleneck)
def ghost_bottleneck_cost(m, t, x):
    y = t(m.conv, x, "conv")
    z = t(m.shortcut, x, "shortcut")
    if tuple(z) != tuple(y):  # stride 1 with c1 != c2: the identity shortcut cannot be added (the forward fails)
        raise ShapeError(f"GhostBottleneck: the shortcut gives {list(z)}, the ghost branch {list(y)}; with s=1 "
                         f"c2 must equal c1")
    t.ew("residual", "add", prod(y))
    return y


# --------------------------------------------------------------------------------------------
@custom("contract", "c2 = ch[from] * gain^2 (space-to-depth); args = [gain]")
def _contract_rule(row):
    return list(row.args), row.c_in() * row.require_int_arg(0, "gain") ** 2, row.n


@register(channels=_contract_rule, description="Contract width-height into channels: x(1,64,80,80) -> x(1,256,40,40)")
class Contract(nn.Module):
    def __init__(self, gain=2):
        super().__init__()
        self.gain = gain

    def forward(self, x):
        b, c, h, w = x.size()
        s = self.gain
        x = x.view(b, c, h // s, s, w // s, s)
        x = x.permute(0, 3, 5, 1, 2, 4).contiguous()
        return x.view(b, c * s * s, h // s, w // s)


@formula(Contract)
def contract_cost(m, t, x):
    b, c, h, w = x
    s = m.gain
    if h % s or w % s:
        raise ShapeError(f"Contract(gain={s}) needs H and W divisible by {s}, gets {h}x{w}")
    return (b, c * s * s, h // s, w // s)


@custom("expand", "c2 = ch[from] // gain^2 (depth-to-space); args = [gain]")
def _expand_rule(row):
    return list(row.args), row.c_in() // row.require_int_arg(0, "gain") ** 2, row.n


@register(channels=_expand_rule, description="Expand channels into width-height: x(1,64,80,80) -> x(1,16,160,160)")
class Expand(nn.Module):
    def __init__(self, gain=2):
        super().__init__()
        self.gain = gain

    def forward(self, x):
        b, c, h, w = x.size()
        s = self.gain
        x = x.view(b, s, s, c // s ** 2, h, w)
        x = x.permute(0, 3, 4, 1, 5, 2).contiguous()
        return x.view(b, c // s ** 2, h * s, w * s)


@formula(Expand)
def expand_cost(m, t, x):
    b, c, h, w = x
    s = m.gain
    if c % (s * s):
        raise ShapeError(f"Expand(gain={s}) needs channels divisible by {s * s}, gets {c}")
    return (b, c // s ** 2, h * s, w * s)


@register(channels=concat, description="Concatenate a list of tensors along a dimension")
class Concat(nn.Module):
    def __init__(self, dimension=1):
        super().__init__()
        self.d = dimension

    def forward(self, x):
        return torch.cat(x, self.d)


@formula(Concat)
def concat_cost(m, t, xs):
    return cat_channels(list(xs), m.d)


# --------------------------------------------------------------------------------------------
class Proto(nn.Module):
    """YOLOv5 mask Proto module for segmentation models."""

    def __init__(self, c1, c_=256, c2=32):
        super().__init__()
        self.cv1 = Conv(c1, c_, k=3)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.cv2 = Conv(c_, c_, k=3)
        self.cv3 = Conv(c_, c2)

    def forward(self, x):
        return self.cv3(self.cv2(self.upsample(self.cv1(x))))


@formula(Proto)
def proto_cost(m, t, x):
    return t(m.cv3, t(m.cv2, t(m.upsample, t(m.cv1, x, "cv1"), "upsample"), "cv2"), "cv3")


@register(channels=detect, description="YOLOv5 detection head: one 1x1 conv per level, na*(nc+5) outputs")
class Detect(nn.Module):
    stride = None
    dynamic = False
    export = False

    def __init__(self, nc=80, anchors=(), ch=(), inplace=True):
        super().__init__()
        self.nc = nc
        self.no = nc + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        self.grid = [torch.empty(0) for _ in range(self.nl)]
        self.anchor_grid = [torch.empty(0) for _ in range(self.nl)]
        self.register_buffer("anchors", torch.tensor(anchors).float().view(self.nl, -1, 2))
        self.m = nn.ModuleList(nn.Conv2d(x, self.no * self.na, 1) for x in ch)
        self.inplace = inplace

    def forward(self, x):
        z = []
        for i in range(self.nl):
            x[i] = self.m[i](x[i])
            bs, _, ny, nx = x[i].shape
            x[i] = x[i].view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            if not self.training:
                if self.dynamic or self.grid[i].shape[2:4] != x[i].shape[2:4]:
                    self.grid[i], self.anchor_grid[i] = self._make_grid(nx, ny, i)
                xy, wh, conf = x[i].sigmoid().split((2, 2, self.no - 4), 4)
                xy = (xy * 2 + self.grid[i]) * self.stride[i]
                wh = (wh * 2) ** 2 * self.anchor_grid[i]
                y = torch.cat((xy, wh, conf), 4)
                z.append(y.view(bs, self.na * nx * ny, self.no))
        return x if self.training else (torch.cat(z, 1), x)

    def _make_grid(self, nx=20, ny=20, i=0):
        d, t = self.anchors[i].device, self.anchors[i].dtype
        shape = 1, self.na, ny, nx, 2
        y, x = torch.arange(ny, device=d, dtype=t), torch.arange(nx, device=d, dtype=t)
        yv, xv = torch.meshgrid(y, x, indexing="ij")
        grid = torch.stack((xv, yv), 2).expand(shape) - 0.5
        anchor_grid = (self.anchors[i] * self.stride[i]).view((1, self.na, 1, 1, 2)).expand(shape)
        return grid, anchor_grid


def detect_levels(m, t, xs, name="m"):
    """Per-level 1x1 prediction convs and the eval-time box decode; returns the cat output shape."""
    if len(xs) != m.nl:
        raise ShapeError(f"{type(m).__name__} has {m.nl} levels (anchors) but receives {len(xs)} inputs")
    rows = 0
    for i, x in enumerate(xs):
        b, _, ny, nx = t(m.m[i], x, f"{name}.{i}")
        cells = b * m.na * ny * nx
        t.ew(f"decode.{i}", "Sigmoid", cells * m.no)
        t.ew(f"decode.{i}.xywh", "mul", cells * 12, 1)  # (xy*2+grid)*stride, (wh*2)**2*anchor
        rows += m.na * ny * nx
    return (xs[0][0], rows, m.no)


@formula(Detect)
def detect_cost(m, t, xs):
    return detect_levels(m, t, xs)


@custom("segment", "as detect; the proto width args[3] is scaled by width_multiple")
def _segment_rule(row):
    args, c2, n = detect(row)
    if len(args) > 4:
        args[3] = make_divisible(args[3] * row.gw, 8)
    return args, c2, n


@register(channels=_segment_rule, description="YOLOv5 segmentation head: Detect + mask coefficients + Proto")
class Segment(Detect):
    def __init__(self, nc=80, anchors=(), nm=32, npr=256, ch=(), inplace=True):
        super().__init__(nc, anchors, ch, inplace)
        self.nm = nm
        self.npr = npr
        self.no = 5 + nc + self.nm
        self.m = nn.ModuleList(nn.Conv2d(x, self.no * self.na, 1) for x in ch)
        self.proto = Proto(ch[0], self.npr, self.nm)

    def forward(self, x):
        p = self.proto(x[0])
        x = Detect.forward(self, x)
        return (x, p) if self.training else (x[0], p, x[1])


@formula(Segment)
def segment_cost(m, t, xs):
    p = t(m.proto, xs[0], "proto")
    return (detect_levels(m, t, xs), p)


# --------------------------------------------------------------------------------------------
# torch.nn modules usable from YAML rows


@custom("batchnorm", "args = [ch[from]]; c2 = ch[from]")
def _bn_rule(row):
    c = row.c_in()
    return [c], c, row.n


add_module("nn.Upsample", nn.Upsample, passthrough, "Upsample (nearest / bilinear), args [size, scale_factor, mode]")
add_module("nn.BatchNorm2d", nn.BatchNorm2d, _bn_rule, "BatchNorm2d over the input channels")
add_module("nn.ConvTranspose2d", nn.ConvTranspose2d, conv_like, "Transposed convolution")
add_module("nn.Identity", nn.Identity, passthrough, "Identity")
add_module("nn.MaxPool2d", nn.MaxPool2d, passthrough, "Max pooling, args [kernel, stride, padding]")
add_module("nn.AvgPool2d", nn.AvgPool2d, passthrough, "Average pooling, args [kernel, stride, padding]")
