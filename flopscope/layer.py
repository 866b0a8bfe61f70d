"""One registered module on its own: ``build_layer`` and ``profile_layer``.

``build_layer("C3", 128, 256)`` builds the module exactly as a YAML row ``[-1, 1, C3, [256]]``
would after a layer with 128 output channels: through the module's own channel rule, with a
synthetic :class:`~flopscope.channels.Row` (``ch=[c1]``, ``from=-1``, ``n=1``, width 1.0).

``profile_layer`` counts it with the cost formulas at one input size, names each term, and says
how each term and the total grow with the input's H·W.  The scaling classes are found by
*fitting* the counted values at several sizes (multiples of the requested size, and odd sizes
that are not multiples of 2, 3, 5 or 7), never by reading the module type:

* ``constant`` -- the same at every size (an FC after global pooling);
* ``proportional`` -- exactly ``a·H·W``;
* ``quadratic`` -- exactly ``a·(H·W)²`` (global attention: ``q·kᵀ``, ``attn·v``), or that of a padded
  size (attention over regions of a map padded to a multiple of the window count);
* ``step`` -- proportional to a rounded size (``⌈H/2⌉·⌈W/2⌉`` for a stride-2 conv, windows padded
  to a multiple of 7 ...), or present only at sizes that need padding;
* ``other`` -- anything else (the fit that holds, if a simple one does, is given as detail).

JSON schema of :meth:`LayerReport.to_dict` (later features add keys, never rename)::

    {"module", "c1", "c2", "n", "args", "constructor_args", "channel_rule", "hw": [H, W], "batch",
     "in_shape", "out_shape", "params", "macs", "flops", "elementwise_flops", "macs_by_kind",
     "terms": [{"name", "kind", "op", "value", "unit", "share", "scaling", "scaling_detail", "values"}],
     "sizes": [[H, W], ...], "scaling": {"macs": {...}, "elementwise_flops": {...}},
     "summary", "notes", "units"}
"""
from __future__ import annotations

import contextlib
import inspect
import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from . import units
from .channels import Row, concat, conv_like, conv_like_repeat, detect
from .cost import MAC_KINDS
from .errors import FlopscopeError
from .inputs import MAX_HW, parse_hw  # noqa: F401  (re-exported: layer.parse_hw)
from .registry import ModuleSpec, lookup
from .scaling import (  # noqa: F401  (re-exported: the fitting lived here)
    N_MULTIPLES, Scaling, _BASES, _TERM_FITS, _close, _formula, _num, _ratio, _round_label, _rounded, _step_fit,
    _step_scaling, _try, classify, classify_total, fit)
from .shapes import ShapeError
from .tracer import BUILT_ON_CPU_NOTE, Tracer

CONV_RULES = ("conv", "conv+n", "c3k2", "c2fcib", "sppf")  # rules whose first YAML argument is the output channels
LIST_INPUT_RULES = ("concat", "detect", "segment", "ul-detect", "ul-segment", "v10detect")  # take a list of inputs
MAX_CHANNELS = 1_000_000

UNITS = units.pick(
    ("params", "count"), "macs", "flops", "elementwise_flops", "terms.value", "terms.share", "terms.values")


# -- building ---------------------------------------------------------------------------------
def _layer_dialect(name: str) -> str:
    """The name space a module name is looked up in: ``--dialect`` if given, else the common (YOLOv5) one, else the
    one dialect that has the name (``C3k2`` -> ultralytics)."""
    from .config import _READING
    from .registry import COMMON, SPACES, load_zoo

    load_zoo()
    chosen = _READING.get().get("dialect")
    if chosen:
        return chosen
    if name in SPACES[COMMON]:
        return COMMON
    owners = [d for d, sp in SPACES.items() if name in sp]
    return owners[0] if len(owners) == 1 else COMMON


def is_conv_rule(rule) -> bool:
    return rule is conv_like or rule is conv_like_repeat or rule.name in CONV_RULES


def takes_list_input(rule) -> bool:
    return rule is concat or rule is detect or rule.name in LIST_INPUT_RULES


def _check_int(v, what: str, limit: int = MAX_CHANNELS) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise FlopscopeError(f"{what} must be a positive integer, got {v!r}")
    if v > limit:
        raise FlopscopeError(f"{what} = {v} is not plausible (max {limit})")
    return v


