"""thop: ``thop.profile(..., ret_layer_info=True)`` on a copy of the model; rules by installed version.

``thop`` 0.1.x (the legacy ``thop`` package, behind YOLOv5's old ``model_info`` figure)
    Hooks modules by *exact* type: ``nn.Conv2d``/``nn.Linear`` called as modules count their MACs (no bias),
    BatchNorm 2/element x2 when affine, ``nn.Upsample`` 1 (nearest) or 11 (bilinear) per output element,
    ``nn.Softmax`` 3L-1 per row, ``AvgPool2d`` 1 per output, ``AdaptiveAvgPool2d`` (k+1) per output, PReLU
    1/element; other activations count 0 and functional ops (``F.conv2d``, ``mm``, ``@``, ``einsum``,
    ``grid_sample``, ``nn.MultiheadAttention``'s functional core) are invisible.  A hooked module's count
    replaces its subtree's.
``ultralytics-thop`` 2.x (our dependency; what YOLOv5 and Ultralytics install) -- see ``THOP2_RULES``.

Which one is installed is read from the distribution that provides the importable ``thop`` module (both
install a top-level ``thop``).  :func:`thop_macs` (the legacy model_info emulation) always uses the 0.1.x rules.
"""
from __future__ import annotations

import torch
import torch.nn as nn

import copy
import sys
from importlib import metadata

from ..cost import MAC_KINDS, Term
from . import CounterFailed, CounterRun, boundary_hooks, between_marks, counter, last_error, layers, quiet
from .rules import (UNKNOWN, Rule, affine, exact, fallback_elementwise, fallback_term, has_bias, mha_dims, not_hooked, r, same_size_pool,
                    softmax_rows, table)


# --------------------------------------------------------------------------------------------------
# thop 0.1.x
def _thop_conv(t, m):
    return t.value if exact(m, "Conv2d") else 0


