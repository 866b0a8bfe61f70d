"""Op-level counter speed: yolov5x6 @ 1280 given as a plain nn.Module, one run each.

    python benchmarks/opcount_speed.py [--model yolov5x6] [--img 1280] [--skip-fvcore]

* flopscope op-level: ``OpCounter`` over a meta model (no formula used; every op by its rule,
  attributed to module paths);
* FlopCounterMode on the same meta model (conv / mm / bmm only);
* fvcore ``FlopCountAnalysis`` on a real CPU forward (JIT trace).
Target (issue 11): op-level no slower than 1.2x FlopCounterMode on meta.
"""
from __future__ import annotations

import argparse
import time
import warnings

import torch

warnings.filterwarnings("ignore")


def once(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="yolov5x6")
    ap.add_argument("--img", type=int, default=1280)
    ap.add_argument("--skip-fvcore", action="store_true")
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    from torch.utils.flop_counter import FlopCounterMode

    from flopscope.builder import build_model
    from flopscope.opcount import OpCounter

    meta = build_model(a.model)
    x = torch.empty(1, 3, a.img, a.img, device="meta")
    meta(x)  # warm caches (Detect grids, dispatch) for both meta contenders alike

    def ours():
        with OpCounter(meta) as oc:
            meta(x)
        return oc.total()

    def fcm():
        with FlopCounterMode(display=False) as f:
            meta(x)
        return f.get_total_flops() // 2

    ours(), fcm()  # warm both (first-call costs, caches), then one timed run each
    t_fcm, fcm_macs = once(fcm)
    t_ours, total = once(ours)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {a.model} @ {a.img}, one run each")
    print(f"flopscope op-level (meta):   {t_ours:7.3f} s  MACs {total['conv'] + total['linear'] + total['matmul']:,}"
          f" + {total['elementwise']:,} element-wise FLOPs")
    print(f"FlopCounterMode (meta):      {t_fcm:7.3f} s  MACs {fcm_macs:,}")
    print(f"ratio op-level / FCM-meta:   {t_ours / t_fcm:7.2f}x  (target <= 1.2x)")
    if not a.skip_fvcore:
        from fvcore.nn import FlopCountAnalysis

        real = build_model(a.model, device="cpu").eval()
        xr = torch.zeros(1, 3, a.img, a.img)

        def fv():
            an = FlopCountAnalysis(real, xr)
            an.unsupported_ops_warnings(False)
            an.uncalled_modules_warnings(False)
            return an.total()

        t_fv, fv_macs = once(fv)
        print(f"fvcore (real CPU forward):   {t_fv:7.3f} s  MACs {int(fv_macs):,}")
        print(f"ratio fvcore / op-level:     {t_fv / t_ours:7.1f}x")


if __name__ == "__main__":
    main()
