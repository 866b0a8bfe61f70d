"""PNG (or any matplotlib format) figures: GFLOPs against image size (sweep), per-layer bars (model)."""
from __future__ import annotations

from pathlib import Path

from .errors import FlopscopeError
from .render import count_mark


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        raise FlopscopeError("plots need matplotlib (pip install matplotlib)") from None
    return plt


def _save(fig, path: str) -> str:
    plt = _pyplot()
    p = Path(path)
    try:
        fig.savefig(p, dpi=120, bbox_inches="tight")
    except (OSError, ValueError) as e:
        raise FlopscopeError(f"cannot write plot {path}: {getattr(e, 'strerror', None) or e}") from None
    finally:
        plt.close(fig)
    return str(p)


def plot_sweep(s, path: str, top: int = 5) -> str:
    """Total GFLOPs against image size (log-log), a dashed ∝ H·W reference, the ``top`` costliest
    layers at the largest size and every non-linear layer."""
    plt = _pyplot()
    sizes = [(h * w) ** 0.5 for h, w in s.sizes]
    labels = [f"{h}" if h == w else f"{h}x{w}" for h, w in s.sizes]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    total = [r.gflops for r in s.reports]
    ax.plot(sizes, total, "o-", color="black", lw=2.2, label=f"total (exponent {_fmt(s.exponent)})")
    if total and total[0] > 0:
        ref = [total[0] * (x / sizes[0]) ** 2 for x in sizes]
        ax.plot(sizes, ref, "--", color="grey", lw=1, label="∝ H·W from the smallest size")
    chosen = sorted(s.layers, key=lambda l: l.flops[-1], reverse=True)[:top]
    chosen += [l for l in s.layers if l.nonlinear and l not in chosen]
    for l in sorted(chosen, key=lambda l: l.index):
        if not any(l.flops):
            continue
        style = "s-" if l.nonlinear else ".-"
        ax.plot(sizes, [v / 1e9 for v in l.flops], style, lw=1.8 if l.nonlinear else 1,
                label=f"{l.index} {l.module} ({_fmt(l.exponent)}){' ≁' if l.nonlinear else ''}")
    if all(v > 0 for v in total):
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xticks(sizes)
    ax.set_xticklabels(labels)
    ax.minorticks_off()
    ax.set_xlabel("image size (pixels per side)")
    ax.set_ylabel(f"GFLOPs (2 x MACs, batch {s.batch})")
    ax.set_title(f"{s.model}: GFLOPs against image size")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def plot_model(report, path: str) -> str:
    """Per-layer bars: GFLOPs (stacked by conv / linear / matmul, element-wise apart) and params."""
    plt = _pyplot()
    layers = report.layers
    n = len(layers)
    x = list(range(n))
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(max(8.0, 0.32 * n + 2), 7), sharex=True)
    bottom = [0.0] * n
    for kind, color in (("conv", "#4878d0"), ("linear", "#ee854a"), ("matmul", "#d65f5f")):
        vals = [2 * l.macs_by_kind.get(kind, 0) / 1e9 for l in layers]
        if any(vals):
            a1.bar(x, vals, bottom=bottom, color=color, label=f"{kind} (2 x MACs)")
            bottom = [b + v for b, v in zip(bottom, vals)]
    ew = [l.elementwise_flops / 1e9 for l in layers]
    if any(ew):
        a1.bar(x, ew, bottom=bottom, color="#8c8c8c", label="element-wise")
    a1.set_ylabel("GFLOPs")
    h, w = report.img
    a1.set_title(f"{report.model} @ {h}x{w}, batch {report.batch}: {report.gflops:.2f} GFLOPs, "
                 f"{report.params / 1e6:.2f} M params")
    a1.legend(fontsize=8)
    a1.grid(True, axis="y", alpha=0.3)
    a2.bar(x, [l.params / 1e6 for l in layers], color="#6acc64")
    a2.set_ylabel("params (M)")
    a2.grid(True, axis="y", alpha=0.3)
    a2.set_xticks(x)
    a2.set_xticklabels([f"{l.index} {l.module}" + count_mark(l.notes) for l in layers],
                       rotation=90, fontsize=7)
    return _save(fig, path)
