"""What other counters see, as rules on our op-labelled terms.

Every :class:`~flopscope.cost.Term` says *how* its work executes (its ``op`` label: ``Conv2d`` module
call, functional ``F.conv2d``, ``mm``, ``BatchNorm2d`` ...).  Each counter sees some of those ops and
counts them its own way.  This module holds, per counter, one table ``op label -> Rule``:

* ``Rule.fn(term, owner)`` -- what the counter reports for that term, in MACs (``None``: cannot be
  predicted from the term, e.g. ptflops' MaxPool2d counts *input* elements of a strided pool);
* ``Rule.reason`` -- the reason code shown when that differs from our MACs (``thop: BatchNorm counted
  4/element``).

``owner`` is the module that recorded the term (resolved from the term's name inside its YAML layer,
see :func:`owner_of`), or ``None``; rules use it only for what a term cannot carry (bias, exact type).
Keys ``"<OwnerClass>/<local term name>"`` take precedence over op labels (``nn.MultiheadAttention``'s
parts, which ptflops counts with its own hook).

Counters (versions as installed with flopscope; ``docs/crosscheck.md`` is the prose version):

``thop`` 0.1.x (behind YOLOv5's ``model_info``)
    Hooks modules by *exact* type: ``nn.Conv2d``/``nn.Linear`` called as modules count their MACs (no
    bias), BatchNorm 2/element x2 when affine, ``nn.Upsample`` 1 (nearest) or 11 (bilinear) per output
    element, ``nn.Softmax`` 3L-1 per row, ``AvgPool2d`` 1 per output, ``AdaptiveAvgPool2d`` (k+1) per
    output, PReLU 1/element; other activations count 0 and functional ops (``F.conv2d``, ``mm``,
    ``@``, ``einsum``, ``grid_sample``, ``nn.MultiheadAttention``'s functional core) are invisible.
``fvcore`` 0.1.5 (``FlopCountAnalysis``, JIT trace)
    Counts aten conv / linear / addmm / mm / matmul / bmm / einsum as MACs (no bias), eval BatchNorm
    2/element (1 without affine), layer/group norm 5/element, nearest upsample 1, bilinear upsample 4
    and grid_sampler 4 per output element, adaptive_avg_pool2d 1 per input element; every other
    element-wise op (silu, add, mul, sigmoid, max_pool2d, softmax ...) is *unsupported* and skipped.
``ptflops`` 0.7.x, pytorch backend
    Module hooks by exact type: conv and linear count MACs *plus bias* (1/output element), BatchNorm
    2/element, ``nn.Upsample`` 1/output element, ReLU-family and pools 1/element; plus patched
    functionals (``F.relu``, ``F.silu``, ``F.softmax``, ``F.interpolate``, ``F.max_pool2d`` ...) and
    tensor ops (``torch.matmul/mm/bmm/add/mul``), so a module whose forward calls a patched functional
    is counted twice.  ``nn.MultiheadAttention`` has its own hook (+ the patched ``torch.bmm`` and
    ``F.softmax`` inside it).  Python operators (``a + b``, ``a @ b``) are invisible.
``ptflops-aten`` 0.7.x, aten backend
    aten.convolution / mm / matmul / addmm / bmm as MACs, *plus bias* for convolution and addmm.
``fcm`` (``torch.utils.flop_counter.FlopCounterMode``)
    FLOPs = 2 x MACs of conv / mm / addmm / bmm / baddbmm / SDPA; halved here.  Nothing else.  Work
    recorded with a hand ``rule`` (e.g. bilinear sampling) is invisible to it by definition.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Union

import torch.nn as nn

from .cost import MAC_KINDS, Term

COUNTERS = ("fvcore", "thop", "ptflops", "ptflops-aten", "fcm")
LABELS = {"fvcore": "fvcore", "thop": "thop", "thop2": "thop 2.x", "ptflops": "ptflops", "ptflops-aten": "ptflops·aten", "fcm": "FCM"}


@dataclass(frozen=True)
class Rule:
    """What a counter reports for one term (MACs), and why that may differ from ours.

    ``alts``: other ways the same op label may execute that the counter sees differently (``a @ b``
    instead of ``torch.matmul``), as ``Rule``s; one is taken only when the numbers then match exactly
    (every term of a layer under the same rule takes the same alternative).  An alternative whose
    ``fn`` returns ``None`` does not apply to that term.
    """

    fn: Callable[..., Optional[float]]
    reason: Union[str, Callable[[Term, object], str], None] = None
    alts: tuple = ()
    context: bool = False  # fn(term, owner, ctx): ctx is the term's Context (its owner chain, its layer's terms)

    def __call__(self, t: Term, m=None, ctx=None) -> Optional[float]:
        if self.context:
            return self.fn(t, m, ctx if ctx is not None else Context())
        return self.fn(t, m)

    def why(self, t: Term, m=None) -> Optional[str]:
        return self.reason(t, m) if callable(self.reason) else self.reason


@dataclass(frozen=True)
class Context:
    """What a rule may look at beyond its term and owner: the term's owner chain (deepest first, see
    :func:`owner_chain`) and every term of its YAML layer (siblings recorded by the same formula)."""

    chain: tuple = ()
    terms: tuple = ()

    def sibling(self, t: Term, local: str, name: str) -> Optional[Term]:
        """The term recorded by the same owner as ``t`` (whose own local name is ``local``) named ``name``."""
        prefix = t.name[: len(t.name) - len(local)] if local and t.name.endswith(local) else ""
        return next((s for s in self.terms if s.name == prefix + name), None)


def ours(t: Term) -> int:
    """Our MACs for a term (element-wise FLOPs are not MACs)."""
    return t.value if t.kind in MAC_KINDS else 0


def _r(fn, reason=None, *alts) -> Rule:
    return Rule(fn, reason, tuple(alts))


def _exact(m, cls_name: str) -> bool:
    """Hook counters look modules up by exact type: a subclass of ``nn.<cls_name>`` is not hooked.  An
    owner that is not an ``nn.<cls_name>`` at all (unknown) trusts the op label."""
    cls = getattr(nn, cls_name)
    return m is None or not isinstance(m, cls) or type(m) is cls


def _not_hooked(counter: str, cls_name: str):
    return lambda t, m: f"{counter}: {type(m).__name__ if m is not None else cls_name} not hooked (exact-type lookup)"


def _has_bias(m) -> bool:
    return m is not None and getattr(m, "bias", None) is not None


def _affine(m, default: bool = True) -> bool:
    if m is None:
        return default
    return bool(getattr(m, "affine", getattr(m, "elementwise_affine", default)))


def _same_size_pool(m) -> bool:
    """A pool whose output has as many elements as its input (stride 1, 'same' padding)."""
    if not isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        return False

    def pair(v):
        return tuple(v) if isinstance(v, (tuple, list)) else (v, v)

    k, s, p = pair(m.kernel_size), pair(m.stride or m.kernel_size), pair(m.padding)
    d = pair(getattr(m, "dilation", 1))
    return s == (1, 1) and all(2 * pi == di * (ki - 1) for ki, pi, di in zip(k, p, d))


def _softmax_rows(t: Term, m=None) -> float:
    rows = t.elems
    length = t.value / (4 * rows) if rows else 0
    return rows * (3 * length - 1)


# --------------------------------------------------------------------------------------------------
# thop 0.1.x
def _thop_conv(t, m):
    return t.value if _exact(m, "Conv2d") else 0


def _thop_convT(t, m):
    if m is None:
        return None
    kh, kw = m.kernel_size
    return t.elems * (m.in_channels // m.groups) * kh * kw


THOP_RULES: dict[str, Rule] = {
    "Conv2d": _r(_thop_conv, _not_hooked("thop", "Conv2d")),
    "ConvTranspose2d": _r(_thop_convT, "thop: ConvTranspose2d counted per output pixel (out x Cin/g x k²)"),
    "Linear": _r(lambda t, m: t.value if _exact(m, "Linear") else 0, _not_hooked("thop", "Linear")),
    "BatchNorm2d": _r(lambda t, m: 4 * t.elems, "thop: BatchNorm counted 4/element"),
    "BatchNorm1d": _r(lambda t, m: 4 * t.elems, "thop: BatchNorm counted 4/element"),
    "BatchNorm2d.noaffine": _r(lambda t, m: 2 * t.elems, "thop: BatchNorm (no affine) counted 2/element"),
    "BatchNorm1d.noaffine": _r(lambda t, m: 2 * t.elems, "thop: BatchNorm (no affine) counted 2/element"),
    "LayerNorm": _r(lambda t, m: (4 if _affine(m) else 2) * t.elems, "thop: LayerNorm counted 4/element"),
    "Upsample.nearest": _r(lambda t, m: t.elems, "thop: nearest upsample counted 1/element"),
    "Upsample.bilinear": _r(lambda t, m: 11 * t.elems, "thop: bilinear upsample counted 11/element"),
    "Softmax": _r(_softmax_rows, "thop: nn.Softmax counted 3L-1 per row"),
    "AvgPool2d": _r(lambda t, m: t.elems, "thop: AvgPool2d counted 1/output element"),
    "AdaptiveAvgPool2d": _r(lambda t, m: t.value + t.elems, "thop: AdaptiveAvgPool2d counted (k+1)/output element"),
    "PReLU": _r(lambda t, m: t.elems, "thop: PReLU counted 1/element"),
    "MultiheadAttention": _r(lambda t, m: 0, "thop: nn.MultiheadAttention not hooked"),
    # modules without a formula were counted by FlopCounterMode; assume module calls
    "FlopCounterMode": _r(lambda t, m: t.value, "thop: module without formula (assumed hooked conv/linear calls)"),
}


def _thop_default(t: Term) -> Rule:
    if t.kind in MAC_KINDS:
        return _r(lambda t, m: 0, f"thop: {t.op} not hooked")
    return _r(lambda t, m: 0)


# --------------------------------------------------------------------------------------------------
# thop 2.x (ultralytics-thop 2.2): rules found by reading and running ultralytics-thop 2.2.3
#   * module rules by the type's MRO (a subclass of nn.Conv2d / nn.Linear is counted), each module's rule
#     added to its children's (0.1.1: a hooked module replaced its subtree);
#   * nearest upsample 0, bilinear 11, bicubic 259 per output element; GroupNorm / InstanceNorm 2/element
#     (x2 affine); AvgPool2d one add per window input + one divide per output; LeakyReLU 0;
#   * nn.MultiheadAttention hooked: projections + q.kT + attn.v + softmax 3S-1 per row;
#   * functional products (torch.matmul, `@`, bmm, einsum of two operands, F.linear, SDPA,
#     F.multi_head_attention_forward) counted by a TorchFunctionMode -- in the total only, never in
#     ret_layer_info's per-layer tree -- and only outside modules that have a (non-zero) rule of their own;
#     torch.mm, baddbmm, F.conv2d, grid_sample and the other functionals are not counted.
THOP2 = "thop 2.x"

# module types with a non-zero rule in thop 2.x (functional products inside them are not counted)
_THOP2_HOOKED = (nn.modules.conv._ConvNd, nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.PReLU,
                 nn.Softmax, nn.LogSoftmax, nn.Softmin, nn.Softmax2d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                 nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.Linear, nn.Bilinear,
                 nn.Upsample, nn.RNNBase, nn.RNNCellBase, nn.MultiheadAttention, nn.Embedding)


def _thop2_hooked(m) -> bool:
    if isinstance(m, nn.modules.conv._ConvNd):
        return isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                              nn.ConvTranspose3d))  # a bare _ConvNd subclass (DSConv) has no rule
    return isinstance(m, _THOP2_HOOKED)


def _thop2_functional(t, m, ctx):
    """A functional product: counted unless it runs inside a module with a thop rule of its own."""
    return 0 if any(_thop2_hooked(mod) for mod, _ in ctx.chain) else t.value


def _thop2_functional_why(t, m):
    return f"{THOP2}: {t.op} inside a hooked module ({type(m).__name__ if m is not None else '?'}) not counted"


def _thop2_fconv(t, m):
    """F.conv2d inside a Conv2d subclass (ConvAWS2d, SAConv2d): the subclass's conv hook counts one conv
    on the module's own weight and output; a bare functional conv is not counted."""
    return t.value if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) else 0


