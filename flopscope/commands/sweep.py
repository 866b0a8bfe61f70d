"""``flopscope sweep CFG --img 320,480,640,960,1280``: cost at several image sizes, per-layer scaling exponents."""
from __future__ import annotations

from typing import Optional

import typer

from ..cli import app, command
from ..options import BATCH, NC, config_options
from ..render import to_json, write_output


@app.command("sweep", epilog="Example: flopscope sweep yolov5s-transformer --img 320,480,640,960,1280 --plot sweep.png")
@command
@config_options
def sweep_cmd(
    cfg: str = typer.Argument(..., help="Bundled config name or a YAML path."),
    img: str = typer.Option("320,480,640,960,1280", "--img",
                            help="Image sizes, comma-separated (square); an item HxW is a rectangle."),
    batch: int = BATCH,
    nc: Optional[int] = NC,
    plot: Optional[str] = typer.Option(None, "--plot", help="Write GFLOPs against image size as a PNG to FILE."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write the sweep as JSON to FILE ('-' = stdout only)."),
    csv_out: Optional[str] = typer.Option(None, "--csv", help="Write per-layer GFLOPs by size as CSV to FILE ('-' = stdout)."),
):
    """Totals and per-layer GFLOPs at each image size, each layer's fitted scaling exponent
    (slope of log cost vs log H·W; 1 = ∝ H·W) and the layers that are not linear in H·W."""
    from ..sweep import print_sweep, sweep

    s = sweep(cfg, img, batch=batch, nc=nc)
    if "-" not in (json_out, csv_out):
        print_sweep(s)
    if plot:
        from ..plot import plot_sweep

        plot_sweep(s, plot)
    if json_out:
        write_output(to_json(s.to_dict()), json_out)
    if csv_out:
        from ..sweep import to_csv

        write_output(to_csv(s), csv_out)
