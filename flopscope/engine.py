"""The counting engine: layer-by-layer shape propagation, each layer counted by a counter.

``count_layers(model, shape, counter=FORMULAS)`` walks the rows of a YOLO-style model -- our
:class:`~flopscope.builder.DetectionModel` (rows from ``model.layers``) or any model object whose
``model`` sequence holds layers carrying ``.f`` (from) and ``.i`` (index), as YOLOv5's and
Ultralytics' do -- routes each row's inputs by its ``from`` (:func:`layer_inputs`, the one place
that does it) and counts each row with ``counter``:

* :data:`FORMULAS` (default): the registered cost formulas on shapes; a module without one is
  counted by the op-level counter on a meta forward of that module ("formula; op-level (Cls)");
* :data:`OP_LEVEL`: the op-level counter alone (:mod:`flopscope.opcount`), no formula used.

A counter is any object with ``name`` and ``count(module, inputs) -> (out_shape, Cost, notes, formula)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .cost import Cost
from .errors import ConfigError, FlopscopeError
from .shapes import ShapeError
from .tracer import BUILT_ON_CPU_NOTE, NOT_COUNTED, OP_LEVEL, Note, Tracer


@dataclass
class LayerCount:
    index: int
    in_shape: object
    out_shape: object
    cost: Cost
    notes: list[Note] = field(default_factory=list)
    formula: bool = True  # counted by formulas (with op-level parts named in notes), not op-level alone

    @property
    def counted_by(self) -> str:
        head = ["formula"] if self.formula or not self.notes else []
        return "; ".join([*head, *self.notes])


def layer_inputs(f, x, outputs):
    """The input of a row with ``from`` ``f``: ``x`` (the previous row's output) for -1, else
    ``outputs[j]`` (every row's output so far, by index) -- one value, or a list for a list ``f``.
    Works the same on tensors and on shapes."""
    if f == -1:
        return x
    if isinstance(f, int):
        return outputs[f]
    return [x if j == -1 else outputs[j] for j in f]


class FormulaCounter:
    """Registered formulas; modules without one counted op-level (noted on the row)."""

    name = "formula"

    def count(self, module, xin):
        t = Tracer()
        out = t(module, xin)
        return out, t.cost, t.notes, True


class OpLevelCounter:
    """The op-level counter only: every row runs on meta under :class:`~flopscope.opcount.OpCounter`."""

    name = "op-level"

    def count(self, module, xin):
        from .opcount import count_ops, not_counted_note

        res = count_ops(module, [xin])
        cost = Cost()
        for term in res.terms:
            cost.add(term.name, term.kind, term.op, term.value, term.elems)
        notes = [Note(f"op-level ({type(module).__name__}{', on CPU' if res.device == 'cpu' else ''})", OP_LEVEL)]
        missing = not_counted_note(res.not_counted)
        if missing:
            notes.append(Note(missing, NOT_COUNTED, res.not_counted))
        return res.out, cost, notes, False


FORMULAS = FormulaCounter()
OP_LEVEL = OpLevelCounter()


def model_rows(model):
    """(module, from, index, name, built on CPU) of every row of a YOLO-style model."""
    infos = getattr(model, "layers", None)
    if infos is not None and len(infos) == len(model.model) and all(hasattr(i, "f") for i in infos):
        return [(m, i.f, i.index, i.module, getattr(i, "built_on_cpu", False)) for m, i in zip(model.model, infos)]
    return [(m, m.f, getattr(m, "i", k), type(m).__name__, False) for k, m in enumerate(model.model)]


def is_yolo_style(model) -> bool:
    """A ``.model`` sequence whose layers carry ``.f`` and ``.i`` (YOLOv5's / Ultralytics' model objects)."""
    seq = getattr(model, "model", None)
    try:
        layers = list(seq)
    except TypeError:
        return False
    return bool(layers) and all(hasattr(m, "f") and hasattr(m, "i") for m in layers)


def count_layers(model, shape, counter=FORMULAS) -> list[LayerCount]:
    """Cost of every row for an input of ``shape`` (B, C, H, W), each row counted by ``counter``."""
    out: list[LayerCount] = []
    y: list = []
    x = tuple(shape)
    file = getattr(getattr(model, "config", None), "file", None)
    for m, f, index, name, on_cpu in model_rows(model):
        xin = layer_inputs(f, x, y)
        where = dict(file=file, layer=index)
        try:
            x, cost, notes, formula = counter.count(m, xin)
            _check_shape(x)
        except ShapeError as e:
            raise ConfigError(f"{name}: {e} (input {_fmt(xin)}, image {shape[2]}x{shape[3]})", **where,
                              field="shape") from None
        except FlopscopeError as e:
            raise ConfigError(f"{name}: {e}", **where, field="module") from None
        except RecursionError as e:
            raise ConfigError(f"{name}: nested too deeply to count", **where, field="module") from e
        except Exception as e:  # noqa: BLE001 - a formula failing on odd hyper-parameters (k=0, s=0, dim=5 ...)
            msg = str(e).replace("\n", " ")[:200]
            args = getattr(model.layers[len(out)], "args", None) if hasattr(model, "layers") else None
            raise ConfigError(f"{name}{_short(args) if args is not None else ''} cannot run on input {_fmt(xin)}: "
                              f"{type(e).__name__}: {msg}", **where, field="args") from e
        y.append(x)
        notes = list(notes)
        if on_cpu:
            notes.append(BUILT_ON_CPU_NOTE)
        out.append(LayerCount(index, xin, x, cost, notes, formula))
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
