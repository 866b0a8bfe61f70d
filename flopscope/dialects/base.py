"""The dialect interface and the validation both dialects share (nc, ch, activation, rows)."""
from __future__ import annotations

import math

from ..errors import ConfigError, FlopscopeError, suggestion


def err(msg, file, layer=None, field=None):
    return ConfigError(msg, file=file, layer=layer, field=field)


class Dialect:
    """One YAML dialect (see :mod:`flopscope.dialects`).  Subclasses set the class attributes and
    override the hooks."""

    name = ""
    title = ""
    #: top-level keys this dialect reads; any other key is an error
    keys: tuple[str, ...] = ()
    #: keys that only this dialect uses (their presence selects it in auto-detection)
    own_keys: tuple[str, ...] = ()

    # -- detection / schema -------------------------------------------------------------------
    def claims(self, data: dict) -> bool:
        return any(k in data for k in self.own_keys)

    def check_keys(self, data: dict, file: str) -> None:
        for k in data:
            if k not in self.keys:
                hint = suggestion(str(k), self.keys)
                if not hint:
                    from . import names, get_dialect

                    other = [n for n in names() if n != self.name and k in get_dialect(n).keys]
                    if other:
                        hint = (f" ({k!s} is a key of the {get_dialect(other[0]).title} dialect, "
                                f"which this config is not read as; see --dialect)")
                raise err(f"unknown top-level key {str(k)!r} in a {self.title} config{hint}; "
                          f"known keys: {', '.join(self.keys)}", file, field=str(k))

    def scaling(self, data: dict, file: str, scale: str | None, name: str) -> dict:
        """-> dict(depth_multiple=, width_multiple=, max_channels=, scale=, notes=[])"""
        raise NotImplementedError

    # -- building -------------------------------------------------------------------------------
    def no(self, conf) -> int:
        """The YOLOv5-style unscaled detection width (0 where the dialect has none)."""
        return 0

    def width(self, row, c2: int) -> int:
        """Output channels of a channel-scaled module after the width gain."""
        raise NotImplementedError

    def symbols(self, conf) -> dict:
        """Names a YAML argument may use (substituted, never evaluated)."""
        return {"nc": conf.nc, "None": None, "True": True, "False": False}

    def initial_state(self, conf) -> dict:
        return {}

    #: why the report has no ``model_info_gflops`` for this dialect ('' when it has one)
    model_info_note = ""

    def model_info_probe(self, model) -> int | None:
        """Image size of the probe the dialect's own ``model_info`` runs (None: not emulated)."""
        return int(max(model.stride.max().item(), 32))

    #: True where the dialect's own ``model.info()`` is ultralytics' stride-aware ``get_flops`` (then
    #: ``model_info_gflops`` is that figure); False where it is YOLOv5's legacy probe x area
    model_info_stride_aware = False

    def model_info_min_cells(self, model) -> int:
        """``min_cells`` that ultralytics' ``get_flops`` passes to ``thop.profile`` for this model (RT-DETR
        decoders need wider proxies); 1 for models without such a decoder."""
        return 1

    def strides(self, model, shapes, head_inputs, s: int):
        """Per-level strides of the head (a tensor) from a shape propagation at s x s."""
        raise NotImplementedError


def make_divisible(x: float, divisor: int = 8) -> int:
    return int(math.ceil(x / divisor) * divisor)


__all__ = ["Dialect", "FlopscopeError", "err", "make_divisible"]
