"""Cross-check (issue 4): counters' per-layer numbers reproduced and explained by the rules, to the MAC.

Oracles are the counters' own outputs on a real CPU forward, compared with identities written here on
our op-labelled terms (BatchNorm / upsample element counts), never with hard-coded figures.
"""
from __future__ import annotations

import io
import json
from importlib import resources

import pytest
import torch

import thop01
from flopscope import crosscheck as cc
from flopscope import rules
from flopscope.errors import FlopscopeError

IMG = 64
THOP2 = cc.thop_major() not in (None, 0)  # ultralytics-thop 2.x (our dependency) or the legacy thop 0.1.x
TH = "thop 2.x" if THOP2 else "thop"  # its reason codes' prefix
UP = 0 if THOP2 else 1  # nearest upsample per output element: thop 2.x counts 0, thop 0.1.1 counts 1


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Counting needs no speed; one intra-op thread avoids oversubscription on a shared CPU."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def _elems(rec, op):
    return sum(t.elems for t in rec.terms if t.op == op)


def _op_macs(rec, op):
    return sum(t.value for t in rec.terms if t.op == op and t.kind in ("conv", "linear", "matmul"))


def _run_cli(args, capsys):
    from flopscope.cli import main

    with pytest.raises(SystemExit) as e:
        main(args)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


@pytest.fixture(scope="module")
def y5s():
    return cc.crosscheck("yolov5s", img=IMG, counters="all")


def test_every_counter_ran_and_is_explained(y5s):
    for name in rules.COUNTERS:
        col = y5s.columns[name]
        assert col.ok, col.reason
        assert col.version
        assert sum(col.run.per_layer) == pytest.approx(col.run.total, abs=0.5), name  # attribution covers all
        assert y5s.unexplained_layers(name) == [], name
        assert y5s.total_cell(name).explained, name


def test_yolov5s_acceptance_identities(y5s):
    rep = y5s.report
    conv = rep.macs_by_kind["conv"]
    assert rep.macs == conv  # yolov5s: convolutions only
    fcm, fv, th = (y5s.columns[n].run for n in ("fcm", "fvcore", "thop"))
    bn = sum(_elems(r, "BatchNorm2d") for r in rep.layers)
    up = sum(_elems(r, "Upsample.nearest") for r in rep.layers)
    assert bn > 0 and up > 0
    # conv MACs equal across FlopCounterMode and fvcore (fvcore adds BN 2/element + nearest upsample 1/element)
    assert fcm.total == conv
    assert fv.total - 2 * bn - up == conv
    # thop - conv = BatchNorm at 4/element + nearest upsample at 1/element (thop 0.1.1) or 0 (thop 2.x)
    assert th.total - conv == 4 * bn + UP * up
    old = thop01.recorded("yolov5s")  # the real thop 0.1.1, recorded on the same model at this size
    assert old["small_img"] == IMG and old["small_total"] - conv == 4 * bn + up
    for i, r in enumerate(rep.layers):  # and layer by layer
        assert fcm.per_layer[i] == r.macs_by_kind["conv"]
        assert fv.per_layer[i] - r.macs == 2 * _elems(r, "BatchNorm2d") + _elems(r, "Upsample.nearest")
        assert th.per_layer[i] - r.macs == 4 * _elems(r, "BatchNorm2d") + UP * _elems(r, "Upsample.nearest")
        assert old["small_per_layer"][i] - r.macs == 4 * _elems(r, "BatchNorm2d") + _elems(r, "Upsample.nearest")


def test_reason_codes_carry_the_exact_difference(y5s):
    rep = y5s.report
    for lc, r in zip(y5s.layers, rep.layers):
        cell = lc.cells["thop"]
        reasons = dict(cell.reasons)
        assert reasons.get(f"{TH}: BatchNorm counted 4/element", 0) == 4 * _elems(r, "BatchNorm2d")  # BN: not MACs
        assert reasons.get("thop: nearest upsample counted 1/element", 0) == UP * _elems(r, "Upsample.nearest")
        assert sum(reasons.values()) == pytest.approx(cell.delta, abs=0.5)
    up = next(lc for lc in y5s.layers if lc.module == "nn.Upsample")
    assert up.ours == 0 and up.cells["fcm"].measured == 0
    assert up.cells["thop"].significant == (not THOP2)  # thop 2.x counts nearest upsample as 0, as we count MACs
    assert ["ptflops: nn.Upsample counted 2/element (module hook + F.interpolate patch)"] == \
        [c for c, _ in up.cells["ptflops"].reasons]
    # the Detect head's convs have biases: only ptflops counts them
    det = y5s.layers[-1]
    bias = sum(t.elems for t in y5s.report.layers[-1].terms if t.op == "Conv2d")
    assert det.cells["ptflops-aten"].delta == bias
    assert det.cells["fcm"].delta == 0 and det.cells["fvcore"].delta == 0 and det.cells["thop"].delta == 0


