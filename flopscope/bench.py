"""Latency, throughput and peak memory of a real forward, whole-model and per YAML layer.

Timers: :class:`CUDATimer` (``torch.cuda.Event`` pairs, read after ``torch.cuda.synchronize``) and
:class:`CPUTimer` (``time.perf_counter``) share one interface -- ``mark()`` returns a point in time,
``sync()`` waits for queued device work, ``elapsed_ms(a, b)`` reads the time between two marks after a
sync -- so every measurement path is written once and can be tested with a fake CUDA timer.

Whole-model latency: ``warmup`` untimed forwards, a sync, then ``iters`` forwards, each between two marks
and followed by a sync (every sample is one isolated forward: its launch overhead included, no overlap with
the next).  Statistics: median, p10, p90 (linear interpolation between order statistics, numpy's default),
mean, sample standard deviation, CV = std / mean, min, max -- all in milliseconds.

Per-layer latency: the model's own ``forward`` runs unchanged; a forward hook on each YAML layer
(``model.model[i]``) records a mark after the layer, and one mark is taken before the forward, so
layer i's time runs from the mark after layer i-1 to the mark after layer i (its input gathering
included); the layer times of one pass add up exactly to that instrumented pass.  The overhead of
instrumenting (one event record / perf_counter call and one hook call per layer) is reported as the
instrumented pass's median minus the median of plain forwards timed alternately with the instrumented
ones (so both see the same machine load).  The per-layer sum of a pass (= that instrumented pass) is
compared with the plain forwards: ``ratio`` = median instrumented pass / median plain forward, expected
inside :data:`PER_LAYER_FACTOR`.  The sum of the per-layer *medians* (what the table's column adds up to)
is reported too; on a loaded CPU it falls below the whole, because a rare stall (preemption) lands in one
layer per pass and is dropped by that layer's median but not by the whole pass's.
"""
from __future__ import annotations

import contextlib
import math
import os
import platform
import statistics
import sys
import time

import torch

from . import units
from .devices import resolve_device  # noqa: F401  (re-exported: bench.resolve_device)
from .errors import FlopscopeError
from .inputs import parse_batches  # noqa: F401  (re-exported: bench.parse_batches)
from .roofline import DTYPE_BYTES, attach_measured, disagreements, layer_rooflines, resolve_peak, totals

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DEFAULTS = {
    "cuda": {"warmup": 20, "iters": 200, "batch": [1, 8, 32]},
    "cpu": {"warmup": 3, "iters": 20, "batch": [1]},
}
#: sum of per-layer medians / whole-model median is expected inside this band (documented, tested on CPU)
PER_LAYER_FACTOR = 2.0
MAX_ITERS = 100_000

UNITS = units.pick(
    "latency_ms", "throughput_img_s", "peak_memory_bytes", "params_mb", ("flops", "bench.flops"), "bytes",
    "intensity", "bound_ms", "achieved_pct", "gbps", "tflops")


# ----------------------------------------------------------------------------------------------- timers
class CPUTimer:
    kind = "cpu"
    label = "time.perf_counter"

    def mark(self) -> float:
        return time.perf_counter()

    def sync(self) -> None:
        pass

    def elapsed_ms(self, a: float, b: float) -> float:
        return (b - a) * 1e3


class CUDATimer:
    kind = "cuda"
    label = "torch.cuda.Event(enable_timing=True), read after torch.cuda.synchronize()"

    def mark(self):
        e = torch.cuda.Event(enable_timing=True)
        e.record()
        return e

    def sync(self) -> None:
        torch.cuda.synchronize()

    def elapsed_ms(self, a, b) -> float:
        return float(a.elapsed_time(b))


def make_timer(device: str):
    return CUDATimer() if str(device).startswith("cuda") else CPUTimer()


# ------------------------------------------------------------------------------------------------- stats
def percentile(values, q: float) -> float:
    """q-th percentile (0..100) by linear interpolation between order statistics (numpy's default)."""
    s = sorted(values)
    if not s:
        raise ValueError("no samples")
    k = (len(s) - 1) * q / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summarize(samples_ms) -> dict:
    xs = [float(v) for v in samples_ms]
    mean = statistics.fmean(xs)
    std = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return {"n": len(xs), "median": statistics.median(xs), "p10": percentile(xs, 10), "p90": percentile(xs, 90),
            "mean": mean, "std": std, "cv": std / mean if mean > 0 else 0.0, "min": min(xs), "max": max(xs)}


# ----------------------------------------------------------------------------------------------- timing
def time_calls(fn, timer, warmup: int, iters: int) -> list[float]:
    """``iters`` timed calls of ``fn`` after ``warmup`` untimed ones; a sync after each timed call."""
    for _ in range(warmup):
        fn()
    timer.sync()
    pairs = []
    for _ in range(iters):
        a = timer.mark()
        fn()
        b = timer.mark()
        timer.sync()
        pairs.append((a, b))
    return [timer.elapsed_ms(a, b) for a, b in pairs]


