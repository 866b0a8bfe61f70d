"""Registries: YAML module names -> :class:`ModuleSpec`, and module classes -> cost formulas.

Both are filled by decorators placed next to the module they describe (``modules/*.py`` and
users' plugin files go through the same path)::

    @register("SE", channels=same_channel, description="Squeeze-and-Excitation channel attention")
    class SE(nn.Module): ...

    @formula(SE)
    def se_cost(m, t, x):
        ...

A name or class registered twice is an error that names both definitions -- the builder never
silently picks one of two classes with the same name.  Plugin files (:mod:`flopscope.plugins`)
register inside :func:`plugin_scope`: there the user's code wins, as in YOLOv5 where the later
definition in ``common.py`` is what gets built -- a name already taken by the zoo (or by another
plugin) is replaced for as long as the plugin is loaded, the replaced class stays reachable under a
qualified name (``flopscope.<Name>``, or ``<stem>.<Name>`` for another plugin's class) and the
replacement is recorded, naming both definitions.  Unloading the plugin restores it.
"""
from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass, field
from typing import Callable

from .channels import ChannelRule  # noqa: F401  (annotations)
from .errors import FlopscopeError, suggestion


@dataclass
class ModuleSpec:
    name: str
    cls: type
    channels: "ChannelRule"
    description: str = ""
    origin: str = "flopscope"  # 'flopscope', 'torch' or a plugin file path
    inferred: bool = False  # channel rule guessed for a plugin class without one
    rule_source: str = ""  # where the channel rule came from ('' = the module's own registration)
    replaces: "ModuleSpec | None" = None  # the definition this plugin class replaces under the same name
    replaced_as: str = ""  # the qualified name the replaced definition stays reachable under

    @property
    def signature(self) -> str:
        try:
            sig = inspect.signature(self.cls.__init__)
        except (TypeError, ValueError):
            return "(...)"
        params = [p for p in sig.parameters.values() if p.name != "self"]
        return "(" + ", ".join(str(p) for p in params) + ")"

    @property
    def where(self) -> str:
        return _where(self.cls)


def _where(obj) -> str:
    if obj in SOURCES:
        return SOURCES[obj]
    try:
        file = inspect.getsourcefile(obj) or "?"
        line = inspect.getsourcelines(obj)[1]
        return f"{file}:{line}"
    except (OSError, TypeError):
        return getattr(obj, "__module__", "?")


class RegistryError(FlopscopeError):
    pass


MODULES: dict[str, ModuleSpec] = {}
FORMULAS: dict[type, Callable] = {}
#: ``file:line`` of classes whose definition inspect cannot place reliably (plugin files that define
#: the same class name twice); filled by the plugin loader, read by ``where``.
SOURCES: dict[type, str] = {}


@dataclass
class PluginScope:
    """Registration context of one plugin file (see :func:`plugin_scope`)."""

    origin: str  # the plugin file path
    qualifier: str  # prefix for names that are already taken, e.g. 'common'
    registered: list = field(default_factory=list)  # ModuleSpec registered by this plugin
    shadowed: list = field(default_factory=list)  # (name, old ModuleSpec, qualified name of old, cls) -- replaced
    redefined: list = field(default_factory=list)  # (name, old cls, new cls) -- same file, later wins
    formulas: list = field(default_factory=list)  # classes given a formula by this plugin


_SCOPES: list[PluginScope] = []


@contextlib.contextmanager
def plugin_scope(origin: str, qualifier: str):
    """Registrations made inside belong to the plugin file ``origin``; a name registered by someone
    else is replaced (the old definition stays reachable under a qualified name)."""
    load_zoo()  # before the scope opens: the zoo registers under its own names
    scope = PluginScope(origin, qualifier)
    _SCOPES.append(scope)
    try:
        yield scope
    finally:
        _SCOPES.pop()


def qualified_name(qualifier: str, name: str, origin: str) -> str:
    """``qualifier.name``, or ``qualifier_2.name`` ... when another origin already holds it."""
    k = 1
    while True:
        q = f"{qualifier}{'' if k == 1 else f'_{k}'}.{name}"
        if q not in MODULES or MODULES[q].origin == origin:
            return q
        k += 1


def owner_qualifier(spec: ModuleSpec) -> str:
    """The prefix a replaced definition is reachable under: 'flopscope' for the zoo and torch
    leaves, the file stem for another plugin's class."""
    if spec.origin in ("flopscope", "torch"):
        return "flopscope"
    import re
    from pathlib import Path

    stem = re.sub(r"\W", "_", Path(spec.origin).stem) or "plugin"
    return "_" + stem if stem[0].isdigit() else stem


