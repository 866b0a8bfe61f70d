"""Research code as written (issue 13): a fork's own common.py and parse_model, third-party modules.

Oracle: the test's own fork (tests/research_fork.py: YOLOv5-style parse_model and Model written for the
tests) builds the same YAML on CPU; per layer, params by sum(numel) and FLOPs by FlopCounterMode on a real
forward; the constructor args it passed (kept on each layer) against the args flopscope built with.
Hand derivations where written.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

import flopscope
from flopscope import fork as forkmod
from flopscope.errors import ConfigError
from flopscope.plugins import _LOADED, load_plugin
from flopscope.registry import MODULES

from cli_helpers import run_cli  # noqa: E402
from research_fork import COMMON, YAML, oracle_model, per_layer, write_fork

IMG = 64


@pytest.fixture
def fork(tmp_path):
    root = tmp_path / "yolov5-research"
    cfg = write_fork(root)
    yield root, cfg
    for key, p in list(_LOADED.items()):
        if key.startswith(str(tmp_path.resolve())):
            p.unload()
    forkmod.configure(None)


def _line(text: str, pattern: str, last: bool = False) -> int:
    hits = [i for i, line in enumerate(text.splitlines(), 1) if re.search(pattern, line)]
    return hits[-1] if last else hits[0]


def _compare(report, oracle, img=IMG):
    want = per_layer(oracle, img)
    assert len(report.layers) == len(want)
    for r, (params, flops), m in zip(report.layers, want, oracle.model):
        assert (r.index, r.params, r.flops) == (m.i, params, flops), r.module


def _clean_imports():
    assert not [k for k in sys.modules if k.split(".")[0] in ("models", "utils")]


def test_fork_model_is_built_by_the_forks_code(fork):
    root, cfg = fork
    before = list(sys.path)
    report = flopscope.profile(str(cfg), img=IMG)  # a YAML inside a checkout's models/: the fork's Model
    oracle = oracle_model(root, cfg)
    _compare(report, oracle)
    assert report.stride == [8.0, 16.0]
    assert any("built by the fork's own code" in n for n in report.notes)
    assert any("built on CPU" in n and "strides" in n for n in report.notes)  # its anchor check needs values
    assert all("the fork's parse_model, run" in r.channel_rule["source"] for r in report.layers)
    assert sys.path == before
    _clean_imports()



def test_fork_args_are_what_its_parse_model_logged(fork):
    """YOLOv5's parse_model logs each layer's constructor args (``LOGGER.info(f"{i:>3}{f!s:>18}...{args!s:<30}")``)
    but does not store them: the report's args are the logged ones.  Oracle: the same fork storing ``m_.args``."""
    root, cfg = fork
    oracle = oracle_model(root, cfg)
    want = [list(m.args) for m in oracle.model]
    yolo = (root / "models" / "yolo.py").read_text()
    assert "m_.args = list(args)" in yolo
    logged = yolo.replace("        m_.args = list(args)  # kept for the tests' comparison of constructor calls\n",
                          '        LOGGER.info(f"{i:>3}{f!s:>18}{n_:>3}{m_.np:10.0f}  {t:<40}{args!s:<30}")\n')
    logged = logged.replace("def parse_model(d, ch):", "import logging\nLOGGER = logging.getLogger('fork')\n\n\n"
                                                       "def parse_model(d, ch):")
    (root / "models" / "yolo.py").write_text(logged)
    report = flopscope.profile(str(cfg), img=IMG)
    assert [r.args for r in report.layers] == want
    assert not any("are the YAML's" in n for n in report.notes)
    # a fork that neither stores nor logs them: the YAML's args, said in a note
    (root / "models" / "yolo.py").write_text(logged.replace("        LOGGER.info(f\"{i:>3}", "        0 and LOGGER.info(f\"{i:>3}"))
    report = flopscope.profile(str(cfg), img=IMG)
    assert any("are the YAML's" in n for n in report.notes)

