"""The convolution / neck / head part of the zoo: Dynamic_conv2d, ODConv2d, DCNv2 / C3_DCN, DSConv / DSConv2D /
C3_DSConv, SAConv2d / C3_SAC, CARAFE, BiFPN_Concat2/3, CSPStage (train and deploy), PConv / Faster_Block /
C3_Faster, C2f, Decoupled_Detect, Detect_Aux, and their configs.

Oracles, all outside our formulas: FlopCounterMode on a real CPU forward of the same module / model (per op
family: convolutions vs mm/bmm); thop 0.1.x run the way YOLOv5's model_info runs it; YOLOv5's published yolov5s /
yolov5l parameter totals; parameter and sampling arithmetic derived by hand in this file; F.conv2d and a hand
bilinear interpolation for the deformable conv's numerics.
"""
from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

import flopscope
import thop01
from flopscope.registry import MODULES, load_zoo
from flopscope.shapes import ShapeError
from flopscope.tracer import Tracer

load_zoo()
from flopscope.modules.c2f import C2f  # noqa: E402
from flopscope.modules.carafe import CARAFE  # noqa: E402
from flopscope.modules.convs import C3_DSConv, C3_SAC, DSConv, DSConv2D, SAConv2d  # noqa: E402
from flopscope.modules.deformable import SAMPLING_RULE, C3_DCN, DCNv2, modulated_deform_conv2d  # noqa: E402
from flopscope.modules.dynamic import Dynamic_conv2d, ODConv2d  # noqa: E402
from flopscope.modules.fasternet import C3_Faster, Faster_Block, PConv  # noqa: E402
from flopscope.modules.heads import Decoupled_Detect, Detect_Aux  # noqa: E402
from flopscope.modules.necks import BiFPN_Concat2, BiFPN_Concat3, CSPStage, CSPStage_deploy  # noqa: E402

