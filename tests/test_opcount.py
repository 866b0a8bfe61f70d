"""The op-level counter (flopscope.opcount) and profile() of any nn.Module.

Oracles: FlopCounterMode on a real CPU forward (conv / linear / matmul MACs), hand derivations written
here (element-wise conventions, the deliberate differences from our formulas), and a YOLOv5-style
model object built by its own parse_model in this file.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml
from torch.utils.flop_counter import FlopCounterMode

import flopscope
from flopscope import build_model
from flopscope.config import bundled_names
from flopscope.errors import FlopscopeError
from flopscope.opcount import RULES, OpCounter, count_ops, op_rule

aten = torch.ops.aten


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def fcm_macs(model, *args) -> int:
    """FlopCounterMode on a real CPU forward.  SDPA runs on its math backend: FlopCounterMode has no rule
    for the CPU flash kernel (aten._scaled_dot_product_flash_attention_for_cpu) and would miss it."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fcm:
        model(*args)
    return fcm.get_total_flops() // 2


def op_count(model, *args) -> OpCounter:
    with torch.no_grad(), OpCounter(model) as oc:
        model(*args)
    return oc


def macs(total: dict) -> int:
    return total["conv"] + total["linear"] + total["matmul"]


# -- the rule table -------------------------------------------------------------------------------
def test_duplicate_rule_is_an_error():
    with pytest.raises(FlopscopeError, match="registered twice"):
        op_rule(aten.convolution)(lambda *a, out, **k: [])
    assert RULES[aten.view] is not None and aten.convolution in RULES


def test_op_without_rule_is_listed_not_silently_zero():
    saved = RULES.pop(aten.silu)
    try:
        oc = op_count(nn.Sequential(nn.SiLU()), torch.empty(1, 2, 3, 3, device="meta"))
        assert oc.not_counted == {"silu": 1} and oc.not_counted_at("0") == {"silu": 1}
    finally:
        RULES[aten.silu] = saved


# -- every bundled config: op-level == formulas, per row ------------------------------------------
def _grid_ops(det, shapes) -> int:
    """YOLOv5's _make_grid at eval (counted op-level; our Detect formula does not count grid building):
    per level the (x, y) grid - 0.5 (2 per cell x na) and anchors x stride (2 x na)."""
    return sum(2 * det.na * s[2] * s[3] + 2 * det.na for s in shapes[: det.nl])


def _ul_anchor_ops(shapes) -> int:
    """Ultralytics' make_anchors (utils/tal.py; built once per input shape, not counted by our formulas, as YOLOv5's
    _make_grid): arange(w) + 0.5 and arange(h) + 0.5 per level."""
    return sum(s[2] + s[3] for s in shapes)


def _rtdetr_anchor_ops(shapes) -> int:
    """RTDETRDecoder._generate_anchors (cached per input shape, not counted by our formula), per anchor position:
    (grid + 0.5) / size for x and y (4); over its 4 values a > eps, a < 1 - eps, &, all, 1 - a, a / (1 - a), log
    (7 x 4); ~valid (1): 33."""
    return 33 * sum(s[2] * s[3] for s in shapes)


def _expected_elementwise_gap(layer_module, formula_terms, in_shape) -> int | None:
    """op-level minus formula element-wise FLOPs where they differ on purpose (None: no fixed figure)."""
    from flopscope.modules.ul_heads import DetectUL
    from flopscope.modules.ul_rtdetr import RTDETRDecoder

    if isinstance(layer_module, DetectUL):
        return _ul_anchor_ops(in_shape)
    if isinstance(layer_module, RTDETRDecoder):
        return _rtdetr_anchor_ops(in_shape)
    name = type(layer_module).__name__
    if name in ("Detect", "Segment", "Detect_Aux", "Decoupled_Detect"):
        return _grid_ops(layer_module, in_shape)
    if name in ("SAConv2d", "C3_SAC"):
        # weight standardisation: sqrt of the variance and + eps, per output channel of each SAConv weight
        return sum(2 * m.out_channels for m in layer_module.modules() if type(m).__name__ == "SAConv2d")
    if name in ("DCNv2", "C3_DCN"):
        return None  # plus the explicit coordinate arithmetic of our pure-PyTorch DCN (checked below)
    return 0


