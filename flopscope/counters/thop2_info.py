"""What current Ultralytics and current YOLOv5 print as GFLOPs in ``model.info()``, computed from our terms.

Both call ``ultralytics.utils.torch_utils.get_flops(model, imgsz)`` (current YOLOv5 imports ``model_info`` from
ultralytics), which runs ultralytics-thop 2.x's *stride-aware* profile::

    stride = max(int(model.stride.max()), 32)
    min_cells = max(ceil(num_queries * 3 / (4**nl - 1)) over RTDETRDecoders, default 1)
    thop.profile(model, inputs=[empty(1, C, H, W)], stride=stride, min_cells=min_cells)[0] / 1e9 * 2

and returns 0.0 (printing no GFLOPs) when that raises.  ``thop.profile`` (ultralytics-thop 2.2.3,
``thop/profile.py``) then, instead of the full-size image, runs proxies one stride tall and ``min_cells + k``
strides wide (k = 0, 1, ...) and extrapolates to the target's ``cells = (H // stride) * (W // stride)``:

* samples: 4 when the model holds an ``nn.MultiheadAttention`` (or a module with a custom rule: none here), else
  2 when it holds a size-independent op (``nn.Linear``, ``nn.Bilinear``, adaptive pools, RNNs), else 1; and 4
  whenever the last proxy counted a functional product (``matmul``, ``@``, ``bmm``, ``einsum``, ``F.linear``,
  SDPA outside modules that have a rule of their own);
* proxies only when H and W are multiples of the stride and ``4 * planned <= cells`` with
  ``planned = n * min_cells + n * (n - 1) // 2`` (n: the planned samples); a proxy whose forward raises drops
  them all;
* with 4 samples the third forward difference must be exactly 0 (a quadratic in k), else a full-size run;
* extrapolation by Newton forward differences from k = min_cells:
  ``ops0 + t * d1 + t * (t - 1) // 2 * d2`` with ``t = cells - min_cells``; one sample: ``d1 = ops0 / min_cells``.

Here each proxy (or the full size) is a trace of our formulas at that shape (meta device, no arithmetic), each
term priced by ``THOP2_RULES`` (what thop 2.x reports for it, per layer, functional products included), and the
same procedure applied to the per-layer sums: the extrapolation is linear in the samples, so the per-layer figures
add up to the total.  Where thop's count cannot be predicted from our terms (a term no rule prices), or the answer
depends on something our terms do not show (whether a module without a formula runs functional products), the
result is ``None`` with the reason, never a guess.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn as nn

from ..cost import MAC_KINDS
from ..errors import FlopscopeError
from .owners import trace_layers
from .rules import affine, fallback_term, predict
from .thop import THOP2_FUNCTIONAL_OPS, THOP2_TABLE, _thop2_hooked

#: module types whose presence asks for 2 samples (thop.profile's ``fixed_ops``)
FIXED_OPS = (nn.Linear, nn.Bilinear, nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
             nn.RNNBase, nn.RNNCell, nn.GRUCell, nn.LSTMCell)


@dataclass
class CurrentInfo:
    """ultralytics-thop 2.x's stride-aware ``get_flops`` figure: ``gflops`` (None with ``reason`` when it cannot be
    known or get_flops would return 0.0), ``per_layer`` FLOPs (2 x thop MACs) per YAML layer, ``method`` (how thop
    gets there: proxies and their widths, or the full-size run) and ``notes``."""

    gflops: float | None
    per_layer: list | None = None
    reason: str | None = None
    method: str = ""  # e.g. "extrapolated from 4 proxies 32x32,64,96,128 to 400 cells of 32x32", "full-size ... run (why)"
    notes: list = field(default_factory=list)  # caveats


class _Unpredictable(Exception):
    pass


@dataclass
class _Sample:
    per_layer: list  # thop 2.x MACs per YAML layer
    functional: float  # of which functional products (thop's TorchFunctionMode sum)
    fallback: bool  # terms of modules without a formula (assumed counted; functional or not is unknown)


def _op_modules(t, chain):
    """The modules an op-level (``aten.*``) term of a module without a formula ran in, outermost first: its deepest
    owner, then down the module path its name holds (the path + the op); None when the path does not resolve."""
    if not chain:
        return None
    owner, rest = chain[0]
    mods = [mod for mod, _ in reversed(chain[1:])] + [owner]
    path = rest.rpartition(".")[0]
    cur = owner
    for part in path.split(".") if path else ():
        try:
            cur = cur.get_submodule(part)
        except (AttributeError, TypeError, ValueError):
            return None
        mods.append(cur)
    return mods


_CONV_LINEAR = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _price(t, chain, terms) -> tuple[float | None, float, bool]:
    """(thop 2.x MACs for term ``t``, the part its TorchFunctionMode counts (functional products), whether the term's
    origin is unknown: a product of a module without a formula that thop may count or not, as a functional call).

    Op-level terms (modules without a formula) are priced by the module that ran them: a conv / linear module by its
    hook; a norm by thop's normalisation rule; other element-wise work outside hooked modules as 0; ``aten.bmm``
    outside hooked modules as a counted functional product (``@``, ``matmul``, ``bmm`` and two-operand ``einsum``
    all dispatch it and thop counts each the same), ``aten.convolution`` there as ``F.conv2d`` (not counted).
    ``aten.mm`` / ``aten.addmm`` there may be ``@`` / ``F.linear`` (counted) or ``torch.mm`` / ``torch.addmm``
    (not): unpredictable (raises)."""
    if t.op.startswith("aten."):
        mods = _op_modules(t, chain)
        if mods is not None:
            mod, above = mods[-1], mods[:-1]
            inside_hooked = any(_thop2_hooked(m) for m in above)
            if t.kind in MAC_KINDS:
                if isinstance(mod, _CONV_LINEAR) and not inside_hooked and \
                        t.op in ("aten.convolution", "aten.addmm", "aten.mm", "aten.linear"):
                    return float(t.value), 0.0, False
                if not _thop2_hooked(mod) and not inside_hooked:
                    if t.op == "aten.bmm":
                        return float(t.value), float(t.value), False
                    if t.op == "aten.convolution":
                        return 0.0, 0.0, False
                    if t.op in ("aten.mm", "aten.addmm") and t.value:
                        raise _Unpredictable(
                            f"{t.op} in {type(mod).__name__} ({t.name}) is `@` / F.linear (counted by thop 2.x) or "
                            f"torch.mm / torch.addmm (not counted): which is not known from our terms")
            else:
                if isinstance(mod, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)) and \
                        "norm" in t.op and not inside_hooked:
                    return (4 if affine(mod) else 2) * t.elems, 0.0, False
                if not _thop2_hooked(mod) and not inside_hooked:
                    return 0.0, 0.0, False
    v, _ = predict(THOP2_TABLE, t, chain=chain, terms=terms)
    functional = v if v and t.op in THOP2_FUNCTIONAL_OPS else 0.0
    return v, functional, bool(v) and fallback_term(t)


def _trace_sample(model, shape) -> _Sample:
    per, functional, fallback = [], 0.0, False
    for terms, chains in trace_layers(model, shape):
        s = 0.0
        for t, chain in zip(terms, chains):
            v, f, unknown = _price(t, chain, terms)
            if v is None:
                raise _Unpredictable(f"thop 2.x's count of {t.op} ({t.name or 'layer'}) cannot be predicted")
            s += v
            functional += f
            fallback = fallback or unknown
        per.append(s)
    return _Sample(per, functional, fallback)


def _plan(model, min_cells: int) -> int:
    if any(isinstance(m, nn.MultiheadAttention) for m in model.modules()):
        return 4
    return 2 if any(isinstance(m, FIXED_OPS) for m in model.modules()) else 1


def _extrapolate(ops: list, cells: int, min_cells: int) -> float:
    t = cells - min_cells
    d1 = ops[1] - ops[0] if len(ops) > 1 else ops[0] / min_cells
    d2 = ops[2] - 2 * ops[1] + ops[0] if len(ops) > 2 else 0.0
    return ops[0] + t * d1 + t * (t - 1) // 2 * d2


def current_model_info(model, img, min_cells: int = 1, channels: int | None = None,
                       cache: dict | None = None) -> CurrentInfo:
    """``get_flops(model, img)`` of ultralytics 8.4 / ultralytics-thop 2.2 for our built ``model`` (any device; only
    shapes are traced).  ``img``: (H, W); ``min_cells``: get_flops' (the dialect knows its RT-DETR decoders).
    ``cache``: a dict kept by the caller across calls on the same model (the proxies do not depend on the image
    size, so several sizes share their traces)."""
    if cache is not None:
        def _sample(m, shape, _cache=cache):
            if shape not in _cache:
                try:
                    _cache[shape] = _trace_sample(m, shape)
                except (FlopscopeError, _Unpredictable) as e:
                    _cache[shape] = e
            hit = _cache[shape]
            if isinstance(hit, Exception):
                raise hit
            return hit
    else:
        _sample = _trace_sample
    h, w = img
    c = channels or model.ch
    stride = max(int(model.stride.max()), 32) if hasattr(model, "stride") else 32
    cells = (h // stride) * (w // stride)
    required = _plan(model, min_cells)
    planned = required * min_cells + required * (required - 1) // 2
    notes: list[str] = []
    samples: list[_Sample] = []
    widths: list[int] = []
    if h % stride == 0 and w % stride == 0 and 4 * planned <= cells:
        try:
            while len(samples) < (4 if samples and samples[-1].functional else required):
                width = stride * (min_cells + len(samples))
                samples.append(_sample(model, (1, c, stride, width)))
                widths.append(width)
        except _Unpredictable as e:
            return CurrentInfo(None, reason=str(e))
        except Exception as e:  # noqa: BLE001 - the real forward raising on a proxy: thop drops the proxies
            msg = str(e).replace("\n", " ")[:200]
            notes.append(f"a {stride}x{stride * (min_cells + len(samples))} proxy does not run: "
                         f"{type(e).__name__}: {msg}")
            samples, widths = [], []
    if samples and any(s.fallback for s in samples) and len(samples) < 4:
        # a module without a formula may run functional products (then thop takes 4 samples); it matters only
        # when the cost is not proportional in the proxy width
        try:
            more = list(samples)
            while len(more) < 4:
                more.append(_sample(model, (1, c, stride, stride * (min_cells + len(more)))))
            a = _extrapolate([sum(s.per_layer) for s in samples], cells, min_cells)
            ops4 = [sum(s.per_layer) for s in more]
            third = ops4[3] - 3 * ops4[2] + 3 * ops4[1] - ops4[0]
            if third != 0 or _extrapolate(ops4, cells, min_cells) != a:
                return CurrentInfo(None, reason="depends on whether modules without a formula run functional "
                                                "products (thop then fits 4 proxies): not known from our terms")
        except Exception as e:  # noqa: BLE001 - a wider proxy not running: which path thop takes is unknown
            return CurrentInfo(None, reason=f"modules without a formula: thop's proxies cannot be predicted ({e})")
    if samples:
        ops = [sum(s.per_layer) for s in samples]
        if len(ops) < 4 or ops[3] - 3 * ops[2] + 3 * ops[1] - ops[0] == 0:
            total = _extrapolate(ops, cells, min_cells)
            per = [_extrapolate([s.per_layer[i] for s in samples], cells, min_cells)
                   for i in range(len(samples[0].per_layer))]
            method = (f"extrapolated from {len(samples)} proxies {stride}x{','.join(map(str, widths))} "
                      f"to {cells} cells of {stride}x{stride}")
            return _done(total, per, method, [], samples)
        notes.append("the 4 proxies are not quadratic in their width: third difference not 0")
    try:
        full = _sample(model, (1, c, h, w))
    except _Unpredictable as e:
        return CurrentInfo(None, reason=str(e), notes=notes)
    except FlopscopeError as e:
        return CurrentInfo(None, reason=f"get_flops returns 0.0 (model.info() prints no GFLOPs): the {h}x{w} "
                                        f"forward fails: {e}", notes=notes)
    except Exception as e:  # noqa: BLE001 - a formula failing only when traced with owners: say so, never guess
        return CurrentInfo(None, reason=f"our terms at {h}x{w} could not be traced ({type(e).__name__}: {e})"[:300],
                           notes=notes)
    why = f" ({'; '.join(notes)})" if notes else ""
    return _done(sum(full.per_layer), full.per_layer, f"full-size {h}x{w} run{why}", [], [full])


def _done(total, per, method, notes, samples) -> CurrentInfo:
    """``notes``: caveats for the report; why thop took the path it took is in ``method``."""
    if any(s.fallback for s in samples):
        notes.append("modules without a formula: their products assumed counted by thop 2.x")
    return CurrentInfo(2 * total / 1e9, [2 * v for v in per], None, method, notes)
