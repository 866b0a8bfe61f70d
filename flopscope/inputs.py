"""Parsing of the size and batch options, one implementation for every command.

``parse_img`` (``--img``: model, check, bench, sweep, table, diff), ``parse_hw`` (``layer --hw``) and
``parse_batches`` (``bench --batch 1,8,32``) accept an int, a list/tuple of ints or a string of integers
separated by commas (sizes also by ``x``: ``640x384``); anything else is a one-line error naming the option.
"""
from __future__ import annotations

from .config import show
from .errors import FlopscopeError

MAX_IMG = 1_000_000  # pixels per side; the analytic path handles it without memory, figures stay exact ints
MAX_HW = 100_000  # feature-map side of `flopscope layer`
MAX_BATCH = 1_000_000


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _ints(value, separators: str = ",") -> list | None:
    """An int, a list/tuple, or integers in a string split on ``separators``; None when not parseable."""
    if isinstance(value, str):
        text = value.lower()
        for sep in separators[1:]:
            text = text.replace(sep, separators[0])
        try:
            return [int(p) for p in (p.strip() for p in text.split(separators[0])) if p]
        except ValueError:
            return None
    if _is_int(value):
        return [value]
    if isinstance(value, (tuple, list)):
        return list(value)
    return None


def parse_size(value, option: str, what: str, limit: int) -> tuple[int, int]:
    """640 -> (640, 640); '640,384', '640x384' or (640, 384) -> (640, 384) as (H, W)."""
    vals = _ints(value, ",x")
    if vals is None:
        raise FlopscopeError(f"{option} must be an integer or H,W integers, got {show(value)}")
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or not all(_is_int(v) and v > 0 for v in vals):
        raise FlopscopeError(f"{option} must be one or two positive integers, got {show(value)}")
    if max(vals) > limit:
        raise FlopscopeError(f"{option} {show(value).strip(chr(39))} is not a plausible {what} (max {limit})")
    return vals[0], vals[1]


def parse_img(img) -> tuple[int, int]:
    """``--img``: 640 -> (640, 640); '640,384' or (640, 384) -> (640, 384) as (H, W)."""
    return parse_size(img, "--img", "image size", MAX_IMG)


def parse_hw(hw) -> tuple[int, int]:
    """``layer --hw``: 80 -> (80, 80); '80,60', '80x60' or (80, 60) -> (80, 60) as (H, W)."""
    return parse_size(hw, "--hw", "feature-map size", MAX_HW)


def parse_batches(batch) -> list[int]:
    """``--batch``: '1,8,32' / 8 / [1, 8] -> [1, 8, 32] (duplicates dropped, order kept)."""
    vals = _ints(batch)
    if not vals or not all(_is_int(v) and 0 < v <= MAX_BATCH for v in vals):
        raise FlopscopeError(f"--batch must be positive integers separated by commas, got {batch!r}")
    return list(dict.fromkeys(vals))
