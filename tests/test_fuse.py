"""--fuse: the model as YOLOv5's own fuse() leaves it.

Oracles: YOLOv5's published fused summaries (yolov5s 7,225,885 params, 16.4 GFLOPs after fuse();
n/m/l/x in /work/shared/design/ultralytics.md), and an independent fold written here: a copy of the
real CPU model in which every YOLOv5 Conv's BatchNorm is folded by hand (the textbook formula,
not flopscope's code), compared by sum(numel), FlopCounterMode on a real forward and the outputs.
"""
from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

import flopscope
from flopscope.modules.yolov5 import Conv

from cli_helpers import run_cli

# YOLOv5 v7.0, `model.fuse()` summary lines (params); yolov5s also prints 16.4 GFLOPs
PUBLISHED_FUSED = {"yolov5n": 1_867_405, "yolov5s": 7_225_885, "yolov5m": 21_172_173, "yolov5l": 46_533_693,
                   "yolov5x": 86_705_005}


@pytest.mark.parametrize("name,params", PUBLISHED_FUSED.items())
def test_published_fused_params(name, params):
    r = flopscope.profile(name, img=640, fuse=True)
    assert r.params == params
    assert r.fused and r.to_dict()["fused"] is True
    m = flopscope.build_model(name, fuse=True)
    assert sum(p.numel() for p in m.parameters()) == params
    assert all(p.device.type == "meta" for p in m.parameters())


def test_yolov5s_fused_prints_16_4():
    r = flopscope.profile("yolov5s", img=640, fuse=True)
    assert f"{r.model_info_gflops:.1f}" == "16.4"  # YOLOv5: "... 7225885 parameters, 0 gradients, 16.4 GFLOPs"
    assert f"{r.gflops:.1f}" == "16.4"
    assert not flopscope.profile("yolov5s").fused


def _hand_fold(model: nn.Module) -> nn.Module:
    """Independent oracle: every Conv (and subclass, as YOLOv5's isinstance test) gets
    conv' = conv with w * g / sqrt(v + eps) and bias b - m * g / sqrt(v + eps); bn becomes Identity."""
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, Conv) and isinstance(getattr(m, "bn", None), nn.BatchNorm2d):
            c, bn = m.conv, m.bn
            new = nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, c.dilation, c.groups,
                            bias=True)
            with torch.no_grad():
                std = (bn.running_var + bn.eps).sqrt()
                new.weight.copy_(c.weight * (bn.weight / std)[:, None, None, None])
                new.bias.copy_(bn.bias - bn.running_mean * bn.weight / std)
            m.conv, m.bn = new, nn.Identity()
    return model


def _fcm(model, img):
    with torch.no_grad(), FlopCounterMode(display=False) as fcm:
        y = model(torch.randn(1, model.ch, img, img, generator=torch.Generator().manual_seed(1)))
    counts = fcm.get_flop_counts()
    return [sum(counts.get(f"DetectionModel.model.{i}", {}).values()) for i in range(len(model.model))], y


def _randomise_bn(model):
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.mark.parametrize("name", ["yolov5s", "yolov5s-ghost", "yolov5s_DSConv", "yolov5s_C2f", "yolov5s-transformer",
                                  "yolov5s_CSPStage"])
def test_fused_equals_hand_fold_of_real_weights(name):
    torch.manual_seed(0)
    img = 64
    real = flopscope.build_model(name, device="cpu")
    _randomise_bn(real)
    oracle = _hand_fold(real).eval()
    report = flopscope.profile(real, img=img, fuse=True)
    assert report.params == sum(p.numel() for p in oracle.parameters())
    per_layer, y_oracle = _fcm(oracle, img)
    assert [r.flops for r in report.layers] == per_layer
    # flopscope's own fused CPU model: same parameter count, same outputs as the hand fold and the unfused model
    fused = flopscope.build_model(name, device="cpu")
    fused.load_state_dict(real.state_dict())
    from flopscope.fuse import fuse_model

    fuse_model(fused)
    assert sum(p.numel() for p in fused.parameters()) == report.params
    _, y_ours = _fcm(fused, img)
    _, y_real = _fcm(real.eval(), img)
    for a, b, c in zip(_flat(y_ours), _flat(y_oracle), _flat(y_real)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-4)
    assert not any(isinstance(m, nn.BatchNorm2d) for c in fused.modules() if isinstance(c, Conv) for m in c.modules())