def _thop_convT(t, m):
    if m is None:
        return None
    kh, kw = m.kernel_size
    return t.elems * (m.in_channels // m.groups) * kh * kw


THOP_RULES: dict[str, Rule] = {
    "Conv2d": r(_thop_conv, not_hooked("thop", "Conv2d")),
    "ConvTranspose2d": r(_thop_convT, "thop: ConvTranspose2d counted per output pixel (out x Cin/g x k²)"),
    "Linear": r(lambda t, m: t.value if exact(m, "Linear") else 0, not_hooked("thop", "Linear")),
    "BatchNorm2d": r(lambda t, m: 4 * t.elems, "thop: BatchNorm counted 4/element"),
    "BatchNorm1d": r(lambda t, m: 4 * t.elems, "thop: BatchNorm counted 4/element"),
    "BatchNorm2d.noaffine": r(lambda t, m: 2 * t.elems, "thop: BatchNorm (no affine) counted 2/element"),
    "BatchNorm1d.noaffine": r(lambda t, m: 2 * t.elems, "thop: BatchNorm (no affine) counted 2/element"),
    "LayerNorm": r(lambda t, m: (4 if affine(m) else 2) * t.elems, "thop: LayerNorm counted 4/element"),
    "Upsample.nearest": r(lambda t, m: t.elems, "thop: nearest upsample counted 1/element"),
    "Upsample.bilinear": r(lambda t, m: 11 * t.elems, "thop: bilinear upsample counted 11/element"),
    "Softmax": r(softmax_rows, "thop: nn.Softmax counted 3L-1 per row"),
    "AvgPool2d": r(lambda t, m: t.elems, "thop: AvgPool2d counted 1/output element"),
    "AdaptiveAvgPool2d": r(lambda t, m: t.value + t.elems, "thop: AdaptiveAvgPool2d counted (k+1)/output element"),
    "PReLU": r(lambda t, m: t.elems, "thop: PReLU counted 1/element"),
    "MultiheadAttention": r(lambda t, m: 0, "thop: nn.MultiheadAttention not hooked"),
}
_THOP_FALLBACK = r(lambda t, m: t.value, "thop: module without formula (assumed hooked conv/linear calls)")


def _thop_default(t: Term) -> Rule:
    if fallback_elementwise(t):
        return UNKNOWN
    if fallback_term(t):  # modules without a formula were counted by the fallback counter; assume module calls
        return _THOP_FALLBACK
    if t.kind in MAC_KINDS:
        return r(lambda t, m: 0, f"thop: {t.op} not hooked")
    return r(lambda t, m: 0)


# --------------------------------------------------------------------------------------------------
# thop 2.x (ultralytics-thop 2.2): rules found by reading and running ultralytics-thop 2.2.3
#   * module rules by the type's MRO (a subclass of nn.Conv2d / nn.Linear is counted), each module's rule
#     added to its children's (0.1.1: a hooked module replaced its subtree);
#   * nearest upsample 0, bilinear 11, bicubic 259 per output element; GroupNorm / InstanceNorm 2/element
#     (x2 affine); AvgPool2d one add per window input + one divide per output; LeakyReLU 0;
#   * nn.MultiheadAttention hooked: projections + q.kT + attn.v + softmax 3S-1 per row;
#   * functional products (torch.matmul, `@`, bmm, einsum of two operands, F.linear, SDPA,
#     F.multi_head_attention_forward) counted by a TorchFunctionMode -- in the total only, never in
#     ret_layer_info's per-layer tree -- and only outside modules that have a (non-zero) rule of their own;
#     torch.mm, baddbmm, F.conv2d, grid_sample and the other functionals are not counted.
THOP2 = "thop 2.x"

# module types with a non-zero rule in thop 2.x (functional products inside them are not counted)
_THOP2_HOOKED = (nn.modules.conv._ConvNd, nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.PReLU,
                 nn.Softmax, nn.LogSoftmax, nn.Softmin, nn.Softmax2d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                 nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.Linear, nn.Bilinear,
                 nn.Upsample, nn.RNNBase, nn.RNNCellBase, nn.MultiheadAttention, nn.Embedding)


def _thop2_hooked(m) -> bool:
    if isinstance(m, nn.modules.conv._ConvNd):
        return isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                              nn.ConvTranspose3d))  # a bare _ConvNd subclass (DSConv) has no rule
    return isinstance(m, _THOP2_HOOKED)


def _thop2_functional(t, m, ctx):
    """A functional product: counted unless it runs inside a module with a thop rule of its own."""
    return 0 if any(_thop2_hooked(mod) for mod, _ in ctx.chain) else t.value


def _thop2_functional_why(t, m):
    return f"{THOP2}: {t.op} inside a hooked module ({type(m).__name__ if m is not None else '?'}) not counted"


def _thop2_fconv(t, m):
    """F.conv2d inside a Conv2d subclass (ConvAWS2d, SAConv2d): the subclass's conv hook counts one conv
    on the module's own weight and output; a bare functional conv is not counted."""
    return t.value if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) else 0


def _thop2_mha_softmax(t, m, ctx):
    """count_multihead_attention's softmax: 3S-1 per row, rows = batch x heads x target length."""
    local = next((rest for mod, rest in ctx.chain if mod is m), "softmax")
    qs = ctx.sibling(t, local, "q scale")
    if qs is None or m is None:
        return None
    rows = qs.elems // m.embed_dim * m.num_heads
    return 3 * t.elems - rows


_T2_FUNC = r(_thop2_functional, _thop2_functional_why, context=True)
#: op labels thop 2.x counts in its TorchFunctionMode (outside hooked modules): the stride-aware profile takes 4
#: proxies when the last one counted any (flopscope.counters.thop2_info)
THOP2_FUNCTIONAL_OPS = ("matmul", "bmm", "einsum", "F.linear", "scaled_dot_product_attention")

