"""Memory estimates, so that real-compute commands (check, bench) refuse sizes that cannot fit
instead of being killed.  The default analytic path (meta device) never allocates activations."""
from __future__ import annotations

import os
from math import prod

from .errors import FlopscopeError


def _numel(shape) -> int:
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple)):
        return sum(_numel(s) for s in shape)
    if isinstance(shape, (list, tuple)) and all(isinstance(v, int) for v in shape):
        return prod(shape)
    return 0


def estimate_bytes(report, dtype_bytes: int = 4) -> int:
    """Upper bound of a real forward's memory: weights + every layer output kept alive + the input."""
    acts = sum(_numel(r.out_shape) for r in report.layers)
    h, w = report.img
    inp = report.batch * 3 * h * w
    return (report.params + acts + inp) * dtype_bytes


def available_bytes(device: str = "cpu") -> int:
    if str(device).startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info()
        return int(free)
    try:  # Linux: MemAvailable counts the page cache the kernel would reclaim (MemFree does not: after installing
        # torch, most of the memory can be cache, and a free-pages figure refuses forwards that fit)
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def check_fits(report, device: str = "cpu", dtype_bytes: int = 4, factor: float = 2.0) -> int:
    """Raise a clear error when a real forward would not fit; returns the estimate in bytes.

    ``factor`` covers temporaries inside modules (attention maps, im2col buffers, counter overhead).
    """
    need = int(estimate_bytes(report, dtype_bytes) * factor)
    have = available_bytes(device)
    if need > have:
        raise FlopscopeError(
            f"a real forward of {report.model} at {report.img[0]}x{report.img[1]}, batch {report.batch} needs about "
            f"{need / 2**30:.1f} GiB ({device}), but only {have / 2**30:.1f} GiB are free; use a smaller --img or "
            f"--batch (the analytic count, `flopscope model`, needs no real memory)")
    return need