def _thop2_mha_softmax(t, m, ctx):
    """count_multihead_attention's softmax: 3S-1 per row, rows = batch x heads x target length."""
    local = next((rest for mod, rest in ctx.chain if mod is m), "softmax")
    qs = ctx.sibling(t, local, "q scale")
    if qs is None or m is None:
        return None
    rows = qs.elems // m.embed_dim * m.num_heads
    return 3 * t.elems - rows


_T2_FUNC = Rule(_thop2_functional, _thop2_functional_why, (), True)

THOP2_RULES: dict[str, Rule] = {
    "Conv2d": _r(lambda t, m: t.value),
    "ConvTranspose2d": _r(lambda t, m: t.value),
    "F.conv2d": _r(_thop2_fconv, lambda t, m: f"{THOP2}: F.conv2d not hooked"),
    "Linear": _r(lambda t, m: t.value),
    "BatchNorm2d": _r(lambda t, m: 4 * t.elems, f"{THOP2}: BatchNorm counted 4/element"),
    "BatchNorm1d": _r(lambda t, m: 4 * t.elems, f"{THOP2}: BatchNorm counted 4/element"),
    "BatchNorm2d.noaffine": _r(lambda t, m: 2 * t.elems, f"{THOP2}: BatchNorm (no affine) counted 2/element"),
    "BatchNorm1d.noaffine": _r(lambda t, m: 2 * t.elems, f"{THOP2}: BatchNorm (no affine) counted 2/element"),
    "LayerNorm": _r(lambda t, m: (4 if _affine(m) else 2) * t.elems, f"{THOP2}: LayerNorm counted 4/element"),
    "GroupNorm": _r(lambda t, m: (4 if _affine(m) else 2) * t.elems, f"{THOP2}: GroupNorm counted 4/element"),
    "Upsample.nearest": _r(lambda t, m: 0),
    "Upsample.bilinear": _r(lambda t, m: 11 * t.elems, f"{THOP2}: bilinear upsample counted 11/element"),
    "Upsample.bicubic": _r(lambda t, m: 259 * t.elems, f"{THOP2}: bicubic upsample counted 259/element"),
    "Softmax": _r(_softmax_rows, f"{THOP2}: nn.Softmax counted 3L-1 per row"),
    "AvgPool2d": _r(lambda t, m: t.value + t.elems, f"{THOP2}: AvgPool2d counted k²+1 per output element"),
    "AdaptiveAvgPool2d": _r(lambda t, m: t.value + t.elems,
                            f"{THOP2}: AdaptiveAvgPool2d counted 1/input + 1/output element"),
    "PReLU": _r(lambda t, m: t.elems, f"{THOP2}: PReLU counted 1/element"),
    "MultiheadAttention": _r(lambda t, m: t.value),
    "MultiheadAttention/softmax": Rule(_thop2_mha_softmax, f"{THOP2}: MHA softmax counted 3S-1 per row", (), True),
    "SAConv2d/conv_l": _r(lambda t, m: 0, f"{THOP2}: SAConv2d's second (dilated) F.conv2d not counted "
                                          f"(its Conv2d hook counts one conv)"),
    "matmul": _T2_FUNC,
    "bmm": _T2_FUNC,
    "einsum": _T2_FUNC,
    "F.linear": _T2_FUNC,
    "scaled_dot_product_attention": _T2_FUNC,
    "mm": _r(lambda t, m: 0, f"{THOP2}: torch.mm not hooked",
             Rule(_thop2_functional, f"{THOP2}: `@` counted (torch.mm is not)", (), True)),
    "baddbmm": _r(lambda t, m: 0, f"{THOP2}: baddbmm not hooked"),
    # modules without a formula were counted by FlopCounterMode: module calls or functional products
    "FlopCounterMode": _r(lambda t, m: t.value, f"{THOP2}: module without formula (assumed counted)"),
}


