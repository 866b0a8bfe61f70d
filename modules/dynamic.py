"""Dynamic convolutions: one kernel per sample, aggregated from K learned kernels by attention.

* ``Dynamic_conv2d`` -- Chen et al., "Dynamic Convolution: Attention over Convolution Kernels", CVPR 2020
  (arXiv 1912.03458), in the form of seed 001 (kaijieshi7/Dynamic-convolution-Pytorch, unofficial).
* ``ODConv2d`` -- Li, Zhou, Yao, "Omni-Dimensional Dynamic Convolution", ICLR 2022 (OSVAI/ODConv form).

Both fold the batch into the channel axis and run one grouped ``F.conv2d`` with ``groups = g * B`` (every
sample gets its own aggregated kernel), so the main convolution and the kernel aggregation are functional ops:
invisible to hook counters (thop), visible to FlopCounterMode.  The attention branch and the aggregation are
constant in H*W (YOLOv5's 32-px probe inflates them ~400x).
"""
from __future__ import annotations

from math import prod

import torch
import torch.nn as nn
import torch.nn.functional as F

from flopscope.channels import conv_like
from flopscope.registry import formula, register
from flopscope.shapes import ShapeError, check_channels, conv_out


def _grouped_conv_out(m, x):
    """Output shape of the per-sample conv (square kernel, int stride/padding/dilation)."""
    b, c, h, w = x
    check_channels(m, c, m.in_planes)
    ho = conv_out(h, m.kernel_size, m.stride, m.padding, m.dilation)
    wo = conv_out(w, m.kernel_size, m.stride, m.padding, m.dilation)
    if ho <= 0 or wo <= 0:
        raise ShapeError(f"{type(m).__name__}(k={m.kernel_size}, s={m.stride}, p={m.padding}) gives an empty "
                         f"output on a {h}x{w} map")
    return (b, m.out_planes, ho, wo)


