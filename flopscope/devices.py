"""The one ``--device`` parser, shared by every command that runs real forwards (bench, check, table)."""
from __future__ import annotations

import torch

from .errors import FlopscopeError

DEVICE_HELP = "cpu, cuda, cuda:N or auto (cuda when available)"


def resolve_device(device: str | None, default: str = "auto") -> str:
    """'auto' -> 'cuda' when available else 'cpu'; 'cpu', 'cuda', 'cuda:N' checked against what torch sees
    (a one-line error when CUDA is missing or N is out of range). ``None`` / '' mean ``default``."""
    d = (device or default).strip().lower()
    if d == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if d == "cpu":
        return "cpu"
    if d == "cuda" or (d.startswith("cuda:") and d[5:].isdigit()):
        if not torch.cuda.is_available():
            built = f"built with CUDA {torch.version.cuda}, but no GPU is visible" if torch.version.cuda else \
                "a CPU-only build"
            raise FlopscopeError(f"--device {device} requested but CUDA is not available (torch {torch.__version__}, "
                                 f"{built}); use --device cpu")
        if ":" in d and int(d[5:]) >= torch.cuda.device_count():
            raise FlopscopeError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) visible")
        return d
    raise FlopscopeError(f"--device must be cpu, cuda, cuda:N or auto, got {device!r}")
