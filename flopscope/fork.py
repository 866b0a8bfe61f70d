"""Research code as written: a YOLOv5 fork's project root, its own ``parse_model`` and its own ``Model``.

* :func:`project_root` -- where a file's own ``from utils...`` / ``from models...`` resolve: the first
  directory above it holding a ``models/`` and/or ``utils/`` package (YOLOv5 puts this ROOT on
  ``sys.path``).
* :func:`project_imports` -- while a plugin file (or the fork's ``models/yolo.py``) loads: the root is on
  ``sys.path``, ``models.X`` / ``utils.X`` resolve to the project's files where it has them and
  ``models.common`` / ``models.yolo`` / ``models.experimental`` to flopscope's zoo only where it does not;
  afterwards ``sys.path`` and every ``sys.modules`` entry of the project are restored (no leakage
  between runs).
* :func:`fork_rules` -- the channel rule of each class named in the fork's ``parse_model``, read
  statically from ``models/yolo.py`` (AST; never executed): each ``if m in {...}`` / ``elif m is X``
  branch is interpreted by a small evaluator that knows only list / arithmetic operations on
  ``args``, ``ch``, ``f``, ``n``, ``c1``, ``c2``, ``gw``, ``gd``, ``no``, ``nc``, ``make_divisible``.
* :class:`Fork` -- ``--fork DIR``: the fork's own ``models/yolo.py`` Model builds the YAML (exactly what
  the researcher trains); flopscope counts that model layer by layer.
"""
from __future__ import annotations

import ast
import contextlib
import copy
import math
import os
import re
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

from .channels import ChannelRule, Row, make_divisible
from .errors import ConfigError, FlopscopeError

PROJECT_PACKAGES = ("models", "utils")
ZOO_MODULES = ("common", "yolo", "experimental")


class ForkError(FlopscopeError):
    """A fork directory whose code cannot be loaded or run."""


# -- the project root ------------------------------------------------------------------------------


def _is_package_dir(d: Path) -> bool:
    try:
        return d.is_dir() and any(p.suffix == ".py" for p in d.iterdir())
    except OSError:
        return False


def project_root(file: str | os.PathLike, levels: int = 4) -> Path | None:
    """The nearest directory above ``file`` that holds a ``models/`` and/or ``utils/`` package
    (a directory with ``.py`` files); one holding both wins over a nearer one holding one."""
    start = Path(file).resolve().parent
    found = None
    for d in [start, *start.parents][:levels]:
        have = [_is_package_dir(d / p) for p in PROJECT_PACKAGES]
        if all(have):
            return d
        if any(have) and found is None:
            found = d
    return found


def is_yolov5_checkout(d: Path) -> bool:
    return (d / "models" / "yolo.py").is_file() and (d / "models" / "common.py").is_file()


def checkout_of_yaml(cfg) -> Path | None:
    """The YOLOv5 checkout whose ``models/`` (or a folder below it) holds the YAML ``cfg``."""
    if not isinstance(cfg, (str, os.PathLike)):
        return None
    p = Path(cfg)
    if p.suffix not in (".yaml", ".yml") or not p.is_file():
        return None
    p = p.resolve()
    for d in list(p.parents)[:4]:
        if d.name == "models" and is_yolov5_checkout(d.parent):
            return d.parent
    return None


def _under(file, root: Path) -> bool:
    try:
        return Path(file).resolve().is_relative_to(root)
    except (OSError, ValueError, TypeError):
        return False


def _project_names(root: Path) -> set[str]:
    """Top-level module names the project defines (its packages and top-level .py files)."""
    names = set()
    try:
        for p in root.iterdir():
            if p.is_dir() and _is_package_dir(p) and p.name.isidentifier():
                names.add(p.name)
            elif p.suffix == ".py" and p.stem.isidentifier():
                names.add(p.stem)
    except OSError:
        pass
    return names


