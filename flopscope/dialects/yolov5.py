"""The YOLOv5 dialect (ultralytics/yolov5 v7.0 ``models/*.yaml``): ``depth_multiple`` / ``width_multiple``,
``anchors``, anchor-based heads with ``no = na * (nc + 5)`` outputs per level."""
from __future__ import annotations

import torch

from .base import Dialect, err, make_divisible


def _number(data, key, file, default):
    from ..config import show

    v = data.get(key, default)
    if v is None:
        raise err("missing", file, field=key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:  # NaN
        raise err(f"must be a number, got {show(v)}", file, field=key)
    if v <= 0:
        raise err(f"must be positive, got {show(v)}", file, field=key)
    return v


class YOLOv5Dialect(Dialect):
    name = "yolov5"
    title = "YOLOv5"
    keys = ("nc", "depth_multiple", "width_multiple", "anchors", "activation", "ch", "backbone", "head")
    own_keys = ("anchors",)

    def scaling(self, data, file, scale, name):
        if scale:
            raise err(f"--scale {scale}: a YOLOv5 config has no scales: (it scales by depth_multiple / "
                      f"width_multiple)", file, field="scale")
        gd = _number(data, "depth_multiple", file, 1.0)
        gw = _number(data, "width_multiple", file, 1.0)
        if gd > 100 or gw > 100:
            raise err("multiples above 100 are not plausible", file,
                      field="depth_multiple" if gd > 100 else "width_multiple")
        return dict(depth_multiple=gd, width_multiple=gw, max_channels=float("inf"), scale="", notes=[])

    def anchors(self, data, file):
        from ..config import show

        anchors = data.get("anchors", 3)
        if isinstance(anchors, bool) or not isinstance(anchors, (int, list)):
            raise err(f"must be a list of per-level anchor lists or an int, got {show(anchors)}", file,
                      field="anchors")
        if isinstance(anchors, int):
            if not 0 < anchors <= 100:
                raise err(f"must be between 1 and 100 anchors per level, got {anchors}", file, field="anchors")
        else:
            if not anchors or not all(isinstance(a, list) and a and len(a) % 2 == 0 and
                                      all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in a)
                                      for a in anchors):
                raise err("each level must be a non-empty list of w,h pairs of numbers", file, field="anchors")
            if len(anchors) > 16 or any(len(a) > 200 for a in anchors):
                raise err("at most 16 levels of at most 100 anchors each", file, field="anchors")
        return anchors

    def no(self, conf):
        return conf.na * (conf.nc + 5)

    def width(self, row, c2):
        return c2 if c2 == row.no else make_divisible(c2 * row.gw, 8)

    def symbols(self, conf):
        return {**super().symbols(conf), "anchors": conf.anchors}

    def strides(self, model, shapes, head_inputs, s):
        head = model.model[-1]
        if head_inputs is not None and hasattr(head, "anchors") and isinstance(head_inputs, list):
            levels = head_inputs[: getattr(head, "nl", len(head_inputs))]  # an aux head's extra inputs follow
            stride = torch.tensor([s / x[-2] for x in levels], device="cpu")
            if len(stride) == len(head.anchors) and bool(torch.isfinite(stride).all()) and bool((stride > 0).all()):
                head.stride = stride
                with torch.no_grad():
                    if head.anchors.device.type != "meta":
                        head.anchors /= stride.view(-1, 1, 1).to(head.anchors.device)
            return stride
        last = shapes[-1]
        last = last[0] if isinstance(last, (tuple, list)) and last and isinstance(last[0], (tuple, list)) else last
        return torch.tensor([s / last[-2]] if isinstance(last, tuple) and len(last) == 4 else [32.0], device="cpu")


YOLOV5 = YOLOv5Dialect()
