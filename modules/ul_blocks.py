"""Ultralytics 8.4.x building blocks (``ultralytics/nn/modules/{conv,block}.py``), Ultralytics dialect.

Registered in the ``ultralytics`` name space; a name not registered here (``Conv``, ``DWConv``, ``C3``,
``C3x``, ``C3Ghost``, ``GhostConv``, ``SPP``, ``Concat``, ``nn.*``) is the common block, which is the same
architecture (same parameter shapes, same forward) in both code bases.

Channel rules are Ultralytics' ``parse_model``: ``c2 = make_divisible(min(args[0], max_channels) * width, 8)``
(``row.width``); repeatable blocks get the depth-scaled ``n`` as their 3rd argument.  ``C3k2`` takes its ``c3k``
flag from the scale (``m``/``l``/``x``: True), and ``C3k2`` / ``C2fCIB`` rows switch the detection heads out of
``legacy`` mode (``row.state``).
"""
from __future__ import annotations

from math import prod

import torch
import torch.nn as nn

from flopscope.channels import conv_like, conv_like_repeat, custom, passthrough
from flopscope.registry import add_module, formula, register
from flopscope.shapes import ShapeError, cat_channels, check_channels

from .c2f import Bottleneck_v8, C2f, c2f_cost
from .yolov5 import C3, Conv, autopad, bottleneck_cost, c3_cost, conv_cost

UL = "ultralytics"

# -- the Ultralytics Bottleneck (3x3 + 3x3 by default; YOLOv5's is 1x1 + 3x3) --------------------------------
register("Bottleneck", channels=conv_like, dialect=UL,
         description="Ultralytics bottleneck: Conv k[0] -> Conv k[1] (default 3x3, 3x3) + residual; "
                     "args [c2, shortcut=True, g, k=(3, 3), e=0.5]")(Bottleneck_v8)
register("C2f", channels=conv_like_repeat, dialect=UL,
         description="YOLOv8 C2f: split, n chained 3x3+3x3 bottlenecks, concat all; args [c2, shortcut=False, g, e]")(C2f)


# --------------------------------------------------------------------------------------------
@register(channels=conv_like, dialect=UL, description="ConvTranspose2d (bias only without BN) + BatchNorm2d + "
                                                      "activation; args [c2, k=2, s=2, p=0, bn=True, act=True]")
class ConvTranspose(nn.Module):
    default_act = nn.SiLU()

    def __init__(self, c1, c2, k=2, s=2, p=0, bn=True, act=True):
        super().__init__()
        self.conv_transpose = nn.ConvTranspose2d(c1, c2, k, s, p, bias=not bn)
        self.bn = nn.BatchNorm2d(c2) if bn else nn.Identity()
        self.act = self.default_act if act is True else act if isinstance(act, nn.Module) else nn.Identity()

    def forward(self, x):
        return self.act(self.bn(self.conv_transpose(x)))

    def forward_fuse(self, x):
        """After fuse(): the transposed conv carries the folded BatchNorm."""
        return self.act(self.conv_transpose(x))


@formula(ConvTranspose)
def conv_transpose_cost(m, t, x):
    y = t(m.conv_transpose, x, "conv_transpose")
    if getattr(m, "bn", None) is not None:  # fused: no bn
        y = t(m.bn, y, "bn")
    return t(m.act, y, "act")


# --------------------------------------------------------------------------------------------
@custom("sppf", "as conv (c2 = make_divisible(min(args[0], max_channels) * width, 8)); a row of at most "
                "[c2, k] keeps cv1's activation (pre-YOLO26 SPPF)")
def _sppf_rule(row):
    args, c2, n = conv_like(row)
    if len(args) <= 3:
        args = [*args, *([5] if len(args) < 3 else []), 3, False, True]  # k, n=3, shortcut, cv1 activated
    return args, c2, n


