"""Record per-layer reference data from the REAL ultralytics package (an oracle; run by hand, never in CI).

    /work/venvs/ultra/bin/python tools/record_ultralytics.py            # every official config family
    /work/venvs/ultra/bin/python tools/record_ultralytics.py yolo11 v9/yolov9c   # only these families
    /work/venvs/ultra/bin/python tools/record_ultralytics.py --add-info 320  # model.info(imgsz=320) where missing

Needs ultralytics 8.4.x (+ torch, ultralytics-thop); none of them is a flopscope dependency.
Writes one JSON per config family (one official YAML file) to tests/data/ultralytics/<stem>.json and an index,
tests/data/ultralytics/index.json (families, model names, skipped configs and why, versions, date, command).

Per model (every scale the YAML defines, named as ultralytics resolves them: yolo11n -> yolo11.yaml scale n):
  - per layer model.model[i]: i, from, n (after depth gain), type (class name), module (dotted path), args (as
    parse_model logs them), params (sum numel), out (output shape at IMG px), flops (FlopCounterMode FLOPs on a
    real eval forward at IMG px, under the '<Model>.model.<i>' module key), ops (those FLOPs by aten op),
    flops640 (FlopCounterMode at 640 px on a copy of the model on the meta device: same shapes, no arithmetic)
  - totals: params, FlopCounterMode at IMG (real) and 640 (meta), model.info() at 640 and 320 (layers, params,
    GFLOPs as get_flops returns it, and the printed summary line: ultralytics-thop, stride-aware), strides;
  - after model.fuse(): params, model.info() at 640 (GFLOPs and line), FlopCounterMode total at IMG.
"""
from __future__ import annotations

import copy
import datetime
import json
import logging
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")  # nothing may touch the network
os.environ.setdefault("YOLO_CONFIG_DIR", "/tmp/ultralytics_cfg")
os.environ.setdefault("YOLO_VERBOSE", "True")

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

IMG = 128  # real-forward image size for per-layer FLOPs and shapes
OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "ultralytics"

# Official configs that are not detect/segment/pose/obb/classify models buildable without torchvision / text models.
SKIP = {
    "yolo11-cls-resnet18": "TorchVision wrapper (needs torchvision)",
}
SKIP_PREFIX = {"yoloe-": "YOLOE (open-vocabulary, text/visual prompt model)", "yolov8-world": "YOLO-World (CLIP text)"}


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def model_names(stem: str, scales: dict | None) -> list[tuple[str, str]]:
    """(name ultralytics resolves, scale) for every scale of one YAML family."""
    if not scales:
        return [(stem + ("u" if stem.startswith("yolov3") else ""), "")]
    out = []
    for s in scales:
        if stem.startswith("yolo") and not re.search(r"\d+[a-z]", stem) and stem != "yolov5-p6":
            name = re.sub(r"(\d+)", rf"\g<1>{s}", stem, count=1)  # yolo11-seg -> yolo11n-seg
            if stem == "yolov5":
                name += "u"  # yolov5nu (YOLOv5 'u', anchor-free)
        elif stem == "yolov5-p6":
            name = f"yolov5{s}-p6u"  # ultralytics 8.4 resolves this (the hub's 'yolov5n6u' does not)
        else:
            name = stem  # rtdetr-l, yolov10n: one scale per file, named by the file
        out.append((name, s))
    return out


def shape_of(o):
    if isinstance(o, torch.Tensor):
        return list(o.shape)
    if isinstance(o, (list, tuple)):
        return [shape_of(x) for x in o]
    if isinstance(o, dict):
        return {k: shape_of(v) for k, v in o.items()}
    return None if o is None else type(o).__name__


def fcm(model, x, key_prefix):
    """FlopCounterMode totals and per-layer dicts {i: (flops, {op: flops})}."""
    mode = FlopCounterMode(display=False)
    with torch.no_grad(), mode:
        model(x)
    counts = mode.get_flop_counts()
    per = {}
    for i in range(len(model.model)):
        ops = counts.get(f"{key_prefix}.model.{i}", {})
        per[i] = (int(sum(ops.values())), {str(k).split(".")[-2] if "." in str(k) else str(k): int(v)
                                          for k, v in ops.items()})
    return int(mode.get_total_flops()), per


def info_line(lines):
    return next((ln.strip() for ln in reversed(lines) if " summary" in ln and "parameters" in ln), None)


def build(name, task, rtdetr):
    from ultralytics.nn import tasks as T

    cls = T.RTDETRDetectionModel if rtdetr else {
        "detect": T.DetectionModel, "segment": T.SegmentationModel, "pose": T.PoseModel, "obb": T.OBBModel,
        "classify": T.ClassificationModel, "depth": T.DepthModel, "semantic": T.SemanticSegmentationModel}[task]
    info, T.BaseModel.info = T.BaseModel.info, lambda *a, **k: None  # info() is called (once) by the recorder
    try:
        return cls(name + ".yaml", verbose=True), cls.__name__
    finally:
        T.BaseModel.info = info


