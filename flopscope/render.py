"""Rendering a :class:`~flopscope.report.Report`: rich table, JSON, CSV, Markdown -- one record, four views."""
from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .errors import FlopscopeError

NONLINEAR_MARK = "≁"  # cost not proportional to H·W


def g(v: float | int | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v / 1e9:.{digits}f}"


def shape_str(s) -> str:
    if isinstance(s, (list, tuple)) and s and all(isinstance(v, int) for v in s):
        return "×".join(map(str, s))
    if isinstance(s, (list, tuple)):
        return ", ".join(shape_str(v) for v in s)
    return str(s)


def args_str(args, limit: int = 48) -> str:
    s = str(args)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def count_mark(notes) -> str:
    """'*' when part of a layer was counted without a formula (op-level, on CPU ...), '†' for a hand rule;
    ``notes``: a row's typed notes (:class:`flopscope.tracer.Note`)."""
    if any(getattr(n, "kind", "other") != "hand rule" for n in notes):
        return "*"
    return "†" if notes else ""


def layer_rows(report) -> list[dict]:
    """The table's rows as plain values (shared by table / CSV / Markdown)."""
    total = report.flops or 1
    rows = []
    for r in report.layers:
        rows.append({
            "idx": r.index, "from": str(r.f), "n": r.n, "module": r.module, "args": str(r.args),
            "out_shape": shape_str(r.out_shape), "params": r.params, "gmacs": r.macs / 1e9, "gflops": r.flops / 1e9,
            "conv_gmacs": r.macs_by_kind["conv"] / 1e9, "linear_gmacs": r.macs_by_kind["linear"] / 1e9,
            "matmul_gmacs": r.macs_by_kind["matmul"] / 1e9, "elementwise_gflops": r.elementwise_flops / 1e9,
            "pct": 100.0 * r.flops / total, "linear_in_hw": r.linear_in_hw, "counted_by": r.counted_by,
        })
    return rows


def model_info_lines(report) -> list[str]:
    """What the config's own model.info() prints, and what current YOLOv5 prints where that differs, labelled."""
    from .units import LABELS

    lines = []
    true_per_image = report.gflops / report.batch
    mi = report.model_info_gflops
    current = getattr(report, "model_info_current_gflops", None)
    stride_aware = getattr(report, "model_info_stride_aware", False)
    if mi is not None:
        label = LABELS["model_info_ultralytics" if stride_aware else "model_info_legacy"]
        how = LABELS["model_info_current_how"] if stride_aware else \
            LABELS["model_info_legacy_how"].format(p=report.model_info_probe)
        if f"{mi:.1f}" != f"{true_per_image:.1f}":
            lines.append(f"{label} {mi:.1f} GFLOPs ({how}); the true figure is {true_per_image:.1f} GFLOPs per image")
        else:
            lines.append(f"{label} {mi:.1f} GFLOPs, which agrees with the true figure")
    if getattr(report, "model_info_current_differs", False):
        lines.append(f"{LABELS['model_info_current']} {current:.1f} GFLOPs ({LABELS['model_info_current_how']})")
    return lines


def summary_lines(report) -> list[str]:
    h, w = report.img
    kinds = report.macs_by_kind
    lines = [
        f"{report.model}{' (fused)' if getattr(report, 'fused', False) else ''}: {len(report.layers)} layers, {report.params:,} params, {report.macs / 1e9:.3f} GMACs, "
        f"{report.gflops:.3f} GFLOPs (+ {report.elementwise_flops / 1e9:.3f} element-wise GFLOPs) @ {h}x{w}, "
        f"batch {report.batch}",
        f"MACs by kind: conv {kinds['conv'] / 1e9:.3f} G, linear {kinds['linear'] / 1e9:.3f} G, "
        f"attention/matmul {kinds['matmul'] / 1e9:.3f} G  (GFLOPs = 2 x GMACs)",
    ]
    lines.extend(model_info_lines(report))
    nonlinear = [r.index for r in report.layers if r.linear_in_hw is False]
    if nonlinear:
        lines.append(f"{NONLINEAR_MARK} layers whose cost is not proportional to H·W: {', '.join(map(str, nonlinear))}")
    lines.extend(report.notes)
    return lines


