"""YOLOv9, YOLO12, RT-DETR and the ResNet classifiers (Ultralytics dialect).

Oracles: the real ultralytics 8.4.190 recorded by tools/record_ultralytics.py (tests/data/ultralytics/: per-layer
params, FlopCounterMode FLOPs and output shapes of the real model), FlopCounterMode on a real forward of our own
modules (odd sizes, the paths the bundled configs do not take), and hand derivations written out below.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import flopscope
from flopscope.builder import build_model
from flopscope.engine import count_layers
from flopscope.modules.deformable import SAMPLING_RULE
from flopscope.shapes import ShapeError
from flopscope.tracer import Tracer

DATA = Path(__file__).parent / "data" / "ultralytics"
FAMILIES = ["yolov9t", "yolov9s", "yolov9m", "yolov9c", "yolov9e", "yolov9c-seg", "yolov9e-seg", "yolo12",
            "yolo12-seg", "yolo12-pose", "yolo12-obb", "yolo12-cls", "rtdetr-l", "rtdetr-x", "rtdetr-resnet50",
            "rtdetr-resnet101", "yolov8-rtdetr", "yolov8-cls-resnet50", "yolov8-cls-resnet101"]


def _family(stem):
    return json.loads((DATA / f"{stem}.json").read_text())


def _first_models():
    out = []
    for stem in FAMILIES:
        name, rec = next(iter(_family(stem)["models"].items()))
        out.append((name, rec))
    return out


FIRST = _first_models()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small real forwards: one intra-op thread (on a loaded 2-core machine torch's spinning threads made a 64 px
    RT-DETR forward take 5 s instead of 0.07 s)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _fcm(module, *inputs):
    with torch.no_grad(), FlopCounterMode(display=False) as fcm:
        module(*inputs)
    return fcm.get_total_flops()


def _ours(module, *shapes):
    t = Tracer(allow_fallback=False)
    out = t(module, *shapes)
    return 2 * t.cost.macs(), t, out


@pytest.mark.parametrize("name,rec", FIRST, ids=[n for n, _ in FIRST])
def test_layers_equal_the_real_model(name, rec):
    """First model of every family at 128 px: per layer, params = sum(numel) of the real model.model[i], FLOPs
    (2 x conv/linear/matmul MACs) = FlopCounterMode on the real model's eval forward, and every non-head output
    shape = the real one (hooks on model.model[i])."""
    m = build_model(name)
    layers = count_layers(m, (1, 3, 128, 128))
    assert len(layers) == len(rec["layers"])
    assert [sum(p.numel() for p in layer.parameters()) for layer in m.model] == [r["params"] for r in rec["layers"]]
    assert [2 * lc.cost.macs() for lc in layers] == [r["flops"] for r in rec["layers"]]
    checked = 0
    for lc, r in zip(layers, rec["layers"]):
        want = r["out"]
        if isinstance(want, list) and len(want) == 4 and all(isinstance(v, int) for v in want):
            assert list(lc.out_shape) == want, (name, lc.index, lc.out_shape, want)
            checked += 1
        elif isinstance(want, list) and want and all(isinstance(v, list) for v in want) and r["type"] == "CBLinear":
            assert [list(s) for s in lc.out_shape] == want  # CBLinear: one output per entry of c2s
            checked += 1
    assert checked >= len(layers) - 3


def test_rtdetr_decoder_hand_rule_is_the_deformable_bilinear_rule():
    """rtdetr-l at 128 px: P3/P4/P5 = 16x16 + 8x8 + 4x4 = 336 anchors, k = min(300, 336) = 300
    queries; each decoder layer samples nh=8 heads x nl=3 levels x np=4 points per query with hd/nh = 32 channels.
    Per layer: coords 300*8*12 points x 10 FLOPs = 288,000; interp 300*256*12 values x 7 FLOPs = 6,451,200;
    6 layers (eval runs all of them up to the last)."""
    r = flopscope.profile("rtdetr-l", img=128)
    head = r.layers[28]
    ruled = [t for t in head.terms if t.rule == SAMPLING_RULE]
    assert sum(t.value for t in ruled if t.op == "bilinear.coords") == 6 * 288_000
    assert sum(t.value for t in ruled if t.op == "bilinear.interp") == 6 * 6_451_200
    assert "hand rule: deformable bilinear sampling" in head.counted_by
    assert not any(t.rule for layer in r.layers[:28] for t in layer.terms)  # only the decoder has a hand rule


def test_rtdetr_real_forward_query_selection_at_small_images():
    """At 64 px there are 8x8 + 4x4 + 2x2 = 84 anchors (< 300 queries): k = 84, and the count follows the real
    forward (FlopCounterMode) of our own build."""
    torch.manual_seed(0)
    m = build_model("yolov8n-rtdetr", device="cpu").eval()  # the smallest RT-DETR decoder config
    with torch.no_grad():
        y = m(torch.zeros(1, 3, 64, 64))
    assert tuple(y.shape) == (1, 300, 6)  # final top-300 over 84 queries x 80 classes
    r = flopscope.profile(m, img=64)
    assert r.flops == _fcm(m, torch.zeros(1, 3, 64, 64))


def test_adown_aconv_odd_sizes_follow_the_real_forward():
    from flopscope.modules.ul_v9 import AConv, ADown

    for mod, shape in ((ADown(16, 32), (1, 16, 15, 17)), (AConv(8, 24), (1, 8, 13, 10))):
        flops, t, out = _ours(mod, shape)
        x = torch.zeros(shape)
        assert flops == _fcm(mod, x)
        assert tuple(out) == tuple(mod(x).shape)
    # ADown elementwise, hand-derived for 15x17 input: avg-pool -> 14x16 (4 adds each, 16 ch); max-pool 3x3 s2 p1
    # of the 8-channel half -> 7x8 (9 compares each)
    _, t, _ = _ours(ADown(16, 32), (1, 16, 15, 17))
    ew = {term.name: term.value for term in t.cost if term.kind == "elementwise"}
    assert ew["avg_pool"] == 16 * 14 * 16 * 4
    assert ew["max_pool"] == 8 * 7 * 8 * 9


def test_cblinear_cbfuse_in_a_small_config(tmp_path):
    """yolov9e's auxiliary branch in miniature: a real forward = our count; CBFuse resizes and sums."""
    p = tmp_path / "aux.yaml"
    p.write_text("""nc: 4
backbone:
  - [-1, 1, nn.Identity, []]
  - [-1, 1, Conv, [16, 3, 2]]
  - [-1, 1, Conv, [32, 3, 2]]
  - [1, 1, CBLinear, [[8]]]
  - [2, 1, CBLinear, [[8, 16]]]
  - [0, 1, Conv, [8, 3, 2]]
  - [[3, 4, -1], 1, CBFuse, [[0, 0]]]
  - [-1, 1, Conv, [16, 3, 2]]
  - [[4, -1], 1, CBFuse, [[1]]]
head:
  - [-1, 1, Classify, [nc]]
""")
    torch.manual_seed(0)
    m = build_model(str(p), device="cpu", dialect="ultralytics").eval()
    r = flopscope.profile(m, img=64)
    x = torch.zeros(1, 3, 64, 64)
    assert r.flops == _fcm(m, x)
    assert r.layers[6].out_shape == (1, 8, 32, 32)
    # CBFuse 6: two inputs resized to 32x32x8 (1 FLOP per element each) and 3 maps summed (2 adds per element)
    assert r.layers[6].elementwise_flops == 2 * 8 * 32 * 32 + 2 * 8 * 32 * 32


