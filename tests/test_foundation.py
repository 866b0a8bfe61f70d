"""Foundation: params, FLOPs and YOLOv5's printed GFLOPs checked against oracles outside our formulas.

Oracles: YOLOv5's published parameter totals and its yolov5s layer log; FlopCounterMode on a real
CPU forward of the same model; thop itself run the way YOLOv5's model_info runs it.
"""
from __future__ import annotations

import tracemalloc

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import flopscope
import thop01
from flopscope.config import bundled_names

# ultralytics/yolov5 README / training logs, nc=80, unfused
PUBLISHED_PARAMS = {"yolov5n": 1_872_157, "yolov5s": 7_235_389, "yolov5m": 21_190_557, "yolov5l": 46_563_709,
                    "yolov5x": 86_749_405}

# YOLOv5's parse_model log for yolov5s.yaml (v6.0+): params column, row by row
YOLOV5S_LOG = [3520, 18560, 18816, 73984, 115712, 295424, 625152, 1180672, 1182720, 656896, 131584, 0, 0, 361984,
               33024, 0, 0, 90880, 147712, 0, 296448, 590336, 0, 1182720, 229245]
YOLOV5S_ARGS = {0: [3, 32, 6, 2, 2], 2: [64, 64, 1], 4: [128, 128, 2], 13: [512, 256, 1, False], 24: None}


@pytest.mark.parametrize("name,total", sorted(PUBLISHED_PARAMS.items()))
def test_published_param_totals(name, total):
    assert flopscope.profile(name, img=64).params == total


def test_yolov5s_layer_log():
    r = flopscope.profile("yolov5s", img=64)
    assert [layer.params for layer in r.layers] == YOLOV5S_LOG
    for i, args in YOLOV5S_ARGS.items():
        if args is not None:
            assert r.layers[i].args == args
    assert [layer.n for layer in r.layers][:9] == [1, 1, 1, 1, 2, 1, 3, 1, 1]
    assert r.layers[24].f == [17, 20, 23]


def test_meta_build_allocates_no_weights():
    tracemalloc.start()
    model = flopscope.build_model("yolov5x6")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert all(p.device.type == "meta" for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) > 140_000_000
    assert peak < 50 * 2**20  # 140M fp32 weights would be 560 MB


def _fcm_per_layer(model, img):
    with torch.no_grad(), FlopCounterMode(display=False) as fcm:
        model(torch.zeros(1, model.ch, img, img))
    counts = fcm.get_flop_counts()
    per_layer = [sum(counts.get(f"DetectionModel.model.{i}", {}).values()) for i in range(len(model.model))]
    return fcm.get_total_flops(), per_layer


def _small_img(name):
    stride = int(flopscope.build_model(name).stride.max())
    return max(64, stride)


@pytest.mark.parametrize("name", bundled_names())
def test_flops_equal_flopcountermode(name):
    """conv + linear + matmul FLOPs, per layer and in total, equal FCM on a real forward (to the FLOP)."""
    torch.manual_seed(0)
    img = _small_img(name)
    model = flopscope.build_model(name, device="cpu")
    report = flopscope.profile(model, img=img)
    total, per_layer = _fcm_per_layer(model, img)
    assert [r.flops for r in report.layers] == per_layer
    assert report.flops == total
    assert report.params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["yolov5s", "yolov5s-transformer", "yolov5s-ghost", "yolov5n-seg", "yolov5n6"])
def test_model_info_emulation_matches_real_thop(name):
    """Our thop-0.1.1-convention figure equals thop 0.1.1's thop.profile on the stride-sized probe, as the legacy
    model_info ran it (recorded with the real thop 0.1.1 by tools/record_thop01.py), per layer and in total."""
    rec = thop01.recorded(name)
    report = flopscope.profile(name, img=640)
    s = report.model_info_probe
    assert s == rec["probe"]
    assert report.model_info_gflops == pytest.approx(thop01.model_info_gflops(name), rel=1e-9)
    assert [r.model_info_flops for r in report.layers] == \
        pytest.approx([2 * v * (640 / s) ** 2 for v in rec["probe_per_layer"]], rel=1e-9, abs=1e-3)


