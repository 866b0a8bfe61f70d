"""Shape propagation with cost formulas: run a module's formula instead of its forward.

A :class:`Tracer` is called like a module, but with shapes (tuples of ints, or lists of them for
multi-input modules).  It looks up the formula registered for ``type(module)``, which records
terms and returns the output shape.  Modules without a formula are counted by the op-level
counter (:mod:`flopscope.opcount`) on a meta-device forward of that module alone (else on CPU within
a size guard), and the layer says so ("op-level (Cls)"); an op without a rule is listed as "not
counted", never silently 0.
"""
from __future__ import annotations

from math import prod

from .cost import ELEMENTWISE_COST, Cost
from .errors import FlopscopeError
from .registry import formula_for
from .shapes import Shape, ShapeError, cat_channels, check_channels, conv_out  # noqa: F401  (re-exported here)


class Note(str):
    """How part of a layer was counted besides formulas: the text shown in ``counted_by`` (a ``str``)
    with a ``kind`` that code tests instead of parsing the text: :data:`HAND_RULE`, :data:`OP_LEVEL`,
    :data:`NOT_COUNTED`, :data:`BUILT_ON_CPU` or ``"other"``."""

    kind: str
    data: object  # NOT_COUNTED: Counter {aten op name: calls}

    def __new__(cls, text: str, kind: str = "other", data=None):
        note = super().__new__(cls, text)
        note.kind = kind
        note.data = data
        return note

    @property
    def hand_rule(self) -> bool:
        return self.kind == HAND_RULE


HAND_RULE, OP_LEVEL, NOT_COUNTED, BUILT_ON_CPU = "hand rule", "op-level", "not counted", "built on CPU"
BUILT_ON_CPU_NOTE = Note("built on CPU (its constructor cannot run on the meta device)", BUILT_ON_CPU)


class Tracer:
    """Collects the terms of one top-level call (one YAML layer)."""

    def __init__(self, allow_fallback: bool = True):
        self.cost = Cost()
        self.notes: list[Note] = []  # how parts were counted, besides formulas
        self._prefix: list[str] = []
        self.allow_fallback = allow_fallback

    # -- recording -------------------------------------------------------------------------
    def _name(self, name: str) -> str:
        return ".".join([*self._prefix, name] if name else self._prefix)

    def mac(self, name: str, kind: str, op: str, value: int, elems: int = 0, rule: str | None = None) -> None:
        """Record MACs of ``kind`` ('conv', 'linear' or 'matmul')."""
        self.cost.add(self._name(name), kind, op, value, elems, rule)
        if rule:
            self.note(f"hand rule: {rule}", HAND_RULE)

    def ew(self, name: str, op: str, elems: int, per_elem: float | None = None, rule: str | None = None) -> None:
        """Record element-wise FLOPs: ``elems`` elements at ``ELEMENTWISE_COST[op]`` each."""
        c = ELEMENTWISE_COST[op] if per_elem is None else per_elem
        self.cost.add(self._name(name), "elementwise", op, round(c * elems), elems, rule)
        if rule:
            self.note(f"hand rule: {rule}", HAND_RULE)

    def note(self, text: str, kind: str = "other") -> None:
        if text not in self.notes:
            self.notes.append(text if isinstance(text, Note) else Note(text, kind))

    # -- running -----------------------------------------------------------------------------
    def __call__(self, module, *inputs, name: str = ""):
        if isinstance(inputs[-1], str) and not name:  # t(child, x, "name")
            *inputs, name = inputs
        fn = formula_for(type(module))
        if name:
            self._prefix.append(name)
        try:
            if fn is None:
                return self._fallback(module, inputs)
            return fn(module, self, *inputs)
        finally:
            if name:
                self._prefix.pop()

    def _fallback(self, module, inputs):
        if not self.allow_fallback:
            raise FlopscopeError(f"no cost formula for {type(module).__qualname__}")
        from .opcount import count_ops, not_counted_note

        res = count_ops(module, inputs)
        self.note(f"op-level ({type(module).__name__}{', on CPU' if res.device == 'cpu' else ''})", OP_LEVEL)
        for term in res.terms:
            self.cost.add(self._name(term.name), term.kind, term.op, term.value, term.elems)
        missing = not_counted_note(res.not_counted)
        if missing:
            self.note(Note(missing, NOT_COUNTED, res.not_counted))
        return res.out


numel = prod