def test_cbfuse_rejects_a_wrong_index_count(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("""nc: 4
backbone:
  - [-1, 1, Conv, [16, 3, 2]]
  - [-1, 1, CBLinear, [[8]]]
  - [0, 1, Conv, [8, 3, 1]]
  - [[1, -1], 1, CBFuse, [[0, 0]]]
head:
  - [-1, 1, Classify, [nc]]
""")
    with pytest.raises(flopscope.errors.ConfigError, match="CBFuse needs"):
        build_model(str(p), dialect="ultralytics")


def test_area_attention_real_forward_and_area_split():
    from flopscope.modules.ul_yolo12 import A2C2f, AAttn

    torch.manual_seed(0)
    m = AAttn(64, 2, area=4).eval()
    for shape in ((1, 64, 8, 6), (2, 64, 4, 4)):
        flops, _, out = _ours(m, shape)
        assert flops == _fcm(m, torch.zeros(shape))
    # hand derivation, (1, 64, 8, 6), 4 areas of 12 positions, 2 heads of 32: q·kᵀ and v·attnᵀ are
    # 4 * 2 * 12 * 12 * 32 MACs each; qkv 48*64*192, pe 48*64*49, proj 48*64*64
    flops, _, _ = _ours(m, (1, 64, 8, 6))
    assert flops == 2 * (2 * 4 * 2 * 12 * 12 * 32 + 48 * 64 * 192 + 48 * 64 * 49 + 48 * 64 * 64)
    with pytest.raises(ShapeError, match="do not split into 4 areas"):
        _ours(m, (1, 64, 5, 5))
    blk = A2C2f(64, 64, 1, True, 1, True, 1.2).eval()  # the l/x form: gamma residual
    flops, _, _ = _ours(blk, (1, 64, 8, 8))
    assert flops == _fcm(blk, torch.zeros(1, 64, 8, 8))


def test_yolo12_l_x_rows_get_residual_and_mlp_ratio():
    """parse_model appends (True, 1.2) to A2C2f rows at scales l and x only (the params differ accordingly)."""
    layers = {s: build_model(f"yolo12{s}").layers[6] for s in "mlx"}
    assert layers["l"].args[-2:] == [True, 1.2] and layers["x"].args[-2:] == [True, 1.2]
    assert len(layers["m"].args) == 5  # [c1, c2, n, a2, area]


def test_hgstem_aifi_resnet_odd_sizes_follow_the_real_forward():
    from flopscope.modules.ul_rtdetr import AIFI, HGBlock, HGStem, ResNetLayer

    torch.manual_seed(0)
    cases = [(HGStem(3, 16, 32), (1, 3, 33, 30)), (HGBlock(16, 8, 32, 3, 2, True, False), (1, 16, 9, 7)),
             (AIFI(32, 64, 4), (1, 32, 5, 7)), (ResNetLayer(16, 8, 2, False, 2), (1, 16, 11, 9)),
             (ResNetLayer(3, 8, 1, True), (1, 3, 21, 19))]
    for mod, shape in cases:
        mod.eval()
        flops, _, out = _ours(mod, shape)
        x = torch.zeros(shape)
        assert flops == _fcm(mod, x), type(mod).__name__
        assert tuple(out) == tuple(mod(x).shape), type(mod).__name__
    # AIFI's position embedding: two (35 x 1) @ (1 x 8) matmuls = 2 * 35 * 8 MACs, counted by FlopCounterMode
    _, t, _ = _ours(AIFI(32, 64, 4), (1, 32, 5, 7))
    assert sum(term.value for term in t.cost if term.name.startswith("pos_embed.") and term.kind == "matmul") == 560


def test_resnet_layer_c1_must_match_its_input(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("""nc: 10
backbone:
  - [-1, 1, ResNetLayer, [4, 64, 1, True, 1]]
head:
  - [-1, 1, Classify, [nc]]
""")
    with pytest.raises(flopscope.errors.ConfigError, match="c1 argument is 4 but its input has 3 channels"):
        build_model(str(p), dialect="ultralytics")


# model.info() prints ultralytics' get_flops: ultralytics-thop 2.x, stride-aware (flopscope.counters.thop2_info);
# every recorded model is checked at 640 (and 320) in tests/test_ultralytics.py
@pytest.mark.parametrize("name,rec", [FIRST[0], FIRST[7], FIRST[12]], ids=["yolov9t", "yolo12n", "rtdetr-l"])
def test_model_info_equals_recorded(name, rec):
    """The report's model_info_gflops (and its per-layer split) = what the real model.info(imgsz=640) printed."""
    r = flopscope.profile(name, img=640)
    assert r.model_info_gflops == pytest.approx(rec["info"]["640"]["gflops"], rel=1e-9)
    assert r.model_info_current_gflops == r.model_info_gflops
    assert sum(x.model_info_flops for x in r.layers) == pytest.approx(r.model_info_gflops * 1e9, rel=1e-9)
    assert f"{r.model_info_gflops:.1f}" == f"{rec['info']['640']['gflops']:.1f}"
