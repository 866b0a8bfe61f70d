"""The op-level counter: every aten op a forward dispatches, priced by one small shape rule per op.

A :class:`OpCounter` is a ``TorchDispatchMode``; run a forward inside it (normally on **meta**
tensors: no real compute, no memory in proportion to the image) and it records, per module path,
MACs by kind (``conv`` / ``linear`` / ``matmul``) and element-wise FLOPs priced from the one table
:data:`flopscope.cost.ELEMENTWISE_COST`.  An op without a rule is never silently 0: it is listed by
name and call count in :attr:`OpCounter.not_counted` (``"not counted: aten.foo x3"``).

API (small on purpose; other modules build on it)::

    from flopscope.opcount import OpCounter, op_rule, mac, ew, RULES, count_ops

    # 1. count any forward; attribute work to module paths of ``root`` (hooks on its submodules)
    with OpCounter(root) as oc:
        root(torch.empty(1, 3, 640, 640, device="meta"))
    oc.records          # {(path, op, kind): [value, elems, calls]}; path "" is root itself, "model.3.cv1" ...
    oc.total()          # {"conv": MACs, "linear": ..., "matmul": ..., "elementwise": FLOPs}
    oc.total("model.3") # the same for one module's subtree
    oc.not_counted      # Counter {"aten.foo": calls}; oc.not_counted_at(path) for a subtree
    oc.terms(prefix)    # [flopscope.cost.Term(name=<path>.<op>, kind, op="aten.<op>", value, elems)]

    # 2. one module on shapes (what the formula tracer's fallback uses): meta first, CPU with a size guard
    count_ops(module, [(1, 64, 80, 80)]) -> OpCount(out_shapes, terms, not_counted, device)

    # 3. add a rule (backward ops, a custom op ...); registering an op twice is an error
    @op_rule(torch.ops.aten.my_op)
    def my_op(x, w, *, out):            # tensors arrive as shape tuples; ``out`` is the output's shape(s)
        return [mac("matmul", prod(x) * w[0], prod(out)), ew("add", prod(out))]

Rules are keyed by ``OpOverloadPacket`` (``aten.convolution`` covers every overload).  A rule gets
the op's positional args with every tensor replaced by its shape tuple (lists of tensors by lists of
shapes), its kwargs the same way, and ``out=``; it returns a list of ``(kind, value, elems)``
(:func:`mac` / :func:`ew` build them) -- or :data:`ZERO` is registered for data movement.

Conventions (as our formulas; README "Counting conventions"):

* conv MACs = output elements x Cin/groups x kernel taps (transposed: input elements x Cout/groups x
  taps); ``addmm`` = ``mm``, ``baddbmm`` = ``bmm``; bias adds are not counted (an ``add`` of a
  parameter of one dimension -- ``F.linear``'s bias on a non-contiguous input -- is a bias add).
* ``mm`` / ``addmm`` whose right operand is the transpose of a 2-D parameter (what ``F.linear`` /
  ``nn.Linear`` dispatch) are ``linear``; every other product is ``matmul``.
* element-wise FLOPs are ``ELEMENTWISE_COST[key] x elements`` (outputs, or inputs for reductions,
  window elements for pools); keys shared with our formulas mean equal figures (BatchNorm 2 per
  element, SiLU 5, softmax 4, bilinear upsample 11 per output, ...).
* ``grid_sampler`` (bilinear) follows the deformable-conv hand rule: ``bilinear.coords`` per sampled
  point + ``bilinear.interp`` per sampled value (point x channel).
"""
from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass
from math import log2, prod
from typing import Callable

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

from .cost import ELEMENTWISE_COST, MAC_KINDS, Term
from .errors import FlopscopeError

aten = torch.ops.aten

RULES: dict = {}  #: OpOverloadPacket -> rule (a shape function) or ZERO
ZERO = object()  #: the rule of data movement and tensor creation: explicitly 0
_RULE_ORIGIN: dict = {}


def op_rule(*ops) -> Callable:
    """Register a rule for aten ops (``OpOverloadPacket``s; missing ops of this torch build are skipped)."""
    def deco(fn):
        for op in ops:
            _register(op, fn)
        return fn
    return deco


def zero_rule(*ops) -> None:
    """Register ops that move or create data: 0 FLOPs, by an explicit rule."""
    for op in ops:
        _register(op, ZERO)