@pytest.mark.parametrize("name", bundled_names())
def test_bundled_config_op_level_equals_formulas(name):
    model = build_model(name)
    report = flopscope.profile(model, img=64)
    h, w = report.img
    oc = op_count(model, torch.empty(1, 3, h, w, device="meta"))
    assert not oc.not_counted
    for k, row in enumerate(report.layers):
        got = oc.total(f"model.{k}")
        assert {kind: got[kind] for kind in ("conv", "linear", "matmul")} == row.macs_by_kind, (k, row.module)
        gap = _expected_elementwise_gap(model.model[k], row.terms, report.layers[k] and _inputs(report, k))
        if gap is None:
            sampled = [t for t in oc.terms(f"model.{k}") if t.op == "aten.grid_sampler_2d"]
            formula = [t for t in row.terms if t.rule]
            assert sum(t.value for t in sampled) == sum(t.value for t in formula) > 0
            extra = got["elementwise"] - row.elementwise_flops
            assert extra > 0 and {t.op for t in oc.terms(f"model.{k}") if t.kind == "elementwise"} <= {
                "aten.grid_sampler_2d", "aten.add", "aten.sub", "aten.mul", "aten.div", "aten.sigmoid",
                "aten._native_batch_norm_legit_no_training", "aten.native_batch_norm", "aten.silu"}
        else:
            assert got["elementwise"] - row.elementwise_flops == gap, (k, row.module)


def _inputs(report, k):
    f = report.layers[k].f
    outs = [r.out_shape for r in report.layers]
    return [outs[j] for j in f] if isinstance(f, list) else [outs[f]]


def test_op_level_counter_in_count_layers():
    from flopscope.engine import OP_LEVEL, count_layers

    model = build_model("yolov5s_CBAM")
    ours = count_layers(model, (2, 3, 96, 64))
    theirs = count_layers(model, (2, 3, 96, 64), counter=OP_LEVEL)
    assert [a.out_shape for a in ours[:-1]] == [b.out_shape for b in theirs[:-1]]  # Detect at eval: (z, maps)
    assert [a.cost.by_kind() for a in ours] == [b.cost.by_kind() for b in theirs]
    assert all(b.counted_by.startswith("op-level (") for b in theirs)


# -- zoo modules at odd shapes, batch, groups, strides: property tests in test_opcount_props.py ------------


# -- element-wise conventions by hand -------------------------------------------------------------
def test_elementwise_conventions_by_hand():
    x = torch.empty(2, 4, 6, 6, device="meta")
    n = x.numel()
    cases = [(nn.BatchNorm2d(4, device="meta").eval(), 2 * n), (nn.SiLU(), 5 * n), (nn.ReLU(), n),
             (nn.Softmax(1), 4 * n), (nn.MaxPool2d(3, 1, 1), 9 * n), (nn.Upsample(scale_factor=2), 4 * n),
             (nn.Upsample(scale_factor=2, mode="bilinear"), 11 * 4 * n), (nn.AdaptiveAvgPool2d(1), n),
             (nn.GroupNorm(2, 4, device="meta"), 5 * n), (nn.Hardswish(), 5 * n)]
    for mod, want in cases:
        oc = op_count(mod, x)
        assert oc.total()["elementwise"] == want, mod
    conv = nn.Conv2d(4, 6, 3, 2, 1, groups=2, bias=True, device="meta")
    assert op_count(conv, x).total() == {"conv": 2 * 6 * 3 * 3 * 2 * 9, "linear": 0, "matmul": 0, "elementwise": 0}
    tconv = nn.ConvTranspose2d(4, 6, 3, 2, 1, device="meta")
    assert op_count(tconv, x).total()["conv"] == n * 6 * 9  # input elements x Cout/g x taps


