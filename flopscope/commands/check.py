"""``flopscope check CFG``: our per-layer MACs against fvcore, thop, ptflops and FlopCounterMode, every
difference explained by a documented rule (docs/crosscheck.md) or shown as unexplained."""
from __future__ import annotations

from typing import Optional

import typer

from ..cli import app, command
from ..options import FUSE, IMG, NC
from ..output import HTML, JSON, Outputs

COUNTERS = typer.Option("fvcore,thop,ptflops,fcm", "--counters",
                        help="Comma-separated counters: fvcore, thop, ptflops (both backends), ptflops-aten, "
                             "ptflops-pytorch, fcm (FlopCounterMode), all.")
DEVICE = typer.Option("cpu", "--device", help="Where the real forwards run: cpu (default), cuda, cuda:N or auto "
                                             "(cuda when available); the same parser as bench.")


def run_check(cfg, img, counters=None, device="cpu", nc=None, json_out: Optional[str] = None, show: bool = True,
              extra_json: Optional[dict] = None, html_out: Optional[str] = None,
              fuse: bool = False):
    """Run the cross-check with a progress bar; print it and/or write its JSON / HTML ('-' = stdout only)."""
    from ..crosscheck import ProgressBar, crosscheck, print_check

    out = Outputs(json=json_out, html=html_out)
    with ProgressBar() as bar:
        result = crosscheck(cfg, img=img, counters=counters, device=device, nc=nc, progress=bar, fuse=fuse)
    if show:
        out.show(print_check, result)
    out.write(result, json_data=None if extra_json is None else {**extra_json, "check": result.to_dict()})
    return result


@app.command("check", epilog="Example: flopscope check yolov5s --img 640 --counters fvcore,thop,ptflops,fcm "
                             "--json check.json")
@command
def check_cmd(
    cfg: str = typer.Argument(..., help="Bundled config name (yolov5s, yolov5s.yaml) or a YAML path."),
    img: str = IMG,
    counters: str = COUNTERS,
    device: str = DEVICE,
    nc: Optional[int] = NC,
    fuse: bool = FUSE,
    json_out: Optional[str] = JSON("Write the JSON record (every column and reason) to FILE ('-' = stdout only)."),
    html_out: Optional[str] = HTML("Write a self-contained HTML report (difference per counter with its reasons, "
                                   "per-layer table, bars, treemap) to FILE ('-' = stdout only)."),
):
    """Run fvcore, thop, ptflops and FlopCounterMode on one real forward each (batch 1) and explain, layer by
    layer and to the MAC, how each differs from flopscope's count; plus what YOLOv5's model_info prints."""
    run_check(cfg, img, counters, device, nc, json_out, html_out=html_out, fuse=fuse)
