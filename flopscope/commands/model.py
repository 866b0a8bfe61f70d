"""``flopscope model CFG``: the per-layer report of a config."""
from __future__ import annotations

from typing import Optional

import typer

from ..cli import app, command
from ..options import BATCH, IMG, NC, config_options
from ..profile import profile
from ..render import print_report, to_csv, to_json, to_markdown, write_output


@app.command("model", epilog="Example: flopscope model yolov5s --img 640 --json report.json")
@command
@config_options
def model_cmd(
    cfg: str = typer.Argument(..., help="Bundled config name (yolov5s, yolov5s.yaml) or a YAML path."),
    img: str = IMG,
    batch: int = BATCH,
    nc: Optional[int] = NC,
    json_out: Optional[str] = typer.Option(None, "--json", help="Write the JSON record to FILE ('-' = stdout only)."),
    csv_out: Optional[str] = typer.Option(None, "--csv", help="Write the per-layer table as CSV to FILE ('-' = stdout)."),
    md_out: Optional[str] = typer.Option(None, "--md", help="Write the table as Markdown to FILE ('-' = stdout)."),
    plot_out: Optional[str] = typer.Option(None, "--plot", help="Draw per-layer GFLOPs and params bars to FILE.png."),
    latency: bool = typer.Option(False, "--latency", help="Also measure latency (CUDA when available, else CPU; "
                                                          "`flopscope bench` has every timing option)."),
    check: bool = typer.Option(False, "--check", help="Also cross-check against fvcore, thop, ptflops and "
                                                      "FlopCounterMode (batch 1, CPU; `flopscope check` has every "
                                                      "option)."),
):
    """Build CFG and print its per-layer Params / MACs / FLOPs (analytic, on the meta device)."""
    report = profile(cfg, img=img, batch=batch, nc=nc)
    to_stdout = "-" in (json_out, csv_out, md_out)
    if not to_stdout:
        print_report(report)
    lat = None
    if latency:
        from ..bench import latency_lines, run_bench

        lat = run_bench(cfg, img=img, batch=batch, nc=nc)
        if not to_stdout:
            for line in latency_lines(lat) + lat["notes"]:
                print(line)
    chk = None
    if check:
        from .check import run_check

        chk = run_check(cfg, img, nc=nc, show=not to_stdout)
    if json_out:
        write_output(to_json({**report.to_dict(), **({"latency": lat} if lat else {}),
                              **({"check": chk.to_dict()} if chk else {})}), json_out)
    if csv_out:
        write_output(to_csv(report), csv_out)
    if md_out:
        write_output(to_markdown(report), md_out)
    if plot_out:
        from ..plot import plot_model

        plot_model(report, plot_out)
