"""What current Ultralytics and current YOLOv5 print in model.info() (issue 12 item 5, issue 13 item 5):
ultralytics' ``get_flops``, i.e. ultralytics-thop 2.x's stride-aware ``thop.profile`` (proxies one stride tall,
extrapolated), emulated on our terms by flopscope.counters.thop2_info.

Oracles: the real ultralytics-thop (installed: it is our dependency) run here on a real CPU build, called exactly as
``ultralytics.utils.torch_utils.get_flops`` (8.4.190) calls it; for Ultralytics-dialect configs the figures the real
ultralytics 8.4.190 printed, recorded by tools/record_ultralytics.py (checked in tests/test_ultralytics.py, which
builds every recorded model anyway, through :func:`assert_model_info_recorded`).
"""
from __future__ import annotations

import textwrap

import pytest
import torch

import flopscope
from flopscope.builder import build_model
from flopscope.counters.thop import thop_installed
from flopscope.counters.thop2_info import current_model_info
from flopscope.dialects import get_dialect


def assert_model_info_recorded(model, rec, sizes=(640,)) -> None:
    """Our emulation = ``model.info(imgsz=s)``'s GFLOPs recorded from the real ultralytics, to 1e-9 (so the printed
    0.1 agrees too), at each recorded size in ``sizes``."""
    dialect = get_dialect(model.config.dialect)
    assert dialect.model_info_stride_aware
    shared: dict = {}  # the proxies are the same strips at every size
    for s in sizes:
        want = rec["info"].get(str(s))
        if want is None:
            continue
        got = current_model_info(model, (s, s), dialect.model_info_min_cells(model), cache=shared)
        assert got.gflops is not None, (rec["name"], s, got.reason)
        assert got.gflops == pytest.approx(want["gflops"], rel=1e-9, abs=1e-12), (rec["name"], s, got.method)
        assert f"{got.gflops:.1f} GFLOPs" in want["line"]
        assert sum(got.per_layer) == pytest.approx(got.gflops * 1e9, rel=1e-9)


def _thop2():
    dist, version = thop_installed()
    if dist != "ultralytics-thop" or not version.startswith("2."):
        pytest.skip(f"needs ultralytics-thop 2.x (installed: {dist} {version})")
    import thop

    return thop


def get_flops(model, imgsz):
    """ultralytics 8.4.190 ``get_flops`` as current YOLOv5 reaches it (``model_info`` from ultralytics), line for
    line: a YOLOv5 model holds no ultralytics RTDETRDecoder, so ``min_cells`` is 1; exceptions are left to raise."""
    thop = _thop2()
    p = next(model.parameters())
    imgsz = [imgsz, imgsz]
    stride = max(int(model.stride.max()), 32) if hasattr(model, "stride") else 32
    im = torch.empty((1, p.shape[1], *imgsz), device=p.device, dtype=p.dtype)
    return thop.profile(model, inputs=[im], stride=stride, min_cells=1, verbose=False)[0] / 1e9 * 2


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# each takes another path of the stride-aware profile (see the method asserted)
CASES = [
    ("yolov5n", 128, "1 proxies"),  # convs only: one 32x32 proxy x cells
    ("yolov5s_SE", 128, "2 proxies"),  # nn.Linear / adaptive pool: an affine fit
    ("yolov5s-transformer", 256, "4 proxies"),  # nn.MultiheadAttention: a quadratic fit
    ("yolov5s-transformer", 128, "full-size"),  # too few cells for 4 proxies
    ("yolov5s_BiLevelRoutingAttention", 128, "4 proxies"),  # functional matmuls after the first proxy
    ("yolov5s_iRMB", 128, "full-size"),  # windowed attention: the 4 proxies are not quadratic
    ("yolov5s_Dynamic_conv2d", 128, "2 proxies"),  # torch.mm and F.conv2d, which thop 2.x does not count
]


@pytest.mark.parametrize("name,img,method", CASES, ids=[f"{n}@{s}" for n, s, _ in CASES])
def test_current_yolov5_model_info_equals_real_ultralytics_thop(name, img, method):
    """model_info_current_gflops = get_flops with the real ultralytics-thop on a real CPU build of the same config;
    model_info_gflops stays the legacy figure (thop 0.1.1 on the probe x area)."""
    real = get_flops(build_model(name, device="cpu").eval(), img)
    r = flopscope.profile(name, img=img)
    assert r.model_info_current_gflops == pytest.approx(real, rel=1e-9)
    assert method in r.model_info_current_method
    assert sum(x.model_info_current_flops for x in r.layers) == pytest.approx(real * 1e9, rel=1e-9)
    assert r.model_info_gflops == pytest.approx(sum(x.model_info_flops for x in r.layers) / 1e9)  # legacy, per layer
    d = r.to_dict()
    assert d["model_info_current_gflops"] == r.model_info_current_gflops and "model_info_gflops" in d
    assert "model_info_current_gflops" in d["units"]