class _ZooFinder:
    """``models`` / ``models.common`` / ``models.yolo`` / ``models.experimental`` from flopscope's zoo,
    for a project that lacks them (a meta path finder, installed only while a plugin loads)."""

    def __init__(self, root: Path | None, zoo: dict):
        self.root = root
        self.zoo = zoo

    def _missing(self, fullname: str) -> bool:
        parts = fullname.split(".")
        if parts[0] != "models" or len(parts) > 2 or (len(parts) == 2 and parts[1] not in ZOO_MODULES):
            return False
        if self.root is None:
            return True
        if len(parts) == 1:
            return not (self.root / "models").is_dir()
        return not ((self.root / "models" / f"{parts[1]}.py").is_file()
                    or (self.root / "models" / parts[1]).is_dir())

    def find_spec(self, fullname, path=None, target=None):
        import importlib.util

        if not self._missing(fullname):
            return None
        return importlib.util.spec_from_loader(fullname, self, is_package=fullname == "models")

    def create_module(self, spec):
        m = types.ModuleType(spec.name, "flopscope's zoo standing in for YOLOv5's module (plugin imports only)")
        m.__dict__.update(self.zoo)
        if spec.name == "models":
            m.__path__ = []
        return m

    def exec_module(self, module):
        pass


@contextlib.contextmanager
def project_imports(root: Path | None, zoo: dict | None = None, preload: dict | None = None):
    """Imports as the project sees them, undone afterwards (see the module docstring).

    ``preload`` maps module names to modules placed in ``sys.modules`` meanwhile (the plugin file
    itself as ``models.common`` when it is the project's ``models/common.py``)."""
    saved_path = list(sys.path)
    names = _project_names(root) if root is not None else set()
    names |= {"models"}

    def ours(k: str) -> bool:
        return k.split(".")[0] in names

    saved_mods = {k: v for k, v in sys.modules.items() if ours(k)}
    for k in saved_mods:
        del sys.modules[k]
    if root is not None:
        sys.path.insert(0, str(root))
    finder = _ZooFinder(root, zoo) if zoo is not None else None
    if finder is not None:
        sys.meta_path.insert(0, finder)
    for k, v in (preload or {}).items():
        sys.modules[k] = v
    try:
        yield
    finally:
        if finder is not None and finder in sys.meta_path:
            sys.meta_path.remove(finder)
        sys.path[:] = saved_path
        for k in [k for k, v in sys.modules.items() if ours(k) or (root is not None and
                                                                  _under(getattr(v, "__file__", None) or "", root))]:
            del sys.modules[k]
        sys.modules.update(saved_mods)


# -- reading parse_model statically ------------------------------------------------------------------


class _Unreadable(Exception):
    """A statement or expression the static reader does not interpret."""


@dataclass
class Sym:
    """A name the reader does not evaluate (a class, ``nn.BatchNorm2d`` ...)."""

    name: str

    def __eq__(self, other):
        return isinstance(other, Sym) and other.name.split(".")[-1] == self.name.split(".")[-1]

    def __hash__(self):
        return hash(self.name.split(".")[-1])


def _dotted(node) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


_FUNCS = {
    "make_divisible": lambda x, d=8: make_divisible(x, d), "sum": sum, "len": len, "int": int, "float": float,
    "max": max, "min": min, "round": round, "abs": abs, "list": list, "tuple": tuple, "range": range,
    "isinstance": isinstance, "math.ceil": math.ceil, "math.floor": math.floor, "math.sqrt": math.sqrt,
    "bool": bool, "str": str,
}
_TYPES = {"int": int, "float": float, "list": list, "tuple": tuple, "str": str, "bool": bool, "dict": dict}
_BIN = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
        ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b,
        ast.Pow: lambda a, b: a ** b}
_CMP = {ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b, ast.Lt: lambda a, b: a < b,
        ast.LtE: lambda a, b: a <= b, ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
        ast.Is: lambda a, b: a == b if isinstance(a, Sym) or isinstance(b, Sym) else a is b,
        ast.IsNot: lambda a, b: not (a == b if isinstance(a, Sym) or isinstance(b, Sym) else a is b),
        ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}


