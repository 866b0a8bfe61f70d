"""The Ultralytics dialect against the real ultralytics 8.4.190 (recorded by tools/record_ultralytics.py into
tests/data/ultralytics/, never run in CI), against published summaries (/work/shared/design/ultralytics.md,
ultralytics' docs) and against FlopCounterMode on a real forward of our own build."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from flopscope.builder import build_model
from flopscope.config import ConfigError, load, resolve
from flopscope.engine import count_layers
from test_model_info_current import assert_model_info_recorded

DATA = Path(__file__).parent / "data" / "ultralytics"


def _recorded():
    out = []
    for f in sorted(DATA.glob("*.json")):
        if f.name == "index.json":
            continue
        d = json.loads(f.read_text())
        out += [(name, {**rec, "img": d["img"]}) for name, rec in d["models"].items()]
    return out


RECORDED = _recorded()


def _ours(name):
    try:
        resolve(name)
    except ConfigError:
        pytest.skip(f"{name}: not bundled yet")
    return build_model(name)


def _flops(model, img):
    return [2 * lc.cost.macs() for lc in count_layers(model, (1, model.ch, img, img))]


@pytest.mark.parametrize("name,rec", RECORDED, ids=[n for n, _ in RECORDED])
def test_per_layer_params_and_flops_equal_the_real_model(name, rec):
    """params per layer = sum(numel) of the real model.model[i]; FLOPs per layer = FlopCounterMode on the real
    model's eval forward (at 128 px, real; at 640 px, recorded on the meta device)."""
    m = _ours(name)
    assert m.config.dialect == "ultralytics"
    assert len(m.model) == len(rec["layers"])
    assert [sum(p.numel() for p in layer.parameters()) for layer in m.model] == [r["params"] for r in rec["layers"]]
    assert sum(p.numel() for p in m.parameters()) == rec["params"]
    for img, key in ((rec.get("img", 128), "flops"), (640, "flops640")):
        ours = _flops(m, img)
        want = [r[key] for r in rec["layers"]]
        bad = [(i, a, b) for i, (a, b) in enumerate(zip(ours, want)) if a != b]
        assert not bad, f"{name} at {img}: (layer, ours, real) {bad[:5]}"
    # model.info()'s GFLOPs (ultralytics-thop 2.x, stride-aware) = the recorded real figure, at 640 and 320
    assert_model_info_recorded(m, rec, (640, 320))


# formula = FlopCounterMode on a real forward of our own build, per layer, for every bundled config (Ultralytics
# ones included): tests/test_foundation.py::test_flops_equal_flopcountermode


