"""``flopscope model CFG``: the per-layer report of a config."""
from __future__ import annotations

from typing import Optional

import typer

from ..cli import app, command
from ..options import BATCH, FUSE, IMG, NC, config_options
from ..report import profile
from ..output import CSV, HTML, JSON, MD, Outputs
from ..render import print_report


@app.command("model", epilog="Example: flopscope model yolov5s --img 640 --json report.json; "
                              "flopscope model yolov5s --fuse (deploy model, 7,225,885 params); "
                              "flopscope model yolov5s --train --freeze 10 --optimizer adamw --gpu-mem 24GiB")
@command
@config_options
def model_cmd(
    cfg: str = typer.Argument(..., help="Bundled config name (yolov5s, yolov5s.yaml) or a YAML path."),
    img: str = IMG,
    batch: int = BATCH,
    nc: Optional[int] = NC,
    fuse: bool = FUSE,
    train: bool = typer.Option(False, "--train", help="Also count training: backward MACs/FLOPs per layer (grad-input "
                                                      "+ grad-weight), forward+backward, activation memory saved for "
                                                      "backward, params + grads + optimizer state (meta device)."),
    freeze: int = typer.Option(0, "--freeze", help="With --train: freeze layers 0..N-1 as YOLOv5's --freeze N."),
    amp: bool = typer.Option(False, "--amp", help="With --train: activations as fp16 autocast saves them."),
    optimizer: str = typer.Option("sgd", "--optimizer", help="With --train: sgd (momentum: 1 state) or adamw (2)."),
    gpu_mem: Optional[str] = typer.Option(None, "--gpu-mem", help="With --train: estimate the largest batch that "
                                                                  "fits this much GPU memory, e.g. 24GiB."),
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
    report = profile(cfg, img=img, batch=batch, nc=nc, fuse=fuse, train=train, freeze=freeze, amp=amp,
                     optimizer=optimizer, gpu_mem=gpu_mem)
    to_stdout = out.to_stdout
    if not to_stdout:
        print_report(report)
        if report.train is not None:
            from ..train import print_train

            print_train(report)
    lat = None
    if latency:
        from ..bench import latency_lines, run_bench

        lat = run_bench(cfg, img=img, batch=batch, nc=nc, fuse=fuse)
        if not to_stdout:
            for line in latency_lines(lat) + lat["notes"]:
                print(line)
    chk = None
    if check:
        from .check import run_check

        chk = run_check(cfg, img, nc=nc, show=not to_stdout, fuse=fuse)
    out.write(report, json_data={**report.to_dict(), **({"latency": lat} if lat else {}),
                                 **({"check": chk.to_dict()} if chk else {})},
              extras={"latency": lat, "check": chk})
