"""Running the CLI from tests: in process (fast, for hundreds of cases) and as a real subprocess."""
from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys

import flopscope.commands  # noqa: F401  (registers every command on the app)
from flopscope import cli


def run_cli(args) -> tuple[int, str, str]:
    """``flopscope ARGS`` in process, through ``main`` as the console script runs it: (exit code, stdout, stderr)."""
    cli.DEBUG = False  # sticky global: another test may have passed --debug
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.main([str(a) for a in args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def run_subprocess(*args, cwd=None, threads: int | None = None) -> tuple[int, str, str]:
    """``python -m flopscope ARGS`` in a fresh process (cwd outside the repo, so the installed package is used)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)} if threads else None
    p = subprocess.run([sys.executable, "-m", "flopscope", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                       timeout=300, env=env)
    return p.returncode, p.stdout, p.stderr
