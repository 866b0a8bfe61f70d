"""``flopscope model CFG``: the per-layer report of a config."""
from __future__ import annotations

from typing import Optional

import typer

from ..cli import app, command
from ..errors import FlopscopeError
from ..options import BATCH, FUSE, IMG, NC, config_options
from ..report import profile
from ..output import CSV, HTML, JSON, MD, Outputs
from ..render import print_report


@app.command("model", epilog="Example: flopscope model yolov5s --img 640 --json report.json; "
                              "flopscope model yolov5s --fuse (deploy model, 7,225,885 params); "
                              "flopscope model yolov5s --train --freeze 10 --optimizer adamw --gpu-mem 24GiB; "
                              "flopscope model mynet.py:ResNet18 --input 1,3,224,224 --depth 2")
@command
@config_options
def model_cmd(
    cfg: str = typer.Argument(..., help="Bundled config name (yolov5s, yolov5s.yaml), a YAML path, or FILE.py:NAME "
                                        "-- a module class or zero-argument factory in your file (the file is run, "
                                        "as a --plugin is)."),
    inputs: Optional[list[str]] = typer.Option(None, "--input", help="FILE.py:NAME only: an input shape such as "
                                               "1,3,640,640; repeat for several positional inputs (default: "
                                               "--batch x C x --img, C from the first conv)."),
    depth: int = typer.Option(1, "--depth", help="FILE.py:NAME only: rows of the per-module tree down to this depth "
                                                 "(YOLO-style model objects get one row per layer)."),
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
    target = user_module(cfg) if is_module_ref(cfg) else cfg
    if inputs and target is cfg:
        raise FlopscopeError("--input is for FILE.py:NAME; a config takes --img and --batch")
    if target is not cfg and (latency or check):
        raise FlopscopeError("--latency / --check take a config, not FILE.py:NAME")
    if target is cfg:
        from ..builder import build_model

        target = build_model(cfg, nc=nc)  # built once: counted here, handed to --latency and --check
    report = profile(target, inputs=parse_input_shapes(inputs), depth=depth, img=img, batch=batch, nc=nc, fuse=fuse,
                     train=train, freeze=freeze, amp=amp, optimizer=optimizer, gpu_mem=gpu_mem)
    to_stdout = out.to_stdout
    if not to_stdout:
        print_report(report)
        if report.train is not None:
            from ..train import print_train

            print_train(report)
    lat = None
    if latency:
        from ..bench import latency_lines, run_bench

        lat = run_bench(target, img=img, batch=batch, fuse=fuse)
        if not to_stdout:
            for line in latency_lines(lat) + lat["notes"]:
                print(line)
    chk = None
    if check:
        from .check import run_check

        chk = run_check(target, img, show=not to_stdout, fuse=fuse)
    out.write(report, json_data={**report.to_dict(), **({"latency": lat} if lat else {}),
                                 **({"check": chk.to_dict()} if chk else {})},
              extras={"latency": lat, "check": chk})


def is_module_ref(cfg: str) -> bool:
    """``FILE.py:NAME`` (a module class or factory in the user's file)."""
    path, sep, name = cfg.rpartition(":")
    return bool(sep) and path.endswith(".py") and bool(name)


def user_module(ref: str):
    """Load FILE.py like a plugin and make NAME: a zero-argument class or factory returning an nn.Module
    (built on the meta device where its constructor allows, else on CPU)."""
    import contextlib

    import torch
    import torch.nn as nn

    from ..builder import skip_init
    from ..plugins import load_plugins

    path, _, name = ref.rpartition(":")
    import io

    plugin = load_plugins([path], stream=io.StringIO())[0]  # warnings about YAML channel rules do not apply here
    obj = plugin.module.__dict__.get(name)
    if obj is None:
        from ..errors import suggestion

        found = [k for k, v in plugin.module.__dict__.items() if callable(v) and not k.startswith("_")]
        raise FlopscopeError(f"{path}: defines no {name!r}{suggestion(name, found)}")
    if not callable(obj):
        raise FlopscopeError(f"{path}:{name} is a {type(obj).__name__}, not a module class or factory")
    last = None
    for ctx in ((lambda: torch.device("meta")), (lambda: contextlib.nullcontext())):
        try:
            with ctx(), (skip_init() if last is None else contextlib.nullcontext()):
                m = obj()
            break
        except TypeError as e:
            raise FlopscopeError(f"{path}:{name}() cannot be called without arguments ({e}); define a zero-argument "
                                 f"factory, e.g. def make(): return {name}(...)") from None
        except Exception as e:  # noqa: BLE001 - retried on CPU, then reported
            last = e
    else:
        raise FlopscopeError(f"{path}:{name}() failed: {type(last).__name__}: {str(last)[:200]}")
    if not isinstance(m, nn.Module):
        raise FlopscopeError(f"{path}:{name}() returned a {type(m).__name__}, not a torch.nn.Module")
    return m


def parse_input_shapes(inputs):
    """['1,3,640,640', '1,77'] -> [(1, 3, 640, 640), (1, 77)]; None when not given."""
    if not inputs:
        return None
    shapes = []
    for s in inputs:
        try:
            shape = tuple(int(v) for v in s.replace("x", ",").split(",") if v.strip())
        except ValueError:
            shape = ()
        if not shape or any(v <= 0 for v in shape):
            raise FlopscopeError(f"--input must be a shape of positive integers such as 1,3,640,640, got {s!r}")
        shapes.append(shape)
    return shapes
