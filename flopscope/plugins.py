"""User plugin files (``--plugin path.py``): their modules go through the same registry as the zoo's.

A plugin is a Python file with ``nn.Module`` classes written the way YOLOv5 users write them
(pasted from a paper's repo or a blog).  Loading one:

* **Isolated import.**  The file is executed as a fresh module with a unique name
  (``flopscope_plugin_<stem>_<hash>``), never as ``common`` or ``models.common``: it cannot replace
  anything in ``sys.modules`` or in flopscope's zoo.
* **YOLOv5 names resolve.**  Before the file runs, its globals already hold ``torch``, ``nn``,
  ``F`` (``torch.nn.functional``), ``math``, ``np`` (when numpy is installed) and every zoo block
  (``Conv``, ``C3``, ``Bottleneck``, ``autopad``, ``make_divisible`` ...), so a pasted snippet that
  uses ``Conv(...)`` without importing it works.  ``from models.common import Conv`` (also
  ``models.yolo`` / ``models.experimental`` / ``models``, and relative ``from .common import``)
  is served by a shim holding the same zoo names -- only for the plugin's own imports, and ahead
  of any real ``models`` package on ``sys.path``.  Other imports are ordinary imports.
* **Inside a project, imports work as there.**  When the file lies in a project (the nearest
  directory above it holding a ``models/`` and/or ``utils/`` package -- YOLOv5's ROOT), that root is
  on ``sys.path`` while the file loads, and ``models.common`` etc. resolve to the project's own files
  where it has them, to flopscope's zoo only where it does not (:mod:`flopscope.fork`); ``sys.path``
  and ``sys.modules`` are restored afterwards.
* **Channel rules, never guessed.**  A class is registered for YAML use under its class name.  Its
  channel rule comes, in this order, from ``@flopscope.register(channels=...)`` or a class
  attribute ``flopscope_channels = "conv" | "conv+n" | "same" | "none" | "concat" | "detect"`` (or a
  :class:`~flopscope.channels.ChannelRule`, or a function ``rule(row) -> (args, c2, n)``); the
  project's own ``parse_model`` (``models/yolo.py``, read statically: the branch that names the
  class, or its final ``else``); ``--channels NAME=RULE``; and only then the constructor signature
  where it is unambiguous -- ``(c1, c2, n, ...)`` -> ``conv+n``, ``(c1, c2, ...)`` -> ``conv`` (an
  input and an output channel name), ``(c1, <non-channel>...)`` -> ``same``, no parameters ->
  ``none``.  Otherwise a YAML row using the class fails with one line naming the class, its
  signature and how to give the rule (``--channels MLCA=same``).  Every spec records where its
  rule came from (``rule_source``; the ``channel_rule`` of each layer in the JSON).
* **Cost.**  ``@flopscope.formula(Cls)`` (or a ``flopscope_formula`` attribute) gives an exact
  formula; classes without one are counted by FlopCounterMode on a forward of that layer, and
  the layer's ``counted_by`` says so (marked ``*`` in tables).
* **The user's code wins.**  A class whose name is already registered (``SEAttention``, ``C3`` ...)
  replaces it while the plugin is loaded, as in YOLOv5 where the later definition is what gets
  built; one warning names both definitions, reports note it, and the built-in stays reachable as
  ``flopscope.<Name>``.  A file that defines the same class name twice (Python keeps the last;
  every class in the file that uses the name gets that one -- the trap of a ``Bottleneck`` pasted
  into ``common.py``) is warned about too.  Warnings are summarised, one line per kind
  (``--verbose`` prints each).

Errors while executing the file are reported as ``file:line: message`` (exit 2).
"""
from __future__ import annotations

import ast
import builtins
import hashlib
import inspect
import os
import re
import sys
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path

import torch.nn as nn

from . import channels as ch
from .errors import FlopscopeError
from .registry import FORMULAS, MODULES, SOURCES, ModuleSpec, PluginScope, add_module, formula, formula_for, \
    load_zoo, plugin_scope, remove_origin
from . import fork as forkmod


class PluginError(FlopscopeError):
    """A plugin file that cannot be loaded (message starts with ``file:line:``)."""


