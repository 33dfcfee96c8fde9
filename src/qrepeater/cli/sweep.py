"""`qrepeater sweep`, `results`, `plot`: parameter sweeps into a resumable store, and their
tables and figures. The core (qrepeater.sweep) computes and yields progress; this renders."""

from __future__ import annotations

import difflib
import io
import itertools
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from qrepeater.cli._common import fail, fmt, handle_errors, print_json, rows_table, stderr, stdout
from qrepeater.errors import ParameterError

if TYPE_CHECKING:
    from qrepeater.sweep import ResultTable

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout.")]
StoreArg = Annotated[Path, typer.Argument(help="Results store (CSV) written by `qrepeater sweep`.")]

_BOOKKEEPING = ("strong_id", "model", "version", "preset", "preset_digest", "max_pieces", "seconds")


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA -"
    s = round(seconds)
    return f"ETA {s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}"


@handle_errors
def sweep(
    spec: Annotated[Path, typer.Argument(help="Sweep specification (TOML).")],
    out: Annotated[Path, typer.Option("--out", help="Results store (CSV); resumed if present.")],
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            help="Where to run: default local spawn processes; processes:N; local:N (Dask "
            "LocalCluster); tcp://HOST:PORT (Dask cluster); serial.",
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Local processes (default: one per core).")
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Run a parameter sweep into an append-only results store (kill and rerun to resume)."""
    from rich.progress import BarColumn, Progress, TextColumn

    from qrepeater.sweep import load_spec
    from qrepeater.sweep import sweep as run_sweep
    from qrepeater.sweep._executors import check_scheduler

    check_scheduler(scheduler)
    if workers is not None and workers < 1:
        raise ParameterError(f"--workers must be >= 1, got {workers}")
    parsed = load_spec(spec)  # every task is built and checked before anything runs
    last = None
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        console=stderr,
        transient=False,
    )
    events = run_sweep(parsed.tasks, store=out, executor=scheduler, workers=workers)
    try:
        first = next(events)  # store checks happen here, before any output
        with progress:
            bar = progress.add_task(f"sweep {parsed.model}", total=len(parsed.tasks), info="")
            for event in itertools.chain([first], events):
                last = event
                progress.update(
                    bar,
                    completed=event.tasks_done,
                    info=(
                        f"tasks {event.tasks_done}/{event.tasks_total}  pieces "
                        f"{event.pieces_done + event.pieces_reused} (+<={event.pieces_left})  "
                        f"samples {event.samples:,}  {_eta(event.eta_s)}"
                    ),
                )
    except KeyboardInterrupt:
        raise fail(
            f"interrupted; finished pieces are in {out}: run the same command to resume", 130
        ) from None
    assert last is not None
    summary = {
        "spec": str(spec),
        "store": str(out),
        "model": parsed.model,
        "executor": last.executor,
        "tasks": last.tasks_total,
        "tasks_done": last.tasks_done,
        "pieces_run": last.pieces_done,
        "pieces_reused": last.pieces_reused,
        "samples": last.samples,
        "seconds": last.elapsed_s,
        "complete": last.tasks_done == last.tasks_total,
    }
    if json:
        print_json(summary)
    else:
        stderr.print(
            f"{summary['tasks_done']}/{summary['tasks']} tasks; {summary['pieces_run']} pieces "
            f"run, {summary['pieces_reused']} reused; {out}",
            highlight=False,
        )


def _read(store: Path) -> ResultTable:
    from qrepeater.sweep import read_results

    table = read_results(store)
    for line in table.conflicts:
        stderr.print(f"[yellow]warning:[/] {line}", highlight=False)
    if table.torn_tail:
        stderr.print("[yellow]warning:[/] a torn last line was ignored", highlight=False)
    return table


def _check_column(name: str, columns: list[str], what: str) -> None:
    if name not in columns:
        close = difflib.get_close_matches(name, columns, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ParameterError(f"no column '{name}' for {what}{hint}")


@handle_errors
def results(
    store: StoreArg,
    columns: Annotated[
        str | None, typer.Option("--columns", help="Comma-separated columns to show.")
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Print the merged results of a store (one row per task)."""
    table = _read(store)
    records = table.records()
    if json:
        print_json(
            {
                "store": str(store),
                "rows": records,
                "conflicts": list(table.conflicts),
                "torn_tail": table.torn_tail,
            }
        )
        return
    all_cols = table.columns()
    if columns:
        shown = [c.strip() for c in columns.split(",") if c.strip()]
        for c in shown:
            _check_column(c, all_cols, "--columns")
    else:
        params = [k for r in table for k in r.params]
        values = [k for r in table for k in r.values]
        shown = list(dict.fromkeys([*params, "pieces", "samples", *values[:8]]))
        shown = [c for c in shown if c not in _BOOKKEEPING]

    def cell(rec: dict[str, Any], c: str) -> Any:
        err = rec.get(f"{c}_err")
        if isinstance(err, float) and isinstance(rec.get(c), float):
            return f"{fmt(rec[c])} ± {fmt(err, 2)}"
        return rec.get(c)

    stdout.print(
        rows_table(
            f"{store} ({len(table)} tasks)",
            shown,
            [[cell(rec, c) for c in shown] for rec in records],
        )
    )


@handle_errors
def plot(
    store: StoreArg,
    x: Annotated[str, typer.Option("--x", help="Column on the x axis (a parameter).")],
    y: Annotated[str, typer.Option("--y", help="Column on the y axis (a result).")],
    out: Annotated[Path, typer.Option("--out", help="Figure file (.png, .pdf, .svg).")],
    group: Annotated[
        str | None, typer.Option("--group", help="One line per value of this column.")
    ] = None,
    logy: Annotated[bool, typer.Option("--logy", help="Logarithmic y axis.")] = False,
    logx: Annotated[bool, typer.Option("--logx", help="Logarithmic x axis.")] = False,
    json: JsonOpt = False,
) -> None:
    """Plot one result against a parameter, with Monte-Carlo error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qrepeater._io import atomic_write_bytes

    if out.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise ParameterError(f"--out must end in .png, .pdf or .svg, got {out}")
    table = _read(store)
    records = table.records()
    cols = table.columns()
    _check_column(x, cols, "--x")
    _check_column(y, cols, "--y")
    if group is not None:
        _check_column(group, cols, "--group")
    # every other parameter that varies also separates lines, so no line zigzags
    params = list(dict.fromkeys(k for r in table for k in r.params))
    varying = [
        p for p in params if p not in (x, group) and len({repr(r.get(p)) for r in records}) > 1
    ]
    keys = ([group] if group else []) + varying
    series: dict[tuple[Any, ...], list[tuple[float, float, float | None]]] = {}
    for rec in records:
        xv, yv = rec.get(x), rec.get(y)
        if not isinstance(xv, int | float) or not isinstance(yv, int | float):
            continue
        err = rec.get(f"{y}_err")
        series.setdefault(tuple(rec.get(k) for k in keys), []).append(
            (float(xv), float(yv), float(err) if isinstance(err, int | float) else None)
        )
    if not series:
        raise ParameterError(f"no numeric ({x}, {y}) pairs in {store}")
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    points = 0
    for key, pts in sorted(series.items(), key=lambda kv: [repr(v) for v in kv[0]]):
        pts.sort()
        xs = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        label = ", ".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in zip(keys, key, strict=True)
        )
        errs = [p[2] for p in pts]
        if any(e is not None for e in errs):
            yerr = [e if e is not None and math.isfinite(e) else 0.0 for e in errs]
            ax.errorbar(xs, ys, yerr=yerr, marker="o", ms=3, capsize=2, label=label or None)
        else:
            ax.plot(xs, ys, marker="o", ms=3, label=label or None)
        points += len(pts)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if logy:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    if keys:
        ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=out.suffix.lower().lstrip("."), dpi=150)
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    if json:
        print_json({"out": str(out), "series": len(series), "points": points, "x": x, "y": y})
    else:
        stderr.print(f"wrote {out} ({len(series)} series, {points} points)", highlight=False)
