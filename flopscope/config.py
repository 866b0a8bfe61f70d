"""Reading model configs safely: bundled names or paths, YAML safe loader, literal args only.

Nothing in a config is ever evaluated.  Module names resolve through the registry, the
symbols ``nc``, ``anchors``, ``None``, ``True``, ``False`` are substituted, other strings must
be plain words (``'nearest'``, ``'concat'``) or Python literals (``'[5, 9, 13]'``), and the
``activation:`` key accepts only ``nn.<Activation>(<literal args>)``.
"""
from __future__ import annotations

import ast
import contextlib
import contextvars
import re
import reprlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from .dialects import detect_dialect, get_dialect
from .errors import ConfigError, FlopscopeError, suggestion
from .rows import RowKey

# Plausibility limits: a config beyond them is refused with a clear error instead of building
# for minutes, recursing without end or allocating without bound.
MAX_REPEATS = 1000  # 'number' of one row, before and after depth_multiple
MAX_BLOCKS = 5000  # sum over rows of the depth-scaled repeats
MAX_ROWS = 2000
MAX_FROM = 100  # entries of one 'from' list
MAX_BYTES = 4 << 20  # size of a config file
MAX_NODES = 200_000  # YAML nodes after alias expansion ("billion laughs")
MAX_DEPTH = 32  # nesting of lists / mappings
MAX_LITERAL = 2000  # characters of one literal string argument
MAX_ACT_NUMBER = 1_000_000  # numeric arguments of the activation
_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_NAME = re.compile(r"^[^\W\d][\w.\-]*$")  # module names: words (Unicode letters too), dots, dashes

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 80
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 8
_repr.maxlevel = 3


def show(value) -> str:
    """A short, one-line repr of a value from a config (bounded, whatever its size or nesting)."""
    try:
        return _repr.repr(value)
    except Exception:  # noqa: BLE001 - a repr must never fail an error message
        return f"<{type(value).__name__}>"


def bundled_names() -> list[str]:
    root = resources.files("flopscope.yamls")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def resolve(cfg: str | Path) -> tuple[str, str, str]:
    """Return (name, display path, text) for a bundled name or a file path."""
    s = str(cfg)
    if not s:
        raise ConfigError("empty config name", file="''")
    if "\x00" in s:
        raise ConfigError("not a usable path: it contains a NUL character", file=show(s))
    p = Path(s)
    try:
        is_file, is_dir, exists = p.is_file(), p.is_dir(), p.exists()
    except (OSError, ValueError) as e:  # name too long, embedded NUL ...
        raise ConfigError(f"not a usable path: {getattr(e, 'strerror', None) or e}", file=show(s)) from None
    if is_file:
        try:
            with p.open("rb") as fh:
                data = fh.read(MAX_BYTES + 1)
        except OSError as e:
            raise ConfigError(f"cannot read config: {e.strerror or e}", file=s) from None
        if len(data) > MAX_BYTES:
            raise ConfigError(f"larger than {MAX_BYTES >> 20} MiB; not a model config", file=s)
        return p.stem, s, _decode(data, s)
    if is_dir:
        raise ConfigError("is a directory, not a config file", file=s)
    if exists:
        raise ConfigError("not a regular file (device, FIFO or socket)", file=s)
    stem = p.name.removesuffix(".yaml").removesuffix(".yml")
    if len(p.parts) == 1:
        f = resources.files("flopscope.yamls") / f"{stem}.yaml"
        if f.is_file():
            return stem, f"{stem}.yaml (bundled)", f.read_text(encoding="utf-8")
    # Ultralytics model names: yolo11n -> yolo11.yaml (the scale comes from the name), yolov8n6 -> yolov8-p6
    from .dialects.ultralytics import p6_name, unified_name

    unified = unified_name(stem)
    if unified != stem:
        if len(p.parts) > 1:
            alt = p.with_name(unified + (p.suffix if p.suffix in (".yaml", ".yml") else ".yaml"))
            if alt.is_file():
                name, _, text = resolve(alt)
                return p6_name(stem), str(alt), text
        f = resources.files("flopscope.yamls") / f"{unified}.yaml"
        if f.is_file():
            return p6_name(stem), f"{unified}.yaml (bundled)", f.read_text(encoding="utf-8")
    if len(p.parts) == 1 and stem.endswith("u") and len(stem) > 1:
        # ultralytics' hub names of the anchor-free v3/v5 re-trainings: yolov3u, yolov3-tinyu -> yolov3, yolov3-tiny
        base = stem[:-1]
        import re as _re

        for cand in (base, unified_name(base), _re.sub(r"^(yolov\d+)[nslmx]?", r"\1u", base)):  # yolov5n-p6u -> yolov5u-p6
            f = resources.files("flopscope.yamls") / f"{cand}.yaml"
            if f.is_file():
                text = f.read_text(encoding="utf-8")
                if "anchors:" not in text:  # never a YOLOv5-dialect config under an ultralytics 'u' name
                    return stem, f"{cand}.yaml (bundled)", text
    raise ConfigError(f"no such file, and no bundled config of that name{suggestion(stem, bundled_names())}", file=s)


