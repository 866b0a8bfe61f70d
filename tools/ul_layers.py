"""Print the REAL ultralytics model's per-layer params and FlopCounterMode FLOPs (an oracle, run outside CI).

    /work/venvs/ultra/bin/python tools/ul_layers.py yolo11n.yaml [--img 64] [--nc 80]

Output: one JSON object {model, img, layers: [{i, type, params, flops}], params, flops, info_gflops}.
Needs the ultralytics package (never a flopscope dependency).
"""
from __future__ import annotations

import argparse
import json
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("cfg")
    ap.add_argument("--img", type=int, default=64)
    ap.add_argument("--info", action="store_true", help="also model.info()'s GFLOPs at --img")
    a = ap.parse_args(argv)
    from ultralytics.nn.tasks import yaml_model_load, guess_model_task, DetectionModel, SegmentationModel, \
        PoseModel, OBBModel, ClassificationModel, RTDETRDetectionModel
    import contextlib, io

    d = yaml_model_load(a.cfg)
    task = guess_model_task(d)
    cls = {"detect": DetectionModel, "segment": SegmentationModel, "pose": PoseModel, "obb": OBBModel,
           "classify": ClassificationModel}[task]
    if "rtdetr" in a.cfg:
        cls = RTDETRDetectionModel
    with contextlib.redirect_stdout(io.StringIO()):
        m = cls(a.cfg, verbose=False)
    m.eval()
    layers = []
    with torch.no_grad(), FlopCounterMode(display=False) as fcm:
        m(torch.zeros(1, 3, a.img, a.img))
    counts = fcm.get_flop_counts()
    for i, layer in enumerate(m.model):
        key = next((k for k in counts if k.endswith(f"model.{i}")), None)
        fl = sum(counts[key].values()) if key else 0
        layers.append({"i": i, "type": type(layer).__name__, "params": sum(p.numel() for p in layer.parameters()),
                       "flops": int(fl)})
    out = {"model": a.cfg, "img": a.img, "layers": layers, "params": sum(p.numel() for p in m.parameters()),
           "flops": int(sum(counts["Global"].values()))}
    if a.info:
        from ultralytics.utils.torch_utils import get_flops
        out["info_gflops"] = get_flops(m, a.img)
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
