"""Small pure-PyTorch stand-ins for timm layers that several zoo families use (not a YAML module)."""
from __future__ import annotations

from math import prod

import torch.nn as nn

from flopscope.registry import formula


class DropPath(nn.Module):
    """Stochastic depth per sample (timm's ``DropPath``); identity at eval."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


@formula(DropPath)
def drop_path_cost(m, t, x):
    if m.training and m.p:
        t.ew("", "mul", prod(x), 2)  # mask, rescale
    return x