@dataclass
class BuiltLayer:
    module: nn.Module
    spec: ModuleSpec
    yaml_args: list  # the row's args as the rule received them
    constructor_args: list
    c2: object  # int, or a list for multi-output modules
    notes: list = field(default_factory=list)


def _build(name: str, c1: int, c2=None, args=None, device="meta", n: int = 1) -> BuiltLayer:
    from .builder import _construct, skip_init

    if not isinstance(name, str) or not name:
        raise FlopscopeError(f"module name must be a non-empty string, got {name!r}")
    dialect = _layer_dialect(name)
    spec = lookup(name, dialect)
    c1 = _check_int(c1, "c1 (input channels)")
    if c2 is not None:
        c2 = _check_int(c2, "c2 (output channels)")
    n = _check_int(n, "n (repeats)", 1000)
    if args is None:
        args = []
    elif isinstance(args, tuple):
        args = list(args)
    elif not isinstance(args, list):
        raise FlopscopeError(f"args must be a list (the YAML row's args), got {args!r}")
    rule = spec.channels
    notes: list[str] = []
    conv = is_conv_rule(rule)
    yaml_args = [c1 if c2 is None else c2, *args] if conv else list(args)
    from .config import _READING

    f = [-1] * rule.inputs if rule.inputs else -1  # a module that fuses k inputs gets k inputs of c1 channels
    row = Row(0, f, n, list(yaml_args), [c1], 1.0, 80, 3 * 85 if dialect == "yolov5" else 0, None,
              dialect=dialect, scale=_READING.get().get("scale") or "", where=f"{name} (args {list(yaml_args)!r})")
    try:
        ctor_args, c2_out, n_seq = rule(row)
    except FlopscopeError as e:
        if args:
            raise
        raise FlopscopeError(f"{e} (give the YAML row's args: args=[...], or --args '[...]' on the command "
                             f"line)") from None
    except Exception as e:  # noqa: BLE001 - a rule that cannot use these args
        raise FlopscopeError(f"{name}: channel rule {rule.name!r} cannot use args {yaml_args!r}: "
                             f"{type(e).__name__}: {e}"[:300]) from None
    want = c1 if (conv and c2 is None) else c2
    if want is not None and c2_out != want:
        if conv:
            notes.append(f"c2 {want} -> {c2_out} by the channel rule (make_divisible(c2, 8))")
        elif rule.name == "same":
            raise FlopscopeError(f"{name} keeps the channel count (channel rule 'same'): c2 must equal c1 ({c1}) "
                                 f"or be omitted, got {c2}")
        else:
            raise FlopscopeError(f"{name}'s output channels follow its channel rule {rule.name!r} "
                                 f"({rule.description}): {c2_out} here, not {c2}; omit c2")
    arity = _arity_error(name, spec, list(ctor_args), args, conv, c1)
    if arity is not None:
        raise arity
    dev = torch.device(device)
    init_ctx = skip_init() if dev.type == "meta" else contextlib.nullcontext()
    try:
        with torch.device(dev), init_ctx:
            m, on_cpu = _construct(spec, ctor_args, n_seq)
    except FlopscopeError:
        raise
    except Exception as e:  # noqa: BLE001 - any constructor failure is a user error here
        raise FlopscopeError(f"{name}{_short(ctor_args)} failed to build: {type(e).__name__}: {e}"[:400]) from None
    m.eval()
    if on_cpu and dev.type == "meta":
        notes.append(BUILT_ON_CPU_NOTE)
    return BuiltLayer(m, spec, yaml_args, list(ctor_args), c2_out, notes)


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _param_text(p: inspect.Parameter) -> str:
    return p.name if p.default is p.empty else f"{p.name}={p.default!r}"