def test_yolov5s_model_info_prints_16_6():
    r = flopscope.profile("yolov5s", img=640)
    assert f"{r.model_info_gflops:.1f}" == "16.6"
    assert r.model_info_probe == 32


def test_hand_derived_first_conv():
    """Layer 0 of yolov5s at 640: Conv(3, 32, k=6, s=2, p=2) -> 320x320; MACs = 32*320*320*3*36."""
    r = flopscope.profile("yolov5s", img=640)
    assert r.layers[0].out_shape == (1, 32, 320, 320)
    assert r.layers[0].macs == 32 * 320 * 320 * 3 * 6 * 6
    assert r.layers[0].flops == 2 * r.layers[0].macs


def test_rectangular_and_batch():
    r1 = flopscope.profile("yolov5n", img="640,384")
    r2 = flopscope.profile("yolov5n", img=(640, 384), batch=2)
    assert r1.img == (640, 384)
    assert r1.layers[0].out_shape == (1, 16, 320, 192)
    assert r2.flops == 2 * r1.flops
    assert r2.layers[-1].out_shape[1] == 3 * (80 * 48 + 40 * 24 + 20 * 12)


def test_nc_override_changes_head_only():
    a, b = flopscope.profile("yolov5s", img=64), flopscope.profile("yolov5s", img=64, nc=3)
    assert [x.params for x in a.layers[:-1]] == [x.params for x in b.layers[:-1]]
    # Detect: 3 levels x 1x1 conv (c_l -> 3*(nc+5)) with bias
    assert b.layers[-1].params == sum((c + 1) * 3 * (3 + 5) for c in (128, 256, 512))


def test_linear_in_hw_marks():
    plain = flopscope.profile("yolov5s", img=320)
    assert all(r.linear_in_hw for r in plain.layers)
    tr = flopscope.profile("yolov5s-transformer", img=320)
    assert tr.layers[8].linear_in_hw is False  # global attention: N^2
    assert all(r.linear_in_hw for i, r in enumerate(tr.layers) if i != 8)


def test_json_schema_and_api_equivalence():
    d = flopscope.profile("yolov5n", img=128).to_dict()
    assert {"model", "img", "batch", "layers", "totals", "model_info_gflops"} <= set(d)
    keys = {"index", "from", "n", "module", "args", "out_shape", "params", "macs", "flops", "elementwise_flops",
            "linear_in_hw", "counted_by"}
    for layer in d["layers"]:
        assert keys <= set(layer)
        assert layer["flops"] == 2 * layer["macs"]
    assert {"params", "macs", "flops", "elementwise_flops"} <= set(d["totals"])
    assert d["totals"]["flops"] == sum(x["flops"] for x in d["layers"])
    assert d["img"] == [128, 128]


class _NoFormula(torch.nn.Module):
    """A module without a registered formula: counted by the op-level counter, never silently 0."""

    def __init__(self, c1, c2):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(c2, c1, 3, 3))

    def forward(self, x):
        return torch.nn.functional.conv2d(x, self.w, padding=1)


def test_module_without_formula_is_counted_op_level():
    from flopscope.channels import conv_like
    from flopscope.registry import MODULES, add_module

    add_module("TestNoFormulaConv", _NoFormula, conv_like, "test")
    try:
        cfg = {"nc": 80, "anchors": 3, "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "TestNoFormulaConv", [32]]],
               "head": [[-1, 1, "Conv", [32, 1, 1]]]}
        r = flopscope.profile(cfg, img=64)
        layer = r.layers[1]
        assert layer.counted_by == "formula; op-level (_NoFormula)"
        assert layer.macs == 32 * 32 * 32 * 16 * 9  # hand-derived: out 32x32x32, Cin 16, 3x3
    finally:
        del MODULES["TestNoFormulaConv"]


def test_yolov5s_seg_matches_yolov5_log():
    """YOLOv5 v7.0 segment/train log: 'YOLOv5s-seg summary: 225 layers, 7621277 parameters, ..., 26.6 GFLOPs'."""
    r = flopscope.profile("yolov5s-seg", img=640)
    assert r.params == 7_621_277
    assert f"{r.model_info_gflops:.1f}" == "26.6"
