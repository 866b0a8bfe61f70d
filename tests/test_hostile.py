"""Hostile and broken input, case by case (issue 7): configs that try to run code, break the
loader or the builder, exhaust memory; bad option values; --help and option suggestions on every
command; plugin import errors as ``file:line: message``.

Every error is exit 2 with one stderr line ``flopscope: error: FILE: [layer N: ]FIELD: message``.
"""
from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import tracemalloc
from importlib import resources

import pytest
import torch
import torch.nn as nn
import yaml

import flopscope.cli as cli
import flopscope.commands  # noqa: F401  (registers every command on the app)
from flopscope.errors import FlopscopeError

from cli_helpers import run_cli

BASE = yaml.safe_load((resources.files("flopscope.yamls") / "yolov5s.yaml").read_text(encoding="utf-8"))


def one_error_line(code, err) -> str:
    assert code == 2, (code, err)
    assert "Traceback" not in err and "internal error" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("flopscope: error: ")
    return lines[0]


def mutate(fn):
    cfg = copy.deepcopy(BASE)
    fn(cfg)
    return cfg


def row(i, k, v):
    def fn(cfg):
        rows = cfg["backbone"] + cfg["head"]
        rows[i][k] = v
    return fn


def setkey(k, v):
    return lambda cfg: cfg.__setitem__(k, v)


P = "__import__('os').system('touch {marker}')"

