"""Neck blocks: weighted BiFPN concatenation and DAMO-YOLO's RepGFPN ``CSPStage``.

* ``BiFPN_Concat2`` / ``BiFPN_Concat3`` -- EfficientDet's fast normalised fusion (Tan, Pang, Le, CVPR 2020,
  arXiv 1911.09070) in the YOLO community form: learnable weights ``w / (sum(w) + 1e-4)`` scale the inputs,
  which are then concatenated (no ReLU on the weights, no conv).  0 MACs; the scaling is element-wise.
* ``CSPStage`` -- Efficient-RepGFPN block of DAMO-YOLO (Xu et al., arXiv 2211.15444; tinyvision/DAMO-YOLO):
  1x1 split into cf + cm channels, n reversed basic blocks (RepConv 3x3 -> ConvBNAct 3x3, residual) on the
  cm part, every block output kept, concatenated, fused by a 1x1.  RepConv has a training form (3x3+BN in
  parallel with 1x1+BN) and a deploy form (one 3x3 with bias); ``CSPStage_deploy`` builds the deploy graph,
  ``CSPStage.reparameterize()`` converts a trained one (same outputs, ``n * cm * hidden * H * W`` fewer MACs).
"""
from __future__ import annotations

from collections import OrderedDict
from math import prod

import torch
import torch.nn as nn
import torch.nn.functional as F

from flopscope.channels import concat_of, conv_like_repeat
from flopscope.registry import formula, register
from flopscope.shapes import ShapeError, cat_channels

from .yolov5 import conv_cost


# --------------------------------------------------------------------------------------------
class _WeightedConcat(nn.Module):
    """Concatenate ``n_inputs`` tensors, each scaled by its normalised learnable weight."""

    n_inputs = 2

    def __init__(self, dimension=1):
        super().__init__()
        self.d = dimension
        self.w = nn.Parameter(torch.ones(self.n_inputs))
        self.epsilon = 1e-4

    def forward(self, x):
        weight = self.w / (torch.sum(self.w, dim=0) + self.epsilon)
        return torch.cat([weight[i] * xi for i, xi in enumerate(x)], self.d)


@register(channels=concat_of(2), description="BiFPN weighted concat of 2 inputs: w_i / (sum w + eps) * x_i, then cat")
class BiFPN_Concat2(_WeightedConcat):  # noqa: N801 - YAML name
    n_inputs = 2


@register(channels=concat_of(3), description="BiFPN weighted concat of 3 inputs: w_i / (sum w + eps) * x_i, then cat")
class BiFPN_Concat3(_WeightedConcat):  # noqa: N801 - YAML name
    n_inputs = 3


@formula(BiFPN_Concat2, BiFPN_Concat3)
def bifpn_concat_cost(m, t, xs):
    if len(xs) != m.n_inputs:
        raise ShapeError(f"{type(m).__name__} fuses {m.n_inputs} inputs, gets {len(xs)}")
    t.ew("weights.sum", "add", m.n_inputs)  # n-1 adds + epsilon
    t.ew("weights.normalise", "div", m.n_inputs)
    t.ew("scale", "mul", sum(prod(x) for x in xs))
    return cat_channels(list(xs), m.d)


# --------------------------------------------------------------------------------------------
_ACTIVATIONS = {"silu": nn.SiLU, "swish": nn.SiLU, "relu": nn.ReLU, "lrelu": lambda: nn.LeakyReLU(0.1),
                "identity": nn.Identity}


