"""``flopscope diff A B``: two configs' layers aligned; same / changed / added / removed and the deltas."""
from __future__ import annotations

from typing import Optional

import typer

from ..cli import app, command
from ..options import BATCH, FUSE, IMG, NC
from ..output import CSV, HTML, JSON, MD, Outputs


@app.command("diff", epilog="Example: flopscope diff yolov5l yolov5_iRMB_seed --img 640 --json diff.json")
@command
def diff_cmd(
    cfg_a: str = typer.Argument(..., metavar="A", help="First config (bundled name or YAML path)."),
    cfg_b: str = typer.Argument(..., metavar="B", help="Second config (bundled name or YAML path)."),
    img: str = IMG,
    batch: int = BATCH,
    nc: Optional[int] = NC,
    fuse: bool = FUSE,
    changes: bool = typer.Option(False, "--changes", help="Show only rows that are not 'same' in the table."),
    json_out: Optional[str] = JSON("Write the diff as JSON to FILE ('-' = stdout only)."),
    csv_out: Optional[str] = CSV("Write the aligned rows as CSV to FILE ('-' = stdout only)."),
    md_out: Optional[str] = MD("Write the aligned rows as Markdown to FILE ('-' = stdout only)."),
    html_out: Optional[str] = HTML("Write a self-contained HTML report (the two models side by side) to FILE "
                                   "('-' = stdout only)."),
):
    """Align A's and B's layers (by index when the row structures match, else as sequences on
    (module, args)) and show per row: same / changed / added / removed, params Δ, GFLOPs Δ and
    output-shape changes; totals Δ absolute and in %.  'changed' compares the built modules
    (class tree, parameter shapes, cost), not only the YAML rows."""
    from ..diff import diff_models, print_diff

    out = Outputs(json=json_out, csv=csv_out, md=md_out, html=html_out)
    d = diff_models(cfg_a, cfg_b, img=img, batch=batch, nc=nc, fuse=fuse)
    out.show(print_diff, d, show_same=not changes)
    out.write(d)