CHANNEL_RULES = {
    "conv": ch.conv_like, "conv_like": ch.conv_like,
    "conv+n": ch.conv_like_repeat, "conv_like_repeat": ch.conv_like_repeat, "repeat": ch.conv_like_repeat,
    "same": ch.same_channel, "same_channel": ch.same_channel,
    "none": ch.passthrough, "passthrough": ch.passthrough,
    "concat": ch.concat, "detect": ch.detect,
}

SHIM_MODULES = ("models", "models.common", "models.yolo", "models.experimental")

_CHANNEL_NAME = re.compile(
    r"^(c\d*|c_?(in|out)|chs?|ch_?(in|out)|channels?|num_?channels|n_?channels|(in|out)_?(ch|chs|channels|c|planes|dim|"
    r"features|chans)|inp|oup|inc|outc|inplanes|outplanes|planes|dim|dims|dim_?(in|out)|embed_?dim|nin|nout|filters|"
    r"c1_?|c2_?)$", re.IGNORECASE)
_REPEAT_NAME = re.compile(r"^(n|num|number|repeats?|depth|num_?blocks?|n_?blocks?)$", re.IGNORECASE)


@dataclass
class Plugin:
    """A loaded plugin file."""

    path: str  # as given (messages use it)
    module_name: str  # unique name in sys.modules
    qualifier: str  # prefix for names that shadow registered ones
    module: types.ModuleType
    modules: list[ModuleSpec] = field(default_factory=list)  # what YAML rows can now name
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    formulas: list[type] = field(default_factory=list)
    digest: str = ""
    root: Path | None = None  # the project the file lies in (see flopscope.fork.project_root)
    channels: dict = field(default_factory=dict)  # the --channels overrides it was loaded with
    kinds: list[str] = field(default_factory=list)  # the kind of each warning (summaries group by kind)

    @property
    def names(self) -> dict[str, str]:
        """Class name -> the YAML name it is registered under."""
        return {s.cls.__name__: s.name for s in self.modules}

    @property
    def no_formula(self) -> list[str]:
        """YAML names of this plugin's modules that are counted by FlopCounterMode."""
        return [s.name for s in self.modules if formula_for(s.cls) is None]

    def spec(self, class_name: str) -> ModuleSpec:
        for s in self.modules:
            if s.cls.__name__ == class_name:
                return s
        raise KeyError(class_name)

    def unload(self) -> None:
        """Remove this plugin's registrations (tests; reloading a changed file)."""
        remove_origin(self.path)
        for cls in self.formulas:
            FORMULAS.pop(cls, None)
        for s in self.modules:
            SOURCES.pop(s.cls, None)
        sys.modules.pop(self.module_name, None)
        _LOADED.pop(_key(self.path), None)


_LOADED: dict[str, Plugin] = {}


def _key(path: str) -> str:
    return str(Path(path).resolve())


#: ``--channels NAME=RULE`` of this run (set by the CLI; ``load_plugin(channels=...)`` for the API)
CHANNEL_OVERRIDES: dict[str, str] = {}


def parse_channels(items: list[str]) -> dict[str, str]:
    """``['MLCA=same', 'X=conv']`` -> ``{'MLCA': 'same', 'X': 'conv'}``; a bad item is a one-line error."""
    from .errors import suggestion

    out = {}
    for item in items:
        name, sep, rule = (item or "").partition("=")
        name, rule = name.strip(), rule.strip()
        if not sep or not name or not rule:
            raise PluginError(f"--channels {item!r}: expected NAME=RULE, e.g. --channels MLCA=same")
        if rule not in CHANNEL_RULES:
            raise PluginError(f"--channels {item}: unknown rule {rule!r}{suggestion(rule, CHANNEL_RULES)} "
                              f"(rules: {', '.join(_RULE_HELP)})")
        out[name] = rule
    return out


_RULE_HELP = ("conv", "conv+n", "same", "none", "concat", "detect")


def check_channel_names(overrides: dict, plugins: list[Plugin]) -> None:
    """Every ``--channels NAME`` must name a plugin class."""
    from .errors import suggestion

    known = {c for p in plugins for c in [*p.names, *p.names.values()]}
    for name in overrides:
        if name not in known:
            where = "no plugin is loaded (--plugin FILE)" if not plugins else "no plugin class has that name"
            raise PluginError(f"--channels {name}={overrides[name]}: {where}{suggestion(name, known)}")


