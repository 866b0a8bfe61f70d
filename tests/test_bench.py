"""`flopscope bench` / `flopscope.bench` / `flopscope.roofline`: CPU timing sanity, the CUDA path with fake
events, CUDA-unavailable errors, and roofline figures against hand calculations."""
from __future__ import annotations

import json

import pytest
import torch

from flopscope import bench, roofline
from flopscope.errors import FlopscopeError
from flopscope.report import profile

from cli_helpers import run_subprocess


def run(*args, cwd=None):
    # one torch thread: CI cores are shared, and a multi-threaded forward on a loaded machine waits for the
    # slowest core (timings become 10x slower and noisy)
    return run_subprocess(*args, cwd=cwd, threads=1)


RESULT_KEYS = {"model", "img", "device", "dtype", "channels_last", "cuda_graph", "cudnn_benchmark", "warmup", "iters",
               "batches", "environment", "params", "params_mb", "per_image", "peak", "runs", "units", "notes"}
RUN_KEYS = {"batch", "latency_ms", "samples_ms", "throughput_img_s", "peak_memory_bytes", "peak_memory_source",
            "memory_estimate_bytes", "roofline", "per_layer", "disagreements"}
STAT_KEYS = {"n", "median", "p10", "p90", "mean", "std", "cv", "min", "max"}
ENV_KEYS = {"device", "device_name", "label", "torch", "cuda", "cudnn", "dtype", "cudnn_benchmark", "channels_last",
            "cuda_graph", "threads", "timer"}
LAYER_KEYS = {"index", "module", "mac_flops", "elementwise_flops", "flops", "bytes_in", "bytes_out", "bytes_weights",
              "bytes", "intensity", "compute_ms", "memory_ms", "bound_ms", "bound", "measured_ms", "latency_pct",
              "achieved_pct", "flops_pct", "bound_pct"}


# ------------------------------------------------------------------------------------------ CPU, real timing
@pytest.fixture(scope="module")
def cpu_result():
    return bench.run_bench("yolov5n", img=64, batch="1,2", device="cpu", warmup=2, iters=12, per_layer=True, threads=1)


def test_cpu_bench_sanity(cpu_result):
    res = cpu_result
    assert RESULT_KEYS <= set(res)
    assert ENV_KEYS <= set(res["environment"])
    assert res["device"] == "cpu" and res["environment"]["label"].startswith("CPU (")
    assert res["environment"]["threads"] >= 1 and res["environment"]["torch"] == torch.__version__
    assert res["params"] == 1_872_157 and res["params_mb"] == pytest.approx(1_872_157 * 4 / 1e6)
    assert [r["batch"] for r in res["runs"]] == [1, 2]
    for r in res["runs"]:
        assert RUN_KEYS <= set(r)
        lat = r["latency_ms"]
        assert STAT_KEYS <= set(lat) and lat["n"] == 12 == len(r["samples_ms"])
        assert 0 < lat["min"] <= lat["p10"] <= lat["median"] <= lat["p90"] <= lat["max"]
        assert lat["cv"] >= 0
        assert r["throughput_img_s"] == pytest.approx(r["batch"] * 1e3 / lat["median"]) and r["throughput_img_s"] > 0
        assert r["peak_memory_bytes"] > 0
        layers = r["roofline"]["layers"]
        assert len(layers) == 25 and LAYER_KEYS <= set(layers[0])
        assert r["roofline"]["bound_ms"] is None  # CPU without --peak-* has no bound
        # per-layer: every layer timed, the sum within the documented factor of the whole-model median
        pl = r["per_layer"]
        assert all(row["measured_ms"] > 0 for row in layers)
        assert pl["sum_ms"] == pytest.approx(sum(row["measured_ms"] for row in layers))
        assert pl["pass_sum_ms"] == pl["instrumented_ms"]["median"] and pl["whole_ms"] == pl["plain_ms"]["median"]
        assert 1 / bench.PER_LAYER_FACTOR <= pl["ratio"] <= bench.PER_LAYER_FACTOR, pl
        assert pl["within_factor"]
        assert sum(row["latency_pct"] for row in layers) == pytest.approx(100.0)
    json.dumps(res)  # JSON-ready


