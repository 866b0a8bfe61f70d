"""Write the bundled YOLOv9 / YOLO12 / RT-DETR / ResNet-classifier configs (yamls/) from ultralytics 8.4.x's tables.

    /work/venvs/ultra/bin/python tools/ul_yamls_more.py     # needs the ultralytics package (an oracle, never in CI)

Same conversion as tools/ul_yamls.py (facts only: top-level keys and [from, repeats, module, args] rows in
ultralytics' order, so layer indices are ultralytics' own), for the families that tool does not write.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ul_yamls import convert  # noqa: E402

CONFIGS = [
    *(f"v9/yolov9{s}.yaml" for s in ("t", "s", "m", "c", "e", "c-seg", "e-seg")),
    *(f"12/yolo12{s}.yaml" for s in ("", "-seg", "-pose", "-obb", "-cls")),
    *(f"rt-detr/rtdetr-{s}.yaml" for s in ("l", "x", "resnet50", "resnet101")),
    "v8/yolov8-rtdetr.yaml", "v8/yolov8-cls-resnet50.yaml", "v8/yolov8-cls-resnet101.yaml",
]


def main() -> None:
    import ultralytics

    root = Path(ultralytics.__file__).parent / "cfg" / "models"
    dst = Path(__file__).resolve().parents[1] / "yamls"
    for rel in CONFIGS:
        name = Path(rel).stem
        (dst / f"{name}.yaml").write_text(convert(root / rel, name, rel))
        print(name, file=sys.stderr)


if __name__ == "__main__":
    main()