def _decode(data: bytes, where: str) -> str:
    if b"\x00" in data:
        raise ConfigError("not a text file (binary content)", file=where)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", file=where) from None


@dataclass
class LayerRow(RowKey):
    section: str


@dataclass
class ModelConfig:
    name: str
    file: str
    nc: int
    depth_multiple: float
    width_multiple: float
    anchors: list | int
    ch: int
    activation: str | None
    rows: list[LayerRow] = field(default_factory=list)
    raw: dict = field(default_factory=dict)
    dialect: str = "yolov5"  # see flopscope.dialects
    scale: str = ""  # Ultralytics: the scales: row used ('' when none)
    max_channels: float = float("inf")
    extra: dict = field(default_factory=dict)  # dialect keys read by heads (reg_max, end2end, kpt_shape)
    notes: list = field(default_factory=list)  # how the config was read (e.g. an assumed scale)

    @property
    def na(self) -> int:
        if self.anchors is None:
            return 0
        return len(self.anchors[0]) // 2 if isinstance(self.anchors, list) else self.anchors


_READING: contextvars.ContextVar = contextvars.ContextVar("flopscope_reading", default={})


@contextlib.contextmanager
def reading(dialect: str | None = None, scale: str | None = None):
    """Defaults for every config loaded inside (the CLI's ``--dialect`` / ``--scale``)."""
    if dialect is not None:
        get_dialect(dialect)  # an unknown name is an error now, with a suggestion
    if scale is not None and (not isinstance(scale, str) or not scale or len(scale) > 40):
        raise FlopscopeError(f"--scale must be a scale name such as n, s, m, l, x, got {show(scale)}")
    token = _READING.set({"dialect": dialect, "scale": scale})
    try:
        yield
    finally:
        _READING.reset(token)


def load(cfg: str | Path | dict, nc: int | None = None, dialect: str | None = None,
         scale: str | None = None) -> ModelConfig:
    """Read a config (bundled name, path or dict) in its dialect: detected from its keys unless ``dialect``
    (or an enclosing :func:`reading`) names one; ``scale`` picks an Ultralytics ``scales:`` row."""
    defaults = _READING.get()
    dialect = dialect or defaults.get("dialect")
    scale = scale or defaults.get("scale")
    if isinstance(cfg, dict):
        name, file = str(cfg.get("name", "model")), "<dict>"
        data = {k: v for k, v in cfg.items() if k != "name"}  # a dict config may carry its model name
    else:
        name, file, text = resolve(cfg)
        try:
            data = yaml.safe_load(text)  # the safe loader only: no tags that build Python objects
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            if isinstance(e, yaml.reader.ReaderError) and isinstance(e.position, int):
                line = text.count("\n", 0, e.position) + 1
                where = f" at line {line}, column {e.position - (text.rfind(chr(10), 0, e.position) + 1) + 1}"
            problem = getattr(e, "problem", None) or (str(e).splitlines() or ["?"])[0]
            raise ConfigError(f"invalid YAML{where}: {problem}", file=file) from None
        except (RecursionError, MemoryError):
            raise ConfigError(f"invalid YAML: nested too deeply (max {MAX_DEPTH} levels)", file=file) from None
    check_size(data, file)
    return validate(data, name, file, nc, dialect, scale)


def check_size(data, file: str) -> None:
    """Refuse self-referencing aliases, alias bombs ("billion laughs") and deep nesting, before
    anything walks the structure."""
    budget = [MAX_NODES]

    def walk(v, depth, stack):
        budget[0] -= 1
        if budget[0] < 0:
            raise ConfigError(f"too large: more than {MAX_NODES} values after expanding YAML aliases", file=file)
        if isinstance(v, (list, dict)):
            if depth > MAX_DEPTH:
                raise ConfigError(f"nested too deeply (max {MAX_DEPTH} levels)", file=file)
            if id(v) in stack:
                raise ConfigError("a YAML alias refers to itself (recursive structure)", file=file)
            stack.add(id(v))
            for x in (v.values() if isinstance(v, dict) else v):
                walk(x, depth + 1, stack)
            stack.discard(id(v))

    walk(data, 0, set())


