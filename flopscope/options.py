"""Option definitions shared by several commands (one place for names, defaults and help)."""
import functools
import inspect
from typing import Optional

import typer

IMG = typer.Option("640", "--img", help="Image size: 640, or H,W such as 640,384.")
BATCH = typer.Option(1, "--batch", help="Batch size.")
NC = typer.Option(None, "--nc", help="Override the number of classes in the config.")
FUSE = typer.Option(False, "--fuse", help="Count the deploy model: as the framework's own fuse() leaves it "
                                          "(YOLOv5: BatchNorm folded into Conv / DWConv).")
DIALECT = typer.Option(None, "--dialect", help="Read the config(s) as 'yolov5' or 'ultralytics' YAML (default: "
                                               "detected; scales:/anchor-free heads mean ultralytics).")
SCALE = typer.Option(None, "--scale", help="Ultralytics scales: row to build (n, s, m, l, x; default: from the model "
                                           "name as ultralytics does, yolo11s -> s, else the first).")


def config_options(fn):
    """Add ``--dialect`` and ``--scale`` to a command: every config it loads is read with them."""
    sig = inspect.signature(fn)
    extra = [inspect.Parameter("dialect", inspect.Parameter.KEYWORD_ONLY, default=DIALECT, annotation=Optional[str]),
             inspect.Parameter("scale", inspect.Parameter.KEYWORD_ONLY, default=SCALE, annotation=Optional[str])]
    params = list(sig.parameters.values()) + extra

    @functools.wraps(fn)
    def wrapper(*args, dialect=None, scale=None, **kwargs):
        from .config import reading

        with reading(dialect, scale):
            return fn(*args, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=params)
    return wrapper
