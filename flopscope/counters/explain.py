"""Explaining one layer x one counter: apply the counter's rules to our terms and compare with what it measured."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from .rules import Context, as_table, evaluate, ours, rule_for

THRESHOLD_PCT = 0.5  # a Δ beyond this (relative to our layer MACs) gets its reason codes shown
TOLERANCE = 0.5  # measured == predicted when within half a MAC


@dataclass
class Cell:
    """One layer x one counter: what it measured, what the rules predict, and why it differs from ours."""

    measured: float
    ours: int
    predicted: float | None
    reasons: list[tuple[str, float]]
    unpredictable: list[str] = field(default_factory=list)

    @property
    def delta(self) -> float:
        return self.measured - self.ours

    @property
    def delta_pct(self) -> float | None:
        if self.ours == 0:
            return None if abs(self.delta) < TOLERANCE else float("inf") if self.delta > 0 else float("-inf")
        return 100.0 * self.delta / self.ours

    @property
    def explained(self) -> bool:
        return self.predicted is not None and abs(self.measured - self.predicted) <= TOLERANCE

    @property
    def residual(self) -> float | None:
        return None if self.predicted is None else self.measured - self.predicted

    @property
    def significant(self) -> bool:
        p = self.delta_pct
        return p is not None and abs(p) > THRESHOLD_PCT

    def to_dict(self) -> dict:
        p = self.delta_pct
        return {"measured": self.measured, "predicted": self.predicted, "delta": self.delta,
                "delta_pct": None if p is None or abs(p) == float("inf") else p,
                "explained": self.explained, "significant": self.significant,
                "reasons": [{"code": c, "macs": v} for c, v in self.reasons],
                "unexplained": None if self.explained else (self.residual if self.residual is not None else self.delta),
                "unpredictable": list(self.unpredictable)}


MAX_TRIALS = 200_000  # alternative assignments tried per cell, fewest alternatives first


def explain(counter, terms, owners, measured: float, hidden: dict | None = None, observed: dict | None = None) -> Cell:
    """Apply ``counter``'s rules to a layer's terms and compare with what it measured.

    ``counter``: its rule table (:class:`~flopscope.counters.rules.Table` or its key).  ``owners``: each term's
    owner chain (see :class:`~flopscope.counters.owners.OwnerTracer`).  ``observed``: ``id(module) -> facts``
    the counter's run recorded, for its rules.  ``hidden``: ``id(module) -> reason``
    for modules the counter never saw run (fvcore's JIT trace drops work whose output is unused); their
    terms count 0.  When the primary rules do not reproduce the measurement, the rules' alternatives
    (``a @ b`` instead of ``torch.matmul`` ...) are tried, together for the terms of one rule that have
    the same name in the same kind of owner (repeated blocks run the same code), fewest alternatives
    first; one assignment is kept only if the numbers then match exactly.
    """
    counter = as_table(counter)
    total_ours = sum(ours(t) for t in terms)
    fixed: list[tuple] = []  # (term, value, reason) of terms in hidden modules
    groups: dict[tuple, list] = {}  # (rule, owner class, name in owner) -> [rule, [(term, owner)]]
    layer_terms = tuple(terms)
    for t, chain in zip(terms, owners):
        gone = next((hidden[id(mod)] for mod, _ in chain if hidden and id(mod) in hidden), None)
        if gone is not None:
            fixed.append((t, 0.0, gone if ours(t) else None))
            continue
        rule, owner = rule_for(counter, t, chain=chain)
        key = (id(rule), type(chain[0][0]).__name__ if chain else "", chain[0][1] if chain else t.name)
        groups.setdefault(key, [rule, []])[1].append((t, owner, Context(tuple(chain), layer_terms, observed or {})))

    # every group's options: option 0 = the primary rule, k = its k-th alternative (where it applies)
    options: list[list[list[tuple]]] = []
    for rule, members in groups.values():
        primary = [(t, *evaluate(counter, rule, t, owner, ctx)) for t, owner, ctx in members]
        opts = [primary]
        for alt in rule.alts:
            vals = []
            for (t, owner, ctx), p in zip(members, primary):
                v, why = evaluate(counter, alt, t, owner, ctx)
                vals.append(p if v is None else (t, v, why))
            opts.append(vals)
        options.append(opts)

    def total(vals):
        return None if any(v is None for _, v, _ in vals) else sum(v for _, v, _ in vals)

    choice = [0] * len(options)
    base = total(fixed + [x for opts in options for x in opts[0]])
    if base is not None and abs(measured - base) > TOLERANCE:
        deltas = []  # (group, option, Δ to the primary) that change the prediction
        for g, opts in enumerate(options):
            t0 = total(opts[0])
            for k in range(1, len(opts)):
                tk = total(opts[k])
                if t0 is not None and tk is not None and tk != t0:
                    deltas.append((g, k, tk - t0))
        found = _subset_match(deltas, measured - base)
        if found is not None:
            for g, k in found:
                choice[g] = k
    best = fixed + [x for opts, k in zip(options, choice) for x in opts[k]]
    reasons: dict[str, float] = {}
    for t, v, why in best:
        if v is not None and v != ours(t):
            reasons[why] = reasons.get(why, 0) + (v - ours(t))
    unpred = [f"{t.name or '(layer)'}: {why}" for t, v, why in best if v is None]
    ordered = sorted(((k, v) for k, v in reasons.items() if v), key=lambda kv: -abs(kv[1]))
    return Cell(float(measured), total_ours, total(best), ordered, unpred)


def _subset_match(deltas: list[tuple], target: float):
    """The fewest (group, option) switches, at most one per group, whose Δs sum to ``target``."""
    by_group: dict[int, list] = {}
    for g, k, d in deltas:
        by_group.setdefault(g, []).append((k, d))
    gids = list(by_group)
    trials = 0
    for r in range(1, len(gids) + 1):
        for subset in itertools.combinations(gids, r):
            for picks in itertools.product(*(by_group[g] for g in subset)):
                trials += 1
                if trials > MAX_TRIALS:
                    return None
                if abs(sum(d for _, d in picks) - target) <= TOLERANCE:
                    return [(g, k) for g, (k, _) in zip(subset, picks)]
    return None
