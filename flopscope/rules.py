"""What other counters see, as rules on our op-labelled terms.

``thop`` (0.1.x, the counter behind YOLOv5's ``model_info``) hooks modules by *exact* type:
``nn.Conv2d``/``nn.Linear`` called as modules count their MACs (no bias), BatchNorm counts
2/element x2 when affine, ``nn.Upsample`` 1 (nearest) or 11 (bilinear) per output element,
``nn.Softmax`` 3L-1 per row, ``AvgPool2d`` 1 per output, ``AdaptiveAvgPool2d`` (k+1) per output;
activations count 0 and functional ops (``F.conv2d``, ``@``, ``einsum``, ``grid_sample``,
``nn.MultiheadAttention``'s functional core) are invisible.
"""
from __future__ import annotations

from .cost import Term


def _softmax_rows(t: Term) -> float:
    rows = t.elems
    length = t.value / (4 * rows) if rows else 0
    return rows * (3 * length - 1)


THOP_RULES = {
    "Conv2d": lambda t: t.value,
    "Linear": lambda t: t.value,
    "BatchNorm2d": lambda t: 4 * t.elems,
    "BatchNorm1d": lambda t: 4 * t.elems,
    "BatchNorm2d.noaffine": lambda t: 2 * t.elems,
    "BatchNorm1d.noaffine": lambda t: 2 * t.elems,
    "LayerNorm": lambda t: 4 * t.elems,
    "Upsample.nearest": lambda t: t.elems,
    "Upsample.bilinear": lambda t: 11 * t.elems,
    "Softmax": _softmax_rows,
    "AvgPool2d": lambda t: t.elems,
    "AdaptiveAvgPool2d": lambda t: t.value + t.elems,
    "PReLU": lambda t: t.elems,
    # modules without a formula were counted by FlopCounterMode; assume module calls
    "FlopCounterMode": lambda t: t.value,
}


def thop_macs(terms) -> float:
    """What thop 0.1.x reports ('MACs') for these terms."""
    total = 0.0
    for t in terms:
        rule = THOP_RULES.get(t.op)
        if rule is not None:
            total += rule(t)
    return total
