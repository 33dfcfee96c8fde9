"""Shared CLI plumbing: error handling, JSON output, rich tables. No physics here."""

from __future__ import annotations

import functools
import json
import math
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from qrepeater.errors import ProtocolAbort, QRepeaterError

P = ParamSpec("P")
R = TypeVar("R")


def _console(*, stderr: bool) -> Console:
    probe = Console(stderr=stderr)
    # wide tables in logs and pipes; the terminal's own width otherwise. User text (paths,
    # preset names, run ids) must reach these consoles as rich Text or with markup=False.
    return Console(stderr=stderr, soft_wrap=True, width=None if probe.is_terminal else 160)


stdout = _console(stderr=False)
stderr = _console(stderr=True)


def one_line(message: object) -> str:
    """``message`` on one line (whitespace runs, newlines included, become one space)."""
    return " ".join(str(message).split())


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error to stderr and return the Exit to raise.

    The message is user text (paths, preset names, run ids): it is printed literally, never
    interpreted as rich markup, so ``[/x]`` neither crashes nor disappears.
    """
    stderr.print(
        Text.assemble(("error:", "bold red"), " ", one_line(message)),
        highlight=False,
        soft_wrap=True,
    )
    return typer.Exit(code)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn library errors into a one-line message and exit status 2 (3 for a protocol abort),
    with no traceback and no warning lines before it (numpy's RuntimeWarnings are silenced:
    the library checks its results itself and raises when they are unusable)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                return func(*args, **kwargs)
        except ProtocolAbort as exc:
            raise fail(f"aborted ({exc.reason}): {exc}", 3) from None
        except QRepeaterError as exc:
            raise fail(str(exc)) from None
        except (MemoryError, OverflowError) as exc:
            raise fail(f"input too large for this machine ({type(exc).__name__})") from None
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            raise fail(f"{exc.strerror or exc}{where}") from None

    return wrapper


def _usage_error_one_line(self: Any) -> None:
    """Click usage errors as one line on stderr (replaces typer's multi-line rich panel)."""
    if type(self).__name__ == "NoArgsIsHelpError":  # help was shown instead
        return
    ctx = getattr(self, "ctx", None)
    where = f"{ctx.command_path}: " if ctx is not None else ""
    hint = " (see --help)" if ctx is not None else ""
    sys.stderr.write(f"error: {where}{one_line(self.format_message())}{hint}\n")
    sys.stderr.flush()


def _install_usage_error_format() -> None:
    import typer.rich_utils

    typer.rich_utils.rich_format_error = _usage_error_one_line


_install_usage_error_format()


def jsonable(obj: Any) -> Any:
    """Recursively convert to JSON-safe values (non-finite floats become null)."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj


def print_json(obj: Any) -> None:
    """One JSON object on stdout."""
    sys.stdout.write(json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()


def fmt(value: Any, digits: int = 4) -> str:
    """Compact human formatting of numbers."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}"
    return str(value)


def kv_table(title: str, items: Mapping[str, Any]) -> Table:
    """Two-column key/value table; nested mappings are flattened with dots. Every string is
    shown literally (rich Text), never parsed as markup."""
    table = Table(title=Text(title), show_header=False, title_justify="left")
    table.add_column("quantity", style="cyan")
    table.add_column("value", justify="right")

    def add(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                add(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, list | tuple) and value and all(isinstance(v, float) for v in value):
            table.add_row(Text(prefix), Text(", ".join(fmt(v) for v in value)))
        else:
            table.add_row(Text(prefix), Text(fmt(value)))

    add("", items)
    return table


def rows_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """A table with a header row."""
    table = Table(title=Text(title), title_justify="left")
    for i, c in enumerate(columns):
        table.add_column(Text(c), justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(*(Text(fmt(v)) for v in r))
    return table