# name -> (config dict or raw text/bytes, expected text after "FILE: ")
CASES = {
    "payload_module": (row(3, 2, P), "layer 3: module: "),
    "payload_arg": (row(3, 3, [P]), "layer 3: args: "),
    "payload_arg_list": (row(10, 3, [512, 1, P]), "layer 10: args: "),
    "payload_activation": (setkey("activation", P), "activation: "),
    "payload_activation_arg": (setkey("activation", "nn.ReLU(" + P + ")"), "activation: "),
    "payload_activation_kw": (setkey("activation", "nn.LeakyReLU(negative_slope=__import__('os'))"), "activation: "),
    "payload_nc": (setkey("nc", P), "nc: "),
    "payload_anchors": (setkey("anchors", P), "anchors: "),
    "payload_from": (row(5, 0, P), "layer 5: from: "),
    "payload_number": (row(5, 1, P), "layer 5: number: "),
    "huge_repeat": (row(2, 1, 10 ** 9), "layer 2: number: 1000000000 repeats is not plausible"),
    "repeat_zero": (row(2, 1, 0), "layer 2: number: must be at least 1"),
    "repeat_negative": (row(2, 1, -3), "layer 2: number: must be at least 1"),
    "repeat_float": (row(2, 1, 2.5), "layer 2: number: must be an integer"),
    "repeat_after_gain": (lambda c: (c.__setitem__("depth_multiple", 100), c["backbone"][2].__setitem__(1, 300)),
                          "layer 2: number: "),
    "too_many_blocks": (lambda c: (c.__setitem__("depth_multiple", 3), [r.__setitem__(1, 300) for r in c["backbone"]]),
                        ": number: the model would have more than"),
    "from_99": (row(3, 0, 99), "layer 3: from: index 99 points to a later layer"),
    "from_forward_list": (row(12, 0, [-1, 20]), "layer 12: from: index 20 points to a later layer"),
    "from_before_first": (row(3, 0, -50), "layer 3: from: index -50 points to a layer before the first"),
    "from_abc": (row(3, 0, "abc"), "layer 3: from: must be an int or a list of ints"),
    "from_first_layer": (row(0, 0, 0), "layer 0: from: the first layer can only take the input"),
    "from_list_single_input": (row(3, 0, [-1, 1]), "layer 3: from: this module takes one input"),
    "args_string": (row(3, 3, "x"), "layer 3: args: must be a list"),
    "module_int": (row(3, 2, 123), "layer 3: module: must be a module name, got 123"),
    "module_unknown": (row(3, 2, "Conf"), "layer 3: module: unknown module 'Conf' (did you mean Conv"),
    "module_unicode_lookalike": (row(3, 2, "Сonv"), "layer 3: module: unknown module 'Сonv' (did you mean Conv"),
    "module_emoji": (row(3, 2, "🔥"), "layer 3: module: '🔥' is not a module name"),
    "module_newline": (row(3, 2, "Conv\nrm -rf /"), "layer 3: module: 'Conv\\nrm -rf /' is not a module name"),
    "module_dotted_python": (row(3, 2, "os.system"), "layer 3: module: unknown module 'os.system'"),
    "row_short": (lambda c: c["backbone"].__setitem__(1, [-1, 1, "Conv"]), "layer 1: backbone: a row is"),
    "row_string": (lambda c: c["head"].__setitem__(0, "Conv"), "layer 10: head: a row is"),
    "missing_backbone": (lambda c: c.pop("backbone"), "backbone: missing section"),
    "missing_head": (lambda c: c.pop("head"), "head: missing section"),
    "section_not_list": (setkey("head", {"a": 1}), "head: must be a list"),
    "no_layers": (lambda c: (c.__setitem__("backbone", []), c.__setitem__("head", [])), "backbone: no layers"),
    # unknown top-level keys (issue 10): a misspelt multiple would silently build the model at 1.0
    "key_misspelt": (lambda c: c.__setitem__("depth_multipel", c.pop("depth_multiple")),
                     "depth_multipel: unknown top-level key 'depth_multipel' in a YOLOv5 config (did you mean depth_multiple"),
    "key_unknown_unicode": (setkey("extra_ünïcode_key", "x"), "extra_ünïcode_key: unknown top-level key "
                                                              "'extra_ünïcode_key' in a YOLOv5 config; known keys: nc"),
    "key_not_a_string": (setkey(7, "x"), "7: unknown top-level key"),
    "key_ultralytics_scales": (setkey("scales", {"n": [0.33, 0.25, 1024]}), "scales: unknown top-level key 'scales' in a YOLOv5 config (scales is a key of the Ultralytics dialect"),
    "width_zero": (setkey("width_multiple", 0), "width_multiple: must be positive"),
    "width_nan": (setkey("width_multiple", float("nan")), "width_multiple: must be a number"),
    "width_inf": (setkey("width_multiple", float("inf")), "width_multiple: multiples above 100"),
    "depth_string": (setkey("depth_multiple", "0.33"), "depth_multiple: must be a number"),
    "nc_zero": (setkey("nc", 0), "nc: must be a positive integer"),
    "nc_huge": (setkey("nc", 10 ** 12), "nc: must be a positive integer"),
    "anchors_odd": (setkey("anchors", [[1, 2, 3]]), "anchors: each level"),
    "anchors_levels_mismatch": (setkey("anchors", [[10, 13]]), "layer 24: shape: Detect: Detect has 1 levels"),
    "channels_nan": (row(1, 3, [float("nan"), 3, 2]), "layer 1: args: Conv: cannot derive channels"),
    "channels_inf": (row(1, 3, [float("inf"), 3, 2]), "layer 1: args: Conv: cannot derive channels"),
    "channels_huge": (row(1, 3, [10 ** 12, 3, 2]), "layer 1: args: Conv would have 500000000000 output channels"),
    "channels_string": (row(1, 3, ["abc", 3, 2]), "layer 1: args: argument 0 (output channels)"),
    "kernel_zero": (row(1, 3, [128, 0, 2]), "layer 1: args: Conv (Conv2d conv): kernel_size must be a positive"),
    "stride_zero": (row(1, 3, [128, 3, 0]), "layer 1: args: Conv (Conv2d conv): stride must be a positive"),
    "too_many_args": (row(1, 3, [128, 3, 2, 1, 1, 1, 1, 1, 1, 1]), "layer 1: args: Conv[32, 64, 3, 2, 1, 1, 1, 1, ...]"
                                                                    " failed to build: TypeError"),
    "pool_kernel_zero": (row(9, 3, [1024, 0]), "layer 9: args: SPPF (MaxPool2d m): kernel_size must be a positive"),
    "upsample_zero": (row(11, 3, [None, 0, "nearest"]), "layer 11: args: nn.Upsample (Upsample): needs a size"),
    "upsample_negative": (row(11, 3, [None, -2, "nearest"]), "layer 11: args: nn.Upsample (Upsample): scale_factor"),
    "concat_spatial_mismatch": (row(12, 0, [-1, 2]), "layer 12: shape: Concat: cannot concatenate shapes"),
    "concat_bad_dim": (row(12, 3, [5]), "layer 12: args: Concat[5] cannot run on input"),
    # Concat along H makes the rule's channel count (sum) wrong; the next Conv sees the real count
    "channel_mismatch_downstream": (row(12, 3, [2]), "layer 13: shape: C3: channel mismatch"),
    "detect_needs_anchors": (row(24, 3, ["nc"]), "layer 24: args: a detection head needs [nc, anchors]"),
    "literal_bomb": (row(1, 3, ["9**9**9", 3, 2]), "layer 1: args: '9**9**9' is neither a known symbol nor a literal"),
    "literal_huge": (row(1, 3, ["1" * 5000, 3, 2]), "layer 1: args: a string argument of 5000 characters"),
    "activation_prelu_bomb": (setkey("activation", "nn.PReLU(2000000000)"), "activation: "),
    "activation_unknown": (setkey("activation", "torch.relu"), "activation: 'torch.relu' is not an activation"),
    "top_level_list": (None, "a model config is a mapping"),
    "yaml_python_tag": ("nc: !!python/object/apply:os.system ['touch {marker}']\n", "invalid YAML at line 1, column 5: "
                                                                               "could not determine a constructor"),
    "yaml_python_name": ("backbone: !!python/name:os.system\n", "invalid YAML at line 1"),
    "yaml_syntax": ("backbone: [\n", "invalid YAML at line 2"),
    "yaml_tab": ("backbone:\n\t- 1\n", "invalid YAML at line 2"),
    "billion_laughs": ('a: &a ["l","l","l","l","l","l","l","l","l"]\n' + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8))
        + "backbone: *i\nhead: *i\n", "too large: more than 200000 values after expanding YAML aliases"),
    "recursive_alias": ("backbone: &r [-1, 1, Conv, *r]\nhead: []\n", "a YAML alias refers to itself"),
    "deep_nesting": ("backbone: " + "[" * 5000 + "]" * 5000 + "\n", "invalid YAML: nested too deeply"),
    "deep_nesting_shallow_for_yaml": ("backbone: " + "[" * 60 + "]" * 60 + "\n", "nested too deeply (max 32 levels)"),
    "empty_file": ("", "empty config"),
    "comment_only": ("# nothing here\n", "empty config"),
    "scalar_file": ("42\n", "a model config is a mapping with backbone/head sections, got int"),
    "binary_file": (bytes(range(256)) * 4, "not a text file (binary content)"),
    "utf16_file": (yaml.safe_dump(BASE).encode("utf-16"), "not a text file (binary content)"),
    "latin1_file": (yaml.safe_dump(BASE).replace("nc: 80", "nc: 80 # café").encode("latin-1"), "not UTF-8 text"),
    "control_char": ("nc: 80\x01\n", "invalid YAML at line 1, column 7: "),
    "huge_file": ("# " + "x" * (5 << 20) + "\n", "larger than 4 MiB"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_config(name, tmp_path):
    spec, expected = CASES[name]
    marker = tmp_path / "MARKER"
    path = tmp_path / f"{name}.yaml"
    if spec is None:
        path.write_text("- 1\n- 2\n", encoding="utf-8")
    elif callable(spec):
        text = yaml.safe_dump(mutate(spec), allow_unicode=True).replace("{marker}", str(marker))
        path.write_text(text, encoding="utf-8")
    elif isinstance(spec, bytes):
        path.write_bytes(spec)
    else:
        path.write_text(spec.replace("{marker}", str(marker)), encoding="utf-8")
    code, out, err = run_cli(["model", str(path)])
    line = one_error_line(code, err)
    assert line.startswith(f"flopscope: error: {path}: "), line
    assert expected in line, line
    assert len(line) < 600, line
    assert not marker.exists()


@pytest.mark.parametrize("mutation", [
    setkey("width_multiple", 1e-9),  # every width rounds up to 8 channels, never 0
    setkey("depth_multiple", 1e-9),
    lambda c: c.__setitem__("head", []),
    setkey("activation", "nn.GELU(approximate='tanh')"),
    setkey("activation", "nn.PReLU(1000000)"),  # on the meta device: no memory
])  # an unknown top-level key (even a Unicode one) is an error since issue 12: see test_dialects.py
def test_odd_but_valid(mutation, tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(mutate(mutation), allow_unicode=True), encoding="utf-8")
    code, out, err = run_cli(["model", str(path), "--img", "64"])
    assert code == 0 and err == "", err


# --------------------------------------------------------------------------------------------
# files and paths


def test_paths(tmp_path):
    (tmp_path / "dir.yaml").mkdir()
    cases = [
        (tmp_path / "dir.yaml", "is a directory"),
        (tmp_path / "missing.yaml", "no such file, and no bundled config of that name"),
        ("yolov5q", "no such file, and no bundled config of that name (did you mean yolov5x, "),
        ("/dev/null", "not a regular file"),
        ("x" * 5000, "not a usable path"),
        ("a\x00b.yaml", "not a usable path"),
    ]
    if hasattr(os, "mkfifo"):  # opening a FIFO would block forever
        os.mkfifo(tmp_path / "fifo.yaml")
        cases.append((tmp_path / "fifo.yaml", "not a regular file"))
    for path, expected in cases:
        code, out, err = run_cli(["model", path])
        line = one_error_line(code, err)
        assert expected in line, line


def test_file_name_with_newline_stays_one_line(tmp_path):
    path = tmp_path / "evil\nname.yaml"
    path.write_text("backbone: 3\nhead: []\n", encoding="utf-8")
    code, out, err = run_cli(["model", str(path)])
    line = one_error_line(code, err)
    assert "evil name.yaml: backbone: must be a list" in line


# --------------------------------------------------------------------------------------------
# option values


@pytest.mark.parametrize("args,expected", [
    (["--img", "0"], "--img must be one or two positive integers"),
    (["--img", "-1"], "--img must be one or two positive integers"),
    (["--img", "abc"], "--img must be an integer or H,W integers"),
    (["--img", "640,640,640"], "--img must be one or two positive integers"),
    (["--img", "640.5"], "--img must be an integer or H,W integers"),
    (["--img", str(10 ** 7)], "--img 10000000 is not a plausible image size (max 1000000)"),
    (["--img", str(2 ** 31)], "--img 2147483648 is not a plausible image size"),
    (["--img", "9" * 5000], "--img must be an integer or H,W integers"),
    (["--batch", "0"], "--batch must be a positive integer"),
    (["--batch", "-1"], "--batch must be a positive integer"),
    (["--batch", str(10 ** 400)], "is not a plausible batch size"),
    (["--batch", "abc"], "Invalid value for '--batch'"),
    (["--nc", "0"], "--nc must be a positive integer"),
    (["--json", "/nonexistent-dir/x.json"], "cannot write /nonexistent-dir/x.json"),
])
def test_bad_option_values(args, expected):
    code, out, err = run_cli(["model", "yolov5n", *args])
    line = one_error_line(code, err)
    assert expected in line and len(line) < 400, line


# --------------------------------------------------------------------------------------------
# resource safety


def test_huge_img_on_meta_allocates_nothing_and_stays_exact():
    from flopscope.report import profile

    small = profile("yolov5s", img=640)
    k = 1562  # 640 * 1562 = 999680, a multiple of the stride, within the 1000000 cap
    tracemalloc.start()
    try:
        big = profile("yolov5s", img=640 * k)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, f"{peak / 2**20:.1f} MiB traced for a {640 * k}^2 image"
    # exact integers, no overflow: every yolov5s layer is linear in H*W at multiples of 32
    assert big.macs == small.macs * k * k and big.elementwise_flops == small.elementwise_flops * k * k
    assert big.macs > 2 ** 53 and isinstance(big.macs, int)
    assert big.params == small.params
    assert big.to_dict()["totals"]["flops"] == 2 * small.macs * k * k


def test_huge_img_subprocess_peak_rss(tmp_path):
    """A real process at 1000000x1000000 peaks no higher than at 640x640 (within 150 MiB)."""
    probe = ("import atexit, resource, sys\n"
             "atexit.register(lambda: sys.stderr.write('MAXRSS=%d\\n' % resource.getrusage(resource.RUSAGE_SELF)"
             ".ru_maxrss))\n"
             "from flopscope.cli import main\nmain()\n")
    rss = {}
    for img in ("640", "1000000"):
        r = subprocess.run([sys.executable, "-c", probe, "model", "yolov5s", "--img", img, "--json", "-"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        rss[img] = int(re.search(r"MAXRSS=(\d+)", r.stderr).group(1))  # KiB on Linux
    assert rss["1000000"] - rss["640"] < 150 * 1024, rss


def test_fallback_counting_refuses_big_cpu_forward():
    """A module without formula that cannot run on meta is not run on CPU at a huge size."""
    from flopscope.opcount import count_ops

    class NeedsValues(nn.Module):  # .item() cannot run on the meta device
        def forward(self, x):
            return x * float(x.sum().item() + 1)

    with pytest.raises(FlopscopeError, match=r"would need about .* GiB"):
        count_ops(NeedsValues(), [(1, 3, 100_000, 100_000)])
    res = count_ops(NeedsValues(), [(1, 3, 8, 8)])
    assert res.out == (1, 3, 8, 8) and res.device == "cpu"
    assert {t.op for t in res.terms} == {"aten.sum", "aten.mul"} and not res.not_counted


def test_real_forward_refuses_sizes_that_do_not_fit():
    """`check` / `bench` estimate the activation memory of a real forward first and say so."""
    from flopscope.memory import check_fits, estimate_bytes
    from flopscope.report import profile

    report = profile("yolov5s", img=100_000)
    assert estimate_bytes(report) > 1 << 40
    with pytest.raises(FlopscopeError, match=r"needs about [\d.]+ GiB .* but only [\d.]+ GiB are free"):
        check_fits(report, "cpu")


@pytest.mark.parametrize("cmd", ["bench", "check"])
def test_real_compute_commands_refuse_huge_img_before_running(cmd):
    from typer.main import get_command

    if cmd not in get_command(cli.app).commands:
        pytest.skip(f"no `{cmd}` command")
    code, out, err = run_cli([cmd, "yolov5n", "--img", "100000"])
    line = one_error_line(code, err)
    assert "GiB" in line and "smaller --img" in line, line


def test_activation_is_built_on_the_build_device():
    from flopscope.builder import build_model

    cfg = mutate(setkey("activation", "nn.PReLU(1000000)"))
    m = build_model(cfg)
    prelu = [x for x in m.modules() if isinstance(x, nn.PReLU)]
    assert prelu and all(p.device.type == "meta" for x in prelu for p in x.parameters())
    assert not torch.is_tensor(m.stride) or m.stride.device.type == "cpu"


# --------------------------------------------------------------------------------------------
# --help with an example, and nearest-option suggestions, on every command


def command_paths() -> list[list[str]]:
    from typer.main import get_command

    out = []

    def walk(cmd, path):
        subs = getattr(cmd, "commands", None)
        if subs:
            for name in sorted(subs):
                if not getattr(subs[name], "hidden", False):
                    walk(subs[name], [*path, name])
        else:
            out.append(path)

    walk(get_command(cli.app), [])
    return out


def _options(path) -> list[str]:
    from typer.main import get_command

    cmd = get_command(cli.app)
    for name in path:
        cmd = cmd.commands[name]
    return sorted({o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")} - {"--help"})


COMMANDS = command_paths()


def test_commands_found():
    assert ["model"] in COMMANDS and len(COMMANDS) >= 1


@pytest.mark.parametrize("path", [[]] + COMMANDS, ids=lambda p: " ".join(p) or "flopscope")
def test_help_has_example(path):
    for flag in ("--help", "-h"):
        code, out, err = run_cli([*path, flag])
        assert code == 0, err
        assert "Example" in out, f"`flopscope {' '.join(path)} --help` shows no example"
        assert "Traceback" not in out + err


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p))
def test_misspelt_option_suggests_nearest(path):
    opts = _options(path) or ["--help"]
    for opt in opts[:4]:
        for typo in (opt + opt[-1], opt.upper(), "-" + opt[2:]):
            code, out, err = run_cli([*path, typo])
            line = one_error_line(code, err)
            assert opt in line and ("did you mean" in line.lower() or "possible options" in line.lower()), \
                (typo, line)


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p))
def test_misspelt_command_suggests_nearest(path):
    name = path[0]
    for typo in (name + name[-1], name.upper()):
        code, out, err = run_cli([typo])
        line = one_error_line(code, err)
        assert f"'{name}'" in line or f" {name}?" in line or f" {name}," in line, (typo, line)


# --------------------------------------------------------------------------------------------
# plugin files


@pytest.mark.parametrize("source,line_no,message", [
    ("import torch\n\ndef broken(:\n    pass\n", 3, "SyntaxError"),
    ("import torch\nx = 1\nraise RuntimeError('boom at import')\n", 3, "RuntimeError: boom at import"),
    ("def helper():\n    return 1 / 0\n\nhelper()\n", 2, "ZeroDivisionError"),
    ("import torch\nimport nonexistent_package_xyz\n", 2, "ModuleNotFoundError"),
])
def test_plugin_import_errors_are_file_line_message(source, line_no, message, tmp_path):
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text(source, encoding="utf-8")
    code, out, err = run_cli(["--plugin", str(plugin), "model", "yolov5n"])
    line = one_error_line(code, err)
    assert line.startswith(f"flopscope: error: {plugin}:{line_no}: "), line
    assert message in line, line
