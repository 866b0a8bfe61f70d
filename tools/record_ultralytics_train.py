"""Record per-layer BACKWARD FLOPs of a real ultralytics training step (an oracle; run by hand, never in CI).

    /work/venvs/ultra/bin/python tools/record_ultralytics_train.py            # the default model list
    /work/venvs/ultra/bin/python tools/record_ultralytics_train.py yolo11n yolo26n-seg

Needs ultralytics 8.4.x + torch; neither the package nor this script is a flopscope dependency.
Writes tests/data/ultralytics_train.json: per model (``NAME@freezeN``: with the trainer's ``freeze=N``), per layer
model.model[i],
  - bwd_fcm: FlopCounterMode FLOPs of the real whole-model backward in train mode (CPU, batch BATCH, IMG px, zeros
    input), each autograd node attributed to the layer whose forward created it (forward hooks tag the nodes,
    the FlopCounterMode total is read before and after every node: the CPU engine runs one node at a time);
    seeded with ones on every tensor of the head's training output except ``feats`` (the head's own inputs,
    which ultralytics returns for the loss to read their shapes);
  - grouped_excess: FlopCounterMode's dense pricing of a grouped conv's grad-weight (its conv_flop_count takes the
    weight's Cin/g as Cin over the whole input), derived by hand from every grouped F.conv2d whose weight needs a
    gradient seen on the forward: 2 * (g - 1) * out.numel * Cin/g * kh * kw;
  - bwd = bwd_fcm - grouped_excess: the backward FLOPs of the gradients actually computed.
"""
from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", "/tmp/ultralytics_cfg")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.overrides import TorchFunctionMode  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

IMG, BATCH = 64, 1
OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "ultralytics_train.json"
DEFAULT = ["yolov8n", "yolo11n", "yolov9t", "yolov10n", "yolo12n", "yolo26n", "yolov8n-seg", "yolo11n-pose",
           "yolo26n-seg", "yolo26n-pose", "yolo26n-obb", "yolo11n-cls", "yolo26n@freeze10", "yolov10n@freeze5"]


def tensors(out, skip=("feats",)):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in tensors(v, skip)]
    if isinstance(out, dict):
        return [t for k, v in out.items() if k not in skip for t in tensors(v, skip)]
    return []


def build(name):
    from ultralytics.nn import tasks as T
    from ultralytics.nn.tasks import guess_model_task, yaml_model_load

    task = guess_model_task(yaml_model_load(name + ".yaml"))
    cls = {"detect": T.DetectionModel, "segment": T.SegmentationModel, "pose": T.PoseModel, "obb": T.OBBModel,
           "classify": T.ClassificationModel}[task]
    return cls(name + ".yaml", verbose=False)


def grouped_excess(model, x):
    excess = [0] * len(model.model)
    cur = [0]

    class Grouped(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func is F.conv2d:
                w = args[1]
                g = args[6] if len(args) > 6 else (kwargs or {}).get("groups", 1)
                if g > 1 and w.requires_grad:
                    excess[cur[0]] += (g - 1) * out.numel() * w.shape[1] * w.shape[2] * w.shape[3]
            return out

    hooks = [m.register_forward_pre_hook(lambda m, a, i=i: cur.__setitem__(0, i)) for i, m in enumerate(model.model)]
    with Grouped():
        model(x)
    for h in hooks:
        h.remove()
    return [2 * e for e in excess]


def backward_per_layer(model, x):
    owner, hooks = {}, []

    def tag(i):
        def hook(mod, args, out):
            stack = [t.grad_fn for t in tensors(out, ()) if t.grad_fn is not None]
            while stack:
                node = stack.pop()
                if node in owner:
                    continue
                owner[node] = i
                stack.extend(n for n, _ in node.next_functions if n is not None and n not in owner)
        return hook

    for i, layer in enumerate(model.model):
        hooks.append(layer.register_forward_hook(tag(i)))
    per = [0] * len(model.model)
    with FlopCounterMode(display=False) as fcm:
        out = model(x)
        for h in hooks:
            h.remove()
        before = {}

        def pre(node):
            before[node] = fcm.get_total_flops()

        def post(node, i):
            per[i] += fcm.get_total_flops() - before[node]

        for node, i in owner.items():
            node.register_prehook(lambda g, node=node: pre(node))
            node.register_hook(lambda gi, go, node=node, i=i: post(node, i))
        start = fcm.get_total_flops()
        ts = [t for t in tensors(out) if t.requires_grad]
        torch.autograd.backward(ts, [torch.ones_like(t) for t in ts])
        assert sum(per) == fcm.get_total_flops() - start
    return per


def record(name):
    """``NAME`` or ``NAME@freezeN`` (the trainer's ``freeze=N``: parameters named ``model.{x}.``, x < N, frozen)."""
    name, _, fz = name.partition("@freeze")
    torch.manual_seed(0)
    model = build(name).train()
    frozen = [f"model.{x}." for x in range(int(fz or 0))]
    for k, v in model.named_parameters():
        v.requires_grad_(not any(f in k for f in frozen))
    x = torch.zeros(BATCH, 3, IMG, IMG)
    bwd = backward_per_layer(model, x)
    exc = grouped_excess(model, x)
    return {"layers": [{"i": i, "type": type(m).__name__, "bwd_fcm": b, "grouped_excess": e, "bwd": b - e}
                       for i, (m, b, e) in enumerate(zip(model.model, bwd, exc))]}


def main(argv=None):
    import ultralytics

    names = (argv if argv is not None else sys.argv[1:]) or DEFAULT
    data = json.loads(OUT.read_text()) if OUT.exists() else {}
    data.update({"img": IMG, "batch": BATCH, "command": "/work/venvs/ultra/bin/python tools/record_ultralytics_train.py",
                 "versions": {"ultralytics": ultralytics.__version__, "torch": torch.__version__},
                 "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
                 "notes": __doc__.split("\n\n", 2)[2].strip()})
    models = data.setdefault("models", {})
    for n in names:
        models[n] = record(n)
        print(n, sum(r["bwd"] for r in models[n]["layers"]), flush=True)
    OUT.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