class _Eval:
    """Interpret one branch of parse_model for one row (never runs the fork's code)."""

    def __init__(self, env: dict):
        self.env = env

    def run(self, stmts):
        for s in stmts:
            self.stmt(s)

    def stmt(self, s):
        if isinstance(s, ast.Assign):
            v = self.expr(s.value)
            for t in s.targets:
                self.assign(t, v)
        elif isinstance(s, ast.AugAssign):
            cur = self.expr(_load(s.target))
            op = _BIN.get(type(s.op))
            if op is None:
                raise _Unreadable(s)
            self.assign(s.target, op(cur, self.expr(s.value)))
        elif isinstance(s, ast.If):
            self.run(s.body if self.truth(s.test) else s.orelse)
        elif isinstance(s, ast.Expr):
            self.call_stmt(s.value)
        elif isinstance(s, ast.Pass):
            pass
        else:
            raise _Unreadable(s)

    def truth(self, node) -> bool:
        v = self.expr(node)
        if isinstance(v, Sym):
            raise _Unreadable(node)
        return bool(v)

    def call_stmt(self, node):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("insert", "append", "extend", "pop") and not node.keywords):
            target = self.expr(node.func.value)
            if not isinstance(target, list):
                raise _Unreadable(node)
            getattr(target, node.func.attr)(*[self.expr(a) for a in node.args])
            return
        if isinstance(node, ast.Constant):  # a docstring / comment string
            return
        raise _Unreadable(node)

    def assign(self, t, v):
        if isinstance(t, ast.Name):
            self.env[t.id] = v
        elif isinstance(t, (ast.Tuple, ast.List)):
            vals = list(v)
            if len(vals) != len(t.elts):
                raise _Unreadable(t)
            for a, b in zip(t.elts, vals):
                self.assign(a, b)
        elif isinstance(t, ast.Subscript):
            obj = self.expr(t.value)
            if not isinstance(obj, list):
                raise _Unreadable(t)
            obj[self.expr(t.slice)] = v
        else:
            raise _Unreadable(t)

    def expr(self, e):
        if isinstance(e, ast.Constant):
            return e.value
        if isinstance(e, ast.Name):
            if e.id in self.env:
                return self.env[e.id]
            if e.id in ("True", "False", "None"):
                return {"True": True, "False": False, "None": None}[e.id]
            return Sym(e.id)
        if isinstance(e, ast.Attribute):
            d = _dotted(e)
            if d is None:
                raise _Unreadable(e)
            return Sym(d)
        if isinstance(e, (ast.List, ast.Tuple, ast.Set)):
            out = []
            for x in e.elts:
                if isinstance(x, ast.Starred):
                    out.extend(self.expr(x.value))
                else:
                    out.append(self.expr(x))
            return out if isinstance(e, ast.List) else tuple(out) if isinstance(e, ast.Tuple) else set(out)
        if isinstance(e, ast.Subscript):
            obj = self.expr(e.value)
            if isinstance(obj, Sym):
                raise _Unreadable(e)
            if isinstance(e.slice, ast.Slice):
                sl = slice(*(self.expr(x) if x is not None else None for x in (e.slice.lower, e.slice.upper,
                                                                             e.slice.step)))
                return obj[sl]
            return obj[self.expr(e.slice)]
        if isinstance(e, ast.BinOp):
            op = _BIN.get(type(e.op))
            a, b = self.expr(e.left), self.expr(e.right)
            if op is None or isinstance(a, Sym) or isinstance(b, Sym):
                raise _Unreadable(e)
            return op(a, b)
        if isinstance(e, ast.UnaryOp):
            v = self.expr(e.operand)
            if isinstance(e.op, ast.Not):
                return not self.truth(e.operand)
            if isinstance(e.op, ast.USub):
                return -v
            if isinstance(e.op, ast.UAdd):
                return +v
            raise _Unreadable(e)
        if isinstance(e, ast.BoolOp):
            if isinstance(e.op, ast.And):
                v = True
                for x in e.values:
                    v = self.expr(x)
                    if isinstance(v, Sym):
                        raise _Unreadable(e)
                    if not v:
                        return v
                return v
            v = False
            for x in e.values:
                v = self.expr(x)
                if isinstance(v, Sym):
                    raise _Unreadable(e)
                if v:
                    return v
            return v
        if isinstance(e, ast.Compare):
            left = self.expr(e.left)
            for op, right in zip(e.ops, e.comparators):
                r = self.expr(right)
                fn = _CMP.get(type(op))
                if fn is None:
                    raise _Unreadable(e)
                if not fn(left, r):
                    return False
                left = r
            return True
        if isinstance(e, ast.IfExp):
            return self.expr(e.body) if self.truth(e.test) else self.expr(e.orelse)
        if isinstance(e, ast.Call):
            name = _dotted(e.func)
            fn = _FUNCS.get(name or "")
            if fn is None or (name in self.env):
                raise _Unreadable(e)
            args = []
            for a in e.args:
                if isinstance(a, ast.Starred):
                    args.extend(self.expr(a.value))
                else:
                    args.append(self.expr(a))
            if name == "isinstance":
                typ = args[1]
                types_ = tuple(_TYPES[t.name] for t in (typ if isinstance(typ, tuple) else (typ,))
                               if isinstance(t, Sym) and t.name in _TYPES)
                if not types_:
                    raise _Unreadable(e)
                return isinstance(args[0], types_)
            if e.keywords or any(isinstance(a, Sym) for a in args):
                raise _Unreadable(e)
            return fn(*args)
        if isinstance(e, (ast.GeneratorExp, ast.ListComp)) and len(e.generators) == 1:
            g = e.generators[0]
            if g.is_async or not isinstance(g.target, ast.Name):
                raise _Unreadable(e)
            out = []
            saved = self.env.get(g.target.id, _MISSING)
            for v in self.expr(g.iter):
                self.env[g.target.id] = v
                if all(self.truth(c) for c in g.ifs):
                    out.append(self.expr(e.elt))
            if saved is _MISSING:
                self.env.pop(g.target.id, None)
            else:
                self.env[g.target.id] = saved
            return out
        raise _Unreadable(e)


