"""The one table of unit descriptions that every JSON record's ``units`` object is drawn from.

Each command picks the keys it writes (:func:`pick`), under the JSON key it uses; the strings are the
documented JSON text, so change one here and every command that writes it changes with it.
"""
from __future__ import annotations

DESCRIPTIONS: dict[str, str] = {
    "fused": "true: counted as the framework's fuse() leaves the model (BatchNorm folded into convs)",
    # counts and totals
    "count": "count",
    "params_m": "params / 1e6",
    "macs": "multiply-accumulates (conv + linear + matmul); bias adds not counted",
    "macs_per_batch": "multiply-accumulates (conv + linear + matmul), per batch",
    "flops": "2 x macs",
    "flops_per_batch": "FLOPs = 2 x macs, per batch",
    "elementwise_flops": "FLOPs of norms, activations, pooling, upsampling, softmax, adds/muls (per-element table)",
    "elementwise_flops_per_batch": "element-wise FLOPs, per batch",
    "elementwise_flops_per_batch_listed": "element-wise FLOPs (norms, activations, pooling, adds ...), per batch",
    "model_info_gflops": "what YOLOv5's model_info prints: thop MACs on a stride-sized probe x 2 x (H*W / probe^2), "
                         "in G (Ultralytics-dialect configs: what their model.info() prints, see "
                         "model_info_current_gflops)",
    "model_info_gflops_short": "GFLOPs as YOLOv5's model_info prints them",
    "model_info_current_gflops": "what current Ultralytics and current YOLOv5 print in model.info(): ultralytics' "
                                 "get_flops (ultralytics-thop 2.x MACs x 2, stride-aware: extrapolated from proxies "
                                 "one stride tall), in G",
    "model_info_current_gflops_short": "GFLOPs as current Ultralytics / YOLOv5 model.info() prints them "
                                       "(ultralytics-thop 2.x)",
    # flopscope layer
    "terms.value": "MACs for kinds conv/linear/matmul, FLOPs for kind elementwise (see 'unit')",
    "terms.share": "fraction of the layer's MACs (MAC terms) or of its element-wise FLOPs (element-wise terms)",
    "terms.values": "the term's value at each of 'sizes' (input H, W), batch as given",
    # flopscope diff
    "delta": "B - A",
    "pct": "100 x (B - A) / A; null when A is 0",
    # flopscope sweep
    "img": "[H, W] in pixels, as counted (rounded up to the max stride)",
    "exponent": "least-squares slope of log(flops) vs log(H*W): 1 = proportional to H*W; null when not defined",
    "elementwise_exponent": "the same for element-wise FLOPs",
    # flopscope table
    "gflops": "2 x MACs (conv + linear + matmul) / 1e9, per image (batch 1)",
    "elementwise_gflops": "element-wise FLOPs / 1e9, per image",
    "yolov5_gflops": "what YOLOv5's model_info prints at this image size (thop on a stride-sized probe, scaled; "
                     "Ultralytics-dialect configs: what their model.info() prints)",
    "table.latency_ms": "median milliseconds per forward of one batch (flopscope bench); null when not measured",
    "fps": "images per second = batch x 1000 / latency_ms; null when not measured",
    # --train (flopscope model --train): added to a report's units
    "backward_macs": "multiply-accumulates of the backward conv / linear / matmul ops, per batch",
    "backward_flops": "2 x backward_macs, per batch",
    "backward_elementwise_flops": "FLOPs of the backward norm / activation / pooling / add ops (per-element table)",
    "train_flops": "forward flops (train mode) + backward_flops, per batch (2 x MACs; element-wise apart)",
    "activation_bytes": "bytes of the unique tensors autograd saves for backward (parameters and buffers "
                        "excluded), per batch",
    "memory": "bytes",
    # flopscope check (its "units" is this one string)
    "check.columns": "all counter columns in MACs (multiply-accumulates): fvcore, thop and ptflops report MACs; "
                     "FlopCounterMode reports FLOPs = 2 per MAC and is halved here",
    # flopscope bench
    "latency_ms": "milliseconds per forward of the whole batch; p10/p90 by linear interpolation; cv = sample std / mean",
    "throughput_img_s": "batch / median latency, images per second",
    "peak_memory_bytes": "bytes; CUDA: torch.cuda.max_memory_allocated since a reset before warm-up (weights, input "
                         "and activations); CPU: process peak RSS (ru_maxrss), whole process since start",
    "params_mb": "parameters x bytes per element at the dtype / 1e6",
    "bench.flops": "2 x MACs (conv + linear + matmul) + element-wise FLOPs",
    "bytes": "inputs + outputs + parameters of the layer at the dtype (compulsory traffic; no intra-block "
             "intermediates)",
    "intensity": "FLOPs / bytes (FLOP/B)",
    "bound_ms": "max(flops / peak FLOP/s, bytes / peak B/s) in milliseconds; the model's bound is the sum over layers",
    "achieved_pct": "bound_ms / measured_ms x 100",
    "gbps": "1e9 bytes per second",
    "tflops": "1e12 FLOP per second, dense (non-sparse)",
}


#: labels of the model_info figures in human output (render, table)
LABELS: dict[str, str] = {
    "model_info_legacy": "YOLOv5 model_info would print",
    "model_info_legacy_how": "its {p}x{p} probe x area, thop conventions",
    "model_info_ultralytics": "Ultralytics model.info() would print",
    "model_info_current": "current YOLOv5 (model_info from ultralytics) would print",
    "model_info_current_how": "ultralytics-thop 2.x, stride-aware",
    "table_current": "GFLOPs (model.info, thop 2.x)",
}


def pick(*keys) -> dict[str, str]:
    """A ``units`` object: each key is a DESCRIPTIONS name written under the same JSON key, or a pair
    ``(json_key, name)``; the order is kept."""
    out = {}
    for k in keys:
        json_key, name = (k, k) if isinstance(k, str) else k
        out[json_key] = DESCRIPTIONS[name]
    return out