@register("SPPF", channels=_sppf_rule, dialect=UL,
          description="Ultralytics SPPF: cv1 1x1 (no activation in YOLO26 rows), n chained k x k max-pools, concat, "
                      "cv2 1x1 (+ residual); args [c2, k=5, n=3, shortcut=False]")
class SPPF_UL(nn.Module):  # noqa: N801
    def __init__(self, c1, c2, k=5, n=3, shortcut=False, act1=False):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1, act=act1)
        self.cv2 = Conv(c_ * (n + 1), c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)
        self.n = n
        self.add = shortcut and c1 == c2

    def forward(self, x):
        y = [self.cv1(x)]
        y.extend(self.m(y[-1]) for _ in range(self.n))
        y = self.cv2(torch.cat(y, 1))
        return y + x if self.add else y


@formula(SPPF_UL)
def sppf_ul_cost(m, t, x):
    ys = [t(m.cv1, x, "cv1")]
    for _ in range(m.n):
        ys.append(t(m.m, ys[-1], "m"))
    y = t(m.cv2, cat_channels(ys), "cv2")
    if m.add:
        t.ew("residual", "add", prod(y))
    return y


# --------------------------------------------------------------------------------------------
@register(channels=conv_like_repeat, dialect=UL,
          description="CSP bottleneck with 2 convs: cv1 1x1 -> split, n 3x3+3x3 bottlenecks on one half, concat, "
                      "cv2 1x1; args [c2, shortcut=True, g, e]")
class C2(nn.Module):
    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv(2 * self.c, c2, 1)
        self.m = nn.Sequential(*(Bottleneck_v8(self.c, self.c, shortcut, g, k=(3, 3), e=1.0) for _ in range(n)))

    def forward(self, x):
        a, b = self.cv1(x).chunk(2, 1)
        return self.cv2(torch.cat((self.m(a), b), 1))


@formula(C2)
def c2_cost(m, t, x):
    b, _, h, w = t(m.cv1, x, "cv1")
    a = t(m.m, (b, m.c, h, w), "m")
    return t(m.cv2, cat_channels([a, (b, m.c, h, w)]), "cv2")


class C3k(C3):
    """C3 whose bottlenecks are k x k + k x k (Ultralytics' ``C3k``, the inner block of C3k2)."""

    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5, k=3):
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = nn.Sequential(*(Bottleneck_v8(c_, c_, shortcut, g, k=(k, k), e=1.0) for _ in range(n)))


register("C3k", channels=conv_like_repeat, dialect=UL,
         description="C3 with k x k + k x k bottlenecks (inner block of C3k2); args [c2, shortcut=True, g, e, k=3]")(C3k)
formula(C3k)(c3_cost)


# --------------------------------------------------------------------------------------------
class Attention(nn.Module):
    """Ultralytics multi-head self-attention over all H*W positions (YOLOv10/11): qkv 1x1 conv (no act), softmax
    attention per head, + depth-wise 3x3 positional encoding of v, proj 1x1."""

    def __init__(self, dim, num_heads=8, attn_ratio=0.5):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.key_dim = int(self.head_dim * attn_ratio)
        self.scale = self.key_dim ** -0.5
        nh_kd = self.key_dim * num_heads
        self.qkv = Conv(dim, dim + nh_kd * 2, 1, act=False)
        self.proj = Conv(dim, dim, 1, act=False)
        self.pe = Conv(dim, dim, 3, 1, g=dim, act=False)

    def forward(self, x):
        b, c, h, w = x.shape
        n = h * w
        q, k, v = self.qkv(x).view(b, self.num_heads, self.key_dim * 2 + self.head_dim, n).split(
            [self.key_dim, self.key_dim, self.head_dim], dim=2)
        attn = ((q * self.scale).transpose(-2, -1) @ k).softmax(dim=-1)
        x = (v @ attn.transpose(-2, -1)).view(b, c, h, w) + self.pe(v.reshape(b, c, h, w))
        return self.proj(x)