def load_plugins(paths: list[str], stream=None, verbose: bool = False,
                 channels: dict[str, str] | None = None) -> list[Plugin]:
    """Load plugin files in order; warnings and notes go to ``stream`` (stderr), one line per kind
    (``verbose``: every warning)."""
    stream = sys.stderr if stream is None else stream
    out = []
    for p in paths:
        plugin = load_plugin(p, channels=channels)
        for w in (plugin.warnings if verbose else summarise(plugin)):
            stream.write(f"flopscope: warning: {w}\n")
        for n in plugin.notes:
            stream.write(f"flopscope: note: {n}\n")
        out.append(plugin)
    return out


def summarise(plugin: Plugin) -> list[str]:
    """One line per kind of warning: the warning itself when it is the only one of its kind."""
    groups: dict[str, list[str]] = {}
    for kind, w in zip(plugin.kinds, plugin.warnings):
        groups.setdefault(kind, []).append(w)
    out = []
    for kind, ws in groups.items():
        if len(ws) == 1:
            out.append(ws[0])
            continue
        label = _KIND_LABEL.get(kind, kind)
        names = [_subject(w) for w in ws]
        shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        out.append(f"{plugin.path}: {len(ws)} {label}: {shown} (--verbose prints each, with both definitions)")
    return out


_KIND_LABEL = {
    "replaces": "classes replace the registered module of the same name for this run",
    "twice": "class names are defined more than once (Python keeps the last)",
    "zoo-shadow": "classes shadow flopscope's class of the same name inside this file",
    "registered-twice": "YAML names are registered twice (the later one is used)",
    "inferred": "channel rules taken from constructor signatures",
    "no-rule": "classes have no channel rule",
    "ignored": "--channels options are ignored",
}


def _subject(w: str) -> str:
    m = re.search(r"(?:class|YAML name|--channels) '?([\w.]+)'?", w)
    return m.group(1) if m else w[:40]


