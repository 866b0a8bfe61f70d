"""One --device parser for every command (issue 10, item 3): check, bench and table accept the same values."""
from __future__ import annotations

import json

import pytest
import torch

from cli_helpers import run_cli
from flopscope import bench, crosscheck, devices

EXPECTED_AUTO = "cuda" if torch.cuda.is_available() else "cpu"


def test_one_parser():
    assert bench.resolve_device is devices.resolve_device  # the old name still works
    for value in ("auto", "AUTO ", "cpu", None):
        assert crosscheck._resolve_device(value) == devices.resolve_device(value, default="cpu")
    assert devices.resolve_device("auto") == EXPECTED_AUTO
    assert devices.resolve_device(None) == EXPECTED_AUTO and devices.resolve_device(None, default="cpu") == "cpu"


@pytest.mark.parametrize("cmd", [["check", "yolov5n", "--img", "64", "--counters", "fcm"],
                                 ["bench", "yolov5n", "--img", "64", "--warmup", "0", "--iters", "1"]])
def test_same_errors_everywhere(cmd):
    code, _, err = run_cli([*cmd, "--device", "tpu"])
    assert code == 2 and err.count("\n") == 1
    assert "--device must be cpu, cuda, cuda:N or auto, got 'tpu'" in err
    if not torch.cuda.is_available():
        code, _, err = run_cli([*cmd, "--device", "cuda:0"])
        assert code == 2 and err.count("\n") == 1 and "CUDA is not available" in err


def test_check_device_auto():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code, out, err = run_cli(["check", "yolov5n", "--img", "64", "--counters", "fcm", "--device", "auto",
                                  "--json", "-"])
    finally:
        torch.set_num_threads(prev)
    assert code == 0, err
    assert json.loads(out)["device"] == EXPECTED_AUTO
