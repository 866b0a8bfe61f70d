"""The ``flopscope`` command line (Typer).  Commands live in :mod:`flopscope.commands`, one file each.

Every error a user can cause ends as one line on stderr and exit code 2; ``--debug`` anywhere on
the command line shows the traceback instead.
"""
from __future__ import annotations

import functools
import sys
import traceback
from typing import Optional

import typer

from .errors import FlopscopeError, nearest, one_line, suggestion

app = typer.Typer(
    name="flopscope",
    help="Exact, explainable Params / MACs / FLOPs / latency for YOLOv5-style models.\n\n"
         "Example: flopscope model yolov5s --img 640",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

DEBUG = False


def fail(message: str, code: int = 2):
    """Print one error line on stderr and exit."""
    sys.stderr.write(f"flopscope: error: {one_line(message)}\n")
    raise typer.Exit(code)


def command(fn):
    """Wrap a command so user errors become one stderr line and exit 2 (traceback with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except FlopscopeError as e:
            if DEBUG:
                traceback.print_exc()
            fail(str(e).replace("\n", " "), e.exit_code)
        except Exception as e:  # noqa: BLE001 - never a raw traceback without --debug
            if DEBUG:
                traceback.print_exc()
            msg = str(e).replace("\n", " ")[:300]
            fail(f"internal error: {type(e).__name__}: {msg} (rerun with --debug for the traceback)")

    wrapper.__doc__ = _reflow(fn.__doc__)
    return wrapper


def _reflow(doc: str | None) -> str | None:
    """Join the wrapped lines of each docstring paragraph (help text is re-wrapped to the terminal)."""
    if not doc:
        return doc
    import inspect

    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors (any position)."),
    plugin: list[str] = typer.Option([], "--plugin", help="Python file defining your own modules (repeatable, any "
                                                          "position, every command). Inside a project (a folder with "
                                                          "models/ or utils/), its imports resolve there."),
    channels: list[str] = typer.Option([], "--channels", help="NAME=RULE: the channel rule of a plugin class that "
                                                              "declares none (conv, conv+n, same, none, concat, "
                                                              "detect); repeatable, e.g. --channels MLCA=same."),
    verbose: bool = typer.Option(False, "--verbose", help="Print every plugin warning, not one line per kind."),
    fork: Optional[str] = typer.Option(None, "--fork", help="DIR of a YOLOv5 checkout: build configs with ITS OWN "
                                                            "models/yolo.py Model (this RUNS the fork's code), then "
                                                            "count that model. Automatic for a YAML inside a "
                                                            "checkout's models/; --no-fork turns that off. E.g. "
                                                            "flopscope model models/yolov5s_X.yaml --fork ."),
    no_fork: bool = typer.Option(False, "--no-fork", help="Never build with a fork's code (use flopscope's builder)."),
):
    """Exact, explainable Params / MACs / FLOPs / latency for YOLOv5-style models."""
    global DEBUG
    DEBUG = DEBUG or debug


GLOBAL_VALUE_OPTIONS = ("--plugin", "--channels", "--fork")
GLOBAL_FLAGS = ("--debug", "--verbose", "--no-fork")


def _take_global_options(argv: list[str]) -> tuple[list[str], dict]:
    """Remove the global options (``--debug``, ``--plugin FILE``, ``--channels NAME=RULE``,
    ``--verbose``, ``--fork DIR``, ``--no-fork``) from anywhere in argv (they apply to every command)."""
    global DEBUG
    rest: list[str] = []
    opts: dict = {o: [] for o in GLOBAL_VALUE_OPTIONS}
    opts.update({o: False for o in GLOBAL_FLAGS})
    it = iter(argv)
    for a in it:
        if a == "--":
            rest.append(a)
            rest.extend(it)
            break
        if a in GLOBAL_FLAGS:
            opts[a] = True
        elif a in GLOBAL_VALUE_OPTIONS:
            opts[a].append(next(it, ""))
        elif a.split("=", 1)[0] in GLOBAL_VALUE_OPTIONS and "=" in a:
            k, v = a.split("=", 1)
            opts[k].append(v)
        else:
            rest.append(a)
    DEBUG = DEBUG or opts["--debug"]
    return rest, opts


#: options that may be given without their value (then the value shown), per command: `flopscope list --json`
#: has always meant stdout, and now takes `--json FILE|-` like every other command.
OPTIONAL_VALUE = {"list": {"--json": "-"}}


def _fill_optional_values(argv: list[str]) -> list[str]:
    cmd = next((a for a in argv if not a.startswith("-")), None)
    opts = OPTIONAL_VALUE.get(cmd or "", {})
    out = []
    for i, a in enumerate(argv):
        out.append(a)
        if a in opts and (i + 1 == len(argv) or argv[i + 1].startswith("--")):
            out.append(opts[a])
    return out


def main(argv: list[str] | None = None) -> None:
    argv, opts = _take_global_options(list(sys.argv[1:] if argv is None else argv))
    argv = _fill_optional_values(argv)
    from . import commands  # noqa: F401  (registers every command on `app`)

    setup = command(_setup)
    try:
        try:
            setup(opts)
        except typer.Exit as e:
            sys.exit(e.exit_code)
        _run(argv)
    finally:  # this run's --fork / --channels do not outlive it (tests run many in one process)
        from . import fork, plugins

        fork.configure(None)
        plugins.CHANNEL_OVERRIDES.clear()


def _setup(opts: dict) -> None:
    """Apply the global options of this run: channel overrides, the fork, the plugins."""
    from . import fork, plugins

    plugins.CHANNEL_OVERRIDES.clear()
    plugins.CHANNEL_OVERRIDES.update(plugins.parse_channels(opts["--channels"]))
    fork.configure(opts["--fork"][-1] if opts["--fork"] else None, auto=not opts["--no-fork"])
    loaded = plugins.load_plugins(opts["--plugin"], verbose=opts["--verbose"]) if opts["--plugin"] else []
    if plugins.CHANNEL_OVERRIDES and not opts["--fork"]:
        plugins.check_channel_names(plugins.CHANNEL_OVERRIDES, loaded)


def _run(argv: list[str]) -> None:
    """Run the app; usage errors (unknown option or command, bad value) become one stderr line
    with the nearest option or command name, exit 2 -- like every other error."""
    click = _click_exceptions()
    try:
        rv = app(args=argv, prog_name="flopscope", standalone_mode=False)
    except click.NoArgsIsHelpError as e:  # bare `flopscope`: the help (Typer's rich help is already printed)
        text = e.format_message()
        if text.strip():
            sys.stderr.write(text.rstrip("\n") + "\n")
        sys.exit(e.exit_code)
    except click.UsageError as e:
        sys.stderr.write(f"flopscope: error: {_usage_message(e, argv)}\n")
        sys.exit(e.exit_code)
    except click.ClickException as e:
        sys.stderr.write(f"flopscope: error: {one_line(e.format_message())}\n")
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.stderr.write("flopscope: aborted\n")
        sys.exit(1)
    # standalone_mode=False hands back typer.Exit codes (e.g. 2 from `fail`) as the return value
    sys.exit(rv if type(rv) is int else 0)


def _click_exceptions():
    """Click's exception classes as Typer raises them (Typer >= 0.24 vendors Click as typer._click)."""
    try:
        from typer._click import exceptions
    except ImportError:  # older Typer on the click package
        from click import exceptions
    return exceptions


def _usage_message(e, argv: list[str]) -> str:
    import re

    click = _click_exceptions()
    msg = one_line(e.format_message())
    ctx = e.ctx
    if ctx is not None and isinstance(e, click.NoSuchOption) and not e.possibilities:
        # Click suggests only close, same-case long options; '-img' is parsed as '-i' '-m' '-g'
        token = next((a for a in argv if a.startswith(e.option_name) and not a.startswith("--")), e.option_name)
        opts = sorted({o for p in ctx.command.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")})
        hits = nearest("--" + token.lstrip("-").split("=")[0], opts)
        if hits:
            msg = f"no such option: {token} (did you mean {', '.join(hits)}?)"
    elif ctx is not None and "Did you mean" not in msg and hasattr(ctx.command, "list_commands"):
        m = re.match(r"No such command '(.+?)'", msg)
        if m:
            msg += suggestion(m.group(1), ctx.command.list_commands(ctx))
    where = ctx.command_path if ctx is not None else "flopscope"
    return f"{msg} (see '{where} --help')"
