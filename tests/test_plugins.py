"""Plugins: user files written the way the seeds write modules profile correctly; shadowing is reported.

Oracles: FlopCounterMode on a real CPU forward of the built model, hand-derived conv arithmetic, the
line numbers of the class statements read from the test's own source text, YOLOv5's published params.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import flopscope
from flopscope.plugins import PluginError, infer_rule, load_plugin
from flopscope.registry import MODULES

# seed-004 style: YOLOv5's own Bottleneck and C3 copied into common.py, then a blog's "Bottleneck with iRMB"
# pasted further down (same class name), using YOLOv5's Conv without defining it.
SEED_COMMON = '''\
# models/common.py (excerpt) + "improve YOLOv5 with iRMB" pasted at the end
import torch
import torch.nn as nn
from models.common import Conv


class Bottleneck(nn.Module):
    # Standard bottleneck
    def __init__(self, c1, c2, shortcut=True, g=1, e=0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        return x + self.cv2(self.cv1(x)) if self.add else self.cv2(self.cv1(x))


class C3(nn.Module):
    # CSP Bottleneck with 3 convolutions
    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x):
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class iRMB(nn.Module):
    def __init__(self, dim_in, dim_out, exp_ratio=1.0, dw_ks=3, dim_head=8):
        super().__init__()
        self.norm = nn.BatchNorm2d(dim_in)
        self.dim_head = dim_head
        self.num_head = dim_in // dim_head
        dim_mid = int(dim_in * exp_ratio)
        self.qk = nn.Conv2d(dim_in, dim_in * 2, 1, bias=False)
        self.v = nn.Sequential(nn.Conv2d(dim_in, dim_mid, 1, bias=False), nn.SiLU())
        self.conv_local = Conv(dim_mid, dim_mid, dw_ks, 1, g=dim_mid)
        self.proj = nn.Conv2d(dim_mid, dim_out, 1, bias=False)
        self.has_skip = dim_in == dim_out

    def forward(self, x):
        shortcut = x
        x = self.norm(x)
        b, c, h, w = x.shape
        q, k = self.qk(x).view(b, 2, self.num_head, self.dim_head, h * w).unbind(1)
        attn = ((q.transpose(-2, -1) @ k) * self.dim_head ** -0.5).softmax(dim=-1)
        v = self.v(x).view(b, self.num_head, -1, h * w)
        x = (v @ attn.transpose(-2, -1)).reshape(b, -1, h, w)
        x = self.proj(x + self.conv_local(x))
        return shortcut + x if self.has_skip else x


class Bottleneck(nn.Module):
    # pasted from the blog: Bottleneck with iRMB
    def __init__(self, c1, c2, shortcut=True, g=1, e=0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 3, 1)
        self.cv2 = Conv(c_, c2, 3, 1, g=g)
        self.iRMB = iRMB(c2, c2)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        return x + self.iRMB(self.cv2(self.cv1(x))) if self.add else self.iRMB(self.cv2(self.cv1(x)))
'''

DECLARED = '''\
import flopscope


@flopscope.register(channels=flopscope.same_channel, description="depth-wise k x k conv, no bias")
class DWMix(nn.Module):
    def __init__(self, c1, k=3):
        super().__init__()
        self.conv = nn.Conv2d(c1, c1, k, 1, k // 2, groups=c1, bias=False)

    def forward(self, x):
        return self.conv(x)


@flopscope.formula(DWMix)
def dwmix_cost(m, t, x):
    return t(m.conv, x, "conv")


class Gate(nn.Module):
    flopscope_channels = "same"

    def __init__(self, c1, k=3):
        super().__init__()
        self.conv = nn.Conv2d(c1, c1, k, 1, k // 2, bias=False)

    def forward(self, x):
        return x * torch.sigmoid(self.conv(x))


class Mix(nn.Module):
    def __init__(self, c1, c2):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, 1, bias=False)

    def forward(self, x):
        return self.conv(x)
'''


def _yaml(rows: str) -> str:
    return textwrap.dedent("""\
        nc: 80
        depth_multiple: 0.33
        width_multiple: 0.25
        anchors: 3
        backbone:
          [[-1, 1, Conv, [64, 6, 2, 2]],
           [-1, 1, Conv, [128, 3, 2]],
        {rows}   ]
        head:
          [[[-1], 1, Detect, [nc, anchors]]]
        """).format(rows=textwrap.indent(textwrap.dedent(rows), "   "))


@pytest.fixture
def loaded():
    plugins = []

    def load(path):
        p = load_plugin(path)
        plugins.append(p)
        return p

    yield load
    for p in plugins:
        p.unload()


def _write(tmp_path, name, text):
    d = tmp_path / name.replace(".", "_")
    d.mkdir(exist_ok=True)
    f = d / name
    f.write_text(text)
    return f


def _class_lines(text, name):
    return [i for i, line in enumerate(text.splitlines(), 1) if line.startswith(f"class {name}(")]


def _fcm_total(model, img):
    with torch.no_grad(), FlopCounterMode(display=False) as fcm:
        model(torch.zeros(1, model.ch, img, img))
    return fcm.get_total_flops()


def test_seed004_style_plugin_profiles_like_a_real_forward(tmp_path, loaded):
    f = _write(tmp_path, "common.py", SEED_COMMON)
    p = loaded(str(f))
    c3, irmb = p.names["C3"], p.names["iRMB"]
    assert c3 == "C3"  # the user's code wins: 'C3' in a config builds the plugin's class
    cfg = tmp_path / "seed.yaml"
    cfg.write_text(_yaml(f"""\
        [-1, 3, {c3}, [128]],
        [-1, 1, Conv, [256, 3, 2]],
        [-1, 1, {irmb}, [256]],
        [-1, 1, SPPF, [256, 5]],
        """))
    img = 64
    r = flopscope.profile(str(cfg), img=img)
    cpu = flopscope.build_model(str(cfg), device="cpu")
    assert r.flops == _fcm_total(cpu, img)
    assert r.params == sum(x.numel() for x in cpu.parameters())
    # the plugin's C3 really holds the pasted Bottleneck: a 3x3 cv1 and an iRMB per repeat
    built = cpu.model[2]
    assert type(built.m[0]).__module__ == p.module_name
    assert built.m[0].cv1.conv.kernel_size == (3, 3) and hasattr(built.m[0], "iRMB")
    # modules without a formula are counted by FlopCounterMode and marked
    assert "op-level" in r.layers[2].counted_by and "op-level" in r.layers[4].counted_by
    assert r.layers[0].counted_by == "formula"
    assert c3 in p.no_formula


def test_plugin_replaces_builtins_only_while_loaded(tmp_path):
    from flopscope.modules.yolov5 import Bottleneck, C3

    p = load_plugin(str(_write(tmp_path, "common.py", SEED_COMMON)))
    try:
        assert MODULES["C3"].cls is p.module.C3 and MODULES["Bottleneck"].cls is p.module.Bottleneck
        # the built-ins stay reachable under a qualified name
        assert MODULES["flopscope.C3"].cls is C3 and MODULES["flopscope.Bottleneck"].cls is Bottleneck
        assert MODULES["C3"].replaces.cls is C3 and MODULES["C3"].replaced_as == "flopscope.C3"
    finally:
        p.unload()
    assert MODULES["Bottleneck"].cls is Bottleneck and MODULES["C3"].cls is C3
    assert "flopscope.C3" not in MODULES
    assert flopscope.profile("yolov5n", img=64).params == 1_872_157  # YOLOv5's published count


def test_shadowing_warnings_name_both_definitions(tmp_path, loaded):
    f = _write(tmp_path, "common.py", SEED_COMMON)
    p = loaded(str(f))
    first, second = _class_lines(SEED_COMMON, "Bottleneck")
    text = "\n".join(p.warnings)
    twice = [w for w in p.warnings if "defined 2 times" in w]
    assert len(twice) == 1
    assert f"{f}:{first}" in twice[0] and f"{f}:{second}" in twice[0]
    assert "C3 (line" in twice[0]  # the class in the file that silently uses the later Bottleneck
    shadow = [w for w in p.warnings if "replaces the built-in Bottleneck" in w]
    assert len(shadow) == 1
    assert shadow[0].startswith(f"{f}:{second}:")  # the definition that is built ...
    assert "yolov5.py:" in shadow[0] and "'flopscope.Bottleneck'" in shadow[0]  # ... and the built-in's
    assert "replaces the built-in C3" in text
    # inferred rules are announced (no rule declared in this file)
    assert "(no rule declared" in text


def test_declared_rules_and_formula_are_exact(tmp_path, loaded):
    f = _write(tmp_path, "blocks.py", DECLARED)
    p = loaded(str(f))
    assert p.spec("DWMix").channels.name == "same" and not p.spec("DWMix").inferred
    assert p.spec("Gate").channels.name == "same" and not p.spec("Gate").inferred
    assert p.spec("Mix").channels.name == "conv" and p.spec("Mix").inferred
    inferred = [w for w in p.warnings if "no rule declared" in w]
    assert len(inferred) == 1 and "Mix" in inferred[0] and "Gate" not in inferred[0] and "DWMix" not in inferred[0]
    n = p.names
    cfg = tmp_path / "declared.yaml"
    cfg.write_text(_yaml(f"""\
        [-1, 1, {n['DWMix']}, [5]],
        [-1, 1, {n['Gate']}, []],
        [-1, 1, {n['Mix']}, [256]],
        """))
    img = 64
    r = flopscope.profile(str(cfg), img=img)
    h = w = img // 4  # after the two stride-2 convs
    c = 32  # 128 * width 0.25
    assert r.layers[2].macs == h * w * c * 5 * 5  # depth-wise 5x5: one k*k window per output element
    assert r.layers[2].counted_by == "formula"
    assert r.layers[3].macs == h * w * c * c * 3 * 3
    assert r.layers[4].macs == h * w * c * 64  # Mix: 256 * 0.25 = 64 outputs, 1x1
    assert r.layers[4].out_shape == (1, 64, h, w)
    assert r.flops == _fcm_total(flopscope.build_model(str(cfg), device="cpu"), img)


def test_isolated_import_and_yolov5_names(tmp_path, loaded):
    from flopscope.modules.yolov5 import Conv

    f = _write(tmp_path, "common.py", SEED_COMMON)
    p = loaded(str(f))
    assert "common" not in sys.modules or getattr(sys.modules["common"], "__file__", None) != str(f)
    assert "models.common" not in sys.modules
    assert sys.modules[p.module_name] is p.module and p.module_name.startswith("flopscope_plugin_common_")
    assert p.module.Conv is Conv  # `from models.common import Conv` gave flopscope's Conv
    assert flopscope.load_plugin(str(f)) is p  # loading the same file again is a no-op


def test_plain_names_resolve_without_imports(tmp_path, loaded):
    text = "class Pasted(nn.Module):\n    def __init__(self, c1, c2):\n        super().__init__()\n" \
           "        self.cv = Conv(c1, c2, 3, 1)\n        self.p = autopad(3)\n\n    def forward(self, x):\n" \
           "        return F.relu(self.cv(x)) * math.sqrt(1.0)\n"
    p = loaded(str(_write(tmp_path, "pasted.py", text)))
    assert p.spec("Pasted").channels.name == "conv"


def test_same_name_twice_without_builtin(tmp_path, loaded):
    text = ("class Foo(nn.Module):\n    flopscope_channels = 'same'\n    def __init__(self, c1):\n"
            "        super().__init__()\n\n\nclass Foo(nn.Module):\n    flopscope_channels = 'same'\n"
            "    def __init__(self, c1, k=3):\n        super().__init__()\n")
    f = _write(tmp_path, "twice.py", text)
    p = loaded(str(f))
    a, b = _class_lines(text, "Foo")
    assert any(f"{f}:{a}" in w and f"{f}:{b}" in w for w in p.warnings)
    assert MODULES[p.names["Foo"]].where == f"{f}:{b}"  # the later class is the one registered


@pytest.mark.parametrize("text,line,kind", [
    ("import torch\n\nx = 1\ny = x / 0\n", 4, "ZeroDivisionError"),
    ("x = 1\nclass A(:\n    pass\n", 2, "SyntaxError"),
    ("import torch\nfrom utils.general import LOGGER\n", 2, "ModuleNotFoundError"),
    ("class A(nn.Module):\n    flopscope_channels = 'nope'\n    def __init__(self, c1):\n"
     "        super().__init__()\n", 1, "flopscope_channels"),
])
def test_errors_are_file_line(tmp_path, text, line, kind):
    f = _write(tmp_path, "broken.py", text)
    with pytest.raises(PluginError) as e:
        load_plugin(str(f))
    assert str(e.value).startswith(f"{f}:{line}: ") and kind in str(e.value)
    assert not [n for n, s in MODULES.items() if s.origin == str(f)]


@pytest.mark.parametrize("sig,rule", [
    ("c1, c2, n=1, shortcut=True", "conv+n"), ("c1, c2, k=1", "conv"), ("dim_in, dim_out", "conv"),
    ("c1, kernel_size=7", "same"), ("dim, num_heads=8", "same"), ("", "none"),
    # ambiguous: no rule rather than a guess (the MLCA was built as MLCA(256, 256) = local_size 256)
    ("gain=2", None), ("in_size, local_size=5, gamma=2", None), ("in_channel=3, dim=512", None),
    ("no_spatial=False", None), ("groups", None), ("c1, dim", None), ("*args", None),
])
def test_inferred_rules(sig, rule):
    ns: dict = {}
    exec(f"import torch.nn as nn\nclass X(nn.Module):\n    def __init__(self{', ' if sig else ''}{sig}):\n"
         f"        super().__init__()\n", ns)
    got = infer_rule(ns["X"])[0]
    assert (got.name if got is not None else None) == rule


def _cli(args, capsys):
    from flopscope.cli import main

    with pytest.raises(SystemExit) as e:
        main(args)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


@pytest.fixture
def cleanup(tmp_path):
    from flopscope import plugins

    yield
    for key, p in list(plugins._LOADED.items()):
        if key.startswith(str(tmp_path.resolve())):
            p.unload()


def test_cli_plugin_anywhere_and_json(tmp_path, capsys, cleanup):
    f = _write(tmp_path, "common.py", SEED_COMMON)
    cfg = tmp_path / "seed.yaml"
    cfg.write_text(_yaml("""\
        [-1, 1, C3, [128]],
        """))
    code, out, err = _cli(["model", str(cfg), "--img", "64", "--json", "-", "--plugin", str(f)], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert d["layers"][2]["module"] == "C3" and "op-level" in d["layers"][2]["counted_by"]
    assert d["layers"][2]["channel_rule"]["name"] == "conv+n"
    assert d["layers"][2]["channel_rule"]["source"].startswith("signature C3(c1, c2, n=1")
    assert d["layers"][0]["channel_rule"] == {"name": "conv", "source": "built-in"}
    assert any("C3: built from your class" in n and "'flopscope.C3'" in n for n in d["notes"])
    assert "defined 2 times" in err and "replace the registered module" in err and "--verbose" in err
    bad = _write(tmp_path, "bad.py", "a = 1\nb = undefined_name\n")
    code, out, err = _cli(["--plugin", str(bad), "model", "yolov5n"], capsys)
    assert code == 2
    assert err.strip().splitlines() == [f"flopscope: error: {bad}:2: NameError: name 'undefined_name' is not defined"]


def test_cli_subprocess_plugin_after_command(tmp_path):
    """A fresh process: --plugin after the command's own options, on another command (diff)."""
    f = _write(tmp_path, "common.py", SEED_COMMON)
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(_yaml("[-1, 1, flopscope.C3, [128]],\n"))
    b.write_text(_yaml("[-1, 1, C3, [128]],\n"))
    out = subprocess.run([sys.executable, "-m", "flopscope", "diff", str(a), str(b), "--img", "64", "--json", "-",
                          "--plugin", str(f)], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         env=dict(os.environ, COLUMNS="200"))
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    row = d["rows"][2]
    assert row["status"] == "changed" and "structure" in row["reasons"]
    assert "Bottleneck → Bottleneck (same name, another class)" in row["detail"]