def _err(msg, file, layer=None, field=None):
    return ConfigError(msg, file=file, layer=layer, field=field)


def _number(data, key, file, default=None, positive=True):
    v = data.get(key, default)
    if v is None:
        raise _err("missing", file, field=key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:  # NaN
        raise _err(f"must be a number, got {show(v)}", file, field=key)
    if positive and v <= 0:
        raise _err(f"must be positive, got {show(v)}", file, field=key)
    return v


def validate(data, name: str, file: str, nc_override: int | None = None, dialect: str | None = None,
             scale: str | None = None) -> ModelConfig:
    """Check a config mapping in its dialect (detected from its keys unless ``dialect`` is given)."""
    if data is None:
        raise _err("empty config", file)
    if not isinstance(data, dict):
        raise _err(f"a model config is a mapping with backbone/head sections, got {type(data).__name__}", file)
    if nc_override is not None:
        if isinstance(nc_override, bool) or not isinstance(nc_override, int) or not 0 < nc_override <= 100_000:
            raise FlopscopeError(f"--nc must be a positive integer (at most 100000), got {show(nc_override)}")
        nc = nc_override
    else:
        nc = data.get("nc", 80)
    if isinstance(nc, bool) or not isinstance(nc, int) or nc <= 0 or nc > 100_000:
        raise _err(f"must be a positive integer (at most 100000), got {show(nc)}", file, field="nc")
    d = get_dialect(dialect) if dialect else detect_dialect(data)
    d.check_keys(data, file)
    sc = d.scaling(data, file, scale, name)
    gd, gw = sc["depth_multiple"], sc["width_multiple"]
    ch = data.get("ch", data.get("channels", 3))
    field_ch = "ch" if "ch" in data or "channels" not in data else "channels"
    if isinstance(ch, bool) or not isinstance(ch, int) or not 0 < ch <= 4096:
        raise _err(f"must be a positive integer (at most 4096), got {show(ch)}", file, field=field_ch)
    anchors = d.anchors(data, file) if hasattr(d, "anchors") else None
    extra = d.read_extra(data, file) if hasattr(d, "read_extra") else {}
    act = data.get("activation")
    if act is not None and not isinstance(act, str):
        raise _err(f"must be a string such as nn.LeakyReLU(0.1), got {show(act)}", file, field="activation")

    rows: list[LayerRow] = []
    blocks = 0
    for section in ("backbone", "head"):
        sec = data.get(section)
        if sec is None:
            raise _err("missing section", file, field=section)
        if not isinstance(sec, list):
            raise _err(f"must be a list of [from, number, module, args] rows, got {type(sec).__name__}", file,
                       field=section)
        for row in sec:
            if len(rows) >= MAX_ROWS:
                raise _err(f"more than {MAX_ROWS} layers is not plausible", file, len(rows), section)
            r = _row(row, len(rows), section, file)
            n = max(round(r.n * gd), 1) if r.n > 1 else r.n
            if n > MAX_REPEATS:
                raise _err(f"{r.n} repeats x depth_multiple {gd} = {n} is not plausible (max {MAX_REPEATS})",
                           file, r.index, "number")
            blocks += n
            if blocks > MAX_BLOCKS:
                raise _err(f"the model would have more than {MAX_BLOCKS} blocks in total (repeats after "
                           f"depth_multiple); not plausible", file, r.index, "number")
            rows.append(r)
    if not rows:
        raise _err("no layers", file, field="backbone")
    return ModelConfig(name, file, nc, gd, gw, anchors, ch, act, rows, data, dialect=d.name, scale=sc["scale"],
                       max_channels=sc["max_channels"], extra=extra, notes=list(sc["notes"]))


def _row(row, i, section, file) -> LayerRow:
    if not isinstance(row, list) or len(row) != 4:
        got = f"a list of {len(row)}" if isinstance(row, list) else show(row)
        raise _err(f"a row is [from, number, module, args], got {got}", file, i, section)
    f, n, m, args = row
    if isinstance(f, bool) or not isinstance(f, (int, list)) or (isinstance(f, list) and (
            not f or not all(isinstance(x, int) and not isinstance(x, bool) for x in f))):
        raise _err(f"must be an int or a list of ints, got {show(f)}", file, i, "from")
    if isinstance(f, list) and len(f) > MAX_FROM:
        raise _err(f"{len(f)} inputs is not plausible (max {MAX_FROM})", file, i, "from")
    for x in f if isinstance(f, list) else [f]:
        if i == 0 and x != -1:
            raise _err(f"the first layer can only take the input (-1), got {x}", file, i, "from")
        if not (x == -1 or -i <= x < i):
            kind = "a later layer (forward reference)" if x >= i else "a layer before the first"
            raise _err(f"index {x} points to {kind}; valid: -1 or {-i}..{i - 1}", file, i, "from")
    if isinstance(n, bool) or not isinstance(n, int):
        raise _err(f"must be an integer, got {show(n)}", file, i, "number")
    if n < 1:
        raise _err(f"must be at least 1, got {n}", file, i, "number")
    if n > MAX_REPEATS:
        raise _err(f"{n} repeats is not plausible (max {MAX_REPEATS})", file, i, "number")
    if not isinstance(m, str) or not m:
        raise _err(f"must be a module name, got {show(m)}", file, i, "module")
    if len(m) > 100 or not _NAME.match(m):
        raise _err(f"{show(m)} is not a module name; names resolve through the registry and are never "
                   f"evaluated", file, i, "module")
    if not isinstance(args, list):
        raise _err(f"must be a list, got {show(args)}", file, i, "args")
    return LayerRow(i, f, n, m, args, section)


def resolve_args(args: list, nc: int, anchors, file: str, index: int, symbols: dict | None = None) -> list:
    """Substitute the symbols and parse literal strings; never evaluate."""
    if symbols is None:
        symbols = {"nc": nc, "anchors": anchors, "None": None, "True": True, "False": False}
    out = []
    for a in args:
        if isinstance(a, str):
            if a in symbols:
                a = symbols[a]
            elif not _WORD.match(a):
                if len(a) > MAX_LITERAL:
                    raise _err(f"a string argument of {len(a)} characters is not plausible (max {MAX_LITERAL})",
                               file, index, "args")
                try:
                    a = ast.literal_eval(a)
                except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                    raise _err(f"{show(a)} is neither a known symbol nor a literal (configs are never evaluated)",
                               file, index, "args") from None
        out.append(a)
    return out


_ACTS = ("ReLU", "ReLU6", "SiLU", "LeakyReLU", "Hardswish", "Hardsigmoid", "Mish", "GELU", "ELU", "PReLU", "Sigmoid",
         "Tanh", "Identity")


def parse_activation(text: str, file: str):
    """``nn.LeakyReLU(0.1)`` -> an instance, with literal arguments only."""
    import torch.nn as nn

    node = None
    if len(text) <= MAX_LITERAL:
        try:
            node = ast.parse(text.strip(), mode="eval").body
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            node = None
    name = None
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "nn":
            name = func.attr
        elif (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Attribute) and func.value.attr == "nn"
              and isinstance(func.value.value, ast.Name) and func.value.value.id == "torch"):
            name = func.attr  # torch.nn.ReLU() (Ultralytics configs)
        elif isinstance(func, ast.Name):
            name = func.id
    if name not in _ACTS:
        raise _err(f"{show(text)} is not an activation of the form nn.Name(literal args), which is never "
                   f"evaluated; known: {', '.join(_ACTS)}", file, field="activation")
    try:
        args = [ast.literal_eval(a) for a in node.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg is not None}
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise _err(f"{show(text)}: arguments must be literals (numbers, True/False); configs are never evaluated",
                   file, field="activation") from None
    if len(kwargs) != len(node.keywords):
        raise _err(f"{show(text)}: **kwargs are not allowed", file, field="activation")
    for v in (*args, *kwargs.values()):
        if isinstance(v, bool) or v is None or (isinstance(v, str) and len(v) <= 20):  # inplace=, approximate=
            continue
        if not isinstance(v, (int, float)) or not abs(v) <= MAX_ACT_NUMBER:
            raise _err(f"{show(text)}: arguments must be numbers up to {MAX_ACT_NUMBER}, True/False or short "
                       f"words, got {show(v)}", file, field="activation")
    try:
        return getattr(nn, name)(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - any constructor failure is a config error
        raise _err(f"bad arguments in {show(text)}: {type(e).__name__}: {e}", file, field="activation") from None