_MISSING = object()


def _load(t):
    """The load form of an assignment target (for ``x += 1``)."""
    t2 = copy.deepcopy(t)
    for n in ast.walk(t2):
        if hasattr(n, "ctx"):
            n.ctx = ast.Load()
    return t2


def _names_in_test(test, var: str) -> set[str] | None:
    """Class names a branch test on ``var`` selects: ``m in {A, B}``, ``m is A``, ``m == A``, joined by
    ``or``; None when the test is anything else."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.Or):
        out: set[str] = set()
        for v in test.values:
            part = _names_in_test(v, var)
            if part is None:
                return None
            out |= part
        return out
    if (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.left, ast.Name)
            and test.left.id == var):
        op, right = test.ops[0], test.comparators[0]
        if isinstance(op, (ast.Is, ast.Eq)):
            d = _dotted(right)
            return {d.split(".")[-1]} if d else None
        if isinstance(op, ast.In) and isinstance(right, (ast.Set, ast.Tuple, ast.List)):
            names = [_dotted(x) for x in right.elts]
            return {d.split(".")[-1] for d in names} if all(names) else None
    return None


@dataclass
class Branch:
    names: set[str] | None  # None: the final else
    body: list
    line: int
    file: str


@dataclass
class ForkRules:
    """The channel rules the fork's parse_model applies, by class name."""

    file: str
    branches: list[Branch] = field(default_factory=list)
    var: str = "m"
    problems: list[str] = field(default_factory=list)
    ch_mul: int = 8

    def branch_for(self, name: str) -> Branch | None:
        for b in self.branches:
            if b.names is None or name in b.names:
                return b
        return None

    def rule(self, name: str) -> tuple[ChannelRule, str] | None:
        """The rule for class ``name`` and where it comes from (``file:line``), or None."""
        b = self.branch_for(name)
        if b is None:
            return None
        where = f"{b.file}:{b.line}"
        kind = "else branch" if b.names is None else "branch"
        desc = f"the fork's parse_model {kind} at {where}, read statically (never executed)"
        rule = ChannelRule("parse_model", desc, lambda row, b=b, name=name: self.apply(b, name, row))
        return rule, f"parse_model ({where})"

    def apply(self, b: Branch, name: str, row: Row):
        f = row.f
        env = {"f": f, "n": row.n, "n_": row.n, "args": list(row.args), "ch": list(row.ch), "gw": row.gw,
               "gd": 1.0, "no": row.no, "nc": row.nc, "i": row.index, self.var: Sym(name), "ch_mul": self.ch_mul,
               # a branch that does not set c2 keeps the previous row's (YOLOv5's loop variable leaks)
               "c1": _c_or_none(row.ch, f), "c2": row.ch[-1] if row.ch else None}
        try:
            _Eval(env).run(b.body)
        except _Unreadable as e:
            node = e.args[0] if e.args else None
            line = getattr(node, "lineno", b.line)
            raise row.error(f"{name}: the fork's parse_model line {b.file}:{line} cannot be read statically "
                            f"({ast.unparse(node) if isinstance(node, ast.AST) else '?'}); build with the fork's own "
                            f"code (--fork DIR) or give the rule: --channels {name}=same") from None
        except (IndexError, KeyError, TypeError, ValueError, ZeroDivisionError) as e:
            raise row.error(f"{name}: the fork's parse_model branch at {b.file}:{b.line} fails on args "
                            f"{row.args!r}: {type(e).__name__}: {e}") from None
        args, c2, n = env["args"], env["c2"], env["n"]
        if isinstance(c2, Sym) or c2 is None:
            raise row.error(f"{name}: the fork's parse_model branch at {b.file}:{b.line} does not set c2")
        return list(args), c2, n