def test_fork_cli_option(fork, tmp_path):
    root, cfg = fork
    elsewhere = tmp_path / "exp.yaml"
    elsewhere.write_text(YAML)
    code, out, err = run_cli(["model", str(elsewhere), "--img", str(IMG), "--json", "-", "--fork", str(root)])
    assert code == 0, err
    d = json.loads(out)
    want = per_layer(oracle_model(root, elsewhere), IMG)
    assert [(x["params"], x["flops"]) for x in d["layers"]] == want
    code, out, err = run_cli(["model", str(elsewhere), "--fork", str(tmp_path / "nope")])
    assert code == 2 and err.strip() == f"flopscope: error: --fork {tmp_path / 'nope'}: no such directory"


def test_help_says_the_fork_runs():
    code, out, err = run_cli(["--help"])
    assert "RUNS the fork's code" in re.sub(r"[\s│]+", " ", out)


def test_plugin_inside_fork_uses_its_parse_model(fork, tmp_path):
    """--plugin models/common.py from a fork: its own `utils` import works, and every row gets the rule of the
    branch of the fork's parse_model that names its class (read statically, never executed)."""
    root, cfg = fork
    before = list(sys.path)
    plugin = load_plugin(str(root / "models" / "common.py"))  # imports `from utils.general import ...`
    assert sys.path == before
    _clean_imports()
    assert MODULES["SEAttention"].cls is plugin.module.SEAttention  # the user's code wins
    elsewhere = tmp_path / "exp.yaml"  # outside models/: flopscope's builder, with the plugin's classes
    elsewhere.write_text(YAML)
    report = flopscope.profile(str(elsewhere), img=IMG)
    assert not any("fork's own code" in n for n in report.notes)
    oracle = oracle_model(root, cfg)
    _compare(report, oracle)
    built = flopscope.build_model(str(elsewhere))
    for info, m in zip(built.layers, oracle.model):  # the same constructor call as the fork makes
        assert info.args == m.args, info.module
    yolo = (root / "models" / "yolo.py").read_text()
    src = {r.module: r.channel_rule["source"] for r in report.layers}
    assert src["CSPMix"] == f"parse_model ({root / 'models' / 'yolo.py'}:{_line(yolo, 'elif m is CSPMix')})"
    assert src["MLCA"] == f"parse_model ({root / 'models' / 'yolo.py'}:{_line(yolo, 'elif m in {SEAttention')})"
    assert src["TripletAttention"] == f"parse_model ({root / 'models' / 'yolo.py'}:{_line(yolo, 'c2 = ch.f.$', last=True)})"  # the else
    assert src["Detect"] == "built-in"  # the fork's Detect lives in yolo.py, not in the plugin
    # CSPMix: the branch scales args[2] and args[3] too: 256 * 0.25 = 64, 128 * 0.25 = 32
    assert built.layers[9].args == [128, 128, 64, 32]