def test_bicubic_upsample_by_hand():
    """aten's upsample_bicubic2d (CPU: cpu_upsample_generic with 4 taps per dimension; CUDA: cubic_interp1d of 4
    cubic_interp1d) interpolates each output value separably: 4 rows of 4 taps (4 mul + 3 add each), then the 4 row
    values (4 mul + 3 add): 5 x 7 = 35 FLOPs per output element, the weights computed per output row / column.
    Bilinear stays thop's 11 per output, nearest 1 (a copy)."""
    from flopscope.registry import load_zoo
    from flopscope.tracer import Tracer

    load_zoo()
    b, c, h, w = 2, 3, 5, 7
    x = torch.empty(b, c, h, w, device="meta")
    for mod, per in [(nn.Upsample(scale_factor=2, mode="bicubic"), 35), (nn.Upsample(size=(9, 4), mode="bicubic"), 35),
                     (nn.Upsample(scale_factor=2, mode="bilinear"), 11), (nn.Upsample(scale_factor=3), 1)]:
        out = mod(x).numel()
        assert op_count(mod, x).total()["elementwise"] == per * out, mod
        t = Tracer(allow_fallback=False)
        t(mod, tuple(x.shape))
        assert t.cost.elementwise_flops == per * out, mod  # the formula path prices it the same
    # F.interpolate / grid_sample bicubic: 35 per sampled value (+ the bilinear coordinate rule per point)
    with torch.no_grad(), OpCounter() as oc:
        F.interpolate(x, scale_factor=(1.5, 2), mode="bicubic", align_corners=True)
    assert oc.total()["elementwise"] == 35 * b * c * 7 * 14
    grid = torch.empty(b, 4, 6, 2, device="meta")
    with torch.no_grad(), OpCounter() as oc:
        F.grid_sample(x, grid, mode="bicubic", align_corners=False)
    assert oc.total()["elementwise"] == 10 * b * 4 * 6 + 35 * b * c * 4 * 6


# -- pure-PyTorch models: MACs == FlopCounterMode on a real forward, nothing uncounted ------------
class ResBlock(nn.Module):
    def __init__(self, c, s=1):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(c, c, 3, s, 1, bias=False), nn.BatchNorm2d(c)
        self.c2, self.b2 = nn.Conv2d(c, c, 3, 1, 2, dilation=2, groups=2, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
        return F.relu(y + (x if y.shape == x.shape else F.avg_pool2d(x, 2)))


class ResNetish(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 7, 2, 3), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        self.layers = nn.Sequential(ResBlock(16), ResBlock(16, 2))
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1).flatten(1))


class ViTish(nn.Module):
    def __init__(self, d=32, heads=4):
        super().__init__()
        self.patch = nn.Conv2d(3, d, 8, 8)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.mha = nn.MultiheadAttention(d, heads, batch_first=True)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.heads = heads

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = t + self.mha(self.norm1(t), self.norm1(t), self.norm1(t))[0]
        b, n, d = t.shape
        q, k, v = self.qkv(self.norm2(t)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        t = t + self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))
        return t + self.mlp(t)


class EinsumAttention(nn.Module):
    def __init__(self, c=16):
        super().__init__()
        self.qkv = nn.Conv2d(c, 3 * c, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(x).flatten(2).chunk(3, 1)
        attn = torch.einsum("bci,bcj->bij", q, k).mul(c ** -0.5).softmax(-1)
        return torch.einsum("bij,bcj->bci", attn, v).view(b, c, h, w) + x


class GridDeform(nn.Module):
    """A deformable block written with grid_sample: offsets from a conv, bilinear sampling, a 1x1 conv."""

    def __init__(self, c=8):
        super().__init__()
        self.offset = nn.Conv2d(c, 2, 3, 1, 1)
        self.proj = nn.Conv2d(c, c, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, device=x.device), torch.linspace(-1, 1, w, device=x.device),
                                indexing="ij")
        grid = torch.stack((xs, ys), -1).unsqueeze(0) + self.offset(x).permute(0, 2, 3, 1).tanh()
        return self.proj(F.grid_sample(x, grid, mode="bilinear", align_corners=False))


