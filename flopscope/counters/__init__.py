"""The counters ``flopscope check`` runs beside ours: one object per counter, one file each, registered by
:func:`counter` (like formulas by ``@formula``).

A :class:`Counter` holds its label, the package it comes from and how its version is read, how it runs
(``run(model, x, probe=None) -> CounterRun``: per-YAML-layer and total MACs of one real forward), its rule
table(s) (:mod:`flopscope.counters.rules`; a counter whose rules depend on its installed version, as thop's do,
picks one with ``select``), the ``--counters`` names that select it, and whether it runs by default.

Adding a counter::

    from flopscope.counters import CounterRun, counter
    from flopscope.counters.rules import r, table

    MINE = table("mine", "mine", {"BatchNorm2d": r(lambda t, m: 4 * t.elems, "mine: BN 4/element")},
                 lambda t: r(lambda t, m: t.value if t.kind != "elementwise" else 0))

    @counter("mine", label="mine", package="mine", tables=(MINE,))
    def run(model, x, probe=None) -> CounterRun: ...
"""
from __future__ import annotations

import contextlib
import importlib
import io
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from typing import Callable

from ..errors import FlopscopeError, suggestion
from .rules import Table


@dataclass
class CounterRun:
    """What one counter measured: MACs per YAML layer, in total, notes, and ``observed``: facts about modules
    (``module path -> dict``) that its rules read (e.g. the input layout an ``nn.Linear`` saw)."""

    per_layer: list[float]
    total: float
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    observed: dict = field(default_factory=dict)


class CounterFailed(Exception):
    """A counter ran but gave no result (its own message)."""


@dataclass
class Counter:
    name: str
    label: str
    package: str
    run: Callable
    tables: tuple
    on_by_default: bool = True
    selects: tuple = ()
    version_of: Callable[[], str | None] | None = None
    select: Callable[[str | None], Table] | None = None
    doc: str = ""

    def version(self) -> str | None:
        if self.version_of is not None:
            return self.version_of()
        try:
            return metadata.version(self.package)
        except metadata.PackageNotFoundError:
            return None

    def table(self, version: str | None = None) -> Table:
        """The rule table for the installed (or given) version."""
        return self.select(version) if self.select is not None else self.tables[0]


COUNTERS: dict[str, Counter] = {}


def counter(name: str, *, label: str, package: str, tables: tuple, on_by_default: bool = True, selects=(),
            version=None, select=None) -> Callable:
    """Register ``run`` as counter ``name``; ``selects``: the ``--counters`` names that choose it (its own name
    always does; a name shared by several counters chooses them all, as ``ptflops`` chooses both backends)."""

    def deco(run):
        if name in COUNTERS:
            raise FlopscopeError(f"counter {name!r} is registered twice")
        COUNTERS[name] = Counter(name, label, package, run, tuple(tables), on_by_default,
                                 tuple(dict.fromkeys((name, *selects))), version, select,
                                 (run.__doc__ or "").strip())
        return run

    return deco


def names() -> tuple[str, ...]:
    return tuple(COUNTERS)


def default_names() -> list[str]:
    return [n for n, c in COUNTERS.items() if c.on_by_default]


def parse_counters(spec: str | list | None) -> list[str]:
    """'fvcore,thop,ptflops,fcm' -> counter names (registry order); 'all' = every counter; a shared name
    (``ptflops``) selects every counter that has it."""
    if spec is None:
        return default_names()
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    aliases: dict[str, list[str]] = {"all": list(COUNTERS)}
    for c in COUNTERS.values():
        for s in c.selects:
            aliases.setdefault(s.lower(), []).append(c.name)
            aliases.setdefault(s.lower().replace("-", "_"), []).append(c.name)
    choose = ", ".join(COUNTERS)
    out: list[str] = []
    for raw in items:
        key = raw.strip().lower()
        if not key:
            continue
        if key not in aliases:
            raise FlopscopeError(f"--counters: unknown counter {raw.strip()!r}{suggestion(key, list(aliases))} "
                                 f"(choose from {choose})")
        out.extend(c for c in aliases[key] if c not in out)
    if not out:
        raise FlopscopeError(f"--counters: name at least one counter ({choose})")
    return [c for c in COUNTERS if c in out]


# -- what the adapters share ----------------------------------------------------------------------------------
@contextlib.contextmanager
def quiet():
    """Counters print (ptflops tracebacks, thop info) and warn (JIT tracer); keep the terminal clean."""
    out, err = io.StringIO(), io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        warnings.simplefilter("ignore")
        yield out, err


def layers(model) -> list:
    return list(model.model)


def boundary_hooks(model, snapshot: Callable[[], object]):
    """Snapshots of a running counter at every YAML layer's entry and after the whole forward."""
    marks: list = []
    handles = [m.register_forward_pre_hook(lambda mod, args: marks.append(snapshot())) for m in layers(model)]
    handles.append(model.register_forward_hook(lambda mod, args, out: marks.append(snapshot())))
    return marks, handles


def between_marks(marks: list, n: int) -> list[float]:
    return [float(marks[i + 1] - marks[i]) if i + 1 < len(marks) else 0.0 for i in range(n)]


def last_error(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln or "Exception" in ln:
            return ln[:300]
    return (lines[-1] if lines else "no result")[:300]


# the counters, in column order (each file registers itself)
for _mod in ("fvcore", "thop", "ptflops", "ptflops_aten", "fcm", "opcount"):
    try:
        importlib.import_module(f"{__name__}.{_mod}")
    except ModuleNotFoundError as _e:  # a counter file that is not there (yet) is simply absent
        if _e.name != f"{__name__}.{_mod}":
            raise