def _register(op, fn) -> None:
    if op is None:
        return
    if op in RULES:
        raise FlopscopeError(f"op rule for aten.{op.__name__} registered twice "
                             f"({_RULE_ORIGIN[op]} and {getattr(fn, '__qualname__', 'zero_rule')})")
    RULES[op] = fn
    _RULE_ORIGIN[op] = getattr(fn, "__qualname__", "zero_rule")


def _ops(*names):
    """aten packets by name, skipping those this torch build lacks."""
    return [getattr(aten, n) for n in names if hasattr(aten, n)]


def mac(kind: str, value: int, elems: int = 0) -> tuple:
    """A MAC record of ``kind`` ('conv', 'linear' or 'matmul')."""
    return (kind, int(value), int(elems))


def ew(key: str, elems: int, per_elem: float = 1) -> tuple:
    """Element-wise FLOPs: ``elems`` elements at ``ELEMENTWISE_COST[key] * per_elem`` each."""
    return ("elementwise", round(ELEMENTWISE_COST[key] * per_elem * elems), int(elems))


def _n(shape) -> int:
    return prod(shape) if isinstance(shape, tuple) else 0


def _first_shape(out):
    while isinstance(out, (list, tuple)) and out and not isinstance(out[0], int):
        out = out[0]
    return out if isinstance(out, tuple) else ()


# ---------------------------------------------------------------------------------------------
# data movement and creation: 0 by an explicit rule
zero_rule(*_ops(
    "view", "_unsafe_view", "reshape", "_reshape_alias", "view_as", "cat", "concat", "permute", "transpose",
    "transpose_", "t", "t_", "expand", "expand_as", "slice", "slice_scatter", "select", "select_scatter", "clone",
    "contiguous", "copy_", "copy", "_copy_from", "_copy_from_and_resize", "split", "split_with_sizes",
    "unsafe_split", "unsafe_split_with_sizes", "chunk", "unsafe_chunk", "unbind", "stack", "hstack", "vstack",
    "zeros", "zeros_like", "empty", "empty_like", "empty_strided", "empty_permuted", "new_empty",
    "new_empty_strided", "new_zeros", "new_ones", "new_full", "ones", "ones_like", "full", "full_like", "arange",
    "linspace", "logspace", "eye", "scalar_tensor", "tensor", "lift_fresh", "lift_fresh_copy", "unsqueeze",
    "unsqueeze_", "squeeze", "squeeze_", "detach", "detach_", "_to_copy", "to", "alias", "index",
    "_unsafe_index", "index_select", "index_put", "index_put_", "_index_put_impl_", "gather", "scatter", "scatter_",
    "masked_select", "as_strided", "as_strided_", "unfold", "flip", "roll", "repeat", "repeat_interleave", "tile",
    "narrow", "narrow_copy", "diagonal", "movedim", "pixel_shuffle", "pixel_unshuffle", "channel_shuffle",
    "native_channel_shuffle", "im2col", "col2im", "fill", "fill_", "zero_", "masked_fill", "masked_fill_",
    "constant_pad_nd", "pad", "reflection_pad1d", "reflection_pad2d", "reflection_pad3d", "replication_pad1d",
    "replication_pad2d", "replication_pad3d", "_pad_circular", "_pad_enum", "resize_", "resize_as_", "set_",
    "flatten", "unflatten", "view_copy", "permute_copy", "transpose_copy", "expand_copy", "slice_copy",
    "select_copy", "unsqueeze_copy", "squeeze_copy", "t_copy", "alias_copy", "detach_copy", "_reshape_copy",
    "split_copy", "unbind_copy", "rand", "rand_like", "randn", "randn_like", "randint", "randint_like", "randperm",
    "normal", "normal_", "uniform_", "bernoulli", "bernoulli_", "exponential_", "random_", "dropout", "feature_dropout",
    "alpha_dropout", "tril", "triu", "tril_", "triu_", "nonzero", "_local_scalar_dense", "item", "one_hot",
    "meshgrid", "_assert_async", "_assert_scalar", "sym_constrain_range", "_functional_sym_constrain_range",
    "sym_size", "sym_stride", "sym_numel", "sym_storage_offset", "is_same_size", "_has_compatible_shallow_copy_type",
    "type_as", "view_as_real", "view_as_complex", "_conj", "conj", "resolve_conj", "resolve_neg", "_neg_view",
    "record_stream", "_nested_tensor_from_mask", "argwhere", "where_copy", "align_as", "swapaxes", "swapdims",
    "column_stack", "dstack", "block_diag", "clone_", "_foreach_copy_", "sort_stable",
))


