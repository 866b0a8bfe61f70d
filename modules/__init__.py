"""The module zoo: importing this package registers every bundled module and its formula.

One file per family; each module's class, YAML channel rule and cost formula sit together.
"""
from . import yolov5  # noqa: F401
