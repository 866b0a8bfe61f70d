"""`flopscope model`: outputs from one record, and bad input as one clear line with exit code 2."""
from __future__ import annotations

import csv
import io
import json

import pytest

import flopscope

from cli_helpers import run_subprocess


def run(*args, cwd=None):
    return run_subprocess(*args, cwd=cwd)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


def test_table_and_summary(tmp):
    rc, out, err = run("model", "yolov5s", "--img", "640", cwd=tmp)
    assert rc == 0, err
    assert "7,235,389" in out
    assert "YOLOv5 model_info would print 16.6 GFLOPs" in out
    assert "16.434 GFLOPs" in out  # 2 x 8.2172808 GMACs (FlopCounterMode-checked in test_foundation)


def test_json_stdout_equals_api(tmp):
    rc, out, err = run("model", "yolov5n", "--img", "320,256", "--batch", "2", "--json", "-", cwd=tmp)
    assert rc == 0, err
    assert json.loads(out) == json.loads(json.dumps(flopscope.profile("yolov5n", img=(320, 256), batch=2).to_dict()))


def test_csv_and_md_files(tmp):
    rc, _, err = run("model", "yolov5s", "--img", "320", "--csv", str(tmp / "a.csv"), "--md", str(tmp / "a.md"),
                     "--json", str(tmp / "a.json"), cwd=tmp)
    assert rc == 0, err
    rows = list(csv.DictReader(io.StringIO((tmp / "a.csv").read_text())))
    assert len(rows) == 26 and rows[-1]["idx"] == "total"
    data = json.loads((tmp / "a.json").read_text())
    assert int(rows[-1]["params"]) == data["totals"]["params"] == 7_235_389
    md = (tmp / "a.md").read_text()
    assert md.count("\n| ") >= 27 and "**7,235,389**" in md


def _cfg(tmp, name, text):
    p = tmp / name
    p.write_text(text)
    return str(p)


BASE = """nc: 80
depth_multiple: 0.33
width_multiple: 0.25
anchors: 3
backbone:
  [[-1, 1, Conv, [64, 6, 2, 2]],
   [-1, 1, Conv, [128, 3, 2]],
   [-1, 3, C3, [128]],
   [-1, 1, Conv, [256, 3, 2]]]
head:
  [[-1, 1, Conv, [128, 1, 1]],
   [-1, 1, nn.Upsample, [None, 2, 'nearest']],
   [[-1, 2], 1, Concat, [1]],
   [[-1, 3], 1, {last}, [1]]]
"""


@pytest.mark.parametrize("case,text,needles", [
    ("unknown", BASE.replace("[-1, 3, C3, [128]]", "[-1, 3, C4, [128]]").format(last="Concat"),
     ["layer 2", "module", "'C4'", "did you mean", "C3"]),
    ("malformed", BASE.replace("[-1, 3, C3, [128]]", "[-1, 3, C3]").format(last="Concat"), ["layer 2", "backbone"]),
    ("from-range", BASE.replace("[[-1, 2], 1, Concat", "[[-1, 12], 1, Concat").format(last="Concat"),
     ["layer 6", "from", "12"]),
    ("mismatch", BASE.format(last="Concat"), ["layer 7", "shape", "concatenate"]),
])
def test_bad_configs_one_line_exit_2(tmp, case, text, needles):
    path = _cfg(tmp, f"{case}.yaml", text)
    rc, out, err = run("model", path, cwd=tmp)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert path in lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.mark.parametrize("img", ["0", "-32", "abc", "640,480,320", "1.5"])
def test_bad_img(tmp, img):
    rc, _, err = run("model", "yolov5n", f"--img={img}", cwd=tmp)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "--img" in err and "Traceback" not in err


def test_missing_file_and_debug(tmp):
    rc, _, err = run("model", "no/such/model.yaml", cwd=tmp)
    assert rc == 2 and "no such file" in err and "Traceback" not in err
    rc, _, err = run("--debug", "model", "no/such/model.yaml", cwd=tmp)
    assert rc == 2 and "Traceback" in err


def test_not_multiple_of_stride_is_rounded_up_with_a_note(tmp):
    rc, out, err = run("model", "yolov5n", "--img", "650", cwd=tmp)
    assert rc == 0, err
    assert "not a multiple of the max stride 32" in out and "672x672" in out
