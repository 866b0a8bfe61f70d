"""Channel rules: how a YAML row's args become constructor args and output channels.

This replaces YOLOv5 ``parse_model``'s if/elif chain: every registered module names one rule.
A rule receives a :class:`Row` and returns ``(args, c2, n)`` -- constructor args, output
channels (an int, or a list for multi-output modules) and the repeat count used to wrap the
module in ``nn.Sequential`` (repeatable blocks take ``n`` as an argument and return 1).

The row carries the dialect's context (channel-rule signature, shared by every dialect):

* ``row.n``: repeats after the depth gain (both dialects: ``max(round(n * depth), 1) if n > 1``);
* ``row.gw`` / ``row.gd``: width / depth gain (from ``width_multiple`` or the chosen ``scales:`` row);
* ``row.max_channels``: the scale's channel cap (``inf`` in YOLOv5 configs);
* ``row.nc``; ``row.no`` (YOLOv5 only: ``na * (nc + 5)``, the one output width that is never scaled);
* ``row.dialect`` (name), ``row.scale`` (``'n'`` ... or ``''``) and ``row.state`` (a dict of the
  dialect's build state, e.g. Ultralytics' ``legacy``, ``reg_max``, ``end2end``, ``kpt_shape``);
* ``row.width(c)``: the dialect's output-channel rule -- YOLOv5 ``make_divisible(c * gw, 8)``
  (``c == no`` unscaled), Ultralytics ``make_divisible(min(c, max_channels) * gw, 8)``.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Callable

from .errors import ConfigError


def make_divisible(x: float, divisor: int = 8) -> int:
    """YOLOv5's channel rounding: up to the next multiple of ``divisor``."""
    return int(math.ceil(x / divisor) * divisor)


@dataclass
class Row:
    index: int
    f: int | list
    n: int  # after depth gain
    args: list
    ch: list  # output channels of layers so far (ch[-1] = previous layer)
    gw: float
    nc: int
    no: int  # YOLOv5: detection outputs per anchor-level, na * (nc + 5); 0 in other dialects
    file: str | None = None
    gd: float = 1.0
    max_channels: float = math.inf
    dialect: str = "yolov5"
    scale: str = ""
    state: dict = field(default_factory=dict)
    where: str = ""  # names a row that is no config's (``flopscope layer``: "C3k2 (args [...])") in its errors

    def width(self, c2: int) -> int:
        """Output channels after the dialect's width rule."""
        from .dialects import get_dialect

        return get_dialect(self.dialect).width(self, c2)

    def inputs(self) -> list:
        """``from`` as a list."""
        return self.f if isinstance(self.f, list) else [self.f]

    def c_in(self, f=None) -> int:
        f = self.f if f is None else f
        if isinstance(f, list):
            raise self.error("this module takes one input, 'from' lists several", "from")
        return self.ch[f]

    def error(self, message: str, field: str = "args") -> ConfigError:
        if self.where:
            return ConfigError(f"{self.where}: {message}")
        return ConfigError(message, file=self.file, layer=self.index, field=field)

    def require_int_arg(self, k: int, what: str) -> int:
        if len(self.args) <= k:
            raise self.error(f"missing argument {k} ({what})")
        v = self.args[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise self.error(f"argument {k} ({what}) must be a positive number, got {v!r}")
        return v


@dataclass(frozen=True)
class ChannelRule:
    name: str
    description: str
    apply: Callable[[Row], tuple]
    #: how many inputs ('from' entries) the module takes when that is fixed (``concat_of(2)``); None: one input,
    #: or any list for ``concat`` / heads.  ``flopscope layer`` feeds that many ``--c``-channel inputs.
    inputs: int | None = None

    def __call__(self, row: Row):
        return self.apply(row)


def _conv_like(row: Row, repeat: bool):
    c1 = row.c_in()
    c2 = row.width(row.require_int_arg(0, "output channels"))
    args = [c1, c2, *row.args[1:]]
    n = row.n
    if repeat:
        args.insert(2, n)
        n = 1
    return args, c2, n


conv_like = ChannelRule(
    "conv", "c1 = ch[from]; c2 = make_divisible(args[0] * width_multiple, 8) (Ultralytics: min(args[0], "
            "max_channels) * width); args = [c1, c2, *args[1:]]",
    lambda row: _conv_like(row, repeat=False))

conv_like_repeat = ChannelRule(
    "conv+n", "as conv, and the depth-scaled repeat count n is passed as the 3rd argument (C3-style)",
    lambda row: _conv_like(row, repeat=True))


def _same(row: Row):
    c1 = row.c_in()
    return [c1, *row.args], c1, row.n


same_channel = ChannelRule("same", "c1 = c2 = ch[from]; args = [c1, *args] (channel arguments in the YAML are not scaled)",
                           _same)

passthrough = ChannelRule("none", "args used as written; c2 = ch[from] (modules that take no channel argument)",
                          lambda row: (list(row.args), row.c_in(), row.n))


def _concat(row: Row):
    f = row.f if isinstance(row.f, list) else [row.f]
    return list(row.args), sum(row.ch[x] for x in f), row.n


concat = ChannelRule("concat", "c2 = sum(ch[x] for x in from); args used as written", _concat)


@functools.lru_cache(maxsize=None)
def concat_of(k: int) -> ChannelRule:
    """``concat`` for a module that fuses exactly ``k`` inputs: 'from' must list ``k`` layers."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"concat_of(k): k must be a positive integer, got {k!r}")

    def rule(row: Row):
        f = row.f if isinstance(row.f, list) else [row.f]
        if len(f) != k:
            raise row.error(f"this module fuses exactly {k} inputs, 'from' lists {len(f)}", "from")
        return _concat(row)

    return ChannelRule("concat", f"c2 = sum(ch[x] for x in from); 'from' lists exactly {k} layers; args used as "
                                 f"written", rule, inputs=k)


def _detect(row: Row):
    f = row.f if isinstance(row.f, list) else [row.f]
    args = list(row.args)
    if len(args) < 2:
        raise row.error("a detection head needs [nc, anchors]")
    anchors = args[1]
    if isinstance(anchors, bool) or not isinstance(anchors, (int, list)):
        raise row.error(f"anchors must be a list of lists or an int, got {anchors!r}")
    if isinstance(anchors, int):  # anchors: 3 -> auto-anchor placeholders
        if anchors <= 0:
            raise row.error(f"anchors must be positive, got {anchors}")
        args[1] = [list(range(anchors * 2))] * len(f)
    args.append([row.ch[x] for x in f])
    return args, [row.ch[x] for x in f], row.n


detect = ChannelRule("detect", "args = [nc, anchors, ..., [ch[x] for x in from]]; an int 'anchors' expands to placeholders",
                     _detect)


def custom(name: str, description: str, inputs: int | None = None):
    """Decorator for a module-specific rule: ``@custom('cam', '...') def rule(row): ...`` (``inputs``: how many
    'from' entries the module takes, when fixed)."""

    def deco(fn):
        return ChannelRule(name, description, fn, inputs)

    return deco
