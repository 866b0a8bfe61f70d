"""The Ultralytics dialect (``ultralytics`` 8.4.x, ``ultralytics/cfg/models/*/*.yaml``).

As ``ultralytics.nn.tasks`` reads a config (facts, re-implemented):

* ``scales: {n: [depth, width, max_channels], ...}``; the scale comes from ``--scale``, else the config's
  ``scale:`` key, else the model name (``yolo11n`` -> ``n``: the first ``[nslmx]`` after ``yolo[e-][v]<digits>``),
  else the first scale listed (ultralytics warns; we note it on the report);
* a config without ``scales:`` uses ``depth_multiple`` / ``width_multiple`` (default 1.0), no channel cap;
* width rule: ``make_divisible(min(c2, max_channels) * width, 8)`` for every channel-scaled module
  (``Classify`` excepted: its rule does not call it); depth rule ``max(round(n * depth), 1) if n > 1``;
* ``reg_max`` (default 16), ``end2end``, ``kpt_shape`` are read by the heads' channel rules from
  ``row.state``; so is ``legacy`` (True until a C3k2 / C2fCIB / A2C2f row is built: the v3/v5u/v8/v9
  heads keep their older classification branch).
"""
from __future__ import annotations

import math
import re

import torch

from .base import Dialect, err, make_divisible

_SCALE = re.compile(r"yolo(e-)?[v]?\d+([nslmx])")


def guess_scale(name: str) -> str:
    """The scale letter of a model name as ultralytics guesses it ('' when none)."""
    m = _SCALE.search(name)
    return m.group(2) if m else ""


def unified_name(stem: str) -> str:
    """The config an ultralytics model name resolves to: ``yolov8x`` -> ``yolov8``, ``yolo11n-seg`` ->
    ``yolo11-seg``; the old P6 names ``yolov8n6`` -> ``yolov8-p6``."""
    if re.fullmatch(r"yolov[58][nsmlx]6", stem):
        stem = re.sub(r"(\d+)([nslmx])6(.+)?$", r"\1\2-p6\3", stem)
    return re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", stem)


def p6_name(stem: str) -> str:
    return re.sub(r"(\d+)([nslmx])6(.+)?$", r"\1\2-p6\3", stem) if re.fullmatch(r"yolov[58][nsmlx]6", stem) else stem