def test_edited_builtin_name_reports_its_own_params(tmp_path):
    """The issue's SEAttention(reduction=4) after a 256-channel layer: its params, not the built-in's."""
    d = tmp_path / "collection"
    d.mkdir()
    f = d / "attention.py"
    text = COMMON.replace("from utils.general import make_divisible  # the fork's own utils package\n", "")
    f.write_text(text)
    p = load_plugin(str(f))
    try:
        cfg = tmp_path / "se.yaml"
        cfg.write_text("nc: 80\ndepth_multiple: 1.0\nwidth_multiple: 1.0\nanchors: 1\nbackbone:\n"
                       "  [[-1, 1, flopscope.Conv, [256, 3, 2]],\n   [-1, 1, SEAttention, []],\n"
                       "   [-1, 1, flopscope.SEAttention, []]]\nhead: []\n")
        r = flopscope.profile(str(cfg), img=IMG)
        # SEAttention(256, reduction=4): Linear(256, 64) + Linear(64, 256), no bias = 2 * 256 * 64
        assert r.layers[1].params == 2 * 256 * 64 == 32_768
        assert r.layers[2].params == 2 * 256 * (256 // 16)  # the built-in (reduction 16), still reachable
        assert r.layers[1].channel_rule == {"name": "same", "source": "signature SEAttention(channel=512, reduction=4)"}
        se_line = _line(text, "^class SEAttention")
        warn = [w for w in p.warnings if "class SEAttention replaces the built-in SEAttention" in w]
        assert len(warn) == 1 and warn[0].startswith(f"{f}:{se_line}:") and "attention.py:" in warn[0].split("(")[1]
        assert any(n.startswith("SEAttention: built from your class") for n in r.notes)
    finally:
        p.unload()


ALONE = """\
nc: 80
depth_multiple: 0.33
width_multiple: 0.25
anchors:
  - [10,13, 16,30, 33,23]
  - [30,61, 62,45, 59,119]
backbone:
  [[-1, 1, Conv, [64, 6, 2, 2]],
   [-1, 1, Conv, [128, 3, 2]],
   [-1, 3, C3, [128]],
   [-1, 1, Conv, [256, 3, 2]],
   [-1, 1, SEAttention, []],
   [-1, 1, MLCA, []],
   [-1, 1, TripletAttention, []],
   [-1, 1, SpatialGroupEnhance, [8]],
   [-1, 1, Conv, [512, 3, 2]],
   [-1, 1, SPPF, [512, 5]],
  ]
head:
  [[-1, 1, nn.Upsample, [None, 2, 'nearest']],
   [[-1, 7], 1, Concat, [1]],
   [-1, 1, C3, [256, False]],
   [[12, 9], 1, Detect, [nc, anchors]],
  ]
"""


@pytest.mark.parametrize("name,sig,hint", [
    ("MLCA", "MLCA(in_size, local_size=5, gamma=2, b=1, local_weight=0.5)", "same"),
    ("TripletAttention", "TripletAttention(no_spatial=False)", "none"),
    ("SpatialGroupEnhance", "SpatialGroupEnhance(groups=8)", "none"),
])
def test_ambiguous_signature_is_refused_not_guessed(tmp_path, name, sig, hint):
    d = tmp_path / "collection"
    d.mkdir()
    f = d / "attention.py"
    f.write_text(COMMON.replace("from utils.general import make_divisible  # the fork's own utils package\n", ""))
    p = load_plugin(str(f))
    try:
        assert MODULES[name].channels.name == "unknown"
        cfg = tmp_path / "one.yaml"
        cfg.write_text(f"nc: 80\nanchors: 1\nbackbone:\n  [[-1, 1, flopscope.Conv, [64, 3, 2]],\n"
                       f"   [-1, 1, {name}, [8]]]\nhead: []\n")
        with pytest.raises(ConfigError) as e:
            flopscope.build_model(str(cfg))
        msg = str(e.value)
        assert sig in msg and f"--channels {name}={hint}" in msg and "\n" not in msg
        assert any(f"class {name}: no channel rule" in w for w in p.warnings)
    finally:
        p.unload()


def test_channels_option_builds_what_the_rule_says(fork, tmp_path):
    """Outside a project: no parse_model; --channels gives the rules, and each row is what the fork's
    parse_model (whose branches apply the same rules) builds."""
    root, cfg = fork
    d = tmp_path / "collection"
    d.mkdir()
    f = d / "common.py"
    f.write_text(COMMON.replace("from utils.general import make_divisible  # the fork's own utils package\n", ""))
    alone = tmp_path / "alone.yaml"
    alone.write_text(ALONE)
    opts = ["--plugin", str(f), "--channels", "MLCA=same", "--channels", "TripletAttention=none",
            "--channels=SpatialGroupEnhance=none", "--channels", "Concat=concat"]
    code, out, err = run_cli(["model", str(alone), "--img", str(IMG), "--json", "-", *opts])
    assert code == 0, err
    data = json.loads(out)
    oracle_cfg = root / "models" / "alone.yaml"
    oracle_cfg.write_text(ALONE)
    want = per_layer(oracle_model(root, oracle_cfg), IMG)
    assert [(x["params"], x["flops"]) for x in data["layers"]] == want
    rules = {x["module"]: x["channel_rule"] for x in data["layers"]}
    assert rules["MLCA"] == {"name": "same", "source": "--channels MLCA=same"}
    assert rules["TripletAttention"] == {"name": "none", "source": "--channels TripletAttention=none"}
    assert rules["Conv"]["source"].startswith("signature Conv(c1, c2, k=1")
    # warnings: one line per kind; --verbose: every one
    assert len([ln for ln in err.splitlines() if "replace the registered module" in ln]) == 1
    code, out, err2 = run_cli(["model", str(alone), "--img", str(IMG), "--json", "-", "--verbose", *opts])
    assert code == 0
    assert len([ln for ln in err2.splitlines() if "replaces the built-in" in ln]) == 6


def test_channels_option_errors(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("class Gate(nn.Module):\n    def __init__(self, in_size):\n        super().__init__()\n")
    code, out, err = run_cli(["list", "--plugin", str(f), "--channels", "Gate=sam"])
    assert code == 2 and "unknown rule 'sam'" in err and "same" in err and len(err.strip().splitlines()) == 1
    code, out, err = run_cli(["list", "--plugin", str(f), "--channels", "Gat=same"])
    assert code == 2 and "--channels Gat=same: no plugin class has that name" in err and "Gate" in err
    code, out, err = run_cli(["list", "--channels", "Gate"])
    assert code == 2 and "expected NAME=RULE" in err
    for key, p in list(_LOADED.items()):
        if key.startswith(str(tmp_path.resolve())):
            p.unload()


def test_static_reader_refuses_what_it_cannot_read(tmp_path):
    """A parse_model branch that calls something unknown is not guessed: the row fails with the line."""
    root = tmp_path / "f"
    write_fork(root)
    yolo = root / "models" / "yolo.py"
    yolo.write_text(yolo.read_text().replace("args[3] = make_divisible(args[3] * gw, 8)",
                                             "args[3] = my_width(args[3])"))
    rules = forkmod.read_parse_model(yolo)
    rule, source = rules.rule("CSPMix")
    from flopscope.channels import Row

    row = Row(9, -1, 1, [512, 256, 128], [128], 0.25, 80, 255)
    with pytest.raises(ConfigError) as e:
        rule(row)
    assert f"{yolo}:{_line(yolo.read_text(), 'my_width')}" in str(e.value) and "--fork" in str(e.value)


def test_fork_cpu_build_is_size_guarded_and_counted_on_meta(fork, monkeypatch):
    root, cfg = fork
    import flopscope.opcount

    # counted on meta after the CPU build: a large image allocates nothing in proportion to it
    big = flopscope.profile(str(cfg), img=2048)
    small = flopscope.profile(str(cfg), img=IMG)
    assert big.layers[0].macs == small.layers[0].macs * (2048 // IMG) ** 2  # a conv: MACs scale with H*W
    monkeypatch.setattr(flopscope.opcount, "CPU_FALLBACK_BYTES", 1000)
    with pytest.raises(forkmod.ForkError) as e:
        flopscope.profile(str(cfg), img=IMG)
    assert "cannot be built on the meta device" in str(e.value) and "allowed" in str(e.value)
    _clean_imports()


def test_no_fork_and_fork_import_errors(fork):
    root, cfg = fork
    # the workflow, from the fork's root: --plugin models/common.py; --no-fork: flopscope's builder
    code, out, err = run_cli(["model", str(cfg), "--img", str(IMG), "--json", "-", "--no-fork",
                              "--plugin", str(root / "models" / "common.py")])
    assert code == 0, err
    d = json.loads(out)
    assert not any("fork's own code" in n for n in d["notes"])
    assert [(x["params"], x["flops"]) for x in d["layers"]] == per_layer(oracle_model(root, cfg), IMG)
    yolo = root / "models" / "yolo.py"
    yolo.write_text(yolo.read_text().replace("import torch.nn as nn\n", "import torch.nn as nn\nimport not_installed\n", 1))
    code, out, err = run_cli(["model", str(cfg)])
    line = _line(yolo.read_text(), "^import not_installed")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"flopscope: error: {yolo}:{line}: importing the fork's models/yolo.py failed: "
                          f"ModuleNotFoundError") and "--no-fork" in err
    _clean_imports()
