"""YAML dialects: how one family of model configs is read and built.

A :class:`Dialect` owns everything that differs between the YOLOv5 format (``models/*.yaml`` of
ultralytics/yolov5) and the Ultralytics format (``ultralytics/cfg/models/*/*.yaml`` of the
``ultralytics`` package, 8.4.x):

* schema validation: its top-level keys (an unknown key is a one-line error naming it, with a
  suggestion), its scaling keys (``depth_multiple``/``width_multiple`` or ``scales:``);
* the row context handed to channel rules (:class:`flopscope.channels.Row`): depth/width gains,
  ``max_channels``, ``nc`` and the dialect's width rule (:meth:`Dialect.width`);
* stride discovery after the build;
* its module name space in the registry (``@register(..., dialect=NAME)``).

:func:`detect_dialect` picks one from the config's keys; ``--dialect`` overrides it.
"""
from __future__ import annotations

from ..errors import FlopscopeError, suggestion
from .base import Dialect

_DIALECTS: dict[str, Dialect] = {}


def _load() -> dict[str, Dialect]:
    if not _DIALECTS:
        from .ultralytics import ULTRALYTICS
        from .yolov5 import YOLOV5

        _DIALECTS.update({d.name: d for d in (YOLOV5, ULTRALYTICS)})
    return _DIALECTS


def names() -> list[str]:
    return list(_load())


def get_dialect(name: str | Dialect) -> Dialect:
    if isinstance(name, Dialect):
        return name
    ds = _load()
    if name not in ds:
        raise FlopscopeError(f"unknown dialect {name!r}{suggestion(str(name), ds)}; known: {', '.join(ds)}")
    return ds[name]


def detect_dialect(data: dict) -> Dialect:
    """The dialect a config mapping is written in: a YOLOv5-only key (``anchors:``) means YOLOv5; an
    Ultralytics-only key (``scales:``, ``reg_max:``, ``end2end:``, ``kpt_shape:`` ...) or an anchor-free head
    row means Ultralytics; anything else is read as YOLOv5."""
    ds = _load()
    for d in ds.values():
        if d.claims(data):
            return d
    return ds["yolov5"]


__all__ = ["Dialect", "detect_dialect", "get_dialect", "names"]
