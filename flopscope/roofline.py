"""Roofline figures per YAML layer: bytes moved, arithmetic intensity, the bound time on a device.

Definitions (also in docs/bench.md):

* **FLOPs** of a layer = the Report's MAC-kind FLOPs (2 x conv/linear/matmul MACs) **plus** its
  element-wise FLOPs (norms, activations, pooling, upsampling, adds/muls, per ``ELEMENTWISE_COST``).
* **Bytes** of a layer = every input tensor read once + every output tensor written once + the
  layer's parameters read once, all at the run's dtype (4 bytes fp32, 2 fp16/bf16).  This is the
  compulsory (ideally fused) traffic: intermediates inside a block (Conv's conv -> BN -> SiLU
  round trips in eager PyTorch, C3's inner tensors) are *not* counted, so the bound is a lower bound.
* **Intensity** = FLOPs / bytes (FLOP/B).
* **Bound time** = max(FLOPs / peak FLOP/s, bytes / peak B/s); the layer is *compute-bound* when
  the first term is the larger, else *memory-bound*.  One peak per dtype is applied to all the
  layer's FLOPs (element-wise work included), so the bound stays a lower bound.
* **Achieved %** = bound time / measured time x 100 (100 % = at the roofline).

Peaks are dense (non-sparse) figures from vendor documents; ``DEVICES`` names each source.  For
fp32 on GPUs with TF32 tensor cores, the TF32 peak is used while ``torch.backends.cudnn.allow_tf32``
is on (PyTorch's default: fp32 convolutions then run as TF32), else the plain FP32 (CUDA-core) peak.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

from .errors import FlopscopeError, suggestion

DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}


@dataclass(frozen=True)
class DeviceSpec:
    """Peak dense throughput (TFLOP/s) per precision and memory bandwidth (GB/s = 1e9 B/s)."""

    name: str
    tflops: dict  # keys among fp32 (CUDA cores), tf32, fp16, bf16 (tensor cores, dense)
    gbps: float
    source: str
    aliases: tuple = ()
    notes: str = ""


# Sparse ("with sparsity", marked *) datasheet figures are halved to the dense figure.
DEVICES: dict[str, DeviceSpec] = {d.name: d for d in (
    DeviceSpec("H100", {"fp32": 67.0, "tf32": 494.5, "fp16": 989.5, "bf16": 989.5}, 3350.0,
               "NVIDIA H100 Tensor Core GPU datasheet, H100 SXM column (TF32 989*, BF16/FP16 1979* TFLOPS with "
               "sparsity -> dense halves; 3.35 TB/s HBM3); https://www.nvidia.com/en-us/data-center/h100/",
               aliases=("H100 SXM", "H100-SXM", "H100 SXM5", "H100 80GB HBM3")),
    DeviceSpec("H100 PCIe", {"fp32": 51.0, "tf32": 378.0, "fp16": 756.5, "bf16": 756.5}, 2000.0,
               "NVIDIA H100 Tensor Core GPU datasheet, H100 PCIe column (TF32 756*, BF16/FP16 1513* with "
               "sparsity -> dense halves; 2 TB/s HBM2e); https://www.nvidia.com/en-us/data-center/h100/",
               aliases=("H100-PCIe", "H100PCIe")),
    DeviceSpec("H200", {"fp32": 67.0, "tf32": 494.5, "fp16": 989.5, "bf16": 989.5}, 4800.0,
               "NVIDIA H200 Tensor Core GPU datasheet, H200 SXM column (TF32 989*, BF16/FP16 1979* with "
               "sparsity -> dense halves; 4.8 TB/s HBM3e); https://www.nvidia.com/en-us/data-center/h200/",
               aliases=("H200 SXM", "H200-SXM", "H200 141GB")),
    DeviceSpec("A100", {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0}, 2039.0,
               "NVIDIA A100 Tensor Core GPU datasheet, A100 80GB SXM column (TF32 156, BF16/FP16 312 dense; "
               "2,039 GB/s HBM2e); https://www.nvidia.com/en-us/data-center/a100/",
               aliases=("A100 SXM", "A100-SXM4-80GB", "A100 80GB", "A100-SXM"),
               notes="A100 80GB PCIe: 1,935 GB/s; A100 40GB: 1,555 GB/s (entries 'A100 PCIe', 'A100 40GB')"),
    DeviceSpec("A100 PCIe", {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0}, 1935.0,
               "NVIDIA A100 Tensor Core GPU datasheet, A100 80GB PCIe column (1,935 GB/s); "
               "https://www.nvidia.com/en-us/data-center/a100/",
               aliases=("A100-PCIe", "A100 80GB PCIe", "A100-PCIE-80GB")),
    DeviceSpec("A100 40GB", {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0}, 1555.0,
               "NVIDIA A100 Tensor Core GPU datasheet, A100 40GB columns (1,555 GB/s HBM2); "
               "https://www.nvidia.com/en-us/data-center/a100/",
               aliases=("A100-SXM4-40GB", "A100-PCIE-40GB", "A100 SXM4 40GB")),
    DeviceSpec("V100", {"fp32": 15.7, "fp16": 125.0}, 900.0,
               "NVIDIA Tesla V100 datasheet, V100 SXM2 column (FP32 15.7, Tensor (mixed-precision) 125 TFLOPS; "
               "900 GB/s HBM2); https://www.nvidia.com/en-us/data-center/v100/",
               aliases=("V100 SXM2", "Tesla V100", "V100-SXM2", "Tesla V100-SXM2"),
               notes="no TF32/BF16 tensor cores; V100 PCIe: FP32 14, Tensor 112 TFLOPS"),
    DeviceSpec("L4", {"fp32": 30.3, "tf32": 60.0, "fp16": 121.0, "bf16": 121.0}, 300.0,
               "NVIDIA L4 Tensor Core GPU datasheet (FP32 30.3; TF32 120*, BF16/FP16 242* with sparsity -> dense "
               "halves; 300 GB/s GDDR6); https://www.nvidia.com/en-us/data-center/l4/"),
    DeviceSpec("RTX 4090", {"fp32": 82.6, "tf32": 82.6, "fp16": 165.2, "bf16": 165.2}, 1008.0,
               "NVIDIA Ada GPU Architecture whitepaper, Appendix A (GeForce RTX 4090: FP32 82.6; TF32 82.6; "
               "FP16/BF16 tensor with FP32 accumulate 165.2 dense; 1,008 GB/s GDDR6X); "
               "https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf",
               aliases=("GeForce RTX 4090", "RTX4090", "4090"),
               notes="FP16 with FP16 accumulate is 330.3 TFLOPS; PyTorch accumulates in FP32"),
    DeviceSpec("RTX 3090", {"fp32": 35.6, "tf32": 35.6, "fp16": 71.0, "bf16": 71.0}, 936.0,
               "NVIDIA Ampere GA102 GPU Architecture whitepaper, Table 9 (GeForce RTX 3090: FP32 35.6; TF32 35.6; "
               "FP16/BF16 tensor with FP32 accumulate 71 dense; 936 GB/s GDDR6X); "
               "https://www.nvidia.com/content/PDF/nvidia-ampere-ga-102-gpu-architecture-whitepaper-v2.pdf",
               aliases=("GeForce RTX 3090", "RTX3090", "3090"),
               notes="FP16 with FP16 accumulate is 142 TFLOPS; PyTorch accumulates in FP32"),
    DeviceSpec("T4", {"fp32": 8.1, "fp16": 65.0}, 320.0,
               "NVIDIA T4 Tensor Core GPU datasheet (FP32 8.1, mixed-precision FP16/FP32 65 TFLOPS; "
               "320 GB/s GDDR6); https://www.nvidia.com/en-us/data-center/tesla-t4/",
               aliases=("Tesla T4",), notes="no TF32/BF16 tensor cores"),
    DeviceSpec("Jetson Orin", {"fp32": 5.3, "tf32": 21.3, "fp16": 42.5, "bf16": 42.5}, 204.8,
               "NVIDIA Jetson AGX Orin Series Technical Brief v1.2 (AGX Orin 64GB GPU: 2048 CUDA cores, 5.3 FP32 "
               "TFLOPS, 64 tensor cores, 170 sparse INT8 TOPS; 204.8 GB/s LPDDR5); FP16/BF16 dense = 170 / 2 "
               "(sparsity) / 2 (INT8->FP16) = 42.5, TF32 half of that (derived, not printed in the brief); "
               "https://developer.nvidia.com/embedded/jetson-agx-orin",
               aliases=("Jetson AGX Orin", "AGX Orin", "Orin", "Jetson AGX Orin 64GB"),
               notes="GPU only (DLA excluded); MAXN power mode"),
)}


def _norm(s: str) -> str:
    return "".join(ch for ch in s.lower() if ch.isalnum())


def find_device(name: str) -> DeviceSpec:
    """A table entry by name or alias (case, spaces and dashes ignored)."""
    key = _norm(name.removeprefix("NVIDIA ").removeprefix("nvidia "))
    for d in DEVICES.values():
        if key in {_norm(n) for n in (d.name, *d.aliases)}:
            return d
    raise FlopscopeError(f"--gpu {name!r} is not in the device table ({', '.join(DEVICES)})"
                         f"{suggestion(name, DEVICES)}; give --peak-tflops and --peak-gbps instead")


def detect_device(cuda_name: str | None) -> DeviceSpec | None:
    """Map ``torch.cuda.get_device_name()`` (e.g. 'NVIDIA H100 80GB HBM3') to a table entry."""
    if not cuda_name:
        return None
    n = _norm(cuda_name)
    if "nvl" in n:  # H100 NVL / H200 NVL: other clocks and bandwidth, not in the table
        return None
    if "h200" in n:
        return DEVICES["H200"]
    if "h100" in n:
        return DEVICES["H100 PCIe"] if "pcie" in n else DEVICES["H100"]
    if "a100" in n:
        if "40gb" in n:
            return DEVICES["A100 40GB"]
        return DEVICES["A100 PCIe"] if "pcie" in n else DEVICES["A100"]
    for key, pat in (("V100", "v100"), ("RTX 4090", "4090"), ("RTX 3090", "3090"), ("Jetson Orin", "orin")):
        if pat in n:
            return DEVICES[key]
    for key, pat in (("L4", "l4"), ("T4", "t4")):  # short names: only as the last word ('NVIDIA L4', 'Tesla T4')
        if n.endswith(pat):
            return DEVICES[key]
    return None


@dataclass
class Peak:
    """The peaks a roofline is drawn with."""

    name: str
    tflops: float
    gbps: float
    precision: str  # which column of the table (fp32, tf32, fp16, bf16) or 'given'
    source: str
    notes: list = field(default_factory=list)

    @property
    def ridge(self) -> float:
        """Intensity (FLOP/B) where compute and memory bounds meet."""
        return self.tflops * 1e12 / (self.gbps * 1e9)

    def to_dict(self) -> dict:
        return {"name": self.name, "tflops": self.tflops, "gbps": self.gbps, "precision": self.precision,
                "ridge_flop_per_byte": self.ridge, "source": self.source, "notes": list(self.notes)}


def resolve_peak(dtype: str, gpu: str | None = None, detected: str | None = None, peak_tflops: float | None = None,
                 peak_gbps: float | None = None, allow_tf32: bool = True, notes: list | None = None) -> Peak | None:
    """The peak for a run: ``--gpu`` (table) or the detected CUDA device name, each figure overridden by an
    explicit ``--peak-tflops`` / ``--peak-gbps``.  None when nothing is known (e.g. CPU without those
    options); the reason is appended to ``notes``."""
    notes = [] if notes is None else notes
    for v, opt in ((peak_tflops, "--peak-tflops"), (peak_gbps, "--peak-gbps")):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1e7):
            raise FlopscopeError(f"{opt} must be a positive number, got {v!r}")
    spec = find_device(gpu) if gpu else detect_device(detected)
    if spec is None:
        if peak_tflops is None and peak_gbps is None:
            notes.append("no roofline bound: the device is not in the table (give --gpu NAME, or --peak-tflops and "
                         "--peak-gbps); bytes and intensity are still shown")
            return None
        if peak_tflops is None or peak_gbps is None:
            raise FlopscopeError("give both --peak-tflops and --peak-gbps (or --gpu NAME from the device table)")
        return Peak("given", float(peak_tflops), float(peak_gbps), "given", "--peak-tflops/--peak-gbps")
    own: list[str] = []
    precision = dtype
    if dtype == "fp32" and allow_tf32 and "tf32" in spec.tflops:
        precision = "tf32"
        own.append("fp32 uses the TF32 tensor-core peak: torch.backends.cudnn.allow_tf32 is on (PyTorch's default), "
                   "so fp32 convolutions run as TF32")
    tflops = spec.tflops.get(precision)
    if tflops is None and peak_tflops is None:
        notes.append(f"no roofline bound: {spec.name} has no {dtype} peak in the table (no {dtype} tensor cores); "
                     f"give --peak-tflops to draw one")
        return None
    if spec.notes:
        own.append(spec.notes)
    name = spec.name
    if peak_tflops is not None or peak_gbps is not None:
        own.append("overridden by " + " and ".join(o for o, v in (("--peak-tflops", peak_tflops),
                                                                  ("--peak-gbps", peak_gbps)) if v is not None))
        name = f"{spec.name} (overridden)"
    return Peak(name, float(peak_tflops if peak_tflops is not None else tflops),
                float(peak_gbps if peak_gbps is not None else spec.gbps),
                "given" if peak_tflops is not None else precision, spec.source, own)


# ----------------------------------------------------------------------------------------- per-layer figures
def _numel(shape) -> int:
    if isinstance(shape, (list, tuple)) and shape and all(isinstance(v, int) for v in shape):
        return prod(shape)
    if isinstance(shape, (list, tuple)):
        return sum(_numel(s) for s in shape)
    return 0


def input_shapes(report, ch: int = 3) -> list:
    """Each layer's input shape(s), following ``from`` as the model's forward does."""
    x = (report.batch, ch, report.img[0], report.img[1])
    outs: list = []
    ins: list = []
    from .engine import layer_inputs

    for r in report.layers:
        xin = layer_inputs(r.f, x, outs)
        ins.append(xin)
        x = r.out_shape
        outs.append(x)
    return ins


def layer_bytes(in_shape, out_shape, params: int, dtype_bytes: int) -> dict:
    bi, bo, bw = _numel(in_shape) * dtype_bytes, _numel(out_shape) * dtype_bytes, params * dtype_bytes
    return {"bytes_in": bi, "bytes_out": bo, "bytes_weights": bw, "bytes": bi + bo + bw}


def bound(flops: float, nbytes: float, peak: Peak | None) -> dict:
    """Roofline time (ms) of ``flops`` FLOPs moving ``nbytes`` bytes."""
    if peak is None:
        return {"compute_ms": None, "memory_ms": None, "bound_ms": None, "bound": None}
    tc = flops / (peak.tflops * 1e12) * 1e3
    tm = nbytes / (peak.gbps * 1e9) * 1e3
    return {"compute_ms": tc, "memory_ms": tm, "bound_ms": max(tc, tm), "bound": "compute" if tc >= tm else "memory"}


def layer_rooflines(report, dtype: str = "fp32", peak: Peak | None = None, ch: int = 3) -> list[dict]:
    """One dict per YAML layer: FLOPs, bytes, intensity and (with a peak) the bound."""
    if dtype not in DTYPE_BYTES:
        raise FlopscopeError(f"--dtype must be one of {', '.join(DTYPE_BYTES)}, got {dtype!r}")
    nb = DTYPE_BYTES[dtype]
    total_flops = sum(r.flops + r.elementwise_flops for r in report.layers) or 1
    rows = []
    for r, xin in zip(report.layers, input_shapes(report, ch)):
        fl = r.flops + r.elementwise_flops
        b = layer_bytes(xin, r.out_shape, r.params, nb)
        row = {"index": r.index, "module": r.module, "mac_flops": r.flops, "elementwise_flops": r.elementwise_flops,
               "flops": fl, **b, "intensity": fl / b["bytes"] if b["bytes"] else None,
               "flops_pct": 100.0 * fl / total_flops}
        row.update(bound(fl, b["bytes"], peak))
        row.update({"measured_ms": None, "latency_pct": None, "achieved_pct": None})
        rows.append(row)
    total_bound = sum(r["bound_ms"] for r in rows) if peak is not None and rows and rows[0]["bound_ms"] is not None \
        else None
    for row in rows:
        row["bound_pct"] = 100.0 * row["bound_ms"] / total_bound if total_bound else None
    return rows


def attach_measured(rows: list[dict], measured_ms: list[float]) -> None:
    """Add measured per-layer times, their share, and achieved % of the bound."""
    total = sum(measured_ms) or 1.0
    for row, t in zip(rows, measured_ms):
        row["measured_ms"] = t
        row["latency_pct"] = 100.0 * t / total
        row["achieved_pct"] = 100.0 * row["bound_ms"] / t if row.get("bound_ms") is not None and t > 0 else None


def totals(rows: list[dict]) -> dict:
    fl = sum(r["flops"] for r in rows)
    nb = sum(r["bytes"] for r in rows)
    bounds = [r["bound_ms"] for r in rows]
    return {"flops": fl, "bytes": nb, "intensity": fl / nb if nb else None,
            "bound_ms": sum(bounds) if rows and None not in bounds else None,
            "compute_bound_layers": sum(r["bound"] == "compute" for r in rows),
            "memory_bound_layers": sum(r["bound"] == "memory" for r in rows)}


def disagreements(rows: list[dict], factor: float = 2.0, min_pct: float = 0.5) -> list[dict]:
    """Layers whose share of time (measured, else roofline-bound) is at least ``factor`` x their share
    of FLOPs and at least ``min_pct`` % of the total: where FLOPs mislead about latency."""
    key = "latency_pct" if rows and rows[0].get("latency_pct") is not None else "bound_pct"
    out = []
    for r in rows:
        share = r.get(key)
        if share is None or share < min_pct:
            continue
        if share >= factor * r["flops_pct"]:
            out.append({"index": r["index"], "module": r["module"], "flops_pct": r["flops_pct"], "time_pct": share,
                        "time_from": "measured" if key == "latency_pct" else "roofline bound",
                        "intensity": r["intensity"]})
    return out