def record_model(name, scale, task, rtdetr, cap, real=True):
    from ultralytics.utils.torch_utils import get_flops

    t0 = time.time()

    def tick(what, _t=[t0]):
        if os.environ.get("RECORD_TIMING"):
            print(f"  {what}: {time.time() - _t[0]:.1f}s", file=sys.stderr)
        _t[0] = time.time()
    cap.lines.clear()
    model, cls_name = build(name, task, rtdetr)
    model.eval()
    tick("build")
    log = list(cap.lines)
    # parse_model's per-layer lines: after the header (the line holding 'arguments')
    h = next(k for k, ln in enumerate(log) if "arguments" in ln and "module" in ln)
    rows = [ln for ln in log[h + 1:] if re.match(r"^\s*\d+", ln)][: len(model.model)]
    assert len(rows) == len(model.model), (name, len(rows), len(model.model))

    meta = copy.deepcopy(model).to("meta")
    for a, b in zip(model.modules(), meta.modules()):  # heads turn strides into Python numbers (.item())
        if isinstance(getattr(a, "stride", None), torch.Tensor):
            b.stride = a.stride.clone()
    x = torch.zeros(1, 3, IMG, IMG)
    target, xin = (model, x) if real else (meta, x.to("meta"))
    outs = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, i=i: outs.__setitem__(i, shape_of(out)))
             for i, m in enumerate(target.model)]
    total, per = fcm(target, xin, cls_name)
    for hk in hooks:
        hk.remove()
    tick("forward")
    total640, per640 = fcm(meta, torch.zeros(1, 3, 640, 640, device="meta"), cls_name)
    total_meta_img = fcm(meta, x.to("meta"), cls_name)[0] if real else None
    del meta
    tick("meta")

    layers = []
    for i, m in enumerate(model.model):
        ln = rows[i]
        t = m.type
        assert int(ln[:3]) == i, ln
        rest = ln[3:].lstrip()  # 'from' may overflow its 20-character column
        assert rest.startswith(str(m.f)), (ln, m.f)
        n_str, np_str, rest = rest[len(str(m.f)):].split(maxsplit=2)
        assert rest.startswith(t) and int(np_str) == m.np, (ln, t)
        layers.append({
            "i": i, "from": m.f, "n": int(n_str), "type": type(m).__name__, "module": t,
            "args": rest[len(t):].strip(), "params": int(m.np),
            "out": outs.get(i), "flops": per[i][0], "ops": per[i][1], "flops640": per640[i][0],
        })

    info = {}
    for s in (640, 320) if real else (640,):
        cap.lines.clear()
        n_l, n_p, n_g, fl = model.info(verbose=True, imgsz=s)
        info[str(s)] = {"layers": n_l, "params": n_p, "gflops": fl, "line": info_line(cap.lines)}
    tick("info")
    rec = {
        "name": name, "scale": scale or None, "task": task, "model_class": cls_name,
        "yaml_scale": list(model.yaml["scales"][model.yaml.get("scale") or next(iter(model.yaml["scales"]))])
        if model.yaml.get("scales") else None,
        "nc": model.yaml.get("nc"), "stride": [int(s) for s in model.stride.tolist()] if hasattr(model, "stride")
        else None,
        "params": int(sum(p.numel() for p in model.parameters())),
        "fcm_flops": {str(IMG): total, "640": total640},
        "flops_from": "real" if real else "meta",
        "fcm_meta_equals_real": None if total_meta_img is None else total_meta_img == total,
        "info": info,
    }
    try:
        cap.lines.clear()
        model.fuse(verbose=False)
        fl = get_flops(model, 640)
        cap.lines.clear()
        model.info(verbose=True, imgsz=640)
        rec["fused"] = {"params": int(sum(p.numel() for p in model.parameters())), "info_gflops_640": fl,
                        "info_line_640": info_line(cap.lines)}
        if real:
            rec["fused"]["fcm_flops"] = {str(IMG): fcm(model, x, cls_name)[0]}
    except Exception as e:  # noqa: BLE001 - recorded, never silent
        rec["fused"] = {"error": f"{type(e).__name__}: {e}"}
    tick("fuse")
    rec["layers"] = layers
    rec["seconds"] = round(time.time() - t0, 2)
    return rec


def dump(obj) -> str:
    """Compact JSON, one layer per line (diffable, small)."""
    s = json.dumps({k: v for k, v in obj.items() if k != "models"}, indent=1)[:-2]
    parts = []
    for name, rec in obj["models"].items():
        head = json.dumps({k: v for k, v in rec.items() if k != "layers"}, separators=(",", ":"))[:-1]
        lay = ",\n".join("   " + json.dumps(r, separators=(",", ":")) for r in rec["layers"])
        parts.append(f'  {json.dumps(name)}: {head},"layers":[\n{lay}]}}')
    return s + ',\n "models": {\n' + ",\n".join(parts) + "}\n}\n"


