"""--train on every bundled Ultralytics-dialect config: per-layer backward FLOPs = FlopCounterMode over a real CPU
forward + backward (train mode) of our own build, at a small size -- the oracle of tests/test_train.py, in a file of
its own so that it runs beside it (one test file per xdist worker).  Against the real ultralytics training step:
tests/test_train.py::test_ultralytics_backward_flops_equal_the_real_training_step (recorded, 12 models)."""
from __future__ import annotations

import pytest

import flopscope
from flopscope.config import bundled_names, load
from flopscope.train import train_profile
from test_train import _img, _oracle_backward

UL_NAMES = [n for n in bundled_names() if load(n).dialect == "ultralytics"]


@pytest.mark.parametrize("name", UL_NAMES)
def test_backward_flops_equal_fcm_per_layer(name):
    img = _img(name)
    stride = int(flopscope.build_model(name).stride.max())
    batch = 2 if stride >= 64 else 1  # P6 ends on a 1x1 map at 64 px: train-mode BatchNorm needs 2 values
    rep = train_profile(flopscope.build_model(name), (img, img), batch)
    ours = [r.backward_flops for r in rep.layers]
    assert ours == _oracle_backward(name, img, batch=batch)
    assert rep.totals()["backward_flops"] == sum(ours)
