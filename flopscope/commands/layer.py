"""``flopscope layer NAME``: one registered module on its own -- its terms and how they scale with H·W."""
from __future__ import annotations

import ast
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..cli import app, command
from ..errors import FlopscopeError
from ..layer import LayerReport, profile_layer
from ..output import CSV, HTML, JSON, MD, Outputs
from ..render import shape_str

MAX_ARGS_TEXT = 10_000


def parse_args_literal(text: str | None) -> list | None:
    """``--args '[3, 2]'`` as a Python literal (``ast.literal_eval``: parsed, never evaluated)."""
    if text is None:
        return None
    if len(text) > MAX_ARGS_TEXT:
        raise FlopscopeError(f"--args is too long ({len(text)} characters, max {MAX_ARGS_TEXT})")
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise FlopscopeError(f"--args must be a literal list such as '[3, 2]' or '[None, 2, \"nearest\"]' "
                             f"(parsed, never evaluated), got {text!r}"[:300]) from None
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list):
        value = [value]
    return value


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def layer_table(r: LayerReport) -> Table:
    ctor = ", ".join(map(repr, r.constructor_args))
    title = f"{r.module}({ctor if len(ctor) < 100 else ctor[:99] + '…'}) on {shape_str(r.in_shape)}"
    t = Table(title=escape(title), header_style="bold", expand=False)
    for col, just in (("term", "left"), ("kind", "left"), ("op", "left"), ("MACs", "right"),
                      ("elem. FLOPs", "right"), ("share %", "right"), ("scaling", "left"), ("fit", "left")):
        t.add_column(col, justify=just, no_wrap=col not in ("fit",))
    for term in r.terms:
        ew = term.kind == "elementwise"
        cells = (term.name, term.kind, term.op, "" if ew else f"{term.value:,}", f"{term.value:,}" if ew else "",
                 _pct(term.share), term.scaling.cls, term.scaling.detail)
        t.add_row(*(escape(c) for c in cells), style="dim" if ew else None)
    t.add_section()
    t.add_row("total", "", "", f"{r.macs:,}", f"{r.elementwise_flops:,}", "100.0", r.scaling["macs"].cls, "",
              style="bold")
    return t


def summary_lines(r: LayerReport) -> list[str]:
    kinds = r.macs_by_kind
    h, w = r.hw
    lines = [
        f"{r.module}: {r.params:,} params; input {shape_str(r.in_shape)} -> output {shape_str(r.out_shape)}; "
        f"channel rule {r.channel_rule!r}",
        f"{r.macs:,} MACs = {r.flops / 1e9:.4f} GFLOPs (+ {r.elementwise_flops:,} element-wise FLOPs) @ {h}x{w}, "
        f"batch {r.batch}; MACs by kind: conv {kinds['conv']:,}, linear {kinds['linear']:,}, "
        f"matmul {kinds['matmul']:,}",
        f"Scaling with H·W: {r.summary()}",
        "sizes fitted: " + ", ".join(f"{a}x{b}" for a, b in r.sizes),
    ]
    lines.extend(r.notes)
    return lines


def print_layer(r: LayerReport, console: Console | None = None) -> None:
    if console is None:
        import sys

        console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(layer_table(r))
    for line in summary_lines(r):
        console.print(line, highlight=False, markup=False)


@app.command("layer", epilog="Example: flopscope layer C3 --c 128 --c2 256 --hw 80 --args '[False]' --json -")
@command
def layer_cmd(
    name: str = typer.Argument(..., help="Registered module name as written in a YAML row (see `flopscope list`)."),
    c: int = typer.Option(256, "--c", help="Input channels c1 (the output channels of the layer feeding this row; "
                                                  "a module that fuses k inputs gets k inputs of --c channels)."),
    c2: Optional[int] = typer.Option(None, "--c2", help="Output channels (conv-like modules; default: --c). "
                                                        "Same-channel modules: omit or equal to --c."),
    hw: str = typer.Option("80", "--hw", help="Input feature-map size: 80, or H,W such as 80,60."),
    batch: int = typer.Option(1, "--batch", help="Batch size."),
    args: Optional[str] = typer.Option(None, "--args", help="The YAML row's further args as a literal list, e.g. "
                                                            "'[3, 2]' (after c2 for conv-like modules)."),
    n: int = typer.Option(1, "--n", help="The YAML row's repeat count n."),
    json_out: Optional[str] = JSON(),
    csv_out: Optional[str] = CSV("Write the terms as CSV to FILE ('-' = stdout only)."),
    md_out: Optional[str] = MD("Write the terms as Markdown to FILE ('-' = stdout only)."),
    html_out: Optional[str] = HTML("Write a self-contained HTML report (terms table, bars, treemap by module path) "
                                   "to FILE ('-' = stdout only)."),
):
    """Profile one module: params, output shape, MACs per named term and how each term scales with H·W."""
    out = Outputs(json=json_out, csv=csv_out, md=md_out, html=html_out)
    report = profile_layer(name, c, c2, hw=hw, batch=batch, args=parse_args_literal(args), n=n)
    out.show(print_layer, report)
    out.write(report)