def test_cpu_defaults_are_small_and_printed(monkeypatch):
    seen = {}

    def fake_time_calls(fn, timer, warmup, iters):
        seen.update(warmup=warmup, iters=iters)
        fn()
        return [1.0] * iters

    monkeypatch.setattr(bench, "time_calls", fake_time_calls)
    res = bench.run_bench("yolov5n", img=64, device="cpu", threads=1)
    assert (seen["warmup"], seen["iters"]) == (bench.DEFAULTS["cpu"]["warmup"], bench.DEFAULTS["cpu"]["iters"])
    assert res["batches"] == [1] and res["iters"] < bench.DEFAULTS["cuda"]["iters"]
    assert any(n.startswith("CPU defaults used") for n in res["notes"])


@pytest.fixture
def one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)  # CI cores are shared; a multi-threaded forward on a loaded machine is slow and noisy
    yield
    torch.set_num_threads(saved)


def cli(capsys, *args):
    """The CLI in-process (a subprocess per call costs seconds of imports)."""
    from flopscope.cli import main

    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_bench_json_and_table(capsys, tmp_path, one_thread):
    rc, out, err = cli(capsys, "bench", "yolov5n", "--img", "64", "--device", "cpu", "--warmup", "1", "--iters", "3",
                       "--json", "-")
    assert rc == 0, err
    d = json.loads(out)
    assert RESULT_KEYS <= set(d) and d["runs"][0]["latency_ms"]["n"] == 3
    dest = tmp_path / "b.json"
    rc, out, err = cli(capsys, "bench", "yolov5n", "--img", "64", "--device", "cpu", "--warmup", "1", "--iters", "3",
                       "--per-layer", "--peak-tflops", "1", "--peak-gbps", "50", "--json", str(dest))
    assert rc == 0, err
    assert "whole-model latency" in out and "per layer, batch 1" in out and "CPU (1 thread;" in out
    assert "environment: torch" in out and "per-layer sum (median pass)" in out
    d = json.loads(dest.read_text())
    rf = d["runs"][0]["roofline"]
    assert d["peak"]["name"] == "given" and rf["bound_ms"] > 0 and rf["achieved_pct"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error shown when CUDA is missing")
def test_cuda_requested_without_cuda_subprocess(tmp_path):
    rc, out, err = run("bench", "yolov5n", "--img", "64", "--device", "cuda", cwd=tmp_path)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flopscope: error: --device cuda requested but CUDA is not "
                                                   "available"), err
    assert "Traceback" not in err + out and out == ""


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error shown when CUDA is missing")
@pytest.mark.parametrize("args, words", [
    (["--device", "cuda:0", "--dtype", "fp16"], "CUDA is not available"),
    (["--device", "cpu", "--cuda-graph"], "--cuda-graph needs --device cuda"),
])
def test_cuda_requested_without_cuda(capsys, args, words):
    rc, out, err = cli(capsys, "bench", "yolov5n", "--img", "64", *args)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and words in lines[0] and "Traceback" not in err


@pytest.mark.parametrize("args, words", [
    (["--dtype", "fp8"], "--dtype must be one of"),
    (["--batch", "1,x"], "--batch must be positive integers"),
    (["--iters", "0"], "--iters must be an integer"),
    (["--gpu", "H10"], "did you mean H100"),
    (["--peak-tflops", "5"], "give both --peak-tflops and --peak-gbps"),
    (["--device", "tpu"], "--device must be"),
])
def test_bad_options_one_line(capsys, args, words):
    rc, out, err = cli(capsys, "bench", "yolov5n", "--img", "64", "--device", "cpu", "--iters", "1", *args)
    assert rc == 2 and words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_model_latency(capsys, one_thread):
    rc, out, err = cli(capsys, "model", "yolov5n", "--img", "64", "--latency")
    assert rc == 0, err
    assert "1,872,157" in out  # the report itself, then the latency summary
    assert "latency on CPU (1 thread;" in out and "batch 1: median" in out and "img/s" in out
    rc, out, err = cli(capsys, "model", "yolov5n", "--img", "64", "--latency", "--json", "-")
    assert rc == 0, err
    d = json.loads(out)
    assert "layers" in d and d["latency"]["runs"][0]["latency_ms"]["median"] > 0