def load_plugin(path: str | os.PathLike, channels: dict[str, str] | None = None) -> Plugin:
    """Execute a plugin file and register its ``nn.Module`` classes (idempotent per file content
    and ``channels`` overrides; default: :data:`CHANNEL_OVERRIDES`)."""
    channels = dict(CHANNEL_OVERRIDES if channels is None else channels)
    path = os.path.normpath(str(path)) if str(path) else ""
    if not path:
        raise PluginError("--plugin needs a Python file")
    p = Path(path)
    if not p.is_file():
        raise PluginError(f"{path}: no such plugin file" if not p.exists() else f"{path}: not a file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise PluginError(f"{path}: cannot read: {e.strerror}") from None
    try:
        source = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PluginError(f"{path}: not UTF-8 text") from None
    digest = hashlib.sha1(data).hexdigest()
    key = _key(path)
    old = _LOADED.get(key)
    if old is not None:
        if old.digest == digest and old.channels == channels:
            return old
        old.unload()

    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as e:
        raise PluginError(f"{path}:{e.lineno}: SyntaxError: {e.msg}") from None
    classdefs = _module_level_classes(tree)

    stem = re.sub(r"\W", "_", p.stem) or "plugin"
    if stem[0].isdigit():
        stem = "_" + stem
    module_name = f"flopscope_plugin_{stem}_{digest[:8]}"
    module = types.ModuleType(module_name, f"flopscope plugin {path}")
    module.__file__ = path
    root = forkmod.project_root(path)
    preload = {}
    if root is not None:
        rel = p.resolve().relative_to(root)
        if len(rel.parts) == 2 and rel.parts[0] in forkmod.PROJECT_PACKAGES and rel.suffix == ".py":
            # the project's models/common.py: its siblings' `from models.common import ...` get this module
            module.__package__ = rel.parts[0]
            preload[f"{rel.parts[0]}.{rel.stem}"] = module
    zoo = zoo_namespace()
    module.__dict__.update(zoo)
    created: list[tuple[type, int]] = []
    module.__dict__["__builtins__"] = _plugin_builtins(path, created, root)
    sys.modules[module_name] = module
    plugin = Plugin(path, module_name, stem, module, digest=digest, root=root, channels=channels)
    fork_rules = forkmod.rules_for_root(root)

    with plugin_scope(path, stem) as scope:
        try:
            code = compile(source, path, "exec")
            with forkmod.project_imports(root, zoo if root is not None else None, preload):
                exec(code, module.__dict__)  # noqa: S102 - the user asked for this file to be run
        except BaseException as e:  # noqa: BLE001 - any failure of the user's file, SystemExit included
            if isinstance(e, KeyboardInterrupt):
                raise
            _abort(scope, module_name)
            raise PluginError(_located(e, path, root)) from None
        _place_classes(created, classdefs, path)
        try:
            decided = _register_undeclared(module, module_name, path, fork_rules, channels)
        except FlopscopeError as e:
            _abort(scope, module_name)
            raise PluginError(str(e) if str(e).startswith(path) else f"{path}: {e}") from None
    plugin.modules = list(scope.registered)
    plugin.formulas = list(scope.formulas)
    found = _warnings(plugin, scope, classdefs, decided, zoo)
    plugin.kinds, plugin.warnings = [k for k, _ in found], [w for _, w in found]
    nf = plugin.no_formula
    if nf:
        plugin.notes.append(f"{path}: no cost formula for {', '.join(nf)}; counted op by op (the op-level counter) "
                            f"on the layer (marked * / counted_by in reports)")
    _LOADED[key] = plugin
    return plugin


def _abort(scope: PluginScope, module_name: str) -> None:
    remove_origin(scope.origin)
    for cls in scope.formulas:
        FORMULAS.pop(cls, None)
    sys.modules.pop(module_name, None)


def _located(e: BaseException, path: str, root=None) -> str:
    line = None
    if isinstance(e, SyntaxError) and e.filename == path:
        line = e.lineno
    else:
        for frame, lineno in traceback.walk_tb(e.__traceback__):
            if frame.f_code.co_filename == path:
                line = lineno
    msg = str(e).replace("\n", " ")
    if isinstance(e, FlopscopeError):
        text = msg
    else:
        text = f"{type(e).__name__}: {msg}" if msg else type(e).__name__
    if isinstance(e, ImportError) and (getattr(e, "name", None) or "").split(".")[0] in ("models", "utils"):
        if root is None:
            text += (" (the file is not inside a project with models/ or utils/ packages; a plugin alone gets "
                     "flopscope's zoo as models.common / models.yolo / models.experimental -- put the file in its "
                     "project or drop the import)")
        else:
            text += f" (imports resolve from the project root {root})"
    return f"{path}:{line}: {text}" if line else f"{path}: {text}"


# -- the plugin's globals ----------------------------------------------------------------------


def zoo_namespace() -> dict:
    """Names a plugin file sees without importing them: torch, nn, F, math, np and the zoo's blocks."""
    import math

    import torch
    import torch.nn.functional as F

    load_zoo()
    ns: dict = {"torch": torch, "nn": nn, "F": F, "math": math}
    try:
        import numpy as np
        ns["np"] = np
    except ImportError:  # pragma: no cover - numpy ships with matplotlib
        pass
    zoo_mods = sorted((m for n, m in list(sys.modules.items()) if n.startswith("flopscope.modules.") and m),
                      key=lambda m: (m.__name__ != "flopscope.modules.yolov5", m.__name__))
    for mod in zoo_mods:
        for k, v in vars(mod).items():
            if k.startswith("_") or k in ns:
                continue
            if isinstance(v, type) and issubclass(v, nn.Module) and v.__module__.startswith("flopscope.modules"):
                ns[k] = v
    from .modules.yolov5 import autopad
    ns.setdefault("autopad", autopad)
    ns.setdefault("make_divisible", ch.make_divisible)
    for name, spec in list(MODULES.items()):
        if spec.origin == "flopscope" and name.isidentifier() and name not in ns:
            ns[name] = spec.cls
    return ns


def _shims(zoo: dict) -> dict[str, types.ModuleType]:
    mods = {}
    for name in SHIM_MODULES:
        m = types.ModuleType(name, "flopscope's zoo standing in for YOLOv5's module (plugin imports only)")
        m.__dict__.update(zoo)
        mods[name] = m
    for name in SHIM_MODULES[1:]:
        setattr(mods["models"], name.split(".", 1)[1], mods[name])
    mods["models"].__path__ = []
    return mods


def _plugin_builtins(path: str, created: list, root=None) -> dict:
    """The plugin's ``__builtins__``: ``__import__`` serves the YOLOv5 shims (outside a project;
    inside one, :func:`flopscope.fork.project_imports` resolves them), ``__build_class__``
    records where each class was created (a name defined twice has two definitions)."""
    shims = _shims(zoo_namespace())
    real_import = builtins.__import__
    real_build = builtins.__build_class__

    def _import(name, globals=None, locals=None, fromlist=(), level=0):
        target = None
        if root is not None and (level == 0 or (globals or {}).get("__package__")):
            return real_import(name, globals, locals, fromlist, level)
        if level == 0 and name in shims:
            target = name
        elif level > 0 and name in ("common", "yolo", "experimental"):
            target = f"models.{name}"
        elif level > 0 and not name and fromlist:
            target = "models"
        if target is not None:
            return shims[target] if fromlist or "." not in target else shims["models"]
        return real_import(name, globals, locals, fromlist, level)

    def _build_class(func, name, *bases, **kwargs):
        cls = real_build(func, name, *bases, **kwargs)
        code = getattr(func, "__code__", None)
        if isinstance(cls, type) and code is not None and code.co_filename == path:
            created.append((cls, code.co_firstlineno))
        return cls

    b = dict(builtins.__dict__)
    b["__import__"] = _import
    b["__build_class__"] = _build_class
    return b


# -- after the file ran ------------------------------------------------------------------------


def _module_level_classes(tree: ast.Module) -> list[ast.ClassDef]:
    """Class statements executed at module level (also inside if / try / with blocks)."""
    out = []

    def visit(stmts):
        for s in stmts:
            if isinstance(s, ast.ClassDef):
                out.append(s)
            elif isinstance(s, (ast.If, ast.For, ast.While, ast.With)):
                visit(s.body)
                visit(getattr(s, "orelse", []))
            elif isinstance(s, ast.Try) or type(s).__name__ == "TryStar":
                visit(s.body)
                for h in s.handlers:
                    visit(h.body)
                visit(s.orelse)
                visit(s.finalbody)

    visit(tree.body)
    return out


def _place_classes(created, classdefs, path) -> None:
    """``file:line`` of each class object (inspect would give the first of two same-named classes)."""
    for cls, first in created:
        best = None
        for node in classdefs:
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            if node.name == cls.__name__ and start <= first <= (node.end_lineno or node.lineno):
                best = node
        if best is not None:
            SOURCES[cls] = f"{path}:{best.lineno}"


def _params(cls) -> list[str] | None:
    """Positional constructor parameters; None when they cannot be known (``*args``, no signature)."""
    if cls.__init__ is nn.Module.__init__:
        return []
    try:
        sig = inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        return None
    ps = [p for p in sig.parameters.values() if p.name != "self"]
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in ps):
        return None
    return [p.name for p in ps if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]


