"""Reading model configs safely: bundled names or paths, YAML safe loader, literal args only.

Nothing in a config is ever evaluated.  Module names resolve through the registry, the
symbols ``nc``, ``anchors``, ``None``, ``True``, ``False`` are substituted, other strings must
be plain words (``'nearest'``, ``'concat'``) or Python literals (``'[5, 9, 13]'``), and the
``activation:`` key accepts only ``nn.<Activation>(<literal args>)``.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from .errors import ConfigError, suggestion

MAX_REPEATS = 1000
_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def bundled_names() -> list[str]:
    root = resources.files("flopscope.yamls")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def resolve(cfg: str | Path) -> tuple[str, str, str]:
    """Return (name, display path, text) for a bundled name or a file path."""
    s = str(cfg)
    p = Path(s)
    if p.is_file():
        try:
            data = p.read_bytes()
        except OSError as e:
            raise ConfigError(f"cannot read config: {e.strerror}", file=s) from None
        return p.stem, s, _decode(data, s)
    if p.is_dir():
        raise ConfigError("is a directory, not a config file", file=s)
    stem = p.name.removesuffix(".yaml").removesuffix(".yml")
    if len(p.parts) == 1:
        f = resources.files("flopscope.yamls") / f"{stem}.yaml"
        if f.is_file():
            return stem, f"{stem}.yaml (bundled)", f.read_text(encoding="utf-8")
    raise ConfigError(f"no such file, and no bundled config of that name{suggestion(stem, bundled_names())}", file=s)


def _decode(data: bytes, where: str) -> str:
    if b"\x00" in data:
        raise ConfigError("not a text file (binary content)", file=where)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", file=where) from None


@dataclass
class LayerRow:
    index: int
    f: int | list
    n: int
    module: str
    args: list
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

    @property
    def na(self) -> int:
        return len(self.anchors[0]) // 2 if isinstance(self.anchors, list) else self.anchors


def load(cfg: str | Path | dict, nc: int | None = None) -> ModelConfig:
    if isinstance(cfg, dict):
        name, file, data = cfg.get("name", "model"), "<dict>", cfg
    else:
        name, file, text = resolve(cfg)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ConfigError(f"invalid YAML{where}: {problem}", file=file) from None
    return validate(data, name, file, nc)


def _err(msg, file, layer=None, field=None):
    return ConfigError(msg, file=file, layer=layer, field=field)


def _number(data, key, file, default=None, positive=True):
    v = data.get(key, default)
    if v is None:
        raise _err("missing", file, field=key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:  # NaN
        raise _err(f"must be a number, got {v!r}", file, field=key)
    if positive and v <= 0:
        raise _err(f"must be positive, got {v!r}", file, field=key)
    return v


def validate(data, name: str, file: str, nc_override: int | None = None) -> ModelConfig:
    if data is None:
        raise _err("empty config", file)
    if not isinstance(data, dict):
        raise _err(f"a model config is a mapping with backbone/head sections, got {type(data).__name__}", file)
    nc = nc_override if nc_override is not None else data.get("nc", 80)
    if isinstance(nc, bool) or not isinstance(nc, int) or nc <= 0 or nc > 100_000:
        raise _err(f"must be a positive integer, got {nc!r}", file, field="nc")
    gd = _number(data, "depth_multiple", file, 1.0)
    gw = _number(data, "width_multiple", file, 1.0)
    if gd > 100 or gw > 100:
        raise _err("multiples above 100 are not plausible", file, field="depth_multiple" if gd > 100 else "width_multiple")
    ch = data.get("ch", 3)
    if isinstance(ch, bool) or not isinstance(ch, int) or not 0 < ch <= 4096:
        raise _err(f"must be a positive integer, got {ch!r}", file, field="ch")
    anchors = data.get("anchors", 3)
    if isinstance(anchors, bool) or not isinstance(anchors, (int, list)):
        raise _err(f"must be a list of per-level anchor lists or an int, got {anchors!r}", file, field="anchors")
    if isinstance(anchors, int):
        if not 0 < anchors <= 100:
            raise _err(f"must be positive, got {anchors}", file, field="anchors")
    else:
        if not anchors or not all(isinstance(a, list) and a and len(a) % 2 == 0 and
                                  all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in a)
                                  for a in anchors):
            raise _err("each level must be a non-empty list of w,h pairs of numbers", file, field="anchors")
    act = data.get("activation")
    if act is not None and not isinstance(act, str):
        raise _err(f"must be a string such as nn.LeakyReLU(0.1), got {act!r}", file, field="activation")

    rows: list[LayerRow] = []
    for section in ("backbone", "head"):
        sec = data.get(section)
        if sec is None:
            raise _err("missing section", file, field=section)
        if not isinstance(sec, list):
            raise _err(f"must be a list of [from, number, module, args] rows, got {type(sec).__name__}", file,
                       field=section)
        for row in sec:
            rows.append(_row(row, len(rows), section, file))
    if not rows:
        raise _err("no layers", file, field="backbone")
    return ModelConfig(name, file, nc, gd, gw, anchors, ch, act, rows, data)


def _row(row, i, section, file) -> LayerRow:
    if not isinstance(row, list) or len(row) != 4:
        raise _err(f"a row is [from, number, module, args], got {row!r}"[:200], file, i, section)
    f, n, m, args = row
    if isinstance(f, bool) or not isinstance(f, (int, list)) or (isinstance(f, list) and (
            not f or not all(isinstance(x, int) and not isinstance(x, bool) for x in f))):
        raise _err(f"must be an int or a list of ints, got {f!r}", file, i, "from")
    for x in f if isinstance(f, list) else [f]:
        if i == 0 and x != -1:
            raise _err(f"the first layer can only take the input (-1), got {x}", file, i, "from")
        if not (x == -1 or -i <= x < i):
            kind = "a later layer (forward reference)" if x >= i else "a layer before the first"
            raise _err(f"index {x} points to {kind}; valid: -1 or {-i}..{i - 1}", file, i, "from")
    if isinstance(n, bool) or not isinstance(n, int):
        raise _err(f"must be an integer, got {n!r}", file, i, "number")
    if n < 1:
        raise _err(f"must be at least 1, got {n}", file, i, "number")
    if n > MAX_REPEATS:
        raise _err(f"{n} repeats is not plausible (max {MAX_REPEATS})", file, i, "number")
    if not isinstance(m, str) or not m:
        raise _err(f"must be a module name, got {m!r}", file, i, "module")
    if not _WORD.match(m):
        raise _err(f"{m!r} is not a module name (configs are never evaluated)", file, i, "module")
    if not isinstance(args, list):
        raise _err(f"must be a list, got {args!r}"[:200], file, i, "args")
    return LayerRow(i, f, n, m, args, section)


def resolve_args(args: list, nc: int, anchors, file: str, index: int) -> list:
    """Substitute the symbols and parse literal strings; never evaluate."""
    symbols = {"nc": nc, "anchors": anchors, "None": None, "True": True, "False": False}
    out = []
    for a in args:
        if isinstance(a, str):
            if a in symbols:
                a = symbols[a]
            elif not _WORD.match(a):
                try:
                    a = ast.literal_eval(a)
                except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                    raise _err(f"{a!r} is neither a known symbol nor a literal (configs are never evaluated)"[:300],
                               file, index, "args") from None
        out.append(a)
    return out


_ACTS = ("ReLU", "ReLU6", "SiLU", "LeakyReLU", "Hardswish", "Hardsigmoid", "Mish", "GELU", "ELU", "PReLU", "Sigmoid",
         "Tanh", "Identity")


def parse_activation(text: str, file: str):
    """``nn.LeakyReLU(0.1)`` -> an instance, with literal arguments only."""
    import torch.nn as nn

    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        node = None
    name = None
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "nn":
            name = func.attr
        elif isinstance(func, ast.Name):
            name = func.id
    if name not in _ACTS:
        raise _err(f"{text!r} is not an activation of the form nn.Name(literal args); known: "
                   f"{', '.join(_ACTS)}", file, field="activation")
    try:
        args = [ast.literal_eval(a) for a in node.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
        return getattr(nn, name)(*args, **kwargs)
    except (ValueError, TypeError, SyntaxError) as e:
        raise _err(f"bad arguments in {text!r}: {e}", file, field="activation") from None
