"""Utilities in one place each (issue 10, item 7): shapes, input parsing, H·W scaling, units; no import cycle."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

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
