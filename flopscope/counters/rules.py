"""Rules on op-labelled terms: what another counter reports for one of our terms, and why it differs.

Every :class:`~flopscope.cost.Term` says *how* its work executes (its ``op`` label: ``Conv2d`` module call,
functional ``F.conv2d``, ``mm``, ``BatchNorm2d`` ...).  A counter sees some of those ops and counts them its own
way; its :class:`Table` maps ``op label -> Rule``:

* ``Rule.fn(term, owner)`` -- what the counter reports for that term, in MACs (``None``: cannot be predicted
  from the term, e.g. ptflops' MaxPool2d counts *input* elements of a strided pool);
* ``Rule.reason`` -- the reason code shown when that differs from our MACs (``thop: BatchNorm counted
  4/element``).

``owner`` is the module whose formula recorded the term (the deepest of its owner chain, see
:func:`owner_chain`), or ``None``; rules use it only for what a term cannot carry (bias, exact type).  Keys
``"<OwnerClass>/<local term name>"`` take precedence over op labels (``nn.MultiheadAttention``'s parts, which
ptflops counts with its own hook).  A rule built with ``context=True`` also gets a :class:`Context`: the owner
chain, the layer's other terms, and facts the counter's run observed about modules (passed explicitly, never
stashed on the modules).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Union

import torch.nn as nn

from ..cost import MAC_KINDS, Term


@dataclass(frozen=True)
class Rule:
    """What a counter reports for one term (MACs), and why that may differ from ours.

    ``alts``: other ways the same op label may execute that the counter sees differently (``a @ b`` instead of
    ``torch.matmul``), as ``Rule``s; one is taken only when the numbers then match exactly (every term of a layer
    under the same rule takes the same alternative).  An alternative whose ``fn`` returns ``None`` does not apply
    to that term.  ``context``: ``fn(term, owner, ctx)`` with the term's :class:`Context`.
    """

    fn: Callable[..., Optional[float]]
    reason: Union[str, Callable[[Term, object], str], None] = None
    alts: tuple = ()
    context: bool = False

    def __call__(self, t: Term, m=None, ctx=None) -> Optional[float]:
        if self.context:
            return self.fn(t, m, ctx if ctx is not None else Context())
        return self.fn(t, m)

    def why(self, t: Term, m=None) -> Optional[str]:
        return self.reason(t, m) if callable(self.reason) else self.reason


@dataclass(frozen=True)
class Context:
    """What a rule may look at beyond its term and owner: the term's owner chain (deepest first), every term of
    its YAML layer, and ``observed``: ``id(module) -> facts`` the counter's own run recorded (e.g. the input layout
    an ``nn.Linear`` saw)."""

    chain: tuple = ()
    terms: tuple = ()
    observed: dict = field(default_factory=dict)

    def sibling(self, t: Term, local: str, name: str) -> Optional[Term]:
        """The term recorded by the same owner as ``t`` (whose own local name is ``local``) named ``name``."""
        prefix = t.name[: len(t.name) - len(local)] if local and t.name.endswith(local) else ""
        return next((s for s in self.terms if s.name == prefix + name), None)

    def facts(self, module) -> Optional[dict]:
        return self.observed.get(id(module)) if module is not None else None


@dataclass(frozen=True)
class Table:
    """One counter's rules (one version of them): ``key`` (JSON ``rules``), ``label`` (column and reason-code
    prefix), ``rules`` (op label or ``Owner/local`` -> Rule) and ``default`` (the rule of any other term)."""

    key: str
    label: str
    rules: dict
    default: Callable[[Term], Rule]


TABLES: dict[str, Table] = {}  #: every counter's rule tables, by key


def table(key: str, label: str, rules: dict, default: Callable[[Term], Rule]) -> Table:
    """Register a rule table (done by each counter's file)."""
    t = Table(key, label, rules, default)
    TABLES[key] = t
    return t


def as_table(t) -> Table:
    return t if isinstance(t, Table) else TABLES[t]


def ours(t: Term) -> int:
    """Our MACs for a term (element-wise FLOPs are not MACs)."""
    return t.value if t.kind in MAC_KINDS else 0


def r(fn, reason=None, *alts, context: bool = False) -> Rule:
    return Rule(fn, reason, tuple(alts), context)


def fallback_term(t: Term) -> bool:
    """A MAC term of a module without a formula, counted by the fallback counter (``FlopCounterMode`` label, or
    an ``aten.*`` op of the op-level counter)."""
    return t.kind in MAC_KINDS and (t.op == "FlopCounterMode" or t.op.startswith("aten."))


def fallback_elementwise(t: Term) -> bool:
    """Element-wise work of a module without a formula (an ``aten.*`` op of the op-level counter): which module
    ran it (and so how a hook counter counts it) is not known to the rules."""
    return t.kind not in MAC_KINDS and t.op.startswith("aten.")


UNKNOWN = Rule(lambda t, m: None)  #: a rule that cannot predict (shown as such, never guessed)


# -- helpers the tables share ------------------------------------------------------------------------------
def exact(m, cls_name: str) -> bool:
    """Hook counters that look modules up by exact type: a subclass of ``nn.<cls_name>`` is not hooked.  An
    owner that is not an ``nn.<cls_name>`` at all (unknown) trusts the op label."""
    cls = getattr(nn, cls_name)
    return m is None or not isinstance(m, cls) or type(m) is cls


def not_hooked(counter: str, cls_name: str):
    return lambda t, m: f"{counter}: {type(m).__name__ if m is not None else cls_name} not hooked (exact-type lookup)"


def has_bias(m) -> bool:
    return m is not None and getattr(m, "bias", None) is not None


def affine(m, default: bool = True) -> bool:
    if m is None:
        return default
    return bool(getattr(m, "affine", getattr(m, "elementwise_affine", default)))


def same_size_pool(m) -> bool:
    """A pool whose output has as many elements as its input (stride 1, 'same' padding)."""
    if not isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        return False

    def pair(v):
        return tuple(v) if isinstance(v, (tuple, list)) else (v, v)

    k, s, p = pair(m.kernel_size), pair(m.stride or m.kernel_size), pair(m.padding)
    d = pair(getattr(m, "dilation", 1))
    return s == (1, 1) and all(2 * pi == di * (ki - 1) for ki, pi, di in zip(k, p, d))


def softmax_rows(t: Term, m=None) -> float:
    """3L-1 per row of an ``nn.Softmax`` term (``elems`` = rows, ``value`` = 4 x rows x L)."""
    rows = t.elems
    length = t.value / (4 * rows) if rows else 0
    return rows * (3 * length - 1)


def mha_dims(m):
    if m is None or m.kdim != m.embed_dim or m.vdim != m.embed_dim:
        return None
    return m.embed_dim


# -- applying a table ----------------------------------------------------------------------------------------
def rule_for(tab, t: Term, owner=None, local: str = "", chain=None) -> tuple[Rule, object]:
    """The rule for term ``t`` and the module it applies to.  ``chain``: the term's candidate owners
    ``[(module, rest of the name)]``, deepest first (see :func:`owner_chain`); scoped keys ``"<OwnerClass>/<rest>"``
    are tried on each, then the op label with the deepest owner."""
    tab = as_table(tab)
    if chain is None:
        chain = [(owner, local)] if owner is not None else []
    for mod, rest in chain:
        scoped = tab.rules.get(f"{type(mod).__name__}/{rest}")
        if scoped is not None:
            return scoped, mod
    owner = chain[0][0] if chain else None
    rule = tab.rules.get(t.op)
    return (rule if rule is not None else tab.default(t)), owner


def evaluate(tab, rule: Rule, t: Term, owner, ctx: Context | None = None) -> tuple[Optional[float], Optional[str]]:
    """(value, reason) of one rule (or alternative) on a term; ``(None, ...)`` when it cannot predict."""
    tab = as_table(tab)
    try:
        v = rule(t, owner, ctx)
    except Exception:  # noqa: BLE001 - a rule meeting an owner it does not understand cannot predict
        v = None
    if v is None:
        return None, f"{tab.label}: no rule predicts {t.op} here"
    reason = None
    if v != ours(t):
        reason = rule.why(t, owner) or f"{tab.label}: {t.op} counted differently"
    return v, reason


def predict(tab, t: Term, owner=None, local: str = "", chain=None, terms=(),
            observed=None) -> tuple[Optional[float], Optional[str]]:
    """(what the table's counter reports for term ``t`` in MACs or ``None`` if unpredictable, the reason code when
    that differs from our MACs) -- the primary rule, no alternatives.  ``terms``: the layer's terms."""
    rule, owner = rule_for(tab, t, owner, local, chain)
    return evaluate(tab, rule, t, owner, Context(tuple(chain or ()), tuple(terms), observed or {}))


def owner_chain(layer, name: str) -> list:
    """Candidate modules that recorded term ``name`` inside YAML layer module ``layer``: every submodule whose
    dotted path is a prefix of the name, deepest first, each with the rest of the name (``tr.0.ma.out_proj`` ->
    ``[(out_proj, ''), (ma, 'out_proj'), (tr.0, 'ma.out_proj'), ...]``)."""
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
