"""The KME's own durable ledger: which request handed which key ids, in which role, at what size.

The node's :class:`~qrepeater.qkdpp.keystore.KeyStore` holds the keys and their states
(``available -> reserved -> delivered``); the ledger adds what only the KME knows:

* ``requests``: one row per key request, by request id (``rid``, a UUID chosen by the KME
  that received ``enc_keys``): this KME's ``role`` for it (``master``: the keys go to the
  master SAE attached here; ``slave``: to the slave SAE attached here), the two SAE_IDs, the
  number and size of the keys, and ``status`` (``open`` or ``failed``: the peer had too few
  keys);
* ``keys``: the key ids of each request, with the role and size (``dec_keys`` checks a key's
  role, master and slave here before the store releases anything);
* ``counters``: the authenticated link's frame counters (:class:`~.kme_peer.CounterStore`).

Same durability as the store: SQLite in WAL mode with ``synchronous=FULL``, a file created with
mode 0600, every change one transaction. The ordering of ledger and store writes that makes a
``kill -9`` at any moment recoverable is described in :mod:`qrepeater.service.kme`.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from qrepeater.errors import KeyStoreError, ParameterError

__all__ = ["KeyEntry", "Ledger", "RequestRecord"]

Role = Literal["master", "slave"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    rid TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('master', 'slave')),
    master_sae TEXT NOT NULL,
    slave_sae TEXT NOT NULL,
    number INTEGER NOT NULL,
    size INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'failed')),
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS keys (
    key_id TEXT PRIMARY KEY,
    rid TEXT NOT NULL REFERENCES requests (rid),
    pos INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS keys_rid ON keys (rid, pos);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class RequestRecord:
    """One key request as this KME recorded it."""

    rid: str
    role: Role
    master_sae: str
    slave_sae: str
    number: int
    size: int
    status: str
    key_ids: tuple[str, ...]


@dataclass(frozen=True)
class KeyEntry:
    """A key id's request, as the ledger knows it."""

    key_id: str
    rid: str
    role: Role
    master_sae: str
    slave_sae: str
    size: int