def _session():
    """Quiet, single-threaded, seeded ultralytics with its log captured; returns (capture, versions)."""
    import thop
    import ultralytics
    from ultralytics.utils import LOGGER, SETTINGS

    SETTINGS.update(sync=False)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cap = _Capture()
    LOGGER.addHandler(cap)
    LOGGER.setLevel(logging.INFO)
    return cap, {"ultralytics": ultralytics.__version__, "torch": torch.__version__,
                 "thop": getattr(thop, "__version__", "?")}


def add_info(size: int, only=()) -> None:
    """Add ``info[str(size)]`` (model.info(imgsz=size): layers, params, GFLOPs, printed line) to every recorded model
    that lacks it (the full recording takes info at 320 only for the first two scales of a family), leaving every
    other recorded value as it is; the family's ``info_added`` says when and with what."""
    cap, versions = _session()
    for f in sorted(OUT.glob("*.json")):
        if f.name == "index.json" or (only and f.stem not in only):
            continue
        fam = json.loads(f.read_text())
        added = []
        for name, rec in fam["models"].items():
            if str(size) in rec["info"]:
                continue
            model, _ = build(name, rec["task"], rec["model_class"] == "RTDETRDetectionModel")
            model.eval()
            cap.lines.clear()
            n_l, n_p, n_g, fl = model.info(verbose=True, imgsz=size)
            rec["info"][str(size)] = {"layers": n_l, "params": n_p, "gflops": fl, "line": info_line(cap.lines)}
            added.append(name)
            print(f"{name:24s} info@{size}: {fl:.4f} GFLOPs", file=sys.stderr, flush=True)
        if added:
            fam.setdefault("info_added", {})[str(size)] = {
                "models": added, "versions": versions,
                "command": f"/work/venvs/ultra/bin/python tools/record_ultralytics.py --add-info {size}",
                "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ")}
            f.write_text(dump(fam))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--add-info"]:
        return add_info(int(argv[1]), tuple(argv[2:]))
    import ultralytics
    from ultralytics.nn.tasks import guess_model_task
    from ultralytics.utils import YAML

    cap, versions = _session()
    root = Path(ultralytics.__file__).parent / "cfg" / "models"
    OUT.mkdir(parents=True, exist_ok=True)
    cmd = "/work/venvs/ultra/bin/python tools/record_ultralytics.py" + "".join(f" {a}" for a in argv)
    index_path = OUT / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {"families": {}, "skipped": {}}
    first = ("v9", "12", "rt-detr")  # order only (the families this recorder's author needed first)
    files = sorted(root.glob("*/*.yaml"), key=lambda p: (p.parent.name not in first, "resnet" not in p.stem, str(p)))
    for f in files:
        rel = f"{f.parent.name}/{f.stem}"
        if argv and not any(a in (f.stem, rel) for a in argv):
            continue
        why = SKIP.get(f.stem) or next((v for k, v in SKIP_PREFIX.items() if f.stem.startswith(k)), None)
        if why:
            index["skipped"][rel] = why
            continue
        index["skipped"].pop(rel, None)
        d = YAML.load(f)
        task = guess_model_task(d)
        rtdetr = "rtdetr" in f.stem
        fam = {"family": f.name, "yaml": rel + ".yaml", "task": task, "img": IMG, "versions": versions,
               "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"), "command": cmd,
               "notes": "flops: FlopCounterMode on a real eval forward at img px (batch 1, zeros); flops640/"
                        "fcm_flops.640: FlopCounterMode on a meta-device copy at 640 px (shape-only, same counts; "
                        "fcm_meta_equals_real checks it at img px). flops_from: 'real' for the first two scales of a "
                        "family, 'meta' (same, shape-only forward at img px) for the others, to save CPU;"
                        " info.*: model.info(imgsz=...) (ultralytics-thop, stride-aware get_flops); "
                        "fused: after model.fuse().", "models": {}}
        for k, (name, scale) in enumerate(model_names(f.stem, d.get("scales"))):
            try:
                rec = record_model(name, scale, task, rtdetr, cap, real=k < 2)
            except Exception as e:  # noqa: BLE001
                index.setdefault("failed", {})[name] = f"{type(e).__name__}: {e}"
                print(f"{name}: FAILED {type(e).__name__}: {e}", file=sys.stderr)
                continue
            fam["models"][name] = rec
            index.setdefault("failed", {}).pop(name, None)
            print(f"{name:24s} {rec['params']:>11,} params  {rec['info']['640']['gflops']:7.1f} GFLOPs(info)  "
                  f"{rec['seconds']:5.1f}s", file=sys.stderr, flush=True)
        if fam["models"]:
            (OUT / f"{f.stem}.json").write_text(dump(fam))
            index["families"][rel] = {"file": f"{f.stem}.json", "task": task, "models": list(fam["models"])}
            index_path.write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    index.update(versions=versions, img=IMG, command="/work/venvs/ultra/bin/python tools/record_ultralytics.py",
                 date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"))
    index_path.write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
