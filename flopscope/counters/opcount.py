"""flopscope's own op-level counter (:mod:`flopscope.opcount`) as a column: every aten op of one forward of a
**meta** copy of the model (no real compute; the CPU model itself where a module cannot run on meta), priced by
one shape rule per op, attributed to ``model.<i>``.

Its MACs (conv + linear + matmul) are compared with our formulas like every other counter's; it has the same
conventions (bias adds not counted, ``addmm`` = ``mm``, SDPA = q·kᵀ + attn·v), so the rules expect equality and any
difference is shown.  Its element-wise FLOPs per layer (from the same ``ELEMENTWISE_COST`` table) are kept beside
ours in ``extra['elementwise_per_layer']``; ops it has no rule for are listed (``not counted: aten.foo x3``).
"""
from __future__ import annotations

import copy

import torch

from ..cost import MAC_KINDS, Term
from . import CounterRun, counter, layers
from .rules import Rule, r, table


def _default(t: Term) -> Rule:
    if t.kind in MAC_KINDS:
        return r(lambda t, m: t.value)
    return r(lambda t, m: 0)


OPCOUNT = table("opcount", "op-level", {}, _default)


@counter("opcount", label="op-level", package="flopscope", tables=(OPCOUNT,), selects=("op-level", "ops"),
         version=lambda: f"flopscope.opcount (torch {torch.__version__})")
def run_opcount(model, x, probe=None) -> CounterRun:
    """flopscope.opcount.OpCounter on a meta copy (else the CPU model); per layer = the subtree ``model.<i>``."""
    from ..opcount import OpCounter, not_counted_note

    n = len(layers(model))
    notes = []
    try:
        m = copy.deepcopy(model).to("meta")
        xin = torch.empty(tuple(x.shape), device="meta", dtype=x.dtype)
        with torch.no_grad(), OpCounter(m) as oc:
            m(xin)
    except Exception as e:  # noqa: BLE001 - a module that cannot run on meta: count the real forward instead
        notes.append(f"op-level: meta forward failed ({type(e).__name__}); counted on the {x.device.type} model")
        with torch.no_grad(), OpCounter(model) as oc:
            model(x)
    per, ew = [], []
    for i in range(n):
        tot = oc.total(f"model.{i}")
        per.append(float(sum(tot[k] for k in MAC_KINDS)))
        ew.append(float(tot["elementwise"]))
    total = oc.total()
    missing = not_counted_note(oc.not_counted)
    if missing:
        notes.append(f"op-level: {missing}")
    return CounterRun(per, float(sum(total[k] for k in MAC_KINDS)), notes,
                      {"elementwise_per_layer": ew, "elementwise_total": float(total["elementwise"]),
                       "not_counted": dict(oc.not_counted)})
