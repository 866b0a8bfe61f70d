"""flopscope diff: alignment, statuses and deltas.

Oracles: two separate profile() calls (each model's own profile), YOLOv5's published params for
yolov5l, the seed's printed parameter total, and the configs' rows read in the test.
"""
from __future__ import annotations

import json
from importlib import resources

import pytest

import flopscope
from flopscope.diff import diff_models

SEED = "yolov5_iRMB_seed"
YOLOV5L_PARAMS = 46_563_709  # ultralytics/yolov5 published
SEED_PARAMS = 84_787_133  # seed 004's printed log


def _has(name):
    return (resources.files("flopscope.yamls") / f"{name}.yaml").is_file()


needs_seed = pytest.mark.skipif(not _has(SEED), reason=f"{SEED}.yaml not bundled yet")


def _check_deltas(d, a, b, img):
    """Row and total deltas against each model's own, separate profile."""
    pa, pb = flopscope.profile(a, img=img), flopscope.profile(b, img=img)
    for key in ("params", "macs", "flops", "elementwise_flops"):
        assert d.totals()[key]["delta"] == getattr(pb, key) - getattr(pa, key)
        assert sum(d.row_delta(r)[key] for r in d.rows) == getattr(pb, key) - getattr(pa, key)
    assert d.totals()["flops"]["pct"] == pytest.approx(100 * (pb.flops - pa.flops) / pa.flops)
    for r in d.rows:
        la = pa.layers[r.a] if r.a is not None else None
        lb = pb.layers[r.b] if r.b is not None else None
        assert d.row_delta(r)["flops"] == (lb.flops if lb else 0) - (la.flops if la else 0)
        assert d.row_delta(r)["params"] == (lb.params if lb else 0) - (la.params if la else 0)
    return pa, pb


@needs_seed
def test_seed004_every_c3_changed_only_irmb_rows_added():
    img = 256
    d = diff_models("yolov5l", SEED, img=img)
    pa, pb = _check_deltas(d, "yolov5l", SEED, img)
    assert pa.params == YOLOV5L_PARAMS and pb.params == SEED_PARAMS
    assert d.totals()["params"]["delta"] == SEED_PARAMS - YOLOV5L_PARAMS
    assert d.alignment == "sequence"
    a_rows = flopscope.build_model("yolov5l").config.rows
    b_rows = flopscope.build_model(SEED).config.rows
    added = [r.b for r in d.rows if r.status == "added"]
    assert [b_rows[j].module for j in added] == ["iRMB"] * 3 and added == [18, 22, 26]
    assert not [r for r in d.rows if r.status == "removed"]
    c3 = [r for r in d.rows if r.a is not None and a_rows[r.a].module == "C3"]
    assert len(c3) == 8
    for r in c3:
        assert r.status == "changed" and "structure" in r.reasons and "params" in r.reasons, r
        assert a_rows[r.a].args == b_rows[r.b].args  # the YAML args read the same
        assert "3×3" in r.detail  # the pasted Bottleneck's 3x3 cv1
    others = [r for r in d.rows if r.status not in ("added",) and r not in c3]
    assert others and all(r.status == "same" for r in others)
    assert [r.b for r in d.rows if r.rewired] == [19, 23, 27]  # fed by the added iRMB rows


@needs_seed
def test_removed_rows_when_reversed():
    d = diff_models(SEED, "yolov5l", img=128)
    assert [r.a for r in d.rows if r.status == "removed"] == [18, 22, 26]
    _check_deltas(d, SEED, "yolov5l", 128)


def test_index_alignment_for_same_row_structure():
    d = diff_models("yolov5n", "yolov5s", img=128)
    assert d.alignment == "index"
    assert [(r.a, r.b) for r in d.rows] == [(i, i) for i in range(25)]
    changed = {r.a for r in d.rows if r.status == "changed"}
    # rows with weights or channels change; the parameter-free Upsample rows and the Concat
    # of the two widths change shape; nothing is 'same' except layers without channels
    assert changed >= {0, 1, 2, 9, 24}
    assert d.to_dict()["rows"][0]["out_shape_changed"] is True
    _check_deltas(d, "yolov5n", "yolov5s", 128)


def test_identical_models_are_all_same():
    d = diff_models("yolov5s", "yolov5s", img=128)
    assert d.counts == {"same": 25, "changed": 0, "added": 0, "removed": 0}
    assert d.totals()["flops"]["delta"] == 0 and d.totals()["flops"]["pct"] == 0


def test_same_yaml_rows_built_differently(tmp_path):
    """An activation: key changes every Conv's built class tree while no row changes: changed, by structure."""
    base = (resources.files("flopscope.yamls") / "yolov5n.yaml").read_text()
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    a.write_text(base)
    b.write_text("activation: nn.ReLU()\n" + base)
    d = diff_models(str(a), str(b), img=64)
    assert d.alignment == "index"
    conv = [r for r in d.rows if d.a.rows[r.a].module == "Conv"]
    assert conv and all(r.status == "changed" and "structure" in r.reasons for r in conv)
    assert all(r.detail.startswith("built differently from the same YAML row") for r in conv)
    assert all(d.row_delta(r)["params"] == 0 for r in d.rows)
    assert "SiLU → ReLU" in conv[0].detail
    _check_deltas(d, str(a), str(b), 64)


def _cli(args, capsys):
    from flopscope.cli import main

    with pytest.raises(SystemExit) as e:
        main(args)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_cli_json_file_and_stdout(tmp_path, capsys):
    out_file = tmp_path / "diff.json"
    code, out, err = _cli(["diff", "yolov5n", "yolov5s", "--img", "64", "--json", str(out_file)], capsys)
    assert code == 0, err
    assert "GFLOPs" in out and "changed" in out
    d = json.loads(out_file.read_text())
    assert {"a", "b", "img", "batch", "alignment", "counts", "rows", "totals", "units", "notes"} <= set(d)
    pa, pb = flopscope.profile("yolov5n", img=64), flopscope.profile("yolov5s", img=64)
    assert d["totals"]["flops"] == {"a": pa.flops, "b": pb.flops, "delta": pb.flops - pa.flops,
                                    "pct": pytest.approx(100 * (pb.flops - pa.flops) / pa.flops)}
    code, out, err = _cli(["diff", "yolov5n", "yolov5n", "--img", "64", "--json", "-"], capsys)
    assert code == 0 and json.loads(out)["counts"]["same"] == 25
    code, out, err = _cli(["diff", "yolov5n", "nope_model", "--json", "-"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