def table(report) -> Table:
    t = Table(title=f"{report.model} @ {report.img[0]}x{report.img[1]}, batch {report.batch}", show_footer=False,
              header_style="bold", expand=False)
    for col, just in (("idx", "right"), ("from", "right"), ("n", "right"), ("module", "left"), ("args", "left"),
                      ("output", "left"), ("params", "right"), ("GMACs", "right"), ("GFLOPs", "right"),
                      ("elem. GFLOPs", "right"), ("%", "right"), ("", "center")):
        t.add_column(col, justify=just, no_wrap=col not in ("args",))
    for row, r in zip(layer_rows(report), report.layers):
        mark = NONLINEAR_MARK if r.linear_in_hw is False else ""
        module = row["module"] + count_mark(r.notes)
        t.add_row(str(row["idx"]), row["from"], str(row["n"]), module, args_str(r.args), row["out_shape"],
                  f"{row['params']:,}", f"{row['gmacs']:.3f}", f"{row['gflops']:.3f}", f"{row['elementwise_gflops']:.3f}",
                  f"{row['pct']:.1f}", mark)
    t.add_section()
    t.add_row("", "", "", "total", "", "", f"{report.params:,}", g(report.macs), g(report.flops),
              g(report.elementwise_flops), "100.0", "", style="bold")
    return t


def print_report(report, console: Console | None = None) -> None:
    if console is None:
        import sys
        console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(table(report))
    for line in summary_lines(report):
        console.print(line, highlight=False, markup=False)
    for mark, text in (("*", "counted partly without a formula"), ("†", "counted partly by a hand-derived rule "
                                                                      "(work FlopCounterMode cannot see)")):
        rows = [f"{r.index}: {r.counted_by}" for r in report.layers if count_mark(r.notes) == mark]
        if rows:
            console.print(f"{mark} {text}: " + "; ".join(rows), highlight=False, markup=False)
    line = channel_rule_line(report)
    if line:
        console.print(line, highlight=False, markup=False)


def channel_rule_line(report) -> str:
    """Which channel rule built each row that is not a built-in, and where the rule came from."""
    groups: dict[tuple, list[str]] = {}
    for r in report.layers:
        rule = getattr(r, "channel_rule", None)
        if not rule or rule.get("source") == "built-in":
            continue
        groups.setdefault((rule["name"], rule["source"]), []).append(str(r.index))
    if not groups:
        return ""
    parts = [f"{', '.join(idx)}: {src if src.startswith(name) else f'{name} from {src}'}"
             for (name, src), idx in groups.items()]
    return "channel rules (rows not built by a built-in): " + "; ".join(parts)


CSV_COLUMNS = ["idx", "from", "n", "module", "args", "out_shape", "params", "gmacs", "gflops", "conv_gmacs",
               "linear_gmacs", "matmul_gmacs", "elementwise_gflops", "pct", "linear_in_hw", "counted_by"]


def to_csv(report) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in layer_rows(report):
        w.writerow(row)
    w.writerow({"idx": "total", "params": report.params, "gmacs": report.macs / 1e9, "gflops": report.gflops,
                "conv_gmacs": report.macs_by_kind["conv"] / 1e9, "linear_gmacs": report.macs_by_kind["linear"] / 1e9,
                "matmul_gmacs": report.macs_by_kind["matmul"] / 1e9,
                "elementwise_gflops": report.elementwise_flops / 1e9, "pct": 100.0})
    return buf.getvalue()


def md_escape(s: str) -> str:
    return str(s).replace("|", "\\|")


def to_markdown(report) -> str:
    out = [f"### {report.model} @ {report.img[0]}x{report.img[1]}, batch {report.batch}", "",
           "| idx | from | n | module | args | output | params | GMACs | GFLOPs | elem. GFLOPs | % | ≁ |",
           "|---:|---:|---:|---|---|---|---:|---:|---:|---:|---:|:-:|"]
    for row, r in zip(layer_rows(report), report.layers):
        out.append("| " + " | ".join(md_escape(v) for v in (
            row["idx"], row["from"], row["n"], row["module"], row["args"], row["out_shape"], f"{row['params']:,}",
            f"{row['gmacs']:.3f}", f"{row['gflops']:.3f}", f"{row['elementwise_gflops']:.3f}", f"{row['pct']:.1f}",
            NONLINEAR_MARK if r.linear_in_hw is False else "")) + " |")
    out.append(f"| **total** | | | | | | **{report.params:,}** | **{g(report.macs)}** | **{g(report.flops)}** | "
               f"**{g(report.elementwise_flops)}** | 100.0 | |")
    out.append("")
    out.extend(f"- {md_escape(line)}" for line in summary_lines(report))
    return "\n".join(out) + "\n"


def write_output(text: str, dest: str) -> None:
    """Write to a file, or stdout for '-'."""
    if dest == "-":
        sys.stdout.write(text)
        if not text.endswith("\n"):
            sys.stdout.write("\n")
        return
    try:
        Path(dest).write_text(text, encoding="utf-8")
    except OSError as e:
        raise FlopscopeError(f"cannot write {dest}: {e.strerror}") from None


def to_json(data) -> str:
    return json.dumps(data, indent=2)