@pytest.mark.parametrize("cls,shape", [(ResNetish, (2, 3, 64, 48)), (ViTish, (2, 3, 64, 64)),
                                       (EinsumAttention, (2, 16, 9, 7)), (GridDeform, (2, 8, 13, 11))])
def test_pure_pytorch_models_match_flop_counter_mode(cls, shape):
    torch.manual_seed(0)
    model = cls().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    want = fcm_macs(model, torch.randn(shape))
    report = flopscope.profile(model, inputs=shape, depth=2)
    assert report.macs == want
    assert report.elementwise_flops > 0 and not any("not counted" in n for n in report.notes)
    assert all("not counted" not in r.counted_by for r in report.layers)
    assert report.params == sum(p.numel() for p in model.parameters())
    # the user's module is untouched: same device, same values, no hooks left
    assert all(torch.equal(v, before[k]) and v.device.type == "cpu" for k, v in model.state_dict().items())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    if cls is GridDeform:
        terms = [t for r in report.layers for t in r.terms if t.op == "aten.grid_sampler_2d"]
        b, c, h, w = shape
        # the deformable hand rule: 10 FLOPs per sampled point, 7 per sampled value (point x channel)
        assert sum(t.value for t in terms) == 10 * b * h * w + 7 * b * c * h * w


def test_vit_kinds_linear_vs_matmul():
    model = ViTish().eval()
    b, n, d, heads = 2, 64, 32, 4
    report = flopscope.profile(model, inputs=(b, 3, 64, 64), depth=0)
    linear = b * n * d * d * 4 + b * n * d * 3 * d + b * n * d * d + 2 * b * n * d * 4 * d  # mha in+out, qkv, proj, mlp
    assert report.macs_by_kind["linear"] == linear
    assert report.macs_by_kind["matmul"] == 2 * (2 * b * n * n * d)  # q.k^T and attn.v in both attentions


def test_formulas_used_where_registered_in_a_foreign_module():
    model = ResNetish().eval()
    report = flopscope.profile(model, inputs=(1, 3, 64, 64), depth=1)
    stem = next(r for r in report.layers if r.module == "stem")
    assert stem.counted_by == "formula"  # Conv2d, BatchNorm2d, ReLU, MaxPool2d: all have formulas
    deeper = flopscope.profile(model, inputs=(1, 3, 64, 64), depth=2)
    block = next(r for r in deeper.layers if r.module == "layers.0")
    assert block.counted_by == "formula; op-level (ResBlock)"
    assert report.to_dict()["layers"][0].keys() >= {"params", "flops", "elementwise_flops", "counted_by"}


def test_profile_inputs_forms_and_errors():
    model = EinsumAttention().eval()
    a = flopscope.profile(model, inputs=(1, 16, 8, 8))
    b = flopscope.profile(model, inputs=[torch.randn(1, 16, 8, 8)])
    c = flopscope.profile(model, inputs={"x": (1, 16, 8, 8)})
    d = flopscope.profile(model, img=8)
    assert a.macs == b.macs == c.macs == d.macs > 0
    with pytest.raises(FlopscopeError, match="profile\\(\\) takes"):
        flopscope.profile(42)
    with pytest.raises(FlopscopeError, match="no convolution"):
        flopscope.profile(nn.Linear(3, 4))


# -- a YOLOv5-style model object, built by its own parse_model ------------------------------------
def _make_divisible(x, d=8):
    return math.ceil(x / d) * d


from flopscope.modules.yolov5 import Detect as _Detect  # noqa: E402


class ForkDetect(_Detect):
    """A fork's own Detect (no formula registered for it: counted op-level)."""