def test_model_info_block(y5s):
    mi = y5s.model_info
    assert mi["probe"] == 32
    assert mi["printed_gflops"] == pytest.approx(y5s.report.model_info_gflops, abs=2e-6)
    # the legacy figure is thop 0.1.1's: recorded with the real thop 0.1.1 (run here too when it is installed)
    assert mi["printed_gflops"] == pytest.approx(thop01.model_info_gflops("yolov5s", IMG), rel=1e-9)
    assert ("measured_gflops" in mi) == (not THOP2)
    if not THOP2:
        assert mi["measured_gflops"] == pytest.approx(mi["printed_gflops"], rel=1e-9)  # thop run on the probe
    assert mi["true_gflops"] == pytest.approx(2 * y5s.ours_total / 1e9)
    assert mi["wrong_layers"]
    scale = (IMG / 32) ** 2
    for lc, old in zip(y5s.layers, thop01.recorded("yolov5s")["probe_per_layer"]):
        row = lc.model_info
        assert row["model_info_flops"] == pytest.approx(2 * old * scale, abs=1)
        if not THOP2:
            assert row["measured_model_info_flops"] == pytest.approx(row["model_info_flops"], abs=1)
        assert row["delta_flops"] == pytest.approx(row["thop_conventions_flops"] + row["probe_extrapolation_flops"])
        if row["wrong"]:
            assert row["why"]


def test_rendering_shows_columns_and_reasons(y5s):
    from rich.console import Console

    buf = io.StringIO()
    cc.print_check(y5s, Console(file=buf, width=250))
    text = buf.getvalue()
    for label in ("fvcore", "thop", "ptflops", "ptflops·aten", "FCM"):
        assert label in text
    assert f"{TH}: BatchNorm counted 4/element" in text
    assert "FlopCounterMode reports FLOPs = 2 per MAC" in text
    assert "explained exactly" in text and "UNEXPLAINED" not in text
    assert "model_info" in text


def test_unexplained_delta_is_shown_not_hidden(y5s, monkeypatch):
    # a wrong rule (BN at 3/element) must leave thop's BN layers unexplained
    table = y5s.columns["thop"].rules
    monkeypatch.setitem(rules.COUNTER_RULES[table], "BatchNorm2d", rules.Rule(lambda t, m: 3 * t.elems, "wrong rule"))
    rec = y5s.report.layers[0]
    chains = [[] for _ in rec.terms]
    cell = cc.explain(table, rec.terms, chains, y5s.columns["thop"].run.per_layer[0])
    assert not cell.explained
    assert cell.residual == _elems(rec, "BatchNorm2d")
    lines = cc.cell_reasons("thop", cell)
    assert lines and "unexplained" in lines[0]


def test_failing_and_missing_counters_fill_their_column(monkeypatch, capsys):
    import sys

    import thop

    def boom(*a, **k):
        raise RuntimeError("boom on a module")

    monkeypatch.setattr(thop, "profile", boom)
    monkeypatch.setitem(sys.modules, "fvcore", None)  # import fvcore -> ImportError
    monkeypatch.setitem(sys.modules, "fvcore.nn", None)
    res = cc.crosscheck("yolov5s", img=IMG, counters="thop,fvcore,fcm")
    assert res.columns["thop"].status == "failed" and "boom on a module" in res.columns["thop"].reason
    assert res.columns["fvcore"].status == "missing" and "pip install fvcore" in res.columns["fvcore"].reason
    assert res.columns["fcm"].ok and res.total_cell("fcm").explained
    assert res.model_info["printed_gflops"] > 0 and "measured_gflops" not in res.model_info
    d = json.loads(json.dumps(res.to_dict()))
    assert d["counters"]["thop"]["status"] == "failed"
    for row in d["layers"]:
        assert row["counters"]["thop"] == {"status": "failed", "reason": res.columns["thop"].reason}
        assert row["counters"]["fvcore"]["status"] == "missing"
        assert "measured" in row["counters"]["fcm"]
    from rich.console import Console

    buf = io.StringIO()
    cc.print_check(res, Console(file=buf, width=250))
    text = buf.getvalue()
    assert "boom on a module" in text and "not installed" in text and "failed" in text