def remove_origin(origin: str) -> None:
    """Forget every module registered by the plugin file ``origin`` (and its classes' formulas);
    definitions it replaced are restored under their own names."""
    for name in [n for n, s in MODULES.items() if s.origin == origin]:
        spec = MODULES.pop(name)
        FORMULAS.pop(spec.cls, None)
        SOURCES.pop(spec.cls, None)
        if spec.replaces is not None and name not in MODULES:
            MODULES[name] = spec.replaces
            alias = MODULES.get(spec.replaced_as)
            if alias is not None and alias.cls is spec.replaces.cls and alias.origin == spec.replaces.origin:
                del MODULES[spec.replaced_as]


def register(name: str | None = None, *, channels: "ChannelRule", description: str = "", origin: str | None = None,
             aliases: tuple[str, ...] = ()):
    """Class decorator: make ``cls`` available to YAML configs under ``name`` (default: class name)."""

    def deco(cls):
        add_module(name or cls.__name__, cls, channels, description, origin=origin)
        for alias in aliases:
            add_module(alias, cls, channels, description, origin=origin)
        return cls

    return deco


def add_module(name: str, cls: type, channels: "ChannelRule", description: str = "", *, origin: str | None = None,
               inferred: bool = False, rule_source: str = "") -> ModuleSpec:
    if _SCOPES:
        return _add_in_scope(_SCOPES[-1], name, cls, channels, description, inferred, rule_source or "register()")
    if name in MODULES:
        old = MODULES[name]
        if old.cls is cls:
            return old
        raise RegistryError(
            f"module name {name!r} is defined twice: {old.where} and {_where(cls)} "
            f"(the later definition would silently replace the earlier one)")
    spec = ModuleSpec(name, cls, channels, description or _first_doc_line(cls),
                      origin or ("torch" if cls.__module__.startswith("torch.") else "flopscope"), inferred)
    MODULES[name] = spec
    return spec


def _add_in_scope(scope: PluginScope, name, cls, channels, description, inferred, rule_source) -> ModuleSpec:
    old = MODULES.get(name)
    if old is not None and old.cls is cls:
        return old
    target = name
    replaces, alias = None, ""
    if old is not None and old.origin != scope.origin:
        # a built-in (or another plugin's) name: the user's code wins, the old one stays reachable
        replaces = old
        alias = qualified_name(owner_qualifier(old), name, old.origin)
        if alias not in MODULES:
            MODULES[alias] = old
        scope.shadowed = [x for x in scope.shadowed if x[0] != name] + [(name, old, alias, cls)]
    prev = MODULES.get(target) if replaces is None else None
    if prev is not None:
        if prev.cls is cls:
            return prev
        # the same file registers the name twice: Python keeps the later class, so do we (reported)
        scope.redefined.append((target, prev.cls, cls))
        scope.registered = [x for x in scope.registered if x is not prev]
        replaces, alias = prev.replaces, prev.replaced_as
    spec = ModuleSpec(target, cls, channels, description or _first_doc_line(cls), scope.origin, inferred,
                      rule_source=rule_source, replaces=replaces, replaced_as=alias)
    MODULES[target] = spec
    scope.registered.append(spec)
    return spec


def formula(*classes: type):
    """Function decorator: the cost formula of module class(es).

    A formula is ``fn(module, tracer, *input_shapes) -> output_shape``; it records its terms on
    the tracer (``tracer.mac(...)``, ``tracer.ew(...)``) and runs sub-modules with
    ``tracer(child, shape, name)``.
    """

    def deco(fn):
        for cls in classes:
            if cls in FORMULAS and FORMULAS[cls] is not fn:
                raise RegistryError(f"a cost formula for {cls.__qualname__} is defined twice: "
                                    f"{_where(FORMULAS[cls])} and {_where(fn)}")
            FORMULAS[cls] = fn
            if _SCOPES:
                _SCOPES[-1].formulas.append(cls)
        return fn

    return deco


def lookup(name: str) -> ModuleSpec:
    load_zoo()
    if name in MODULES:
        return MODULES[name]
    raise RegistryError(f"unknown module {name!r}{suggestion(name, MODULES)}")


def formula_for(cls: type):
    """The formula registered for exactly this class (subclasses that may override forward get none)."""
    return FORMULAS.get(cls)


def _first_doc_line(cls) -> str:
    doc = inspect.getdoc(cls) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


_zoo_loaded = False


def load_zoo() -> None:
    """Import the bundled module zoo (idempotent)."""
    global _zoo_loaded
    if not _zoo_loaded:
        _zoo_loaded = True
        from . import leaf_formulas  # noqa: F401  (torch leaf modules)
        from . import modules  # noqa: F401  (the zoo registers itself on import)

