"""The output layer: one place for ``--json/--csv/--md/--html FILE|-`` (and ``--plot FILE.png``) of every command.

A command computes a *result object* (``Report``, ``LayerReport``, ``CheckResult``, ``DiffReport``,
``SweepReport``, ``CompareTable``, ``BenchResult``, ``ModuleList``): each has ``to_dict()`` (its JSON record) and
:func:`rows` gives its table rows as plain dicts.  The renderers, one per format, live here:

* rich table -- the command's ``print_*`` function, run by :meth:`Outputs.show` unless a format goes to stdout;
* JSON -- :func:`render_json` (``to_dict()``, indent 2; the schema is stable, keys are only added);
* CSV / Markdown -- :func:`render_csv` / :func:`render_md`: a result's dedicated table where it has one (model,
  sweep, table keep their documented columns), else :func:`rows` as a generic table;
* PNG -- :func:`render_png` (matplotlib, ``flopscope.plot``);
* HTML -- :func:`flopscope.html.render_html` (one self-contained page).

In a command::

    out = Outputs(json=json_out, csv=csv_out, md=md_out, html=html_out)   # checks: at most one '-'
    result = compute(...)
    out.show(print_result, result)      # the rich table, unless stdout is taken by a format
    out.write(result)                   # every requested format
"""
from __future__ import annotations

import csv
import io
import json
from typing import Callable, Optional

import typer

from .errors import FlopscopeError

FORMATS = ("json", "csv", "md", "html")
_WHAT = {"json": "the JSON record", "csv": "the table as CSV", "md": "the table as Markdown",
         "html": "a self-contained HTML report (tables, charts; opens from disk)"}


def option(fmt: str, help: Optional[str] = None):
    """The ``--json/--csv/--md/--html FILE|-`` option of a command (``-`` = stdout only, the table is then not
    printed)."""
    text = help or f"Write {_WHAT[fmt]} to FILE ('-' = stdout only)."
    text += {"json": " Example: --json out.json", "csv": " Example: --csv out.csv", "md": " Example: --md -",
             "html": " Example: --html report.html"}[fmt]
    return typer.Option(None, f"--{fmt}", metavar="FILE|-", help=text)


def JSON(help: Optional[str] = None):  # noqa: N802 - reads like the other shared options
    return option("json", help)


def CSV(help: Optional[str] = None):  # noqa: N802
    return option("csv", help)


def MD(help: Optional[str] = None):  # noqa: N802
    return option("md", help)


def HTML(help: Optional[str] = None):  # noqa: N802
    return option("html", help)


class Outputs:
    """The destinations a command was asked for, checked once: at most one of them may be ``-`` (stdout)."""

    def __init__(self, json: Optional[str] = None, csv: Optional[str] = None, md: Optional[str] = None,
                 html: Optional[str] = None, png: Optional[str] = None, png_option: str = "--plot"):
        self.dest = {f: d for f, d in (("json", json), ("csv", csv), ("md", md), ("html", html)) if d}
        self.png, self.png_option = png, png_option
        taken = [f"--{f} -" for f, d in self.dest.items() if d == "-"]
        if len(taken) > 1:
            raise FlopscopeError(f"only one output can go to stdout, got {' and '.join(taken)}; "
                                 f"write the others to files")
        if png == "-":
            raise FlopscopeError(f"{png_option} needs a file name (a PNG cannot go to stdout)")

    @property
    def to_stdout(self) -> bool:
        """True when a format goes to stdout: the human table is then not printed."""
        return "-" in self.dest.values()

    def show(self, fn: Callable, *args, **kwargs) -> None:
        """Run the rich-table printer ``fn(*args)`` unless stdout is taken by a format."""
        if not self.to_stdout:
            fn(*args, **kwargs)

    def write(self, result, json_data: Optional[dict] = None, extras: Optional[dict] = None) -> None:
        """Write ``result`` in every requested format (``json_data`` replaces ``to_dict()`` for JSON, e.g. model
        --check adding keys; ``extras`` are further results the HTML page shows, e.g. ``{"check": ...}``)."""
        for fmt, dest in self.dest.items():
            if fmt == "json" and json_data is not None:
                text = to_json(json_data)
            elif fmt == "html":
                text = render_html(result, extras)
            else:
                text = RENDERERS[fmt](result)
            write_output(text, dest)
        if self.png:
            render_png(result, self.png)


# -- renderers ---------------------------------------------------------------------------------------------------

def to_json(data) -> str:
    return json.dumps(data, indent=2)


def render_json(result) -> str:
    return to_json(result.to_dict())


def _kind(result) -> str:
    return type(result).__name__