# ---------------------------------------------------------------------------------------------
# products (MACs)
@op_rule(aten.convolution, *_ops("_convolution", "cudnn_convolution", "mkldnn_convolution",
                                 "convolution_overrideable", "_slow_conv2d_forward", "thnn_conv2d", "conv2d",
                                 "conv1d", "conv3d", "slow_conv_dilated2d", "_nnpack_spatial_convolution",
                                 "_conv_depthwise2d", "miopen_convolution", "miopen_depthwise_convolution"))
def convolution(x, w, *args, out, **kw):
    """out elements x Cin/g x taps; transposed: in elements x Cout/g x taps (as our formulas)."""
    # aten.convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
    transposed = args[4] if len(args) > 4 and isinstance(args[4], bool) else kw.get("transposed", False)
    y = _first_shape(out)
    taps = prod(w[2:])
    if transposed:
        return [mac("conv", _n(x) * w[1] * taps, _n(y))]
    return [mac("conv", _n(y) * w[1] * taps, _n(y))]


@op_rule(*_ops("cudnn_convolution_transpose", "mkldnn_convolution_transpose", "slow_conv_transpose2d",
               "conv_transpose2d", "conv_transpose1d", "conv_transpose3d", "miopen_convolution_transpose"))
def convolution_transpose(x, w, *args, out, **kw):
    """transposed conv: input elements x Cout/g x taps."""
    return [mac("conv", _n(x) * w[1] * prod(w[2:]), _n(_first_shape(out)))]


@op_rule(aten.mm, *_ops("_mm", "mv"))
def mm(a, b, *args, out, **kw):
    """(n x k) @ (k x m): n k m MACs (kind relabelled 'linear' for a transposed 2-D parameter)."""
    return [mac("matmul", _n(out) * a[-1], _n(out))]


@op_rule(aten.addmm, *_ops("_addmm_activation", "addmv"))
def addmm(bias, a, b, *args, out, **kw):
    """as mm; the bias add is not counted."""
    return [mac("matmul", _n(out) * a[-1], _n(out))]


@op_rule(aten.bmm, *_ops("_bmm"))
def bmm(a, b, *args, out, **kw):
    """(B x n x k) @ (B x k x m): B n k m MACs."""
    return [mac("matmul", _n(out) * a[-1], _n(out))]


