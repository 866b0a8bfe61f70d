"""The one error type users see: a message, printed as one line on stderr, exit code 2."""
from __future__ import annotations

import difflib
import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def one_line(text) -> str:
    """``text`` as a single line: newlines and other control characters become one space."""
    return _CONTROL.sub(" ", str(text)).strip()


class FlopscopeError(Exception):
    """A user-facing error (bad config, unknown module, bad option value ...)."""

    exit_code = 2


class ConfigError(FlopscopeError):
    """A problem in a model config; the message names file, layer index and field."""

    def __init__(self, message: str, *, file: str | None = None, layer: int | None = None, field: str | None = None):
        self.file, self.layer, self.field = file, layer, field
        where = []
        if file:
            where.append(one_line(file))
        if layer is not None:
            where.append(f"layer {layer}")
        if field:
            where.append(field)
        message = one_line(message)
        super().__init__(f"{': '.join(where)}: {message}" if where else message)


def nearest(name: str, choices, n: int = 3) -> list[str]:
    """Closest known names (case-insensitive), best first."""
    choices = list(choices)
    lower = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(name.lower(), list(lower), n=n, cutoff=0.5)
    return [lower[h] for h in hits]


def suggestion(name: str, choices) -> str:
    hits = nearest(name, choices)
    return f" (did you mean {', '.join(hits)}?)" if hits else ""
