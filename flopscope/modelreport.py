"""``profile(module)`` for any ``nn.Module``: a meta copy counted, the user's module left untouched.

* A YOLO-style model object (``.model`` layers carrying ``.f`` and ``.i``: YOLOv5's and Ultralytics'
  model objects) gets the per-row report of a config through :func:`flopscope.engine.count_layers`
  (the model's own layer indices and ``from``; formulas where registered, op-level elsewhere).
* Any other module gets a per-module tree: one row per module down to ``depth`` (the subtree below
  summed into it), plus an "(own ops)" row for work a parent does outside its children.  Modules of
  a class with a registered formula are counted by it (on the shapes they are called with); the
  op-level counter (:mod:`flopscope.opcount`) counts everything else.
"""
from __future__ import annotations

import copy
from collections import Counter

import torch
import torch.nn as nn

from .cost import MAC_KINDS, Cost
from .engine import FORMULAS, count_layers, is_yolo_style, model_rows
from .errors import FlopscopeError
from .opcount import OpCounter, cpu_budget_check, not_counted_note
from .registry import formula_for, load_zoo
from .report import (LayerRecord, Report, linear_in_hw, not_counted_totals, parse_img)
from .tracer import NOT_COUNTED, OP_LEVEL, Note, Tracer

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def meta_copy(module: nn.Module) -> nn.Module:
    """A deep copy whose parameters and buffers are meta tensors of the same shapes and dtypes (no
    weight is copied: the memo hands deepcopy the meta stand-ins)."""
    memo: dict = {}
    for p in module.parameters():
        memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
    for b in module.buffers():
        memo[id(b)] = torch.empty_like(b, device="meta")
    try:
        m = copy.deepcopy(module, memo)
    except Exception as e:  # noqa: BLE001 - an attribute that cannot be copied (a lock, an open file ...)
        raise FlopscopeError(f"cannot copy {type(module).__name__} to count it: {type(e).__name__}: {e}"[:300]) from None
    return m.eval()


def _in_channels(module: nn.Module) -> int:
    yaml = getattr(module, "yaml", None)
    if isinstance(yaml, dict) and isinstance(yaml.get("ch"), int):
        return yaml["ch"]
    for m in module.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return m.in_channels
    raise FlopscopeError(f"{type(module).__name__} has no convolution to take the input channels from; "
                         f"give inputs=(B, C, H, W) (or --input 1,3,640,640)")


def _is_shape(v) -> bool:
    return isinstance(v, (tuple, list, torch.Size)) and len(v) > 0 and all(
        isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in v)


def _meta_input(v):
    if isinstance(v, torch.Tensor):
        return torch.empty(v.shape, dtype=v.dtype, device="meta")
    if _is_shape(v):
        return torch.empty(tuple(v), device="meta")
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, torch.Tensor) or _is_shape(x) for x in v):
        return [_meta_input(x) for x in v]
    return v


def parse_inputs(module, img, batch, inputs):
    """(positional meta inputs, keyword meta inputs, image size or None)."""
    if inputs is None:
        h, w = parse_img(img)
        return [torch.empty(batch, _in_channels(module), h, w, device="meta")], {}, (h, w)
    if isinstance(inputs, dict):
        return [], {k: _meta_input(v) for k, v in inputs.items()}, None
    if isinstance(inputs, torch.Tensor) or _is_shape(inputs):
        return [_meta_input(inputs)], {}, None
    if isinstance(inputs, (list, tuple)) and inputs:
        return [_meta_input(v) for v in inputs], {}, None
    raise FlopscopeError(f"inputs must be a shape like (1, 3, 640, 640), a list of shapes, example tensors or a "
                         f"dict of keyword inputs; got {type(inputs).__name__}")


def _size_of(args, kwargs) -> tuple:
    for v in [*args, *kwargs.values()]:
        if isinstance(v, torch.Tensor) and v.dim() >= 2:
            return tuple(v.shape[-2:])
    return (0, 0)


def profile_module(module: nn.Module, img=640, batch: int = 1, inputs=None, depth: int = 1) -> Report:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise FlopscopeError(f"depth must be a non-negative integer, got {depth!r}")
    load_zoo()  # the formulas (torch.nn leaves and the zoo)
    m = meta_copy(module)
    if is_yolo_style(m):
        return _profile_rows(m, img, batch, inputs)
    return _profile_tree(m, img, batch, inputs, depth)


