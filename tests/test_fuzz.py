"""Fuzzing the config reader and builder through the CLI entry point (issue 7).

Every case writes a mutated yolov5s-like config to a file and runs ``flopscope model FILE`` in
process (``flopscope.cli.main``).  Whatever the mutation, the outcome is exit 0 (the mutation
happened to be valid) or exit 2 with exactly one stderr line that names the file and, for a
problem inside a row, the layer index and the field -- never a traceback, never an "internal
error", and never code execution: payloads that would create a marker file are planted in module
names, args, activation, nc, ... and the marker must not exist afterwards.

Deterministic: ``derandomize=True``, explicit ``max_examples``, no deadline, no example database.
The tests count their own cases (>= 200 in all).
"""
from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from importlib import resources

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


from cli_helpers import run_cli

BASE = yaml.safe_load((resources.files("flopscope.yamls") / "yolov5s.yaml").read_text(encoding="utf-8"))
N_ROWS = len(BASE["backbone"]) + len(BASE["head"])

TOP_FIELDS = {"nc", "depth_multiple", "width_multiple", "anchors", "activation", "ch", "backbone", "head"}
ROW_FIELDS = {"from", "number", "module", "args", "shape", "backbone", "head"}
FILE_LEVEL = ("invalid YAML", "empty config", "a model config is a mapping", "too large", "nested too deeply",
              "a YAML alias refers to itself", "not a text file", "not UTF-8", "no layers", "larger than")

FUZZ = settings(derandomize=True, deadline=None, database=None, print_blob=False,
                suppress_health_check=list(HealthCheck))  # each test sets max_examples explicitly


def payloads(marker: str) -> list[str]:
    """Strings that create ``marker`` if anything ever evaluates, executes or unpickles them."""
    m = marker.replace("\\", "/")
    return [
        f"__import__('os').system('touch {m}')",
        f"__import__('pathlib').Path('{m}').touch()",
        f"exec(\"open('{m}', 'w').close()\")",
        f"eval(\"__import__('os').system('touch {m}')\")",
        f"open('{m}', 'w').write('x')",
        f"nn.ReLU(__import__('os').system('touch {m}'))",
        f"(lambda: __import__('os').system('touch {m}'))()",
        f"[__import__('os').system('touch {m}')]",
        f"{{'a': __import__('os').system('touch {m}')}}",
        f"os.system('touch {m}')",
        f"subprocess.call(['touch', '{m}'])",
        f"Conv; __import__('os').system('touch {m}')",
        f"globals()['__builtins__']['__import__']('os').system('touch {m}')",
    ]


def yaml_tag_payloads(marker: str) -> list[str]:
    m = marker.replace("\\", "/")
    return [
        f"!!python/object/apply:os.system ['touch {m}']",
        f"!!python/object/apply:subprocess.call [['touch', '{m}']]",
        f"!!python/object/new:os.system ['touch {m}']",
        f"!!python/name:os.system",
        f"!!python/module:os",
        f"!!python/object/apply:builtins.exec [\"open('{m}', 'w').close()\"]",
    ]


UNICODE = ["Cönv", "Сonv", "C3\u200b", "🔥", "卷积", "Conv\u202e", "Ｃｏｎｖ", "ǅ", "\u0000", "nn.Up\u00adsample",
           "é" * 50, "\U0001f600" * 3]
MODULE_NAMES = ["Conv", "C3", "SPPF", "Concat", "Detect", "nn.Upsample", "nn.Identity", "nn.MaxPool2d",
                "Focus", "GhostConv", "C3TR", "Bottleneck", "Segment", "Contract", "Expand", "nn.BatchNorm2d",
                "Conv2d", "nn.Conv2d", "torch.nn.Conv2d", "os.system", "__import__", "__builtins__", "eval",
                "exec", "DetectionModel", "type", "object", "UnknownModule", "conv", "c3", ""]


