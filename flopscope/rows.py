"""One YAML row's identity, defined once, and the map of the types that carry it.

A config row is written ``[from, number, module, args]``; everything flopscope says about a layer is keyed by
that row and its index.  :class:`RowKey` holds those five fields; every per-layer type extends it instead of
declaring them again, and :meth:`RowKey.key_dict` is the one place they are written to JSON
(``index``, ``from``, ``n``, ``module``, ``args``).

The per-layer types, in the order a run meets them:

* :class:`flopscope.config.LayerRow` -- the row as written (+ ``section``: backbone/head).
* :class:`flopscope.channels.Row` -- the build context a channel rule reads (channels so far, width and depth
  gains, nc, the dialect); built per row, it carries ``n`` after the depth gain and the resolved ``args``.
* :class:`flopscope.builder.LayerInfo` -- the row as built (constructor args as the framework's log prints them,
  output channels, the registered spec).
* :class:`flopscope.engine.LayerCount` -- what one counter measured for the row (shapes, cost terms, notes).
* :class:`flopscope.report.LayerRecord` -- the report's row: params, MACs by kind, element-wise FLOPs, notes.
* :class:`flopscope.sweep.LayerSweep` -- one row across image sizes.

Views that are not rows of one model: ``crosscheck.LayerCheck`` (our figure beside each counter's),
``train.TrainLayer`` (the backward pass of a report row, by index), ``diff.DiffRow`` (a pair of rows of two
models), ``table.TableRow`` (one model of a table).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn


def jsonable(v):
    """A value as JSON can hold it: lists, dicts with string keys, scalars; modules and others by ``repr``/``str``."""
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, nn.Module):
        return repr(v)
    return str(v)


@dataclass
class RowKey:
    index: int  # the row's index in the config (= the framework's layer index)
    f: int | list  # 'from'
    n: int  # 'number' (after the depth gain, where the type says so)
    module: str  # the YAML name
    args: list

    def key_dict(self) -> dict:
        return {"index": self.index, "from": self.f, "n": self.n, "module": self.module, "args": jsonable(self.args)}