SETTINGS = settings(max_examples=10, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
sizes = st.integers(1, 13)  # odd and even
batches = st.integers(1, 2)
ANCHORS = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
CONV_OPS = {"aten.convolution"}
MM_OPS = {"aten.mm", "aten.addmm", "aten.bmm", "aten.baddbmm"}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny forwards: one intra-op thread is faster than two on a shared, busy machine (restored afterwards)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _shapes(x):
    return [tuple(v.shape) for v in x] if isinstance(x, list) else tuple(x.shape)


def assert_exact(module, *inputs):
    """Analytic MACs (Tracer, every part by formula) == FlopCounterMode / 2 on a real CPU forward, separately for
    convolutions and for mm/bmm; analytic output shape == real.  Returns the analytic cost."""
    module.eval()
    t = Tracer(allow_fallback=False)
    out = t(module, *[_shapes(x) for x in inputs])
    with torch.no_grad(), FlopCounterMode(display=False) as fcm:
        y = module(*[list(x) if isinstance(x, list) else x for x in inputs])
    counts = {str(op): n for op, n in fcm.get_flop_counts().get("Global", {}).items()}
    assert set(counts) <= CONV_OPS | MM_OPS, counts
    cost = t.cost
    assert 2 * cost.macs("conv") == sum(counts.get(op, 0) for op in CONV_OPS)
    assert 2 * (cost.macs("matmul") + cost.macs("linear")) == sum(counts.get(op, 0) for op in MM_OPS)
    assert 2 * cost.macs() == fcm.get_total_flops()
    # only the documented hand rule is invisible to FlopCounterMode, and it is element-wise
    assert {term.rule for term in cost if term.rule} <= {SAMPLING_RULE}
    assert all(term.kind == "elementwise" for term in cost if term.rule)
    assert all(term.value >= 0 for term in cost)
    real = y if isinstance(y, torch.Tensor) else y[0]  # Detect-like heads at eval: (z, per-level maps)
    assert out == tuple(real.shape)
    return cost


def rand(b, c, h, w):
    return torch.randn(b, c, h, w)


# ---------------------------------------------------------------------------------------------------------------
# module properties


@st.composite
def conv_hyper(draw, max_k=5, dilation=True):
    """(c1, c2, k, stride, padding, dilation, groups) with the map large enough for the kernel."""
    g = draw(st.integers(1, 3))
    c1, c2 = g * draw(st.integers(1, 4)), g * draw(st.integers(1, 4))
    k = draw(st.sampled_from([k for k in (1, 3, 5) if k <= max_k]))
    d = draw(st.integers(1, 2)) if dilation else 1
    return c1, c2, k, draw(st.integers(1, 2)), draw(st.sampled_from([0, d * (k // 2)])), d, g


def fitting(draw, k, p, d):
    lo = max(1, d * (k - 1) + 1 - 2 * p)
    return draw(st.integers(lo, lo + 10)), draw(st.integers(lo, lo + 10))


@SETTINGS
@given(st.data())
def test_dynamic_conv2d(data):
    c1, c2, k, s, p, d, g = data.draw(conv_hyper())
    c1 = data.draw(st.sampled_from([c1, 3 * g]))  # in_planes == 3 takes hidden = K
    ratio, kn, bias = data.draw(st.sampled_from([0.25, 1.0])), data.draw(st.integers(1, 4)), data.draw(st.booleans())
    h, w = fitting(data.draw, k, p, d)
    m = Dynamic_conv2d(c1, c2, k, ratio, s, p, d, g, bias, kn)
    cost = assert_exact(m, rand(data.draw(batches), c1, h, w))
    ops = {term.name: term.op for term in cost}
    assert ops["conv"] == "F.conv2d" and ops["aggregate weight"] == "mm"  # thop sees neither


@SETTINGS
@given(st.data())
def test_odconv2d(data):
    c1, c2, k, s, p, d, g = data.draw(conv_hyper())
    if data.draw(st.booleans()):  # depth-wise: the filter attention is skipped
        c1 = c2 = g
    kn = data.draw(st.sampled_from([1, 2, 4]))
    h, w = fitting(data.draw, k, p, d)
    m = ODConv2d(c1, c2, k, s, p, d, g, reduction=data.draw(st.sampled_from([0.0625, 0.5])), kernel_num=kn)
    cost = assert_exact(m, rand(data.draw(batches), c1, h, w))
    agg = sum(term.value for term in cost if term.name.startswith("aggregate."))
    assert (agg > 0) == (k > 1 or kn > 1)  # broadcast aggregation: element-wise, not MACs


@SETTINGS
@given(st.data())
def test_dcnv2(data):
    c1, c2, k, s, p, d, g = data.draw(conv_hyper(max_k=3))
    dg = data.draw(st.sampled_from([v for v in (1, 2, 3) if c1 % v == 0]))
    h, w = fitting(data.draw, k, p, d)
    m = DCNv2(c1, c2, k, s, p, d, g, dg)
    with torch.no_grad():  # non-zero offsets and masks, so the sampling really moves
        m.conv_offset_mask.weight.normal_(0, 0.5)
    assert_exact(m, rand(data.draw(batches), c1, h, w))


@SETTINGS
@given(c1=st.integers(1, 8), c2=st.sampled_from([2, 4, 8]), n=st.integers(1, 2), shortcut=st.booleans(), b=batches,
       h=sizes, w=sizes)
def test_c3_dcn(c1, c2, n, shortcut, b, h, w):
    assert_exact(C3_DCN(c1, c2, n, shortcut), rand(b, c1, h, w))


@SETTINGS
@given(st.data())
def test_dsconv(data):
    c1, c2, k, s, _, d, g = data.draw(conv_hyper())
    p = data.draw(st.sampled_from([None, 0]))
    h, w = fitting(data.draw, k, d * (k // 2) if p is None else 0, d)
    m = DSConv(c1, c2, k, s, p, d, g, bias=data.draw(st.booleans()))
    cost = assert_exact(m, rand(data.draw(batches), c1, h, w))
    assert [term.op for term in cost] == ["F.conv2d"]  # invisible to thop (a _ConvNd subclass + F.conv2d)


@SETTINGS
@given(st.data())
def test_dsconv2d_and_c3_dsconv(data):
    c1, c2, k, s, _, d, g = data.draw(conv_hyper())
    h, w = fitting(data.draw, k, d * (k // 2), d)
    b = data.draw(batches)
    assert_exact(DSConv2D(c1, c2, k, s, None, g, d), rand(b, c1, h, w))
    assert_exact(C3_DSConv(c1, 2 * c2, data.draw(st.integers(1, 2)), data.draw(st.booleans())), rand(b, c1, h, w))


@SETTINGS
@given(st.data())
def test_saconv2d(data):
    c1, c2, k, s, _, d, g = data.draw(conv_hyper(max_k=3))
    h, w = data.draw(st.integers(3, 13)), data.draw(st.integers(3, 13))  # reflect padding 2 needs > 2
    cost = assert_exact(SAConv2d(c1, c2, k, s, None, g, d), rand(data.draw(batches), c1, h, w))
    assert [term.op for term in cost if term.name.startswith("conv_")] == ["F.conv2d", "F.conv2d"]


@SETTINGS
@given(c1=st.integers(1, 8), c2=st.sampled_from([2, 4, 8]), n=st.integers(1, 2), shortcut=st.booleans(), b=batches,
       h=st.integers(3, 13), w=st.integers(3, 13))
def test_c3_sac(c1, c2, n, shortcut, b, h, w):
    assert_exact(C3_SAC(c1, c2, n, shortcut), rand(b, c1, h, w))


def test_saconv2d_small_map_is_a_shape_error():
    m = SAConv2d(4, 4, 3).eval()
    with pytest.raises(RuntimeError):
        m(torch.zeros(1, 4, 2, 5))
    with pytest.raises(ShapeError):
        Tracer()(m, (1, 4, 2, 5))


@SETTINGS
@given(c=st.integers(1, 12), k_enc=st.sampled_from([1, 3, 5]), k_up=st.sampled_from([1, 3, 5]),
       c_mid=st.integers(1, 16), scale=st.integers(1, 3), b=batches, h=sizes, w=sizes)
def test_carafe(c, k_enc, k_up, c_mid, scale, b, h, w):
    cost = assert_exact(CARAFE(c, k_enc, k_up, c_mid, scale), rand(b, c, h, w))
    reassembly = next(term for term in cost if term.name == "reassembly")
    if k_up > 1:
        assert reassembly.op == "einsum" and reassembly.value == b * c * (scale * h) * (scale * w) * k_up ** 2
    else:  # a length-1 contraction is a broadcast multiply (no bmm for FlopCounterMode)
        assert reassembly.kind == "elementwise"


@SETTINGS
@given(cs=st.lists(st.integers(1, 8), min_size=2, max_size=3), b=batches, h=sizes, w=sizes)
def test_bifpn_concat(cs, b, h, w):
    m = BiFPN_Concat2() if len(cs) == 2 else BiFPN_Concat3()
    with torch.no_grad():
        m.w.uniform_(0.5, 2)
    xs = [rand(b, c, h, w) for c in cs]
    cost = assert_exact(m, xs)
    assert cost.macs() == 0
    assert next(term for term in cost if term.name == "scale").value == b * sum(cs) * h * w
    assert sum(p.numel() for p in m.parameters()) == len(cs)
    with pytest.raises(ShapeError):
        Tracer()(BiFPN_Concat3(), [tuple(x.shape) for x in xs[:2]])


@SETTINGS
@given(c1=st.integers(1, 12), c2=st.integers(4, 12), n=st.integers(1, 3), ratio=st.sampled_from([0.5, 1.0]),
       act=st.sampled_from(["silu", "relu"]), b=batches, h=sizes, w=sizes)
def test_csp_stage_train_and_deploy(c1, c2, n, ratio, act, b, h, w):
    x = rand(b, c1, h, w)
    train = assert_exact(CSPStage(c1, c2, n, "BasicBlock_3x3_Reverse", ratio, act), x)
    deploy = assert_exact(CSPStage_deploy(c1, c2, n, "BasicBlock_3x3_Reverse", ratio, act), x)
    cm = c2 - c2 // 2
    assert train.macs() - deploy.macs() == n * b * h * w * cm * int(cm * ratio)  # the 1x1 branches


def test_csp_stage_reparameterize_keeps_outputs():
    torch.manual_seed(0)
    m = CSPStage(6, 10, 2)
    for bn in (mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.data.uniform_(0.5, 2)
    m.eval()
    x = torch.randn(2, 6, 9, 7)
    with torch.no_grad():
        before = m(x)
        params_before = sum(p.numel() for p in m.parameters())
        after = m.reparameterize()(x)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    # hand count: per RepConv (5 -> 5) the 3x3+BN and 1x1+BN (25 + 10 + 225 + 10) become one 3x3 with bias (225 + 5)
    assert params_before - sum(p.numel() for p in m.parameters()) == 2 * ((225 + 10 + 25 + 10) - (225 + 5))
    assert_exact(m, x)


@SETTINGS
@given(dim=st.integers(4, 16), c2=st.integers(1, 12), n_div=st.sampled_from([2, 4]), b=batches, h=sizes, w=sizes)
def test_pconv(dim, c2, n_div, b, h, w):
    cost = assert_exact(PConv(dim, c2, n_div), rand(b, dim, h, w))
    assert next(t for t in cost if t.name == "spatial.partial_conv3").value == b * h * w * 9 * (dim // n_div) ** 2


@SETTINGS
@given(inc=st.integers(1, 12), dim=st.integers(4, 16), ratio=st.sampled_from([1, 2]), ls=st.sampled_from([0.0, 0.5]),
       b=batches, h=sizes, w=sizes)
def test_faster_block(inc, dim, ratio, ls, b, h, w):
    assert_exact(Faster_Block(inc, dim, 4, ratio, 0.1, ls), rand(b, inc, h, w))


@SETTINGS
@given(c1=st.integers(1, 12), c2=st.sampled_from([8, 12, 16]), n=st.integers(1, 2), b=batches, h=sizes, w=sizes)
def test_c3_faster(c1, c2, n, b, h, w):
    assert_exact(C3_Faster(c1, c2, n), rand(b, c1, h, w))


@SETTINGS
@given(c1=st.integers(1, 12), c2=st.integers(2, 16), n=st.integers(1, 3), shortcut=st.booleans(),
       e=st.sampled_from([0.25, 0.5]), b=batches, h=sizes, w=sizes)
def test_c2f(c1, c2, n, shortcut, e, b, h, w):
    c = int(c2 * e)
    if c < 1:
        return
    cost = assert_exact(C2f(c1, c2, n, shortcut, 1, e), rand(b, c1, h, w))
    # Ultralytics form, hand count: 1x1 c1->2c, n x (3x3 + 3x3) on c, 1x1 (2+n)c->c2
    assert cost.macs() == b * h * w * (c1 * 2 * c + n * 18 * c * c + (2 + n) * c * c2)


def _head_inputs(draw, nl, ch, b):
    base = draw(st.integers(1, 4))
    return [rand(b, c, base * 2 ** (nl - 1 - i), base * 2 ** (nl - 1 - i)) for i, c in enumerate(ch)]


@SETTINGS
@given(st.data())
def test_decoupled_detect(data):
    nl, nc = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 6))
    na = data.draw(st.integers(1, 3))
    anchors = [a[: 2 * na] for a in ANCHORS[:nl]]
    ch = [data.draw(st.integers(1, 12)) for _ in range(nl)]
    m = Decoupled_Detect(nc, anchors, ch)
    m.stride = torch.tensor([8.0, 16.0, 32.0][:nl])
    xs = _head_inputs(data.draw, nl, ch, data.draw(batches))
    assert_exact(m, xs)
    with torch.no_grad():  # training output keeps Detect's per-level layout
        m.training = True  # the head's own flag only (BN stays in eval)
        maps = m([x.clone() for x in xs])
    assert [tuple(p.shape) for p in maps] == [(x.shape[0], na, x.shape[2], x.shape[3], nc + 5) for x in xs]


@SETTINGS
@given(st.data())
def test_detect_aux(data):
    nl, nc = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 6))
    ch = [data.draw(st.integers(1, 12)) for _ in range(2 * nl)]
    m = Detect_Aux(nc, ANCHORS[:nl], ch)
    m.stride = torch.tensor([8.0, 16.0, 32.0][:nl])
    b = data.draw(batches)
    xs = _head_inputs(data.draw, nl, ch[:nl], b) + _head_inputs(data.draw, nl, ch[nl:], b)
    cost = assert_exact(m, xs)  # eval: the aux convs run and are counted
    assert sum(t.value for t in cost if t.name.startswith("m2.")) == sum(
        x.shape[0] * x.shape[2] * x.shape[3] * c * 3 * (nc + 5) for x, c in zip(xs[nl:], ch[nl:]))
    with torch.no_grad():
        m.training = True
        assert len(m(list(xs))) == 2 * nl


# ---------------------------------------------------------------------------------------------------------------
# the deformable conv: numerics and the sampling hand rule


def test_deformable_sampling_hand_rule():
    """DCNv2(4 -> 6, k3, s1, p1, deformable_groups 2) on 2x4x5x7: 5x7 outputs, 9 taps.
    Sampling points: 2 samples x 2 groups x 9 taps x 35 pixels = 1260, at 10 FLOPs (2 adds for p0+pk+dp, 2 fractional
    parts, 2 one-minus, 4 corner-weight products) = 12600.  Sampled values: 2 x 4 channels x 9 x 35 = 2520, at 7 FLOPs
    (4 corner products, 3 adds) = 17640.  Total 30240, all of it invisible to FlopCounterMode."""
    m = DCNv2(4, 6, 3, 1, 1, 1, 1, 2).eval()
    t = Tracer(allow_fallback=False)
    t(m, (2, 4, 5, 7))
    rule_terms = {term.name: term.value for term in t.cost if term.rule == SAMPLING_RULE}
    assert rule_terms == {"sampling.coords": 12600, "sampling.interp": 17640}
    assert sum(rule_terms.values()) == 30240
    assert t.notes == [f"hand rule: {SAMPLING_RULE}"]
    # the rest: offset/mask conv (3 x 2 groups x 9 taps = 54 channels) 2*54*35*4*9 and GEMM 2*6*35*4*9 MACs --
    # exactly what FlopCounterMode sees
    assert t.cost.macs() == 2 * 54 * 35 * 4 * 9 + 2 * 6 * 35 * 4 * 9 == 151_200
    assert_exact(m, torch.randn(2, 4, 5, 7))


@pytest.mark.parametrize("s,p,d,g,dg", [(1, 1, 1, 1, 1), (2, 1, 1, 2, 2), (1, 2, 2, 1, 4)])
def test_deformable_conv_with_zero_offsets_is_a_conv(s, p, d, g, dg):
    torch.manual_seed(0)
    x, w, bias = torch.randn(2, 4, 7, 6), torch.randn(6, 4 // g, 3, 3), torch.randn(6)
    ho, wo = (7 + 2 * p - 2 * d - 1) // s + 1, (6 + 2 * p - 2 * d - 1) // s + 1
    offset, mask = torch.zeros(2, 2 * dg * 9, ho, wo), torch.full((2, dg * 9, ho, wo), 0.5)
    y = modulated_deform_conv2d(x, offset, mask, w, bias, s, p, d, g, dg)
    torch.testing.assert_close(y, 0.5 * F.conv2d(x, w, None, s, p, d, g) + bias.view(1, -1, 1, 1))


def test_deformable_conv_samples_bilinearly():
    """1x1 kernel, one output pixel at (1, 1) moved by (dy, dx) = (0.5, -0.25) to (1.5, 0.75): by hand, the corners
    (1,0) (1,1) (2,0) (2,1) weigh (1-.5)(1-.75), (1-.5)(.75), (.5)(1-.75), (.5)(.75); an offset off the map reads 0."""
    x = torch.arange(12.0).view(1, 1, 3, 4)  # x[r, c] = 4r + c
    offset = torch.zeros(1, 2, 3, 4)
    offset[0, 0, 1, 1], offset[0, 1, 1, 1] = 0.5, -0.25
    offset[0, 0, 0, 0] = -5.0  # far above the map
    y = modulated_deform_conv2d(x, offset, torch.ones(1, 1, 3, 4), torch.ones(1, 1, 1, 1))
    hand = 0.5 * 0.25 * 4 + 0.5 * 0.75 * 5 + 0.5 * 0.25 * 8 + 0.5 * 0.75 * 9
    assert y[0, 0, 1, 1].item() == pytest.approx(hand)
    assert y[0, 0, 0, 0].item() == 0.0
    assert y[0, 0, 2, 3].item() == pytest.approx(11.0)


# ---------------------------------------------------------------------------------------------------------------
# hand-derived parameter counts


def dynamic_conv2d_params(c1, c2, k, ratio=0.25, K=4, groups=1, bias=True):
    hidden = K if c1 == 3 else int(c1 * ratio)
    return K * c2 * (c1 // groups) * k * k + (K * c2 if bias else 0) + c1 * hidden + hidden * K


def test_dynamic_conv2d_params_hand_derived():
    for args, expected in [((1024, 512, 1, 1.0), 4 * 512 * 1024 + 4 * 512 + 1024 * 1024 + 1024 * 4),
                           ((3, 16, 3), 4 * 16 * 3 * 9 + 4 * 16 + 3 * 4 + 4 * 4),
                           ((8, 6, 3, 0.25, 1, 1, 1, 2, False, 2), 2 * 6 * 4 * 9 + 8 * 2 + 2 * 2)]:
        m = Dynamic_conv2d(*args)
        assert sum(p.numel() for p in m.parameters()) == expected
    # seed 001's model: yolov5l with the two top-down 1x1 Convs (525,312 and 131,584 params in YOLOv5's log)
    # replaced by Dynamic_conv2d(1024, 512, 1, ratio=1) and Dynamic_conv2d(512, 256, 1, ratio=1)
    r = flopscope.profile("yolov5_dynamic", img=64)
    assert r.layers[10].args == [1024, 512, 1, 1] and r.layers[14].args == [512, 256, 1, 1]
    assert r.layers[10].params == dynamic_conv2d_params(1024, 512, 1, 1.0) == 3_151_872
    assert r.layers[14].params == dynamic_conv2d_params(512, 256, 1, 1.0) == 789_504
    assert r.params == 46_563_709 - 525_312 - 131_584 + 3_151_872 + 789_504


def decoupled_head_params(x, na=3, nc=80):
    """stem 1x1 + cls 3x3 + reg 3x3 (each with BN: 2x) and 1x1 preds with bias: na*nc cls, na*4 box, na obj."""
    return (x * x + 2 * x) + 2 * (9 * x * x + 2 * x) + (x + 1) * na * nc + (x + 1) * na * 4 + (x + 1) * na


def test_decoupled_detect_params_hand_derived():
    assert decoupled_head_params(128) == 19 * 128 ** 2 + 6 * 128 + 129 * 255 == 344_959
    m = Decoupled_Detect(80, ANCHORS, [128, 256, 512])
    assert sum(p.numel() for p in m.parameters()) == sum(map(decoupled_head_params, (128, 256, 512))) == 6_771_837
    # yolov5s (7,235,389, Detect 229,245) with the decoupled head
    r = flopscope.profile("yolov5s_Decoupled_Detect", img=64)
    assert r.layers[24].params == 6_771_837
    assert r.params == 7_235_389 - 229_245 + 6_771_837


# ---------------------------------------------------------------------------------------------------------------
# configs

CONFIGS = {  # config -> modules it must contain
    "yolov5_dynamic": {"Dynamic_conv2d"},
    "yolov5s_Dynamic_conv2d": {"Dynamic_conv2d"},
    "yolov5s_ODConv2d": {"ODConv2d"},
    "yolov5s_DCNv2": {"DCNv2", "C3_DCN"},
    "yolov5s_DSConv": {"C3_DSConv", "DSConv2D"},
    "yolov5s_SAConv2d": {"C3_SAC", "SAConv2d"},
    "yolov5s_CARAFE": {"CARAFE"},
    "yolov5s_BiFPN": {"BiFPN_Concat2", "BiFPN_Concat3"},
    "yolov5s_C3_Faster": {"C3_Faster"},
    "yolov5s_C2f": {"C2f"},
    "yolov5s_Decoupled_Detect": {"Decoupled_Detect"},
    "yolov5s_CSPStage": {"CSPStage"},
    "yolov5s_CSPStage_deploy": {"CSPStage_deploy"},
    "yolov5s_aux": {"Detect_Aux"},
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_counts_equal_flopcountermode(name):
    """Builds, places its modules, keeps the head on P3/P4/P5, and FLOPs == FlopCounterMode per layer at 64x64;
    model_info emulation == thop 0.1.x on YOLOv5's 32-px probe."""
    torch.manual_seed(0)
    model = flopscope.build_model(name, device="cpu")
    report = flopscope.profile(model, img=64)
    assert report.stride == [8.0, 16.0, 32.0]
    assert CONFIGS[name] <= {layer.module for layer in report.layers}
    assert report.layers[-1].module in {"Detect", "Decoupled_Detect", "Detect_Aux"}
    with torch.no_grad(), FlopCounterMode(display=False) as fcm:
        y = model(torch.zeros(1, 3, 64, 64))
    counts = fcm.get_flop_counts()
    per_layer = [sum(counts.get(f"DetectionModel.model.{i}", {}).values()) for i in range(len(model.model))]
    assert [layer.flops for layer in report.layers] == per_layer
    assert report.flops == fcm.get_total_flops()
    assert report.params == sum(p.numel() for p in model.parameters())
    assert report.layers[-1].out_shape == tuple(y[0].shape) == (1, 3 * (8 * 8 + 4 * 4 + 2 * 2), 85)
    if name.startswith("yolov5s_"):  # model_info emulation == thop 0.1.1 on YOLOv5's 32-px probe (recorded)
        r640 = flopscope.profile(model, img=640)
        assert r640.model_info_gflops == pytest.approx(thop01.model_info_gflops(name), rel=1e-9)


def test_dcn_layers_say_which_rule_counted_the_sampling():
    r = flopscope.profile("yolov5s_DCNv2", img=64)
    for i in (7, 8):
        assert f"hand rule: {SAMPLING_RULE}" in r.layers[i].counted_by
    assert "hand rule" not in r.layers[6].counted_by


def test_aux_head_rows_and_channel_rule():
    r = flopscope.profile("yolov5s_aux", img=64)
    head = r.layers[-1]
    assert head.f == [17, 20, 23, 24, 25, 26]
    assert head.args[-1] == [128, 256, 512, 128, 256, 512]
    cfg = {"nc": 2, "anchors": 3, "depth_multiple": 0.33, "width_multiple": 0.25,
           "backbone": [[-1, 1, "Conv", [64, 3, 2]], [-1, 1, "Conv", [64, 3, 2]], [-1, 1, "Conv", [64, 3, 2]]],
           "head": [[0, 1, "Conv", [64, 3, 1]], [1, 1, "Conv", [64, 3, 1]], [2, 1, "Conv", [64, 3, 1]],
                    [[0, 1, 2, 3, 4, 5], 1, "Detect_Aux", ["nc", "anchors"]]]}
    model = flopscope.build_model(cfg)
    assert model.model[-1].nl == 3 and model.stride.tolist() == [2.0, 4.0, 8.0]


def test_registered_channel_rules():
    rules = {name: MODULES[name].channels.name for name in
             ("Dynamic_conv2d", "ODConv2d", "DCNv2", "DSConv", "DSConv2D", "SAConv2d", "PConv", "Faster_Block")}
    assert set(rules.values()) == {"conv"}
    for name in ("C3_DCN", "C3_DSConv", "C3_SAC", "C3_Faster", "C2f", "CSPStage", "CSPStage_deploy"):
        assert MODULES[name].channels.name == "conv+n"
    assert MODULES["CARAFE"].channels.name == "same"
    assert MODULES["BiFPN_Concat2"].channels.name == MODULES["BiFPN_Concat3"].channels.name == "concat"
    assert MODULES["Decoupled_Detect"].channels.name == "detect"
    assert MODULES["Detect_Aux"].channels.name == "detect_aux"
