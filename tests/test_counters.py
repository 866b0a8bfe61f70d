"""Counters as objects (issue 11 item 6): one registered object per counter, selected by name, run by the
orchestrator; rule inputs passed explicitly (nothing stashed on modules)."""
from __future__ import annotations

import pytest
import torch

from flopscope import counters as cs
from flopscope import crosscheck as cc
from flopscope.counters.fcm import FCM, run_fcm


def test_every_counter_is_one_registered_object():
    assert list(cs.COUNTERS)[:5] == ["fvcore", "thop", "ptflops", "ptflops-aten", "fcm"]
    for name, c in cs.COUNTERS.items():
        assert c.name == name and c.label and c.package and callable(c.run)
        assert c.table(c.version()).key in cs.rules.TABLES
    assert cs.parse_counters("ptflops") == ["ptflops", "ptflops-aten"]
    assert cs.parse_counters("ptflops-pytorch,flopcountermode") == ["ptflops", "fcm"]
    assert cs.parse_counters(None) == cs.default_names()
    assert cs.COUNTERS["thop"].table("0.1.1-2209072238").key == "thop"
    assert cs.COUNTERS["thop"].table("ultralytics-thop 2.2.3").key == "thop2"


@pytest.fixture
def unregister():
    before = set(cs.COUNTERS)
    yield
    for name in set(cs.COUNTERS) - before:
        del cs.COUNTERS[name]


def test_a_new_counter_registers_and_runs_through_the_same_path(unregister):
    @cs.counter("fcm-again", label="FCM again", package="torch", tables=(FCM,), on_by_default=False,
                version=lambda: torch.__version__)
    def run(model, x, probe=None):
        return run_fcm(model, x)  # FlopCounterMode's own measurement, under another name

    assert "fcm-again" not in cs.default_names()
    with pytest.raises(Exception, match="registered twice"):
        cs.counter("fcm-again", label="x", package="x", tables=(FCM,))(run)
    res = cc.crosscheck("yolov5s", img=64, counters="fcm-again,fcm")
    assert res.counters == ["fcm", "fcm-again"]
    assert res.columns["fcm-again"].label == "FCM again" and res.total_cell("fcm-again").explained
    assert res.total_cell("fcm-again").measured == res.total_cell("fcm").measured


def test_rule_inputs_are_passed_not_stashed_on_modules():
    """ptflops' aten backend counts nn.Linear's bias only when it runs as addmm: the input layout it saw is handed
    to the rule as observed data; no attribute is left on the user's modules."""
    res = cc.crosscheck("yolov5s-transformer", img=64, counters="ptflops-aten")
    run = res.columns["ptflops-aten"].run
    assert run.observed and all(set(f) == {"dim", "contiguous"} for f in run.observed.values())
    assert res.total_cell("ptflops-aten").explained
    from flopscope import build_model

    model = build_model("yolov5s-transformer", device="cpu")
    cc.crosscheck(model, img=64, counters="ptflops-aten")
    assert not any(k.startswith("flopscope_") for m in model.modules() for k in vars(m))


@pytest.mark.parametrize("name", ["yolov5s-transformer", "yolov5s_iRMB", "yolov5s_BiLevelRoutingAttention"])
def test_op_level_counter_is_a_column_equal_to_the_formulas(name):
    """The op-level counter (issue 11 item 5) runs by default; its MACs equal the formulas' per layer (no rule
    difference needed), and its element-wise FLOPs sit beside ours in JSON, any difference given a reason."""
    import json

    assert "opcount" in cs.default_names()
    res = cc.crosscheck(name, img=64, counters="opcount,fcm")
    assert res.columns["opcount"].label == "op-level"
    for lc in res.layers:
        assert lc.cells["opcount"].delta == 0 and lc.cells["opcount"].explained
        assert lc.cells["opcount"].measured == lc.cells["fcm"].measured  # both see the same conv/linear/matmul
    d = json.loads(json.dumps(res.to_dict()))
    assert d["counters"]["opcount"]["status"] == "ok"
    for row, rec in zip(d["layers"], res.report.layers):
        ew = row["elementwise"]
        assert ew["ours"] == rec.elementwise_flops and ew["delta"] == ew["op_level"] - ew["ours"]
        assert (ew["reason"] is None) == (abs(ew["delta"]) <= 0.5)
