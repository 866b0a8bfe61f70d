"""Drawing a cross-check (``flopscope check``): the per-layer table of every counter's column with reason codes,
the totals to the MAC, and what YOLOv5's model_info prints; plus the progress bar."""
from __future__ import annotations

import sys

from .counters.explain import THRESHOLD_PCT, TOLERANCE, Cell


def _unit(total: float) -> tuple[float, str]:
    if total >= 1e9:
        return 1e9, "G"
    if total >= 1e6:
        return 1e6, "M"
    return 1e3, "k"


def fmt_signed(v: float, what: str = "MACs") -> str:
    a = abs(v)
    for div, u in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{v / div:+.3f} {u}{what}"
    return f"{v:+,.0f} {what}"


def _pct(p: float | None) -> str:
    if p is None:
        return ""
    if abs(p) == float("inf"):
        return "new"
    return f"{p:+.1f}%"


def cell_reasons(label: str, cell: Cell, always: bool = False) -> list[str]:
    """Reason lines for one cell ('' when the Δ is within the threshold and explained)."""
    if cell.explained and not (cell.significant or always):
        return []
    if cell.explained:
        return [f"{code} ({fmt_signed(v)})" for code, v in cell.reasons] or \
               [f"{label}: {fmt_signed(cell.delta)} (no rule difference?)"]
    if cell.predicted is None:
        return [f"{label}: unexplained Δ {fmt_signed(cell.delta)} (no rule predicts: "
                f"{'; '.join(cell.unpredictable[:2])}{' …' if len(cell.unpredictable) > 2 else ''})"]
    known = "; ".join(f"{c} {fmt_signed(v)}" for c, v in cell.reasons)
    return [f"{label}: unexplained Δ {fmt_signed(cell.residual)} beyond the rules"
            f"{(' (' + known + ')') if known else ''}"]


