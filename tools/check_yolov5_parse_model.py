"""Outside CI: the static reading of the REAL YOLOv5 parse_model (flopscope.fork.read_parse_model) against
flopscope's builder on the bundled YOLOv5 configs -- every row must get the same constructor args and c2.

Usage: python tools/check_yolov5_parse_model.py PATH/TO/yolov5/models/yolo.py  (a checkout; nothing is run)
"""
import sys
from flopscope import fork, build_model, config
from flopscope.channels import Row
from flopscope.yamls import __path__ as yp
import glob, os
r = fork.read_parse_model(sys.argv[1])
bad = 0
for cfg in ["yolov5n", "yolov5s", "yolov5m", "yolov5l", "yolov5x", "yolov5s-seg", "yolov5s6"]:
    try:
        m = build_model(cfg)
    except Exception as e:
        print(cfg, "skip", e); continue
    ch = [m.config.ch]
    for info in m.layers:
        rule, src = r.rule(info.spec.cls.__name__)
        args = config.resolve_args(m.config.rows[info.index].args, m.config.nc, m.config.anchors, None, info.index)
        row = Row(info.index, info.f, info.n, args, ch, m.config.width_multiple, m.config.nc, m.config.na * (m.config.nc + 5))
        a, c2, n = rule(row)
        if a != info.args or (c2 != info.c2 and not isinstance(info.c2, list)):
            bad += 1; print(cfg, info.index, info.module, a, info.args, c2, info.c2)
        if info.index == 0: ch = []
        ch.append(info.c2)
    print(cfg, "layers", len(m.layers), "ok" if not bad else bad)