@op_rule(aten.baddbmm, *_ops("addbmm"))
def baddbmm(c, a, b, *args, out, **kw):
    """as bmm; the added term is not counted."""
    return [mac("matmul", _n(a) // a[-1] * b[-1] * a[-1], _n(out))]


@op_rule(*_ops("matmul", "einsum", "dot", "vdot", "inner", "tensordot", "bilinear", "chain_matmul"))
def composite_product(*args, out, **kw):
    """Only reached where the op dispatches undecomposed (it normally decomposes to mm / bmm)."""
    shapes = [a for a in args if isinstance(a, tuple)]
    k = shapes[0][-1] if shapes and shapes[0] else 1
    return [mac("matmul", _n(_first_shape(out)) * k, _n(_first_shape(out)))]


@op_rule(*_ops("linear", "mkldnn_linear", "_linear"))
def linear(x, w, *args, out, **kw):
    """tokens x in x out MACs."""
    return [mac("linear", _n(out) * w[-1], _n(out))]


def _attention(q, k, v, extra_scale: bool = True):
    """q.k^T and attn.v as matmuls; the scale of q (1/elem) and the softmax (4/score) element-wise."""
    lead = q[:-2]
    lq, e, s, ev = q[-2], q[-1], k[-2], v[-1]
    scores = prod(lead) * lq * s
    return [mac("matmul", scores * e, scores), mac("matmul", scores * ev, prod(lead) * lq * ev),
            ew("mul", prod(q)), ew("softmax", scores)]


@op_rule(*_ops("scaled_dot_product_attention", "_scaled_dot_product_flash_attention",
               "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
               "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_attention_math",
               "_scaled_dot_product_fused_attention_overrideable", "_flash_attention_forward",
               "_efficient_attention_forward", "_scaled_dot_product_attention_math_for_mps"))
def sdpa(q, k, v, *args, out, **kw):
    """Fused attention: q.k^T + attn.v MACs; scale 1 per q element, softmax 4 per score (the math path,
    when it decomposes, scales q and k by sqrt(scale) instead: see README)."""
    return _attention(q, k, v)


@op_rule(*_ops("_native_multi_head_attention"))
def native_mha(q, k, v, embed_dim, num_heads, qkv_w, qkv_b, proj_w, proj_b, *args, out, **kw):
    """nn.MultiheadAttention's fast path: in/out projections (linear) + attention (as our formula)."""
    b, lq, e = q
    s = k[-2]
    h = num_heads
    hd = e // h
    return [mac("linear", b * lq * e * e + 2 * b * s * e * e), mac("matmul", 2 * b * h * lq * s * hd),
            ew("mul", b * lq * e), ew("softmax", b * h * lq * s), mac("linear", b * lq * e * e)]


# ---------------------------------------------------------------------------------------------
# norms
@op_rule(*_ops("native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
               "_native_batch_norm_legit_functional", "cudnn_batch_norm", "miopen_batch_norm",
               "_batch_norm_with_update", "_batch_norm_with_update_functional", "_batch_norm_no_update",
               "batch_norm", "_batch_norm_impl_index", "native_batch_norm_backward_placeholder",
               "mkldnn_batch_norm"))
def batch_norm(x, *args, out, **kw):
    """2 per element (scale + shift), as our BatchNorm formula."""
    return [ew("BatchNorm2d", _n(x))]


@op_rule(*_ops("native_layer_norm", "layer_norm"))
def layer_norm(x, *args, out, **kw):
    """5 per element."""
    return [ew("LayerNorm", _n(x))]


@op_rule(*_ops("native_group_norm", "group_norm"))
def group_norm(x, *args, out, **kw):
    """5 per element."""
    return [ew("GroupNorm", _n(x))]


@op_rule(*_ops("rms_norm", "_fused_rms_norm"))
def rms_norm(x, *args, out, **kw):
    """4 per element (square, mean, scale, affine)."""
    return [ew("RMSNorm", _n(x))]


# ---------------------------------------------------------------------------------------------
# element-wise: one rule per cost key, priced per output element
def _pointwise(key: str):
    def rule(*args, out, **kw):
        return [ew(key, _n(_first_shape(out)))]
    rule.__qualname__ = f"pointwise[{key}]"
    rule.__doc__ = f"ELEMENTWISE_COST[{key!r}] per output element."
    return rule


_POINTWISE = {
    "ReLU": ("relu", "relu_", "threshold", "threshold_"),
    "ReLU6": ("relu6", "relu6_", "hardtanh", "hardtanh_"),
    "LeakyReLU": ("leaky_relu", "leaky_relu_", "rrelu", "rrelu_", "rrelu_with_noise"),
    "SiLU": ("silu", "silu_"),
    "Sigmoid": ("sigmoid", "sigmoid_"),
    "Hardswish": ("hardswish", "hardswish_"),
    "Hardsigmoid": ("hardsigmoid", "hardsigmoid_"),
    "Tanh": ("tanh", "tanh_"),
    "GELU": ("gelu", "gelu_"),
    "Mish": ("mish", "mish_"),
    "ELU": ("elu", "elu_", "selu", "selu_", "celu", "celu_"),
    "PReLU": ("prelu", "_prelu_kernel"),
    "Softplus": ("softplus", "log_sigmoid_forward", "log_sigmoid"),
    "GLU": ("glu",),
    "add": ("add_", "rsub", "sub", "sub_", "addcmul", "addcdiv", "lerp", "lerp_"),
    "mul": ("mul", "mul_", "square"),
    "div": ("div", "div_", "reciprocal", "reciprocal_", "floor_divide", "remainder", "fmod", "true_divide"),
    "neg": ("neg", "neg_", "abs", "abs_", "sign", "sgn"),
    "exp": ("exp", "exp_", "exp2", "expm1", "log", "log_", "log2", "log10", "log1p", "pow", "pow_",
            "float_power", "sqrt", "sqrt_", "rsqrt", "rsqrt_", "erf", "erf_", "erfc", "erfinv", "sin", "cos",
            "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "asinh", "acosh", "atanh", "sinc", "xlogy",
            "logit", "hypot", "logaddexp", "logaddexp2", "special_erfcx"),
    "max": ("clamp", "clamp_", "clamp_min", "clamp_min_", "clamp_max", "clamp_max_", "clip", "clip_", "maximum",
            "minimum", "fmax", "fmin", "where", "eq", "ne", "lt", "le", "gt", "ge", "logical_and",
            "logical_or", "logical_not", "logical_xor", "bitwise_and", "bitwise_or", "bitwise_not",
            "bitwise_xor", "isnan", "isinf", "isfinite", "nan_to_num", "floor", "ceil", "round", "trunc", "frac",
            "heaviside", "isclose", "eq_", "ne_", "lt_", "gt_", "le_", "ge_", "floor_", "ceil_", "round_",
            "logical_and_", "logical_or_", "logical_not_", "logical_xor_", "trunc_", "nan_to_num_"),
}
for _key, _names in _POINTWISE.items():
    op_rule(*_ops(*_names))(_pointwise(_key))


@op_rule(aten.add)
def add(a, b=None, *args, out, bias_add: bool = False, **kw):
    """1 per output element; a bias add (a 1-D parameter) is not counted (see the counter)."""
    return [] if bias_add else [ew("add", _n(_first_shape(out)))]


# ---------------------------------------------------------------------------------------------
# reductions and normalisations over an axis: priced per input element
def _reduction(key: str, per: float = 1):
    def rule(x, *args, out, **kw):
        return [ew(key, _n(x), per)]
    rule.__qualname__ = f"reduction[{key}]"
    rule.__doc__ = f"ELEMENTWISE_COST[{key!r}] per input element."
    return rule


op_rule(*_ops("mean", "nanmean"))(_reduction("mean"))
op_rule(*_ops("cumsum", "cumsum_", "logcumsumexp"))(_reduction("add"))


@op_rule(*_ops("sum", "nansum"))
def sum_(x, *args, out, **kw):
    """A sum of n values is n - 1 adds: input elements - output elements (a mean's extra divide makes it n)."""
    return [ew("add", _n(x) - _n(_first_shape(out)))]


op_rule(*_ops("prod", "cumprod"))(_reduction("mul"))
op_rule(*_ops("amax", "amin", "max", "min", "aminmax", "argmax", "argmin", "cummax", "cummin", "all", "any",
              "_aminmax", "count_nonzero"))(_reduction("max"))
op_rule(*_ops("var", "std", "var_mean", "std_mean"))(_reduction("var"))
op_rule(*_ops("norm", "linalg_vector_norm", "frobenius_norm", "renorm"))(_reduction("norm"))
op_rule(*_ops("_softmax", "softmax", "_safe_softmax", "special_softmax"))(_reduction("softmax"))
op_rule(*_ops("_log_softmax", "log_softmax", "logsumexp"))(_reduction("log_softmax"))


@op_rule(*_ops("topk"))
def topk(x, *args, out, **kw):
    """1 compare per input element (as our formulas' top-k)."""
    return [ew("max", _n(x))]


@op_rule(*_ops("sort", "argsort", "msort", "kthvalue", "median", "nanmedian", "mode"))
def sort(x, *args, out, **kw):
    """log2(n) compares per input element along the sorted axis."""
    dim = args[0] if args and isinstance(args[0], int) and not isinstance(args[0], bool) else kw.get("dim", -1)
    n = x[dim] if x else 1
    return [ew("sort", _n(x), max(log2(max(n, 2)), 1))]


# ---------------------------------------------------------------------------------------------
# pooling, resampling
def _window(x, y, k, *_):
    return prod(k if isinstance(k, (list, tuple)) else [k] * (len(x) - 2))


@op_rule(*_ops("max_pool2d_with_indices", "max_pool2d", "max_pool1d", "max_pool3d", "max_pool1d_with_indices",
               "max_pool3d_with_indices", "mkldnn_max_pool2d", "quantized_max_pool2d"))
def max_pool(x, kernel_size, *args, out, **kw):
    """1 compare per window element of every output (as our MaxPool2d formula)."""
    y = _first_shape(out)
    return [ew("MaxPool2d", _n(y), _window(x, y, kernel_size))]


@op_rule(*_ops("avg_pool2d", "avg_pool1d", "avg_pool3d", "mkldnn_avg_pool2d"))
def avg_pool(x, kernel_size, *args, out, **kw):
    """1 add per window element of every output (as our AvgPool2d formula)."""
    y = _first_shape(out)
    return [ew("AvgPool2d", _n(y), _window(x, y, kernel_size))]


op_rule(*_ops("_adaptive_avg_pool2d", "adaptive_avg_pool2d", "adaptive_avg_pool1d", "adaptive_avg_pool3d",
              "_adaptive_avg_pool3d", "mkldnn_adaptive_avg_pool2d"))(_reduction("AdaptiveAvgPool2d"))
op_rule(*_ops("adaptive_max_pool2d", "adaptive_max_pool1d", "adaptive_max_pool3d"))(_reduction("max"))
op_rule(*_ops("upsample_nearest2d", "_upsample_nearest_exact2d", "upsample_nearest1d", "upsample_nearest3d",
              "_upsample_nearest_exact1d", "_upsample_nearest_exact3d"))(_pointwise("Upsample.nearest"))
op_rule(*_ops("upsample_bilinear2d", "_upsample_bilinear2d_aa", "upsample_linear1d",
              "upsample_trilinear3d"))(_pointwise("Upsample.bilinear"))
op_rule(*_ops("upsample_bicubic2d", "_upsample_bicubic2d_aa"))(_pointwise("Upsample.bicubic"))


@op_rule(*_ops("grid_sampler_2d", "grid_sampler", "cudnn_grid_sampler", "_grid_sampler_2d_cpu_fallback",
               "grid_sampler_3d"))
def grid_sampler(x, grid, mode=0, *args, out, **kw):
    """Bilinear (mode 0): the deformable-conv hand rule, ``bilinear.coords`` per sampled point and
    ``bilinear.interp`` per sampled value (point x channel); nearest (1): one copy per value;
    bicubic (2): ``Upsample.bicubic`` per value."""
    y = _first_shape(out)
    points = _n(grid) // grid[-1]
    values = _n(y)
    if mode == 1:
        return [ew("Upsample.nearest", values)]
    if mode == 2:
        return [ew("bilinear.coords", points), ew("Upsample.bicubic", values)]
    return [ew("bilinear.coords", points), ew("bilinear.interp", values)]


# ---------------------------------------------------------------------------------------------
# the mode


def _shape_of(a):
    if isinstance(a, torch.Tensor):
        return tuple(a.shape)
    if isinstance(a, (list, tuple)) and a and isinstance(a[0], torch.Tensor):
        return [tuple(t.shape) if isinstance(t, torch.Tensor) else t for t in a]
    return a


_LINEAR_OPERAND = {aten.mm: 1, aten.addmm: 2}


def _is_weight_t(b, params) -> bool:
    """``b`` is the transpose of (rows of) a 2-D parameter: what F.linear hands to mm / addmm
    (nn.MultiheadAttention's in-projection takes row chunks of its packed weight)."""
    if not isinstance(b, torch.Tensor) or not b._is_view() or b.dim() != 2:
        return False
    base = b._base
    return (id(base) in params and base.dim() == 2 and b.shape[0] == base.shape[1] and b.stride(0) == 1
            and b.stride(1) == base.stride(0))


def _is_bias(t, params) -> bool:
    if not isinstance(t, torch.Tensor):
        return False
    base = t._base if t._is_view() else t
    return id(base) in params and base.dim() == 1


class OpCounter(TorchDispatchMode):
    """Count every op of the forwards run inside it; attribute each to the module path running it.

    ``root``: the module whose submodule names are the paths (hooks are added on enter, removed on
    exit; a module shared by several parents gets each caller's path).  ``on_module(module, path,
    args, kwargs)`` is called before every module call; a true result means the module is counted
    elsewhere (by a formula): the ops inside that call are not recorded.  ``out_shapes``: path ->
    output shape(s) of its first call.
    """

    def __init__(self, root: nn.Module | None = None, on_module=None, record_shapes: bool = True):
        super().__init__()
        self.root = root
        self.on_module = on_module
        self.record_shapes = record_shapes
        self.out_shapes: dict = {}  # path -> output shape(s) of its first call
        self.records: dict = {}
        self.not_counted_at_path: dict = {}
        self._stack: list[str] = [""]
        self._muted = 0
        self._mute_stack: list[bool] = []
        self._hooks: list = []
        self._params: set[int] = set()

    # -- results -----------------------------------------------------------------------------
    @property
    def not_counted(self) -> Counter:
        c: Counter = Counter()
        for per in self.not_counted_at_path.values():
            c.update(per)
        return c

    def not_counted_at(self, prefix: str = "") -> Counter:
        c: Counter = Counter()
        for path, per in self.not_counted_at_path.items():
            if _under(path, prefix):
                c.update(per)
        return c

    def total(self, prefix: str = "") -> dict:
        out = {k: 0 for k in (*MAC_KINDS, "elementwise")}
        for (path, _op, kind), (value, _elems, _calls) in self.records.items():
            if _under(path, prefix):
                out[kind] += value
        return out

    def terms(self, prefix: str = "") -> list[Term]:
        """Records under ``prefix`` as cost terms named ``<path relative to prefix>.<op>``."""
        out = []
        for (path, op, kind), (value, elems, _calls) in self.records.items():
            if not _under(path, prefix):
                continue
            rel = path[len(prefix):].lstrip(".") if prefix else path
            out.append(Term(f"{rel}.{op}" if rel else op, kind, f"aten.{op}", value, elems))
        return out

    # -- hooks ---------------------------------------------------------------------------------
    def __enter__(self):
        if self.root is not None:
            self._params = {id(p) for p in self.root.parameters()}
            self._names = {id(m): n for n, m in self.root.named_modules()}
            self._children = {}
            self._mods = [self.root]
            for mod in self.root.modules():
                self._hooks.append(mod.register_forward_pre_hook(self._pre, with_kwargs=True))
                self._hooks.append(mod.register_forward_hook(self._post, always_call=True))
        return super().__enter__()

    def __exit__(self, *exc):
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        self._stack[:] = [""]
        self._mute_stack.clear()
        self._muted = 0
        return super().__exit__(*exc)

    def _path(self, mod) -> str:
        """The path of this call: the caller's path + the module's name among the caller's children (a
        module shared by several parents, like YOLOv5's ``Conv.default_act``, gets each caller's path)."""
        if mod is self.root and len(self._stack) == 1:
            return ""
        parent, ppath = self._mods[-1], self._stack[-1]
        kids = self._children.get(id(parent))
        if kids is None:
            kids = self._children[id(parent)] = {id(c): n for n, c in parent._modules.items() if c is not None}
        name = kids.get(id(mod))
        if name is not None:
            return f"{ppath}.{name}" if ppath else name
        return self._names.get(id(mod), ppath)

    def _pre(self, mod, args, kwargs):
        path = self._path(mod)
        self._stack.append(path)
        self._mods.append(mod)
        mute = bool(not self._muted and self.on_module is not None and self.on_module(mod, path, args, kwargs))
        self._mute_stack.append(mute)
        self._muted += mute

    def _post(self, mod, args, out):
        if len(self._stack) > 1:
            if self.record_shapes and self._stack[-1] not in self.out_shapes:
                self.out_shapes[self._stack[-1]] = _out_shapes(out)
            self._stack.pop()
            self._mods.pop()
        if self._mute_stack:
            self._muted -= self._mute_stack.pop()

    # -- dispatch ------------------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self._muted:
            return out
        packet = func._overloadpacket
        rule = RULES.get(packet)
        if rule is ZERO:
            return out
        path = self._stack[-1]
        if rule is None:
            per = self.not_counted_at_path.setdefault(path, Counter())
            per[packet.__name__] += 1
            return out
        extra = {}
        if packet is aten.add and len(args) > 1 and (_is_bias(args[1], self._params) or _is_bias(args[0], self._params)):
            extra["bias_add"] = True
        if kwargs:
            extra.update((k, _shape_of(v)) for k, v in kwargs.items())
        recs = rule(*[_shape_of(a) for a in args], out=_shape_of(out), **extra)
        relabel = packet in _LINEAR_OPERAND and _is_weight_t(args[_LINEAR_OPERAND[packet]], self._params)
        name = packet.__name__
        for kind, value, elems in recs:
            if relabel and kind == "matmul":
                kind = "linear"
            key = (path, name, kind)
            r = self.records.get(key)
            if r is None:
                self.records[key] = [value, elems, 1]
            else:
                r[0] += value
                r[1] += elems
                r[2] += 1
        return out


def _under(path: str, prefix: str) -> bool:
    return not prefix or path == prefix or path.startswith(prefix + ".")


def not_counted_note(counter: Counter) -> str | None:
    """'not counted: aten.foo x3, aten.bar x1' (None when every op had a rule)."""
    if not counter:
        return None
    return "not counted: " + ", ".join(f"aten.{op} x{n}" for op, n in sorted(counter.items()))


# ---------------------------------------------------------------------------------------------
# one module on shapes


@dataclass
class OpCount:
    out: object  # output shape(s)
    terms: list  # [Term]
    not_counted: Counter
    device: str


#: a module that cannot run on meta is run on CPU only below this many bytes of inputs + weights
CPU_FALLBACK_BYTES = 1 << 30


def _zeros(shapes, device):
    if isinstance(shapes, (list, tuple)) and shapes and isinstance(shapes[0], (list, tuple)):
        return [_zeros(s, device) for s in shapes]
    return torch.zeros(tuple(shapes), device=device)


def _out_shapes(out):
    if isinstance(out, torch.Tensor):
        return tuple(out.shape)
    if isinstance(out, tuple):
        return tuple(_out_shapes(o) for o in out)
    if isinstance(out, list):
        return [_out_shapes(o) for o in out]
    return None


def _numel(shapes) -> int:
    if isinstance(shapes, (list, tuple)) and shapes and isinstance(shapes[0], (list, tuple)):
        return sum(_numel(s) for s in shapes)
    return prod(shapes) if isinstance(shapes, (list, tuple)) else 0


def cpu_budget_check(module, inputs, last, limit: int | None = None) -> None:
    """Refuse a real CPU forward that would need more than ``CPU_FALLBACK_BYTES`` (inputs + weights)."""
    limit = CPU_FALLBACK_BYTES if limit is None else limit
    need = 4 * (sum(_numel(s) for s in inputs) + sum(p.numel() for p in module.parameters()))
    if need > limit:
        raise FlopscopeError(
            f"{type(module).__name__} does not run on the meta device ({type(last).__name__}: {str(last)[:120]}); "
            f"counting it with a real CPU forward would need about {need / 2**30:.1f} GiB, more than the "
            f"{limit >> 30} GiB allowed -- use a smaller --img")


def materialise_cpu(module: nn.Module) -> nn.Module:
    """A CPU copy of a (meta) module with small random weights (op counts depend on shapes only)."""
    m = copy.deepcopy(module).to_empty(device="cpu")
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.01)
        for name, b in m.named_buffers():
            if b.is_floating_point():
                b.fill_(1.0 if name.endswith("running_var") else 0.0)
    return m


def count_ops(module: nn.Module, inputs, limit: int | None = None) -> OpCount:
    """Run ``module`` on zero tensors of the given shapes (one per positional input) under
    :class:`OpCounter`: on its own device (meta by default), else on a CPU copy within the size guard."""
    try:
        device = next(module.parameters()).device
    except StopIteration:
        device = torch.device("meta")
    attempts = [device] if device.type == "cpu" else [device, torch.device("cpu")]
    last = None
    for dev in attempts:
        if dev.type == "cpu" and last is not None:
            cpu_budget_check(module, inputs, last, limit)
        try:
            m = materialise_cpu(module) if dev.type == "cpu" and device.type == "meta" else module
            args = [_zeros(s, dev) for s in inputs]
            with torch.no_grad(), OpCounter(m) as oc:
                out = m(*args)
            return OpCount(_out_shapes(out), oc.terms(), oc.not_counted, dev.type)
        except FlopscopeError:
            raise
        except Exception as e:  # noqa: BLE001 - report the last failure below
            last = e
    raise FlopscopeError(f"{type(module).__name__} has no cost formula and could not run for the op-level counter: "
                         f"{type(last).__name__}: {str(last)[:200]}")
