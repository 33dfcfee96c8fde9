"""The sweep core: plan the pieces a store still lacks, run them, append them, yield progress.

Like sinter's ``iter_collect``, the core does no rendering: it yields :class:`SweepEvent` objects
and the command line (or a notebook) shows them. Every finished piece is appended to the store
(and fsync'd) before its event is yielded, so a sweep can be killed at any moment and started
again: finished pieces are read back and not recomputed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from qrepeater.errors import QRepeaterError
from qrepeater.sweep._errors import ExecutorError, StoreError
from qrepeater.sweep._executors import Executor, make_executor
from qrepeater.sweep._models import run_batch, stop_target
from qrepeater.sweep._results import ResultTable, read_results, select_pieces
from qrepeater.sweep._stats import TaskStats
from qrepeater.sweep._store import StoreContents, StoreWriter, task_signature
from qrepeater.sweep._task import Task, package_version


@dataclass(frozen=True)
class SweepEvent:
    """Progress of a sweep.

    ``kind``: ``start`` (planned, nothing run yet), ``piece`` (a piece was stored) or
    ``finish``. Counts: tasks in the sweep and finished; pieces run by this call and found
    already stored; ``pieces_left``: most pieces still to run (fewer when stop rules end
    tasks early); ``samples``: samples of all finished pieces; ``eta_s``: estimate from the
    mean time per piece so far.
    """

    kind: Literal["start", "piece", "finish"]
    tasks_total: int
    tasks_done: int
    pieces_done: int
    pieces_reused: int
    pieces_left: int
    samples: int
    elapsed_s: float
    eta_s: float | None
    executor: str
    task: Task | None = None
    piece: int | None = None


def _check_store(contents: StoreContents, tasks: list[Task], path: Path) -> None:
    """Refuse a store written by another package version, or one holding the same parameters
    computed on another preset content: such results are never merged silently."""
    version = package_version()
    others = sorted({p.version for p in contents.pieces if p.version != version})
    if others:
        raise StoreError(
            f"{path} holds results of qrepeater {', '.join(others)}; this is {version}: write "
            "to a new --out file"
        )
    planned = {task_signature(t): t for t in tasks}
    for sp in contents.pieces:
        t = planned.get(sp.signature())
        if t is not None and t.strong_id != sp.strong_id:
            raise StoreError(
                f"{path} holds {t.label()} computed with preset {sp.preset} (content "
                f"{sp.preset_digest}); this sweep's preset {t.preset.label} has content "
                f"{t.preset_digest}: write to a new --out file"
            )


def sweep(
    tasks: Iterable[Task],
    *,
    store: str | os.PathLike[str],
    executor: Executor | str | None = None,
    workers: int | None = None,
    max_batch: int = 64,
) -> Iterator[SweepEvent]:
    """Run ``tasks`` into the append-only ``store``, yielding progress events.

    ``executor``: an :class:`Executor` the caller owns, or a scheduler string for
    :func:`~qrepeater.sweep.make_executor` (None: local spawn processes, ``workers`` of them,
    default one per core; ``local:N``; ``tcp://HOST:PORT``), created only if there is work
    and closed at the end. Pieces already in the store are not recomputed. Small analytic
    tasks travel in batches of up to ``max_batch``. Nothing happens until the generator is
    iterated; :func:`collect` runs it to the end.
    """
    t_start = time.perf_counter()
    path = Path(store)
    todo: list[Task] = list({t.strong_id: t for t in tasks}.values())
    # an existing store is locked before it is read, and checked before anything is written
    writer = StoreWriter(path, create=False) if path.exists() else None
    contents = writer.contents if writer is not None else None
    try:
        if contents is not None:
            _check_store(contents, todo, path)
    except BaseException:
        if writer is not None:
            writer.close()
        raise
    stored: list[dict[int, TaskStats]] = [{} for _ in todo]
    index = {t.strong_id: i for i, t in enumerate(todo)}
    for sp in contents.pieces if contents else ():
        i = index.get(sp.strong_id)
        if i is not None and sp.piece not in stored[i]:
            stored[i][sp.piece] = sp.stats
    targets = [stop_target(t) if t.budget is not None else None for t in todo]
    done = [False] * len(todo)
    samples = 0
    for i, t in enumerate(todo):
        sel = select_pieces(stored[i], t.budget, targets[i])
        done[i] = sel.complete
        samples += 0 if sel.stats is None else sel.stats.samples
    reused = sum(len(s) for s in stored)
    pieces_run = 0

    # most pieces still to run, and tasks finished (kept up to date, not recounted)
    remaining = sum(t.max_pieces - len(stored[i]) for i, t in enumerate(todo) if not done[i])
    tasks_done = sum(done)

    def event(kind: Literal["start", "piece", "finish"], desc: str, **kw: Any) -> SweepEvent:
        elapsed = time.perf_counter() - t_start
        eta = elapsed / pieces_run * remaining if pieces_run else None
        return SweepEvent(
            kind=kind,
            tasks_total=len(todo),
            tasks_done=tasks_done,
            pieces_done=pieces_run,
            pieces_reused=reused,
            pieces_left=remaining,
            samples=samples,
            elapsed_s=elapsed,
            eta_s=0.0 if remaining == 0 else eta,
            executor=desc,
            **kw,
        )

    owned = not (executor is not None and not isinstance(executor, str))
    ex: Executor | None = None if owned else executor  # type: ignore[assignment]
    aborted = False
    try:
        if ex is None and not all(done):
            # before the store is touched: an unreachable scheduler leaves no trace
            ex = make_executor(executor if isinstance(executor, str) else None, workers=workers)
        if writer is None:
            writer = StoreWriter(path, create=True)
        writer.start()
    except BaseException:
        if writer is not None:
            writer.close()
        if owned and ex is not None:
            ex.abort()
        raise
    try:
        if all(done):
            yield event("start", ex.description if ex else "none needed")
            yield event("finish", ex.description if ex else "none needed")
            return
        assert ex is not None
        yield event("start", ex.description)
        in_flight: dict[Any, list[tuple[int, int]]] = {}
        running = [set[int]() for _ in todo]  # pieces submitted, not yet back
        cursor = [0] * len(todo)
        first_open = 0
        n_analytic = sum(1 for i, t in enumerate(todo) if t.budget is None and not done[i])
        batch = max(1, min(max_batch, n_analytic // (8 * ex.slots)))
        slots = ex.slots
        capacity = 2 * slots

        def next_pieces() -> list[tuple[int, int]]:
            """Up to one batch of analytic pieces, or one Monte-Carlo piece."""
            nonlocal first_open
            out: list[tuple[int, int]] = []
            i = first_open
            while i < len(todo):
                t = todo[i]
                if done[i] or cursor[i] >= t.max_pieces:
                    if i == first_open:
                        first_open += 1
                    i += 1
                    continue
                if t.budget is not None and len(running[i]) >= slots:
                    i += 1  # keep overshoot past an early stop small
                    continue
                k = cursor[i]
                cursor[i] += 1
                if k in stored[i]:
                    continue
                if t.budget is not None:
                    if out:
                        return out
                    return [(i, k)]
                out.append((i, k))
                if len(out) >= batch:
                    return out
            return out

        while True:
            while len(in_flight) < capacity:
                items = next_pieces()
                if not items:
                    break
                for i, k in items:
                    running[i].add(k)
                fut = ex.submit(run_batch, [(todo[i], k) for i, k in items])
                in_flight[fut] = items
            if not in_flight:
                break
            finished, _ = ex.wait_any(set(in_flight), timeout=1.0)
            for fut in [f for f in in_flight if f in finished]:  # in submission order
                popped = in_flight.pop(fut, None)
                if popped is None:
                    continue  # cancelled above, after an early stop
                items = popped
                if fut.cancelled():
                    for i, k in items:
                        running[i].discard(k)
                    continue
                try:
                    results: list[TaskStats] = fut.result()
                except QRepeaterError:
                    raise
                except Exception as exc:
                    what = ", ".join(f"{todo[i].label()} piece {k}" for i, k in items[:3])
                    raise ExecutorError(f"{what} failed: {type(exc).__name__}: {exc}") from exc
                fresh = []
                for (i, k), stats in zip(items, results, strict=True):
                    running[i].discard(k)
                    if not (done[i] or k in stored[i]):  # else surplus past an early stop
                        fresh.append((i, k, stats))
                writer.append_many([(todo[i], stats) for i, _, stats in fresh])
                for i, k, stats in fresh:
                    stored[i][k] = stats
                    pieces_run += 1
                    remaining -= 1
                    samples += stats.samples
                    sel = select_pieces(stored[i], todo[i].budget, targets[i])
                    if sel.complete:
                        done[i] = True
                        tasks_done += 1
                        remaining -= todo[i].max_pieces - len(stored[i])  # stopped early
                        for other, its in list(in_flight.items()):
                            # Dask's cancel returns None, concurrent.futures' False if running
                            if all(j == i for j, _ in its) and other.cancel() is not False:
                                del in_flight[other]
                                for j, kk in its:
                                    running[j].discard(kk)
                    yield event("piece", ex.description, task=todo[i], piece=k)
        yield event("finish", ex.description)
    except BaseException:
        aborted = True
        raise
    finally:
        writer.close()
        if owned and ex is not None:
            if aborted:
                ex.abort()
            else:
                ex.close()


def collect(
    tasks: Iterable[Task],
    *,
    store: str | os.PathLike[str],
    executor: Executor | str | None = None,
    workers: int | None = None,
) -> ResultTable:
    """Run :func:`sweep` to the end and return the merged results of the store."""
    for _ in sweep(tasks, store=store, executor=executor, workers=workers):
        pass
    return read_results(store)