# ---------------------------------------------------------------------------------------------- statistics
def test_stats_hand_values():
    s = bench.summarize([3, 1, 2, 5, 4, 6, 8, 7, 10, 9])
    assert s["median"] == 5.5 and s["mean"] == 5.5 and s["min"] == 1 and s["max"] == 10
    # linear interpolation: position (n-1) q = 0.9 -> 1 + 0.9 (2 - 1); 8.1 -> 9 + 0.1 (10 - 9)
    assert s["p10"] == pytest.approx(1.9) and s["p90"] == pytest.approx(9.1)
    std = (sum((v - 5.5) ** 2 for v in range(1, 11)) / 9) ** 0.5  # sample std = 3.02765
    assert s["std"] == pytest.approx(std) and s["cv"] == pytest.approx(std / 5.5)
    one = bench.summarize([2.0])
    assert one["median"] == one["p10"] == one["p90"] == 2.0 and one["cv"] == 0


# ----------------------------------------------------------------------------------------- CUDA with fakes
class FakeCuda:
    """Stands in for torch.cuda: events whose timestamps come from a script (or a counter), and a
    synchronize that events must have seen before they are read."""

    def __init__(self, stamps=None, step_ms=0.5):
        self.stamps = iter(stamps) if stamps is not None else None
        self.step_ms = step_ms
        self.n = 0
        self.syncs = 0
        self.graph_replays = 0
        self.captures = 0
        fake = self

        class Event:
            def __init__(self, enable_timing=False):
                assert enable_timing
                self.t = None
                self.synced = False

            def record(self, stream=None):
                fake.n += 1
                self.t = next(fake.stamps) if fake.stamps is not None else fake.n * fake.step_ms
                fake.pending.append(self)

            def elapsed_time(self, end):
                assert self.synced and end.synced, "event read before torch.cuda.synchronize()"
                return end.t - self.t

        self.Event = Event
        self.pending = []

    def synchronize(self, device=None):
        self.syncs += 1
        for e in self.pending:
            e.synced = True
        self.pending.clear()

    def install(self, monkeypatch, name="NVIDIA H100 80GB HBM3"):
        c = torch.cuda
        monkeypatch.setattr(c, "is_available", lambda: True)
        monkeypatch.setattr(c, "device_count", lambda: 1)
        monkeypatch.setattr(c, "Event", self.Event)
        monkeypatch.setattr(c, "synchronize", self.synchronize)
        monkeypatch.setattr(c, "get_device_name", lambda *a, **k: name)
        monkeypatch.setattr(c, "mem_get_info", lambda *a, **k: (80 << 30, 80 << 30))
        monkeypatch.setattr(c, "reset_peak_memory_stats", lambda *a, **k: None)
        monkeypatch.setattr(c, "max_memory_allocated", lambda *a, **k: 123_456_789)
        monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 90100)
        monkeypatch.setattr(bench, "_tensor_device", lambda device: "cpu")  # tensors stay on the CPU
        fake = self

        class Stream:
            def wait_stream(self, other):
                pass

        class Graph:
            def replay(self):
                fake.graph_replays += 1

        class GraphCtx:
            def __init__(self, g):
                pass

            def __enter__(self):
                fake.captures += 1

            def __exit__(self, *a):
                return False

        class StreamCtx:
            def __init__(self, s):
                pass

            def __enter__(self):
                pass

            def __exit__(self, *a):
                return False

        monkeypatch.setattr(c, "Stream", Stream)
        monkeypatch.setattr(c, "current_stream", lambda *a: Stream())
        monkeypatch.setattr(c, "stream", StreamCtx)
        monkeypatch.setattr(c, "CUDAGraph", Graph)
        monkeypatch.setattr(c, "graph", GraphCtx)


