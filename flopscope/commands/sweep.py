"""``flopscope sweep CFG --img 320,480,640,960,1280``: cost at several image sizes, per-layer scaling exponents."""
from __future__ import annotations

from typing import Optional

import typer

from ..cli import app, command
from ..options import BATCH, FUSE, NC
from ..output import CSV, HTML, JSON, MD, Outputs


@app.command("sweep", epilog="Example: flopscope sweep yolov5s-transformer --img 320,480,640,960,1280 --plot sweep.png")
@command
def sweep_cmd(
    cfg: str = typer.Argument(..., help="Bundled config name or a YAML path."),
    img: str = typer.Option("320,480,640,960,1280", "--img",
                            help="Image sizes, comma-separated (square); an item HxW is a rectangle."),
    batch: int = BATCH,
    nc: Optional[int] = NC,
    fuse: bool = FUSE,
    plot: Optional[str] = typer.Option(None, "--plot", help="Write GFLOPs against image size as a PNG to FILE."),
    json_out: Optional[str] = JSON("Write the sweep as JSON to FILE ('-' = stdout only)."),
    csv_out: Optional[str] = CSV("Write per-layer GFLOPs by size as CSV to FILE ('-' = stdout only)."),
    md_out: Optional[str] = MD("Write the per-layer exponents as Markdown to FILE ('-' = stdout only)."),
    html_out: Optional[str] = HTML("Write a self-contained HTML report (curves with fitted exponents, bars, "
                                   "treemap) to FILE ('-' = stdout only)."),
):
    """Totals and per-layer GFLOPs at each image size, each layer's fitted scaling exponent
    (slope of log cost vs log H·W; 1 = ∝ H·W) and the layers that are not linear in H·W."""
    from ..sweep import print_sweep, sweep

    out = Outputs(json=json_out, csv=csv_out, md=md_out, html=html_out, png=plot)
    s = sweep(cfg, img, batch=batch, nc=nc, fuse=fuse)
    out.show(print_sweep, s)
    out.write(s)