def _arity_error(name: str, spec: ModuleSpec, ctor_args: list, args: list, conv: bool, c1: int):
    """When the constructor cannot take ``ctor_args`` (required arguments missing, or too many), a one-line
    error naming the YAML args the module needs, its YAML signature and an example; else None.

    The channel rule fills the first constructor arguments (``c1``, ``c2``, ``n`` ...) and passes the given
    ``args`` after them, so the YAML signature is the constructor's parameters from there on."""
    try:
        sig = inspect.signature(spec.cls)
    except (TypeError, ValueError):
        return None  # no signature to read: the constructor reports for itself
    try:
        sig.bind(*ctor_args)
        return None
    except TypeError:
        pass
    params = [p for p in sig.parameters.values() if p.kind in _POSITIONAL]
    varargs = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in sig.parameters.values())
    start = len(ctor_args) - len(args)  # constructor arguments the channel rule fills before the args
    if not 0 <= start <= len(params):
        return None
    head = ["c2"] if conv else []
    yaml_sig = "[" + ", ".join(head + [_param_text(p) for p in params[start:]] + (["*args"] if varargs else [])) + "]"
    where = f"YAML signature {yaml_sig} (channel rule {spec.channels.name!r}; c1 from --c" + \
        (", c2 from --c2, the other args from --args)" if conv else ", the args from --args)")
    missing = [p for p in params[len(ctor_args):] if p.default is p.empty]
    if missing:
        need = params.index(missing[-1]) + 1 - start  # args to give, up to the last required one
        names = ", ".join(p.name for p in missing)
        return FlopscopeError(f"{name} needs YAML arg{'s' * (len(missing) > 1)} {names}, not given: {where}; "
                              f"{_example(name, spec, conv, c1, need, [p.name for p in params[start:start + need]])}")
    if len(ctor_args) > len(params) and not varargs:
        return FlopscopeError(f"{name} takes at most {len(params) - start} YAML arg(s){' after c2' * conv}, got "
                              f"{len(args)} ({list(args)!r}"[:200] + f"): {where}")
    return None


def _example(name: str, spec: ModuleSpec, conv: bool, c1: int, need: int, names: list[str]) -> str:
    """``e.g. flopscope layer NAME --c C --args '[...]'``, with the values of a bundled config's row when one uses
    the module (else placeholders naming the arguments)."""
    found = _bundled_row(name)
    if found is not None:
        cfg, row_args = found
        values = row_args[1:] if conv else row_args
        if len(values) >= need and all(isinstance(v, (int, float, bool, list, tuple)) or v is None
                                       for v in values[:need]):
            return (f"e.g. flopscope layer {name} --c {c1} --args '{list(values[:need])!r}' "
                    f"({cfg}.yaml has [{', '.join(map(repr, row_args))}])")
    return f"e.g. flopscope layer {name} --c {c1} --args '[{', '.join(names)}]' with a literal for each"


def _bundled_row(name: str):
    """(config name, args) of the first row of a bundled config that uses module ``name``, or None."""
    import yaml

    from . import config

    for cfg in config.bundled_names():
        try:
            data = yaml.safe_load(config.resolve(cfg)[2])
        except Exception:  # noqa: BLE001 - an example is optional
            continue
        for section in ("backbone", "head"):
            for row in (data or {}).get(section) or []:
                if isinstance(row, list) and len(row) == 4 and row[2] == name and isinstance(row[3], list):
                    return cfg, row[3]
    return None


def build_layer(name: str, c1: int, c2: int | None = None, args: list | None = None, device="meta",
                n: int = 1) -> nn.Module:
    """Build one registered module from its YAML name, through its own channel rule.

    ``c1`` is the input channel count (``ch[from]``).  For conv-like rules the YAML row's
    ``args`` are ``[c2, *args]`` (``c2`` defaults to ``c1``; ``args`` are the ones after the
    channel count, e.g. ``[3, 2]`` for a 3x3 stride-2 ``Conv``); for other rules ``args`` are
    the row's args as written and ``c2``, if given, must be what the rule gives (``c1`` for
    same-channel modules).  ``n`` is the row's repeat count.  On ``meta`` no weight is allocated.
    """
    return _build(name, c1, c2, args, device, n).module


def _short(args) -> str:
    s = "(" + ", ".join(map(repr, args)) + ")"
    return s if len(s) < 120 else s[:117] + "...)"


# -- counting ---------------------------------------------------------------------------------
def _trace(m: nn.Module, x, list_input: bool, inputs: int | None = None):
    """Trace ``m`` on shape ``x``; modules taking a list of inputs get ``[x]`` (``inputs`` copies of ``x`` when
    the channel rule says how many the module takes)."""
    if inputs:
        t = Tracer()
        xs = [x] * inputs
        return t(m, xs), t, xs
    first, second = ([x], x) if list_input else (x, [x])
    try:
        t = Tracer()
        return t(m, first), t, first
    except ShapeError:
        raise
    except (FlopscopeError, TypeError, ValueError, IndexError, AttributeError) as e:
        try:
            t = Tracer()
            return t(m, second), t, second
        except Exception:  # noqa: BLE001 - report the first failure
            raise e from None


