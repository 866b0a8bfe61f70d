"""flopscope table: one row per config, exported as Markdown / CSV / JSON.

Oracles: YOLOv5's published params and its printed GFLOPs for yolov5s (16.6), FlopCounterMode on a
real CPU forward, the exported files parsed back with csv / json.
"""
from __future__ import annotations

import csv
import io
import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import flopscope
from flopscope.table import compare_table, to_csv, to_markdown


def _cli(args, capsys):
    from flopscope.cli import main

    with pytest.raises(SystemExit) as e:
        main(args)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def _fcm(cfg, img):
    model = flopscope.build_model(cfg, device="cpu")
    with torch.no_grad(), FlopCounterMode(display=False) as fcm:
        model(torch.zeros(1, 3, img, img))
    return fcm.get_total_flops()


def test_rows_against_published_and_real_forward():
    t = compare_table(["yolov5n", "yolov5s"], img=640)
    n, s = t.rows
    assert (n.model, s.model) == ("yolov5n", "yolov5s")
    assert n.params == 1_872_157 and s.params == 7_235_389
    assert f"{s.yolov5_gflops:.1f}" == "16.6"  # what YOLOv5 prints for yolov5s at 640
    small = compare_table(["yolov5n"], img=160).rows[0]
    assert small.flops == _fcm("yolov5n", 160)
    assert n.latency_ms is None and n.fps is None and not t.measured


def test_exports_parse(tmp_path, capsys):
    md, cs, js = tmp_path / "t.md", tmp_path / "t.csv", tmp_path / "t.json"
    code, out, err = _cli(["table", "yolov5n", "yolov5s", "--img", "320", "--md", str(md), "--csv", str(cs),
                           "--json", str(js)], capsys)
    assert code == 0, err
    assert "Params (M)" in out
    rows = list(csv.DictReader(io.StringIO(cs.read_text())))
    assert [r["model"] for r in rows] == ["yolov5n", "yolov5s"]
    assert float(rows[1]["params_m"]) == pytest.approx(7.235389)
    assert rows[0]["latency_ms"] == "" and rows[0]["img"] == "320x320"
    d = json.loads(js.read_text())
    assert {"img", "rows", "latency_measured", "units", "notes"} <= set(d)
    assert d["rows"][0]["params"] == 1_872_157 and d["rows"][0]["latency_ms"] is None
    assert d["rows"][1]["gflops"] == pytest.approx(float(rows[1]["gflops"]))
    lines = md.read_text().splitlines()
    assert lines[0] == "| Model | Params (M) | GFLOPs | GFLOPs (YOLOv5) |"
    assert lines[2].startswith("| yolov5n | 1.87 | ") and lines[3].startswith("| yolov5s | 7.24 | ")
    code, out, err = _cli(["table", "yolov5n", "--json", "-"], capsys)
    assert code == 0 and json.loads(out)["rows"][0]["model"] == "yolov5n"
    code, out, err = _cli(["table", "yolov5n", "nope_model"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_latency_columns_when_measured():
    try:
        import flopscope.bench  # noqa: F401
    except ImportError:
        t = compare_table(["yolov5n"], img=64, latency=True)
        assert t.rows[0].latency_ms is None and any("latency not measured" in x for x in t.notes)
        return
    t = compare_table(["yolov5n"], img=64, latency=True, device="cpu", warmup=0, iters=2, batch=2)
    r = t.rows[0]
    assert r.latency_ms > 0 and r.fps == pytest.approx(2 * 1000 / r.latency_ms)
    assert r.latency["iters"] == 2 and r.latency["batch"] == 2
    md = to_markdown(t).splitlines()
    assert md[0].endswith("| Latency (ms) | FPS |") and md[2].count("|") == 7
    row = next(csv.DictReader(io.StringIO(to_csv(t))))
    assert float(row["fps"]) == pytest.approx(r.fps)