def test_json_carries_every_column_and_reason(y5s):
    d = json.loads(json.dumps(y5s.to_dict()))
    assert set(d["counters"]) == set(rules.COUNTERS)
    assert all(c["version"] and c["status"] == "ok" for c in d["counters"].values())
    assert "2 per MAC" in d["units"]
    codes = set()
    for row in d["layers"]:
        assert set(row["counters"]) == set(d["counters"])
        for cell in row["counters"].values():
            assert {"measured", "predicted", "delta", "explained", "reasons", "unexplained"} <= set(cell)
            assert cell["explained"] and cell["unexplained"] is None
            codes.update(r["code"] for r in cell["reasons"])
        assert "model_info" in row
    assert {f"{TH}: BatchNorm counted 4/element", "fvcore: BatchNorm counted 2/element",
            "ptflops: conv bias counted 1/output element", "ptflops: SiLU counted 1/element (F.silu patch)",
            "ptflops·aten: convolution bias counted 1/output element"} <= codes
    for name, tot in d["totals"]["counters"].items():
        assert tot["explained"] and tot["unexplained_layers"] == []
        assert tot["measured"] - d["totals"]["ours"] == pytest.approx(sum(r["macs"] for r in tot["reasons"]))
    assert d["model_info"]["printed_gflops"] > d["model_info"]["true_gflops"]


def test_cli_check_writes_json(tmp_path, capsys):
    out = tmp_path / "check.json"
    code, stdout, err = _run_cli(["check", "yolov5s", "--img", str(IMG), "--counters", "thop,fcm",
                                  "--json", str(out)], capsys)
    assert code == 0, err
    assert "Totals, to the MAC" in stdout and f"{TH}: BatchNorm counted 4/element" in stdout
    d = json.loads(out.read_text())
    assert set(d["counters"]) == {"thop", "fcm"} and d["totals"]["counters"]["thop"]["explained"]
    # '-' writes the JSON alone on stdout; `model --check` adds the check to the model record
    code, stdout, _ = _run_cli(["model", "yolov5s", "--img", str(IMG), "--check", "--json", "-"], capsys)
    d = json.loads(stdout)
    assert code == 0 and "layers" in d and set(d["check"]["counters"]) == set(rules.COUNTERS)


def test_cli_errors(capsys):
    code, _, err = _run_cli(["check", "yolov5s", "--counters", "fvcor"], capsys)
    assert code == 2 and "fvcore" in err and err.count("\n") == 1
    if not torch.cuda.is_available():
        code, _, err = _run_cli(["check", "yolov5s", "--device", "cuda"], capsys)
        assert code == 2 and "CUDA is not available" in err and err.count("\n") == 1
    with pytest.raises(FlopscopeError):
        cc.parse_counters("")
    assert cc.parse_counters("ptflops") == ["ptflops", "ptflops-aten"]


def test_huge_sizes_are_refused_before_a_forward(monkeypatch):
    import flopscope.memory as mem

    monkeypatch.setattr(mem, "available_bytes", lambda device="cpu": 1 << 20)
    with pytest.raises(FlopscopeError, match="needs about"):
        cc.crosscheck("yolov5s", img=IMG, counters="fcm")