def _group(terms) -> dict:
    """(name, kind, op) -> summed value, in first-seen order (a child called 3 times is one term)."""
    out: dict = {}
    for t in terms:
        key = (t.name, t.kind, t.op)
        out[key] = out.get(key, 0) + t.value
    return out


def _odd_sizes(v: int, count: int = 3) -> list[int]:
    """Sizes above ``v`` that are not multiples of 2, 3, 5 or 7 (so no padding/rounding rule hides)."""
    out, x = [], v + 1
    while len(out) < count:
        if all(x % p for p in (2, 3, 5, 7)):
            out.append(x)
        x += 1
    return out


def probe_sizes(h: int, w: int) -> list[tuple[int, int]]:
    """The sizes a layer is evaluated at: ``(h, w) x {1, 2, 3, 4}``, then three odd, non-square sizes."""
    hs, ws = _odd_sizes(h), _odd_sizes(w)
    return [(h * k, w * k) for k in (1, 2, 3, 4)] + [(hs[0], ws[1]), (hs[1], ws[2]), (hs[2], ws[0])]




# -- the report -------------------------------------------------------------------------------
@dataclass
class LayerTerm:
    name: str
    kind: str
    op: str
    value: int
    share: float | None
    scaling: Scaling
    values: list[int]

    @property
    def unit(self) -> str:
        return "FLOPs" if self.kind == "elementwise" else "MACs"

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "op": self.op, "value": self.value, "unit": self.unit,
                "share": self.share, "scaling": self.scaling.cls, "scaling_detail": self.scaling.detail,
                "values": list(self.values)}


@dataclass
class LayerReport:
    module: str
    c1: int
    c2: object
    n: int
    args: list  # YAML args as given
    constructor_args: list
    channel_rule: str
    hw: tuple
    batch: int
    in_shape: object
    out_shape: object
    params: int
    terms: list[LayerTerm]
    sizes: list[tuple[int, int]]
    scaling: dict  # 'macs' / 'elementwise_flops' -> Scaling
    notes: list[str] = field(default_factory=list)

    @property
    def macs_by_kind(self) -> dict:
        return {k: sum(t.value for t in self.terms if t.kind == k) for k in MAC_KINDS}

    @property
    def macs(self) -> int:
        return sum(t.value for t in self.terms if t.kind != "elementwise")

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def elementwise_flops(self) -> int:
        return sum(t.value for t in self.terms if t.kind == "elementwise")

    def summary(self) -> str:
        """One sentence on how the layer's cost grows with the input's H·W."""
        return scaling_sentence(self)

    def to_dict(self) -> dict:
        from .report import jsonable

        return {
            "module": self.module, "c1": self.c1, "c2": jsonable(self.c2), "n": self.n, "args": jsonable(self.args),
            "constructor_args": jsonable(self.constructor_args), "channel_rule": self.channel_rule,
            "hw": list(self.hw), "batch": self.batch, "in_shape": jsonable(self.in_shape),
            "out_shape": jsonable(self.out_shape), "params": self.params, "macs": self.macs, "flops": self.flops,
            "elementwise_flops": self.elementwise_flops, "macs_by_kind": self.macs_by_kind,
            "terms": [t.to_dict() for t in self.terms], "sizes": [list(s) for s in self.sizes],
            "scaling": {k: v.to_dict() for k, v in self.scaling.items()}, "summary": self.summary(),
            "notes": list(self.notes), "units": UNITS,
        }


