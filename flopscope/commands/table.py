"""``flopscope table A B C``: one row per config for papers (Params, GFLOPs, YOLOv5's GFLOPs, latency, FPS)."""
from __future__ import annotations

import sys
from typing import List, Optional

import typer

from ..cli import app, command
from ..options import FUSE, IMG, NC
from ..output import CSV, HTML, JSON, MD, Outputs


@app.command("table", epilog="Example: flopscope table yolov5n yolov5s yolov5_iRMB_seed --img 640 --md -")
@command
def table_cmd(
    cfgs: List[str] = typer.Argument(..., metavar="CFG...", help="Configs (bundled names or YAML paths)."),
    img: str = IMG,
    nc: Optional[int] = NC,
    fuse: bool = FUSE,
    latency: bool = typer.Option(False, "--latency", help="Measure latency and FPS (flopscope bench) for each config."),
    device: str = typer.Option("auto", "--device", help="With --latency: cpu, cuda, cuda:N or auto."),
    dtype: str = typer.Option("fp32", "--dtype", help="With --latency: fp32, fp16 or bf16."),
    batch: int = typer.Option(1, "--batch", help="With --latency: batch size of the timed forwards."),
    warmup: Optional[int] = typer.Option(None, "--warmup", help="With --latency: untimed forwards first."),
    iters: Optional[int] = typer.Option(None, "--iters", help="With --latency: timed forwards."),
    md_out: Optional[str] = MD(),
    csv_out: Optional[str] = CSV(),
    json_out: Optional[str] = JSON("Write the table as JSON to FILE ('-' = stdout only)."),
    html_out: Optional[str] = HTML("Write a self-contained HTML report (bars per model, table, treemaps) to FILE "
                                   "('-' = stdout only)."),
):
    """One row per config: Params (M), GFLOPs (exact, per image), GFLOPs as YOLOv5 would print them,
    and with --latency the measured latency (ms) and FPS."""
    from ..table import compare_table, print_table

    out = Outputs(json=json_out, csv=csv_out, md=md_out, html=html_out)

    def progress(msg):
        sys.stderr.write(msg + "\n")

    t = compare_table(cfgs, img=img, nc=nc, latency=latency, device=device, dtype=dtype, batch=batch,
                      warmup=warmup, iters=iters, progress=progress if latency else None, fuse=fuse)
    out.show(print_table, t)
    out.write(t)