def test_cuda_timer_known_times(monkeypatch):
    durations = [2.0, 4.0, 1.0, 3.0, 5.0]
    stamps = []
    t = 100.0
    for d in durations:
        stamps += [t, t + d]
        t += d + 7.0
    fake = FakeCuda(stamps)
    fake.install(monkeypatch)
    calls = []
    samples = bench.time_calls(lambda: calls.append(1), bench.CUDATimer(), warmup=3, iters=5)
    assert samples == durations and len(calls) == 8
    assert fake.syncs == 1 + 5  # after warm-up, then after every timed call
    s = bench.summarize(samples)
    assert s["median"] == 3.0 and s["p10"] == pytest.approx(1.4) and s["p90"] == pytest.approx(4.6)
    assert s["mean"] == 3.0 and s["cv"] == pytest.approx((2.5 ** 0.5) / 3.0)


def test_run_bench_fake_cuda(monkeypatch):
    fake = FakeCuda(step_ms=0.5)  # every event 0.5 ms after the previous one
    fake.install(monkeypatch)
    saved = torch.backends.cudnn.benchmark
    res = bench.run_bench("yolov5n", img=64, batch="1,4", device="cuda", warmup=2, iters=5, per_layer=True,
                          cudnn_benchmark=not saved, threads=1)
    assert torch.backends.cudnn.benchmark == saved  # restored
    env = res["environment"]
    assert res["device"] == "cuda" and env["device_name"] == "NVIDIA H100 80GB HBM3" and env["cudnn"] == 90100
    assert env["cudnn_benchmark"] == (not saved) and env["timer"].startswith("torch.cuda.Event")
    assert env["label"] == "CUDA NVIDIA H100 80GB HBM3"
    assert res["peak"]["name"] == "H100" and res["peak"]["precision"] in ("tf32", "fp32")
    for r in res["runs"]:
        lat = r["latency_ms"]
        assert lat["median"] == lat["p10"] == lat["p90"] == 0.5 and lat["cv"] == 0
        assert r["throughput_img_s"] == pytest.approx(r["batch"] / 0.5e-3)
        assert r["peak_memory_bytes"] == 123_456_789 and r["peak_memory_source"] == "torch.cuda.max_memory_allocated"
        rf = r["roofline"]
        assert rf["achieved_pct"] == pytest.approx(100 * rf["bound_ms"] / 0.5)
        pl = r["per_layer"]
        assert pl["sum_ms"] == pytest.approx(25 * 0.5) and pl["pass_sum_ms"] == pytest.approx(25 * 0.5)
        assert pl["whole_ms"] == 0.5 and pl["ratio"] == pytest.approx(25.0) and not pl["within_factor"]
        assert all(row["measured_ms"] == 0.5 for row in rf["layers"])
        assert all(row["achieved_pct"] == pytest.approx(100 * row["bound_ms"] / 0.5) for row in rf["layers"])
    # CUDA graph: one capture per batch, warm-up + timed calls are replays
    fake2 = FakeCuda(step_ms=0.25)
    fake2.install(monkeypatch)
    res = bench.run_bench("yolov5n", img=64, batch="1,2", device="cuda", warmup=2, iters=5, cuda_graph=True,
                          threads=1)
    assert fake2.captures == 2 and fake2.graph_replays == 2 * (2 + 5)
    assert res["cuda_graph"] and res["runs"][0]["latency_ms"]["median"] == 0.25