def check_outcome(code: int, out: str, err: str, path: str, marker: str, *, layer=None, field=None) -> str | None:
    """The contract of every case; returns the error line (None on success)."""
    assert not os.path.exists(marker), f"code was executed (marker created) for {path}"
    assert "Traceback" not in err and "Traceback" not in out
    assert "internal error" not in err, err
    assert code in (0, 2), (code, err)
    if code == 0:
        assert err == "", err
        return None
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}: {err!r}"
    line = lines[0]
    prefix = f"flopscope: error: {path}: "
    assert line.startswith(prefix), f"the line does not name the file: {line!r}"
    rest = line[len(prefix):]
    m = re.match(r"layer (\d+): ([A-Za-z_]+): ", rest)
    if m:
        assert 0 <= int(m.group(1)) < 10_000 and m.group(2) in ROW_FIELDS, line
    else:
        m2 = re.match(r"([A-Za-z_]+): ", rest)
        unknown_key = re.match(r"(.+?): unknown top-level key", rest)  # names the key (issue 10), any length
        assert (m2 and m2.group(1) in TOP_FIELDS) or rest.startswith(FILE_LEVEL) or unknown_key, \
            f"names neither a layer/field nor a file-level problem: {line!r}"
    if layer is not None:
        assert m and int(m.group(1)) == layer, f"expected layer {layer}: {line!r}"
    if field is not None:
        got = m.group(2) if m else (m2.group(1) if m2 else None)
        assert got == field, f"expected field {field}: {line!r}"
    return line


def _sections(cfg) -> list:
    return [cfg[k] for k in ("backbone", "head") if isinstance(cfg.get(k), list)]


def rows(cfg) -> list:
    return [r for sec in _sections(cfg) for r in sec]


def row_at(cfg, i):
    """(section list, index in it) of overall row ``i`` (sections that are not lists are skipped)."""
    for sec in _sections(cfg):
        if i < len(sec):
            return sec, i
        i -= len(sec)
    raise IndexError(i)


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "MARKER-pwned"
    yield str(path)
    assert not path.exists(), "a config payload was executed"


# --------------------------------------------------------------------------------------------
# strategies


def hostile_values(marker):
    scalars = st.one_of(
        st.none(), st.booleans(),
        st.integers(min_value=-(10 ** 20), max_value=10 ** 20),
        st.sampled_from([0, -1, 1, 2, 3, 2 ** 31, 2 ** 63, 10 ** 12, 10 ** 400]),
        st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e-9, 0.0, -0.0, 1e300, 0.5]),
        st.text(max_size=12), st.sampled_from(payloads(marker)), st.sampled_from(UNICODE),
        st.sampled_from(["nc", "anchors", "None", "True", "nearest", "[5, 9, 13]", "9**9**9", "1e999",
                         "(" * 200, "[" * 50 + "]" * 50, "'x' * 10**9"]),
    )
    return st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=4), c,
                                                                                      max_size=2), max_leaves=6)


