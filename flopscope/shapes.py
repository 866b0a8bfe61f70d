"""Shape helpers for cost formulas: shape errors, channel checks, conv output sizes, concatenation.

Depends on nothing but :mod:`flopscope.errors`, so formulas (``leaf_formulas``, the zoo, plugins) can
use it without importing the tracer or the registry.
"""
from __future__ import annotations

from .errors import FlopscopeError

Shape = tuple


class ShapeError(FlopscopeError):
    """Inputs that a module cannot take (channel or spatial mismatch)."""


def check_channels(module, got: int, expected: int) -> None:
    if got != expected:
        raise ShapeError(f"channel mismatch: {type(module).__name__} expects {expected} input channels, gets {got}")


def conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    """Output length of a convolution / pooling window along one dimension (PyTorch's formula)."""
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def cat_channels(shapes, dim: int = 1) -> Shape:
    """Shape of ``torch.cat(shapes, dim)``, checking the other dimensions agree."""
    first = shapes[0]
    for s in shapes[1:]:
        if len(s) != len(first) or any(a != b for i, (a, b) in enumerate(zip(s, first)) if i != dim % len(first)):
            raise ShapeError(f"cannot concatenate shapes {list(map(list, shapes))} along dim {dim} "
                             f"(the other dimensions differ)")
    out = list(first)
    out[dim] = sum(s[dim] for s in shapes)
    return tuple(out)
