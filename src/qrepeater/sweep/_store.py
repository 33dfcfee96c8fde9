"""The append-only results store: one CSV line per finished piece, each with its own checksum.

Columns: ``strong_id, piece, samples, seconds, model, version, preset, preset_digest, params,
budget, stats, check``; ``params``, ``budget`` and ``stats`` are compact JSON; ``check`` is the
first 16 hex digits of the SHA-256 of everything before it on the line. A line is written with
one ``write`` and made durable with ``fsync`` before the sweep counts it done, so a killed sweep
leaves at most one torn line, at the end: it is detected (no newline, or a bad checksum) and
ignored when reading, and cut off before the next append. A bad line anywhere else is corruption
and an error. Reading merges the pieces of each strong id (the DESIGN.md convention, after
sinter's CSV of increments).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from qrepeater.sweep._errors import StoreError
from qrepeater.sweep._stats import TaskStats
from qrepeater.sweep._task import SampleBudget, Task, canonical_json

COLUMNS = (
    "strong_id",
    "piece",
    "samples",
    "seconds",
    "model",
    "version",
    "preset",
    "preset_digest",
    "params",
    "budget",
    "stats",
    "check",
)
HEADER = ",".join(COLUMNS) + "\n"


def _check(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class StoredPiece:
    """One line of the store."""

    strong_id: str
    piece: int
    samples: int
    seconds: float
    model: str
    version: str
    preset: str
    preset_digest: str
    params: Mapping[str, Any]
    budget: SampleBudget | None
    payload: Mapping[str, Any] = field(repr=False)

    @property
    def stats(self) -> TaskStats:
        return TaskStats.from_payload(
            strong_id=self.strong_id,
            piece=self.piece,
            samples=self.samples,
            seconds=self.seconds,
            payload=self.payload,
        )

    def signature(self) -> str:
        """Model, parameters and budget: what the user asked for, without preset and version."""
        b = None if self.budget is None else self.budget.to_dict()
        return canonical_json({"model": self.model, "params": dict(self.params), "budget": b})


def task_signature(task: Task) -> str:
    """:meth:`StoredPiece.signature` of a task."""
    b = None if task.budget is None else task.budget.to_dict()
    return canonical_json({"model": task.model, "params": task.param_dict, "budget": b})


def format_line(task: Task, stats: TaskStats) -> str:
    """The store line of one finished piece (with its newline)."""
    (piece,) = stats.pieces
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(
        [
            task.strong_id,
            piece,
            stats.samples,
            repr(float(stats.seconds)),
            task.model,
            task.version,
            task.preset.label,
            task.preset_digest,
            canonical_json(task.param_dict),
            canonical_json(None if task.budget is None else task.budget.to_dict()),
            json.dumps(stats.payload(), sort_keys=True, separators=(",", ":")),
        ]
    )
    body = buf.getvalue()
    return f"{body},{_check(body)}\n"


def _parse_line(line: str) -> StoredPiece | None:
    """A stored piece, or None if the line is damaged."""
    body, sep, check = line.rpartition(",")
    if not sep or _check(body) != check:
        return None
    try:
        (row,) = list(csv.reader([body]))
        if len(row) != len(COLUMNS) - 1:
            return None
        budget = json.loads(row[9])
        return StoredPiece(
            strong_id=row[0],
            piece=int(row[1]),
            samples=int(row[2]),
            seconds=float(row[3]),
            model=row[4],
            version=row[5],
            preset=row[6],
            preset_digest=row[7],
            params=json.loads(row[8]),
            budget=None if budget is None else SampleBudget.from_dict(budget),
            payload=json.loads(row[10]),
        )
    except (ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class StoreContents:
    """What a store holds: its valid pieces, and how many bytes of the file they span."""

    pieces: tuple[StoredPiece, ...]
    valid_bytes: int
    torn_tail: bool


def read_store(path: str | os.PathLike[str]) -> StoreContents:
    """Read and check every line; a damaged last line is reported as ``torn_tail`` and left
    out, a damaged line before it raises :class:`StoreError`."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise StoreError(f"results store not found: {p}") from None
    if not data:
        return StoreContents((), 0, False)
    lines = data.split(b"\n")
    # a complete file ends with a newline, so the last element is b""; anything else is torn
    complete, tail = lines[:-1], lines[-1]
    if not complete:
        if HEADER.encode().startswith(data):
            return StoreContents((), 0, True)  # killed while writing the header
        raise StoreError(f"{p} is not a qrepeater sweep store (no header line)")
    if complete[0].decode("utf-8", "replace") + "\n" != HEADER:
        raise StoreError(f"{p} is not a qrepeater sweep store (unexpected header)")
    pieces: list[StoredPiece] = []
    offset = len(complete[0]) + 1
    torn = bool(tail)
    for i, raw in enumerate(complete[1:], start=2):
        try:
            parsed = _parse_line(raw.decode("utf-8"))
        except UnicodeDecodeError:
            parsed = None
        if parsed is None:
            if i == len(complete) and not tail:
                torn = True  # the last line was damaged while being written
                break
            raise StoreError(f"{p} line {i} is corrupt (checksum mismatch)")
        pieces.append(parsed)
        offset += len(raw) + 1
    return StoreContents(tuple(pieces), offset, torn)


