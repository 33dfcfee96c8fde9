"""Durable key store of one QKD node: SQLite (standard library), WAL, ``synchronous=FULL``.

Two tables, changed only in single transactions (``BEGIN IMMEDIATE`` ... ``COMMIT``):

* ``blocks``: one row per distilled block ``(run_id, block)``. The node side is two-phase:
  :meth:`KeyStore.stage_block` writes the block's final key as ``pending``;
  :meth:`KeyStore.commit_block` turns it into keys, or :meth:`KeyStore.discard_block` drops it.
  :meth:`KeyStore.open_block` records that a block was started (its public messages may have
  been sent), so that a restarted node never runs it again; an opened or pending block that is
  given up becomes ``aborted`` (key bytes wiped).
* ``keys``: the committed blocks cut into keys of ``unit_bits`` bits (the tail that does not fill
  a unit is dropped). Key ids are ``uuid5(KEY_ID_NAMESPACE, f"{run_id}/{block}/{offset}")`` with
  ``offset`` the key's first bit in the block key, so Alice's and Bob's stores, which commit the
  same blocks, hold the same keys under the same ids without any exchange. Keys move
  ``available -> reserved -> delivered`` (:meth:`reserve` / :meth:`reserve_ids`, then
  :meth:`deliver`); a delivered key's bytes are wiped in the same transaction, so it is never
  returned again.

Durability: with WAL and ``synchronous=FULL`` every committed transaction is on disk (fsync of
the WAL) before the call returns (SQLite documentation, "Write-Ahead Logging" and
"PRAGMA synchronous"), so a ``kill -9`` at any moment loses no committed change and never
applies half of one. ``secure_delete`` is on, so wiped key bytes are overwritten in the database
pages (older copies may linger in the WAL until the next checkpoint, which :meth:`close` runs).

The file is created with mode 0600 before SQLite opens it; SQLite creates its ``-wal`` and
``-shm`` files with the permissions of the database file. Nothing here logs or prints key bytes;
:class:`KeyRecord` hides its key from ``repr``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from qrepeater.errors import (
    KeyNotFound,
    KeyStateError,
    KeyStoreEmpty,
    KeyStoreError,
    ParameterError,
)

__all__ = [
    "KEY_ID_NAMESPACE",
    "BlockInfo",
    "BlockState",
    "KeyRecord",
    "KeyStore",
    "key_id",
]

KEY_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://qrepeater.invalid/keystore/v1")
"""Namespace of the deterministic key ids (both nodes derive the same ids)."""

BlockState = Literal["absent", "open", "pending", "committed", "aborted"]

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS blocks (
    run_id TEXT NOT NULL,
    block INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('open', 'pending', 'committed', 'aborted')),
    key BLOB,
    n_bits INTEGER NOT NULL DEFAULT 0,
    n_keys INTEGER NOT NULL DEFAULT 0,
    meta TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (run_id, block)
);
CREATE TABLE IF NOT EXISTS keys (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id TEXT NOT NULL UNIQUE,
    run_id TEXT NOT NULL,
    block INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    key BLOB NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('available', 'reserved', 'delivered')),
    master_sae TEXT,
    slave_sae TEXT,
    request_id TEXT,
    delivered_to TEXT,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS keys_state ON keys (state, seq);
CREATE INDEX IF NOT EXISTS keys_request ON keys (request_id);
"""


def key_id(run_id: str, block: int, offset: int) -> str:
    """Deterministic key id ``uuid5(KEY_ID_NAMESPACE, f"{run_id}/{block}/{offset}")``."""
    return str(uuid.uuid5(KEY_ID_NAMESPACE, f"{run_id}/{block}/{offset}"))


@dataclass(frozen=True)
class KeyRecord:
    """One key and its state. ``key`` is empty once delivered; it never appears in ``repr``."""

    key_id: str
    key: bytes = field(repr=False)
    state: str
    master_sae: str | None
    slave_sae: str | None


@dataclass(frozen=True)
class BlockInfo:
    """Public bookkeeping of one block (no key bytes)."""

    run_id: str
    block: int
    state: str
    n_bits: int
    n_keys: int
    meta: dict[str, Any]
    created: float
    updated: float