def _flat(y):
    if isinstance(y, torch.Tensor):
        return [y]
    return [t for v in y for t in _flat(v)]


def test_profile_does_not_change_the_given_model():
    m = flopscope.build_model("yolov5n")
    before = sum(p.numel() for p in m.parameters())
    flopscope.profile(m, img=64, fuse=True)
    assert sum(p.numel() for p in m.parameters()) == before


def test_left_unfused_norms_are_reported():
    r = flopscope.profile("yolov5s_CSPStage", img=64, fuse=True)
    assert any("leaves in place" in n and "ConvBNAct" in n for n in r.notes)


def test_cli_fuse_everywhere(tmp_path):
    code, out, _ = run_cli(["model", "yolov5s", "--fuse", "--json", "-"])
    d = json.loads(out)
    assert code == 0 and d["fused"] is True and d["totals"]["params"] == 7_225_885
    code, out, _ = run_cli(["model", "yolov5s", "--fuse"])
    assert code == 0 and "yolov5s (fused): 25 layers, 7,225,885 params" in out
    code, out, _ = run_cli(["table", "yolov5s", "yolov5n", "--fuse", "--json", "-"])
    d = json.loads(out)
    assert d["fused"] and [r["params"] for r in d["rows"]] == [7_225_885, 1_867_405] and d["rows"][0]["fused"]
    code, out, _ = run_cli(["diff", "yolov5n", "yolov5s", "--fuse", "--json", "-"])
    d = json.loads(out)
    assert d["fused"] and d["totals"]["params"]["a"] == 1_867_405 and d["totals"]["params"]["b"] == 7_225_885
    code, out, _ = run_cli(["sweep", "yolov5s", "--img", "320,640", "--fuse", "--json", "-"])
    d = json.loads(out)
    assert d["fused"] and d["totals"][0]["params"] == 7_225_885
    code, out, _ = run_cli(["check", "yolov5n", "--img", "64", "--counters", "thop,fcm", "--fuse", "--json", "-"])
    d = json.loads(out)
    assert code == 0 and d["fused"] and d["totals"]["counters"]["fcm"]["delta"] == 0
    code, out, _ = run_cli(["bench", "yolov5n", "--img", "64", "--device", "cpu", "--warmup", "0", "--iters", "1",
                            "--fuse", "--json", "-"])
    d = json.loads(out)
    assert code == 0 and d["fused"] and d["params"] == 1_867_405


# -- Ultralytics' fuse(): an independent re-implementation of its formulas on a copy of the real CPU model ------
def _bn_fold(w, bn):
    """ultralytics' fuse_conv_bn_weights / RepConv._fuse_bn_tensor, written out: (w * g / std, b - m * g / std)."""
    std = (bn.running_var + bn.eps).sqrt()
    return w * (bn.weight / std).reshape(-1, *([1] * (w.dim() - 1))), bn.bias - bn.running_mean * bn.weight / std