THOP2_RULES: dict[str, Rule] = {
    "Conv2d": r(lambda t, m: t.value),
    "ConvTranspose2d": r(lambda t, m: t.value),
    "F.conv2d": r(_thop2_fconv, lambda t, m: f"{THOP2}: F.conv2d not hooked"),
    "Linear": r(lambda t, m: t.value),
    "BatchNorm2d": r(lambda t, m: 4 * t.elems, f"{THOP2}: BatchNorm counted 4/element"),
    "BatchNorm1d": r(lambda t, m: 4 * t.elems, f"{THOP2}: BatchNorm counted 4/element"),
    "BatchNorm2d.noaffine": r(lambda t, m: 2 * t.elems, f"{THOP2}: BatchNorm (no affine) counted 2/element"),
    "BatchNorm1d.noaffine": r(lambda t, m: 2 * t.elems, f"{THOP2}: BatchNorm (no affine) counted 2/element"),
    "LayerNorm": r(lambda t, m: (4 if affine(m) else 2) * t.elems, f"{THOP2}: LayerNorm counted 4/element"),
    "GroupNorm": r(lambda t, m: (4 if affine(m) else 2) * t.elems, f"{THOP2}: GroupNorm counted 4/element"),
    "Upsample.nearest": r(lambda t, m: 0),
    "Upsample.bilinear": r(lambda t, m: 11 * t.elems, f"{THOP2}: bilinear upsample counted 11/element"),
    "Upsample.bicubic": r(lambda t, m: 259 * t.elems, f"{THOP2}: bicubic upsample counted 259/element"),
    "Softmax": r(softmax_rows, f"{THOP2}: nn.Softmax counted 3L-1 per row"),
    "AvgPool2d": r(lambda t, m: t.value + t.elems, f"{THOP2}: AvgPool2d counted k²+1 per output element"),
    "AdaptiveAvgPool2d": r(lambda t, m: t.value + t.elems,
                            f"{THOP2}: AdaptiveAvgPool2d counted 1/input + 1/output element"),
    "PReLU": r(lambda t, m: t.elems, f"{THOP2}: PReLU counted 1/element"),
    "MultiheadAttention": r(lambda t, m: t.value),
    "MultiheadAttention/softmax": r(_thop2_mha_softmax, f"{THOP2}: MHA softmax counted 3S-1 per row", context=True),
    "SAConv2d/conv_l": r(lambda t, m: 0, f"{THOP2}: SAConv2d's second (dilated) F.conv2d not counted "
                                          f"(its Conv2d hook counts one conv)"),
    "matmul": _T2_FUNC,
    "bmm": _T2_FUNC,
    "einsum": _T2_FUNC,
    "F.linear": _T2_FUNC,
    "scaled_dot_product_attention": _T2_FUNC,
    "mm": r(lambda t, m: 0, f"{THOP2}: torch.mm not hooked",
             r(_thop2_functional, f"{THOP2}: `@` counted (torch.mm is not)", context=True)),
    "baddbmm": r(lambda t, m: 0, f"{THOP2}: baddbmm not hooked"),
}
_THOP2_FALLBACK = r(lambda t, m: t.value, f"{THOP2}: module without formula (assumed counted)")


def _thop2_default(t: Term) -> Rule:
    if fallback_elementwise(t):
        return UNKNOWN
    if fallback_term(t):  # modules without a formula: module calls or functional products, both counted
        return _THOP2_FALLBACK
    if t.kind in MAC_KINDS:
        return r(lambda t, m: 0, f"{THOP2}: {t.op} not hooked")
    return r(lambda t, m: 0)


THOP01 = table("thop", "thop", THOP_RULES, _thop_default)
THOP2_TABLE = table("thop2", THOP2, THOP2_RULES, _thop2_default)


def _select(version: str | None):
    v = (version or "").split()[-1] if version else ""
    return THOP01 if not v or v.startswith("0.") else THOP2_TABLE


def _version() -> str | None:
    dist, version = thop_installed()
    return None if dist is None else version if dist == "thop" else f"{dist} {version}"