def _thop2_default(t: Term) -> Rule:
    if t.kind in MAC_KINDS:
        return _r(lambda t, m: 0, f"{THOP2}: {t.op} not hooked")
    return _r(lambda t, m: 0)


# --------------------------------------------------------------------------------------------------
# fvcore 0.1.5
FVCORE_RULES: dict[str, Rule] = {
    "BatchNorm2d": _r(lambda t, m: 2 * t.elems, "fvcore: BatchNorm counted 2/element"),
    "BatchNorm1d": _r(lambda t, m: 2 * t.elems, "fvcore: BatchNorm counted 2/element"),
    "BatchNorm2d.noaffine": _r(lambda t, m: t.elems, "fvcore: BatchNorm (no affine) counted 1/element"),
    "BatchNorm1d.noaffine": _r(lambda t, m: t.elems, "fvcore: BatchNorm (no affine) counted 1/element"),
    "LayerNorm": _r(lambda t, m: (5 if _affine(m) else 4) * t.elems, "fvcore: layer_norm counted 5/element"),
    "GroupNorm": _r(lambda t, m: (5 if _affine(m) else 4) * t.elems, "fvcore: group_norm counted 5/element"),
    "Upsample.nearest": _r(lambda t, m: t.elems, "fvcore: nearest upsample counted 1/element"),
    "F.interpolate.nearest": _r(lambda t, m: t.elems, "fvcore: nearest upsample counted 1/element"),
    "Upsample.bilinear": _r(lambda t, m: 4 * t.elems, "fvcore: bilinear upsample counted 4/element"),
    "F.interpolate.bilinear": _r(lambda t, m: 4 * t.elems, "fvcore: bilinear upsample counted 4/element"),
    "AdaptiveAvgPool2d": _r(lambda t, m: t.value, "fvcore: adaptive_avg_pool2d counted 1/input element"),
    "grid_sample.bilinear": _r(lambda t, m: 4 * t.elems, "fvcore: grid_sampler counted 4/output element"),
    # sampling recorded with a hand rule: torchvision's deform_conv2d (unsupported) or F.grid_sample
    "bilinear.interp": _r(lambda t, m: 0, None,
                          _r(lambda t, m: 4 * t.elems, "fvcore: grid_sampler counted 4/output element")),
    "mean": _r(lambda t, m: 0, None, _r(lambda t, m: t.value, "fvcore: adaptive_avg_pool2d counted 1/input element")),
    "baddbmm": _r(lambda t, m: 0, "fvcore: baddbmm unsupported"),
    "scaled_dot_product_attention": _r(lambda t, m: 0, "fvcore: scaled_dot_product_attention unsupported"),
}


