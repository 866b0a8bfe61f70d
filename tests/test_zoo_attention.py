"""The attention / transformer part of the zoo: SE, CBAM, SimAM, CoordConv, ASPP, CAM, iRMB, C2f_iRMB,
C3_iRMBseed, BiLevelRoutingAttention, EVCBlock and their configs.

Oracles, all outside our formulas: FlopCounterMode on a real CPU forward of the same module / model; seed 004's
printed parse_model log (params per layer) and its "660.7 GFLOPs"; thop 0.1.x run the way YOLOv5's model_info runs
it; the design spec's FCM-validated figures; arithmetic derived by hand in this file.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

import flopscope
import thop01
from flopscope.registry import load_zoo
from flopscope.tracer import Tracer

load_zoo()
from flopscope.modules.attention import ASPP, CAM, CBAM, SE, CoordConv, SimAM  # noqa: E402
from flopscope.modules.biformer import BiLevelRoutingAttention  # noqa: E402
from flopscope.modules.evc import EVCBlock  # noqa: E402
from flopscope.modules.irmb import C2f_iRMB, C3_iRMBseed, iRMB  # noqa: E402

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
sizes = st.integers(1, 17)  # includes odd sizes and non-multiples of 7
batches = st.integers(1, 2)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small forwards: thread start-up and contention on a shared 2-core box cost more than the work."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def measured(module, shape):
    """(output shape, MACs) of a real CPU forward under FlopCounterMode."""
    torch.manual_seed(0)
    module.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fcm:
        y = module(torch.randn(shape))
    return tuple(y.shape), fcm.get_total_flops() // 2


def analytic(module, shape):
    t = Tracer(allow_fallback=False)  # every part must have a formula
    out = t(module, tuple(shape))
    return out, t.cost


def assert_exact(module, shape):
    out, cost = analytic(module, shape)
    real_out, real_macs = measured(module, shape)
    assert out == real_out
    assert cost.macs() == real_macs
    assert all(term.value >= 0 for term in cost)
    return cost


# ---------------------------------------------------------------------------------------------------------------
# module properties: analytic MACs == FlopCounterMode / 2, analytic output shape == real output shape


@SETTINGS
@given(c=st.integers(1, 64), r=st.sampled_from([1, 2, 4, 16]), b=batches, h=sizes, w=sizes)
def test_se(c, r, b, h, w):
    assert_exact(SE(c, r), (b, c, h, w))


@SETTINGS
@given(c=st.integers(1, 48), r=st.sampled_from([1, 4, 16]), k=st.sampled_from([3, 5, 7]), b=batches, h=sizes, w=sizes)
def test_cbam(c, r, k, b, h, w):
    assert_exact(CBAM(c, r, k), (b, c, h, w))


@SETTINGS
@given(c=st.integers(1, 32), b=batches, h=sizes, w=sizes)
def test_simam(c, b, h, w):
    cost = assert_exact(SimAM(), (b, c, h, w))
    assert cost.macs() == 0 and cost.elementwise_flops > 0


@SETTINGS
@given(c1=st.integers(1, 24), c2=st.integers(1, 24), k=st.sampled_from([1, 3, 5]), s=st.sampled_from([1, 2]),
       with_r=st.booleans(), b=batches, h=sizes, w=sizes)
def test_coord_conv(c1, c2, k, s, with_r, b, h, w):
    assert_exact(CoordConv(c1, c2, k, s, with_r), (b, c1, h, w))


@SETTINGS
@given(c1=st.integers(1, 12), c2=st.integers(1, 12), b=batches, h=st.integers(1, 21), w=st.integers(1, 21))
def test_aspp(c1, c2, b, h, w):
    assert_exact(ASPP(c1, c2), (b, c1, h, w))


@SETTINGS
@given(c=st.integers(1, 16), mode=st.sampled_from(["weight", "adaptive", "concat"]), b=batches, h=sizes, w=sizes)
def test_cam(c, mode, b, h, w):
    cost = assert_exact(CAM(c, mode), (b, c, h, w))
    # hand-derived: three 3x3 convs + three 1x1 fusions = 30 C^2 per pixel (+ 9C for the adaptive weights)
    assert cost.macs() == b * h * w * (30 * c * c + (9 * c if mode == "adaptive" else 0))


@SETTINGS
@given(dim_head=st.sampled_from([4, 8]), heads=st.integers(1, 4), window=st.sampled_from([0, 3, 7]),
       exp_ratio=st.sampled_from([1.0, 2.0]), stride=st.sampled_from([1, 2]), attn_s=st.booleans(),
       attn_pre=st.booleans(), v_group=st.booleans(), se_ratio=st.sampled_from([0.0, 0.25]),
       dw_ks=st.sampled_from([3, 5]), b=batches, h=sizes, w=sizes)
def test_irmb(dim_head, heads, window, exp_ratio, stride, attn_s, attn_pre, v_group, se_ratio, dw_ks, b, h, w):
    c = dim_head * heads
    m = iRMB(c, exp_ratio=exp_ratio, stride=stride, attn_s=attn_s, attn_pre=attn_pre, v_group=v_group,
             se_ratio=se_ratio, dw_ks=dw_ks, dim_head=dim_head, window_size=window)
    assert_exact(m, (b, c, h, w))


@SETTINGS
@given(c1=st.sampled_from([8, 16, 24]), c2=st.sampled_from([16, 32]), n=st.integers(1, 2), shortcut=st.booleans(),
       b=batches, h=sizes, w=sizes)
def test_c2f_irmb(c1, c2, n, shortcut, b, h, w):
    assert_exact(C2f_iRMB(c1, c2, n, shortcut), (b, c1, h, w))


@SETTINGS
@given(c1=st.sampled_from([8, 16, 32]), c2=st.sampled_from([16, 32]), n=st.integers(1, 2), shortcut=st.booleans(),
       b=batches, h=sizes, w=sizes)
def test_c3_irmb_seed(c1, c2, n, shortcut, b, h, w):
    assert_exact(C3_iRMBseed(c1, c2, n, shortcut), (b, c1, h, w))


@SETTINGS
@given(heads=st.sampled_from([1, 2, 4]), d=st.sampled_from([2, 4]), n_win=st.sampled_from([1, 2, 3, 7]),
       topk=st.integers(1, 4), mode=st.sampled_from(["identity", "ada_avgpool", "ada_maxpool", "avgpool", "maxpool"]),
       qk_half=st.booleans(), soft=st.booleans(), side=st.sampled_from([0, 3, 5]), qkvo=st.booleans(),
       b=batches, h=sizes, w=sizes)
def test_bilevel_routing_attention(heads, d, n_win, topk, mode, qk_half, soft, side, qkvo, b, h, w):
    c = heads * d * 2
    topk = min(topk, n_win * n_win)
    if mode in ("avgpool", "maxpool"):  # the pooling must fit in a region
        h, w = max(h, 2 * n_win), max(w, 2 * n_win)
    m = BiLevelRoutingAttention(c, n_win, heads, qk_dim=c // 2 if qk_half else None, topk=topk, kv_per_win=2,
                                kv_downsample_ratio=2, kv_downsample_mode=mode, soft_routing=soft,
                                param_routing=soft, diff_routing=soft, side_dwconv=side,
                                param_attention="qkvo" if qkvo else "qkv")
    assert_exact(m, (b, c, h, w))


@SETTINGS
@given(c=st.sampled_from([4, 8, 12, 16]), b=batches, h=sizes, w=sizes)
def test_evc_block(c, b, h, w):
    assert_exact(EVCBlock(c), (b, c, h, w))


# ---------------------------------------------------------------------------------------------------------------
# formulas derived by hand / published figures


def test_se_hand_derived():
    """SE: the two FCs on the pooled vector are 2*C^2/r MACs per image, whatever the map size."""
    for hw in (1, 20, 80):
        _, cost = analytic(SE(256, 16), (2, 256, hw, hw))
        assert cost.macs() == 2 * (2 * 256 * 256 // 16)
        assert cost.macs("linear") == cost.macs()
    # element-wise: avg-pool reads C*N, sigmoid 4 per channel, gate multiply C*N (ReLU 1 per hidden unit)
    _, cost = analytic(SE(64, 16), (1, 64, 10, 10))
    assert cost.elementwise_flops == 64 * 100 + 4 + 4 * 64 + 64 * 100


def test_irmb_padded_tokens_hand_derived():
    """iRMB(C), defaults (ws 7, dim_head 8, exp 1): qk 2C^2 + v C^2 + q·kᵀ 49C + attn·v 49C per *padded* token,
    then DW 3x3 (9C) and the output 1x1 (C^2) per real pixel."""
    c = 64
    for h, w in ((20, 20), (1, 1), (7, 14), (13, 8)):
        padded = math.ceil(h / 7) * 7 * math.ceil(w / 7) * 7
        expected = padded * (2 * c * c + c * c + 49 * c + 49 * c) + h * w * (9 * c + c * c)
        _, cost = analytic(iRMB(c), (1, c, h, w))
        assert cost.macs() == expected
        names = {term.name for term in cost if term.kind != "elementwise"}
        assert {"qk projection.conv", "v projection.conv", "q·kᵀ", "attn·v", "depthwise.conv",
                "output projection.conv"} == names


def test_spec_validated_figures():
    """The design spec's FlopCounterMode-validated MACs (C=256): iRMB at 80x80, BiLevelRoutingAttention at 40 and 80."""
    assert analytic(iRMB(256), (1, 256, 80, 80))[1].macs() == 1_998_462_976
    bra = BiLevelRoutingAttention(256)
    assert analytic(bra, (1, 256, 40, 40))[1].macs() == 597_157_120
    assert analytic(bra, (1, 256, 80, 80))[1].macs() == 3_947_458_816