class Ledger:
    """The KME ledger (see the module docstring); thread-safe, one connection."""

    def __init__(self, path: str | os.PathLike[str], *, kme_role: str) -> None:
        self.path = Path(path)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(
                self.path, isolation_level=None, timeout=30.0, check_same_thread=False
            )
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            with self._tx() as db:
                row = db.execute("SELECT value FROM settings WHERE name = 'role'").fetchone()
                if row is None:
                    db.execute("INSERT INTO settings VALUES ('role', ?)", (kme_role,))
                elif row[0] != kme_role:
                    raise KeyStoreError(
                        f"KME ledger {self.path} belongs to a {row[0]}, not a {kme_role}"
                    )
        except sqlite3.DatabaseError as exc:
            raise KeyStoreError(f"cannot open KME ledger {self.path}: {exc}") from None
        self._closed = False

    def __repr__(self) -> str:
        return f"Ledger(path={str(self.path)!r})"

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with suppress(sqlite3.DatabaseError):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ---- counters (kme_peer.CounterStore) --------------------------------------------------------
    def get_counter(self, name: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return 0 if row is None else int(row[0])

    def set_counter(self, name: str, value: int) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, int(value)),
            )

    # ---- requests -------------------------------------------------------------------------------
    def add_request(
        self,
        *,
        rid: str,
        role: Role,
        master_sae: str,
        slave_sae: str,
        number: int,
        size: int,
        key_ids: Sequence[str] | None = None,
        status: str = "open",
    ) -> RequestRecord:
        """Record a request (and its keys, if known) in one transaction.

        Recording the same request again returns the first record unchanged, provided it agrees
        (role, SAEs, number, size; key ids where both are known); otherwise
        :class:`ParameterError`.
        """
        ids = list(key_ids) if key_ids is not None else []
        if key_ids is not None and len(ids) != number:
            raise ParameterError(f"request {rid}: {len(ids)} key ids for number={number}")
        with self._tx() as db:
            prior = self._load(db, rid)
            if prior is not None:
                same = (
                    prior.role,
                    prior.master_sae,
                    prior.slave_sae,
                    prior.number,
                    prior.size,
                ) == (
                    role,
                    master_sae,
                    slave_sae,
                    number,
                    size,
                )
                if not same or (ids and prior.key_ids and list(prior.key_ids) != ids):
                    raise ParameterError(f"request {rid} was recorded with different content")
                if ids and not prior.key_ids:
                    self._insert_keys(db, rid, ids)
                    return self._load(db, rid) or prior
                return prior
            db.execute(
                "INSERT INTO requests (rid, role, master_sae, slave_sae, number, size, status, "
                "created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (rid, role, master_sae, slave_sae, number, size, status, time.time()),
            )
            if ids:
                self._insert_keys(db, rid, ids)
            rec = self._load(db, rid)
            assert rec is not None
            return rec

    @staticmethod
    def _insert_keys(db: sqlite3.Connection, rid: str, ids: list[str]) -> None:
        try:
            db.executemany(
                "INSERT INTO keys (key_id, rid, pos) VALUES (?, ?, ?)",
                [(k, rid, i) for i, k in enumerate(ids)],
            )
        except sqlite3.IntegrityError:
            raise ParameterError(f"request {rid}: a key id is already recorded") from None

    def set_keys(self, rid: str, key_ids: Sequence[str]) -> RequestRecord:
        """Record the key ids of a request recorded without them (idempotent)."""
        with self._tx() as db:
            rec = self._load(db, rid)
            if rec is None:
                raise ParameterError(f"unknown request {rid}")
            ids = list(key_ids)
            if rec.key_ids:
                if list(rec.key_ids) != ids:
                    raise ParameterError(f"request {rid} already has other key ids")
                return rec
            if len(ids) != rec.number:
                raise ParameterError(f"request {rid}: {len(ids)} key ids for number={rec.number}")
            self._insert_keys(db, rid, ids)
            out = self._load(db, rid)
            assert out is not None
            return out

    def forget(self, rid: str) -> None:
        """Drop the key ids of request ``rid`` and mark it ``failed`` (its keys were released
        before anyone saw them), in one transaction."""
        with self._tx() as db:
            db.execute("DELETE FROM keys WHERE rid = ?", (rid,))
            db.execute("UPDATE requests SET status = 'failed' WHERE rid = ?", (rid,))

    def set_status(self, rid: str, status: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE requests SET status = ? WHERE rid = ?", (status, rid))

    def get(self, rid: str) -> RequestRecord | None:
        with self._lock:
            return self._load(self._db, rid)

    @staticmethod
    def _load(db: sqlite3.Connection, rid: str) -> RequestRecord | None:
        row = db.execute(
            "SELECT rid, role, master_sae, slave_sae, number, size, status FROM requests "
            "WHERE rid = ?",
            (rid,),
        ).fetchone()
        if row is None:
            return None
        ids = tuple(
            r[0] for r in db.execute("SELECT key_id FROM keys WHERE rid = ? ORDER BY pos", (rid,))
        )
        return RequestRecord(
            rid=row[0],
            role=row[1],
            master_sae=row[2],
            slave_sae=row[3],
            number=int(row[4]),
            size=int(row[5]),
            status=row[6],
            key_ids=ids,
        )

    def entries(self, key_ids: Sequence[str]) -> dict[str, KeyEntry]:
        """Ledger entries of those ``key_ids`` it knows (unknown ids are absent)."""
        out: dict[str, KeyEntry] = {}
        ids = list(key_ids)
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for row in self._db.execute(
                    "SELECT k.key_id, r.rid, r.role, r.master_sae, r.slave_sae, r.size "
                    f"FROM keys k JOIN requests r ON k.rid = r.rid WHERE k.key_id IN ({marks})",
                    chunk,
                ):
                    out[row[0]] = KeyEntry(row[0], row[1], row[2], row[3], row[4], int(row[5]))
        return out

    def all_keys(self) -> dict[str, str]:
        """Every recorded key id and its request id (recovery)."""
        with self._lock:
            return dict(self._db.execute("SELECT key_id, rid FROM keys").fetchall())

    def unkeyed_requests(self) -> list[RequestRecord]:
        """Open requests recorded before their key ids were known (recovery)."""
        with self._lock:
            rids = [
                r[0]
                for r in self._db.execute(
                    "SELECT rid FROM requests WHERE status = 'open' AND NOT EXISTS "
                    "(SELECT 1 FROM keys WHERE keys.rid = requests.rid)"
                )
            ]
            return [rec for rid in rids if (rec := self._load(self._db, rid)) is not None]
