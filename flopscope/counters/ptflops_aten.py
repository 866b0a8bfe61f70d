"""ptflops 0.7.x, aten backend: aten.convolution / mm / matmul / addmm / bmm as MACs, *plus bias* for
convolution and addmm (``nn.Linear`` runs as addmm on 2-D or contiguous inputs: the layout each one saw is
observed during the run and handed to its rule).
"""
from __future__ import annotations

import copy
import io

import torch

from ..cost import MAC_KINDS, Term
from . import CounterFailed, CounterRun, boundary_hooks, between_marks, counter, last_error, layers, quiet
from .rules import (Rule, affine, exact, fallback_term, has_bias, mha_dims, not_hooked, r, same_size_pool,
                    softmax_rows, table)


def _aten_bias(t, m):
    return t.value + (t.elems if has_bias(m) else 0)


def _aten_linear(t, m, ctx):
    """aten.linear runs as addmm (bias counted) on 2-D or contiguous inputs, else as matmul + add (bias not
    counted); the input layout is observed during the run (``ctx.facts(m)``: ``{"dim", "contiguous"}``)."""
    seen = ctx.facts(m)
    addmm = seen is None or seen["dim"] == 2 or seen["contiguous"]
    return t.value + (t.elems if has_bias(m) and addmm else 0)


def _aten_mha_in(t, m):
    e = mha_dims(m)
    if e is None:
        return None
    return t.value + (t.value // e if getattr(m, "in_proj_bias", None) is not None else 0)


def _aten_mha_out(t, m):
    e = mha_dims(m)
    if e is None:
        return None
    return t.value + (t.value // e if getattr(m.out_proj, "bias", None) is not None else 0)


PTFLOPS_ATEN_RULES: dict[str, Rule] = {
    "Conv2d": r(_aten_bias, "ptflops·aten: convolution bias counted 1/output element"),
    "ConvTranspose2d": r(_aten_bias, "ptflops·aten: convolution bias counted 1/output element"),
    "F.conv2d": r(_aten_bias, "ptflops·aten: convolution bias counted 1/output element"),
    "Linear": r(_aten_linear, "ptflops·aten: addmm bias counted 1/output element", context=True),
    "MultiheadAttention/in_proj.q": r(_aten_mha_in, "ptflops·aten: addmm bias counted 1/output element"),
    "MultiheadAttention/in_proj.k": r(_aten_mha_in, "ptflops·aten: addmm bias counted 1/output element"),
    "MultiheadAttention/in_proj.v": r(_aten_mha_in, "ptflops·aten: addmm bias counted 1/output element"),
    "MultiheadAttention/out_proj": r(_aten_mha_out, "ptflops·aten: addmm bias counted 1/output element"),
    "baddbmm": r(lambda t, m: 0, "ptflops·aten: baddbmm not counted"),
    "scaled_dot_product_attention": r(lambda t, m: 0, "ptflops·aten: scaled_dot_product_attention not counted"),
}


def _aten_default(t: Term) -> Rule:  # the aten backend counts no element-wise op
    return r(lambda t, m: t.value) if t.kind in MAC_KINDS else r(lambda t, m: 0)


PTFLOPS_ATEN = table("ptflops-aten", "ptflops·aten", PTFLOPS_ATEN_RULES, _aten_default)


@counter("ptflops-aten", label="ptflops·aten", package="ptflops", tables=(PTFLOPS_ATEN,), selects=("ptflops",))
def run_ptflops_aten(model, x, probe=None) -> CounterRun:
    """ptflops, aten backend; per layer by snapshots of its FlopCounterMode at each YAML layer's boundaries."""
    import ptflops.aten_engine as ae
    from ptflops import get_model_complexity_info

    m = copy.deepcopy(model)
    modes: list = []
    original = ae.FlopCounterMode

    class Recording(original):  # the mode get_flops_aten creates, recorded so layer boundaries can read it
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            modes.append(self)

    def snapshot():
        return float(sum(modes[-1].flop_counts["Global"].values())) if modes else 0.0

    marks, handles = boundary_hooks(m, snapshot)
    seen_inputs: dict[str, tuple] = {}  # nn.Linear input layout decides addmm (bias counted) vs matmul + add

    def linear_pre(name):
        def hook(mod, args):
            if name not in seen_inputs and args and isinstance(args[0], torch.Tensor):
                seen_inputs[name] = (args[0].dim(), args[0].is_contiguous())
        return hook

    for name, sub in m.named_modules():
        if isinstance(sub, torch.nn.Linear):
            handles.append(sub.register_forward_pre_hook(linear_pre(name)))
    ae.FlopCounterMode = Recording
    try:
        with quiet() as (out, err):
            macs, _params = get_model_complexity_info(m, tuple(x.shape[1:]), input_constructor=lambda _: x,
                                                      print_per_layer_stat=False, as_strings=False, backend="aten",
                                                      ost=io.StringIO())
    finally:
        ae.FlopCounterMode = original
        for h in handles:
            h.remove()
    if macs is None:
        raise CounterFailed(last_error(out.getvalue() + err.getvalue()))
    n = len(layers(m))
    # what each nn.Linear saw, for its rule (_aten_linear): {module path: {"dim", "contiguous"}}
    observed = {name: {"dim": dim, "contiguous": contiguous} for name, (dim, contiguous) in seen_inputs.items()}
    return CounterRun(between_marks(marks, n), float(macs), observed=observed)