# --------------------------------------------------------------------------------------------
class KernelAttention(nn.Module):
    """Dynamic-conv attention over K kernels: GAP -> 1x1 C->hid -> ReLU -> 1x1 hid->K -> softmax(z / T)."""

    def __init__(self, in_planes, ratio, K, temperature):
        super().__init__()
        if temperature % 3 != 1:
            raise ValueError(f"temperature must be 1 mod 3 (it is annealed by 3 down to 1), got {temperature}")
        hidden = K if in_planes == 3 else max(int(in_planes * ratio), 1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(in_planes, hidden, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, K, 1, bias=False)
        self.temperature = temperature
        for conv in (self.fc1, self.fc2):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")

    def update_temperature(self):
        if self.temperature != 1:
            self.temperature -= 3

    def forward(self, x):
        z = self.fc2(self.relu(self.fc1(self.avgpool(x)))).flatten(1)
        return F.softmax(z / self.temperature, 1)


@formula(KernelAttention)
def kernel_attention_cost(m, t, x):
    z = t(m.fc2, t(m.relu, t(m.fc1, t(m.avgpool, x, "avgpool"), "fc1"), "relu"), "fc2")
    b, k = z[0], z[1]
    t.ew("temperature", "div", b * k)
    t.ew("softmax", "softmax", b * k)
    return (b, k)


@register(channels=conv_like, description="Dynamic convolution: softmax attention over K kernels, aggregated per "
                                          "sample (seed 001); args [c2, k, ratio, stride, padding, ...]")
class Dynamic_conv2d(nn.Module):  # noqa: N801 - YAML name
    def __init__(self, in_planes, out_planes, kernel_size, ratio=0.25, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, K=4, temperature=34, init_weight=True):
        super().__init__()
        if in_planes % groups:
            raise ValueError(f"in_planes {in_planes} is not divisible by groups {groups}")
        self.in_planes, self.out_planes, self.kernel_size = in_planes, out_planes, kernel_size
        self.stride, self.padding, self.dilation, self.groups, self.K = stride, padding, dilation, groups, K
        self.attention = KernelAttention(in_planes, ratio, K, temperature)
        self.weight = nn.Parameter(torch.empty(K, out_planes, in_planes // groups, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(K, out_planes)) if bias else None
        if init_weight:
            for i in range(K):
                nn.init.kaiming_uniform_(self.weight[i])

    def update_temperature(self):
        self.attention.update_temperature()

    def forward(self, x):
        pi = self.attention(x)  # (B, K)
        b, _, h, w = x.shape
        weight = torch.mm(pi, self.weight.view(self.K, -1))  # B kernels, one per sample
        weight = weight.view(-1, self.in_planes // self.groups, self.kernel_size, self.kernel_size)
        bias = torch.mm(pi, self.bias).view(-1) if self.bias is not None else None
        y = F.conv2d(x.reshape(1, -1, h, w), weight, bias, self.stride, self.padding, self.dilation,
                     self.groups * b)
        return y.view(b, self.out_planes, y.shape[-2], y.shape[-1])


@formula(Dynamic_conv2d)
def dynamic_conv2d_cost(m, t, x):
    y = _grouped_conv_out(m, x)
    b = x[0]
    t(m.attention, x, "attention")
    kernel = m.out_planes * (m.in_planes // m.groups) * m.kernel_size ** 2
    t.mac("aggregate weight", "matmul", "mm", b * m.K * kernel, b * kernel)
    if m.bias is not None:
        t.mac("aggregate bias", "matmul", "mm", b * m.K * m.out_planes, b * m.out_planes)
    t.mac("conv", "conv", "F.conv2d", prod(y) * kernel // m.out_planes, prod(y))
    return y


# --------------------------------------------------------------------------------------------
class OmniAttention(nn.Module):
    """ODConv's four attentions from one pooled descriptor: channel (Cin), filter (Cout), spatial (k*k),
    kernel (Kn).  The filter head is skipped for depth-wise convs, spatial for k=1, kernel for Kn=1."""

    def __init__(self, in_planes, out_planes, kernel_size, groups=1, reduction=0.0625, kernel_num=4, min_channel=16):
        super().__init__()
        a = max(int(in_planes * reduction), min_channel)
        self.kernel_size, self.kernel_num, self.temperature = kernel_size, kernel_num, 1.0
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(in_planes, a, 1, bias=False)
        self.bn = nn.BatchNorm2d(a)
        self.relu = nn.ReLU(inplace=True)
        self.channel_fc = nn.Conv2d(a, in_planes, 1)
        depthwise = in_planes == groups == out_planes
        self.filter_fc = None if depthwise else nn.Conv2d(a, out_planes, 1)
        self.spatial_fc = None if kernel_size == 1 else nn.Conv2d(a, kernel_size * kernel_size, 1)
        self.kernel_fc = None if kernel_num == 1 else nn.Conv2d(a, kernel_num, 1)
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
                if mod.bias is not None:
                    nn.init.constant_(mod.bias, 0)

    def forward(self, x):
        """channel (B,Cin,1,1), filter (B,Cout,1,1), spatial (B,1,1,1,k,k), kernel (B,Kn,1,1,1,1); 1.0 if skipped."""
        z = self.relu(self.bn(self.fc(self.avgpool(x))))
        b, k, tau = x.shape[0], self.kernel_size, self.temperature
        channel = torch.sigmoid(self.channel_fc(z) / tau)
        filt = 1.0 if self.filter_fc is None else torch.sigmoid(self.filter_fc(z) / tau)
        spatial = 1.0 if self.spatial_fc is None else torch.sigmoid(self.spatial_fc(z).view(b, 1, 1, 1, k, k) / tau)
        kernel = 1.0 if self.kernel_fc is None else F.softmax(self.kernel_fc(z).view(b, -1, 1, 1, 1, 1) / tau, dim=1)
        return channel, filt, spatial, kernel


@formula(OmniAttention)
def omni_attention_cost(m, t, x):
    z = t(m.relu, t(m.bn, t(m.fc, t(m.avgpool, x, "avgpool"), "fc"), "bn"), "relu")
    heads = {"channel_fc": (m.channel_fc, "Sigmoid"), "filter_fc": (m.filter_fc, "Sigmoid"),
             "spatial_fc": (m.spatial_fc, "Sigmoid"), "kernel_fc": (m.kernel_fc, "softmax")}
    out = []
    for name, (fc, act) in heads.items():
        if fc is not None:
            y = t(fc, z, name)
            t.ew(f"{name}.temperature", "div", prod(y))
            t.ew(f"{name}.{act.lower()}", act, prod(y))
            out.append(y)
    return tuple(out)


@register(channels=conv_like, description="Omni-dimensional dynamic conv (ODConv, OSVAI form): channel/filter/"
                                          "spatial/kernel attentions; args [c2, k, stride, padding, dilation, groups, "
                                          "reduction, kernel_num]")
class ODConv2d(nn.Module):
    def __init__(self, in_planes, out_planes, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 reduction=0.0625, kernel_num=4):
        super().__init__()
        if in_planes % groups:
            raise ValueError(f"in_planes {in_planes} is not divisible by groups {groups}")
        self.in_planes, self.out_planes, self.kernel_size = in_planes, out_planes, kernel_size
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.kernel_num = kernel_num
        self.attention = OmniAttention(in_planes, out_planes, kernel_size, groups, reduction, kernel_num)
        self.weight = nn.Parameter(torch.empty(kernel_num, out_planes, in_planes // groups, kernel_size, kernel_size))
        for i in range(kernel_num):
            nn.init.kaiming_normal_(self.weight[i], mode="fan_out", nonlinearity="relu")

    @property
    def pointwise_single(self) -> bool:
        """k=1 and one kernel: no aggregation, a plain (per-batch) conv."""
        return self.kernel_size == 1 and self.kernel_num == 1

    def forward(self, x):
        channel, filt, spatial, kernel = self.attention(x)
        x = x * channel
        if self.pointwise_single:
            y = F.conv2d(x, self.weight.squeeze(0), None, self.stride, self.padding, self.dilation, self.groups)
            return y * filt
        b, _, h, w = x.shape
        weight = torch.sum(spatial * kernel * self.weight.unsqueeze(0), dim=1)
        weight = weight.view(-1, self.in_planes // self.groups, self.kernel_size, self.kernel_size)
        y = F.conv2d(x.reshape(1, -1, h, w), weight, None, self.stride, self.padding, self.dilation, self.groups * b)
        return y.view(b, self.out_planes, y.shape[-2], y.shape[-1]) * filt


@formula(ODConv2d)
def odconv2d_cost(m, t, x):
    y = _grouped_conv_out(m, x)
    b = x[0]
    t(m.attention, x, "attention")
    t.ew("channel scale", "mul", prod(x))
    kernel = m.out_planes * (m.in_planes // m.groups) * m.kernel_size ** 2
    if not m.pointwise_single:
        # spatial * kernel attention (broadcast, B*Kn*k^2 values, a 1.0 factor when a head is skipped),
        # times the Kn weights (B*Kn*kernel), summed over Kn ((Kn-1)*kernel per sample)
        t.ew("aggregate.attention product", "mul", b * m.kernel_num * m.kernel_size ** 2)
        t.ew("aggregate.scale", "mul", b * m.kernel_num * kernel)
        t.ew("aggregate.sum", "add", b * (m.kernel_num - 1) * kernel)
    t.mac("conv", "conv", "F.conv2d", prod(y) * kernel // m.out_planes, prod(y))
    t.ew("filter scale", "mul", prod(y))
    return y
