"""``flopscope bench CFG``: measured latency, throughput and peak memory, per-layer times and the roofline."""
from __future__ import annotations

import sys
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from ..bench import run_bench
from ..cli import app, command
from ..options import FUSE, IMG, NC
from ..output import CSV, HTML, JSON, MD, Outputs

LAYER_MARK = "≠"  # share of time >= 2x share of FLOPs


def _f(v, fmt: str = ".3f", none: str = "-") -> str:
    return none if v is None else format(v, fmt)


def header_lines(res: dict) -> list[str]:
    env = res["environment"]
    pi = res["per_image"]
    lines = [
        f"{res['model']} @ {res['img'][0]}x{res['img'][1]} on {env['label']}",
        f"environment: torch {env['torch']}, CUDA {env['cuda'] or '-'}, cuDNN {env['cudnn'] or '-'}, "
        f"dtype {res['dtype']}, cudnn.benchmark {_onoff(env['cudnn_benchmark'])}, "
        f"channels_last {_onoff(res['channels_last'])}, CUDA graph {_onoff(res['cuda_graph'])}, "
        f"threads {env['threads']}, timer {env['timer']}",
        f"warm-up {res['warmup']}, {res['iters']} timed iterations, batch {','.join(map(str, res['batches']))}",
        f"{res['params']:,} params ({res['params_mb']:.2f} MB at {res['dtype']}), {pi['flops'] / 1e9:.3f} GFLOPs "
        f"+ {pi['elementwise_flops'] / 1e9:.3f} element-wise GFLOPs per image",
    ]
    pk = res["peak"]
    if pk:
        lines.append(f"roofline peak: {pk['name']} {pk['tflops']:g} TFLOP/s ({pk['precision']}, dense), "
                     f"{pk['gbps']:g} GB/s, ridge {pk['ridge_flop_per_byte']:.1f} FLOP/B; source: {pk['source']}")
        lines.extend(f"  {n}" for n in pk["notes"])
    return lines


def _onoff(v) -> str:
    return "-" if v is None else ("on" if v else "off")


def summary_table(res: dict) -> Table:
    t = Table(title="whole-model latency", header_style="bold")
    for col in ("batch", "median ms", "p10 ms", "p90 ms", "CV %", "img/s", "peak mem MiB", "bound ms", "% of bound"):
        t.add_column(col, justify="right", no_wrap=True)
    for r in res["runs"]:
        lat, rf = r["latency_ms"], r["roofline"]
        mem = r["peak_memory_bytes"]
        t.add_row(str(r["batch"]), f"{lat['median']:.3f}", f"{lat['p10']:.3f}", f"{lat['p90']:.3f}",
                  f"{100 * lat['cv']:.1f}", _f(r["throughput_img_s"], ".1f"), _f(mem / 2**20 if mem else None, ".1f"),
                  _f(rf["bound_ms"], ".3f"), _f(rf["achieved_pct"], ".1f"))
    return t


def layer_table(res: dict, run: dict) -> Table:
    measured = run["per_layer"] is not None
    t = Table(title=f"per layer, batch {run['batch']}", header_style="bold")
    cols = ["idx", "module", "GFLOPs", "% FLOPs", "MB moved", "FLOP/B", "bound", "bound µs"]
    if measured:
        cols += ["time µs", "% time", "% of bound"]
    cols.append(LAYER_MARK)
    for c in cols:
        t.add_column(c, justify="left" if c in ("module", "bound") else "right", no_wrap=True)
    flagged = {d["index"] for d in run["disagreements"]}
    for row in run["roofline"]["layers"]:
        cells = [str(row["index"]), row["module"], f"{row['flops'] / 1e9:.3f}", f"{row['flops_pct']:.1f}",
                 f"{row['bytes'] / 1e6:.2f}", _f(row["intensity"], ".1f"), row["bound"] or "-",
                 _f(row["bound_ms"] * 1e3 if row["bound_ms"] is not None else None, ".1f")]
        if measured:
            cells += [f"{row['measured_ms'] * 1e3:.1f}", f"{row['latency_pct']:.1f}", _f(row["achieved_pct"], ".1f")]
        cells.append(LAYER_MARK if row["index"] in flagged else "")
        t.add_row(*cells)
    return t