def thop_installed() -> tuple[str | None, str | None]:
    """(distribution, version) that provides the importable ``thop`` module: ``ultralytics-thop`` and
    ``thop`` both install a top-level ``thop``; the one whose files hold ``thop/__init__.py`` as imported
    wins.  (None, None) when thop cannot be imported."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("thop")
    if spec is None or not spec.origin:
        return None, None
    origin = Path(spec.origin).resolve()
    found = (None, None)
    for dist in ("ultralytics-thop", "thop"):
        try:
            d = metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            continue
        if found == (None, None):
            found = (dist, d.version)
        try:
            if Path(d.locate_file("thop/__init__.py")).resolve() == origin:
                return dist, d.version
        except (OSError, TypeError):
            continue
    return found


def thop_major() -> int | None:
    _dist, version = thop_installed()
    try:
        return int(version.split(".")[0]) if version else None
    except ValueError:
        return None


def _thop_layers(model, x):
    import thop

    m = copy.deepcopy(model)
    functional = _thop_functional_marks(m)
    try:
        total, _params, info = thop.profile(m, inputs=(x,), verbose=False, ret_layer_info=True)
    finally:
        functional.close()
    tree = info["model"][2]
    n = len(layers(model))
    per = [float(tree[str(i)][0]) if str(i) in tree else 0.0 for i in range(n)]
    extra = functional.per_layer(n)
    if extra is not None:  # thop 2.x: functional products are in the total only; attributed by layer boundaries
        per = [a + b for a, b in zip(per, extra)]
    return per, float(total)


class _thop_functional_marks:
    """thop 2.x counts functional products (matmul, `@`, einsum, F.linear, SDPA) in a TorchFunctionMode
    whose running sum is in its total only; snapshots of that sum at every YAML layer's entry attribute
    them to layers (nothing to do for thop 0.1.x)."""

    def __init__(self, model):
        self.modes: list = []
        self.marks: list = []
        self.handles: list = []
        self.module = sys.modules.get("thop.profile")
        self.original = getattr(self.module, "_FunctionCounter", None)
        if self.original is None:
            return
        modes = self.modes

        class Recording(self.original):  # the mode thop.profile creates, recorded so layer hooks can read it
            def __init__(self, state):
                super().__init__(state)
                modes.append(self)

        self.module._FunctionCounter = Recording
        self.marks, self.handles = boundary_hooks(model, lambda: float(modes[-1].state["ops"]) if modes else 0.0)

    def per_layer(self, n):
        if self.original is None:
            return None
        return between_marks(self.marks, n)

    def close(self):
        if self.original is not None:
            self.module._FunctionCounter = self.original
        for h in self.handles:
            h.remove()


@counter("thop", label="thop", package="thop", tables=(), version=_version, select=_select)
def run_thop(model, x, probe: int | None = None) -> CounterRun:
    per, total = _thop_layers(model, x)
    run = CounterRun(per, total)
    if thop_major() != 0:  # model_info's legacy probe is thop 0.1.x's; another thop's is not that figure
        probe = None
    else:
        run.notes.append("thop 0.1.x installed: its rules (the legacy model_info figure's) are applied")
    if probe:  # YOLOv5's model_info: thop on a stride-sized probe, scaled by area
        try:
            xp = torch.zeros((1, x.shape[1], probe, probe), device=x.device, dtype=x.dtype)
            run.extra["probe_per_layer"], run.extra["probe_total"] = _thop_layers(model, xp)
        except Exception as e:  # noqa: BLE001 - the probe failing is itself a finding
            run.notes.append(f"thop on the {probe}x{probe} model_info probe failed: {type(e).__name__}: {e}"[:300])
    return run


def thop_macs(terms, owners=None) -> float:
    """What thop 0.1.x reports ('MACs') for these terms (unpredictable terms count 0): the legacy YOLOv5
    model_info figure's rules, whatever thop is installed."""
    total = 0.0
    for i, t in enumerate(terms):
        owner = owners[i] if owners is not None else None
        rule = THOP_RULES.get(t.op)
        if rule is None and fallback_term(t):
            rule = _THOP_FALLBACK
        if rule is not None:
            v = rule(t, owner)
            total += v or 0
    return total
