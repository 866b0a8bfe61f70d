"""ptflops 0.7.x, pytorch backend.

Module hooks by exact type: conv and linear count MACs *plus bias* (1/output element), BatchNorm 2/element,
``nn.Upsample`` 1/output element, ReLU-family and pools 1/element; plus patched functionals (``F.relu``,
``F.silu``, ``F.softmax``, ``F.interpolate``, ``F.max_pool2d`` ...) and tensor ops (``torch.matmul/mm/bmm/add/mul``),
so a module whose forward calls a patched functional is counted twice.  ``nn.MultiheadAttention`` has its own
hook (+ the patched ``torch.bmm`` and ``F.softmax`` inside it).  Python operators (``a + b``, ``a @ b``) are
invisible.
"""
from __future__ import annotations

import copy
import io

import torch
import torch.nn as nn

from ..cost import MAC_KINDS, Term
from . import CounterFailed, CounterRun, boundary_hooks, between_marks, counter, last_error, layers, quiet
from .rules import (UNKNOWN, Rule, affine, exact, fallback_elementwise, fallback_term, has_bias, mha_dims, not_hooked, r, same_size_pool,
                    softmax_rows, table)


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
    return r(lambda t, m: None if _is_module(m, cls_name) else 0,
              f"ptflops: functional {cls_name} not counted (only F.{cls_name.lower()} is patched)")


_MHA_BMM = "ptflops: MHA attention matmuls counted twice (hook + torch.bmm patch)"
_AT_NOT_COUNTED = r(lambda t, m: 0, "ptflops: `@` operator not counted (only torch.matmul/mm/bmm calls are)")


def _pt_conv(t, m):
    if not exact(m, "Conv2d"):
        return 0
    return t.value + (t.elems if has_bias(m) else 0)


def _pt_pool(t, m):
    return 2 * t.elems if same_size_pool(m) else None


def mha_dims(m):
    if m is None or m.kdim != m.embed_dim or m.vdim != m.embed_dim:
        return None
    return m.embed_dim