def signature_text(cls) -> str:
    """``MLCA(in_size, local_size=5, ...)`` as the constructor declares it."""
    try:
        sig = inspect.signature(cls.__init__)
        ps = [str(p) for p in sig.parameters.values() if p.name != "self"]
    except (TypeError, ValueError):
        ps = ["..."]
    return f"{cls.__name__}({', '.join(ps)})"


#: names that can only mean the input / output channel count
_IN_NAME = re.compile(r"^(c1|c_?in|cin|ch_?in|in_?(ch|chs|channels?|c|planes|chans|features)|inp|inc|inplanes|nin|"
                      r"dim_?in|in_?dim|c1_)$", re.IGNORECASE)
_OUT_NAME = re.compile(r"^(c2|c_?out|cout|ch_?out|out_?(ch|chs|channels?|c|planes|chans|features)|oup|ouc|outc|"
                       r"outplanes|nout|dim_?out|out_?dim|c2_)$", re.IGNORECASE)


def infer_rule(cls) -> tuple[ch.ChannelRule | None, str]:
    """A channel rule from the constructor's parameter names, only where they are unambiguous
    (None otherwise), and why."""
    params = _params(cls)
    if params is None:
        return None, f"{signature_text(cls)} does not name its parameters"
    sig = f"__init__({', '.join(params[:4])}{', ...' if len(params) > 4 else ''})"
    if not params:
        return ch.passthrough, f"none, from {sig}"
    chan = [bool(_CHANNEL_NAME.match(n)) for n in params]
    if len(params) > 1 and _IN_NAME.match(params[0]) and _OUT_NAME.match(params[1]):
        if len(params) > 2 and _REPEAT_NAME.match(params[2]):
            return ch.conv_like_repeat, f"conv+n, from {sig}"
        return ch.conv_like, f"conv, from {sig}"
    if chan[0] and not any(chan[1:]):
        return ch.same_channel, f"same, from {sig}"
    return None, f"{signature_text(cls)} does not say which YAML args are channel counts"


