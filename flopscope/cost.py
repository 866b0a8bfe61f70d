"""Cost records: named terms of MACs (conv / linear / matmul) and element-wise FLOPs.

Counting conventions (see README "Counting conventions"):

* MACs of convolutions, linear layers and matmuls are the primary figure; FLOPs = 2 x MACs;
  bias adds are not counted.
* Everything else (norms, activations, pooling, upsampling, softmax, residual adds, gating
  multiplies, bilinear sampling) is *element-wise FLOPs*, kept apart, with the per-element
  costs of :data:`ELEMENTWISE_COST` -- the one table of them in the code.

Every term carries an ``op`` label saying *how* the work is executed (``Conv2d`` module call,
functional ``F.conv2d``, ``matmul``, ``BatchNorm2d`` ...).  Counters differ in which ops they
see; :mod:`flopscope.rules` maps op labels to what each counter reports.
"""
from __future__ import annotations

from dataclasses import dataclass

MAC_KINDS = ("conv", "linear", "matmul")
KINDS = MAC_KINDS + ("elementwise",)

#: FLOPs per element for element-wise work.  Keys are op labels used by formulas.
ELEMENTWISE_COST: dict[str, float] = {
    "BatchNorm2d": 2,  # (x - mean) / std * w + b, unfused: scale + shift
    "BatchNorm1d": 2,
    "LayerNorm": 5,  # mean, var, normalise, affine
    "GroupNorm": 5,
    "ReLU": 1,
    "ReLU6": 2,
    "LeakyReLU": 2,
    "SiLU": 5,  # x * sigmoid(x)
    "Sigmoid": 4,
    "Hardswish": 5,
    "Hardsigmoid": 3,
    "Tanh": 5,
    "GELU": 8,
    "Mish": 8,
    "ELU": 4,
    "PReLU": 2,
    "softmax": 4,  # per element of the normalised axis: max, sub, exp, sum, div
    "add": 1,
    "mul": 1,
    "sub": 1,
    "div": 1,
    "mean": 1,  # per input element reduced
    "max": 1,  # per input element compared
    "MaxPool2d": 1,  # per window element compared (x k^2 per output)
    "AvgPool2d": 1,  # per window element added (x k^2 per output)
    "AdaptiveAvgPool2d": 1,  # per input element
    "Upsample.nearest": 1,  # per output element (a copy)
    "Upsample.bilinear": 11,  # per output element (as thop)
    "grid_sample.bilinear": 14,  # per sampled value: 4 weights x value + index/weight math
    "bilinear.coords": 10,  # deformable conv, per sampling point: p0+pk+dp (2), frac (2), 1-frac (2), 4 weights
    "bilinear.interp": 7,  # deformable conv, per sampled value (channel x point): 4 mul + 3 add
    "weight_std": 7,  # weight standardisation, per weight element: mean, sub, var (2), div, gamma * w + beta (2)
    # used by the op-level counter (flopscope.opcount) for aten ops no formula names
    "Softplus": 3,  # log(1 + exp(x))
    "GLU": 5,  # per output element: sigmoid (4) + mul
    "neg": 1,  # neg, abs, sign
    "exp": 1,  # exp, log, pow, sqrt, rsqrt, erf, trig: one transcendental per element
    "var": 2,  # per input element: square + add of the centred values (as weight_std counts it)
    "norm": 2,  # per input element: square, add (vector norms)
    "log_softmax": 5,  # softmax (4) + log
    "sort": 1,  # per compare: log2(n) per element
    "RMSNorm": 4,  # square, mean, scale, affine
    # per output element, as aten's upsample_bicubic2d computes it (separable 4 x 4 taps): each of 4 rows
    # interpolated from 4 taps (4 mul + 3 add), then the 4 row results (4 mul + 3 add) = 35; the cubic weights are
    # computed once per output row / column, not per element
    "Upsample.bicubic": 35,
    "Dropout": 0,
    "Identity": 0,
    # backward ops (flopscope.train), per element of the gradient they produce
    "BatchNorm.backward": 8,  # x-hat recomputed (2), dy*x-hat (1), two sums (2), dx combine (3)
    "LayerNorm.backward": 8,
    "GroupNorm.backward": 8,
    "ReLU.backward": 1,  # select by the mask
    "LeakyReLU.backward": 2,
    "ReLU6.backward": 2,
    "SiLU.backward": 8,  # sigmoid recomputed (4), s * (1 + x (1 - s)) (3), * dy (1)
    "Sigmoid.backward": 3,  # dy * s * (1 - s)
    "Tanh.backward": 3,  # dy * (1 - y^2)
    "Hardswish.backward": 3,
    "Hardsigmoid.backward": 2,
    "GELU.backward": 12,
    "Mish.backward": 12,
    "ELU.backward": 3,
    "softmax.backward": 3,  # y * (dy - sum(dy * y)): mul, sum, sub/mul
    "log_softmax.backward": 3,
    "MaxPool2d.backward": 1,  # per output gradient scattered to its argmax
    "AvgPool2d.backward": 1,  # per window element
    "Upsample.nearest.backward": 1,  # per output gradient summed into its source
    "Upsample.bilinear.backward": 8,  # per output gradient: 4 weights x (mul + add)
    "grid_sample.backward": 20,  # per sampled value: grad to the 4 inputs and to the coordinates
}


@dataclass(frozen=True)
class Term:
    """One named piece of work.

    ``value`` is MACs for the MAC kinds and FLOPs for ``elementwise``.  ``elems`` is the
    number of elements the op reads (norms) or writes (everything else); counter rules that
    do not count like we do (thop's BatchNorm at 4/element) use it.  ``rule`` names the
    hand-derived rule when the work is invisible to FlopCounterMode.
    """

    name: str
    kind: str
    op: str
    value: int
    elems: int = 0
    rule: str | None = None


class Cost:
    """An ordered list of :class:`Term` with aggregate views."""

    __slots__ = ("terms",)

    def __init__(self, terms: list[Term] | None = None):
        self.terms: list[Term] = terms if terms is not None else []

    def add(self, name: str, kind: str, op: str, value: int, elems: int = 0, rule: str | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown cost kind {kind!r}")
        self.terms.append(Term(name, kind, op, int(value), int(elems), rule))

    def extend(self, other: "Cost", prefix: str = "") -> None:
        if not prefix:
            self.terms.extend(other.terms)
            return
        for t in other.terms:
            self.terms.append(Term(f"{prefix}.{t.name}" if t.name else prefix, t.kind, t.op, t.value, t.elems, t.rule))

    def macs(self, kind: str | None = None) -> int:
        if kind is None:
            return sum(t.value for t in self.terms if t.kind != "elementwise")
        return sum(t.value for t in self.terms if t.kind == kind)

    @property
    def elementwise_flops(self) -> int:
        return self.macs("elementwise")

    def by_kind(self) -> dict[str, int]:
        return {k: self.macs(k) for k in MAC_KINDS}

    def __len__(self) -> int:
        return len(self.terms)

    def __iter__(self):
        return iter(self.terms)