@st.composite
def mutations(draw, marker):
    """A yolov5s config with 1-3 structural mutations."""
    cfg = copy.deepcopy(BASE)
    values = hostile_values(marker)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from([
            "drop_key", "set_key", "set_row_field", "set_from", "set_number", "set_module", "set_args",
            "set_arg", "row_shape", "drop_row", "dup_row", "swap_rows", "width", "activation", "payload_everywhere",
        ]))
        n = len(rows(cfg))
        i = draw(st.integers(0, max(n - 1, 0)))
        if kind == "drop_key":
            cfg.pop(draw(st.sampled_from(sorted(TOP_FIELDS | {"nc"}))), None)
        elif kind == "set_key":
            cfg[draw(st.sampled_from(sorted(TOP_FIELDS)))] = draw(values)
        elif n == 0 or not isinstance(cfg, dict):
            continue
        elif kind == "set_row_field":
            sec, j = row_at(cfg, i)
            if isinstance(sec[j], list) and len(sec[j]) == 4:
                sec[j][draw(st.integers(0, 3))] = draw(values)
        elif kind == "set_from":
            sec, j = row_at(cfg, i)
            if isinstance(sec[j], list) and sec[j]:
                sec[j][0] = draw(st.one_of(
                    st.integers(-2 * n, 2 * n), st.sampled_from([99, -99, 10 ** 9, "abc", [], [-1, 99], [i], [-1, -1]]),
                    st.lists(st.integers(-n, n), min_size=1, max_size=4)))
        elif kind == "set_number":
            sec, j = row_at(cfg, i)
            if isinstance(sec[j], list) and len(sec[j]) > 1:
                sec[j][1] = draw(st.sampled_from([0, -1, -3, 1, 2, 9, 1000, 1001, 10 ** 9, 2.5, "3", None, True]))
        elif kind == "set_module":
            sec, j = row_at(cfg, i)
            if isinstance(sec[j], list) and len(sec[j]) > 2:
                sec[j][2] = draw(st.one_of(st.sampled_from(MODULE_NAMES), st.sampled_from(UNICODE),
                                           st.sampled_from(payloads(marker)), st.integers(), st.none()))
        elif kind == "set_args":
            sec, j = row_at(cfg, i)
            if isinstance(sec[j], list) and len(sec[j]) > 3:
                sec[j][3] = draw(st.one_of(values, st.lists(values, max_size=5)))
        elif kind == "set_arg":
            sec, j = row_at(cfg, i)
            if isinstance(sec[j], list) and len(sec[j]) > 3 and isinstance(sec[j][3], list):
                args = sec[j][3]
                k = draw(st.integers(0, len(args)))
                v = draw(st.one_of(values, st.integers(-4, 2048), st.sampled_from([0, 1e-9, 10 ** 7, -1])))
                if k < len(args):
                    args[k] = v
                else:
                    args.append(v)
        elif kind == "row_shape":
            sec, j = row_at(cfg, i)
            sec[j] = draw(st.one_of(values, st.lists(values, max_size=6).filter(lambda r: len(r) != 4)))
        elif kind == "drop_row":
            sec, j = row_at(cfg, i)
            del sec[j]
        elif kind == "dup_row":
            sec, j = row_at(cfg, i)
            sec.insert(j, copy.deepcopy(sec[j]))
        elif kind == "swap_rows":
            k = draw(st.integers(0, n - 1))
            (s1, j1), (s2, j2) = row_at(cfg, i), row_at(cfg, k)
            s1[j1], s2[j2] = s2[j2], s1[j1]
        elif kind == "width":
            cfg[draw(st.sampled_from(["width_multiple", "depth_multiple"]))] = draw(st.sampled_from(
                [1e-9, 1e-3, 0.01, 0, -0.5, 3, 101, float("nan"), float("inf"), "0.5", None]))
        elif kind == "activation":
            cfg["activation"] = draw(st.one_of(st.sampled_from([
                "nn.SiLU()", "nn.LeakyReLU(0.1)", "nn.ReLU(inplace=True)", "nn.PReLU(1000000000000)",
                "nn.PReLU(2000000000)", "nn.GELU(approximate='tanh')", "nn.Softmax(dim=1)", "torch.relu",
                "nn.ReLU(**{})", "nn.ReLU(*[])", "nn.LeakyReLU(1e999)", "nn.ELU(alpha=float('nan'))", "nn.Module()",
                "nn.ReLU(", "", "x" * 5000]), st.sampled_from(payloads(marker)), values))
        elif kind == "payload_everywhere":
            p = draw(st.sampled_from(payloads(marker)))
            target = draw(st.sampled_from(["module", "arg", "nc", "activation", "anchors", "from", "key", "name"]))
            if n == 0:
                cfg[target] = p
                continue
            sec, j = row_at(cfg, i)
            ok_row = isinstance(sec[j], list) and len(sec[j]) == 4
            if target == "module" and ok_row:
                sec[j][2] = p
            elif target == "arg" and ok_row and isinstance(sec[j][3], list):
                sec[j][3] = [*sec[j][3], p]
            elif target == "from" and ok_row:
                sec[j][0] = p
            elif target == "key":
                cfg[p] = 1
            else:
                cfg[target if target != "name" else "name"] = p
    return cfg


# --------------------------------------------------------------------------------------------
# tests


def test_fuzz_config_structure(tmp_path, marker):
    """>= 250 structural mutations of yolov5s through `flopscope model FILE`."""
    cases, outcomes = [], {0: 0, 2: 0}

    @settings(FUZZ, max_examples=250)
    @given(cfg=mutations(marker))
    def case(cfg):
        path = tmp_path / f"cfg-{len(cases)}.yaml"
        path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
        code, out, err = run_cli(["model", str(path), "--img", "64"])
        check_outcome(code, out, err, str(path), marker)
        cases.append(code)
        outcomes[code] += 1

    case()
    assert len(cases) >= 250
    assert outcomes[2] >= 100, outcomes  # most mutations are errors; the suite exercises error paths


