"""The real thop 0.1.1's figures, recorded by tools/record_thop01.py into tests/data/thop01_model_info.json.

flopscope depends on ultralytics-thop (2.x), so thop 0.1.1 -- behind YOLOv5's legacy ``model_info`` figure --
cannot be run by the tests; they compare our emulation of it with these recorded measurements instead.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "thop01_model_info.json"


@functools.lru_cache(maxsize=1)
def data() -> dict:
    return json.loads(DATA.read_text())


def recorded(name: str) -> dict:
    """thop 0.1.1 on bundled config ``name``: probe, probe_per_layer / probe_total (MACs on the model_info
    probe), small_img, small_per_layer / small_total, model_info_gflops at ``data()['img']`` (640)."""
    return data()["models"][name]


def model_info_gflops(name: str, img: int = 640) -> float:
    """What YOLOv5's legacy model_info printed for ``name`` at ``img``: 2 x thop 0.1.1 MACs on the probe x area."""
    r = recorded(name)
    return 2 * r["probe_total"] / 1e9 * (img / r["probe"]) ** 2