# -- YOLO-style model objects: one row per layer --------------------------------------------------
def _profile_rows(m, img, batch, inputs) -> Report:
    args, kwargs, hw = parse_inputs(m, img, batch, inputs)
    if kwargs or len(args) != 1 or not isinstance(args[0], torch.Tensor) or args[0].dim() != 4:
        raise FlopscopeError(f"{type(m).__name__} is a YOLO-style model: give one (B, C, H, W) input")
    shape = tuple(args[0].shape)
    notes: list[str] = []
    stride = _stride(m)
    if hw is not None and stride:
        s = int(max(max(stride), 1))
        fixed = tuple(-(-v // s) * s for v in shape[2:])
        if fixed != tuple(shape[2:]):
            notes.append(f"image size {shape[2]}x{shape[3]} is not a multiple of the max stride {s}; "
                         f"counted at {fixed[0]}x{fixed[1]} as YOLOv5 would")
            shape = (*shape[:2], *fixed)
    layers = count_layers(m, shape, FORMULAS)
    doubled = None
    try:
        doubled = count_layers(m, (*shape[:2], 2 * shape[2], 2 * shape[3]), FORMULAS)
    except FlopscopeError:
        pass
    records = []
    for k, ((mod, f, index, name, _), lc) in enumerate(zip(model_rows(m), layers)):
        label = str(getattr(mod, "type", name)).rsplit(".", 1)[-1]
        n = len(mod) if isinstance(mod, nn.Sequential) else getattr(mod, "n", 1)
        records.append(LayerRecord(
            index, f, n if isinstance(n, int) else 1, label, list(getattr(mod, "args", []) or []), lc.out_shape,
            sum(p.numel() for p in mod.parameters()), lc.cost.by_kind(), lc.cost.elementwise_flops,
            linear_in_hw(lc, doubled[k] if doubled is not None else None), lc.counted_by, None, lc.cost.terms,
            list(lc.notes)))
    notes.append(f"counted from the {type(m).__name__} object's own layers (a meta copy; the model is untouched)")
    notes.extend(not_counted_totals(records))
    return Report(_model_name(m), tuple(shape[2:]), shape[0], records, None, None, stride, notes)


def _stride(m) -> list:
    s = getattr(m, "stride", None)
    if isinstance(s, torch.Tensor) and s.device.type != "meta":
        return [float(v) for v in s.flatten().tolist()]
    if isinstance(s, (list, tuple)) and all(isinstance(v, (int, float)) for v in s):
        return [float(v) for v in s]
    return []


def _model_name(m) -> str:
    yaml_file = getattr(m, "yaml_file", None)
    if isinstance(yaml_file, str):
        from pathlib import Path

        return Path(yaml_file).stem
    return type(m).__name__


# -- any module: a per-module tree ---------------------------------------------------------------
class _FormulaBridge:
    """OpCounter's module hook: a module whose class has a formula is counted by it (and muted)."""

    def __init__(self):
        self.costs: dict[str, tuple] = {}  # path -> (Cost, notes)

    def __call__(self, mod, path, args, kwargs) -> bool:
        if isinstance(mod, _CONTAINERS) or kwargs or formula_for(type(mod)) is None:
            return False
        shapes = [_shape(a) for a in args]
        if not shapes or any(s is None for s in shapes):
            return False
        t = Tracer()
        try:
            t(mod, *shapes)
        except Exception:  # noqa: BLE001 - a formula that cannot take these inputs: count the ops instead
            return False
        if path in self.costs:  # called again (a loop, a shared module): add this call
            cost, notes = self.costs[path]
            cost.extend(t.cost)
            notes.extend(n for n in t.notes if n not in notes)
        else:
            self.costs[path] = (t.cost, list(t.notes))
        return True


def _shape(a):
    if isinstance(a, torch.Tensor):
        return tuple(a.shape)
    if isinstance(a, (list, tuple)) and a and all(isinstance(x, torch.Tensor) for x in a):
        return [tuple(x.shape) for x in a]
    return None


def _run(m, args, kwargs):
    bridge = _FormulaBridge()
    with torch.no_grad(), OpCounter(m, on_module=bridge) as oc:
        m(*args, **kwargs)
    return oc, bridge


def _count_tree(m, args, kwargs):
    """Run on meta; a module that cannot, on a CPU copy within the size guard (noted)."""
    try:
        return (*_run(m, args, kwargs), None)
    except FlopscopeError:
        raise
    except Exception as e:  # noqa: BLE001 - ops that need values (.item(), nonzero ...) cannot run on meta
        first = e
    shapes = [tuple(a.shape) for a in [*args, *kwargs.values()] if isinstance(a, torch.Tensor)]
    cpu_budget_check(m, shapes, first)
    from .opcount import materialise_cpu

    cm = materialise_cpu(m)

    def real(v):
        if isinstance(v, torch.Tensor):
            return torch.zeros(v.shape, dtype=v.dtype)
        return [real(x) for x in v] if isinstance(v, list) else v

    try:
        oc, bridge = _run(cm, [real(a) for a in args], {k: real(v) for k, v in kwargs.items()})
    except Exception as e:  # noqa: BLE001
        raise FlopscopeError(f"{type(m).__name__} could not run for counting (meta: {type(first).__name__}: "
                             f"{str(first)[:120]}; CPU: {type(e).__name__}: {str(e)[:120]})") from None
    return oc, bridge, f"counted on a CPU copy: it does not run on the meta device ({type(first).__name__})"


def _profile_tree(m, img, batch, inputs, depth) -> Report:
    args, kwargs, hw = parse_inputs(m, img, batch, inputs)
    oc, bridge, cpu_note = _count_tree(m, args, kwargs)
    doubled = None
    if hw is not None:
        try:
            big = [torch.empty(a.shape[0], a.shape[1], 2 * hw[0], 2 * hw[1], device="meta") for a in args]
            doubled = _count_tree(m, big, kwargs)[:2]
        except Exception:  # noqa: BLE001 - the doubled size is only for the H·W-scaling column
            doubled = None
    records = []
    for path, mod, own in _tree_rows(m, depth, bridge):
        r = _tree_record(len(records), path, mod, own, oc, bridge, doubled)
        if own and not (r.params or r.macs or r.elementwise_flops or any(n.kind == NOT_COUNTED for n in r.notes)):
            continue  # a parent with no work of its own
        records.append(r)
    notes = [f"per-module tree of {type(m).__name__} to depth {depth} (a meta copy; the module is untouched)"]
    if cpu_note:
        notes.append(cpu_note)
    notes.extend(not_counted_totals(records))
    return Report(type(m).__name__, hw or _size_of(args, kwargs), batch if hw else _batch_of(args, kwargs),
                  records, None, None, _stride(m), notes)


def _batch_of(args, kwargs) -> int:
    for v in [*args, *kwargs.values()]:
        if isinstance(v, torch.Tensor) and v.dim() >= 1:
            return int(v.shape[0])
    return 1


def _tree_rows(m, depth, bridge):
    """(path, module, own) rows: the tree cut at ``depth`` (a formula-counted module is a leaf); an inner
    node adds an 'own' row for work outside its children."""
    rows = []

    def visit(path, mod, d):
        kids = [(f"{path}.{n}" if path else n, c) for n, c in mod.named_children()]
        if d >= depth or not kids or path in bridge.costs:
            rows.append((path, mod, False))
            return
        rows.append((path, mod, True))
        for p, c in kids:
            visit(p, c, d + 1)

    visit("", m, 0)
    return rows


def _collect(oc, bridge, path, own):
    """Cost, op-level module classes and not-counted ops of a row (own: only work at ``path`` itself)."""
    def inside(p):
        return p == path if own else (not path or p == path or p.startswith(path + "."))

    cost = Cost()
    formula_notes: list = []
    formula = False
    for p, (c, notes) in bridge.costs.items():
        if inside(p):
            formula = True
            cost.extend(c, p)
            formula_notes.extend(n for n in notes if n not in formula_notes)
    oplevel = False
    for (p, op, kind), (value, elems, _calls) in oc.records.items():
        if inside(p):
            oplevel = True
            cost.add(f"{p}.{op}" if p else op, kind, f"aten.{op}", value, elems)
    missing: Counter = Counter()
    for p, per in oc.not_counted_at_path.items():
        if inside(p):
            missing.update(per)
    return cost, formula, oplevel, missing, formula_notes


def _tree_record(k, path, mod, own, oc, bridge, doubled) -> LayerRecord:
    cost, formula, oplevel, missing, fnotes = _collect(oc, bridge, path, own)
    notes = list(fnotes)
    if oplevel or missing or not formula:
        notes.append(Note(f"op-level ({type(mod).__name__})", OP_LEVEL))
    text = not_counted_note(missing)
    if text:
        notes.append(Note(text, NOT_COUNTED, missing))
    counted_by = "; ".join((["formula"] if formula else []) + notes)
    lin = None
    if doubled is not None:
        big = _collect(*doubled, path, own)[0]
        a = cost.macs() + cost.elementwise_flops
        lin = big.macs() + big.elementwise_flops == 4 * a
    params = sum(p.numel() for p in mod.parameters(recurse=not own))
    label = f"{path or '(model)'}{' (own ops)' if own else ''}"
    return LayerRecord(k, -1, 1, label, [type(mod).__name__], oc.out_shapes.get(path), params, cost.by_kind(),
                       cost.elementwise_flops, lin, counted_by, None, cost.terms, notes)


__all__ = ["profile_module", "meta_copy", "parse_inputs", "MAC_KINDS"]
