"""The counting engine: layer-by-layer shape propagation with each module's cost formula."""
from __future__ import annotations

from dataclasses import dataclass, field

from .cost import Cost
from .errors import ConfigError, FlopscopeError
from .shapes import ShapeError
from .tracer import Tracer


@dataclass
class LayerCount:
    index: int
    in_shape: object
    out_shape: object
    cost: Cost
    notes: list[str] = field(default_factory=list)

    @property
    def counted_by(self) -> str:
        return "; ".join(["formula", *self.notes]) if self.notes else "formula"


def _inputs(f, x, y):
    if f == -1:
        return x
    if isinstance(f, int):
        return y[f]
    return [x if j == -1 else y[j] for j in f]


def count_layers(model, shape) -> list[LayerCount]:
    """Cost of every YAML layer for an input of ``shape`` (B, C, H, W)."""
    out: list[LayerCount] = []
    y: list = []
    x = tuple(shape)
    for m, info in zip(model.model, model.layers):
        xin = _inputs(info.f, x, y)
        t = Tracer()
        where = dict(file=model.config.file, layer=info.index)
        try:
            x = t(m, xin)
            _check_shape(x)
        except ShapeError as e:
            raise ConfigError(f"{info.module}: {e} (input {_fmt(xin)}, image {shape[2]}x{shape[3]})", **where,
                              field="shape") from None
        except FlopscopeError as e:
            raise ConfigError(f"{info.module}: {e}", **where, field="module") from None
        except RecursionError as e:
            raise ConfigError(f"{info.module}: nested too deeply to count", **where, field="module") from e
        except Exception as e:  # noqa: BLE001 - a formula failing on odd hyper-parameters (k=0, s=0, dim=5 ...)
            msg = str(e).replace("\n", " ")[:200]
            raise ConfigError(f"{info.module}{_short(info.args)} cannot run on input {_fmt(xin)}: "
                              f"{type(e).__name__}: {msg}", **where, field="args") from e
        y.append(x)
        if getattr(m, "flopscope_built_on", None) == "cpu":
            t.note("built on CPU (its constructor cannot run on the meta device)")
        out.append(LayerCount(info.index, xin, x, t.cost, t.notes))
    return out


def propagate(model, shape):
    """Output shape of every layer, and the inputs of the last layer (the head)."""
    layers = count_layers(model, shape)
    return [lc.out_shape for lc in layers], layers[-1].in_shape if layers else None


def _check_shape(s) -> None:
    """An output with a zero or negative dimension (a pooling, stride or upsampling that leaves
    nothing) is a shape error here, not a division by zero later."""
    if isinstance(s, (list, tuple)) and s and all(isinstance(v, int) and not isinstance(v, bool) for v in s):
        if any(v <= 0 for v in s):
            raise ShapeError(f"empty output of shape {list(s)}")
    elif isinstance(s, (list, tuple)):
        for v in s:
            _check_shape(v)


def _short(args) -> str:
    from .config import show

    return show(args)


def _fmt(s) -> str:
    if isinstance(s, list):
        return "[" + ", ".join(_fmt(v) for v in s) + "]"
    return "x".join(map(str, s)) if isinstance(s, tuple) and all(isinstance(v, int) for v in s) else str(s)