def print_check(result: CheckResult, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console() if sys.stdout.isatty() else Console(width=220)
    div, u = _unit(result.ours_total)
    names = result.counters
    h, w = result.img
    console.print(f"{result.model} @ {h}x{w}, batch 1, {result.device}: cross-check of "
                  f"{', '.join(result.columns[n].label for n in names)}", style="bold", highlight=False)
    from .crosscheck import UNITS

    console.print(f"Units: {u}MACs; {UNITS}. Reasons shown where |Δ| > {THRESHOLD_PCT} % of ours; each is a rule "
                  f"of docs/crosscheck.md confirmed by the numbers (measured = rules' prediction, to the MAC).",
                  highlight=False, markup=False)
    vers = "; ".join(f"{result.columns[n].label} {result.columns[n].version or '?'}" for n in names)
    console.print(f"Versions: {vers}", highlight=False, markup=False)
    for n in names:
        col = result.columns[n]
        if not col.ok:
            console.print(f"{col.label}: {col.reason}", style="yellow", highlight=False, markup=False)

    t = Table(title=None, header_style="bold", expand=False)
    t.add_column("idx", justify="right", no_wrap=True)
    t.add_column("module", no_wrap=True)
    t.add_column(f"ours", justify="right", no_wrap=True)
    for n in names:
        t.add_column(result.columns[n].label, justify="right", no_wrap=True)
    t.add_column("Δ reasons", overflow="fold", min_width=40)
    for lc in result.layers:
        vals, why = [], []
        for n in names:
            col = result.columns[n]
            if not col.ok:
                vals.append(f"[dim]{col.short()}[/dim]")
                continue
            c = lc.cells[n]
            txt = f"{c.measured / div:.3f}"
            if c.significant or not c.explained:
                txt += f" [dim]{_pct(c.delta_pct)}[/dim]"
            if not c.explained:
                txt = f"[red]{txt} ?[/red]"
            vals.append(txt)
            why.extend(_escape(r) if c.explained else f"[red]{_escape(r)}[/red]" for r in cell_reasons(col.label, c))
        t.add_row(str(lc.index), lc.module, f"{lc.ours / div:.3f}", *vals, "\n".join(why))
    t.add_section()
    tot_vals = []
    for n in names:
        cell = result.total_cell(n)
        if cell is None:
            tot_vals.append(f"[dim]{result.columns[n].short()}[/dim]")
            continue
        txt = f"{cell.measured / div:.3f} [dim]{_pct(cell.delta_pct)}[/dim]"
        tot_vals.append(txt if cell.explained else f"[red]{txt} ?[/red]")
    t.add_row("", "total", f"{result.ours_total / div:.3f}", *tot_vals, "", style="bold")
    console.print(t)

    console.print("Totals, to the MAC:", style="bold", highlight=False)
    console.print(f"  ours {result.ours_total:,} MACs", highlight=False, markup=False)
    for n in names:
        cell = result.total_cell(n)
        col = result.columns[n]
        if cell is None:
            console.print(f"  {col.label}: {col.reason}", highlight=False, markup=False)
            continue
        parts = " ".join(f"{'+' if v >= 0 else '-'} {abs(v):,.0f} [{code}]" for code, v in cell.reasons)
        if cell.explained:
            status = "explained exactly"
        elif cell.predicted is None:
            status = "UNEXPLAINED (no rule predicts: " + "; ".join(cell.unpredictable[:3]) + ")"
        else:
            status = f"UNEXPLAINED residual {cell.residual:+,.0f} MACs"
        bad = result.unexplained_layers(n)
        if bad:
            status += f"; unexplained layers: {', '.join(map(str, bad))}"
        console.print(f"  {col.label} {cell.measured:,.0f} = ours {parts or '(no difference)'}: {status}",
                      style=None if cell.explained else "red", highlight=False, markup=False)
    for note in result.notes:
        console.print(note, highlight=False, markup=False)
    _print_model_info(result, console)


def _escape(s: str) -> str:
    from rich.markup import escape

    return escape(s)


def _print_model_info(result: CheckResult, console) -> None:
    from rich.table import Table

    rep = getattr(result, "report", None)
    current = getattr(rep, "model_info_current_gflops", None)
    if current is not None:
        console.print()
        console.print(f"What current Ultralytics / YOLOv5 model.info() prints (ultralytics-thop 2.x get_flops, "
                      f"{rep.model_info_current_method}): {current:.3f} GFLOPs (it shows {current:.1f})",
                      highlight=False, markup=False)
    mi = result.model_info
    if mi is None:
        return
    if "error" in mi:
        console.print(f"YOLOv5 model_info: {mi['error']}", highlight=False, markup=False)
        return
    p = mi["probe"]
    console.print()
    console.print(f"What YOLOv5's model_info prints: 2 x thop MACs on a {p}x{p} probe x (H·W / {p}²) = "
                  f"{mi['printed_gflops']:.3f} GFLOPs (it shows {mi['printed_gflops']:.1f}); true: "
                  f"{mi['true_gflops']:.3f} GFLOPs (2 x our MACs)"
                  + (f"; thop really run on the probe: {mi['measured_gflops']:.3f}" if "measured_gflops" in mi else ""),
                  style="bold", highlight=False, markup=False)
    t = Table(header_style="bold", expand=False)
    for col, just in (("idx", "right"), ("module", "left"), ("true GFLOPs", "right"), ("model_info", "right"),
                      ("thop on probe", "right"), ("Δ", "right"), ("", "center"), ("why", "left")):
        t.add_column(col, justify=just, no_wrap=col != "why", overflow="fold")
    for lc in result.layers:
        r = lc.model_info
        if r is None:
            continue
        pct = (100 * r["delta_flops"] / r["true_flops"]) if r["true_flops"] else None
        meas = r.get("measured_model_info_flops")
        ok_meas = meas is None or abs(meas - r["model_info_flops"]) <= 2 * TOLERANCE * mi["scale"] + 1e-6 * abs(meas)
        meas_txt = "-" if meas is None else f"{meas / 1e9:.4f}" + ("" if ok_meas else " [red]≠[/red]")
        t.add_row(str(r["index"]), r["module"], f"{r['true_flops'] / 1e9:.4f}", f"{r['model_info_flops'] / 1e9:.4f}",
                  meas_txt, _pct(pct) if pct is not None else ("" if abs(r["delta_flops"]) < 1 else "new"),
                  "[yellow]![/yellow]" if r["wrong"] else "", _escape("; ".join(r["why"])) if r["wrong"] else "")
    console.print(t)
    if mi["wrong_layers"]:
        console.print(f"! layers that make model_info wrong (|Δ| > {THRESHOLD_PCT} %): "
                      f"{', '.join(map(str, mi['wrong_layers']))}", highlight=False, markup=False)


class ProgressBar:
    """A rich progress bar on stderr while the counters run (nothing when stderr is not a terminal)."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        console = Console(file=sys.stderr)
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=True,
                                 disable=not console.is_terminal)
        self.task = None

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def __call__(self, description: str, done: int, total: int) -> None:
        if self.task is None:
            self.task = self.progress.add_task(description, total=total)
        self.progress.update(self.task, description=description, completed=done, total=total)