@contextlib.contextmanager
def layer_marks(model, timer, marks: list):
    """Forward hooks that append a mark after every YAML layer of ``model`` to ``marks``."""
    handles = [m.register_forward_hook(lambda *_: marks.append(timer.mark())) for m in model.model]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def time_layers(model, x, timer, warmup: int, iters: int) -> dict:
    """Per-layer times of ``model(x)`` (``model.model`` in YAML order), ``iters`` passes after ``warmup``.

    Each instrumented pass is paired with a plain (un-hooked) forward timed just before it, so the
    per-layer sum is compared with whole-model times taken under the same conditions."""
    n = len(model.model)
    passes, plain = [], []
    marks: list = []
    for _ in range(warmup):
        model(x)
    with layer_marks(model, timer, marks):
        for _ in range(warmup):
            marks.clear()
            model(x)
    timer.sync()
    for _ in range(iters):
        a = timer.mark()
        model(x)
        b = timer.mark()
        timer.sync()
        plain.append((a, b))
        with layer_marks(model, timer, marks):
            marks.clear()
            marks.append(timer.mark())
            model(x)
            timer.sync()
        if len(marks) != n + 1:
            raise FlopscopeError(f"per-layer timing saw {len(marks) - 1} layer calls, expected {n}")
        passes.append(list(marks))
    per_layer = [[timer.elapsed_ms(p[i], p[i + 1]) for p in passes] for i in range(n)]
    whole = [timer.elapsed_ms(p[0], p[-1]) for p in passes]
    return {"layers_ms": [statistics.median(v) for v in per_layer],
            "layers_p90_ms": [percentile(v, 90) for v in per_layer],
            "instrumented_ms": summarize(whole), "plain_ms": summarize([timer.elapsed_ms(a, b) for a, b in plain])}


# ------------------------------------------------------------------------------------------ environment
def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def environment(device: str, dtype: str, channels_last: bool, cudnn_benchmark: bool | None, cuda_graph: bool,
                timer) -> dict:
    cuda = device.startswith("cuda")
    env = {
        "device": "cuda" if cuda else "cpu",
        "device_name": torch.cuda.get_device_name(torch.device(device)) if cuda else _cpu_name(),
        "label": None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "dtype": dtype,
        "cudnn_benchmark": bool(cudnn_benchmark) if cuda else None,
        "allow_tf32": {"cudnn": bool(torch.backends.cudnn.allow_tf32),
                       "matmul": bool(torch.backends.cuda.matmul.allow_tf32)} if cuda else None,
        "channels_last": channels_last,
        "cuda_graph": cuda_graph,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "timer": timer.label,
    }
    env["label"] = (f"CUDA {env['device_name']}" if cuda
                    else f"CPU ({env['threads']} thread{'s' if env['threads'] != 1 else ''}; {env['device_name']})")
    return env


def _reset_peak_memory(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(torch.device(device))


def _peak_memory(device: str) -> tuple[int | None, str]:
    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated(torch.device(device))), "torch.cuda.max_memory_allocated"
    try:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(kb * (1 if sys.platform == "darwin" else 1024)), "process peak RSS (ru_maxrss)"
    except (ImportError, OSError):
        return None, "unavailable"