def _activation(name):
    if isinstance(name, nn.Module):
        return name
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; one of {', '.join(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


class ConvBNAct(nn.Module):
    """Conv2d (no bias, 'same' padding) + BatchNorm2d + activation (DAMO-YOLO's ConvBNAct)."""

    def __init__(self, c1, c2, k, s=1, g=1, act="silu"):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, (k - 1) // 2, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = _activation(act)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


formula(ConvBNAct)(conv_cost)


def _conv_bn(c1, c2, k):
    return nn.Sequential(OrderedDict(conv=nn.Conv2d(c1, c2, k, 1, (k - 1) // 2, bias=False), bn=nn.BatchNorm2d(c2)))


def _fold_bn(branch: nn.Sequential):
    """(weight, bias) of a conv followed by an eval-mode BatchNorm, as one conv."""
    conv, bn = branch.conv, branch.bn
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return conv.weight * scale.view(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


class RepConv(nn.Module):
    """RepVGG-style 3x3 conv (no identity branch): train = act(BN(3x3) + BN(1x1)); deploy = act(3x3 + bias)."""

    def __init__(self, c1, c2, act="relu", deploy=False):
        super().__init__()
        self.c1, self.c2, self.deploy = c1, c2, deploy
        self.act = _activation(act)
        if deploy:
            self.rbr_reparam = nn.Conv2d(c1, c2, 3, 1, 1, bias=True)
        else:
            self.rbr_dense = _conv_bn(c1, c2, 3)
            self.rbr_1x1 = _conv_bn(c1, c2, 1)

    def forward(self, x):
        if self.deploy:
            return self.act(self.rbr_reparam(x))
        return self.act(self.rbr_dense(x) + self.rbr_1x1(x))

    @torch.no_grad()
    def reparameterize(self):
        """Fold both branches (and their BNs, eval statistics) into one 3x3 conv with bias."""
        if self.deploy:
            return
        w3, b3 = _fold_bn(self.rbr_dense)
        w1, b1 = _fold_bn(self.rbr_1x1)
        conv = nn.Conv2d(self.c1, self.c2, 3, 1, 1, bias=True, device=w3.device, dtype=w3.dtype)
        conv.weight.copy_(w3 + F.pad(w1, [1, 1, 1, 1]))
        conv.bias.copy_(b3 + b1)
        self.rbr_reparam = conv
        del self.rbr_dense, self.rbr_1x1
        self.deploy = True


@formula(RepConv)
def repconv_cost(m, t, x):
    if m.deploy:
        return t(m.act, t(m.rbr_reparam, x, "rbr_reparam"), "act")
    y = t(m.rbr_dense, x, "rbr_dense")
    t(m.rbr_1x1, x, "rbr_1x1")
    t.ew("branch add", "add", prod(y))
    return t(m.act, y, "act")


class BasicBlock_3x3_Reverse(nn.Module):  # noqa: N801 - DAMO-YOLO's name
    """RepConv 3x3 (c_in -> hidden) -> ConvBNAct 3x3 (hidden -> c_out), + residual."""

    def __init__(self, ch_in, ch_hidden_ratio, ch_out, act="relu", shortcut=True, deploy=False):
        super().__init__()
        hidden = int(ch_in * ch_hidden_ratio)
        self.conv1 = ConvBNAct(hidden, ch_out, 3, act=act)
        self.conv2 = RepConv(ch_in, hidden, act=act, deploy=deploy)
        self.shortcut = shortcut and ch_in == ch_out

    def forward(self, x):
        y = self.conv1(self.conv2(x))
        return x + y if self.shortcut else y


@formula(BasicBlock_3x3_Reverse)
def basic_block_reverse_cost(m, t, x):
    y = t(m.conv1, t(m.conv2, x, "conv2"), "conv1")
    if m.shortcut:
        t.ew("residual", "add", prod(y))
    return y


@register(channels=conv_like_repeat, description="RepGFPN CSPStage (DAMO-YOLO), training graph (RepConv 3x3 + 1x1 "
                                                 "branches); args [c2, block_fn, hidden_ratio, act]")
class CSPStage(nn.Module):
    deploy = False

    def __init__(self, ch_in, ch_out, n=1, block_fn="BasicBlock_3x3_Reverse", ch_hidden_ratio=1.0, act="silu",
                 spp=False, deploy=None):
        super().__init__()
        if block_fn != "BasicBlock_3x3_Reverse":
            raise ValueError(f"block_fn {block_fn!r} is not supported (only 'BasicBlock_3x3_Reverse')")
        if spp:
            raise ValueError("spp=True is not supported (the reference's conv3 width does not include the SPP output)")
        deploy = self.deploy if deploy is None else deploy
        ch_first = ch_out // 2
        ch_mid = ch_out - ch_first
        self.conv1 = ConvBNAct(ch_in, ch_first, 1, act=act)
        self.conv2 = ConvBNAct(ch_in, ch_mid, 1, act=act)
        self.convs = nn.Sequential(*(BasicBlock_3x3_Reverse(ch_mid, ch_hidden_ratio, ch_mid, act=act, deploy=deploy)
                                     for _ in range(n)))
        self.conv3 = ConvBNAct(ch_mid * n + ch_first, ch_out, 1, act=act)

    def forward(self, x):
        outs = [self.conv1(x)]
        y = self.conv2(x)
        for block in self.convs:
            y = block(y)
            outs.append(y)
        return self.conv3(torch.cat(outs, 1))

    def reparameterize(self):
        """Switch every RepConv to its deploy form (call in eval mode, after training)."""
        for mod in self.modules():
            if isinstance(mod, RepConv):
                mod.reparameterize()
        return self


@register(channels=conv_like_repeat, description="RepGFPN CSPStage, deploy graph (each RepConv one 3x3 with bias)")
class CSPStage_deploy(CSPStage):  # noqa: N801 - YAML name
    deploy = True


@formula(CSPStage, CSPStage_deploy)
def csp_stage_cost(m, t, x):
    outs = [t(m.conv1, x, "conv1")]
    y = t(m.conv2, x, "conv2")
    for name, block in m.convs.named_children():
        y = t(block, y, f"convs.{name}")
        outs.append(y)
    return t(m.conv3, cat_channels(outs), "conv3")
