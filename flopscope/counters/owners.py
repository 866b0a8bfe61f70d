"""Our terms, each with the modules whose formulas were running when it was recorded (its owner chain): the
owners the counter rules look at."""
from __future__ import annotations

from ..tracer import Tracer


class OwnerTracer(Tracer):
    """A :class:`~flopscope.tracer.Tracer` that remembers, for every term, the chain of modules whose
    formulas were running when it was recorded (innermost first), each with the term's name relative to
    that module -- the owners the counter rules look at (a term's name need not be a module path)."""

    def __init__(self):
        super().__init__()
        self._calls: list[tuple[object, str]] = []  # (module, its name prefix) of the calls in progress
        self.chains: list[list] = []

    def __call__(self, module, *inputs, name: str = ""):
        if inputs and isinstance(inputs[-1], str) and not name:
            *inputs, name = inputs
        self._calls.append((module, ".".join([*self._prefix, name] if name else self._prefix)))
        try:
            return super().__call__(module, *inputs, name=name)
        finally:
            self._sync()
            self._calls.pop()

    def mac(self, *args, **kwargs) -> None:
        super().mac(*args, **kwargs)
        self._sync()

    def ew(self, *args, **kwargs) -> None:
        super().ew(*args, **kwargs)
        self._sync()

    def _sync(self) -> None:
        for t in self.cost.terms[len(self.chains):]:
            chain = []
            for mod, prefix in reversed(self._calls):
                if not prefix:
                    local = t.name
                elif t.name == prefix:
                    local = ""
                elif t.name.startswith(prefix + "."):
                    local = t.name[len(prefix) + 1:]
                else:
                    local = t.name
                chain.append((mod, local))
            self.chains.append(chain)


class OwnerCounter:
    """A counter for :func:`flopscope.engine.count_layers`: the formulas, traced with owners; the owner chains
    of each row's terms are kept in :attr:`chains` (one list per row, in row order)."""

    name = "formula (owners)"

    def __init__(self):
        self.chains: list[list] = []

    def count(self, module, xin):
        t = OwnerTracer()
        out = t(module, xin)
        self.chains.append(t.chains)
        return out, t.cost, t.notes, True


def trace_layers(model, shape) -> list[tuple[list, list]]:
    """(terms, owner chains) of every YAML layer for an input of ``shape`` (B, C, H, W); rows routed by
    ``count_layers`` (the one place that reads ``from``)."""
    from ..engine import count_layers

    counter = OwnerCounter()
    layers = count_layers(model, shape, counter=counter)
    return [(list(lc.cost.terms), chains) for lc, chains in zip(layers, counter.chains)]