def _pt_mha_in(t, m):
    e = mha_dims(m)
    if e is None:
        return None
    return t.value + (t.value // e if getattr(m, "in_proj_bias", None) is not None else 0)


def _pt_mha_out(t, m):
    e = mha_dims(m)
    return None if e is None else t.value + t.value // e  # ptflops: "bias is always enabled"


def _pt_mha_bmm(t, m):
    return None if mha_dims(m) is None else 2 * t.value


PTFLOPS_RULES: dict[str, Rule] = {
    "Conv2d": r(_pt_conv, lambda t, m: ("ptflops: conv bias counted 1/output element" if exact(m, "Conv2d")
                                         else not_hooked("ptflops", "Conv2d")(t, m))),
    "ConvTranspose2d": r(lambda t, m: t.value + (t.elems if has_bias(m) else 0),
                          "ptflops: conv bias counted 1/output element"),
    "Linear": r(lambda t, m: (t.value + (t.elems if has_bias(m) else 0)) if exact(m, "Linear") else 0,
                 lambda t, m: ("ptflops: linear bias counted 1/output element" if exact(m, "Linear")
                               else not_hooked("ptflops", "Linear")(t, m))),
    "F.conv2d": r(lambda t, m: 0, "ptflops: F.conv2d not hooked"),
    "F.linear": r(lambda t, m: 0, "ptflops: F.linear not hooked"),
    "einsum": r(lambda t, m: 0, "ptflops: einsum not hooked"),
    "scaled_dot_product_attention": r(lambda t, m: 0, "ptflops: scaled_dot_product_attention not hooked"),
    "BatchNorm2d": r(lambda t, m: 2 * t.elems, "ptflops: BatchNorm counted 2/element"),
    "BatchNorm1d": r(lambda t, m: 2 * t.elems, "ptflops: BatchNorm counted 2/element"),
    "BatchNorm2d.noaffine": r(lambda t, m: t.elems, "ptflops: BatchNorm (no affine) counted 1/element"),
    "BatchNorm1d.noaffine": r(lambda t, m: t.elems, "ptflops: BatchNorm (no affine) counted 1/element"),
    "LayerNorm": r(lambda t, m: t.elems, "ptflops: LayerNorm counted 1/element"),
    "GroupNorm": r(lambda t, m: (2 if affine(m) else 1) * t.elems, "ptflops: GroupNorm counted 2/element"),
    "Upsample.nearest": r(lambda t, m: 2 * t.elems,
                           "ptflops: nn.Upsample counted 2/element (module hook + F.interpolate patch)"),
    "Upsample.bilinear": r(lambda t, m: 2 * t.elems,
                            "ptflops: nn.Upsample counted 2/element (module hook + F.interpolate patch)"),
    "F.interpolate.nearest": r(lambda t, m: t.elems, "ptflops: F.interpolate counted 1/output element"),
    "F.interpolate.bilinear": r(lambda t, m: t.elems, "ptflops: F.interpolate counted 1/output element"),
    "SiLU": r(_pt_module("SiLU", 1, 1), "ptflops: SiLU counted 1/element (F.silu patch)", _pt_unpatched("SiLU")),
    "ReLU": r(_pt_module("ReLU", 2, 1), "ptflops: ReLU counted (module hook + F.relu patch, 1/element each)",
               _pt_unpatched("ReLU")),
    "ReLU6": r(_pt_module("ReLU6", 1, 1), "ptflops: ReLU6 counted 1/element", _pt_unpatched("ReLU6")),
    "LeakyReLU": r(_pt_module("LeakyReLU", 1, 0), "ptflops: LeakyReLU counted 1/element (module hook)"),
    "ELU": r(_pt_module("ELU", 2, 1), "ptflops: ELU counted (module hook + F.elu patch, 1/element each)",
              _pt_unpatched("ELU")),
    "PReLU": r(_pt_module("PReLU", 2, 1), "ptflops: PReLU counted (module hook + F.prelu patch, 1/element each)",
                _pt_unpatched("PReLU")),
    "GELU": r(_pt_module("GELU", 2, 1), "ptflops: GELU counted (module hook + F.gelu patch, 1/element each)",
               _pt_unpatched("GELU")),
    "MaxPool2d": r(_pt_pool, "ptflops: MaxPool2d counted 2/input element (module hook + F.max_pool2d patch)"),
    "AvgPool2d": r(_pt_pool, "ptflops: AvgPool2d counted 2/input element (module hook + F.avg_pool2d patch)"),
    "F.avg_pool2d": r(lambda t, m: t.elems, "ptflops: F.avg_pool2d counted 1/input element (padded input)"),
    "AdaptiveAvgPool2d": r(lambda t, m: 2 * t.value,
                            "ptflops: AdaptiveAvgPool2d counted 2/input element (module hook + functional patch)"),
    "AdaptiveMaxPool2d/": r(lambda t, m: 2 * t.value,
                             "ptflops: AdaptiveMaxPool2d counted 2/input element (module hook + functional patch)"),
    "Softmax": r(lambda t, m: t.value / 4, "ptflops: softmax counted 1/element (F.softmax patch)"),
    "softmax": r(lambda t, m: t.elems, "ptflops: softmax counted 1/element (F.softmax patch)",
                  r(lambda t, m: 0, "ptflops: Tensor.softmax not counted (only F.softmax is patched)")),
    "matmul": r(lambda t, m: t.value, None, _AT_NOT_COUNTED),
    "mm": r(lambda t, m: t.value, None, _AT_NOT_COUNTED),
    "bmm": r(lambda t, m: t.value, None, _AT_NOT_COUNTED),
    "mean": r(lambda t, m: 0, None,
               r(lambda t, m: t.value, "ptflops: F.adaptive_avg_pool2d counted 1/input element")),
    "add": r(lambda t, m: 0, None, r(lambda t, m: t.elems, "ptflops: torch.add counted 1/element")),
    "mul": r(lambda t, m: 0, None, r(lambda t, m: t.elems, "ptflops: torch.mul counted 1/element")),
    # nn.MultiheadAttention: its hook (q scaling, projections + biases, heads' q.kᵀ, softmax, attn.v,
    # out-projection + bias) plus the patched torch.bmm and F.softmax it calls
    "MultiheadAttention/in_proj.q": r(_pt_mha_in, "ptflops: MHA projection biases counted"),
    "MultiheadAttention/in_proj.k": r(_pt_mha_in, "ptflops: MHA projection biases counted"),
    "MultiheadAttention/in_proj.v": r(_pt_mha_in, "ptflops: MHA projection biases counted"),
    "MultiheadAttention/out_proj": r(_pt_mha_out, "ptflops: MHA projection biases counted"),
    "MultiheadAttention/q·kᵀ": r(_pt_mha_bmm, _MHA_BMM),
    "MultiheadAttention/attn·v": r(_pt_mha_bmm, _MHA_BMM),
    "MultiheadAttention/q scale": r(lambda t, m: t.elems, "ptflops: MHA q scaling counted 1/element"),
    "MultiheadAttention/softmax": r(lambda t, m: 2 * t.elems,
                                     "ptflops: MHA softmax counted 2/element (hook + F.softmax patch)"),
    "MultiheadAttention/head average": r(lambda t, m: 0),
    }
_PT_FALLBACK = r(lambda t, m: t.value, "ptflops: module without formula (assumed bias-free module calls)")


def _ptflops_default(t: Term) -> Rule:
    if fallback_elementwise(t):
        return UNKNOWN
    if fallback_term(t):
        return _PT_FALLBACK
    if t.kind in MAC_KINDS:  # mm / matmul / bmm through the patched torch functions
        return r(lambda t, m: t.value)
    return r(lambda t, m: 0)  # sigmoid, Python operators (+, *), cat ... are not counted


PTFLOPS = table("ptflops", "ptflops", PTFLOPS_RULES, _ptflops_default)


@counter("ptflops", label="ptflops", package="ptflops", tables=(PTFLOPS,), selects=("ptflops-pytorch",))
def run_ptflops(model, x, probe=None) -> CounterRun:
    """ptflops, pytorch backend; per layer by snapshots of its collectors at each YAML layer's boundaries
    (it deletes its per-module counters before returning)."""
    import ptflops.pytorch_engine as pe
    import torch.nn.functional as F
    from ptflops import get_model_complexity_info

    m = copy.deepcopy(model)
    yaml_layers = layers(m)

    def collectors():
        cs = []
        for fn in (F.relu, torch.matmul):  # patched by ptflops while it runs: wrappers that hold a collector
            c = getattr(fn, "collector", None)
            if isinstance(c, list) and all(c is not d for d in cs):
                cs.append(c)
        return cs

    seen: dict = {}

    def snapshot():
        cs = collectors()
        seen["collectors"] = cs
        return [len(c) for c in cs]

    module_flops: list[float] = []

    def accumulate(mod):
        if pe.is_supported_instance(mod):
            return getattr(mod, "__flops__", 0)
        return sum(accumulate(c) for c in mod.children())

    def at_end(mod, args, out):
        module_flops.extend(float(accumulate(layer)) for layer in yaml_layers)

    marks, handles = boundary_hooks(m, snapshot)
    handles.append(m.register_forward_hook(at_end))
    try:
        with quiet() as (out, err):
            macs, _params = get_model_complexity_info(m, tuple(x.shape[1:]), input_constructor=lambda _: x,
                                                      print_per_layer_stat=False, as_strings=False, backend="pytorch",
                                                      ost=io.StringIO())
    finally:
        for h in handles:
            h.remove()
    if macs is None:
        raise CounterFailed(last_error(out.getvalue() + err.getvalue()))
    b = x.shape[0]
    cs = seen.get("collectors", [])
    per = []
    for i in range(len(yaml_layers)):
        func = 0.0
        if i + 1 < len(marks):
            for k, c in enumerate(cs):
                func += float(sum(c[marks[i][k]:marks[i + 1][k]]))
        per.append(module_flops[i] / b + func if module_flops else func)
    return CounterRun(per, float(macs))
