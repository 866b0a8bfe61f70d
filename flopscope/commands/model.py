"""``flopscope model CFG``: the per-layer report of a config."""
from __future__ import annotations

from typing import Optional

import typer

from ..cli import app, command
from ..options import BATCH, IMG, NC
from ..profile import profile
from ..output import CSV, HTML, JSON, MD, Outputs
from ..render import print_report


@app.command("model", epilog="Example: flopscope model yolov5s --img 640 --json report.json")
@command
def model_cmd(
    cfg: str = typer.Argument(..., help="Bundled config name (yolov5s, yolov5s.yaml) or a YAML path."),
    img: str = IMG,
    batch: int = BATCH,
    nc: Optional[int] = NC,
    json_out: Optional[str] = JSON(),
    csv_out: Optional[str] = CSV("Write the per-layer table as CSV to FILE ('-' = stdout only)."),
    md_out: Optional[str] = MD(),
    html_out: Optional[str] = HTML("Write a self-contained HTML report (sortable table, bars per layer, treemap "
                                   "by module path) to FILE ('-' = stdout only)."),
    plot_out: Optional[str] = typer.Option(None, "--plot", help="Draw per-layer GFLOPs and params bars to FILE.png."),
    latency: bool = typer.Option(False, "--latency", help="Also measure latency (CUDA when available, else CPU; "
                                                          "`flopscope bench` has every timing option)."),
    check: bool = typer.Option(False, "--check", help="Also cross-check against fvcore, thop, ptflops and "
                                                      "FlopCounterMode (batch 1, CPU; `flopscope check` has every "
                                                      "option)."),
):
    """Build CFG and print its per-layer Params / MACs / FLOPs (analytic, on the meta device)."""
    out = Outputs(json=json_out, csv=csv_out, md=md_out, html=html_out, png=plot_out)
    report = profile(cfg, img=img, batch=batch, nc=nc)
    to_stdout = out.to_stdout
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
    out.write(report, json_data={**report.to_dict(), **({"latency": lat} if lat else {}),
                                 **({"check": chk.to_dict()} if chk else {})},
              extras={"latency": lat, "check": chk})