class UltralyticsDialect(Dialect):
    name = "ultralytics"
    title = "Ultralytics"
    keys = ("nc", "scales", "scale", "depth_multiple", "width_multiple", "activation", "ch", "channels", "reg_max",
            "end2end", "kpt_shape", "backbone", "head")
    own_keys = ("scales", "scale", "reg_max", "end2end", "kpt_shape", "channels")

    def claims(self, data):
        if "anchors" in data:
            return False
        if super().claims(data):
            return True
        # an anchor-free head row: [from, n, Detect|Segment|Pose|OBB, [nc]] without anchors
        from ..registry import SPACES, load_zoo

        load_zoo()
        own = SPACES[self.name]
        for sec in ("backbone", "head"):
            rows = data.get(sec)
            if not isinstance(rows, list):
                continue
            for r in rows:
                if isinstance(r, list) and len(r) == 4 and isinstance(r[2], str) and r[2] in own:
                    if r[2] in ("Detect", "Segment", "Pose", "OBB"):
                        if not (isinstance(r[3], list) and len(r[3]) >= 2 and r[3][1] == "anchors"):
                            return True
                    elif r[2] not in ("Concat", "Conv", "Bottleneck", "SPPF", "SPP", "C3", "Focus"):
                        from ..registry import MODULES

                        if r[2] not in MODULES:  # a module only Ultralytics configs have (C3k2, C2PSA ...)
                            return True
        return False

    def scaling(self, data, file, scale, name):
        from ..config import show

        notes = []
        scales = data.get("scales")
        if scales is None:
            if scale:
                raise err(f"--scale {scale}: this config has no scales:", file, field="scale")
            out = {}
            for key in ("depth_multiple", "width_multiple"):
                v = data.get(key, 1.0)
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 100:
                    raise err(f"must be a positive number (at most 100), got {show(v)}", file, field=key)
                out[key] = v
            return dict(**out, max_channels=math.inf, scale="", notes=notes)
        if not isinstance(scales, dict) or not scales:
            raise err(f"must be a mapping of scale -> [depth, width, max_channels], got {show(scales)}", file,
                      field="scales")
        for k, v in scales.items():
            if not (isinstance(v, list) and len(v) == 3 and all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) and 0 < x <= (1 << 20) for x in v)):
                raise err(f"scale {show(k)} must be [depth, width, max_channels] of positive numbers, got {show(v)}",
                          file, field="scales")
        if not scale:
            scale = data.get("scale")
            if scale is not None and not isinstance(scale, str):
                raise err(f"must be a scale name, got {show(scale)}", file, field="scale")
        how = "--scale" if scale else None
        if not scale:
            scale = guess_scale(name)
            how = f"from the model name {name!r}" if scale else None
        if not scale:
            scale = next(iter(scales))
            notes.append(f"no model scale given: assuming scale {scale!r}, the first of scales: "
                         f"(as ultralytics does; use --scale or a name such as {name}{scale})")
        scale = str(scale)
        if scale not in {str(k) for k in scales}:
            from ..errors import suggestion

            raise err(f"scale {scale!r}{' ' + how if how and how != '--scale' else ''} is not one of this config's "
                      f"scales: {', '.join(map(str, scales))}{suggestion(scale, [str(k) for k in scales])}", file,
                      field="scale")
        depth, width, max_channels = {str(k): v for k, v in scales.items()}[scale]
        return dict(depth_multiple=depth, width_multiple=width, max_channels=max_channels, scale=scale, notes=notes)

    def read_extra(self, data, file):
        from ..config import show

        reg_max = data.get("reg_max", 16)
        if isinstance(reg_max, bool) or not isinstance(reg_max, int) or not 0 < reg_max <= 1024:
            raise err(f"must be a positive integer, got {show(reg_max)}", file, field="reg_max")
        end2end = data.get("end2end")
        if end2end is not None and not isinstance(end2end, bool):
            raise err(f"must be true or false, got {show(end2end)}", file, field="end2end")
        kpt = data.get("kpt_shape")
        if kpt is not None and not (isinstance(kpt, list) and len(kpt) == 2 and all(
                isinstance(x, int) and not isinstance(x, bool) and 0 < x <= 10000 for x in kpt)):
            raise err(f"must be [keypoints, dims], got {show(kpt)}", file, field="kpt_shape")
        return {"reg_max": reg_max, "end2end": end2end, "kpt_shape": kpt}

    model_info_stride_aware = True  # model.info() prints get_flops: ultralytics-thop 2.x, stride-aware

    def model_info_probe(self, model):
        return None

    def model_info_min_cells(self, model):
        """get_flops' ``min_cells``: an RT-DETR decoder selects ``num_queries`` anchors and a stride cell holds
        (4**nl - 1) / 3 anchors over nl levels, so proxies are ceil(3 num_queries / (4**nl - 1)) cells wide."""
        from ..modules.ul_rtdetr import RTDETRDecoder

        return max((-(-m.num_queries * 3 // (4 ** m.nl - 1)) for m in model.modules() if isinstance(m, RTDETRDecoder)),
                   default=1)

    def width(self, row, c2):
        return make_divisible(min(c2, row.max_channels) * row.gw, 8)

    def symbols(self, conf):
        return {**super().symbols(conf), "kpt_shape": conf.extra.get("kpt_shape")}

    def initial_state(self, conf):
        return {"legacy": True, **conf.extra}

    def strides(self, model, shapes, head_inputs, s):
        head = model.model[-1]
        own = getattr(head, "model_stride", None)  # a head whose model finds its stride its own way (Depth, ...)
        if callable(own):
            return torch.tensor(own(shapes, head_inputs, s), device="cpu")
        if head_inputs is not None and isinstance(head_inputs, list) and hasattr(head, "nl"):
            levels = head_inputs[: head.nl]
            stride = torch.tensor([s / x[-2] for x in levels], device="cpu")
            head.stride = stride
            if hasattr(head, "bias_init_done"):
                pass
            return stride
        return torch.tensor([32.0], device="cpu")  # Classify, RT-DETR: ultralytics' default stride


ULTRALYTICS = UltralyticsDialect()
