"""``torch.utils.flop_counter.FlopCounterMode``: FLOPs = 2 x MACs of conv / mm / addmm / bmm / baddbmm / SDPA;
halved here.  Nothing else.  Work recorded with a hand ``rule`` (e.g. bilinear sampling) is invisible to it by
definition.
"""
from __future__ import annotations

import torch

from ..cost import MAC_KINDS, Term
from . import CounterFailed, CounterRun, boundary_hooks, between_marks, counter, last_error, layers, quiet
from .rules import (Rule, affine, exact, fallback_term, has_bias, mha_dims, not_hooked, r, same_size_pool,
                    softmax_rows, table)


FCM_RULES: dict[str, Rule] = {}


def _fcm_default(t: Term) -> Rule:
    if t.kind in MAC_KINDS:
        if t.rule:
            return r(lambda t, m: 0, f"FCM: {t.op} not counted ({t.rule})")
        return r(lambda t, m: t.value)
    return r(lambda t, m: 0)


FCM = table("fcm", "FCM", FCM_RULES, _fcm_default)


@counter("fcm", label="FCM", package="torch", tables=(FCM,), selects=("flopcountermode",),
         version=lambda: f"torch {torch.__version__}")
def run_fcm(model, x, probe=None) -> CounterRun:
    """``torch.utils.flop_counter.FlopCounterMode``; per layer from ``get_flop_counts()['<Root>.model.<i>']``."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fcm:
        model(x)
    counts = fcm.get_flop_counts()
    root = type(model).__name__
    per = [sum(counts.get(f"{root}.model.{i}", {}).values()) / 2 for i in range(len(layers(model)))]
    return CounterRun([float(v) for v in per], fcm.get_total_flops() / 2)