def rows(result) -> list[dict]:
    """A result's table rows as plain dicts (the per-layer table, one row per term, per model ...)."""
    own = getattr(result, "rows", None)
    if callable(own):
        return own()
    k = _kind(result)
    if k == "Report":
        from .render import layer_rows

        return layer_rows(result)
    if k == "SweepReport":
        return [_flat(l.to_dict()) for l in result.layers]
    if k == "DiffReport":
        return [_flat(r) for r in result.to_dict()["rows"]]
    if k == "CompareTable":
        return [_flat(r.to_dict()) for r in result.rows]
    if k == "LayerReport":
        return [_flat(t.to_dict()) for t in result.terms]
    if k == "CheckResult":
        return [_flat(r) for r in result.to_dict()["layers"]]
    raise FlopscopeError(f"no table rows for {k}")


def _flat(d: dict, prefix: str = "") -> dict:
    """Nested dicts as ``a.b`` columns; lists as their JSON text."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(v, ensure_ascii=False)
        else:
            out[key] = v
    return out


def _columns(rs: list[dict]) -> list[str]:
    cols: dict[str, None] = {}
    for r in rs:
        cols.update(dict.fromkeys(r))
    return list(cols)


def table_csv(rs: list[dict], columns: Optional[list[str]] = None) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns or _columns(rs), lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rs:
        w.writerow(r)
    return buf.getvalue()


def md_escape(s) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def table_md(rs: list[dict], title: str = "", columns: Optional[list[str]] = None) -> str:
    cols = columns or _columns(rs)
    out = [f"### {md_escape(title)}", ""] if title else []
    out.append("| " + " | ".join(md_escape(c) for c in cols) + " |")
    out.append("|" + "|".join("---:" if all(isinstance(r.get(c), (int, float)) or r.get(c) is None for r in rs)
                              else "---" for c in cols) + "|")
    for r in rs:
        out.append("| " + " | ".join("" if r.get(c) is None else md_escape(_num(r.get(c))) for c in cols) + " |")
    return "\n".join(out) + "\n"


def _num(v):
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return v


def render_csv(result) -> str:
    k = _kind(result)
    if k == "Report":
        from .render import to_csv

        return to_csv(result)
    if k == "SweepReport":
        from .sweep import to_csv

        return to_csv(result)
    if k == "CompareTable":
        from .table import to_csv

        return to_csv(result)
    return table_csv(rows(result))


def render_md(result) -> str:
    k = _kind(result)
    if k == "Report":
        from .render import to_markdown

        return to_markdown(result)
    if k == "CompareTable":
        from .table import to_markdown

        return to_markdown(result)
    return table_md(rows(result), title=getattr(result, "title", "") or getattr(result, "model", "") or "")


def render_html(result, extras: Optional[dict] = None) -> str:
    from .html import render_html as html

    return html(result, extras)


def render_png(result, path: str) -> str:
    from . import plot

    k = _kind(result)
    if k == "Report":
        return plot.plot_model(result, path)
    if k == "SweepReport":
        return plot.plot_sweep(result, path)
    raise FlopscopeError(f"no PNG figure for {k}")


RENDERERS = {"json": render_json, "csv": render_csv, "md": render_md, "html": render_html}


def write_output(text: str, dest: str) -> None:
    from .render import write_output as write

    write(text, dest)


# -- the results that were bare data -----------------------------------------------------------------------------

class BenchResult(dict):
    """``flopscope bench``'s record: the JSON dict itself (``res["runs"]`` keeps working, JSON is unchanged) with
    ``to_dict()``, ``rows()`` and the analytic report it was measured against (``.report``, not in the JSON)."""

    def __init__(self, data: dict, report=None):
        super().__init__(data)
        self.report = report

    def to_dict(self) -> dict:
        return dict(self)

    def rows(self) -> list[dict]:
        out = []
        for run in self["runs"]:
            lat = run["latency_ms"]
            out.append({"batch": run["batch"], "median_ms": lat["median"], "p10_ms": lat["p10"],
                        "p90_ms": lat["p90"], "cv": lat["cv"], "throughput_img_s": run["throughput_img_s"],
                        "peak_memory_bytes": run["peak_memory_bytes"], "bound_ms": run["roofline"]["bound_ms"],
                        "achieved_pct": run["roofline"]["achieved_pct"]})
        return out


class ModuleList:
    """``flopscope list``'s record: every registered module (``records`` from ``commands.list.module_records``)."""

    title = "registered modules"

    def __init__(self, records: list[dict]):
        self.records = records

    def to_dict(self) -> dict:
        families: dict[str, list[str]] = {}
        rules: dict[str, str] = {}
        for r in self.records:
            families.setdefault(r["family"], []).append(r["name"])
            rules.setdefault(r["channel_rule"]["name"], r["channel_rule"]["description"])
        return {"modules": self.records, "families": families, "channel_rules": rules}

    def rows(self) -> list[dict]:
        return [{"name": r["name"], "family": r["family"], "description": r["description"],
                 "signature": r["signature_short"], "channel_rule": r["channel_rule"]["name"],
                 "inferred_rule": r["inferred_rule"], "origin": r["origin"]} for r in self.records]
