"""Run from a source checkout without installing (``python -m flopscope`` from its root).

An install maps ``modules/`` and ``yamls/`` into the package as ``flopscope.modules`` and
``flopscope.yamls`` (pyproject's ``package-dir``).  In a bare checkout they sit beside the package
directory instead; importing this module adds a meta-path finder that resolves those two names
there.  It is only a fallback: whatever an install provides (a wheel, an editable install) is found
first, and nothing is added when ``flopscope.modules`` is already importable.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

PACKAGE = __name__.rpartition(".")[0]
MAPPED = ("modules", "yamls")


class CheckoutFinder(importlib.abc.MetaPathFinder):
    """Finds ``flopscope.modules`` / ``flopscope.yamls`` in the directories beside the package."""

    def __init__(self, dirs: dict[str, Path]):
        self.dirs = dirs

    def find_spec(self, fullname, path=None, target=None):
        d = self.dirs.get(fullname)
        if d is None:
            return None
        return importlib.util.spec_from_file_location(fullname, d / "__init__.py", submodule_search_locations=[str(d)])


def map_checkout() -> bool:
    """Add the finder when the package runs from a source checkout; True when it is in place."""
    if any(isinstance(f, CheckoutFinder) for f in sys.meta_path):
        return True
    if importlib.util.find_spec(f"{PACKAGE}.{MAPPED[0]}") is not None:
        return False  # installed (or already mapped by an editable install)
    root = Path(__file__).resolve().parent.parent
    dirs = {f"{PACKAGE}.{d}": root / d for d in MAPPED}
    if not all((d / "__init__.py").is_file() for d in dirs.values()):
        return False
    sys.meta_path.append(CheckoutFinder(dirs))
    return True


map_checkout()