class StoreWriter:
    """Appends lines to a store: one ``write`` + ``flush`` + ``fsync`` per piece.

    Opening takes an exclusive advisory lock (POSIX ``flock``), so that two sweeps never append
    to the same store at once, and only then reads the store (:attr:`contents`): nothing can
    change it between reading and appending. ``create=False`` opens an existing store without
    creating one. Nothing is written before :meth:`start`, which cuts a torn last line off (its
    piece will be recomputed) or writes the header of a new store.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool) -> None:
        self.path = Path(path)
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        fd = os.open(self.path, flags, 0o644)
        self._fh: IO[bytes] = os.fdopen(fd, "r+b", buffering=0)
        try:
            self._lock()
            self.contents = read_store(self.path)
        except BaseException:
            self._fh.close()
            raise

    def start(self) -> None:
        """Make the file ready for appending (header, or a torn tail cut off)."""
        if self.contents.valid_bytes == 0:
            self._fh.truncate(0)
            self._write(HEADER.encode())
        elif self.contents.torn_tail:
            self._fh.truncate(self.contents.valid_bytes)
            os.fsync(self._fh.fileno())
        self._fh.seek(0, os.SEEK_END)

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(f"{self.path} is being written by another sweep") from None

    def _write(self, data: bytes) -> None:
        self._fh.write(data)
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def append(self, task: Task, stats: TaskStats) -> None:
        """Write one finished piece durably."""
        self._write(format_line(task, stats).encode("utf-8"))

    def append_many(self, items: Sequence[tuple[Task, TaskStats]]) -> None:
        """Write several finished pieces with one ``write`` and one ``fsync`` (a batch of small
        tasks); a crash can still tear only the last line."""
        if items:
            self._write("".join(format_line(t, s) for t, s in items).encode("utf-8"))

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def group_pieces(pieces: Sequence[StoredPiece]) -> dict[str, dict[int, StoredPiece]]:
    """Pieces by strong id and piece index. A piece stored twice (two sweeps raced, or one
    was restarted from a copy) counts once if both copies agree and is an error otherwise."""
    out: dict[str, dict[int, StoredPiece]] = {}
    for sp in pieces:
        by_piece = out.setdefault(sp.strong_id, {})
        old = by_piece.get(sp.piece)
        if old is not None:
            if canonical_json(old.payload) != canonical_json(sp.payload):
                raise StoreError(
                    f"piece {sp.piece} of task {sp.strong_id[:12]}... is stored twice with "
                    "different results"
                )
            continue
        by_piece[sp.piece] = sp
    return out


def iter_lines(path: str | os.PathLike[str]) -> Iterator[str]:
    """Raw lines of a store (for debugging and tests)."""
    with contextlib.suppress(FileNotFoundError), open(path, encoding="utf-8") as fh:
        yield from fh