def _c_or_none(ch, f):
    try:
        return ch[f] if isinstance(f, int) else None
    except IndexError:
        return None


def read_parse_model(path: str | os.PathLike) -> ForkRules | None:
    """Parse ``models/yolo.py`` and find parse_model's if/elif chain on the module variable."""
    path = str(path)
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8", errors="replace"), filename=path)
    except (OSError, SyntaxError, ValueError):
        return None
    fn = next((n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "parse_model"), None)
    if fn is None:
        return None
    rules = ForkRules(path)
    for n in ast.walk(fn):
        if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "ch_mul" for t in n.targets):
            if isinstance(n.value, ast.Constant) and isinstance(n.value.value, int):
                rules.ch_mul = n.value.value
    loop = next((n for n in ast.walk(fn) if isinstance(n, ast.For)), None)
    if loop is None:
        return None
    # the module variable: the third name in `for i, (f, n, m, args) in enumerate(...)`
    var = "m"
    t = loop.target
    if isinstance(t, ast.Tuple) and len(t.elts) == 2 and isinstance(t.elts[1], ast.Tuple) and len(t.elts[1].elts) == 4:
        x = t.elts[1].elts[2]
        var = x.id if isinstance(x, ast.Name) else var
    rules.var = var
    chain = None
    for s in loop.body:
        if isinstance(s, ast.If) and _names_in_test(s.test, var) is not None:
            chain = s
            break
    if chain is None:
        return None
    node = chain
    while True:
        names = _names_in_test(node.test, var)
        if names is None:
            rules.problems.append(f"{path}:{node.lineno}: branch test not read ({ast.unparse(node.test)})")
            break
        rules.branches.append(Branch(names, node.body, node.lineno, path))
        if len(node.orelse) == 1 and isinstance(node.orelse[0], ast.If):
            node = node.orelse[0]
            continue
        if node.orelse:
            rules.branches.append(Branch(None, node.orelse, node.orelse[0].lineno, path))
        break
    return rules


def rules_for_root(root: Path | None) -> ForkRules | None:
    if root is None:
        return None
    f = root / "models" / "yolo.py"
    return read_parse_model(f) if f.is_file() else None


# -- building with the fork's own code ------------------------------------------------------------------

_FORK: Path | None = None  # --fork DIR of this run
_AUTO = True  # build a YAML inside a checkout's models/ with that checkout's code


def configure(directory: str | None, auto: bool = True) -> None:
    """Set this run's ``--fork DIR`` / ``--no-fork`` (the CLI calls it before the command)."""
    global _FORK, _AUTO
    _AUTO = auto
    if directory is None:
        _FORK = None
        return
    d = Path(directory)
    if not d.is_dir():
        raise ForkError(f"--fork {directory}: no such directory")
    if not is_yolov5_checkout(d):
        missing = [p for p in ("models/yolo.py", "models/common.py") if not (d / p).is_file()]
        raise ForkError(f"--fork {directory}: not a YOLOv5 checkout (no {' or '.join(missing)})")
    _FORK = d.resolve()


def fork_for(cfg) -> Path | None:
    """The checkout whose code builds ``cfg`` (a YAML path or a loaded config), or None."""
    file = getattr(cfg, "file", cfg)
    try:
        if not isinstance(file, (str, os.PathLike)) or not Path(file).is_file():
            return None
        if _FORK is not None:
            return _FORK
        return checkout_of_yaml(file) if _AUTO else None
    except (OSError, ValueError):  # a name too long, a NUL byte ...: the config loader reports it
        return None