# ------------------------------------------------------------------------------------------------ options
def _count(v, name: str, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= MAX_ITERS:
        raise FlopscopeError(f"--{name} must be an integer from {lo} to {MAX_ITERS}, got {v!r}")
    return v


# ------------------------------------------------------------------------------------------------- placing
def _tensor_device(device: str) -> str:
    """Where tensors go (a seam for tests that fake CUDA on a CPU-only machine)."""
    return device


def _place(model, device: str, dtype: str, channels_last: bool):
    model = model.to(device=_tensor_device(device), dtype=DTYPES[dtype])
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _input(shape, device: str, dtype: str, channels_last: bool):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=g).to(device=_tensor_device(device), dtype=DTYPES[dtype])
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _graphed(model, x, warmup: int):
    """Capture one forward in a CUDA graph (after warm-up on a side stream); returns its replay."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(max(warmup, 3)):
            model(x)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(g):
            model(x)
    except Exception as e:  # noqa: BLE001 - capture failures become one clear line
        raise FlopscopeError(f"--cuda-graph: capturing the forward failed: {type(e).__name__}: "
                             f"{str(e).splitlines()[0][:200]}") from None
    return g.replay


# -------------------------------------------------------------------------------------------------- bench
def _on_cpu(built, fuse: bool):
    """The built model with real weights on CPU: itself when it already has them, else its config built there."""
    from .builder import build_model

    if next(built.parameters(), torch.empty(0)).device.type == "cpu":
        from .fuse import fused_copy, is_fused

        if fuse and not is_fused(built):

            return fused_copy(built)
        import copy

        return copy.deepcopy(built)  # placed on the device and dtype below: the caller's model stays as it is
    return build_model(built.config, device="cpu", fuse=fuse)


def run_bench(cfg, *, img=640, batch=None, device: str | None = "auto", dtype: str = "fp32",
              channels_last: bool = False, warmup: int | None = None, iters: int | None = None,
              cudnn_benchmark: bool = True, cuda_graph: bool = False, per_layer: bool = False,
              gpu: str | None = None, peak_tflops: float | None = None, peak_gbps: float | None = None,
              nc: int | None = None, threads: int | None = None, progress=None,
              fuse: bool = False) -> dict:  # a BenchResult
    """Measure ``cfg`` (a config name / path / dict, or a built :class:`~flopscope.builder.DetectionModel`: it is
    counted as given and materialised once on the device) and return the JSON-ready record (see docs/bench.md)."""
    from .builder import DetectionModel, build_model
    from .memory import check_fits
    from .report import profile

    if dtype not in DTYPES:
        raise FlopscopeError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    dev = resolve_device(device)
    kind = "cuda" if dev.startswith("cuda") else "cpu"
    if cuda_graph and kind != "cuda":
        raise FlopscopeError("--cuda-graph needs --device cuda")
    if threads is not None:
        _count(threads, "threads", 1)
    notes: list[str] = []
    defaults = DEFAULTS[kind]
    used = [k for k, v in (("warmup", warmup), ("iters", iters), ("batch", batch)) if v is None]
    warmup = _count(defaults["warmup"] if warmup is None else warmup, "warmup", 0)
    iters = _count(defaults["iters"] if iters is None else iters, "iters", 1)
    batches = parse_batches(defaults["batch"] if batch is None else batch)
    if used:
        def show(k):
            v = defaults[k]
            return f"{k} {','.join(map(str, v)) if k == 'batch' else v}"

        c, g = DEFAULTS["cpu"], DEFAULTS["cuda"]
        notes.append(f"{kind.upper()} defaults used: {', '.join(show(k) for k in used)} (CPU: warmup {c['warmup']}, "
                     f"iters {c['iters']}, batch {','.join(map(str, c['batch']))}; CUDA: warmup {g['warmup']}, iters "
                     f"{g['iters']}, batch {','.join(map(str, g['batch']))}); set --warmup/--iters/--batch to change")
    if kind == "cpu" and dtype == "fp16":
        notes.append("fp16 on CPU runs slow, partly emulated kernels: not representative of fp16 on a GPU")

    built = cfg if isinstance(cfg, DetectionModel) else build_model(cfg, nc=nc)  # built once, counted per batch
    base = profile(built, img=img, batch=1, fuse=fuse)
    notes.extend(base.notes)
    hw = tuple(base.img)

    saved_threads = torch.get_num_threads()
    saved_bench = torch.backends.cudnn.benchmark
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        if kind == "cuda":
            torch.backends.cudnn.benchmark = bool(cudnn_benchmark)
        timer = make_timer(dev)
        env = environment(dev, dtype, channels_last, cudnn_benchmark, cuda_graph, timer)
        peak_notes: list[str] = []
        peak = resolve_peak(dtype, gpu=gpu, detected=env["device_name"] if kind == "cuda" else None,
                            peak_tflops=peak_tflops, peak_gbps=peak_gbps,
                            allow_tf32=bool(torch.backends.cudnn.allow_tf32), notes=peak_notes)
        notes.extend(peak_notes)
        # achieved % only when the peak describes the device measured
        compare = peak is not None and (kind == "cuda" or (gpu is None and peak.precision == "given"))
        if peak is not None and not compare:
            notes.append(f"roofline bound is for {peak.name}, measured on {env['label']}: achieved % not computed")
        if peak is not None and kind == "cuda" and gpu:
            from .roofline import detect_device, find_device

            seen = detect_device(env["device_name"])
            if seen is None or seen.name != find_device(gpu).name:
                notes.append(f"achieved % is against --gpu {gpu} ({peak.name}), not the measured device "
                             f"{env['device_name']}")

        reports = {b: profile(built, img=img, batch=b, fuse=fuse) for b in batches}
        nbytes = DTYPE_BYTES[dtype]
        for b in sorted(batches, reverse=True)[:1]:
            check_fits(reports[b], dev, nbytes)
        model = _on_cpu(built, fuse)
        ch = model.ch
        model = _place(model, dev, dtype, channels_last)
        if per_layer and cuda_graph:
            notes.append("per-layer times are measured eagerly (hooks do not run inside a CUDA graph)")

        runs = []
        for b in batches:
            rep = reports[b]
            est = check_fits(rep, dev, nbytes)
            if progress:
                progress(f"batch {b}: warm-up {warmup}, {iters} iterations on {env['label']}")
            x = _input((b, ch, hw[0], hw[1]), dev, dtype, channels_last)
            with torch.inference_mode():
                _reset_peak_memory(dev)
                fn = _graphed(model, x, warmup) if cuda_graph else (lambda: model(x))
                samples = time_calls(fn, timer, warmup, iters)
                mem, mem_src = _peak_memory(dev)
                lat = summarize(samples)
                rows = layer_rooflines(rep, dtype, peak, ch)
                pl = None
                if per_layer:
                    if progress:
                        progress(f"batch {b}: per-layer timing, {iters} passes")
                    tl = time_layers(model, x, timer, warmup, iters)
                    attach_measured(rows, tl["layers_ms"])
                    s = sum(tl["layers_ms"])
                    whole = tl["plain_ms"]["median"]
                    pass_sum = tl["instrumented_ms"]["median"]  # median over passes of the sum of layer times
                    ratio = pass_sum / whole if whole > 0 else None
                    over = pass_sum - whole
                    pl = {"sum_ms": s, "pass_sum_ms": pass_sum, "whole_ms": whole, "ratio": ratio,
                          "sum_of_medians_ratio": s / whole if whole > 0 else None, "factor": PER_LAYER_FACTOR,
                          "within_factor": ratio is not None and 1 / PER_LAYER_FACTOR <= ratio <= PER_LAYER_FACTOR,
                          "plain_ms": tl["plain_ms"], "instrumented_ms": tl["instrumented_ms"], "overhead_ms": over,
                          "overhead_ms_per_layer": over / max(len(rows), 1),
                          "layers_p90_ms": tl["layers_p90_ms"]}
            tot = totals(rows)
            if not compare:
                for r in rows:
                    r["achieved_pct"] = None
            bound_ms = tot["bound_ms"]
            runs.append({
                "batch": b, "latency_ms": lat, "samples_ms": samples,
                "throughput_img_s": b * 1e3 / lat["median"] if lat["median"] > 0 else None,
                "peak_memory_bytes": mem, "peak_memory_source": mem_src, "memory_estimate_bytes": est,
                "roofline": {**tot, "achieved_pct": 100.0 * bound_ms / lat["median"]
                             if compare and bound_ms is not None and lat["median"] > 0 else None, "layers": rows},
                "per_layer": pl, "disagreements": disagreements(rows),
            })
            del x, fn  # a captured graph holds its memory pool until released
    finally:
        torch.set_num_threads(saved_threads)
        torch.backends.cudnn.benchmark = saved_bench

    from .output import BenchResult  # the JSON dict itself, with to_dict() / rows() and the counted report

    return BenchResult({
        "model": base.model, "img": list(hw), "device": kind, "dtype": dtype, "channels_last": channels_last,
        "cuda_graph": cuda_graph, "cudnn_benchmark": env["cudnn_benchmark"], "warmup": warmup, "iters": iters,
        "batches": batches, "defaults_used": used, "environment": env,
        "params": base.params, "params_mb": base.params * nbytes / 1e6,
        "per_image": {"macs": base.macs, "flops": base.flops, "elementwise_flops": base.elementwise_flops},
        "peak": peak.to_dict() if peak is not None else None, "runs": runs, "units": UNITS, "notes": notes,
        "fused": base.fused,
    }, report=base)


def latency_lines(result: dict) -> list[str]:
    """A short text summary (used by ``flopscope model --latency`` and after the bench table)."""
    env = result["environment"]
    lines = [f"latency on {env['label']}, {result['dtype']}, torch {env['torch']}"
             + (f", CUDA {env['cuda']}, cuDNN {env['cudnn']}, cudnn.benchmark {env['cudnn_benchmark']}"
                if result["device"] == "cuda" else "")
             + f", channels_last {'on' if result['channels_last'] else 'off'}"
             + (", CUDA graph" if result["cuda_graph"] else "")
             + f"; warm-up {result['warmup']}, {result['iters']} iterations"]
    for r in result["runs"]:
        lat = r["latency_ms"]
        line = (f"batch {r['batch']}: median {lat['median']:.3f} ms (p10 {lat['p10']:.3f}, p90 {lat['p90']:.3f}, "
                f"CV {100 * lat['cv']:.1f}%), {r['throughput_img_s']:.1f} img/s")
        if r["peak_memory_bytes"] is not None:
            line += f", peak memory {r['peak_memory_bytes'] / 2**20:.1f} MiB ({r['peak_memory_source']})"
        rf = r["roofline"]
        if rf["bound_ms"] is not None:
            line += f"; roofline bound {rf['bound_ms']:.3f} ms"
            if rf["achieved_pct"] is not None:
                line += f" ({rf['achieved_pct']:.1f}% of bound achieved)"
        lines.append(line)
    return lines