# published totals: ultralytics' docs / model summaries (params at nc=80), and ../shared/design/ultralytics.md
PUBLISHED = {
    "yolov8n": 3_157_200, "yolov8s": 11_166_560, "yolov8m": 25_902_640, "yolov8l": 43_691_520, "yolov8x": 68_229_648,
    "yolo11n": 2_624_080, "yolo11s": 9_458_752, "yolo11m": 20_114_688, "yolo11l": 25_372_160, "yolo11x": 56_966_176,
    "yolo26n": 2_572_280, "yolov10n": 2_775_520, "yolov8n-seg": 3_409_968, "yolo11n-pose": 2_908_507,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_totals(name):
    assert sum(p.numel() for p in build_model(name).parameters()) == PUBLISHED[name]


# -- dialect selection and schema ------------------------------------------------------------
def _yaml(tmp_path, text, name="m.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


V5 = """nc: 80
depth_multiple: 0.33
width_multiple: 0.50
anchors: 3
backbone:
  - [-1, 1, Conv, [64, 6, 2, 2]]
head:
  - [[0], 1, Detect, [nc, anchors]]
"""


def test_yolov5_dialect_rejects_unknown_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"depth_multipel: unknown top-level key 'depth_multipel' in a YOLOv5 "
                                          r"config \(did you mean depth_multiple"):
        load(_yaml(tmp_path, V5 + "depth_multipel: 0.5\n"))
    with pytest.raises(ConfigError, match=r"scales: unknown top-level key 'scales' in a YOLOv5 config.*Ultralytics"):
        load(_yaml(tmp_path, V5 + "scales:\n  n: [0.33, 0.25, 1024]\n"))
    with pytest.raises(ConfigError, match="unknown top-level key 'extra_ünïcode_key'"):
        load(_yaml(tmp_path, V5 + "extra_ünïcode_key: 1\n"))


def test_ultralytics_dialect_rejects_unknown_keys_and_scales(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown top-level key 'scale_s' in a Ultralytics config \(did you mean "
                                          r"scales"):
        load(_yaml(tmp_path, resolve("yolo11")[2] + "scale_s: 1\n"))
    with pytest.raises(ConfigError, match=r"scale: scale 'q' is not one of this config's scales: n, s, m, l, x"):
        load("yolo11", scale="q")
    with pytest.raises(ConfigError, match="a YOLOv5 config has no scales"):
        load("yolov5s", scale="n")


def test_detection_and_override():
    assert load("yolov5s").dialect == "yolov5" and load("yolov8n").dialect == "ultralytics"
    assert load("yolov3u").dialect == "ultralytics"  # no scales: key, but anchor-free Detect [nc]
    with pytest.raises(ConfigError, match="scales"):
        load("yolov8n", dialect="yolov5")


def test_model_name_resolution_as_ultralytics():
    """yolo11n -> yolo11.yaml at scale n; yolov8x6 -> yolov8-p6 at x; yolov5nu -> the anchor-free v5 at n; the
    YOLOv5-dialect names keep their configs."""
    c = load("yolo11n")
    assert (c.scale, c.depth_multiple, c.width_multiple, c.max_channels) == ("n", 0.5, 0.25, 1024)
    assert load("yolo11x-seg").scale == "x" and load("yolov8x6").scale == "x"
    assert resolve("yolov8x6")[1] == "yolov8-p6.yaml (bundled)"
    assert resolve("yolov5nu")[1] == "yolov5u.yaml (bundled)" and load("yolov5nu").scale == "n"
    assert resolve("yolov5s")[1] == "yolov5s.yaml (bundled)" and load("yolov5s").dialect == "yolov5"
    c = load("yolo11")  # no scale in the name: the first one, as ultralytics does, with a note
    assert c.scale == "n" and "assuming scale 'n'" in c.notes[0]
    assert load("yolo11", scale="l").scale == "l"


def test_c3k2_c3k_per_scale():
    """parse_model sets C3k2's c3k to True at scales m/l/x: layer 2 of yolo11 is bottlenecks at n/s, C3k at m."""
    assert type(build_model("yolo11s").model[2].m[0]).__name__ == "Bottleneck_v8"
    assert type(build_model("yolo11m").model[2].m[0]).__name__ == "C3k"


def test_torchvision_config_is_a_clear_error(tmp_path):
    """ultralytics' yolo11-cls-resnet18 wraps a torchvision model: refused in one line (not bundled)."""
    cfg = _yaml(tmp_path, "nc: 1000\nbackbone:\n  - [-1, 1, TorchVision, [512, resnet18, DEFAULT, True, 2]]\n"
                          "head:\n  - [-1, 1, Classify, [nc]]\n")
    with pytest.raises(ConfigError, match=r"layer 0: module: TorchVision\(resnet18\) wraps a torchvision model"):
        build_model(cfg)


FUSED = [(n, r) for n, r in RECORDED if r.get("fused")]


@pytest.mark.parametrize("name,rec", FUSED, ids=[n for n, _ in FUSED])
def test_fuse_equals_the_real_fused_model(name, rec):
    """--fuse gives exactly the params of ultralytics' own fuse() (recorded by tools/record_ultralytics.py: Conv /
    ConvTranspose + BN folded, RepConv and RepVGGDW merged, the unused branch set of the end-to-end heads and the
    training-only parts of the YOLO26 heads dropped), for every recorded model -- none refused -- and, where the
    recording ran FlopCounterMode on the real fused model, the same total FLOPs."""
    from flopscope.fuse import fuse_model

    model = _ours(name)
    assert sum(p.numel() for p in model.parameters()) == rec["params"]
    fuse_model(model)
    assert sum(p.numel() for p in model.parameters()) == rec["fused"]["params"], name
    for img, flops in rec["fused"].get("fcm_flops", {}).items():
        assert sum(_flops(model, int(img))) == flops, (name, img)
    # model.info() after fuse() (ultralytics-thop 2.x, stride-aware) = the recorded real figure (first two scales of
    # a family: the others take the same path)
    if rec["flops_from"] == "real":
        info = {"640": {"gflops": rec["fused"]["info_gflops_640"], "line": rec["fused"]["info_line_640"]}}
        assert_model_info_recorded(model, {"name": name, "info": info})