@contextlib.contextmanager
def _quiet():
    """The fork's LOGGER / prints (YOLOv5 logs a model summary at init) stay out of our output."""
    import io
    import logging

    logging.disable(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logging.disable(logging.NOTSET)


class _LogCapture:
    """Stands in for the fork's ``models/yolo.py`` ``LOGGER`` while its Model builds: keeps the messages (YOLOv5's
    parse_model logs one line per layer with the constructor args it used, which it does not store)."""

    def __init__(self):
        self.lines: list[str] = []

    def _keep(self, msg="", *a, **k):
        self.lines.extend(str(msg).splitlines())

    info = warning = debug = error = critical = _keep


@contextlib.contextmanager
def _capture_log(yolo):
    """``yolo.LOGGER`` replaced by a :class:`_LogCapture` for the block (restored after); yields the capture."""
    cap = _LogCapture()
    had = hasattr(yolo, "LOGGER")
    old = getattr(yolo, "LOGGER", None)
    yolo.LOGGER = cap
    try:
        yield cap
    finally:
        if had:
            yolo.LOGGER = old
        else:
            del yolo.LOGGER


_LOG_ROW = re.compile(r"^\s*(\d+)\s+(-?\d+|\[[-\d,\s]*\])\s+(\d+)\s+(\d+)\s+(\S+)\s+(\[.*\])\s*$")


def logged_args(lines: list[str]) -> dict[int, list]:
    """Layer index -> constructor args, from YOLOv5-style parse_model log lines
    (``f"{i:>3}{f!s:>18}{n_:>3}{np:10.0f}  {t:<40}{args!s:<30}"``); rows whose args are not literals are left out."""
    out = {}
    for line in lines:
        m = _LOG_ROW.match(line)
        if not m:
            continue
        try:
            args = ast.literal_eval(m.group(6))
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        if isinstance(args, list):
            out[int(m.group(1))] = args
    return out


def import_fork(root: Path):
    """Import the fork's ``models/yolo.py`` (its ROOT on sys.path, its own models/utils packages);
    returns the module.  Call inside :func:`project_imports`."""
    import importlib

    try:
        with _quiet():
            return importlib.import_module("models.yolo")
    except BaseException as e:  # noqa: BLE001 - any failure of the fork's code
        if isinstance(e, KeyboardInterrupt):
            raise
        raise ForkError(f"{_where_in(e, root) or root / 'models' / 'yolo.py'}: importing the fork's models/yolo.py "
                        f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} (the fork's code "
                        f"builds YAMLs in its models/; --no-fork builds with flopscope's builder and --plugin "
                        f"classes instead)") from None


def _where_in(e: BaseException, root: Path) -> str | None:
    import traceback

    last = None
    for frame, lineno in traceback.walk_tb(e.__traceback__):
        if _under(frame.f_code.co_filename, root):
            last = f"{frame.f_code.co_filename}:{lineno}"
    return last


def _model_class(mod):
    for name in ("DetectionModel", "Model"):
        cls = getattr(mod, name, None)
        if isinstance(cls, type):
            return cls
    raise ForkError(f"{mod.__file__}: defines no Model / DetectionModel class")


def build_with_fork(root: Path, cfg, nc: int | None = None, device="meta"):
    """Build ``cfg`` with the fork's own ``Model`` and wrap it for counting (see :class:`ForkModel`)."""
    import torch

    from . import config as cfgmod
    from .builder import skip_init
    from .opcount import CPU_FALLBACK_BYTES

    conf = cfg if isinstance(cfg, cfgmod.ModelConfig) else cfgmod.load(cfg, nc)
    file = str(Path(conf.file).resolve())
    notes = [f"built by the fork's own code: {root / 'models' / 'yolo.py'} (its Model and parse_model, executed)"]
    with project_imports(root):
        yolo = import_fork(root)
        Model = _model_class(yolo)
        kwargs = {"nc": nc} if nc is not None else {}
        model, err = None, None
        if torch.device(device).type == "meta":
            try:
                with _quiet(), _capture_log(yolo) as log, torch.device("meta"), skip_init():
                    model = Model(file, **kwargs)
            except Exception as e:  # noqa: BLE001 - e.g. YOLOv5's stride forward / anchor check on meta
                err = e
        if model is None:
            need = _estimate_bytes(yolo, conf)
            if need is not None and need > CPU_FALLBACK_BYTES:
                raise ForkError(f"{file}: the fork's Model cannot be built on the meta device ({type(err).__name__}: "
                                f"{str(err)[:100]}); building it on CPU would need about {need / 2**30:.1f} GiB, more "
                                f"than the {CPU_FALLBACK_BYTES >> 30} GiB allowed")
            try:
                with _quiet(), _capture_log(yolo) as log, torch.device("cpu"):
                    model = Model(file, **kwargs)
            except Exception as e:  # noqa: BLE001
                raise ForkError(f"{_where_in(e, root) or file}: the fork's Model failed to build {file}: "
                                f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
            if err is not None:
                notes.append(f"built on CPU: the fork's Model runs a forward at init to find its strides, which "
                             f"cannot run on the meta device ({type(err).__name__}: {str(err).splitlines()[0][:80]})")
    model.eval()
    wrapped = ForkModel.wrap(model, conf, root, yolo, notes, logged_args(log.lines))
    if torch.device(device).type == "meta" and err is not None:
        # built on CPU for its stride forward; counted on meta like every other model (no image-sized memory)
        try:
            model.to("meta")
        except Exception:  # noqa: BLE001 - a module that cannot move: counted on CPU (the op counter guards size)
            pass
    return wrapped


def _estimate_bytes(yolo, conf) -> int | None:
    """Weights of the fork's parse_model built on meta (a size guard before a CPU build)."""
    import torch

    from .builder import skip_init

    pm = getattr(yolo, "parse_model", None)
    if pm is None or not conf.raw:
        return None
    try:
        with _quiet(), torch.device("meta"), skip_init():
            seq = pm(copy.deepcopy(conf.raw), ch=[conf.ch])
        seq = seq[0] if isinstance(seq, tuple) else seq
        return 4 * sum(p.numel() for p in seq.parameters()) + 4 * conf.ch * 256 * 256
    except Exception:  # noqa: BLE001 - no estimate; the CPU build is then unguarded by this figure
        return None


def _fork_module_name(m) -> str:
    t = getattr(m, "type", None)
    if isinstance(t, str) and t:
        return t.replace("__main__.", "").split(".")[-1]
    return type(m).__name__


class ForkModel:
    """Namespace for building the wrapper (a :class:`~flopscope.builder.DetectionModel` whose
    layers are the fork's own modules)."""

    @staticmethod
    def wrap(model, conf, root: Path, yolo, notes: list[str], logged: dict | None = None):
        import torch
        import torch.nn as nn

        from .builder import DetectionModel, LayerInfo, set_strides
        from .registry import ModuleSpec

        seq = getattr(model, "model", None)
        if not isinstance(seq, nn.Sequential):
            raise ForkError(f"{conf.file}: the fork's Model has no .model Sequential of layers")
        rows = list(conf.rows)
        rule = ChannelRule("fork", "the fork's own parse_model, executed", lambda row: None)
        source = f"the fork's parse_model, run ({root / 'models' / 'yolo.py'})"
        info, as_yaml = [], []
        logged = logged or {}
        for k, m in enumerate(seq):
            row = rows[k] if k < len(rows) else None
            f = getattr(m, "f", row.f if row else -1)
            i = getattr(m, "i", k)
            name = row.module if row is not None else _fork_module_name(m)
            n = row.n if row is not None else 1
            if n > 1:
                n = max(round(n * conf.depth_multiple), 1)
            args = getattr(m, "args", None)  # a fork may keep them; YOLOv5 logs them but does not store them
            if args is None:
                args = logged.get(i)  # as the fork's parse_model logged them
            if args is None:
                args = list(row.args) if row is not None else []
                as_yaml.append(i)
            spec = ModuleSpec(name, type(m), rule, "", origin=str(root), rule_source=source)
            info.append(LayerInfo(i, f, n, name, args, None, spec))
        if as_yaml:
            notes.append(f"args of layer(s) {', '.join(map(str, as_yaml))} are the YAML's: the fork's parse_model "
                         f"neither stores nor logs (in YOLOv5's format) the constructor args it used")
        save = list(getattr(model, "save", []))
        wrapped = DetectionModel(seq, save, info, conf)
        wrapped.fork = model
        wrapped.fork_notes = notes
        stride = getattr(model, "stride", None)
        if isinstance(stride, torch.Tensor) and stride.device.type != "meta" and stride.numel():
            wrapped.stride = stride.detach().to("cpu").float()
        else:
            set_strides(wrapped)
        return wrapped
