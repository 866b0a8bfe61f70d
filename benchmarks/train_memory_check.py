"""Device check: flopscope's training-memory estimate against one real training step on a GPU.

    python benchmarks/train_memory_check.py                       # yolov5n, yolov5s, yolov5s-transformer @ 640, batch 16
    python benchmarks/train_memory_check.py --cfg yolov5s --batch 32 --amp --optimizer adamw --json out.json

For each config: the estimate (``flopscope.profile(cfg, train=True)``, meta device) and, on CUDA, one real
training step (train mode, forward, a stand-in loss = sum of the head outputs' means, backward, optimizer step):

* ``measured_activation_bytes`` = ``torch.cuda.max_memory_allocated`` during forward + backward minus the memory
  allocated before the forward (params + optimizer state; grads are set to None before the step, so the peak
  also holds the gradients being written and backward's transient buffers);
* ``measured_step_peak`` = ``max_memory_allocated`` over the whole step (second step, so the optimizer state
  exists), to compare with the estimate's params + grads + optimizer state + activations;
* the saved-tensor bytes of the same CUDA forward (``saved_tensors_hooks``), to compare with
  ``activation_bytes`` exactly (the acceptance definition), independent of the allocator.

Without CUDA it is a dry run: it prints the estimates, runs the same step once on CPU at 64 px (to show the
script works), says that there is no CUDA and exits 0.
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def saved_bytes(model, x, amp: bool) -> int:
    import torch

    skip = {p.untyped_storage().data_ptr() for p in model.parameters()} | \
        {b.untyped_storage().data_ptr() for b in model.buffers()}
    seen, keep = {}, []

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in skip and s.data_ptr() not in seen:
            seen[s.data_ptr()] = s.nbytes()
            keep.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
            torch.autocast(x.device.type, dtype=torch.float16, enabled=amp):
        model(x)
    return sum(seen.values())


def _outputs(out):
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in _outputs(v)]
    if isinstance(out, dict):  # the Ultralytics heads' training predictions
        return [t for v in out.values() for t in _outputs(v)]
    return []


def one_step(model, opt, x, amp: bool, scaler, device) -> dict:
    import torch

    cuda = device.type == "cuda"
    opt.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
        out = model(x)
        loss = sum(t.float().mean() for t in _outputs(out))
    if scaler is not None:
        scaler.scale(loss).backward()
    else:
        loss.backward()
    if cuda:
        torch.cuda.synchronize()
        fwd_bwd_peak = torch.cuda.max_memory_allocated()
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()
    if not cuda:
        return {}
    torch.cuda.synchronize()
    return {"before_forward": before, "fwd_bwd_peak": fwd_bwd_peak, "step_peak": torch.cuda.max_memory_allocated()}


def check(cfg: str, img: int, batch: int, amp: bool, optimizer: str, device) -> dict:
    import torch

    import flopscope

    rep = flopscope.profile(cfg, img=img, batch=batch, train=True, amp=amp, optimizer=optimizer)
    d = rep.to_dict()
    mem = d["train"]["memory"]
    est_static = mem["params_bytes"] + mem["grads_bytes"] + mem["optimizer_bytes"]
    row = {"model": cfg, "img": img, "batch": batch, "amp": amp, "optimizer": optimizer,
           "estimate": {"activation_bytes": mem["activation_bytes"], "static_bytes": est_static,
                        "total_bytes": mem["total_bytes"]}}
    run_img, run_batch = (img, batch) if device.type == "cuda" else (64, 1)
    torch.manual_seed(0)
    model = flopscope.build_model(cfg, device=device).train()
    if optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.937, nesterov=True)
    scaler = torch.amp.GradScaler(device.type) if amp and device.type == "cuda" else None
    x = torch.randn(run_batch, model.ch, run_img, run_img, device=device)
    use_amp = amp and device.type == "cuda"
    one_step(model, opt, x, use_amp, scaler, device)  # creates the optimizer state
    m = one_step(model, opt, x, use_amp, scaler, device)
    saved = saved_bytes(model, x, use_amp)
    if device.type != "cuda":
        row["dry_run"] = f"CPU step at {run_img} px, batch {run_batch}: ran"
        return row
    act = m["fwd_bwd_peak"] - m["before_forward"]
    row["measured"] = {"saved_tensor_bytes": saved, "activation_peak_bytes": act, "step_peak_bytes": m["step_peak"],
                       "before_forward_bytes": m["before_forward"]}
    row["ratio"] = {"saved_vs_estimate": saved / mem["activation_bytes"],
                    "activation_peak_vs_estimate": act / mem["activation_bytes"],
                    "step_peak_vs_estimate_total": m["step_peak"] / mem["total_bytes"]}
    del model, opt, x
    torch.cuda.empty_cache()
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cfg", nargs="+", default=["yolov5n", "yolov5s", "yolov5s-transformer"])
    ap.add_argument("--img", type=int, default=640)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--amp", action="store_true", help="fp16 autocast + GradScaler (and the --amp estimate)")
    ap.add_argument("--optimizer", default="sgd", choices=["sgd", "adamw"])
    ap.add_argument("--json", default=None, help="write the rows to this file")
    a = ap.parse_args(argv)

    import torch

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    env = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0) if cuda else "cpu",
           "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    rows = []
    for cfg in a.cfg:
        for amp in ([False, True] if a.amp else [False]):
            row = check(cfg, a.img, a.batch, amp, a.optimizer, device)
            rows.append(row)
            e = row["estimate"]
            line = f"{cfg} @ {a.img}, batch {a.batch}{', amp' if amp else ''}: estimate activations " \
                   f"{e['activation_bytes'] / 2**20:.1f} MiB, total {e['total_bytes'] / 2**20:.1f} MiB"
            if "measured" in row:
                r = row["ratio"]
                line += (f"; measured saved tensors x{r['saved_vs_estimate']:.3f}, activation peak "
                         f"x{r['activation_peak_vs_estimate']:.3f}, step peak x{r['step_peak_vs_estimate_total']:.3f}")
            print(line, flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"environment": env, "rows": rows}, f, indent=1)
    if not cuda:
        print("no CUDA: dry run only (estimates printed, one CPU step at 64 px ran); "
              "run this on a GPU machine to compare with torch.cuda.max_memory_allocated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