register("Attention", channels=passthrough, dialect=UL,
         description="Ultralytics position-wise multi-head self-attention (qkv 1x1, softmax over H*W, dw 3x3 pe, "
                     "proj 1x1); args [dim, num_heads=8, attn_ratio=0.5]")(Attention)


@formula(Attention)
def attention_cost(m, t, x):
    b, c, h, w = x
    n = h * w
    nh, kd, hd = m.num_heads, m.key_dim, m.head_dim
    t(m.qkv, x, "qkv")
    t.ew("q scale", "mul", b * nh * kd * n)
    t.mac("q·kᵀ", "matmul", "matmul", b * nh * n * n * kd, b * nh * n * n)
    t.ew("softmax", "softmax", b * nh * n * n)
    t.mac("v·attnᵀ", "matmul", "matmul", b * nh * hd * n * n, b * nh * hd * n)
    pe = t(m.pe, (b, nh * hd, h, w), "pe")
    t.ew("pe add", "add", prod(pe))
    return t(m.proj, pe, "proj")


class PSABlock(nn.Module):
    """Attention + FFN (1x1 2c -> 1x1 c, no act on the second), each with a residual when ``shortcut``."""

    def __init__(self, c, attn_ratio=0.5, num_heads=4, shortcut=True):
        super().__init__()
        self.attn = Attention(c, attn_ratio=attn_ratio, num_heads=num_heads)
        self.ffn = nn.Sequential(Conv(c, c * 2, 1), Conv(c * 2, c, 1, act=False))
        self.add = shortcut

    def forward(self, x):
        x = x + self.attn(x) if self.add else self.attn(x)
        return x + self.ffn(x) if self.add else self.ffn(x)


@custom("psablock", "c1 = c2 = ch[from]; args = [c1, attn_ratio=0.5, num_heads=4, shortcut=True]")
def _psablock_rule(row):
    c = row.c_in()
    return [c, *row.args], c, row.n


register("PSABlock", channels=_psablock_rule, dialect=UL,
         description="PSA block: Attention + FFN with residuals; args [attn_ratio=0.5, num_heads=4, shortcut]")(PSABlock)


@formula(PSABlock)
def psablock_cost(m, t, x):
    y = t(m.attn, x, "attn")
    if m.add:
        t.ew("attn residual", "add", prod(y))
    y = t(m.ffn, y, "ffn")
    if m.add:
        t.ew("ffn residual", "add", prod(y))
    return y


@register(channels=conv_like, dialect=UL,
          description="YOLOv10 PSA: cv1 1x1 -> split, Attention + FFN (residuals) on one half, concat, cv2 1x1; "
                      "c1 must equal c2; args [c2, e=0.5]")