def test_irmb_256_params():
    assert sum(p.numel() for p in iRMB(256).parameters()) == 265_472


# ---------------------------------------------------------------------------------------------------------------
# seed 004: its printed parse_model log and summary line

SEED004_LOG = [  # params column of the log printed in seed 004 (layers 0..27)
    7040, 73984, 306880, 295424, 2307840, 1180672, 13541632, 4720640, 19428864, 2624512, 525312, 0, 0, 5126912,
    131584, 0, 0, 1285504, 265472, 590336, 0, 4864768, 1055232, 2360320, 0, 19428864, 4207616, 457725]
SEED004_TOTAL = 84_787_133
SEED004_ARGS = {2: [128, 128, 3], 13: [1024, 512, 3, False], 25: [1024, 1024, 3, False], 18: [256], 26: [1024]}


def test_seed004_as_built_layer_log_and_gflops():
    r = flopscope.profile("yolov5_iRMB_seed")
    assert [layer.params for layer in r.layers] == SEED004_LOG
    assert r.params == sum(SEED004_LOG) == SEED004_TOTAL
    for i, args in SEED004_ARGS.items():
        assert r.layers[i].args == args
    assert r.layers[27].f == [18, 22, 26]
    assert r.model_info_probe == 32
    assert f"{r.model_info_gflops:.1f}" == "660.7"
    # the 32-px probe pads every 4x4/2x2/1x1 map to 7x7: the printed figure is ~3x the true cost at 640
    assert 2.9 < r.model_info_gflops / r.gflops < 3.3
    assert not all(layer.linear_in_hw for layer in r.layers)