def parse_model(d, ch):
    from flopscope.modules import yolov5 as y5

    gd, gw, nc, anchors = d["depth_multiple"], d["width_multiple"], d["nc"], d["anchors"]
    layers, save, chs = [], [], [ch]
    for i, (f, n, m, args) in enumerate(d["backbone"] + d["head"]):
        n = max(round(n * gd), 1) if n > 1 else n
        args = [None if a == "None" else a for a in args]  # YOLOv5 evals the strings
        if m in ("Conv", "C3", "SPPF"):
            c1, c2 = chs[f], _make_divisible(args[0] * gw)
            args = [c1, c2, *args[1:]]
            if m == "C3":
                args.insert(2, n)
                n = 1
        elif m == "Concat":
            c2 = sum(chs[x] for x in f)
        elif m == "Detect":
            args = [nc, anchors, [chs[x] for x in f]]
            c2 = None
        else:
            c2 = chs[f]
        cls = {"Conv": y5.Conv, "C3": y5.C3, "SPPF": y5.SPPF, "Concat": y5.Concat, "nn.Upsample": nn.Upsample,
               "Detect": ForkDetect}[m]
        mod = nn.Sequential(*(cls(*args) for _ in range(n))) if n > 1 else cls(*args)
        mod.f, mod.i, mod.type, mod.np = f, i, f"models.common.{m}", sum(p.numel() for p in mod.parameters())
        save.extend(x % i for x in ([f] if isinstance(f, int) else f) if x != -1)
        layers.append(mod)
        if i == 0:
            chs = []
        chs.append(c2)
    return nn.Sequential(*layers), sorted(save)


class YoloStyleModel(nn.Module):
    def __init__(self, cfg, ch=3):
        super().__init__()
        self.yaml = yaml.safe_load(Path(cfg).read_text())
        self.yaml["ch"] = ch
        self.model, self.save = parse_model(self.yaml, ch)
        det = self.model[-1]
        det.stride = torch.tensor([8.0, 16.0, 32.0])
        self.stride = det.stride

    def forward(self, x):
        y = []
        for m in self.model:
            if m.f != -1:
                x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
            x = m(x)
            y.append(x if m.i in self.save else None)
        return x


def test_yolo_style_model_object_matches_our_build():
    import flopscope.yamls

    cfg = Path(flopscope.yamls.__file__).parent / "yolov5n.yaml"
    model = YoloStyleModel(cfg).eval()
    weights = copy.deepcopy(model.state_dict())
    theirs = flopscope.profile(model, img=64)
    ours = flopscope.profile("yolov5n", img=64)
    assert [(r.index, r.f) for r in theirs.layers] == [(r.index, r.f) for r in ours.layers]
    assert [r.params for r in theirs.layers] == [r.params for r in ours.layers] == \
        [m.np for m in model.model]
    assert [r.flops for r in theirs.layers] == [r.flops for r in ours.layers]
    assert [r.out_shape for r in theirs.layers[:-1]] == [r.out_shape for r in ours.layers[:-1]]
    assert theirs.layers[-1].counted_by.startswith("formula; op-level (ForkDetect)")
    assert theirs.layers[2].counted_by == "formula" and theirs.layers[2].module == "C3"
    assert theirs.macs == fcm_macs(model, torch.zeros(1, 3, 64, 64))
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


def test_cli_model_file_name(tmp_path):
    from cli_helpers import run_cli
    import json

    f = tmp_path / "nets.py"
    f.write_text("import torch.nn as nn\n"
                 "class Tiny(nn.Module):\n"
                 "    def __init__(self):\n"
                 "        super().__init__(); self.c = nn.Conv2d(3, 8, 3, 2, 1); self.fc = nn.Linear(8, 4)\n"
                 "    def forward(self, x):\n"
                 "        return self.fc(self.c(x).relu().mean((2, 3)))\n"
                 "def make():\n    return Tiny()\n")
    rc, out, err = run_cli(["model", f"{f}:make", "--input", "2,3,32,32", "--json", "-"])
    assert rc == 0, err
    d = json.loads(out)
    assert d["totals"]["macs"] == 2 * 16 * 16 * 8 * 27 + 2 * 8 * 4 and d["batch"] == 2
    rc, out, err = run_cli(["model", f"{f}:Tiy"])
    assert rc == 2 and "did you mean Tiny" in err
