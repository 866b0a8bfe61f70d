"""Write flopscope's bundled Ultralytics configs (yamls/) from the architecture tables of ultralytics 8.4.x.

    /work/venvs/ultra/bin/python tools/ul_yamls.py     # needs the ultralytics package (an oracle, never in CI)

Only the facts are carried over: the top-level keys (nc, scales, reg_max, end2end, kpt_shape, activation, depth and
width multiples) and each layer's [from, repeats, module, args] row, in ultralytics' order (so layer indices are
ultralytics' own).  Names are ultralytics' except where they would collide with the YOLOv5-dialect bundle:
ultralytics' ``v5/yolov5.yaml`` / ``v5/yolov5-p6.yaml`` become ``yolov5u`` / ``yolov5u-p6`` (``yolov5nu`` resolves
to ``yolov5u`` at scale n, as ultralytics' hub names the anchor-free YOLOv5 weights).
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

#: ultralytics cfg/models/<dir>/<file> -> bundled name (None: same stem)
CONFIGS = {
    "v3/yolov3.yaml": None, "v3/yolov3-spp.yaml": None, "v3/yolov3-tiny.yaml": None,
    "v5/yolov5.yaml": "yolov5u", "v5/yolov5-p6.yaml": "yolov5u-p6",
    "v6/yolov6.yaml": None,
    **{f"v8/yolov8{s}.yaml": None for s in ("", "-p2", "-p6", "-ghost", "-ghost-p2", "-ghost-p6", "-seg", "-seg-p6",
                                           "-pose", "-pose-p6", "-obb", "-cls")},
    **{f"v10/yolov10{s}.yaml": None for s in "nsmblx"},
    **{f"11/yolo11{s}.yaml": None for s in ("", "-seg", "-pose", "-obb", "-cls")},
    **{f"26/yolo26{s}.yaml": None for s in ("", "-p2", "-p6", "-seg", "-pose", "-obb", "-cls", "-depth", "-sem")},
}
KEYS = ("nc", "activation", "end2end", "reg_max", "kpt_shape", "depth_multiple", "width_multiple", "scales")


def flow(v) -> str:
    return yaml.safe_dump(v, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def convert(src: Path, name: str, rel: str) -> str:
    d = yaml.safe_load(src.read_text())
    out = [f"# {name}: Ultralytics 8.4.x architecture table of cfg/models/{rel} (Ultralytics dialect).",
           "# Rows are [from, repeats, module, args] in ultralytics' order; the comment is the layer index.", ""]
    for k in KEYS:
        if k not in d:
            continue
        if k == "scales":
            out.append("scales:  # [depth, width, max_channels]")
            out += [f"  {s}: {flow(v)}" for s, v in d[k].items()]
        else:
            out.append(f"{k}: {flow(d[k])}")
    extra = set(d) - set(KEYS) - {"backbone", "head"}
    if extra:
        raise SystemExit(f"{rel}: unexpected keys {sorted(extra)}")
    i = 0
    for sec in ("backbone", "head"):
        out += ["", f"{sec}:"]
        for row in d[sec]:
            out.append(f"  - {flow(row)}  # {i}")
            i += 1
    return "\n".join(out) + "\n"


def main() -> None:
    import ultralytics

    root = Path(ultralytics.__file__).parent / "cfg" / "models"
    dst = Path(__file__).resolve().parents[1] / "yamls"
    for rel, name in CONFIGS.items():
        name = name or Path(rel).stem
        (dst / f"{name}.yaml").write_text(convert(root / rel, name, rel))
        print(name, file=sys.stderr)


if __name__ == "__main__":
    main()