def _fvcore_default(t: Term) -> Rule:
    if t.kind in MAC_KINDS:
        return _r(lambda t, m: t.value)
    # silu, add, mul, sigmoid, max_pool2d, softmax ... are unsupported: 0, as in our MACs
    return _r(lambda t, m: 0)


# --------------------------------------------------------------------------------------------------
# torch.utils.flop_counter.FlopCounterMode (FLOPs / 2)
FCM_RULES: dict[str, Rule] = {}


def _fcm_default(t: Term) -> Rule:
    if t.kind in MAC_KINDS:
        if t.rule:
            return _r(lambda t, m: 0, f"FCM: {t.op} not counted ({t.rule})")
        return _r(lambda t, m: t.value)
    return _r(lambda t, m: 0)


# --------------------------------------------------------------------------------------------------
# ptflops 0.7.x, pytorch backend (module hooks + patched functionals / tensor ops)
def _is_module(m, cls_name: str) -> bool:
    return m is not None and type(m) is getattr(nn, cls_name)


def _pt_module(cls_name: str, per_elem_module: float, per_elem_functional: float):
    """An activation: hooked module (``per_elem_module`` incl. the patched functional it calls) or, when
    the owner is not that module, a functional call (``per_elem_functional``)."""

    def fn(t, m):
        return (per_elem_module if _is_module(m, cls_name) else per_elem_functional) * t.elems

    return fn


