"""--train: backward MACs, activation memory, optimizer memory, --freeze.

Oracles outside our code:
* FlopCounterMode over a real CPU forward + backward of the whole model in train mode, attributed per layer
  by tagging every autograd node with the layer whose forward created it (FlopCounterMode's own module
  tracker attributes backward ops to several modules at once).  FlopCounterMode prices a grouped conv's
  grad-weight as if it were dense (groups x the real products: its conv_flop_count takes the
  weight's Cin/g as Cin and the input's channels as the grad-weight batch), which the test adds back by
  hand from the module's hyper-parameters: (groups - 1) x the conv's forward MACs per grouped
  trainable conv.
* ``torch.autograd.graph.saved_tensors_hooks`` on a real CPU training forward: the bytes of the unique
  storages autograd saves, parameters and buffers excluded.
* Hand arithmetic for the optimizer memory.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

import flopscope
from flopscope.train import freeze_layers, train_profile

from cli_helpers import run_cli


def _names():
    """The YOLOv5-dialect bundled configs (the Ultralytics ones: tests/test_train_ul.py, same oracle, and a real
    ultralytics training step, recorded: test_ultralytics_backward_flops_equal_the_real_training_step)."""
    from flopscope.config import bundled_names, load

    return [n for n in bundled_names() if load(n).dialect == "yolov5"]


def _img(name):
    stride = int(flopscope.build_model(name).stride.max())
    return max(64, stride)


def _fcm_layers(model, img, backward: bool, batch: int = 1):
    """FLOPs per YAML layer on a real CPU train-mode forward (backward=False), or of the real whole-model backward
    (backward=True): each autograd node is tagged with the layer whose forward created it, and the FlopCounterMode
    total is read before and after every node runs (the CPU engine runs one node at a time)."""
    x = torch.randn(batch, model.ch, img, img, generator=torch.Generator().manual_seed(0))
    owner, hooks = {}, []

    def tag(i):
        def hook(mod, args, out):
            stack = [t.grad_fn for t in _tensors(out) if t.grad_fn is not None]
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
        if not backward:
            counts = fcm.get_flop_counts()
            return [sum(counts.get(f"DetectionModel.model.{i}", {}).values()) for i in range(len(model.model))]
        before = {}  # keyed by id(node): a hook holding its own node would be a cycle through C++ that gc never
        # frees, keeping every model's graph alive (GBs over the file)
        for node, i in owner.items():
            node.register_prehook(lambda g, k=id(node): before.__setitem__(k, fcm.get_total_flops()))
            node.register_hook(lambda gi, go, k=id(node), i=i: per.__setitem__(
                i, per[i] + fcm.get_total_flops() - before[k]))
        start = fcm.get_total_flops()
        ts = [t for t in _tensors(out) if t.requires_grad]
        torch.autograd.backward(ts, [torch.ones_like(t) for t in ts])
        assert sum(per) == fcm.get_total_flops() - start  # every backward FLOP belongs to one layer's node
    return per


def _tensors(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in _tensors(v)]
    if isinstance(out, dict):  # the Ultralytics heads' training predictions
        return [t for v in out.values() for t in _tensors(v)]
    return []


def _grouped_excess(model, img, batch=1):
    """FlopCounterMode's dense pricing of grouped grad-weight, per layer, derived by hand: every grouped conv
    (module or functional, e.g. dynamic convs that fold the batch into the groups) whose weight needs a
    gradient, seen on a real forward; excess = (g - 1) * out.numel * Cin/g * kh * kw MACs."""
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode

    excess = [0] * len(model.model)
    current = [0]

    class Grouped(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func is F.conv2d:
                w = args[1]
                g = args[6] if len(args) > 6 else (kwargs or {}).get("groups", 1)
                if g > 1 and w.requires_grad:
                    excess[current[0]] += (g - 1) * out.numel() * w.shape[1] * w.shape[2] * w.shape[3]
            return out

    hooks = [layer.register_forward_pre_hook(lambda m, a, i=i: current.__setitem__(0, i))
             for i, layer in enumerate(model.model)]
    with Grouped():
        model(torch.zeros(batch, model.ch, img, img))
    for h in hooks:
        h.remove()
    return [2 * e for e in excess]


def _oracle_backward(name, img, freeze=0, batch=1):
    torch.manual_seed(0)
    model = flopscope.build_model(name, device="cpu").train()
    freeze_layers(model, freeze)
    bwd = _fcm_layers(model, img, backward=True, batch=batch)
    excess = _grouped_excess(model, img, batch)
    return [b - e for b, e in zip(bwd, excess)]


@pytest.mark.parametrize("name", _names())
def test_backward_flops_equal_fcm_per_layer(name):
    img = _img(name)  # 64, or the max stride (128 for P7)
    stride = int(flopscope.build_model(name).stride.max())
    batch = 2 if stride >= 64 else 1  # P6/P7 end on a 1x1 map: train-mode BatchNorm needs 2 values per channel
    try:
        rep = train_profile(flopscope.build_model(name), (img, img), batch)
    except flopscope.ConfigError as e:  # a BatchNorm on pooled features (ODConv2d): as real torch, needs batch 2
        assert "more than 1 value per channel" in str(e)
        batch = 2
        rep = train_profile(flopscope.build_model(name), (img, img), batch)
    ours = [r.backward_flops for r in rep.layers]
    assert ours == _oracle_backward(name, img, batch=batch)
    assert rep.totals()["backward_flops"] == sum(ours)


@pytest.mark.parametrize("name,freeze", [("yolov5s", 10), ("yolov5n", 3), ("yolov5s-ghost", 5)])
def test_backward_flops_with_freeze(name, freeze):
    img = 64
    rep = flopscope.profile(name, img=img, train=True, freeze=freeze)
    d = rep.to_dict()
    ours = [r["backward_flops"] for r in d["layers"]]
    assert ours == _oracle_backward(name, img, freeze)
    assert all(r["grad_weight_macs"] == 0 and r["trainable_params"] == 0 for r in d["layers"][:freeze])
    model = flopscope.build_model(name)
    frozen = sum(p.numel() for i in range(freeze) for p in model.model[i].parameters())
    assert d["totals"]["frozen_params"] == frozen
    assert d["totals"]["trainable_params"] == sum(p.numel() for p in model.parameters()) - frozen


def test_first_conv_has_no_grad_input():
    d = flopscope.profile("yolov5s", img=64, train=True).to_dict()
    first = d["layers"][0]
    assert first["grad_input_macs"] == 0 and first["grad_weight_macs"] == first["macs"]  # hand: dW = forward MACs
    assert d["layers"][1]["grad_input_macs"] == d["layers"][1]["grad_weight_macs"] == d["layers"][1]["macs"]
    assert first["train_flops"] == first["flops"] + first["backward_flops"]


def _oracle_saved_bytes(name, img, batch=1, autocast=None):
    torch.manual_seed(0)
    model = flopscope.build_model(name, device="cpu").train()
    skip = {p.untyped_storage().data_ptr() for p in model.parameters()} | \
        {b.untyped_storage().data_ptr() for b in model.buffers()}
    seen, keep = {}, []

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in skip and s.data_ptr() not in seen:
            seen[s.data_ptr()] = s.nbytes()
            keep.append(t)
        return t

    import contextlib

    amp = torch.autocast("cpu", dtype=autocast) if autocast else contextlib.nullcontext()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), amp:
        model(torch.randn(batch, model.ch, img, img))
    return sum(seen.values())


@pytest.mark.parametrize("name", ["yolov5n", "yolov5s-transformer", "yolov5s_iRMB", "yolov5s_BiLevelRoutingAttention",
                                  "yolo26n"])
def test_activation_bytes_equal_saved_tensors(name):
    img = 128
    ours = flopscope.profile(name, img=img, batch=2, train=True).to_dict()["totals"]["activation_bytes"]
    real = _oracle_saved_bytes(name, img, batch=2)
    assert abs(ours - real) <= 0.01 * real, (ours, real)


def test_amp_activation_bytes_equal_real_cpu_fp16_autocast():
    """--amp emulates CUDA's fp16 autocast on meta; the oracle is torch's own CPU autocast with dtype float16
    (supported on CPU by this torch, so no bfloat16 stand-in is needed): its op lists put conv / linear / matmul in
    fp16 as CUDA's do, and what a real training forward saves (saved_tensors_hooks; autocast's fp16 weight copies
    are not parameters, so they count) is what flopscope predicts."""
    ours = flopscope.profile("yolov5n", img=64, batch=2, train=True, amp=True).to_dict()["totals"]["activation_bytes"]
    real = _oracle_saved_bytes("yolov5n", 64, batch=2, autocast=torch.float16)
    assert abs(ours - real) <= 0.01 * real, (ours, real)


def test_optimizer_memory_by_hand():
    n = 7_235_389  # yolov5s params (YOLOv5's log)
    d = flopscope.profile("yolov5s", img=64, train=True, optimizer="adamw").to_dict()["train"]["memory"]
    assert d["params_bytes"] == 4 * n and d["grads_bytes"] == 4 * n and d["optimizer_bytes"] == 8 * n
    d = flopscope.profile("yolov5s", img=64, train=True, optimizer="sgd").to_dict()["train"]["memory"]
    assert d["optimizer_bytes"] == 4 * n


def test_max_batch_estimate_is_consistent():
    t = flopscope.profile("yolov5s", img=640, batch=1, train=True, gpu_mem="24GiB").to_dict()["train"]
    b = t["max_batch_estimate"]
    m = t["memory"]
    static = m["params_bytes"] + m["grads_bytes"] + m["optimizer_bytes"]
    need = lambda k: static + m["activation_bytes_fixed"] + k * m["activation_bytes_per_image"]  # noqa: E731
    assert need(b) <= 24 * 2**30 < need(b + 1)
    assert "estimate" in t["max_batch_note"]


def test_meta_only_no_memory_in_proportion_to_image():
    import tracemalloc

    tracemalloc.start()
    rep = train_profile(flopscope.build_model("yolov5s"), (2048, 2048), 1)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert rep.activation_bytes > 2 * 2**30  # what a real step would need
    assert peak < 200 * 2**20


def test_cli_train():
    code, out, err = run_cli(["model", "yolov5s", "--img", "64", "--train", "--freeze", "10", "--optimizer", "adamw",
                              "--gpu-mem", "24GiB", "--json", "-"])
    assert code == 0, err
    d = json.loads(out)
    assert {"backward_flops", "train_flops", "activation_bytes"} <= set(d["layers"][0]) and \
        {"backward_flops", "train_flops", "activation_bytes"} <= set(d["totals"])
    assert d["train"]["freeze"] == 10 and d["train"]["optimizer"] == "adamw" and d["train"]["max_batch_estimate"] > 0
    code, out, _ = run_cli(["model", "yolov5s", "--img", "64", "--train"])
    assert code == 0 and "backward" in out and "activations saved for backward" in out
    code, _, err = run_cli(["model", "yolov5s", "--train", "--optimizer", "adamx"])
    assert code == 2 and "--optimizer" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["model", "yolov5s", "--train", "--gpu-mem", "lots"])
    assert code == 2 and "--gpu-mem" in err
    code, _, err = run_cli(["model", "yolov5s", "--train", "--fuse"])
    assert code == 2 and "--fuse" in err
    code, _, err = run_cli(["model", "yolov5s", "--freeze", "3"])
    assert code == 2 and "--train" in err


# FlopCounterMode over a real ultralytics 8.4.190 training step (forward + backward of the real model in train mode,
# CPU, per layer), recorded by tools/record_ultralytics_train.py (ultralytics is never imported here)
UL_TRAIN = json.loads((Path(__file__).parent / "data" / "ultralytics_train.json").read_text())


@pytest.mark.parametrize("name", sorted(UL_TRAIN["models"]))
def test_ultralytics_backward_flops_equal_the_real_training_step(name):
    """Per layer: backward FLOPs = those of the real ultralytics model's training step (``@freezeN``: with the
    trainer's ``freeze=N``, the same rule as YOLOv5's ``--freeze``).  This checks the heads' training forward (raw predictions, no decode; the one-to-one set of YOLOv10 / YOLO26 on detached inputs; the
    YOLO26 semseg / keypoint-sigma branches; Classify's logits) as well as the backward rules."""
    rec = UL_TRAIN["models"][name]
    img, batch = UL_TRAIN["img"], UL_TRAIN["batch"]
    cfg, _, freeze = name.partition("@freeze")  # recorded with the trainer's freeze=N
    rep = train_profile(flopscope.build_model(cfg), (img, img), batch, freeze=int(freeze or 0))
    assert [r.backward_flops for r in rep.layers] == [r["bwd"] for r in rec["layers"]]


def test_train_caveats_come_from_the_modules(monkeypatch):
    """A verified Ultralytics config carries no caveat; a module whose train-mode forward is not its framework's
    training forward declares ``train_caveat`` (RT-DETR's decoder: ultralytics adds label-dependent denoising
    queries and a class head per decoder layer) and the report shows it once."""
    from flopscope.modules.c2f import C2f
    from flopscope.modules.ul_rtdetr import RTDETRDecoder

    assert "lower bound" in RTDETRDecoder.train_caveat and "denoising" in RTDETRDecoder.train_caveat
    d = flopscope.profile("yolov8n", img=64, train=True).to_dict()
    assert d["totals"]["backward_flops"] > 0 and not any(n.startswith("--train:") for n in d["notes"])
    monkeypatch.setattr(C2f, "train_caveat", "a stand-in caveat", raising=False)
    d = flopscope.profile("yolov8n", img=64, train=True).to_dict()
    assert [n for n in d["notes"] if n.startswith("--train:")] == ["--train: a stand-in caveat"]
