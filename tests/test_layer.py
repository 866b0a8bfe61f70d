"""`flopscope.build_layer` / `profile_layer`, `flopscope layer` and `flopscope list`.

Oracles: parameter counts by hand-derived arithmetic written here; MACs by FlopCounterMode on a
real CPU forward of the same module; scaling classes by modules whose growth with H·W is known
(a plain conv, global attention, an FC after global pooling).
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

import flopscope
import flopscope.commands  # noqa: F401  (registers the commands on the app)
from flopscope import build_layer, profile_layer
from flopscope.channels import same_channel
from flopscope.cli import app
from flopscope.errors import FlopscopeError
from flopscope.layer import classify
from flopscope.registry import FORMULAS, MODULES, add_module, formula, load_zoo

load_zoo()
runner = CliRunner()


def params(m) -> int:
    return sum(p.numel() for p in m.parameters())


def conv_p(c1, c2, k=1, g=1) -> int:  # YOLOv5 Conv: conv weight (no bias) + BN weight and bias
    return c1 // g * c2 * k * k + 2 * c2


def fcm_macs(name, c1, c2=None, hw=(16, 16), args=None) -> int:
    m = build_layer(name, c1, c2, args, device="cpu")
    with torch.no_grad(), FlopCounterMode(display=False) as fcm:
        m(torch.randn(1, c1, *hw))
    return fcm.get_total_flops() // 2


def term(report, suffix):
    hits = [t for t in report.terms if t.name.endswith(suffix)]
    assert hits, f"no term ending in {suffix!r}: {[t.name for t in report.terms]}"
    return hits


# -- build_layer ------------------------------------------------------------------------------
def test_build_layer_params_by_hand():
    assert params(build_layer("Conv", 64, 128, [3])) == 64 * 128 * 9 + 2 * 128 == 73_984
    assert params(build_layer("Conv", 64)) == conv_p(64, 64)  # c2 defaults to c1
    c_ = 64  # C3(64, 128): c_ = c2 / 2; one Bottleneck(c_, c_, e=1)
    c3 = conv_p(64, c_) * 2 + conv_p(2 * c_, 128) + conv_p(c_, c_) + conv_p(c_, c_, 3)
    assert params(build_layer("C3", 64, 128)) == c3
    assert params(build_layer("C3", 64, 128, n=3)) == c3 + 2 * (conv_p(c_, c_) + conv_p(c_, c_, 3))
    assert params(build_layer("SPPF", 256, 256)) == conv_p(256, 128) + conv_p(4 * 128, 256)
    assert params(build_layer("GhostConv", 64, 128)) == conv_p(64, 64) + conv_p(64, 64, 5, g=64)
    assert params(build_layer("Bottleneck", 64, 64)) == conv_p(64, 32) + conv_p(32, 64, 3)
    assert params(build_layer("nn.BatchNorm2d", 48)) == 2 * 48


def test_build_layer_meta_and_cpu():
    m = build_layer("Conv", 64, 128, [3, 2])
    assert m.conv.weight.device.type == "meta" and m.conv.stride == (2, 2)
    assert build_layer("Conv", 8, 16, device="cpu").conv.weight.device.type == "cpu"


def test_build_layer_channel_rule_errors():
    with pytest.raises(FlopscopeError, match="keeps the channel count|channel rule"):
        build_layer("nn.BatchNorm2d", 64, 32)
    assert params(build_layer("nn.BatchNorm2d", 64, 64)) == 128  # c2 == c1 is fine
    with pytest.raises(FlopscopeError, match="did you mean Conv"):
        build_layer("Convv", 64)
    with pytest.raises(FlopscopeError, match="positive integer"):
        build_layer("Conv", 0)
    with pytest.raises(FlopscopeError, match="failed to build"):
        build_layer("Conv", 64, 64, ["x"])


# -- profile_layer vs FlopCounterMode --------------------------------------------------------
@pytest.mark.parametrize("name,c1,c2,hw,args", [
    ("Conv", 64, 128, (20, 20), [3]),
    ("Conv", 32, 64, (21, 17), [3, 2]),
    ("C3", 64, 128, (20, 20), None),
    ("SPPF", 128, 128, (20, 20), None),
    ("C3TR", 64, 64, (12, 10), None),
    ("GhostConv", 32, 64, (16, 16), None),
])
def test_profile_layer_macs_equal_flopcountermode(name, c1, c2, hw, args):
    r = profile_layer(name, c1, c2, hw=hw, args=args)
    assert r.macs == fcm_macs(name, c1, c2, hw, args)
    assert r.params == params(build_layer(name, c1, c2, args))
    assert r.flops == 2 * r.macs
    assert sum(r.macs_by_kind.values()) == r.macs


def test_profile_layer_shapes_and_batch():
    r = profile_layer("Conv", 64, 128, hw=(80, 60), batch=2, args=[3, 2])
    assert r.in_shape == (2, 64, 80, 60) and r.out_shape == (2, 128, 40, 30)
    assert r.macs == 2 * 40 * 30 * 128 * 64 * 9
    assert [t.name for t in r.terms] == ["conv", "bn", "act"]
    conv = r.terms[0]
    assert (conv.kind, conv.op, conv.share) == ("conv", "Conv2d", 1.0)


def test_terms_are_grouped():
    r = profile_layer("SPPF", 128, 128, hw=20)
    pools = [t for t in r.terms if t.op == "MaxPool2d"]
    assert len(pools) == 1  # the one pool called three times is one term
    assert pools[0].value == 3 * 64 * 20 * 20 * 25


# -- scaling ----------------------------------------------------------------------------------
def test_plain_conv_is_proportional_everywhere():
    r = profile_layer("Conv", 64, 128, hw=80, args=[3])
    assert {t.scaling.cls for t in r.terms} == {"proportional"}
    assert r.scaling["macs"].cls == "proportional" and r.scaling["macs"].ratio_2x == 4.0
    assert r.scaling["macs"].coefficients == {"H·W": 64 * 128 * 9}
    assert any(h % 2 and h % 7 for h, w in r.sizes)  # odd, non-multiple-of-7 sizes were probed


def test_strided_conv_is_step():
    r = profile_layer("Conv", 64, 128, hw=80, args=[3, 2])
    assert r.terms[0].scaling.cls == "step" and "⌈H/2⌉" in r.terms[0].scaling.detail


def test_c3tr_attention_is_quadratic():
    r = profile_layer("C3TR", 64, 64, hw=20)
    for suffix in ("q·kᵀ", "attn·v"):
        assert all(t.scaling.cls == "quadratic" for t in term(r, suffix))
    assert all(t.scaling.cls == "proportional" for t in term(r, "cv1.conv"))
    assert r.scaling["macs"].cls == "quadratic" and r.scaling["macs"].ratio_2x > 4


class _PooledFC(nn.Module):
    """Test module: global average pool -> FC -> FC -> sigmoid gate (SE-like)."""

    def __init__(self, c1, r=4):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(c1, c1 // r, bias=False)
        self.fc2 = nn.Linear(c1 // r, c1, bias=False)

    def forward(self, x):
        b, c = x.shape[:2]
        y = self.fc2(torch.relu(self.fc1(self.pool(x).view(b, c))))
        return x * torch.sigmoid(y).view(b, c, 1, 1)


class _PooledFCNoFormula(_PooledFC):
    """The same without a formula: counted by FlopCounterMode."""


def _pooled_fc_cost(m, t, x):
    b, c, h, w = x
    t(m.pool, x, "pool")
    t(m.fc2, t(m.fc1, (b, c), "fc1"), "fc2")
    t.ew("gate", "Sigmoid", b * c)
    t.ew("scale", "mul", b * c * h * w)
    return x


@pytest.fixture
def pooled_fc():
    names = {"_TestPooledFC": _PooledFC, "_TestPooledFCNoFormula": _PooledFCNoFormula}
    for n, cls in names.items():
        add_module(n, cls, same_channel, "test module")
    formula(_PooledFC)(_pooled_fc_cost)
    yield
    for n in names:
        MODULES.pop(n, None)
    FORMULAS.pop(_PooledFC, None)


def test_pooled_fc_is_constant(pooled_fc):
    r = profile_layer("_TestPooledFC", 64, hw=40, args=[4])
    assert [t.scaling.cls for t in r.terms if t.kind == "linear"] == ["constant", "constant"]
    assert r.macs == 2 * 64 * 16 == fcm_macs("_TestPooledFC", 64, args=[4])
    assert term(r, "pool")[0].scaling.cls == "proportional"
    assert term(r, "gate")[0].scaling.cls == "constant"
    assert r.scaling["macs"].cls == "constant"
    assert r.scaling["elementwise_flops"].cls == "affine"  # gate (constant) + pool and scale (∝ H·W)
    # a registered module without a formula is profiled too (op-level), and classified the same way
    r2 = profile_layer("_TestPooledFCNoFormula", 64, hw=40, args=[4])
    assert r2.macs == r.macs and {t.scaling.cls for t in r2.terms if t.kind != "elementwise"} == {"constant"}
    assert r2.scaling["macs"].cls == "constant" and r2.scaling["elementwise_flops"].cls == "affine"
    assert any("op-level" in n for n in r2.notes)


@pytest.mark.skipif("SE" not in MODULES, reason="SE not registered")
def test_se_fc_is_constant():
    r = profile_layer("SE", 64, hw=40)
    linear = [t for t in r.terms if t.kind == "linear" or (t.kind == "conv" and t.value < 64 * 64)]
    assert linear and all(t.scaling.cls == "constant" for t in linear)


def test_classify_synthetic():
    pts = [(80, 80), (160, 160), (240, 240), (320, 320), (83, 89), (89, 97), (97, 83)]
    cls = lambda f: classify(pts, [f(h, w) for h, w in pts]).cls  # noqa: E731
    assert cls(lambda h, w: 5 * h * w) == "proportional"
    assert cls(lambda h, w: 123) == "constant"
    assert cls(lambda h, w: 3 * (h * w) ** 2) == "quadratic"
    assert cls(lambda h, w: 49 * 9 * -(-h // 7) * -(-w // 7)) == "step"  # windows padded to 7
    assert cls(lambda h, w: 0 if h % 2 == 0 and w % 2 == 0 else h * w) == "step"  # a pad op only at odd sizes
    assert cls(lambda h, w: 7 * (h + w)) == "other"


# -- CLI --------------------------------------------------------------------------------------
def test_cli_layer_json_matches_api():
    res = runner.invoke(app, ["layer", "Conv", "--c", "64", "--c2", "128", "--json", "-"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data == json.loads(json.dumps(profile_layer("Conv", 64, 128).to_dict()))
    assert data["params"] == 64 * 128 + 2 * 128 and data["out_shape"] == [1, 128, 80, 80]
    assert {t["scaling"] for t in data["terms"]} == {"proportional"}


def test_cli_layer_table_and_args():
    res = runner.invoke(app, ["layer", "C3TR", "--c", "64", "--hw", "20,16", "--args", "[False]"])
    assert res.exit_code == 0, res.output
    assert "q·kᵀ" in res.stdout and "quadratic" in res.stdout and "Scaling with H·W" in res.stdout
    assert "C3TR(64, 64, 1, False)" in res.stdout


@pytest.mark.parametrize("argv,needle", [
    (["layer", "Conv", "--args", "__import__('os')"], "--args"),
    (["layer", "Conv", "--hw", "0"], "--hw"),
    (["layer", "nn.BatchNorm2d", "--c", "64", "--c2", "32"], "channel"),
    (["layer", "Conv", "--bogus"], "No such option"),
    (["layer", "Conv", "--c", "x"], "Invalid value"),
])
def test_cli_layer_bad_input_exit_2(argv, needle):
    res = runner.invoke(app, argv)
    assert res.exit_code == 2
    assert needle in res.output and "Traceback" not in res.output


def test_cli_misspelt_name_subprocess(tmp_path):
    p = subprocess.run([sys.executable, "-m", "flopscope", "layer", "C3TRR", "--c", "64"], capture_output=True,
                       text=True, cwd=tmp_path, timeout=120)
    assert p.returncode == 2
    assert "did you mean C3TR" in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and p.stdout == ""


def test_cli_list_json():
    res = runner.invoke(app, ["list", "--json", "-"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    by_name = {m["name"]: m for m in data["modules"]}
    assert set(by_name) == set(MODULES)
    for name, rule in (("Conv", "conv"), ("C3", "conv+n"), ("Detect", "detect")):
        m = by_name[name]
        assert m["family"] == "yolov5" and m["description"]
        assert m["signature"] == MODULES[name].signature and m["signature"].startswith("(")
        assert m["channel_rule"] == {"name": rule, "description": MODULES[name].channels.description}
    assert by_name["nn.Upsample"]["family"] == "torch.nn"
    assert "Conv" in data["families"]["yolov5"]


def test_cli_list_table():
    res = runner.invoke(app, ["list"])
    assert res.exit_code == 0, res.output
    assert "Conv2d(bias=False) + BatchNorm2d" in res.stdout and "conv+n:" in res.stdout


@pytest.mark.parametrize("cmd", ["layer", "list"])
def test_help_has_example(cmd):
    res = runner.invoke(app, [cmd, "--help"])
    assert res.exit_code == 0 and "Example: flopscope " + cmd in res.stdout


def test_api_exported():
    assert flopscope.build_layer is build_layer and flopscope.profile_layer is profile_layer
    assert "build_layer" in flopscope.__all__ and "LayerReport" in flopscope.__all__


# -- issue 10: a module alone, without the YAML args it needs (item 4) -------------------------
def test_cli_layer_missing_args_names_them():
    from cli_helpers import run_cli

    code, out, err = run_cli(["layer", "Dynamic_conv2d", "--c", "64"])
    assert code == 2 and err.count("\n") == 1 and "TypeError" not in err
    assert "needs YAML arg kernel_size" in err and "YAML signature [c2, kernel_size, ratio=0.25, stride=1" in err
    example = err.split("e.g. ")[1]
    assert example.startswith("flopscope layer Dynamic_conv2d --c 64 --args '[")
    argv = example.split(" (")[0].split()[1:]
    argv[-1] = argv[-1].strip("'")
    code, out, err = run_cli(argv)  # the example runs
    assert code == 0, err
    code, out, err = run_cli(["layer", "Conv", "--c", "8", "--args", "[3, 2, 1, 1, 1, 1, 1]"])
    assert code == 2 and "Conv takes at most 6 YAML arg(s) after c2, got 7" in err and "YAML signature [c2, k=1" in err


def test_every_module_missing_args_error_has_signature_and_a_working_example():
    import ast
    import re

    seen = 0
    for name, spec in list(MODULES.items()):
        try:
            build_layer(name, 64)
            continue
        except FlopscopeError as e:
            msg = str(e)
        assert "\n" not in msg and "TypeError" not in msg, (name, msg)
        if "needs YAML arg" not in msg:
            continue
        seen += 1
        assert "YAML signature [" in msg and "--args '[" in msg, msg
        example = re.search(r"--args '(\[.*?\])'( \()?", msg)
        if example.group(2):  # values taken from a bundled config: they build
            build_layer(name, 64, args=ast.literal_eval(example.group(1)))
    assert seen >= 5  # Dynamic_conv2d, ODConv2d, DCNv2, SAConv2d, nn.MaxPool2d ...


# -- issue 10: a module that fuses several inputs, profiled alone (item 5) --------------------
@pytest.mark.parametrize("name,k", [("BiFPN_Concat2", 2), ("BiFPN_Concat3", 3)])
def test_multi_input_module_alone(name, k):
    from cli_helpers import run_cli

    c, h, w = 16, 10, 12
    m = build_layer(name, c, device="cpu")
    with torch.no_grad():
        real = m([torch.randn(1, c, h, w) for _ in range(k)])  # oracle: the module's own forward on k inputs
    assert MODULES[name].channels.inputs == k
    code, out, err = run_cli(["layer", name, "--c", c, "--hw", f"{h},{w}", "--json", "-"])
    assert code == 0, err
    d = json.loads(out)
    assert d["in_shape"] == [[1, c, h, w]] * k and d["out_shape"] == list(real.shape) and d["c2"] == k * c
    assert d["params"] == params(m) == k
    # by hand: k weights summed (k adds incl. eps) and divided, then every input element scaled once
    assert d["elementwise_flops"] == k + k + k * c * h * w and d["macs"] == 0


def test_fixed_arity_is_checked_in_yaml():
    import yaml

    from flopscope import build_model
    from flopscope.config import resolve
    from flopscope.errors import ConfigError

    data = yaml.safe_load(resolve("yolov5s_BiFPN")[2])
    i = next(j for j, r in enumerate(data["head"]) if r[2] == "BiFPN_Concat2")
    data["head"][i][0] = [-1, 6, 4]
    with pytest.raises(ConfigError, match=r"layer \d+: from: this module fuses exactly 2 inputs, 'from' lists 3"):
        build_model(data)