def test_fake_cuda_memory_refusal(monkeypatch):
    FakeCuda().install(monkeypatch)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a, **k: (64 << 20, 80 << 30))
    with pytest.raises(FlopscopeError, match="GiB are free"):
        bench.run_bench("yolov5s", img=640, batch=32, device="cuda", iters=1, warmup=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_real_cuda_smoke():
    res = bench.run_bench("yolov5n", img=128, batch="1,4", device="cuda", dtype="fp16", warmup=3, iters=10,
                          per_layer=True)
    for r in res["runs"]:
        lat = r["latency_ms"]
        assert 0 < lat["p10"] <= lat["median"] <= lat["p90"] and r["peak_memory_bytes"] > 0
        assert 1 / bench.PER_LAYER_FACTOR <= r["per_layer"]["ratio"] <= bench.PER_LAYER_FACTOR
    g = bench.run_bench("yolov5n", img=128, batch=1, device="cuda", warmup=3, iters=10, cuda_graph=True)
    assert g["runs"][0]["latency_ms"]["median"] > 0


# ---------------------------------------------------------------------------------------- roofline by hand
ONE_CONV = {"nc": 80, "depth_multiple": 1.0, "width_multiple": 1.0, "anchors": 3,
            "backbone": [[-1, 1, "Conv", [16, 3, 1]], [-1, 1, "DWConv", [16, 3, 1]]], "head": []}
GIVEN = roofline.Peak("given", 100.0, 1000.0, "given", "test")  # 100 TFLOP/s, 1000 GB/s


def test_roofline_3x3_conv_by_hand():
    rows = roofline.layer_rooflines(profile(ONE_CONV, img=64), "fp32", GIVEN, ch=3)
    r = rows[0]  # Conv(3 -> 16, k=3, s=1) + BN + SiLU on 1x3x64x64
    out = 16 * 64 * 64
    macs = out * 3 * 3 * 3  # 1,769,472
    ew = 2 * out + 5 * out  # BN 2 FLOPs/element, SiLU 5 (x * sigmoid(x))
    flops = 2 * macs + ew  # 3,997,696
    nbytes = 3 * 64 * 64 * 4 + out * 4 + (16 * 3 * 9 + 2 * 16) * 4  # 49,152 + 262,144 + 1,856 = 313,152
    assert (r["mac_flops"], r["elementwise_flops"], r["flops"]) == (2 * macs, ew, flops) == (3_538_944, 458_752,
                                                                                              3_997_696)
    assert (r["bytes_in"], r["bytes_out"], r["bytes_weights"], r["bytes"]) == (49_152, 262_144, 1_856, 313_152)
    assert r["intensity"] == pytest.approx(3_997_696 / 313_152)  # 12.77 FLOP/B
    assert r["compute_ms"] == pytest.approx(3_997_696 / 100e12 * 1e3)  # 4.0e-5 ms
    assert r["memory_ms"] == pytest.approx(313_152 / 1000e9 * 1e3)  # 3.13e-4 ms
    assert r["bound"] == "memory" and r["bound_ms"] == pytest.approx(3.13152e-4)
    # fp16 halves every byte; a 1 TFLOP/s device makes the same layer compute-bound
    r16 = roofline.layer_rooflines(profile(ONE_CONV, img=64), "fp16", roofline.Peak("x", 1.0, 1000.0, "given", ""))[0]
    assert r16["bytes"] == 313_152 // 2 and r16["bound"] == "compute"
    assert r16["bound_ms"] == pytest.approx(3_997_696 / 1e12 * 1e3)


def test_roofline_depthwise_conv_by_hand():
    h100 = roofline.resolve_peak("fp16", gpu="H100")
    assert (h100.tflops, h100.gbps) == (989.5, 3350.0)
    rows = roofline.layer_rooflines(profile(ONE_CONV, img=64), "fp16", h100, ch=3)
    r = rows[1]  # DWConv(16, 16, k=3): groups = 16, one 3x3 filter per channel, on 1x16x64x64
    n = 16 * 64 * 64
    macs = n * 9  # 589,824
    flops = 2 * macs + 7 * n  # + BN (2) + SiLU (5) per element = 1,638,400
    nbytes = (n + n + 16 * 9 + 2 * 16) * 2  # in + out + weights at 2 bytes = 262,496
    assert (r["flops"], r["bytes"]) == (1_638_400, 262_496)
    assert r["intensity"] == pytest.approx(1_638_400 / 262_496)  # 6.24 FLOP/B, far below the ridge
    ridge = 989.5e12 / 3350e9  # 295.4 FLOP/B
    assert h100.ridge == pytest.approx(ridge) and r["intensity"] < ridge / 40
    assert r["bound"] == "memory" and r["bound_ms"] == pytest.approx(262_496 / 3350e9 * 1e3)  # 78.4 ns
    # the dense 3x3 conv on the same 16 channels would do 16x the MACs for about the same bytes
    dense = profile({**ONE_CONV, "backbone": [[-1, 1, "Conv", [16, 3, 1]], [-1, 1, "Conv", [16, 3, 1]]]}, img=64)
    rd = roofline.layer_rooflines(dense, "fp16", h100)[1]
    assert rd["mac_flops"] == 16 * r["mac_flops"]
    assert rd["intensity"] / r["intensity"] == pytest.approx((2 * 16 * macs + 7 * n) / flops
                                                             * nbytes / (2 * (2 * n + 16 * 16 * 9 + 32)))


def test_roofline_zero_flop_layers_are_memory_bound():
    rep = profile("yolov5s", img=640)
    rows = roofline.layer_rooflines(rep, "fp16", roofline.resolve_peak("fp16", gpu="H100"))
    by = {r["index"]: r for r in rows}
    cat = by[12]  # Concat [-1, 6]: (1,256,40,40) + (1,256,40,40) -> (1,512,40,40)
    assert cat["flops"] == 0 and cat["bytes"] == 2 * (2 * 256 * 40 * 40 + 512 * 40 * 40) and cat["bound"] == "memory"
    up = by[11]  # nearest upsample x2: 1 FLOP per output element
    assert up["flops"] == 256 * 40 * 40 and up["bytes"] == 2 * (256 * 20 * 20 + 256 * 40 * 40)
    flagged = {d["index"] for d in roofline.disagreements(rows)}
    assert {12, 16} <= flagged  # concats: ~0 % of FLOPs, a visible share of the bound time


def test_device_table_and_detection():
    for d in roofline.DEVICES.values():
        assert d.gbps > 0 and "http" in d.source and d.tflops["fp32"] > 0
        assert d.tflops["fp16"] >= d.tflops["fp32"]
    need = {"H100", "H200", "A100", "V100", "L4", "RTX 4090", "RTX 3090", "T4", "Jetson Orin"}
    assert need <= set(roofline.DEVICES)
    assert roofline.detect_device("NVIDIA H100 80GB HBM3").name == "H100"
    assert roofline.detect_device("NVIDIA H100 PCIe").name == "H100 PCIe"
    assert roofline.detect_device("NVIDIA A100-SXM4-40GB").name == "A100 40GB"
    assert roofline.detect_device("Tesla T4").name == "T4" and roofline.detect_device("NVIDIA L4").name == "L4"
    assert roofline.detect_device("NVIDIA RTX A6000") is None
    assert roofline.find_device("rtx-4090").name == "RTX 4090"
    p = roofline.resolve_peak("fp32", gpu="A100", allow_tf32=True)
    assert p.precision == "tf32" and p.tflops == 156.0
    assert roofline.resolve_peak("fp32", gpu="A100", allow_tf32=False).tflops == 19.5
    notes = []
    assert roofline.resolve_peak("bf16", gpu="T4", notes=notes) is None and "no bf16" in notes[0]
    o = roofline.resolve_peak("fp16", gpu="L4", peak_gbps=250)
    assert (o.tflops, o.gbps) == (121.0, 250.0) and "overridden" in o.name
    with pytest.raises(FlopscopeError, match="not in the device table"):
        roofline.find_device("Voodoo 2")