def profile_layer(name: str, c1: int, c2: int | None = None, hw=(80, 80), batch: int = 1, args: list | None = None,
                  n: int = 1) -> LayerReport:
    """Count one registered module on a ``(batch, c1, H, W)`` input: params, output shape, named terms,
    and how each term and the total scale with H·W (fitted at several sizes, see module docs)."""
    h, w = parse_hw(hw)
    batch = _check_int(batch, "batch", 1_000_000)
    built = _build(name, c1, c2, args, "meta", n)
    m, spec = built.module, built.spec
    list_input = takes_list_input(spec.channels)
    notes = list(built.notes)
    sizes = probe_sizes(h, w)
    evaluated: list[tuple[int, int]] = []
    grouped: list[dict] = []
    base = None
    for k, (hh, ww) in enumerate(sizes):
        try:
            out, t, x_used = _trace(m, (batch, c1, hh, ww), list_input, spec.channels.inputs)
        except FlopscopeError as e:
            if k == 0:
                raise FlopscopeError(f"{name} at {hh}x{ww}: {e}") from None
            notes.append(f"not evaluated at {hh}x{ww}: {str(e)[:160]}")
            continue
        except Exception as e:  # noqa: BLE001 - a formula that breaks on this shape
            if k == 0:
                raise FlopscopeError(f"{name} at {hh}x{ww}: {type(e).__name__}: {e}"[:300]) from None
            notes.append(f"not evaluated at {hh}x{ww}: {type(e).__name__}: {str(e)[:160]}")
            continue
        if k == 0:
            base = (x_used, out, t)
        for note in t.notes:
            if note not in notes:
                notes.append(note)
        evaluated.append((hh, ww))
        grouped.append(_group(t.cost.terms))
    x_used, out, t0 = base
    keys = list(grouped[0])
    for g in grouped[1:]:
        for key in g:
            if key not in keys:
                keys.append(key)  # a term that appears only at some sizes (padding)
    total_macs = sum(v for (nm, kind, op), v in grouped[0].items() if kind != "elementwise")
    total_ew = sum(v for (nm, kind, op), v in grouped[0].items() if kind == "elementwise")
    terms = []
    for key in keys:
        nm, kind, op = key
        vals = [g.get(key, 0) for g in grouped]
        denom = total_ew if kind == "elementwise" else total_macs
        terms.append(LayerTerm(nm or name, kind, op, vals[0], vals[0] / denom if denom else None,
                               classify(evaluated, vals), vals))
    by_class = {}
    for kinds, label in (((*MAC_KINDS,), "macs"), (("elementwise",), "elementwise_flops")):
        vals = [sum(v for (nm, kind, op), v in g.items() if kind in kinds) for g in grouped]
        classes = {t.scaling.cls for t in terms if t.kind in kinds and t.value}
        by_class[label] = classify_total(evaluated, vals, classes)
    params = sum(p.numel() for p in m.parameters())
    ctor = [a for a in built.constructor_args]
    return LayerReport(name, c1, built.c2, n, built.yaml_args, ctor, spec.channels.name, (h, w), batch, x_used, out,
                       params, terms, evaluated, by_class, notes)


_CLASS_WORDS = {
    "constant": "constant (independent of H and W)",
    "proportional": "proportional to H·W",
    "affine": "a constant part plus a part proportional to H·W",
    "quadratic": "quadratic in H·W",
    "step": "proportional to H·W up to padding / rounding steps",
    "other": "not a simple function of H·W",
}


def _pct(x: float) -> str:
    p = 100 * x
    return f"{p:.0f}%" if p >= 10 else f"{p:.2g}%"


def _describe(s: Scaling, hw) -> str:
    extra = []
    if s.cls != "constant" and s.detail:
        extra.append(s.detail)
    if s.ratio_2x is not None and s.cls != "constant":
        extra.append(f"×{s.ratio_2x:.2f} when H and W double")
    c = s.coefficients or {}
    area = hw[0] * hw[1]
    if s.cls == "quadratic" and c.get("(H·W)²"):
        q = c["(H·W)²"] * area ** 2
        tot = sum(v * {"1": 1, "H·W": area, "(H·W)²": area ** 2}[k] for k, v in c.items())
        if tot:
            extra.append(f"the (H·W)² part is {_pct(q / tot)} at {hw[0]}x{hw[1]}")
        if c.get("H·W", 0) > 0:
            side = math.sqrt(c["H·W"] / c["(H·W)²"])
            extra.append(f"it overtakes the H·W part above about {side:.0f}x{side:.0f}")
    elif s.cls == "affine" and c.get("1"):
        tot = c["1"] + c.get("H·W", 0) * area
        if tot:
            extra.append(f"the constant part is {_pct(c['1'] / tot)} at {hw[0]}x{hw[1]}")
    words = _CLASS_WORDS.get(s.cls, s.cls)
    return words + (f" ({'; '.join(extra)})" if extra else "")


def scaling_sentence(r: LayerReport) -> str:
    parts = []
    for label, key in (("MACs", "macs"), ("element-wise FLOPs", "elementwise_flops")):
        s = r.scaling[key]
        total = r.macs if key == "macs" else r.elementwise_flops
        if not total and s.cls == "constant":
            continue
        parts.append(f"{label}: {_describe(s, r.hw)}")
    if not parts:
        return "no counted work at any size"
    return "; ".join(parts) + "."
