"""``flopscope table A B C``: one row per config for papers (Params, GFLOPs, YOLOv5's GFLOPs, latency, FPS)."""
from __future__ import annotations

import sys
from typing import List, Optional

import typer

from ..cli import app, command
from ..options import IMG, NC, config_options
from ..render import to_json, write_output


@app.command("table", epilog="Example: flopscope table yolov5n yolov5s yolov5_iRMB_seed --img 640 --md -")
@command
@config_options
def table_cmd(
    cfgs: List[str] = typer.Argument(..., metavar="CFG...", help="Configs (bundled names or YAML paths)."),
    img: str = IMG,
    nc: Optional[int] = NC,
    latency: bool = typer.Option(False, "--latency", help="Measure latency and FPS (flopscope bench) for each config."),
    device: str = typer.Option("auto", "--device", help="With --latency: cpu, cuda, cuda:N or auto."),
    dtype: str = typer.Option("fp32", "--dtype", help="With --latency: fp32, fp16 or bf16."),
    batch: int = typer.Option(1, "--batch", help="With --latency: batch size of the timed forwards."),
    warmup: Optional[int] = typer.Option(None, "--warmup", help="With --latency: untimed forwards first."),
    iters: Optional[int] = typer.Option(None, "--iters", help="With --latency: timed forwards."),
    md_out: Optional[str] = typer.Option(None, "--md", help="Write the table as Markdown to FILE ('-' = stdout)."),
    csv_out: Optional[str] = typer.Option(None, "--csv", help="Write the table as CSV to FILE ('-' = stdout)."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write the table as JSON to FILE ('-' = stdout)."),
):
    """One row per config: Params (M), GFLOPs (exact, per image), GFLOPs as YOLOv5 would print them,
    and with --latency the measured latency (ms) and FPS."""
    from ..table import compare_table, print_table, to_csv, to_markdown

    def progress(msg):
        sys.stderr.write(msg + "\n")

    t = compare_table(cfgs, img=img, nc=nc, latency=latency, device=device, dtype=dtype, batch=batch,
                      warmup=warmup, iters=iters, progress=progress if latency else None)
    if "-" not in (md_out, csv_out, json_out):
        print_table(t)
    if md_out:
        write_output(to_markdown(t), md_out)
    if csv_out:
        write_output(to_csv(t), csv_out)
    if json_out:
        write_output(to_json(t.to_dict()), json_out)
