"""CLI commands: each module here registers its command(s) on :data:`flopscope.cli.app` when imported."""
import importlib
import pkgutil

for _m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    importlib.import_module(f"{__name__}.{_m.name}")
