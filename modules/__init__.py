"""The module zoo: importing this package registers every bundled module and its formula.

One file per family; each module's class, YAML channel rule and cost formula sit together.
Every module file in this package is imported (no list to edit when a family is added).
"""
import importlib
import pkgutil

from . import yolov5  # noqa: F401  (first: other families build on its blocks)

for _m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")