@st.composite
def invalid_rows(draw, marker):
    """One mutation that validation must reject at a known layer and field."""
    cfg = copy.deepcopy(BASE)
    i = draw(st.integers(0, N_ROWS - 1))
    sec, j = row_at(cfg, i)
    field = draw(st.sampled_from(["from", "number", "module", "args", "row"]))
    if field == "from":
        sec[j][0] = draw(st.one_of(
            st.integers(i, i + 1000) if i > 0 else st.integers(0, 1000),  # forward / self reference
            st.integers(-(10 ** 6), -i - 1 if i > 0 else -2),  # before the first layer
            st.sampled_from(["abc", "-1", None, 1.5, True, [], {"a": 1}, payloads(marker)[0]]),
            st.just([-1, i + 5]),
        ))
    elif field == "number":
        sec[j][1] = draw(st.one_of(st.integers(max_value=0), st.integers(min_value=10_000),
                                   st.sampled_from([2.5, "3", None, True, [], payloads(marker)[1]])))
    elif field == "module":
        sec[j][2] = draw(st.one_of(st.sampled_from(payloads(marker)), st.integers(), st.none(),
                                   st.sampled_from(["🔥", "Conv\u202e", "Conv\nrm", "", "a b", "(Conv)", "Conv()",
                                                    "Nope", "os.system", "Cönv", "__import__"])))
    elif field == "args":
        sec[j][3] = draw(st.one_of(st.sampled_from(payloads(marker)), st.integers(), st.none(),
                                   st.just([payloads(marker)[2]]), st.just(["nn.ReLU(" + payloads(marker)[0] + ")"])))
    else:
        sec[j] = draw(st.one_of(st.lists(st.integers(-1, 3), max_size=6).filter(lambda r: len(r) != 4),
                                st.sampled_from(["Conv", 3, None, {"from": -1}])))
    field = {"row": "backbone" if sec is cfg["backbone"] else "head"}.get(field, field)
    return cfg, i, field


def test_fuzz_invalid_rows_name_layer_and_field(tmp_path, marker):
    """A row made invalid on purpose: exit 2, and the line names that layer index and that field."""
    cases = []

    @settings(FUZZ, max_examples=120)
    @given(case=invalid_rows(marker))
    def check(case):
        cfg, layer, field = case
        path = tmp_path / f"bad-{len(cases)}.yaml"
        path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
        code, out, err = run_cli(["model", str(path)])
        assert code == 2, (code, err)
        check_outcome(code, out, err, str(path), marker, layer=layer, field=field)
        cases.append(1)

    check()
    assert len(cases) >= 120


@st.composite
def broken_texts(draw, marker):
    """Text-level damage: truncation, inserted lines, YAML tags, anchors, bytes, encodings."""
    text = yaml.safe_dump(BASE, sort_keys=False)
    kind = draw(st.sampled_from(["truncate", "insert", "tag", "bytes", "binary", "empty", "encoding", "alias",
                                 "nest", "bom", "replace"]))
    if kind == "truncate":
        return text[: draw(st.integers(0, len(text)))].encode()
    if kind == "insert":
        lines = text.splitlines()
        k = draw(st.integers(0, len(lines)))
        lines.insert(k, draw(st.one_of(st.text(max_size=30), st.sampled_from(payloads(marker)),
                                       st.sampled_from(["- [", "]", ": :", "\t- 1", "&a", "*b", "? x", "%YAML 9",
                                                        "---", "...", "- !!binary AAAA"]))))
        return "\n".join(lines).encode("utf-8", "surrogatepass")
    if kind == "tag":
        tag = draw(st.sampled_from(yaml_tag_payloads(marker)))
        where = draw(st.sampled_from(["top", "module", "arg", "nc", "activation"]))
        if where == "top":
            return f"{tag}\n".encode()
        if where == "nc":
            return text.replace("nc: 80", f"nc: {tag}").encode()
        if where == "activation":
            return (text + f"activation: {tag}\n").encode()
        if where == "module":
            return text.replace("- Conv\n", f"- {tag}\n", 1).encode()
        return text.replace("- 64\n", f"- {tag}\n", 1).encode()
    if kind == "bytes":
        raw = bytearray(text.encode())
        for _ in range(draw(st.integers(1, 5))):
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
        return bytes(raw)
    if kind == "binary":
        return draw(st.binary(min_size=1, max_size=300)) + b"\x00"
    if kind == "empty":
        return draw(st.sampled_from([b"", b"\n", b"   \n", b"# comment only\n", b"---\n", b"...\n", b"~\n"]))
    if kind == "encoding":
        enc = draw(st.sampled_from(["utf-16", "utf-32", "latin-1", "cp1252"]))
        return (text + "# café ünïcödé\n").encode(enc, "replace")
    if kind == "alias":  # billion laughs, and an alias that contains itself
        depth = draw(st.integers(3, 9))
        doc = 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
        doc += "".join(f"l{k}: &l{k} [{', '.join([f'*l{k - 1}'] * 9)}]\n" for k in range(1, depth))
        target = draw(st.sampled_from([f"*l{depth - 1}", "&r [*r]", "&r [-1, 1, Conv, *r]"]))
        return (doc + f"backbone: [{target}]\nhead: *l{depth - 1}\n").encode() if "&r" not in target else \
            (doc + f"backbone: [{target}]\nhead: []\n").encode()
    if kind == "nest":
        d = draw(st.sampled_from([40, 200, 2000, 20000]))
        return text.replace("- 64\n", "- " + "[" * d + "]" * d + "\n", 1).encode()
    if kind == "bom":
        return b"\xef\xbb\xbf" + text.encode()
    a, b = draw(st.sampled_from([("Conv", "C0nv"), ("backbone", "backb0ne"), ("head:", "heads:"), ("- -1", "- 1"),
                                 ("nc: 80", "nc: -80"), ("- 3\n", "- 300000\n"), ("[", "{"), ("C3", "nn.Conv2d")]))
    return text.replace(a, b, draw(st.integers(1, 3))).encode()


