"""flopscope sweep: per-layer scaling exponents, totals by size, plots.

Oracles: FlopCounterMode on real CPU forwards (the C3TR layer alone at each size, the whole model at
one size), numpy's least-squares fit of those counts, and hand-set exponent thresholds.
"""
from __future__ import annotations

import json
import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import flopscope
from flopscope.errors import FlopscopeError
from flopscope.sweep import parse_sizes, sweep

SIZES = [320, 480, 640, 960, 1280]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tr():
    return sweep("yolov5s-transformer", ",".join(map(str, SIZES)))


def _fcm(module, *inputs):
    with torch.no_grad(), FlopCounterMode(display=False) as fcm:
        module(*inputs)
    return fcm.get_total_flops()


def test_plain_convs_scale_with_hw_attention_does_not(tr):
    assert tr.sizes == [(s, s) for s in SIZES]
    conv = [l for l in tr.layers if l.module == "Conv"]
    assert len(conv) == 9
    for l in conv:
        assert l.exponent == pytest.approx(1.0, abs=1e-9)
        assert not l.nonlinear
    c3tr = [l for l in tr.layers if l.module == "C3TR"]
    assert len(c3tr) == 1 and c3tr[0].exponent > 1.1 and c3tr[0].nonlinear
    assert tr.nonlinear_layers == [c3tr[0].index]
    assert 1.0 < tr.exponent < c3tr[0].exponent


def test_c3tr_exponent_matches_flopcountermode_fit(tr):
    model = flopscope.build_model("yolov5s-transformer", device="cpu")
    k = next(l.index for l in tr.layers if l.module == "C3TR")
    layer = model.model[k]
    c_in = layer.cv1.conv.in_channels
    costs = [_fcm(layer, torch.zeros(1, c_in, s // 32, s // 32)) for s in SIZES]
    assert tr.layers[k].flops == costs
    slope = np.polyfit(np.log([s * s for s in SIZES]), np.log(costs), 1)[0]
    assert tr.layers[k].exponent == pytest.approx(slope, rel=1e-9)


def test_totals_match_a_real_forward():
    s = sweep("yolov5n", "64,128")
    model = flopscope.build_model("yolov5n", device="cpu")
    assert [r.flops for r in s.reports] == [_fcm(model, torch.zeros(1, 3, v, v)) for v in (64, 128)]
    assert [r.params for r in s.reports] == [1_872_157] * 2
    assert s.exponent == pytest.approx(1.0, abs=1e-9)  # no attention in yolov5n


def test_sizes_rounded_to_stride_and_parsing():
    s = sweep("yolov5n6", "320,480,640")
    assert s.sizes == [(320, 320), (512, 512), (640, 640)]
    assert any("480x480" in n for n in s.notes)
    assert parse_sizes("320,640x384") == [(320, 320), (640, 384)]
    with pytest.raises(FlopscopeError):
        parse_sizes("320,abc")


def _cli(args, capsys):
    from flopscope.cli import main

    with pytest.raises(SystemExit) as e:
        main(args)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_cli_json_and_pngs(tmp_path, capsys):
    sweep_png, model_png, js = tmp_path / "sweep.png", tmp_path / "model.png", tmp_path / "sweep.json"
    code, out, err = _cli(["sweep", "yolov5s-transformer", "--img", "320,640,1280", "--plot", str(sweep_png),
                           "--json", str(js)], capsys)
    assert code == 0, err
    assert "C3TR" in out and "≁" in out
    d = json.loads(js.read_text())
    assert d["img"] == [[320, 320], [640, 640], [1280, 1280]]
    assert {"totals", "layers", "exponent", "nonlinear_layers", "units"} <= set(d)
    assert d["nonlinear_layers"] == [8] and d["layers"][8]["exponent"] > 1.1
    code, out, err = _cli(["model", "yolov5s", "--img", "320", "--plot", str(model_png), "--json", "-"], capsys)
    assert code == 0, err
    json.loads(out)  # the model JSON still parses with --plot
    for png in (sweep_png, model_png):
        data = png.read_bytes()
        assert data.startswith(PNG) and len(data) > 5000
    code, out, err = _cli(["sweep", "yolov5n", "--img", "320,x"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_sweep_totals_carry_both_model_info_figures():
    s = sweep("yolov5s_iRMB", "128,160").to_dict()
    for tot in s["totals"]:
        rep = flopscope.profile("yolov5s_iRMB", img=tot["img"])
        assert (tot["model_info_gflops"], tot["model_info_current_gflops"]) == \
            (rep.model_info_gflops, rep.model_info_current_gflops)
    assert "model_info_current_gflops" in s["units"]
