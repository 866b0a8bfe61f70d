"""Build + count speed: flopscope against thop, fvcore and FlopCounterMode, measured in one run.

    python benchmarks/count_speed.py [--repeat 3] [--models yolov5s@640,yolov5x6@1280]

Every contender gets the same job: build the model from the config and count it at the given
size.  The other counters need a real model (weights initialised on CPU) and a real forward;
FlopCounterMode can also run on the meta device.  The "count only" column excludes the build.
Targets (issue 2): >= 50x faster than fvcore on yolov5x6@1280, not slower than FCM on meta.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings

import torch

warnings.filterwarnings("ignore")


def median_time(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def contenders(name, img):
    import flopscope
    from flopscope.builder import build_model

    x = lambda dev="cpu": torch.zeros(1, 3, img, img, device=dev)  # noqa: E731

    def thop_count(m):
        import thop
        thop.profile(copy.deepcopy(m), inputs=(x(),), verbose=False)

    def fvcore_count(m):
        from fvcore.nn import FlopCountAnalysis
        a = FlopCountAnalysis(m, x())
        a.unsupported_ops_warnings(False)
        a.uncalled_modules_warnings(False)
        a.total()

    def fcm_count(m, dev="cpu"):
        from torch.utils.flop_counter import FlopCounterMode
        with torch.no_grad(), FlopCounterMode(display=False) as f:
            m(x(dev))
        f.get_total_flops()

    return {
        "flopscope (analytic, meta)": (lambda: build_model(name), lambda m: flopscope.profile(m, img=img)),
        "FlopCounterMode on meta": (lambda: build_model(name), lambda m: fcm_count(m, "meta")),
        "FlopCounterMode, real forward": (lambda: build_model(name, device="cpu"), fcm_count),
        "thop.profile": (lambda: build_model(name, device="cpu"), thop_count),
        "fvcore FlopCountAnalysis": (lambda: build_model(name, device="cpu"), fvcore_count),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--models", default="yolov5s@640,yolov5x6@1280")
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {a.repeat}")
    for spec in a.models.split(","):
        name, img = spec.split("@")
        img = int(img)
        rows = {}
        for label, (build, count) in contenders(name, img).items():
            build()  # warm imports and caches once
            total = median_time(lambda: count(build()), a.repeat)
            models = [build() for _ in range(a.repeat)]
            count_only = median_time(lambda: count(models.pop()), a.repeat)
            rows[label] = (total, count_only)
        ours_total, ours_count = rows["flopscope (analytic, meta)"]
        print(f"\n{name} @ {img}")
        print(f"{'contender':32s} {'build+count s':>14s} {'count only s':>13s} {'x flopscope (build+count)':>26s}")
        for label, (total, count_only) in rows.items():
            print(f"{label:32s} {total:14.4f} {count_only:13.4f} {total / ours_total:26.1f}")
        fv, fcm_meta = rows["fvcore FlopCountAnalysis"], rows["FlopCounterMode on meta"]
        print(f"speed-up vs fvcore: {fv[0] / ours_total:.1f}x build+count, {fv[1] / ours_count:.1f}x count only; "
              f"vs FlopCounterMode on meta: {fcm_meta[0] / ours_total:.2f}x")


if __name__ == "__main__":
    main()