def test_fuzz_broken_files(tmp_path, marker):
    """Damaged files: truncated, YAML tags, alias bombs, deep nesting, binary, other encodings, empty."""
    cases = []

    @settings(FUZZ, max_examples=100)
    @given(data=broken_texts(marker))
    def check(data):
        path = tmp_path / f"broken-{len(cases)}.yaml"
        path.write_bytes(data)
        code, out, err = run_cli(["model", str(path), "--img", "64"])
        check_outcome(code, out, err, str(path), marker)
        cases.append(code)

    check()
    assert len(cases) >= 100


def test_fuzz_img_values(marker):
    """--img strings: exit 0 or one line naming --img; huge sizes stay analytic (no allocation)."""
    cases = []

    @settings(FUZZ, max_examples=60)
    @given(img=st.one_of(
        st.integers(-(10 ** 12), 10 ** 12).map(str),
        st.sampled_from(["0", "-1", "abc", "640,640,640", "", ",", "640,", "x", "640x", "1e3", "0x10", "６４０",
                         str(10 ** 7), str(2 ** 31), str(2 ** 63), "9" * 5000, "1000000", "999968,32", "nan",
                         " 640 ", "640;rm -rf /", payloads("/nonexistent/m")[0]]),
        st.text(max_size=12)))
    def check(img):
        code, out, err = run_cli(["model", "yolov5n", "--img", img, "--json", "-"])
        assert code in (0, 2) and "Traceback" not in err and "internal error" not in err, (img, code, err)
        if code == 2:
            assert len(err.splitlines()) == 1 and "--img" in err, (img, err)
        cases.append(code)

    check()
    assert len(cases) >= 60


# --------------------------------------------------------------------------------------------
# end to end, as a user runs it


def _subprocess(args, cwd):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    return subprocess.run([sys.executable, "-m", "flopscope", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=env)


def test_subprocess_hostile_configs(tmp_path):
    """Real processes: a payload as module name (plus arg and activation), and a YAML python tag."""
    marker = tmp_path / "MARKER"
    m = str(marker)
    cfg = copy.deepcopy(BASE)
    cfg["backbone"][3][2] = f"__import__('os').system('touch {m}')"
    cfg["head"][0][3] = [f"__import__('os').system('touch {m}')"]
    cfg["activation"] = f"nn.ReLU(__import__('os').system('touch {m}'))"
    (tmp_path / "module.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    (tmp_path / "tag.yaml").write_text(f"nc: !!python/object/apply:os.system ['touch {m}']\n", encoding="utf-8")
    for name, expect in [("module.yaml", "layer 3: module: "), ("tag.yaml", "invalid YAML at line 1")]:
        r = _subprocess(["model", name], tmp_path)
        assert r.returncode == 2, (name, r.stderr)
        assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"flopscope: error: {name}: "), r.stderr
        assert expect in r.stderr and "Traceback" not in r.stderr
        assert not marker.exists()
    # in process, the next problems one by one: the activation, then the arg of row 10
    cfg["backbone"][3][2] = "Conv"
    for expect in ("activation: ", "layer 10: args: "):
        (tmp_path / "module.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
        code, out, err = run_cli(["model", str(tmp_path / "module.yaml")])
        assert code == 2 and expect in err and not marker.exists(), err
        cfg.pop("activation", None)


def test_subprocess_valid_and_usage(tmp_path):
    r = _subprocess(["model", "yolov5s", "--img", "1000000", "--json", "-"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert '"img": [\n    1000000,\n    1000000\n  ]' in r.stdout
    r = _subprocess(["model", "yolov5s", "--imgg", "640"], tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--img" in r.stderr and "Traceback" not in r.stderr