PLUGIN = '''\
import torch
import torch.nn as nn
from models.common import Conv


class MatAttn(nn.Module):
    """no formula (counted op-level); BatchNorm, convs, 4-D `@` and softmax in its own forward"""

    def __init__(self, c1, heads=4):
        super().__init__()
        self.norm = nn.BatchNorm2d(c1)
        self.qk = nn.Conv2d(c1, 2 * c1, 1, bias=False)
        self.proj = Conv(c1, c1, 1)
        self.heads = heads

    def forward(self, x):
        b, c, h, w = x.shape
        q, k = self.qk(self.norm(x)).view(b, 2, self.heads, c // self.heads, h * w).unbind(1)
        attn = (q.transpose(-2, -1) @ k).softmax(dim=-1)
        return x + self.proj((k @ attn).reshape(b, c, h, w))


class Gram2D(nn.Module):
    """no formula; a 2-D `@` (aten.mm, which torch.mm also dispatches: thop 2.x counts one, not the other)"""

    def __init__(self, c1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c1, 1, bias=False)

    def forward(self, x):
        b, c, h, w = x.shape
        f = self.conv(x).reshape(c, h * w)
        return x + (f @ (f.t() @ f)).reshape(b, c, h, w)
'''


def _plugin_yaml(tmp_path, row):
    from flopscope.plugins import load_plugin

    d = tmp_path / "fork"
    d.mkdir()
    (d / "common.py").write_text(PLUGIN)
    plugin = load_plugin(str(d / "common.py"), channels={"MatAttn": "same", "Gram2D": "same"})
    cfg = tmp_path / "m.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        nc: 80
        depth_multiple: 0.33
        width_multiple: 0.25
        anchors: 3
        backbone:
          [[-1, 1, Conv, [64, 6, 2, 2]],
           [-1, 1, Conv, [128, 3, 2]],
           [-1, 1, Conv, [256, 3, 2]],
           [-1, 1, {plugin.names[row]}, []],
           [-1, 1, SPPF, [256, 5]],
          ]
        head:
          [[[-1], 1, Detect, [nc, anchors]]]
        """))
    return plugin, cfg


def test_plugin_with_functional_matmul_equals_real_ultralytics_thop(tmp_path):
    """A plugin class without a formula (op-level terms) whose forward runs `@`: thop 2.x counts those products
    in its TorchFunctionMode and so fits 4 proxies; equal to the real one at 64 (4 cells, wider proxies than the
    image) and 128."""
    plugin, cfg = _plugin_yaml(tmp_path, "MatAttn")
    try:
        for img in (64, 128):
            real = get_flops(build_model(str(cfg), device="cpu").eval(), img)
            r = flopscope.profile(str(cfg), img=img)
            assert r.model_info_current_gflops == pytest.approx(real, rel=1e-9), img
            assert "4 proxies" in r.model_info_current_method
    finally:
        plugin.unload()


def test_unknowable_figure_is_none_with_the_reason(tmp_path):
    """A 2-D `@` in a plugin without a formula is aten.mm, which `torch.mm` (not counted by thop 2.x) also
    dispatches, so the figure depends on which: None, and a note says why (the real thop, run here, prints a
    figure: we do not guess it)."""
    plugin, cfg = _plugin_yaml(tmp_path, "Gram2D")
    try:
        r = flopscope.profile(str(cfg), img=128)
        assert get_flops(build_model(str(cfg), device="cpu").eval(), 128) > 0
        assert r.model_info_current_gflops is None and r.to_dict()["model_info_current_gflops"] is None
        assert any("model_info_current_gflops" in n and "torch.mm" in n for n in r.notes)
        assert r.model_info_gflops is not None  # the legacy figure is unaffected
    finally:
        plugin.unload()


def test_summary_shows_both_figures_when_they_differ():
    """yolov5s-transformer at 256: legacy (thop 0.1.1 misses nn.MultiheadAttention) and current differ; both are
    printed, labelled.  Ultralytics-dialect configs print their own model.info() figure, labelled as such."""
    from flopscope.render import summary_lines

    r = flopscope.profile("yolov5s-transformer", img=256)
    assert f"{r.model_info_gflops:.1f}" != f"{r.model_info_current_gflops:.1f}"
    text = "\n".join(summary_lines(r))
    assert f"YOLOv5 model_info would print {r.model_info_gflops:.1f} GFLOPs" in text
    assert f"current YOLOv5 (model_info from ultralytics) would print {r.model_info_current_gflops:.1f}" in text
    u = flopscope.profile("yolov8n", img=320)
    text = "\n".join(summary_lines(u))
    assert f"Ultralytics model.info() would print {u.model_info_gflops:.1f} GFLOPs" in text
    assert "current YOLOv5" not in text and "YOLOv5 model_info" not in text
