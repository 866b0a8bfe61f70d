"""Both thops (issue 10 item 1): the legacy thop 0.1.1 (behind YOLOv5's old model_info figure) and ultralytics-thop
2.x (our dependency; what YOLOv5 / Ultralytics install today).

Oracles: thop 0.1.1's per-layer MACs recorded with the real thop 0.1.1 (tools/record_thop01.py ->
tests/data/thop01_model_info.json) and the installed ultralytics-thop run here; both compared with identities on
our op-labelled terms.
"""
from __future__ import annotations

import copy

import pytest
import torch

import flopscope
import thop01
from flopscope import crosscheck as cc

RECORDED = sorted(thop01.data()["models"])


def test_recorded_data_says_where_it_came_from():
    d = thop01.data()
    assert d["thop"].startswith("thop 0.1.1") and d["torch"] and d["date"] and "record_thop01.py" in d["command"]
    for name in ("yolov5s", "yolov5n6", "yolov5s-transformer", "yolov5_dynamic", "yolov5_iRMB_seed"):
        assert name in d["models"]
    assert f"{d['models']['yolov5_iRMB_seed']['model_info_gflops']:.1f}" == "660.7"  # seed 004's printed figure


@pytest.mark.parametrize("name", RECORDED)
def test_thop01_rules_explain_recorded_thop01(name):
    """The thop 0.1.1 rule table predicts, to the MAC, what the real thop 0.1.1 measured per layer, and our
    model_info emulation equals its probe figure."""
    rec = thop01.recorded(name)
    model = flopscope.build_model(name)
    s = rec["small_img"]
    traced = cc.trace_layers(model, (1, model.ch, s, s))
    for i, ((terms, chains), measured) in enumerate(zip(traced, rec["small_per_layer"])):
        cell = cc.explain("thop", terms, chains, measured)
        assert cell.explained, (name, i, cell.measured, cell.predicted, cell.reasons)
    r640 = flopscope.profile(model, img=640)
    assert r640.model_info_gflops == pytest.approx(rec["model_info_gflops"], rel=1e-9)


def test_installed_thop_is_ultralytics_thop_and_labelled():
    dist, version = cc.thop_installed()
    assert dist == "ultralytics-thop" and int(version.split(".")[0]) >= 2
    assert cc.counter_version("thop") == f"ultralytics-thop {version}"
    res = cc.crosscheck("yolov5s", img=64, counters="thop")
    col = res.columns["thop"]
    assert col.rules == "thop2" and col.label == "thop 2.x"
    assert res.to_dict()["counters"]["thop"]["rules"] == "thop2"


def test_thop2_counts_functional_matmuls_only_globally():
    """ultralytics-thop 2.x counts iRMB's `@` attention matmuls in its total but in no layer of ret_layer_info;
    the check attributes them by layer boundaries and explains every layer."""
    import thop

    model = flopscope.build_model("yolov5s_iRMB", device="cpu").eval()
    report = flopscope.profile(model, img=64)
    total, _, info = thop.profile(copy.deepcopy(model), inputs=(torch.zeros(1, 3, 64, 64),), verbose=False,
                                  ret_layer_info=True)
    per_layer = sum(v[0] for v in info["model"][2].values())
    matmul = sum(t.value for r in report.layers for t in r.terms if t.op == "matmul")
    assert matmul > 0 and total - per_layer == matmul
    res = cc.crosscheck(model, img=64, counters="thop")
    assert res.unexplained_layers("thop") == [] and res.total_cell("thop").explained
    assert sum(res.columns["thop"].run.per_layer) == total


def test_thop2_nearest_upsample_zero_and_mha_counted():
    """Read off ultralytics-thop 2.x directly on single modules: nearest upsample 0, bilinear 11 per output
    element, nn.MultiheadAttention = projections + q·kᵀ + attn·v + softmax (3S-1 per row)."""
    import thop

    x = torch.zeros(1, 4, 8, 8)
    assert thop.profile(torch.nn.Upsample(scale_factor=2, mode="nearest"), inputs=(x,), verbose=False)[0] == 0
    assert thop.profile(torch.nn.Upsample(scale_factor=2, mode="bilinear"), inputs=(x,), verbose=False)[0] == \
        11 * 4 * 16 * 16
    e, heads, n_tok = 8, 2, 5
    mha = torch.nn.MultiheadAttention(e, heads)
    q = torch.zeros(n_tok, 1, e)
    macs = thop.profile(mha, inputs=(q, q, q), verbose=False)[0]
    assert macs == 4 * n_tok * e * e + 2 * n_tok * n_tok * e + heads * n_tok * (3 * n_tok - 1)
