"""``flopscope list``: every registered module, grouped by the file (family) it comes from."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..cli import app, command
from ..registry import MODULES, ModuleSpec, load_zoo
from ..output import CSV, HTML, JSON, MD, ModuleList, Outputs


def family(spec: ModuleSpec) -> str:
    """The module file a registered class comes from: 'yolov5', 'torch.nn', a plugin file ..."""
    mod = getattr(spec.cls, "__module__", "") or ""
    if spec.origin not in ("flopscope", "torch"):
        return f"plugin {Path(str(spec.origin)).name}"
    if spec.origin == "torch" or mod.startswith("torch."):
        return "torch.nn"
    if mod.startswith("flopscope.modules."):
        return mod.rsplit(".", 1)[1]
    if mod.startswith("flopscope."):
        return mod.split(".", 1)[1]
    return mod.rsplit(".", 1)[-1] or "?"


def compact_signature(spec: ModuleSpec) -> str:
    """``ModuleSpec.signature`` without type annotations (torch's are long)."""
    import inspect

    try:
        sig = inspect.signature(spec.cls.__init__)
    except (TypeError, ValueError):
        return spec.signature
    params = [p.replace(annotation=inspect.Parameter.empty) for p in sig.parameters.values() if p.name != "self"]
    return "(" + ", ".join(str(p) for p in params) + ")"


def _family_order(name: str) -> tuple:
    return (name != "yolov5", name.startswith("plugin "), name == "torch.nn", name)


def module_records() -> list[dict]:
    """One record per registered name, grouped by family (yolov5 first, torch.nn and plugins last)."""
    load_zoo()
    records = []
    for name, spec in MODULES.items():
        records.append({
            "name": name, "family": family(spec), "origin": spec.origin,
            "class": f"{getattr(spec.cls, '__module__', '?')}.{getattr(spec.cls, '__qualname__', spec.cls)}",
            "description": (spec.description or "").strip().splitlines()[0] if (spec.description or "").strip() else "",
            "signature": spec.signature,
            "signature_short": compact_signature(spec),
            "channel_rule": {"name": spec.channels.name, "description": spec.channels.description},
            "inferred_rule": spec.inferred,
            "inputs": spec.channels.inputs,  # fixed number of inputs ('from' entries), or null
        })
    order = {n: i for i, n in enumerate(MODULES)}
    records.sort(key=lambda r: (_family_order(r["family"]), order[r["name"]]))
    return records


def list_table(records: list[dict]) -> Table:
    t = Table(title=f"{len(records)} registered modules", header_style="bold", expand=False)
    for col in ("family", "module", "description", "YAML signature", "channel rule"):
        t.add_column(col, no_wrap=col in ("family", "module", "channel rule"))
    last = None
    for r in records:
        if last is not None and r["family"] != last:
            t.add_section()
        cells = (r["family"] if r["family"] != last else "", r["name"], r["description"], r["signature_short"],
                 r["channel_rule"]["name"] + (" (inferred)" if r["inferred_rule"] else ""))
        t.add_row(*(escape(c) for c in cells))
        last = r["family"]
    return t


@app.command("list", epilog="Example: flopscope list --json modules.json   (or --json - / a bare --json: stdout)")
@command
def list_cmd(
    json_out: Optional[str] = JSON("Write the list as JSON to FILE ('-' or no value = stdout only)."),
    csv_out: Optional[str] = CSV("Write the list as CSV to FILE ('-' = stdout only)."),
    md_out: Optional[str] = MD("Write the list as Markdown to FILE ('-' = stdout only)."),
    html_out: Optional[str] = HTML("Write the list as a self-contained HTML page to FILE ('-' = stdout only)."),
):
    """List every registered module: description, YAML arg signature and channel rule, by family."""
    out = Outputs(json=json_out, csv=csv_out, md=md_out, html=html_out)
    records = module_records()
    out.show(print_list, records)
    out.write(ModuleList(records))


def print_list(records: list[dict]) -> None:
    import sys

    console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(list_table(records))
    console.print("Channel rules (how a YAML row's args become constructor args and output channels):",
                  highlight=False, markup=False)
    seen = {}
    for r in records:
        seen.setdefault(r["channel_rule"]["name"], r["channel_rule"]["description"])
    for name, desc in seen.items():
        console.print(f"  {name}: {desc}", highlight=False, markup=False)
    console.print("Profile one with: flopscope layer NAME --c 256 [--c2 C] [--args '[...]']", highlight=False,
                  markup=False)
