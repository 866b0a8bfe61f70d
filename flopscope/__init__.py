"""flopscope: exact, explainable model complexity for YOLOv5-style detectors.

API::

    import flopscope
    model = flopscope.build_model("yolov5s")          # meta device: no weights allocated
    report = flopscope.profile("yolov5s", img=640)     # per-layer params / MACs / FLOPs
    report.to_dict()                                   # == `flopscope model yolov5s --json -`
    layer = flopscope.build_layer("C3", 128, 256)      # one module through its YAML channel rule
    flopscope.profile_layer("C3", 128, 256, hw=80)     # its terms, and how each scales with H·W
"""
from . import _checkout  # noqa: F401  (first: a source checkout maps modules/ and yamls/ into the package)
from .builder import DetectionModel, build_model
from .channels import ChannelRule, concat, conv_like, conv_like_repeat, custom, detect, passthrough, same_channel
from .errors import ConfigError, FlopscopeError
from .layer import LayerReport, build_layer, profile_layer
from .report import Report, profile
from .registry import formula, register
from .plugins import load_plugin
from .fuse import fuser

__version__ = "0.1.0"

__all__ = ["build_model", "profile", "Report", "DetectionModel", "register", "formula", "ChannelRule",
           "conv_like", "conv_like_repeat", "same_channel", "passthrough", "concat", "detect", "custom",
           "FlopscopeError", "ConfigError", "load_plugin", "__version__"]
__all__ += ["build_layer", "profile_layer", "LayerReport", "fuser"]