def suggested_rule(cls) -> str:
    """The rule to name in the hint (a hint only, never applied): 'same' when the first parameter
    looks like a size / channel count, else 'none'."""
    params = _params(cls) or []
    first = params[0] if params else ""
    return "same" if re.search(r"(^c\d?$|^c_|chan|dim|size|^in|planes|feat)", first, re.IGNORECASE) else "none"


def no_rule(cls, name: str, where: str, why: str) -> ch.ChannelRule:
    """The rule of a class without one: a YAML row using it fails with one line saying how to give it."""
    hint = suggested_rule(cls)
    text = (f"{name} ({where}): no channel rule -- {why}; give one: --channels {name}={hint} (or "
            f"{', '.join(r for r in _RULE_HELP if r != hint)}), or flopscope_channels = '{hint}' in the class")

    def refuse(row):
        raise row.error(text)

    return ch.ChannelRule("unknown", "no channel rule (a row using it is refused; see --channels)", refuse)


def declared_rule(cls, where: str) -> ch.ChannelRule | None:
    rule = getattr(cls, "flopscope_channels", None)
    if rule is None:
        return None
    if isinstance(rule, ch.ChannelRule):
        return rule
    if isinstance(rule, str):
        if rule not in CHANNEL_RULES:
            raise FlopscopeError(f"{where}: {cls.__name__}.flopscope_channels = {rule!r} is not a rule; use one of "
                                 f"{', '.join(sorted(set(CHANNEL_RULES)))}")
        return CHANNEL_RULES[rule]
    fn = rule.__func__ if isinstance(rule, (staticmethod, classmethod)) else rule
    if callable(fn):
        return ch.ChannelRule(getattr(fn, "__name__", "custom"), inspect.getdoc(fn) or "plugin rule", fn)
    raise FlopscopeError(f"{where}: {cls.__name__}.flopscope_channels must be a rule name, a ChannelRule or a "
                         f"function rule(row) -> (args, c2, n), got {rule!r}")


def _register_undeclared(module, module_name, path, fork_rules=None, channels=None) -> list[tuple[str, str, str]]:
    """Register the file's ``nn.Module`` classes that no decorator registered, with a channel rule
    from (in order) ``flopscope_channels``, the project's parse_model, ``--channels``, an unambiguous
    signature; returns (kind, name, detail) for the warnings."""
    channels = channels or {}
    mine = {s.cls for s in MODULES.values() if s.origin == path}
    decided = []
    for k, v in list(vars(module).items()):
        if not (isinstance(v, type) and issubclass(v, nn.Module) and v.__module__ == module_name
                and v.__name__ == k and not k.startswith("_")):
            continue
        if "flopscope_formula" in vars(v) and formula_for(v) is None:
            fn = vars(v)["flopscope_formula"]
            formula(v)(fn.__func__ if isinstance(fn, (staticmethod, classmethod)) else fn)
        name = getattr(v, "flopscope_name", None) or k
        override = channels.get(name, channels.get(k))
        if v in mine:
            if override is not None:
                decided.append(("ignored", name, "@flopscope.register(channels=...)"))
            continue
        where = SOURCES.get(v, path)
        rule = declared_rule(v, where)
        if rule is not None:
            add_module(name, v, rule, rule_source=f"flopscope_channels ({where})")
            if override is not None:
                decided.append(("ignored", name, f"flopscope_channels ({where})"))
            continue
        fr = fork_rules.rule(k) if fork_rules is not None else None
        if fr is not None:
            add_module(name, v, fr[0], rule_source=fr[1])
            if override is not None:
                decided.append(("ignored", name, fr[1]))
            continue
        if override is not None:
            add_module(name, v, CHANNEL_RULES[override], rule_source=f"--channels {name}={override}")
            continue
        rule, why = infer_rule(v)
        if rule is not None:
            add_module(name, v, rule, inferred=True, rule_source=f"signature {signature_text(v)}")
            decided.append(("inferred", name, why))
        else:
            add_module(name, v, no_rule(v, name, where, why), inferred=True, rule_source="none")
            decided.append(("no-rule", name, why))
    return decided


