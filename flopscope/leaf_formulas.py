"""Cost formulas of the torch.nn building blocks the zoo is made of.

Each formula is a small pure function of the module's hyper-parameters and the input shape,
mirroring ``torch/utils/flop_counter.py`` (conv: out.numel * Cin/g * kh * kw; linear: tokens *
in * out; attention: q.k^T and attn.v as matmuls).
"""
from __future__ import annotations

from math import prod

import torch.nn as nn

from .cost import ELEMENTWISE_COST
from .registry import formula
from .shapes import ShapeError, check_channels, conv_out


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def conv_macs(out_shape, c_in: int, groups: int, kernel) -> int:
    """MACs of a convolution: every output element takes Cin/g * prod(kernel) multiply-adds."""
    return prod(out_shape) * (c_in // groups) * prod(kernel)


@formula(nn.Conv2d)
def conv2d(m: nn.Conv2d, t, x):
    if len(x) != 4:
        raise ShapeError(f"Conv2d expects a 4-D input, gets shape {list(x)}")
    b, c, h, w = x
    check_channels(m, c, m.in_channels)
    (kh, kw), (sh, sw), (dh, dw) = m.kernel_size, m.stride, m.dilation
    if isinstance(m.padding, str):
        if m.padding == "valid":
            ph = pw = 0
        else:  # 'same' (stride 1 only)
            return _conv_record(m, t, x, (b, m.out_channels, h, w))
    else:
        ph, pw = m.padding
    ho, wo = conv_out(h, kh, sh, ph, dh), conv_out(w, kw, sw, pw, dw)
    if ho <= 0 or wo <= 0:
        raise ShapeError(f"Conv2d(k={kh}x{kw}, s={sh}) gives an empty output on a {h}x{w} map")
    return _conv_record(m, t, x, (b, m.out_channels, ho, wo))


def _conv_record(m, t, x, y):
    t.mac("", "conv", "Conv2d", conv_macs(y, m.in_channels, m.groups, m.kernel_size), prod(y))
    return y


@formula(nn.ConvTranspose2d)
def conv_transpose2d(m: nn.ConvTranspose2d, t, x):
    b, c, h, w = x
    check_channels(m, c, m.in_channels)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = (m.kernel_size, m.stride, m.padding, m.dilation,
                                                         m.output_padding)
    ho = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oh + 1
    wo = (w - 1) * sw - 2 * pw + dw * (kw - 1) + ow + 1
    # each input element scatters into Cout/g * k^2 outputs
    t.mac("", "conv", "ConvTranspose2d", b * c * h * w * (m.out_channels // m.groups) * kh * kw, b * m.out_channels * ho * wo)
    return (b, m.out_channels, ho, wo)


@formula(nn.Linear)
def linear(m: nn.Linear, t, x):
    if x[-1] != m.in_features:
        raise ShapeError(f"Linear expects {m.in_features} input features, gets {x[-1]}")
    y = (*x[:-1], m.out_features)
    t.mac("", "linear", "Linear", prod(x[:-1]) * m.in_features * m.out_features, prod(y))
    return y


@formula(nn.BatchNorm2d, nn.BatchNorm1d)
def batchnorm(m, t, x):
    check_channels(m, x[1], m.num_features)
    # thop counts 2/element, x2 when affine; we count 2 (scale + shift); op keeps affine-ness
    t.ew("", type(m).__name__ if m.affine else f"{type(m).__name__}.noaffine", prod(x), ELEMENTWISE_COST["BatchNorm2d"])
    return x


@formula(nn.LayerNorm)
def layernorm(m, t, x):
    t.ew("", "LayerNorm", prod(x))
    return x


@formula(nn.GroupNorm)
def groupnorm(m, t, x):
    t.ew("", "GroupNorm", prod(x))
    return x


_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.Sigmoid, nn.Hardswish, nn.Hardsigmoid, nn.Tanh, nn.GELU,
                nn.Mish, nn.ELU, nn.PReLU)


@formula(*_ACTIVATIONS)
def activation(m, t, x):
    t.ew("", type(m).__name__, prod(x))
    return x


@formula(nn.Identity, nn.Dropout, nn.Dropout2d)
def identity(m, t, x):
    return x


@formula(nn.Sequential)
def sequential(m: nn.Sequential, t, x):
    for name, child in m.named_children():
        x = t(child, x, name)
    return x


def _pool_out(m, x):
    b, c, h, w = x
    (kh, kw), (sh, sw), (ph, pw) = _pair(m.kernel_size), _pair(m.stride or m.kernel_size), _pair(m.padding)
    dh, dw = _pair(getattr(m, "dilation", 1))
    rnd = (lambda v: -(-v // 1)) if m.ceil_mode else int
    ho = rnd((h + 2 * ph - dh * (kh - 1) - 1) / sh) + 1
    wo = rnd((w + 2 * pw - dw * (kw - 1) - 1) / sw) + 1
    return (b, c, int(ho), int(wo)), kh * kw


@formula(nn.MaxPool2d)
def maxpool2d(m, t, x):
    y, k2 = _pool_out(m, x)
    t.ew("", "MaxPool2d", prod(y), ELEMENTWISE_COST["MaxPool2d"] * k2)
    return y


@formula(nn.AvgPool2d)
def avgpool2d(m, t, x):
    y, k2 = _pool_out(m, x)
    t.ew("", "AvgPool2d", prod(y), ELEMENTWISE_COST["AvgPool2d"] * k2)
    return y


@formula(nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
def adaptive_pool2d(m, t, x):
    b, c, h, w = x
    oh, ow = _pair(m.output_size)
    y = (b, c, oh or h, ow or w)
    op = "AdaptiveAvgPool2d" if isinstance(m, nn.AdaptiveAvgPool2d) else "max"
    # element count = output elements; cost = one op per input element
    t.ew("", op, prod(y), prod(x) / prod(y))
    return y


@formula(nn.Upsample)
def upsample(m: nn.Upsample, t, x):
    b, c, h, w = x
    if m.size is not None:
        oh, ow = _pair(m.size)
    else:
        sh, sw = _pair(m.scale_factor)
        oh, ow = int(h * sh), int(w * sw)
    y = (b, c, oh, ow)
    if m.mode not in ("nearest", "nearest-exact", "bilinear", "bicubic", "area"):
        raise ShapeError(f"Upsample mode {m.mode!r} is not a 2-D mode (nearest, bilinear, bicubic, area)")
    mode = "nearest" if m.mode.startswith("nearest") else "bicubic" if m.mode == "bicubic" else "bilinear"
    t.ew("", f"Upsample.{mode}", prod(y))
    return y


@formula(nn.Softmax)
def softmax(m: nn.Softmax, t, x):
    # elems = number of rows normalised (thop's rule needs it); cost 4 per element
    rows = prod(x) // x[m.dim]
    t.ew("", "Softmax", rows, ELEMENTWISE_COST["softmax"] * x[m.dim])
    return x


@formula(nn.PixelShuffle)
def pixel_shuffle(m, t, x):
    b, c, h, w = x
    r = m.upscale_factor
    return (b, c // (r * r), h * r, w * r)


@formula(nn.MultiheadAttention)
def multihead_attention(m: nn.MultiheadAttention, t, q, k, v, *rest):
    """Self/cross attention; MACs: in-projections, q.k^T, attn.v, out-projection."""
    if m.batch_first:
        (n, lq, e), (_, s, _) = q, k
    else:
        (lq, n, e), (s, _, _) = q, k
    heads = m.num_heads
    kdim, vdim = m.kdim, m.vdim
    t.mac("in_proj.q", "linear", "MultiheadAttention", n * lq * e * e)
    t.mac("in_proj.k", "linear", "MultiheadAttention", n * s * kdim * e)
    t.mac("in_proj.v", "linear", "MultiheadAttention", n * s * vdim * e)
    t.ew("q scale", "mul", n * lq * e)
    t.mac("q·kᵀ", "matmul", "MultiheadAttention", n * lq * s * e)
    t.ew("softmax", "softmax", n * heads * lq * s)
    t.mac("attn·v", "matmul", "MultiheadAttention", n * lq * s * e)
    t.mac("out_proj", "linear", "MultiheadAttention", n * lq * e * e)
    t.ew("head average", "add", n * heads * lq * s)
    return (q, (n, lq, s))
