"""Merged results of a store: one row per strong id, pandas-free, convertible to Arrow/pandas."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from qrepeater.sweep._models import get_model
from qrepeater.sweep._stats import Scalar, TaskStats
from qrepeater.sweep._store import StoredPiece, group_pieces, read_store
from qrepeater.sweep._task import SampleBudget


def stop_satisfied(stats: TaskStats, budget: SampleBudget, target: str) -> bool:
    """Whether merged ``stats`` meet the budget's relative-error target on ``target``."""
    if budget.rel_error is None:
        return False
    m = stats.moments.get(target)
    if m is None:
        return False
    mean, se = m.mean, m.stderr
    return mean is not None and se is not None and mean != 0 and se <= budget.rel_error * abs(mean)


@dataclass(frozen=True)
class Selection:
    """Which stored pieces of a task count, and whether the task is finished."""

    stats: TaskStats | None
    complete: bool
    surplus: tuple[int, ...]
    next_missing: int | None


def select_pieces(
    pieces: Mapping[int, TaskStats], budget: SampleBudget | None, target: str | None
) -> Selection:
    """Merge the pieces that count, by a rule that does not depend on scheduling.

    Analytic tasks: piece 0. Monte-Carlo tasks: pieces ``0, 1, ...`` in order, up to the first
    ``k`` at which the merged prefix meets the stop rule; later pieces (run in parallel before
    the rule was met) are surplus and left out. With a gap in the prefix the task is not
    finished, and every stored piece is merged for a provisional estimate.
    """
    if budget is None:
        s = pieces.get(0)
        return Selection(s, s is not None, (), None if s is not None else 0)
    acc: TaskStats | None = None
    for k in range(budget.max_pieces):
        if k not in pieces:
            present = [pieces[i] for i in sorted(pieces)]
            merged = TaskStats.merge(present) if present else None
            return Selection(merged, False, (), k)
        acc = pieces[k] if acc is None else acc + pieces[k]
        if target is not None and stop_satisfied(acc, budget, target):
            return Selection(acc, True, tuple(i for i in sorted(pieces) if i > k), None)
    return Selection(acc, True, tuple(i for i in sorted(pieces) if i >= budget.max_pieces), None)


@dataclass(frozen=True)
class TaskResult:
    """The merged result of one task (one strong id)."""

    strong_id: str
    model: str
    version: str
    preset: str
    preset_digest: str
    params: Mapping[str, Any]
    budget: SampleBudget | None
    pieces: int
    max_pieces: int
    samples: int
    seconds: float
    complete: bool
    surplus_pieces: int
    values: Mapping[str, Scalar]
    errors: Mapping[str, float | None]
    stats: TaskStats | None = field(repr=False, default=None)

    def flat(self) -> dict[str, Any]:
        """One flat record: bookkeeping, parameters, values and ``<name>_err`` errors."""
        out: dict[str, Any] = {
            "strong_id": self.strong_id,
            "model": self.model,
            "version": self.version,
            "preset": self.preset,
            "preset_digest": self.preset_digest,
            "pieces": self.pieces,
            "max_pieces": self.max_pieces,
            "samples": self.samples,
            "seconds": self.seconds,
            "complete": self.complete,
        }
        out.update(self.params)
        for k, v in self.values.items():
            out[k] = v
            if k in self.errors:
                out[f"{k}_err"] = self.errors[k]
        return out


def result_of(pieces: Mapping[int, StoredPiece]) -> TaskResult:
    """Merge the stored pieces of one strong id."""
    first = next(iter(pieces.values()))
    model = get_model(first.model)
    budget = first.budget
    target = None
    if budget is not None:
        target = budget.target or (model.quantities[0] if model.quantities else None)
    sel = select_pieces({i: sp.stats for i, sp in pieces.items()}, budget, target)
    stats = sel.stats
    values: dict[str, Scalar] = {} if stats is None else stats.means()
    errors: dict[str, float | None] = {} if stats is None else stats.errors()
    if stats is not None and stats.moments and model.derive is not None:
        for k, (v, e) in model.derive(values, errors).items():
            values[k], errors[k] = v, e
    return TaskResult(
        strong_id=first.strong_id,
        model=first.model,
        version=first.version,
        preset=first.preset,
        preset_digest=first.preset_digest,
        params=dict(first.params),
        budget=budget,
        pieces=0 if stats is None else len(stats.pieces),
        max_pieces=1 if budget is None else budget.max_pieces,
        samples=0 if stats is None else stats.samples,
        seconds=0.0 if stats is None else stats.seconds,
        complete=sel.complete,
        surplus_pieces=len(sel.surplus),
        values=values,
        errors=errors,
        stats=stats,
    )


