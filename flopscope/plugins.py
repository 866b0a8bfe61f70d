"""User plugin files (``--plugin path.py``): their modules go through the same registry as the zoo's."""
from __future__ import annotations


def load_plugins(paths: list[str]) -> None:
    raise NotImplementedError("plugin loading is not implemented yet")
