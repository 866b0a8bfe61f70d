"""fvcore 0.1.5 (``FlopCountAnalysis``, JIT trace).

Counts aten conv / linear / addmm / mm / matmul / bmm / einsum as MACs (no bias), eval BatchNorm 2/element (1
without affine), layer/group norm 5/element, nearest upsample 1, bilinear upsample 4 and grid_sampler 4 per output
element, adaptive_avg_pool2d 1 per input element; every other element-wise op (silu, add, mul, sigmoid,
max_pool2d, softmax ...) is *unsupported* and skipped.
"""
from __future__ import annotations

import torch.nn as nn

from ..cost import MAC_KINDS, Term
from . import CounterFailed, CounterRun, boundary_hooks, between_marks, counter, last_error, layers, quiet
from .rules import (UNKNOWN, Rule, affine, exact, fallback_elementwise, fallback_term, has_bias, mha_dims, not_hooked, r, same_size_pool,
                    softmax_rows, table)


FVCORE_RULES: dict[str, Rule] = {
    "BatchNorm2d": r(lambda t, m: 2 * t.elems, "fvcore: BatchNorm counted 2/element"),
    "BatchNorm1d": r(lambda t, m: 2 * t.elems, "fvcore: BatchNorm counted 2/element"),
    "BatchNorm2d.noaffine": r(lambda t, m: t.elems, "fvcore: BatchNorm (no affine) counted 1/element"),
    "BatchNorm1d.noaffine": r(lambda t, m: t.elems, "fvcore: BatchNorm (no affine) counted 1/element"),
    "LayerNorm": r(lambda t, m: (5 if affine(m) else 4) * t.elems, "fvcore: layer_norm counted 5/element"),
    "GroupNorm": r(lambda t, m: (5 if affine(m) else 4) * t.elems, "fvcore: group_norm counted 5/element"),
    "Upsample.nearest": r(lambda t, m: t.elems, "fvcore: nearest upsample counted 1/element"),
    "F.interpolate.nearest": r(lambda t, m: t.elems, "fvcore: nearest upsample counted 1/element"),
    "Upsample.bilinear": r(lambda t, m: 4 * t.elems, "fvcore: bilinear upsample counted 4/element"),
    "F.interpolate.bilinear": r(lambda t, m: 4 * t.elems, "fvcore: bilinear upsample counted 4/element"),
    "AdaptiveAvgPool2d": r(lambda t, m: t.value, "fvcore: adaptive_avg_pool2d counted 1/input element"),
    "grid_sample.bilinear": r(lambda t, m: 4 * t.elems, "fvcore: grid_sampler counted 4/output element"),
    # sampling recorded with a hand rule: torchvision's deform_conv2d (unsupported) or F.grid_sample
    "bilinear.interp": r(lambda t, m: 0, None,
                          r(lambda t, m: 4 * t.elems, "fvcore: grid_sampler counted 4/output element")),
    "mean": r(lambda t, m: 0, None, r(lambda t, m: t.value, "fvcore: adaptive_avg_pool2d counted 1/input element")),
    "baddbmm": r(lambda t, m: 0, "fvcore: baddbmm unsupported"),
    "scaled_dot_product_attention": r(lambda t, m: 0, "fvcore: scaled_dot_product_attention unsupported"),
}


def _fvcore_default(t: Term) -> Rule:
    if fallback_elementwise(t):
        return UNKNOWN
    if t.kind in MAC_KINDS:
        return r(lambda t, m: t.value)
    # silu, add, mul, sigmoid, max_pool2d, softmax ... are unsupported: 0, as in our MACs
    return r(lambda t, m: 0)


FVCORE = table("fvcore", "fvcore", FVCORE_RULES, _fvcore_default)


@counter("fvcore", label="fvcore", package="fvcore", tables=(FVCORE,))
def run_fvcore(model, x, probe=None) -> CounterRun:
    """fvcore ``FlopCountAnalysis`` (JIT trace); per layer from ``by_module()['model.<i>']``."""
    from fvcore.nn import FlopCountAnalysis

    fa = FlopCountAnalysis(model, (x,))
    fa.unsupported_ops_warnings(False)
    fa.uncalled_modules_warnings(False)
    fa.tracer_warnings("none")
    total = fa.total()
    by_module = fa.by_module()
    per = [float(by_module.get(f"model.{i}", 0)) for i in range(len(layers(model)))]
    unsupported = dict(sorted(fa.unsupported_ops().items(), key=lambda kv: -kv[1]))
    notes = []
    if unsupported:
        ops = ", ".join(f"{k.replace('aten::', '')} x{v}" for k, v in unsupported.items())
        notes.append(f"fvcore: element-wise ops unsupported, counted 0 (as in our MACs): {ops}")
    uncalled = sorted(fa.uncalled_modules())  # e.g. work whose output is unused: dropped from the trace
    return CounterRun(per, float(total), notes, {"unsupported_ops": unsupported, "uncalled_modules": uncalled})