class ResultTable:
    """Rows of :class:`TaskResult` sorted by model and parameters; converts to Arrow, pandas.

    ``conflicts`` lists parameter sets stored under more than one strong id (another package
    version or preset content): such rows are never merged, and the caller is told.
    """

    def __init__(self, rows: list[TaskResult], *, conflicts: list[str], torn_tail: bool) -> None:
        self.rows = tuple(rows)
        self.conflicts = tuple(conflicts)
        self.torn_tail = torn_tail

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[TaskResult]:
        return iter(self.rows)

    def __getitem__(self, i: int) -> TaskResult:
        return self.rows[i]

    def records(self) -> list[dict[str, Any]]:
        """Flat records (see :meth:`TaskResult.flat`)."""
        return [r.flat() for r in self.rows]

    def columns(self) -> list[str]:
        """Column names in first-seen order."""
        seen: dict[str, None] = {}
        for rec in self.records():
            seen.update(dict.fromkeys(rec))
        return list(seen)

    def column(self, name: str) -> list[Any]:
        """One column (None where a row lacks it)."""
        return [rec.get(name) for rec in self.records()]

    def to_arrow(self) -> Any:
        """A :class:`pyarrow.Table` (numbers as float64/int64, missing as null)."""
        import pyarrow as pa

        cols: dict[str, list[Any]] = {}
        records = self.records()
        for name in self.columns():
            vals = [rec.get(name) for rec in records]
            kinds = {type(v) for v in vals if v is not None}
            if kinds <= {int, float} and float in kinds:
                vals = [None if v is None else float(v) for v in vals]
            elif len(kinds) > 1:
                vals = [None if v is None else str(v) for v in vals]
            cols[name] = vals
        return pa.table(cols)

    def to_pandas(self) -> Any:
        """A pandas DataFrame (needs pandas, which qrepeater does not depend on)."""
        try:
            importlib.import_module("pandas")
        except ImportError:  # pragma: no cover - depends on the environment
            raise ImportError("to_pandas() needs pandas; use to_arrow() or records()") from None
        return self.to_arrow().to_pandas()


def _order(r: TaskResult) -> tuple[Any, ...]:
    """Rows sorted by model, then parameters (numbers before text), then provenance."""
    params = tuple(
        (k, (0, float(v), "") if isinstance(v, int | float) else (1, 0.0, str(v)))
        for k, v in sorted(r.params.items())
    )
    return (r.model, params, r.version, r.preset_digest)


def table_from_pieces(pieces: tuple[StoredPiece, ...], *, torn_tail: bool) -> ResultTable:
    grouped = group_pieces(pieces)
    rows = sorted((result_of(by_piece) for by_piece in grouped.values()), key=_order)
    by_sig: dict[str, list[TaskResult]] = {}
    for sid, by_piece in grouped.items():
        sig = next(iter(by_piece.values())).signature()
        by_sig.setdefault(sig, []).append(next(r for r in rows if r.strong_id == sid))
    conflicts = []
    for group in by_sig.values():
        if len(group) > 1:
            what = sorted({f"qrepeater {r.version}, preset {r.preset_digest}" for r in group})
            conflicts.append(
                f"{group[0].model} {dict(group[0].params)} is stored under {len(group)} strong "
                f"ids ({'; '.join(what)}); they are kept apart"
            )
    return ResultTable(rows, conflicts=conflicts, torn_tail=torn_tail)


def read_results(path: str | os.PathLike[str]) -> ResultTable:
    """Read a results store and merge its pieces by strong id.

    A torn last line (a sweep killed mid-write) is ignored; see :class:`ResultTable` for
    results stored under different package versions or preset contents.
    """
    contents = read_store(path)
    return table_from_pieces(contents.pieces, torn_tail=contents.torn_tail)