def _ul_hand_fuse(model: nn.Module) -> nn.Module:
    """ultralytics 8.4.190 ``BaseModel.fuse()`` redone by hand: for m in model.modules() (pre-order): Conv+BN folded,
    ConvTranspose+BN folded (weights viewed in the conv layout), RepConv.fuse_convs() (3x3 + padded 1x1 + identity
    kernel), RepVGGDW.fuse() (7x7 + padded 3x3), Detect.fuse() (one2one_* = None on a fresh build, whose end2end is
    off), Proto26.fuse() (semseg = None), Pose26.fuse() (flow_model = None, cv4_sigma = None)."""
    F = torch.nn.functional
    model = copy.deepcopy(model)

    def conv_with(c, w, b, cls=nn.Conv2d, **kw):
        new = cls(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, groups=c.groups,
                  dilation=c.dilation, bias=True, **kw)
        with torch.no_grad():
            new.weight.copy_(w)
            new.bias.copy_(b)
        return new

    def visit(m):
        name = type(m).__name__
        if name == "RepConv" and hasattr(m, "conv1"):
            k3, b3 = _bn_fold(m.conv1.conv.weight, m.conv1.bn)
            k1, b1 = _bn_fold(m.conv2.conv.weight, m.conv2.bn)
            k, b = k3 + F.pad(k1, [1, 1, 1, 1]), b3 + b1
            if m.bn is not None:
                c1, g = m.conv1.conv.in_channels, m.conv1.conv.groups
                idk = torch.zeros(c1, c1 // g, 3, 3)
                for i in range(c1):
                    idk[i, i % (c1 // g), 1, 1] = 1
                ki, bi = _bn_fold(idk, m.bn)
                k, b = k + ki, b + bi
            m.conv = conv_with(m.conv1.conv, k, b)
            del m.conv1, m.conv2, m.bn
            m.forward = lambda x, m=m: m.act(m.conv(x))
        elif name == "RepVGGDW" and hasattr(m, "conv1"):
            k7, b7 = _bn_fold(m.conv.conv.weight, m.conv.bn)
            k3, b3 = _bn_fold(m.conv1.conv.weight, m.conv1.bn)
            m.conv = conv_with(m.conv.conv, k7 + F.pad(k3, [2, 2, 2, 2]), b7 + b3)
            del m.conv1
            m.forward = lambda x, m=m: m.act(m.conv(x))
        elif name == "ConvTranspose" and isinstance(m.bn, nn.BatchNorm2d):
            d = m.conv_transpose
            g, (ci, co, kh, kw) = d.groups, d.weight.shape
            w = d.weight.view(g, ci // g, co, kh, kw).transpose(1, 2).reshape(g * co, ci // g, kh, kw)
            w, b = _bn_fold(w, m.bn)
            w = w.view(g, co, ci // g, kh, kw).transpose(1, 2).reshape(ci, co, kh, kw)
            m.conv_transpose = conv_with(d, w, b, cls=nn.ConvTranspose2d)
            m.bn = nn.Identity()
        elif isinstance(m, Conv) and isinstance(getattr(m, "bn", None), nn.BatchNorm2d):
            w, b = _bn_fold(m.conv.weight, m.bn)
            m.conv, m.bn = conv_with(m.conv, w, b), nn.Identity()
        elif hasattr(m, "has_one2one"):  # the Ultralytics heads
            for n in [n for n in m._modules if n.startswith("one2one_")]:
                setattr(m, n, None)
            m.has_one2one = False
            if name == "Segment26":
                m.proto.semseg = None
            if name == "Pose26":
                m.flow_model = m.cv4_sigma = None
        for child in list(m.children()):
            visit(child)

    visit(model)
    return model


CT_YAML = """nc: 4
backbone:
  - [-1, 1, Conv, [16, 3, 2]]
  - [-1, 1, ConvTranspose, [8, 2, 2]]
  - [-1, 1, ConvTranspose, [8, 2, 2, 0, False]]
head:
  - [[2], 1, Detect, [nc]]
"""


@pytest.mark.parametrize("name", ["yolov9t", "yolov10n", "yolo26n-pose", "rtdetr-l",
                                  "convtranspose"])
def test_ultralytics_fused_equals_hand_fuse_of_real_weights(name, tmp_path):
    """Per layer: flopscope's fused FLOPs = FlopCounterMode on a real forward of the hand-fused copy; params = its
    sum(numel); flopscope's own fused CPU model gives the outputs of the unfused one (the folds are value-exact)."""
    torch.manual_seed(0)
    img = 64
    if name == "convtranspose":
        (tmp_path / "ct.yaml").write_text(CT_YAML)
        name = str(tmp_path / "ct.yaml")
    real = flopscope.build_model(name, device="cpu", dialect="ultralytics")
    _randomise_bn(real)
    oracle = _ul_hand_fuse(real).eval()
    report = flopscope.profile(real, img=img, fuse=True)
    assert report.params == sum(p.numel() for p in oracle.parameters())
    per_layer, y_oracle = _fcm(oracle, img)
    assert [r.flops for r in report.layers] == per_layer
    from flopscope.fuse import fuse_model

    fused = copy.deepcopy(real)
    fuse_model(fused)
    assert sum(p.numel() for p in fused.parameters()) == report.params
    x = torch.randn(1, real.ch, img, img, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y_ours, y_real = fused(x), real.eval()(x)
    for a, b, c in zip(_flat(y_ours), _flat(y_oracle), _flat(y_real)):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(a, c, rtol=1e-3, atol=1e-3)
