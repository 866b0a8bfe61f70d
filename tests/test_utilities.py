"""Utilities in one place each (issue 10, item 7): shapes, input parsing, H·W scaling, units; no import cycle."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from flopscope.errors import FlopscopeError

PKG = Path(__file__).resolve().parents[1] / "flopscope"


def _top_level_imports(path: Path) -> set[str]:
    """flopscope modules imported at module level (not inside functions) by one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:
                out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("flopscope."):
            out.add(node.module.split(".")[1])
    return out


def test_core_has_no_import_cycle():
    graph = {p.stem: _top_level_imports(p) for p in PKG.glob("*.py")}
    state: dict[str, int] = {}

    def visit(n, path):
        if state.get(n) == 1:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(n):] + [n]))
        if state.get(n) == 2 or n not in graph:
            return
        state[n] = 1
        for m in sorted(graph[n]):
            visit(m, path + [n])
        state[n] = 2

    for n in sorted(graph):
        if n != "__init__":
            visit(n, [])
    assert "tracer" not in graph["leaf_formulas"] and graph["shapes"] <= {"errors"}


def test_shape_helpers_moved_with_old_names_kept():
    from flopscope import shapes, tracer

    for name in ("ShapeError", "check_channels", "conv_out", "cat_channels"):
        assert getattr(tracer, name) is getattr(shapes, name)
    assert shapes.conv_out(80, 3, 2, 1, 1) == 40  # (80 + 2 - 2 - 1) // 2 + 1, by hand
    assert shapes.cat_channels([(1, 3, 4, 4), (1, 5, 4, 4)]) == (1, 8, 4, 4)
    with pytest.raises(shapes.ShapeError):
        shapes.cat_channels([(1, 3, 4, 4), (1, 5, 4, 2)])
    assert "import cycle" not in (PKG / "registry.py").read_text(encoding="utf-8")



def test_the_zoo_takes_shape_helpers_from_shapes_not_the_tracer():
    """The tracer re-exports the shape helpers for old plugins; our own code imports them from their module."""
    import re

    root = PKG.parent
    offenders = []
    for path in [*sorted((root / "modules").glob("*.py")), *sorted(PKG.rglob("*.py"))]:
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"from (?:flopscope|\.+)\.?tracer import ([^\n]+)", text):
            names = {n.strip() for n in m.group(1).split("#")[0].split(",")}
            if names & {"ShapeError", "check_channels", "conv_out", "cat_channels", "Shape"}:
                offenders.append(f"{path.name}: {m.group(0)}")
    assert not offenders, offenders

def test_one_input_parser_at_the_old_names():
    import importlib

    from flopscope import bench, inputs, layer

    profile = importlib.import_module("flopscope.report")  # the module (flopscope.profile is the function)
    assert profile.parse_img is inputs.parse_img and layer.parse_hw is inputs.parse_hw
    assert bench.parse_batches is inputs.parse_batches
    for parse in (inputs.parse_img, inputs.parse_hw):
        assert parse(64) == parse("64") == parse([64]) == (64, 64)
        assert parse("64,48") == parse("64x48") == parse("64X48") == parse((64, 48)) == (64, 48)
    assert inputs.parse_batches("1,8,8,32") == inputs.parse_batches([1, 8, 32]) == [1, 8, 32]
    for parse, bad, option in ((inputs.parse_img, "abc", "--img"), (inputs.parse_img, "0", "--img"),
                               (inputs.parse_hw, "1,2,3", "--hw"), (inputs.parse_hw, 10 ** 6, "--hw"),
                               (inputs.parse_batches, "0", "--batch"), (inputs.parse_batches, True, "--batch")):
        with pytest.raises(FlopscopeError, match=f"^{option} "):
            parse(bad)


def test_dead_code_and_stale_docstring_gone():
    from flopscope import cost

    assert not hasattr(cost, "elementwise") and not hasattr(cost, "numel")
    assert "flopscope.counters" not in (PKG / "cost.py").read_text(encoding="utf-8")


def test_one_place_decides_hw_scaling():
    import importlib

    from flopscope import layer, scaling, sweep

    assert layer.classify is scaling.classify and layer.classify_total is scaling.classify_total
    assert sweep.fit_exponent is scaling.fit_exponent and sweep.TOLERANCE == scaling.TOLERANCE
    assert "proportional_when_doubled" in (PKG / "report.py").read_text(encoding="utf-8")
    assert importlib.import_module("flopscope.report").proportional_when_doubled is scaling.proportional_when_doubled
    # by hand: 3·H·W quadruples when H and W double; 3·H·W + 1 does not
    assert scaling.proportional_when_doubled(3 * 80 * 80, 3 * 160 * 160)
    assert not scaling.proportional_when_doubled(3 * 80 * 80 + 1, 3 * 160 * 160 + 1)
    areas = [320 ** 2, 640 ** 2, 1280 ** 2]
    assert scaling.fit_exponent(areas, [5 * a for a in areas]) == pytest.approx(1)
    assert scaling.fit_exponent(areas, [a * a for a in areas]) == pytest.approx(2)
    assert scaling.is_proportional_exponent(1.01) and not scaling.is_proportional_exponent(1.5)


def test_one_units_table():
    import importlib

    from flopscope import units

    names = ("report", "layer", "diff", "sweep", "table", "bench")
    for name in names:
        mod = importlib.import_module(f"flopscope.{name}")
        assert set(mod.UNITS.values()) <= set(units.DESCRIPTIONS.values()), name
        assert "UNITS = {" not in (PKG / f"{name}.py").read_text(encoding="utf-8"), name
    # the JSON text is unchanged (README "JSON output")
    profile = importlib.import_module("flopscope.report")
    assert profile.UNITS["macs"] == "multiply-accumulates (conv + linear + matmul); bias adds not counted"
    assert importlib.import_module("flopscope.diff").UNITS["macs"] == \
        "multiply-accumulates (conv + linear + matmul), per batch"
    assert list(importlib.import_module("flopscope.bench").UNITS)[:2] == ["latency_ms", "throughput_img_s"]


def test_one_row_identity_for_every_per_layer_type():
    """index/from/n/module/args are declared once (RowKey) and written to JSON in one place."""
    import dataclasses

    import flopscope
    from flopscope import builder, config, report, rows, sweep

    for cls in (config.LayerRow, builder.LayerInfo, report.LayerRecord, sweep.LayerSweep):
        assert issubclass(cls, rows.RowKey), cls
        own = [f.name for f in dataclasses.fields(cls)][:5]
        assert own == ["index", "f", "n", "module", "args"], cls
    r = flopscope.profile("yolov5n", img=64)
    d = r.layers[0].to_dict()
    assert [d[k] for k in ("index", "from", "n", "module", "args")] == [0, -1, 1, "Conv", [3, 16, 6, 2, 2]]
    # The `layer` command's synthetic row is a plain channels.Row that names itself in errors.
    import flopscope.layer as layer_mod

    assert not hasattr(layer_mod, "_LayerRow")