class PSA(nn.Module):
    def __init__(self, c1, c2, e=0.5):
        super().__init__()
        if c1 != c2:
            raise ValueError(f"PSA needs c1 == c2, got {c1} and {c2}")
        self.c = int(c1 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv(2 * self.c, c1, 1)
        self.attn = Attention(self.c, attn_ratio=0.5, num_heads=max(self.c // 64, 1))
        self.ffn = nn.Sequential(Conv(self.c, self.c * 2, 1), Conv(self.c * 2, self.c, 1, act=False))

    def forward(self, x):
        a, b = self.cv1(x).split((self.c, self.c), dim=1)
        b = b + self.attn(b)
        b = b + self.ffn(b)
        return self.cv2(torch.cat((a, b), 1))


@formula(PSA)
def psa_cost(m, t, x):
    bs, _, h, w = t(m.cv1, x, "cv1")
    half = (bs, m.c, h, w)
    t(m.attn, half, "attn")
    t.ew("attn residual", "add", prod(half))
    t(m.ffn, half, "ffn")
    t.ew("ffn residual", "add", prod(half))
    return t(m.cv2, cat_channels([half, half]), "cv2")


@register(channels=conv_like_repeat, dialect=UL,
          description="YOLO11 C2PSA: cv1 1x1 -> split, n PSABlocks on one half, concat, cv2 1x1; c1 must equal c2; "
                      "args [c2, e=0.5]")
class C2PSA(nn.Module):
    def __init__(self, c1, c2, n=1, e=0.5):
        super().__init__()
        if c1 != c2:
            raise ValueError(f"C2PSA needs c1 == c2, got {c1} and {c2}")
        self.c = int(c1 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv(2 * self.c, c1, 1)
        self.m = nn.Sequential(*(PSABlock(self.c, attn_ratio=0.5, num_heads=max(self.c // 64, 1)) for _ in range(n)))

    def forward(self, x):
        a, b = self.cv1(x).split((self.c, self.c), dim=1)
        return self.cv2(torch.cat((a, self.m(b)), 1))


@formula(C2PSA)
def c2psa_cost(m, t, x):
    bs, _, h, w = t(m.cv1, x, "cv1")
    half = (bs, m.c, h, w)
    b = t(m.m, half, "m")
    return t(m.cv2, cat_channels([half, b]), "cv2")


# --------------------------------------------------------------------------------------------
@custom("c3k2", "as conv+n; the c3k flag (args[3]) is True at scales m/l/x (as parse_model sets it); a C3k2 row "
                "switches the detection heads out of legacy mode")
def _c3k2_rule(row):
    args, c2, n = conv_like_repeat(row)
    row.state["legacy"] = False
    if row.scale in ("m", "l", "x"):
        args[3:4] = [True]
    return args, c2, n


@register(channels=_c3k2_rule, dialect=UL,
          description="YOLO11/26 C3k2: C2f whose blocks are C3k (c3k=True), bottlenecks, or bottleneck + PSABlock "
                      "(attn=True); args [c2, c3k=False, e=0.5, attn=False, g, shortcut=True]")
class C3k2(C2f):
    def __init__(self, c1, c2, n=1, c3k=False, e=0.5, attn=False, g=1, shortcut=True):
        super().__init__(c1, c2, n, shortcut, g, e)
        self.m = nn.ModuleList(
            nn.Sequential(Bottleneck_v8(self.c, self.c, shortcut, g),
                          PSABlock(self.c, attn_ratio=0.5, num_heads=max(self.c // 64, 1))) if attn
            else C3k(self.c, self.c, 2, shortcut, g) if c3k
            else Bottleneck_v8(self.c, self.c, shortcut, g)
            for _ in range(n))


formula(C3k2)(c2f_cost)


# --------------------------------------------------------------------------------------------
@register(channels=conv_like, dialect=UL,
          description="YOLOv10 SCDown: 1x1 Conv to c2, then depth-wise k x k stride-s Conv (no act); args [c2, k, s]")
class SCDown(nn.Module):
    def __init__(self, c1, c2, k, s):
        super().__init__()
        self.cv1 = Conv(c1, c2, 1, 1)
        self.cv2 = Conv(c2, c2, k=k, s=s, g=c2, act=False)

    def forward(self, x):
        return self.cv2(self.cv1(x))


@formula(SCDown)
def scdown_cost(m, t, x):
    return t(m.cv2, t(m.cv1, x, "cv1"), "cv2")


@custom("same+", "c1 = c2 = ch[from]; args = [c1] (RepVGGDW takes only its width)")
def _same_only(row):
    c = row.c_in()
    return [c], c, row.n


@register(channels=_same_only, dialect=UL,
          description="YOLOv10 RepVGGDW: depth-wise 7x7 Conv + depth-wise 3x3 Conv (no act, summed), SiLU")
class RepVGGDW(nn.Module):
    def __init__(self, ed):
        super().__init__()
        self.conv = Conv(ed, ed, 7, 1, 3, g=ed, act=False)
        self.conv1 = Conv(ed, ed, 3, 1, 1, g=ed, act=False)
        self.dim = ed
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.conv(x) + self.conv1(x))

    def forward_fuse(self, x):
        """After fuse(): one depth-wise 7x7 conv with bias."""
        return self.act(self.conv(x))


@formula(RepVGGDW)
def repvggdw_cost(m, t, x):
    if not hasattr(m, "conv1"):  # fused: one depth-wise 7x7 conv
        return t(m.act, t(m.conv, x, "conv"), "act")
    y = t(m.conv, x, "conv")
    t(m.conv1, x, "conv1")
    t.ew("branch add", "add", prod(y))
    return t(m.act, y, "act")


@register(channels=conv_like, dialect=UL,
          description="YOLOv10 compact inverted block: dw3x3, 1x1 -> 2c, dw3x3 (or RepVGGDW if lk), 1x1 -> c2, dw3x3 "
                      "(+ residual); args [c2, shortcut=True, e=0.5, lk=False]")
class CIB(nn.Module):
    def __init__(self, c1, c2, shortcut=True, e=0.5, lk=False):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = nn.Sequential(
            Conv(c1, c1, 3, g=c1),
            Conv(c1, 2 * c_, 1),
            RepVGGDW(2 * c_) if lk else Conv(2 * c_, 2 * c_, 3, g=2 * c_),
            Conv(2 * c_, c2, 1),
            Conv(c2, c2, 3, g=c2))
        self.add = shortcut and c1 == c2

    def forward(self, x):
        return x + self.cv1(x) if self.add else self.cv1(x)


@formula(CIB)
def cib_cost(m, t, x):
    y = t(m.cv1, x, "cv1")
    if m.add:
        t.ew("residual", "add", prod(y))
    return y


@custom("c2fcib", "as conv+n; a C2fCIB row switches the detection heads out of legacy mode")
def _c2fcib_rule(row):
    out = conv_like_repeat(row)
    row.state["legacy"] = False
    return out


@register(channels=_c2fcib_rule, dialect=UL,
          description="YOLOv10 C2fCIB: C2f with CIB blocks; args [c2, shortcut=False, lk=False, g, e]")
class C2fCIB(C2f):
    def __init__(self, c1, c2, n=1, shortcut=False, lk=False, g=1, e=0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        self.m = nn.ModuleList(CIB(self.c, self.c, shortcut, e=1.0, lk=lk) for _ in range(n))


formula(C2fCIB)(c2f_cost)


# --------------------------------------------------------------------------------------------
class DFL(nn.Module):
    """Distribution focal loss integral (Li et al., Generalized Focal Loss): softmax over reg_max bins, then a fixed
    1x1 conv with weights 0..reg_max-1 (the expected distance), per box side."""

    def __init__(self, c1=16):
        super().__init__()
        self.conv = nn.Conv2d(c1, 1, 1, bias=False).requires_grad_(False)
        if self.conv.weight.device.type != "meta":
            with torch.no_grad():
                self.conv.weight.copy_(torch.arange(c1, dtype=torch.float).view(1, c1, 1, 1))
        self.c1 = c1

    def forward(self, x):
        b, _, a = x.shape
        return self.conv(x.view(b, 4, self.c1, a).transpose(2, 1).softmax(1)).view(b, 4, a)


@formula(DFL)
def dfl_cost(m, t, x):
    b, _, a = x
    t.ew("softmax", "softmax", b * 4 * m.c1 * a)
    t(m.conv, (b, m.c1, 4, a), "conv")
    return (b, 4, a)


class Proto(nn.Module):
    """Ultralytics mask prototypes: Conv 3x3 -> ConvTranspose2d 2x2 stride 2 (x2 up) -> Conv 3x3 -> Conv 1x1."""

    def __init__(self, c1, c_=256, c2=32):
        super().__init__()
        self.cv1 = Conv(c1, c_, k=3)
        self.upsample = nn.ConvTranspose2d(c_, c_, 2, 2, 0, bias=True)
        self.cv2 = Conv(c_, c_, k=3)
        self.cv3 = Conv(c_, c2)

    def forward(self, x):
        return self.cv3(self.cv2(self.upsample(self.cv1(x))))


@formula(Proto)
def proto_ul_cost(m, t, x):
    return t(m.cv3, t(m.cv2, t(m.upsample, t(m.cv1, x, "cv1"), "upsample"), "cv2"), "cv3")


# -- torch modules Ultralytics configs use besides the common ones -----------------------------
add_module("nn.ZeroPad2d", nn.ZeroPad2d, passthrough, "Zero padding, args [padding]", dialect=UL)


@formula(nn.ZeroPad2d)
def zeropad_cost(m, t, x):
    p = m.padding if isinstance(m.padding, (tuple, list)) else (m.padding,) * 4
    b, c, h, w = x
    return (b, c, h + p[2] + p[3], w + p[0] + p[1])


__all__ = ["Attention", "C2", "C2PSA", "C2fCIB", "C3k", "C3k2", "CIB", "ConvTranspose", "DFL", "PSA", "PSABlock",
           "Proto", "RepVGGDW", "SCDown", "SPPF_UL", "autopad", "bottleneck_cost", "check_channels", "conv_cost",
           "ShapeError"]


# -- configs that need torchvision -----------------------------------------------------------
@custom("torchvision", "refused: the TorchVision wrapper loads a torchvision model, which flopscope never depends on")
def _torchvision_rule(row):
    name = row.args[1] if len(row.args) > 1 else "?"
    raise row.error(f"TorchVision({name!s}) wraps a torchvision model; flopscope does not depend on torchvision -- "
                    f"write the backbone with native rows (e.g. ResNetLayer, as yolov8-cls-resnet50) instead", "module")


@register("TorchVision", channels=_torchvision_rule, dialect=UL,
          description="Ultralytics' torchvision-model wrapper: refused with a clear error (torchvision is never a "
                      "dependency)")
class TorchVision(nn.Module):
    def __init__(self, *args, **kwargs):
        raise ValueError("TorchVision needs torchvision")


from flopscope.fuse import bn_scale_shift, conv2d_like, fold_deconv_bn, fuser  # noqa: E402


@fuser(RepVGGDW, what="depth-wise 7x7 + 3x3 branches merged into one depth-wise 7x7 conv with bias")
def fuse_repvggdw(m):
    """ultralytics' RepVGGDW.fuse(): both BNs folded, the 3x3 kernel zero-padded to 7x7 and added; conv1 goes,
    ``conv`` becomes the merged nn.Conv2d (bias)."""
    if not hasattr(m, "conv1"):
        return False
    c7, c3 = m.conv.conv, m.conv1.conv
    w = b = None
    if c7.weight.device.type != "meta":
        with torch.no_grad():
            s7, b7 = bn_scale_shift(m.conv.bn)
            s3, b3 = bn_scale_shift(m.conv1.bn)
            w = c7.weight * s7.view(-1, 1, 1, 1) + nn.functional.pad(c3.weight * s3.view(-1, 1, 1, 1), [2, 2, 2, 2])
            b = b7 + b3
    m.conv = conv2d_like(c7, w, b)
    del m.conv1
    m.forward = m.forward_fuse
    return True


@fuser(ConvTranspose, what="BatchNorm folded into the transposed conv, which gets a bias")
def fuse_conv_transpose(m):
    """ultralytics' fuse_deconv_and_bn (a ConvTranspose built with bn=False has nothing to fold)."""
    if not isinstance(getattr(m, "bn", None), nn.BatchNorm2d):
        return False
    m.conv_transpose = fold_deconv_bn(m.conv_transpose, m.bn)
    del m.bn
    m.forward = m.forward_fuse
    return True