def _pt_unpatched(cls_name: str) -> Rule:
    """Alternative: a functional activation called another way (``F.relu_``, ``torch.relu``, ``x.relu()``)."""
    return _r(lambda t, m: None if _is_module(m, cls_name) else 0,
              f"ptflops: functional {cls_name} not counted (only F.{cls_name.lower()} is patched)")


_MHA_BMM = "ptflops: MHA attention matmuls counted twice (hook + torch.bmm patch)"
_AT_NOT_COUNTED = _r(lambda t, m: 0, "ptflops: `@` operator not counted (only torch.matmul/mm/bmm calls are)")


def _pt_conv(t, m):
    if not _exact(m, "Conv2d"):
        return 0
    return t.value + (t.elems if _has_bias(m) else 0)


def _pt_pool(t, m):
    return 2 * t.elems if _same_size_pool(m) else None


def _mha_dims(m):
    if m is None or m.kdim != m.embed_dim or m.vdim != m.embed_dim:
        return None
    return m.embed_dim


def _pt_mha_in(t, m):
    e = _mha_dims(m)
    if e is None:
        return None
    return t.value + (t.value // e if getattr(m, "in_proj_bias", None) is not None else 0)


def _pt_mha_out(t, m):
    e = _mha_dims(m)
    return None if e is None else t.value + t.value // e  # ptflops: "bias is always enabled"


def _pt_mha_bmm(t, m):
    return None if _mha_dims(m) is None else 2 * t.value


PTFLOPS_RULES: dict[str, Rule] = {
    "Conv2d": _r(_pt_conv, lambda t, m: ("ptflops: conv bias counted 1/output element" if _exact(m, "Conv2d")
                                         else _not_hooked("ptflops", "Conv2d")(t, m))),
    "ConvTranspose2d": _r(lambda t, m: t.value + (t.elems if _has_bias(m) else 0),
                          "ptflops: conv bias counted 1/output element"),
    "Linear": _r(lambda t, m: (t.value + (t.elems if _has_bias(m) else 0)) if _exact(m, "Linear") else 0,
                 lambda t, m: ("ptflops: linear bias counted 1/output element" if _exact(m, "Linear")
                               else _not_hooked("ptflops", "Linear")(t, m))),
    "F.conv2d": _r(lambda t, m: 0, "ptflops: F.conv2d not hooked"),
    "F.linear": _r(lambda t, m: 0, "ptflops: F.linear not hooked"),
    "einsum": _r(lambda t, m: 0, "ptflops: einsum not hooked"),
    "scaled_dot_product_attention": _r(lambda t, m: 0, "ptflops: scaled_dot_product_attention not hooked"),
    "BatchNorm2d": _r(lambda t, m: 2 * t.elems, "ptflops: BatchNorm counted 2/element"),
    "BatchNorm1d": _r(lambda t, m: 2 * t.elems, "ptflops: BatchNorm counted 2/element"),
    "BatchNorm2d.noaffine": _r(lambda t, m: t.elems, "ptflops: BatchNorm (no affine) counted 1/element"),
    "BatchNorm1d.noaffine": _r(lambda t, m: t.elems, "ptflops: BatchNorm (no affine) counted 1/element"),
    "LayerNorm": _r(lambda t, m: t.elems, "ptflops: LayerNorm counted 1/element"),
    "GroupNorm": _r(lambda t, m: (2 if _affine(m) else 1) * t.elems, "ptflops: GroupNorm counted 2/element"),
    "Upsample.nearest": _r(lambda t, m: 2 * t.elems,
                           "ptflops: nn.Upsample counted 2/element (module hook + F.interpolate patch)"),
    "Upsample.bilinear": _r(lambda t, m: 2 * t.elems,
                            "ptflops: nn.Upsample counted 2/element (module hook + F.interpolate patch)"),
    "F.interpolate.nearest": _r(lambda t, m: t.elems, "ptflops: F.interpolate counted 1/output element"),
    "F.interpolate.bilinear": _r(lambda t, m: t.elems, "ptflops: F.interpolate counted 1/output element"),
    "SiLU": _r(_pt_module("SiLU", 1, 1), "ptflops: SiLU counted 1/element (F.silu patch)", _pt_unpatched("SiLU")),
    "ReLU": _r(_pt_module("ReLU", 2, 1), "ptflops: ReLU counted (module hook + F.relu patch, 1/element each)",
               _pt_unpatched("ReLU")),
    "ReLU6": _r(_pt_module("ReLU6", 1, 1), "ptflops: ReLU6 counted 1/element", _pt_unpatched("ReLU6")),
    "LeakyReLU": _r(_pt_module("LeakyReLU", 1, 0), "ptflops: LeakyReLU counted 1/element (module hook)"),
    "ELU": _r(_pt_module("ELU", 2, 1), "ptflops: ELU counted (module hook + F.elu patch, 1/element each)",
              _pt_unpatched("ELU")),
    "PReLU": _r(_pt_module("PReLU", 2, 1), "ptflops: PReLU counted (module hook + F.prelu patch, 1/element each)",
                _pt_unpatched("PReLU")),
    "GELU": _r(_pt_module("GELU", 2, 1), "ptflops: GELU counted (module hook + F.gelu patch, 1/element each)",
               _pt_unpatched("GELU")),
    "MaxPool2d": _r(_pt_pool, "ptflops: MaxPool2d counted 2/input element (module hook + F.max_pool2d patch)"),
    "AvgPool2d": _r(_pt_pool, "ptflops: AvgPool2d counted 2/input element (module hook + F.avg_pool2d patch)"),
    "F.avg_pool2d": _r(lambda t, m: t.elems, "ptflops: F.avg_pool2d counted 1/input element (padded input)"),
    "AdaptiveAvgPool2d": _r(lambda t, m: 2 * t.value,
                            "ptflops: AdaptiveAvgPool2d counted 2/input element (module hook + functional patch)"),
    "AdaptiveMaxPool2d/": _r(lambda t, m: 2 * t.value,
                             "ptflops: AdaptiveMaxPool2d counted 2/input element (module hook + functional patch)"),
    "Softmax": _r(lambda t, m: t.value / 4, "ptflops: softmax counted 1/element (F.softmax patch)"),
    "softmax": _r(lambda t, m: t.elems, "ptflops: softmax counted 1/element (F.softmax patch)",
                  _r(lambda t, m: 0, "ptflops: Tensor.softmax not counted (only F.softmax is patched)")),
    "matmul": _r(lambda t, m: t.value, None, _AT_NOT_COUNTED),
    "mm": _r(lambda t, m: t.value, None, _AT_NOT_COUNTED),
    "bmm": _r(lambda t, m: t.value, None, _AT_NOT_COUNTED),
    "mean": _r(lambda t, m: 0, None,
               _r(lambda t, m: t.value, "ptflops: F.adaptive_avg_pool2d counted 1/input element")),
    "add": _r(lambda t, m: 0, None, _r(lambda t, m: t.elems, "ptflops: torch.add counted 1/element")),
    "mul": _r(lambda t, m: 0, None, _r(lambda t, m: t.elems, "ptflops: torch.mul counted 1/element")),
    # nn.MultiheadAttention: its hook (q scaling, projections + biases, heads' q.kᵀ, softmax, attn.v,
    # out-projection + bias) plus the patched torch.bmm and F.softmax it calls
    "MultiheadAttention/in_proj.q": _r(_pt_mha_in, "ptflops: MHA projection biases counted"),
    "MultiheadAttention/in_proj.k": _r(_pt_mha_in, "ptflops: MHA projection biases counted"),
    "MultiheadAttention/in_proj.v": _r(_pt_mha_in, "ptflops: MHA projection biases counted"),
    "MultiheadAttention/out_proj": _r(_pt_mha_out, "ptflops: MHA projection biases counted"),
    "MultiheadAttention/q·kᵀ": _r(_pt_mha_bmm, _MHA_BMM),
    "MultiheadAttention/attn·v": _r(_pt_mha_bmm, _MHA_BMM),
    "MultiheadAttention/q scale": _r(lambda t, m: t.elems, "ptflops: MHA q scaling counted 1/element"),
    "MultiheadAttention/softmax": _r(lambda t, m: 2 * t.elems,
                                     "ptflops: MHA softmax counted 2/element (hook + F.softmax patch)"),
    "MultiheadAttention/head average": _r(lambda t, m: 0),
    "FlopCounterMode": _r(lambda t, m: t.value, "ptflops: module without formula (assumed bias-free module calls)"),
}


def _ptflops_default(t: Term) -> Rule:
    if t.kind in MAC_KINDS:  # mm / matmul / bmm through the patched torch functions
        return _r(lambda t, m: t.value)
    return _r(lambda t, m: 0)  # sigmoid, Python operators (+, *), cat ... are not counted


# --------------------------------------------------------------------------------------------------
# ptflops 0.7.x, aten backend
def _aten_bias(t, m):
    return t.value + (t.elems if _has_bias(m) else 0)


def _aten_linear(t, m):
    """aten.linear runs as addmm (bias counted) on 2-D or contiguous inputs, else as matmul + add (bias not
    counted); the input layout is observed during the run (``flopscope_input = (dim, contiguous)``)."""
    seen = getattr(m, "flopscope_input", None) if m is not None else None
    addmm = seen is None or seen[0] == 2 or seen[1]
    return t.value + (t.elems if _has_bias(m) and addmm else 0)


def _aten_mha_in(t, m):
    e = _mha_dims(m)
    if e is None:
        return None
    return t.value + (t.value // e if getattr(m, "in_proj_bias", None) is not None else 0)


def _aten_mha_out(t, m):
    e = _mha_dims(m)
    if e is None:
        return None
    return t.value + (t.value // e if getattr(m.out_proj, "bias", None) is not None else 0)


PTFLOPS_ATEN_RULES: dict[str, Rule] = {
    "Conv2d": _r(_aten_bias, "ptflops·aten: convolution bias counted 1/output element"),
    "ConvTranspose2d": _r(_aten_bias, "ptflops·aten: convolution bias counted 1/output element"),
    "F.conv2d": _r(_aten_bias, "ptflops·aten: convolution bias counted 1/output element"),
    "Linear": _r(_aten_linear, "ptflops·aten: addmm bias counted 1/output element"),
    "MultiheadAttention/in_proj.q": _r(_aten_mha_in, "ptflops·aten: addmm bias counted 1/output element"),
    "MultiheadAttention/in_proj.k": _r(_aten_mha_in, "ptflops·aten: addmm bias counted 1/output element"),
    "MultiheadAttention/in_proj.v": _r(_aten_mha_in, "ptflops·aten: addmm bias counted 1/output element"),
    "MultiheadAttention/out_proj": _r(_aten_mha_out, "ptflops·aten: addmm bias counted 1/output element"),
    "baddbmm": _r(lambda t, m: 0, "ptflops·aten: baddbmm not counted"),
    "scaled_dot_product_attention": _r(lambda t, m: 0, "ptflops·aten: scaled_dot_product_attention not counted"),
}


def _aten_default(t: Term) -> Rule:
    return _r(lambda t, m: t.value) if t.kind in MAC_KINDS else _r(lambda t, m: 0)


# --------------------------------------------------------------------------------------------------
RULES: dict[str, dict[str, Rule]] = {
    "thop": THOP_RULES, "thop2": THOP2_RULES, "fvcore": FVCORE_RULES, "ptflops": PTFLOPS_RULES, "ptflops-aten": PTFLOPS_ATEN_RULES,
    "fcm": FCM_RULES,
}
DEFAULTS: dict[str, Callable[[Term], Rule]] = {
    "thop": _thop_default, "thop2": _thop2_default, "fvcore": _fvcore_default, "ptflops": _ptflops_default, "ptflops-aten": _aten_default,
    "fcm": _fcm_default,
}


def rule_for(counter: str, t: Term, owner=None, local: str = "", chain=None) -> tuple[Rule, object]:
    """The rule for term ``t`` and the module it applies to.  ``chain``: the term's candidate owners
    ``[(module, rest of the name)]``, deepest first (see :func:`owner_chain`); scoped keys
    ``"<OwnerClass>/<rest>"`` are tried on each, then the op label with the deepest owner."""
    table = RULES[counter]
    if chain is None:
        chain = [(owner, local)] if owner is not None else []
    for mod, rest in chain:
        scoped = table.get(f"{type(mod).__name__}/{rest}")
        if scoped is not None:
            return scoped, mod
    owner = chain[0][0] if chain else None
    r = table.get(t.op)
    return (r if r is not None else DEFAULTS[counter](t)), owner


def predict(counter: str, t: Term, owner=None, local: str = "", chain=None,
            terms=()) -> tuple[Optional[float], Optional[str]]:
    """(what ``counter`` reports for term ``t`` in MACs or ``None`` if unpredictable, the reason code
    when that differs from our MACs) -- the primary rule, no alternatives.  ``terms``: the layer's terms."""
    r, owner = rule_for(counter, t, owner, local, chain)
    return evaluate(counter, r, t, owner, Context(tuple(chain or ()), tuple(terms)))


def evaluate(counter: str, rule: Rule, t: Term, owner, ctx: Context | None = None) -> tuple[Optional[float], Optional[str]]:
    """(value, reason) of one rule (or alternative) on a term; ``(None, ...)`` when it cannot predict."""
    try:
        v = rule(t, owner, ctx)
    except Exception:  # noqa: BLE001 - a rule meeting an owner it does not understand cannot predict
        v = None
    if v is None:
        return None, f"{LABELS[counter]}: no rule predicts {t.op} here"
    reason = None
    if v != ours(t):
        reason = rule.why(t, owner) or f"{LABELS[counter]}: {t.op} counted differently"
    return v, reason


def owner_chain(layer, name: str) -> list:
    """Candidate modules that recorded term ``name`` inside YAML layer module ``layer``: every submodule
    whose dotted path is a prefix of the name, deepest first, each with the rest of the name
    (``tr.0.ma.out_proj`` -> ``[(out_proj, ''), (ma, 'out_proj'), (tr.0, 'ma.out_proj'), ...]``)."""
    if layer is None:
        return []
    parts = name.split(".") if name else []
    chain = [(layer, name)]
    for i in range(len(parts)):
        try:
            mod = layer.get_submodule(".".join(parts[: i + 1]))
        except (AttributeError, TypeError, ValueError):
            continue
        chain.append((mod, ".".join(parts[i + 1:])))
    return chain[::-1]


def thop_macs(terms, owners=None) -> float:
    """What thop 0.1.x reports ('MACs') for these terms (unpredictable terms count 0)."""
    total = 0.0
    for i, t in enumerate(terms):
        owner = owners[i] if owners is not None else None
        rule = THOP_RULES.get(t.op)
        if rule is not None:
            v = rule(t, owner)
            total += v or 0
    return total