def test_transformer_thop_versions_and_multihead_attention():
    """thop 0.1.1 (recorded) misses nn.MultiheadAttention; thop 2.x counts it: its projections and matmuls as we
    do, plus its softmax at 3S-1 per row (S = key length: the 2x2 P5 map at 64 px, 4 tokens)."""
    res = cc.crosscheck("yolov5s-transformer", img=IMG, counters="thop,ptflops,fcm")
    old = thop01.recorded("yolov5s-transformer")["small_per_layer"]
    idx = [i for i, lc in enumerate(res.layers) if lc.module == "C3TR"]
    assert idx
    for i in idx:
        lc, rec = res.layers[i], res.report.layers[i]
        mha = _op_macs(rec, "MultiheadAttention")
        bn = _elems(rec, "BatchNorm2d")
        soft = [t.elems for t in rec.terms if t.name.endswith("softmax") and t.op == "softmax"]
        assert mha > 0 and soft
        assert old[i] == rec.macs - mha + 4 * bn  # thop 0.1.1 does not hook nn.MultiheadAttention
        cell = lc.cells["thop"]
        assert cell.explained
        if THOP2:
            s_len = (IMG // 32) ** 2
            assert cell.measured == rec.macs + 4 * bn + sum(3 * e - e // s_len for e in soft)
            assert dict(cell.reasons)["thop 2.x: MHA softmax counted 3S-1 per row"] == \
                sum(3 * e - e // s_len for e in soft)
        else:
            assert dict(cell.reasons)["thop: nn.MultiheadAttention not hooked"] == -mha
        assert lc.cells["fcm"].delta == 0  # FlopCounterMode sees the attention
        assert lc.cells["ptflops"].explained
    for name in ("thop", "ptflops", "ptflops-aten", "fcm"):
        assert res.total_cell(name).explained, name


def _has_config(name):
    return (resources.files("flopscope.yamls") / name).is_file()


@pytest.mark.skipif(not _has_config("yolov5_dynamic.yaml"), reason="yolov5_dynamic.yaml not bundled yet")
def test_dynamic_conv_thop_misses_functional_conv():
    res = cc.crosscheck("yolov5_dynamic", img=IMG, counters="thop,fcm")
    idx = [i for i, lc in enumerate(res.layers) if lc.module == "Dynamic_conv2d"]
    assert idx
    for i in idx:
        lc, rec = res.layers[i], res.report.layers[i]
        cell = lc.cells["thop"]
        assert cell.explained and cell.significant
        conv = _op_macs(rec, "F.conv2d")
        assert conv > 0
        assert dict(cell.reasons)[f"{TH}: F.conv2d not hooked"] == -conv
        assert lc.cells["fcm"].delta == 0
    assert res.total_cell("thop").explained and res.total_cell("fcm").explained


# -- one routing of `from`, one build per command run (issue 11) ------------------------------------------------
def test_owner_tracing_is_routed_by_count_layers(monkeypatch):
    """trace_layers (the owners the counter rules look at) gets each row's inputs from engine.layer_inputs, the one
    place that reads `from`, through count_layers: the same terms as the report, row by row."""
    from flopscope import build_model, engine
    from flopscope.counters.owners import trace_layers

    model = build_model("yolo11n")
    calls = []
    real = engine.layer_inputs
    monkeypatch.setattr(engine, "layer_inputs", lambda f, x, ys: calls.append(f) or real(f, x, ys))
    traced = trace_layers(model, (1, 3, IMG, IMG))
    assert calls == [info.f for info in model.layers]
    rows = engine.count_layers(model, (1, 3, IMG, IMG))
    assert [[(t.name, t.value) for t in terms] for terms, _ in traced] == \
        [[(t.name, t.value) for t in lc.cost.terms] for lc in rows]
    assert all(len(terms) == len(chains) for terms, chains in traced)


def test_commands_hand_the_built_model_down(monkeypatch):
    """table (with --latency) and bench build a config once and count that model at every batch; the real-weight
    copy for timing is materialised from it, not rebuilt from the name."""
    from flopscope import bench, builder, table
    from flopscope.table import compare_table

    seen = []
    real = builder.build_model

    def spy(cfg, *a, **k):
        seen.append((cfg, k.get("device")))
        return real(cfg, *a, **k)

    monkeypatch.setattr(builder, "build_model", spy)
    monkeypatch.setattr(table, "build_model", spy)
    t = compare_table(["yolov5n"], img=IMG, latency=True, device="cpu", batch=1, warmup=0, iters=1)
    assert t.rows[0].latency_ms is not None
    assert [c for c, _ in seen if isinstance(c, str)] == ["yolov5n"]  # one build from the name
    assert [d for _, d in seen] == [None, "cpu"]  # the counted (meta) model, then its CPU materialisation
    seen.clear()
    meta = real("yolov5n")
    res = bench.run_bench(meta, img=IMG, batch=[1, 2], device="cpu", warmup=0, iters=1)
    assert [r["batch"] for r in res["runs"]] == [1, 2]
    assert seen == [(meta.config, "cpu")]