def per_layer_lines(run: dict) -> list[str]:
    lines = []
    pl = run["per_layer"]
    if pl:
        lines.append(
            f"batch {run['batch']}: per-layer sum (median pass) {pl['pass_sum_ms']:.3f} ms vs whole-model "
            f"{pl['whole_ms']:.3f} ms (plain forwards timed alternately): ratio {pl['ratio']:.2f}, expected within "
            f"a factor {pl['factor']:g}{'' if pl['within_factor'] else ' -- OUTSIDE'}; instrumenting costs "
            f"{pl['overhead_ms']:+.3f} ms ({pl['overhead_ms_per_layer'] * 1e3:+.1f} µs per layer); sum of per-layer "
            f"medians {pl['sum_ms']:.3f} ms")
    if run["disagreements"]:
        src = run["disagreements"][0]["time_from"]
        items = "; ".join(f"{d['index']} {d['module']} {d['flops_pct']:.1f}% FLOPs / {d['time_pct']:.1f}% time "
                          f"({_f(d['intensity'], '.1f')} FLOP/B)" for d in run["disagreements"])
        lines.append(f"{LAYER_MARK} batch {run['batch']}: share of time ({src}) >= 2x share of FLOPs: {items}")
    return lines


def print_bench(res: dict, per_layer: bool, console: Console | None = None) -> None:
    if console is None:
        console = Console() if sys.stdout.isatty() else Console(width=200)
    for line in header_lines(res):
        console.print(line, highlight=False, markup=False)
    console.print(summary_table(res))
    for run in res["runs"]:
        if per_layer:
            console.print(layer_table(res, run))
        for line in per_layer_lines(run):
            console.print(line, highlight=False, markup=False)
    for n in res["notes"]:
        console.print(n, highlight=False, markup=False)


@app.command("bench", epilog="Example: flopscope bench yolov5s --img 640 --device cuda --dtype fp16 --batch 1,32")
@command
def bench_cmd(
    cfg: str = typer.Argument(..., help="Bundled config name (yolov5s) or a YAML path."),
    img: str = IMG,
    batch: Optional[str] = typer.Option(None, "--batch", help="Batch sizes, comma-separated (default: 1,8,32 on "
                                                             "CUDA, 1 on CPU)."),
    device: str = typer.Option("auto", "--device", help="cuda, cuda:N, cpu or auto (cuda when available)."),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32, fp16 or bf16 (weights and input)."),
    channels_last: bool = typer.Option(False, "--channels-last", help="NHWC memory format for weights and input."),
    warmup: Optional[int] = typer.Option(None, "--warmup", help="Untimed forwards first (default 20 CUDA, 3 CPU)."),
    iters: Optional[int] = typer.Option(None, "--iters", help="Timed forwards (default 200 CUDA, 20 CPU)."),
    cudnn_benchmark: bool = typer.Option(True, "--cudnn-benchmark/--no-cudnn-benchmark",
                                         help="torch.backends.cudnn.benchmark during the run (CUDA)."),
    cuda_graph: bool = typer.Option(False, "--cuda-graph", help="Time replays of one captured CUDA graph."),
    per_layer: bool = typer.Option(False, "--per-layer", help="Also time each YAML layer (events around each)."),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="Device-table entry for the roofline (H100, A100, T4, "
                                                          "...; default: the detected CUDA device)."),
    peak_tflops: Optional[float] = typer.Option(None, "--peak-tflops", help="Peak dense TFLOP/s for the roofline."),
    peak_gbps: Optional[float] = typer.Option(None, "--peak-gbps", help="Peak memory GB/s for the roofline."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads (default: torch's)."),
    nc: Optional[int] = NC,
    fuse: bool = FUSE,
    json_out: Optional[str] = JSON(),
    csv_out: Optional[str] = CSV("Write the whole-model latency per batch as CSV to FILE ('-' = stdout only)."),
    md_out: Optional[str] = MD("Write the whole-model latency per batch as Markdown to FILE ('-' = stdout only)."),
    html_out: Optional[str] = HTML("Write a self-contained HTML report (latency and roofline charts, per-layer "
                                   "table) to FILE ('-' = stdout only)."),
):
    """Measure CFG: latency (median/p10/p90/CV), throughput, peak memory, per-layer times and the roofline."""
    out = Outputs(json=json_out, csv=csv_out, md=md_out, html=html_out)
    to_stdout = out.to_stdout
    progress = None
    if sys.stderr.isatty() and not to_stdout:
        def progress(msg):
            sys.stderr.write(f"flopscope: {msg}\n")
    res = run_bench(cfg, img=img, batch=batch, device=device, dtype=dtype.lower(), channels_last=channels_last,
                    warmup=warmup, iters=iters, cudnn_benchmark=cudnn_benchmark, cuda_graph=cuda_graph,
                    per_layer=per_layer, gpu=gpu, peak_tflops=peak_tflops, peak_gbps=peak_gbps, nc=nc,
                    threads=threads, progress=progress, fuse=fuse)
    out.show(print_bench, res, per_layer)
    out.write(res)

