"""flopscope: exact, explainable model complexity for YOLOv5-style detectors.

API::

    import flopscope
    model = flopscope.build_model("yolov5s")          # meta device: no weights allocated
    report = flopscope.profile("yolov5s", img=640)     # per-layer params / MACs / FLOPs
    report.to_dict()                                   # == `flopscope model yolov5s --json -`
"""
from .builder import DetectionModel, build_model
from .channels import ChannelRule, concat, conv_like, conv_like_repeat, custom, detect, passthrough, same_channel
from .errors import ConfigError, FlopscopeError
from .profile import Report, profile
from .registry import formula, register

__version__ = "0.1.0"

__all__ = ["build_model", "profile", "Report", "DetectionModel", "register", "formula", "ChannelRule",
           "conv_like", "conv_like_repeat", "same_channel", "passthrough", "concat", "detect", "custom",
           "FlopscopeError", "ConfigError", "__version__"]