def _create_private(path: Path) -> None:
    """Create ``path`` with mode 0600 (if absent) before SQLite opens it; tighten if present."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


class KeyStore:
    """A node's durable key store; see the module docstring. Usable as a context manager.

    One object may be shared by threads (an internal lock serialises calls); several processes
    may open the same file (SQLite locking, ``busy_timeout`` of ``timeout_s``).
    """

    def __init__(
        self, path: str | os.PathLike[str], *, unit_bits: int = 256, timeout_s: float = 30.0
    ) -> None:
        if unit_bits < 8 or unit_bits % 8:
            raise ParameterError(f"unit_bits must be a positive multiple of 8, got {unit_bits}")
        self.path = Path(path)
        if self.path.parent and not self.path.parent.is_dir():
            raise KeyStoreError(f"directory of key store {self.path} does not exist")
        _create_private(self.path)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(
                self.path, isolation_level=None, timeout=timeout_s, check_same_thread=False
            )
            self._db.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise KeyStoreError(f"key store {self.path}: WAL mode unavailable ({mode})")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            with self._tx() as db:
                rows = dict(db.execute("SELECT name, value FROM settings").fetchall())
                if not rows:
                    db.executemany(
                        "INSERT INTO settings (name, value) VALUES (?, ?)",
                        [("schema", str(_SCHEMA_VERSION)), ("unit_bits", str(unit_bits))],
                    )
                    stored_bits = unit_bits
                else:
                    if int(rows.get("schema", "0")) != _SCHEMA_VERSION:
                        raise KeyStoreError(f"key store {self.path}: unknown schema version")
                    stored_bits = int(rows["unit_bits"])
            if stored_bits != unit_bits:
                raise KeyStoreError(
                    f"key store {self.path} uses {stored_bits}-bit keys, not {unit_bits}"
                )
        except sqlite3.DatabaseError as exc:
            raise KeyStoreError(f"cannot open key store {self.path}: {exc}") from None
        self.unit_bits = unit_bits
        self._closed = False

    # ---- plumbing -------------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"KeyStore(path={str(self.path)!r}, unit_bits={self.unit_bits})"

    def __enter__(self) -> KeyStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Checkpoint the WAL (so wiped key bytes leave it) and close. Idempotent."""
        with self._lock:
            if getattr(self, "_closed", True):
                return
            self._closed = True
            # another process may hold the WAL; its own close checkpoints then
            with suppress(sqlite3.DatabaseError):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``); rolled back on any exception."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            if self._closed:
                raise KeyStoreError("key store is closed")
            return self._db.execute(sql, tuple(args)).fetchall()

    def pragmas(self) -> dict[str, Any]:
        """The connection's durability settings: ``journal_mode``, ``synchronous`` (2 = FULL),
        ``secure_delete`` (1 = on)."""
        return {
            name: self._read(f"PRAGMA {name}")[0][0]
            for name in ("journal_mode", "synchronous", "secure_delete")
        }

    # ---- node side: blocks ----------------------------------------------------------------------
    @staticmethod
    def _check_block(run_id: str, block: int) -> None:
        if not isinstance(run_id, str) or not run_id:
            raise ParameterError("run_id must be a non-empty string")
        if not isinstance(block, int) or block < 0:
            raise ParameterError(f"block must be a non-negative integer, got {block!r}")

    def _state(self, db: sqlite3.Connection, run_id: str, block: int) -> str:
        row = db.execute(
            "SELECT state FROM blocks WHERE run_id = ? AND block = ?", (run_id, block)
        ).fetchone()
        return "absent" if row is None else str(row[0])

    def block_state(self, *, run_id: str, block: int) -> BlockState:
        """``absent``, ``open`` (started, nothing staged), ``pending``, ``committed`` or
        ``aborted``."""
        self._check_block(run_id, block)
        rows = self._read(
            "SELECT state FROM blocks WHERE run_id = ? AND block = ?", (run_id, block)
        )
        state: BlockState = "absent" if not rows else rows[0][0]
        return state

    def open_block(self, *, run_id: str, block: int, meta: dict[str, Any] | None = None) -> None:
        """Record that ``block`` has started (before any of its messages is sent).

        Idempotent while the block is open; a block in any other state raises
        :class:`KeyStateError` (a block is never run twice).
        """
        self._check_block(run_id, block)
        now = time.time()
        with self._tx() as db:
            state = self._state(db, run_id, block)
            if state == "open":
                return
            if state != "absent":
                raise KeyStateError(f"block {run_id}/{block} is already {state}")
            db.execute(
                "INSERT INTO blocks (run_id, block, state, meta, created, updated) "
                "VALUES (?, ?, 'open', ?, ?, ?)",
                (run_id, block, _dump_meta(meta), now, now),
            )

    def stage_block(
        self, *, run_id: str, block: int, key: bytes, meta: dict[str, Any] | None = None
    ) -> None:
        """Write ``block``'s final key as ``pending`` (from absent or open).

        Staging identical content again is a no-op; different content, or a block that is
        committed or aborted, raises :class:`KeyStateError`.
        """
        self._check_block(run_id, block)
        if not isinstance(key, bytes | bytearray) or not key:
            raise ParameterError("key must be non-empty bytes")
        key = bytes(key)
        meta_s = _dump_meta(meta)
        now = time.time()
        with self._tx() as db:
            row = db.execute(
                "SELECT state, key, meta FROM blocks WHERE run_id = ? AND block = ?",
                (run_id, block),
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO blocks (run_id, block, state, key, n_bits, meta, created, "
                    "updated) VALUES (?, ?, 'pending', ?, ?, ?, ?, ?)",
                    (run_id, block, key, 8 * len(key), meta_s, now, now),
                )
                return
            state, old_key, old_meta = row
            if state == "open":
                db.execute(
                    "UPDATE blocks SET state = 'pending', key = ?, n_bits = ?, meta = ?, "
                    "updated = ? WHERE run_id = ? AND block = ?",
                    (key, 8 * len(key), meta_s, now, run_id, block),
                )
                return
            if state == "pending" and bytes(old_key) == key and old_meta == meta_s:
                return
            raise KeyStateError(
                f"block {run_id}/{block} is {state}"
                + (" with different content" if state == "pending" else "")
            )

    def commit_block(self, *, run_id: str, block: int) -> int:
        """``pending -> committed``: cut the key into ``unit_bits`` keys (state ``available``).

        Returns the number of keys; committing a committed block again returns the same number
        and changes nothing. An absent block raises :class:`KeyNotFound`, an open or aborted one
        :class:`KeyStateError`.
        """
        self._check_block(run_id, block)
        now = time.time()
        unit = self.unit_bits // 8
        with self._tx() as db:
            row = db.execute(
                "SELECT state, key, n_keys FROM blocks WHERE run_id = ? AND block = ?",
                (run_id, block),
            ).fetchone()
            if row is None:
                raise KeyNotFound(f"no block {run_id}/{block}")
            state, blob, n_keys = row
            if state == "committed":
                return int(n_keys)
            if state != "pending":
                raise KeyStateError(f"block {run_id}/{block} is {state}, not pending")
            data = bytes(blob)
            count = len(data) // unit
            db.executemany(
                "INSERT INTO keys (key_id, run_id, block, offset, key, state, updated) "
                "VALUES (?, ?, ?, ?, ?, 'available', ?)",
                [
                    (
                        key_id(run_id, block, i * self.unit_bits),
                        run_id,
                        block,
                        i * self.unit_bits,
                        data[i * unit : (i + 1) * unit],
                        now,
                    )
                    for i in range(count)
                ],
            )
            db.execute(
                "UPDATE blocks SET state = 'committed', key = NULL, n_keys = ?, updated = ? "
                "WHERE run_id = ? AND block = ?",
                (count, now, run_id, block),
            )
            return count

    def discard_block(self, *, run_id: str, block: int, reason: str | None = None) -> None:
        """Give up an open or pending block: it becomes ``aborted`` and its key bytes are wiped.

        Discarding an absent block records it as aborted (so it is never run); an aborted one is
        left alone; a committed one raises :class:`KeyStateError`.
        """
        self._check_block(run_id, block)
        now = time.time()
        meta_extra = {"abort_reason": reason} if reason else {}
        with self._tx() as db:
            row = db.execute(
                "SELECT state, meta FROM blocks WHERE run_id = ? AND block = ?", (run_id, block)
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO blocks (run_id, block, state, meta, created, updated) "
                    "VALUES (?, ?, 'aborted', ?, ?, ?)",
                    (run_id, block, _dump_meta(meta_extra), now, now),
                )
                return
            state, meta_s = row
            if state == "aborted":
                return
            if state == "committed":
                raise KeyStateError(f"block {run_id}/{block} is committed; it cannot be discarded")
            meta = {**json.loads(meta_s), **meta_extra}
            db.execute(
                "UPDATE blocks SET state = 'aborted', key = NULL, n_bits = 0, meta = ?, "
                "updated = ? WHERE run_id = ? AND block = ?",
                (_dump_meta(meta), now, run_id, block),
            )

    def blocks(self, *, run_id: str | None = None) -> list[BlockInfo]:
        """All blocks (or those of ``run_id``), ordered by run and block."""
        sql = "SELECT run_id, block, state, n_bits, n_keys, meta, created, updated FROM blocks"
        args: tuple[Any, ...] = ()
        if run_id is not None:
            sql += " WHERE run_id = ?"
            args = (run_id,)
        rows = self._read(sql + " ORDER BY run_id, block", args)
        return [
            BlockInfo(
                run_id=r[0],
                block=int(r[1]),
                state=r[2],
                n_bits=int(r[3]),
                n_keys=int(r[4]),
                meta=json.loads(r[5]),
                created=float(r[6]),
                updated=float(r[7]),
            )
            for r in rows
        ]

    # ---- key side (KME) -------------------------------------------------------------------------
    def available_count(self) -> int:
        """Number of keys in state ``available``."""
        return int(self._read("SELECT COUNT(*) FROM keys WHERE state = 'available'")[0][0])

    def counts(self) -> dict[str, int]:
        """Number of keys per state (every state present, possibly 0)."""
        out = {"available": 0, "reserved": 0, "delivered": 0}
        for state, n in self._read("SELECT state, COUNT(*) FROM keys GROUP BY state"):
            out[str(state)] = int(n)
        return out

    @staticmethod
    def _records(rows: Sequence[Any]) -> list[KeyRecord]:
        return [
            KeyRecord(key_id=r[0], key=bytes(r[1]), state=r[2], master_sae=r[3], slave_sae=r[4])
            for r in rows
        ]

    @staticmethod
    def _check_sae(**saes: str) -> None:
        for name, value in saes.items():
            if not isinstance(value, str) or not value:
                raise ParameterError(f"{name} must be a non-empty string")

    def reserve(
        self, n: int, *, master_sae: str, slave_sae: str, request_id: str
    ) -> list[KeyRecord]:
        """Reserve the ``n`` oldest available keys for ``(master_sae, slave_sae)``, all or none.

        Raises :class:`KeyStoreEmpty` if fewer than ``n`` are available. Repeating a request
        with the same ``request_id`` (and the same ``n`` and SAEs) returns the same keys.
        """
        if not isinstance(n, int) or n < 1:
            raise ParameterError(f"n must be a positive integer, got {n!r}")
        self._check_sae(master_sae=master_sae, slave_sae=slave_sae, request_id=request_id)
        now = time.time()
        cols = "key_id, key, state, master_sae, slave_sae"
        with self._tx() as db:
            prior = db.execute(
                f"SELECT {cols} FROM keys WHERE request_id = ? AND state = 'reserved' ORDER BY seq",
                (request_id,),
            ).fetchall()
            if prior:
                recs = self._records(prior)
                if len(recs) != n or any(
                    r.master_sae != master_sae or r.slave_sae != slave_sae for r in recs
                ):
                    raise KeyStateError(f"request id {request_id!r} was used for other keys")
                return recs
            rows = db.execute(
                f"SELECT {cols} FROM keys WHERE state = 'available' ORDER BY seq LIMIT ?", (n,)
            ).fetchall()
            if len(rows) < n:
                raise KeyStoreEmpty(f"{n} keys requested, {len(rows)} available")
            ids = [r[0] for r in rows]
            db.executemany(
                "UPDATE keys SET state = 'reserved', master_sae = ?, slave_sae = ?, "
                "request_id = ?, updated = ? WHERE key_id = ?",
                [(master_sae, slave_sae, request_id, now, k) for k in ids],
            )
            return [
                KeyRecord(
                    key_id=r[0],
                    key=bytes(r[1]),
                    state="reserved",
                    master_sae=master_sae,
                    slave_sae=slave_sae,
                )
                for r in rows
            ]

    def reserve_ids(
        self, key_ids: Sequence[str], *, master_sae: str, slave_sae: str, request_id: str
    ) -> list[KeyRecord]:
        """Reserve exactly ``key_ids`` (all available) for ``(master_sae, slave_sae)``, all or
        none: an unknown id raises :class:`KeyNotFound`, one not available
        :class:`KeyStateError`."""
        ids = self._check_ids(key_ids)
        self._check_sae(master_sae=master_sae, slave_sae=slave_sae, request_id=request_id)
        now = time.time()
        with self._tx() as db:
            rows = self._fetch(db, ids)
            bad = [r.key_id for r in rows if r.state != "available"]
            if bad:
                raise KeyStateError(f"{len(bad)} of the requested keys are not available")
            db.executemany(
                "UPDATE keys SET state = 'reserved', master_sae = ?, slave_sae = ?, "
                "request_id = ?, updated = ? WHERE key_id = ?",
                [(master_sae, slave_sae, request_id, now, k) for k in ids],
            )
            return [
                KeyRecord(
                    key_id=r.key_id,
                    key=r.key,
                    state="reserved",
                    master_sae=master_sae,
                    slave_sae=slave_sae,
                )
                for r in rows
            ]

    def deliver(self, key_ids: Sequence[str], *, sae: str) -> list[KeyRecord]:
        """``reserved -> delivered`` for ``sae`` (one of the reservation's SAEs), all or none.

        Returns the keys with their bytes; the store wipes the bytes in the same transaction,
        so a delivered key is never returned again (a second delivery raises
        :class:`KeyStateError`).
        """
        ids = self._check_ids(key_ids)
        self._check_sae(sae=sae)
        now = time.time()
        with self._tx() as db:
            rows = self._fetch(db, ids)
            for r in rows:
                if r.state != "reserved":
                    raise KeyStateError(f"key {r.key_id} is {r.state}, not reserved")
                if sae not in (r.master_sae, r.slave_sae):
                    raise KeyStateError(f"key {r.key_id} is not reserved for SAE {sae!r}")
            db.executemany(
                "UPDATE keys SET state = 'delivered', key = X'', delivered_to = ?, updated = ? "
                "WHERE key_id = ?",
                [(sae, now, k) for k in ids],
            )
            return [
                KeyRecord(
                    key_id=r.key_id,
                    key=r.key,
                    state="delivered",
                    master_sae=r.master_sae,
                    slave_sae=r.slave_sae,
                )
                for r in rows
            ]

    def release(self, key_ids: Sequence[str]) -> None:
        """``reserved -> available`` (a reservation that will not be delivered), all or none."""
        ids = self._check_ids(key_ids)
        now = time.time()
        with self._tx() as db:
            rows = self._fetch(db, ids)
            if any(r.state != "reserved" for r in rows):
                raise KeyStateError("only reserved keys can be released")
            db.executemany(
                "UPDATE keys SET state = 'available', master_sae = NULL, slave_sae = NULL, "
                "request_id = NULL, updated = ? WHERE key_id = ?",
                [(now, k) for k in ids],
            )

    def get(self, key_id: str) -> KeyRecord:
        """The key ``key_id`` (its bytes are empty once delivered); :class:`KeyNotFound` if
        unknown."""
        rows = self._read(
            "SELECT key_id, key, state, master_sae, slave_sae FROM keys WHERE key_id = ?",
            (key_id,),
        )
        if not rows:
            raise KeyNotFound(f"no key {key_id}")
        return self._records(rows)[0]

    def key_ids(self, *, state: str | None = None) -> list[str]:
        """Key ids in commit order (optionally of one state)."""
        if state is None:
            return [r[0] for r in self._read("SELECT key_id FROM keys ORDER BY seq")]
        return [
            r[0]
            for r in self._read("SELECT key_id FROM keys WHERE state = ? ORDER BY seq", (state,))
        ]

    @staticmethod
    def _check_ids(key_ids: Sequence[str]) -> list[str]:
        if isinstance(key_ids, str):
            raise ParameterError("key_ids must be a sequence of ids, not one string")
        ids = list(key_ids)
        if not ids:
            raise ParameterError("no key ids given")
        if len(set(ids)) != len(ids):
            raise ParameterError("duplicate key ids")
        return ids

    def _fetch(self, db: sqlite3.Connection, ids: list[str]) -> list[KeyRecord]:
        found: dict[str, KeyRecord] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for rec in self._records(
                db.execute(
                    "SELECT key_id, key, state, master_sae, slave_sae FROM keys "
                    f"WHERE key_id IN ({marks})",
                    chunk,
                ).fetchall()
            ):
                found[rec.key_id] = rec
        missing = [k for k in ids if k not in found]
        if missing:
            raise KeyNotFound(f"{len(missing)} unknown key id(s), e.g. {missing[0]}")
        return [found[k] for k in ids]


def _dump_meta(meta: dict[str, Any] | None) -> str:
    try:
        return json.dumps(meta or {}, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"block metadata must be JSON-serialisable: {exc}") from None
