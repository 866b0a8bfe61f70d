"""``flopscope check CFG``: our per-layer MACs against fvcore, thop, ptflops and FlopCounterMode, every
difference explained by a documented rule (docs/crosscheck.md) or shown as unexplained."""
from __future__ import annotations

from typing import Optional

import typer

from ..cli import app, command
from ..options import IMG, NC, config_options

COUNTERS = typer.Option("fvcore,thop,ptflops,fcm", "--counters",
                        help="Comma-separated counters: fvcore, thop, ptflops (both backends), ptflops-aten, "
                             "ptflops-pytorch, fcm (FlopCounterMode), all.")
DEVICE = typer.Option("cpu", "--device", help="Where the real forwards run: cpu or cuda.")


def run_check(cfg, img, counters=None, device="cpu", nc=None, json_out: Optional[str] = None, show: bool = True,
              extra_json: Optional[dict] = None):
    """Run the cross-check with a progress bar; print it and/or write its JSON ('-' = stdout only)."""
    from ..crosscheck import ProgressBar, crosscheck, print_check
    from ..render import to_json, write_output

    with ProgressBar() as bar:
        result = crosscheck(cfg, img=img, counters=counters, device=device, nc=nc, progress=bar)
    if show and json_out != "-":
        print_check(result)
    if json_out:
        data = result.to_dict() if extra_json is None else {**extra_json, "check": result.to_dict()}
        write_output(to_json(data), json_out)
    return result


@app.command("check", epilog="Example: flopscope check yolov5s --img 640 --counters fvcore,thop,ptflops,fcm "
                             "--json check.json")
@command
@config_options
def check_cmd(
    cfg: str = typer.Argument(..., help="Bundled config name (yolov5s, yolov5s.yaml) or a YAML path."),
    img: str = IMG,
    counters: str = COUNTERS,
    device: str = DEVICE,
    nc: Optional[int] = NC,
    json_out: Optional[str] = typer.Option(None, "--json", help="Write the JSON record (every column and reason) "
                                                                 "to FILE ('-' = stdout only)."),
):
    """Run fvcore, thop, ptflops and FlopCounterMode on one real forward each (batch 1) and explain, layer by
    layer and to the MAC, how each differs from flopscope's count; plus what YOLOv5's model_info prints."""
    run_check(cfg, img, counters, device, nc, json_out)
