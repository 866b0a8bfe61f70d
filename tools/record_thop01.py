"""Record what the REAL thop 0.1.1 reports on the bundled configs, for the tests of our thop-0.1.1 emulation.

The legacy YOLOv5 ``model_info`` figure ("YOLOv5 model_info would print", ``model_info_gflops``; seed 004's
"660.7") is thop 0.1.1 run on a stride-sized probe, scaled by area:

    probe = max(int(model.stride.max()), 32)
    gflops = thop.profile(deepcopy(model), inputs=(zeros(1, 3, probe, probe),))[0] / 1e9 * 2 * (H/probe) * (W/probe)

flopscope now depends on ultralytics-thop (2.x), so the tests can no longer run thop 0.1.1 themselves; this
script records it once.  For every config it stores thop's MACs per YAML layer (``ret_layer_info``) and in total,
on the model_info probe and on a small full-size input (max(64, stride) px, what the tests profile at), and
the model_info figure at 640.

Run it with a Python where ``import thop`` is thop 0.1.1 (e.g. the system site-packages here):

    python -P tools/record_thop01.py [--out tests/data/thop01_model_info.json] [CFG ...]

Models are built with ``flopscope.build_model(name, device="cpu")`` (thop counts shapes, not weights).
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import sys
import time
from pathlib import Path

import torch

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "thop01_model_info.json"


def bundled() -> list[str]:
    from importlib import resources

    return sorted(p.name[:-5] for p in resources.files("flopscope.yamls").iterdir() if p.name.endswith(".yaml"))


def thop_layers(thop, model, size: int) -> tuple[list[float], float]:
    x = torch.zeros((1, model.ch, size, size))
    total, _params, info = thop.profile(copy.deepcopy(model), inputs=(x,), verbose=False, ret_layer_info=True)
    layers = info["model"][2]
    return [float(layers[str(i)][0]) if str(i) in layers else 0.0 for i in range(len(model.model))], float(total)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("configs", nargs="*", help="bundled config names (default: every bundled config)")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--img", type=int, default=640, help="image size of the recorded model_info figure")
    args = ap.parse_args(argv)

    import thop

    from flopscope import build_model

    version = getattr(thop, "__version__", None)
    from importlib import metadata

    dist_version = None
    for dist in ("thop", "ultralytics-thop"):
        try:
            d = metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            continue
        if Path(d.locate_file("thop/__init__.py")).resolve() == Path(thop.__file__).resolve():
            dist_version = f"{dist} {d.version}"
    if not (dist_version or "").startswith("thop 0.1"):
        print(f"refusing: `import thop` here is {dist_version or version or thop.__file__}, not thop 0.1.x",
              file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    names = args.configs or bundled()
    out = {"thop": dist_version, "torch": torch.__version__, "python": sys.version.split()[0],
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "command": "python -P tools/record_thop01.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "img": args.img,
           "how": "thop.profile(deepcopy(model), inputs=(torch.zeros(1, 3, s, s),), ret_layer_info=True); "
                  "per-layer MACs = info['model'][2][str(i)][0]; model_info_gflops = 2 * probe MACs / 1e9 * "
                  "(img / probe)^2 with probe = max(stride, 32)",
           "models": {}}
    for name in names:
        t0 = time.perf_counter()
        torch.manual_seed(0)
        model = build_model(name, device="cpu").eval()
        stride = int(model.stride.max())
        probe = max(stride, 32)
        small = max(64, stride)
        rec = {"stride": stride, "probe": probe, "small_img": small}
        try:
            per, total = thop_layers(thop, model, probe)
            rec.update(probe_per_layer=per, probe_total=total,
                       model_info_gflops=2 * total / 1e9 * (args.img / probe) ** 2)
        except Exception as e:  # noqa: BLE001 - recorded: the probe does not run
            rec["probe_error"] = f"{type(e).__name__}: {e}"[:300]
        try:
            per, total = thop_layers(thop, model, small)
            rec.update(small_per_layer=per, small_total=total)
        except Exception as e:  # noqa: BLE001
            rec["small_error"] = f"{type(e).__name__}: {e}"[:300]
        out["models"][name] = rec
        print(f"{name:34s} probe {probe:3d}: model_info {rec.get('model_info_gflops', float('nan')):8.1f} GFLOPs"
              f"  ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