def _users_in_zoo(name: str) -> list[str]:
    """Zoo classes whose methods look ``name`` up as a global (they would pick up a redefinition
    made in their own module, as YOLOv5's C3 does in common.py)."""
    users = []
    for spec in MODULES.values():
        cls = spec.cls
        if spec.origin != "flopscope" or not cls.__module__.startswith("flopscope.modules"):
            continue
        if cls.__name__ in users or cls.__name__ == name:
            continue
        for fn in vars(cls).values():
            code = getattr(fn, "__code__", None)
            if code is not None and name in _global_names(code):
                users.append(cls.__name__)
                break
    return users


def _global_names(code) -> set[str]:
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _global_names(c)
    return names


def _users_in_file(name: str, classdefs: list[ast.ClassDef], after: int = 0) -> list[str]:
    users = []
    for node in classdefs:
        if node.name == name:
            continue
        if any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(node)):
            label = f"{node.name} (line {node.lineno})"
            if label not in users:
                users.append(label)
    return users


def _warnings(plugin: Plugin, scope: PluginScope, classdefs, decided, zoo) -> list[tuple[str, str]]:
    """(kind, message) of everything the user should know about the file."""
    path = plugin.path
    out = []
    by_name: dict[str, list[ast.ClassDef]] = {}
    for node in classdefs:
        by_name.setdefault(node.name, []).append(node)
    for name, nodes in by_name.items():
        if len(nodes) < 2:
            continue
        lines = [n.lineno for n in nodes]
        users = _users_in_file(name, classdefs)
        msg = (f"{path}: class {name} is defined {len(nodes)} times: "
               f"{' and '.join(f'{path}:{ln}' for ln in lines)}; Python keeps the last one ({path}:{lines[-1]})")
        if users:
            msg += f", so every class here that uses {name} builds with it: {', '.join(users)}"
        out.append(("twice", msg))
    for name, old, alias, cls in scope.shadowed:
        users = _users_in_zoo(name) if old.origin == "flopscope" else []
        kind = "built-in" if old.origin in ("flopscope", "torch") else f"plugin ({old.origin})"
        msg = (f"{SOURCES.get(cls, path)}: class {name} replaces the {kind} {name} ({old.where}) for this run: "
               f"configs that say '{name}' build this class; the {kind} stays available as '{alias}'")
        if users:
            msg += (f" (flopscope's {', '.join(users)} keep{'s' if len(users) == 1 else ''} using the {kind} "
                    f"{name} inside; pasted into YOLOv5's models/common.py this class would be used there too)")
        out.append(("replaces", msg))
    # a class defined in the file whose name is a zoo block that is not registered (e.g. TransformerLayer)
    reg_names = {n for n, *_ in scope.shadowed}
    for name, nodes in by_name.items():
        if name in reg_names or name in MODULES and MODULES[name].origin == path:
            continue
        if name in zoo and isinstance(zoo[name], type) and name not in MODULES:
            out.append(("zoo-shadow", f"{path}:{nodes[-1].lineno}: class {name} shadows flopscope's {name} "
                                      f"({SOURCES.get(zoo[name]) or _safe_where(zoo[name])}) inside this file"))
    for name, old_cls, new_cls in scope.redefined:
        if name not in by_name or len(by_name[name]) < 2:  # e.g. flopscope_name used twice
            out.append(("registered-twice", f"{path}: YAML name '{name}' is registered twice "
                                            f"({SOURCES.get(old_cls, path)} and {SOURCES.get(new_cls, path)}); "
                                            f"the later one is used"))
    for kind, name, detail in decided:
        if kind == "inferred":
            out.append(("inferred", f"{path}: class {name}: channel rule {detail} (no rule declared; declare one "
                                    f"with flopscope_channels = 'conv' | 'conv+n' | 'same' | 'none' | 'concat', "
                                    f"or --channels {name}=RULE)"))
        elif kind == "no-rule":
            out.append(("no-rule", f"{path}: class {name}: no channel rule ({detail}); a config using it fails "
                                   f"until you give one: --channels {name}={suggested_rule(MODULES[name].cls)}"))
        elif kind == "ignored":
            out.append(("ignored", f"--channels {name}=...: ignored, the rule of {name} comes from {detail}"))
    if not scope.registered:
        out.append(("empty", f"{path}: defines no nn.Module class; nothing registered"))
    return out


def _safe_where(obj) -> str:
    from .registry import _where

    return _where(obj)