def test_seed004_as_written_differs_only_in_c3():
    written, built = flopscope.profile("yolov5_iRMB", img=64), flopscope.profile("yolov5_iRMB_seed", img=64)
    assert [layer.params for layer in written.layers][18] == 265_472
    for a, b in zip(written.layers, built.layers):
        assert (a.module == "C3") == (b.module == "C3_iRMBseed")
        if a.module != "C3":
            assert a.params == b.params
    assert written.params == 52_092_029  # yolov5l (46,563,709) + three iRMB heads + their wider Detect inputs


# ---------------------------------------------------------------------------------------------------------------
# configs

CONFIGS = ["yolov5s_SE", "yolov5s_CBAM", "yolov5s_SimAM", "yolov5s_CoordConv", "yolov5s_ASPP", "yolov5s_iRMB",
           "yolov5s_C2f_iRMB", "yolov5s_BiLevelRoutingAttention", "yolov5s_EVCBlock", "yolov5s_CAM",
           "yolov5_iRMB", "yolov5_iRMB_seed"]
MODULE_OF = {"yolov5_iRMB": "iRMB", "yolov5_iRMB_seed": "C3_iRMBseed"}


@pytest.mark.parametrize("name", CONFIGS)
def test_config_counts_equal_flopcountermode(name):
    """Builds, places its module, keeps Detect on P3/P4/P5, and FLOPs == FlopCounterMode per layer at 64x64."""
    model = flopscope.build_model(name, device="cpu")
    report = flopscope.profile(model, img=64)
    assert report.stride == [8.0, 16.0, 32.0]
    assert any(layer.module == MODULE_OF.get(name, name.split("_", 1)[1]) for layer in report.layers)
    with torch.no_grad(), FlopCounterMode(display=False) as fcm:
        model(torch.zeros(1, 3, 64, 64))
    counts = fcm.get_flop_counts()
    per_layer = [sum(counts.get(f"DetectionModel.model.{i}", {}).values()) for i in range(len(model.model))]
    assert [layer.flops for layer in report.layers] == per_layer
    assert report.flops == fcm.get_total_flops()
    assert report.params == sum(p.numel() for p in model.parameters())
    if name.startswith("yolov5s_"):  # model_info emulation == thop 0.1.1 on YOLOv5's 32-px probe (recorded)
        r640 = flopscope.profile(model, img=640)
        assert r640.model_info_gflops == pytest.approx(thop01.model_info_gflops(name), rel=1e-9)


def test_cam_concat_channel_rule():
    cfg = {"nc": 80, "anchors": 3, "width_multiple": 0.5,
           "backbone": [[-1, 1, "Conv", [64, 3, 2]], [-1, 1, "CAM", ["concat"]], [-1, 1, "CAM", []]],
           "head": [[-1, 1, "Conv", [32, 1, 1]]]}
    r = flopscope.profile(cfg, img=32)
    assert [layer.args for layer in r.layers[1:3]] == [[32, "concat"], [96, "weight"]]
    assert [layer.out_shape[1] for layer in r.layers] == [32, 96, 96, 16]


def test_same_channel_modules_take_the_input_width():
    r = flopscope.profile("yolov5s_BiLevelRoutingAttention", img=64)
    bra = r.layers[10]
    assert bra.module == "BiLevelRoutingAttention" and bra.args == [512, 7, 8]
    assert r.layers[11].args[:2] == [512, 256]
    evc = flopscope.profile("yolov5s_EVCBlock", img=64).layers[10]
    assert evc.args == [512] and evc.out_shape == (1, 512, 2, 2)
