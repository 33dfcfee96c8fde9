"""Key store: two-phase blocks, deterministic ids, all-or-none state changes, durability."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from qrepeater.errors import (
    KeyNotFound,
    KeyStateError,
    KeyStoreEmpty,
    KeyStoreError,
    ParameterError,
)
from qrepeater.qkdpp.keystore import KeyStore, key_id


def _key(n_bytes: int, seed: int) -> bytes:
    return np.random.default_rng(seed).bytes(n_bytes)


def _sql(path: Path, query: str) -> object:
    db = sqlite3.connect(path)
    try:
        return db.execute(query).fetchone()[0]
    finally:
        db.close()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_are_private_and_wal(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with KeyStore(tmp_path / "k.db") as ks:
            ks.stage_block(run_id="r", block=0, key=_key(64, 0))
            wal = tmp_path / "k.db-wal"
            assert wal.exists()
            for p in tmp_path.iterdir():
                assert _mode(p) == 0o600, p
            assert ks.pragmas() == {"journal_mode": "wal", "synchronous": 2, "secure_delete": 1}
        with sqlite3.connect(tmp_path / "k.db") as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        os.umask(old)


def test_existing_world_readable_file_is_tightened(tmp_path: Path) -> None:
    p = tmp_path / "k.db"
    p.touch(mode=0o644)
    os.chmod(p, 0o644)
    KeyStore(p).close()
    assert _mode(p) == 0o600


def test_two_phase_block_and_deterministic_ids(tmp_path: Path) -> None:
    key = _key(100, 1)  # 800 bits -> three 256-bit keys, 32 bits dropped
    ids = {}
    for name in ("alice", "bob"):
        with KeyStore(tmp_path / f"{name}.db") as ks:
            assert ks.block_state(run_id="run", block=3) == "absent"
            ks.open_block(run_id="run", block=3)
            assert ks.block_state(run_id="run", block=3) == "open"
            ks.stage_block(run_id="run", block=3, key=key, meta={"auth_bits": 10})
            ks.stage_block(run_id="run", block=3, key=key, meta={"auth_bits": 10})  # idempotent
            assert ks.available_count() == 0
            assert ks.commit_block(run_id="run", block=3) == 3
            assert ks.commit_block(run_id="run", block=3) == 3  # idempotent
            assert ks.block_state(run_id="run", block=3) == "committed"
            ids[name] = ks.key_ids()
            recs = [ks.get(k) for k in ids[name]]
            assert b"".join(r.key for r in recs) == key[:96]
            assert all(r.state == "available" for r in recs)
            (info,) = ks.blocks()
            assert (info.n_bits, info.n_keys, info.meta) == (800, 3, {"auth_bits": 10})
    assert ids["alice"] == ids["bob"]
    assert ids["alice"] == [key_id("run", 3, off) for off in (0, 256, 512)]


def test_stage_conflicts_and_discard(tmp_path: Path) -> None:
    with KeyStore(tmp_path / "k.db") as ks:
        ks.stage_block(run_id="r", block=0, key=_key(32, 0))
        with pytest.raises(KeyStateError):
            ks.stage_block(run_id="r", block=0, key=_key(32, 1))
        ks.discard_block(run_id="r", block=0, reason="peer aborted")
        assert ks.block_state(run_id="r", block=0) == "aborted"
        assert ks.blocks()[0].meta == {"abort_reason": "peer aborted"}
        with pytest.raises(KeyStateError):
            ks.commit_block(run_id="r", block=0)
        with pytest.raises(KeyStateError):
            ks.stage_block(run_id="r", block=0, key=_key(32, 0))
        with pytest.raises(KeyStateError):
            ks.open_block(run_id="r", block=0)
        with pytest.raises(KeyNotFound):
            ks.commit_block(run_id="r", block=1)
        ks.stage_block(run_id="r", block=1, key=_key(32, 2))
        ks.commit_block(run_id="r", block=1)
        with pytest.raises(KeyStateError):
            ks.discard_block(run_id="r", block=1)
        # the raw block key is gone from the blocks table once committed or aborted
        assert _sql(tmp_path / "k.db", "SELECT COUNT(*) FROM blocks WHERE key IS NOT NULL") == 0
        with pytest.raises(ParameterError):
            ks.stage_block(run_id="", block=0, key=b"x")
        with pytest.raises(ParameterError):
            ks.stage_block(run_id="r", block=-1, key=b"x")


def test_reserve_deliver_all_or_none(tmp_path: Path) -> None:
    with KeyStore(tmp_path / "k.db", unit_bits=128) as ks:
        ks.stage_block(run_id="r", block=0, key=_key(16 * 5, 3))
        assert ks.commit_block(run_id="r", block=0) == 5
        with pytest.raises(KeyStoreEmpty):
            ks.reserve(6, master_sae="A", slave_sae="B", request_id="q0")
        assert ks.available_count() == 5  # nothing reserved by the failed request
        got = ks.reserve(2, master_sae="A", slave_sae="B", request_id="q1")
        assert [r.key_id for r in got] == ks.key_ids()[:2]  # the oldest
        again = ks.reserve(2, master_sae="A", slave_sae="B", request_id="q1")
        assert [r.key_id for r in again] == [r.key_id for r in got]
        assert ks.available_count() == 3
        ids = [r.key_id for r in got]
        with pytest.raises(KeyStateError):
            ks.deliver(ids, sae="C")
        with pytest.raises(KeyNotFound):
            ks.deliver([*ids, "nope"], sae="A")
        out = ks.deliver(ids, sae="A")
        assert [r.key for r in out] == [r.key for r in got]
        assert all(len(r.key) == 16 for r in out)
        with pytest.raises(KeyStateError):
            ks.deliver(ids, sae="A")
        assert ks.get(ids[0]).key == b""
        assert ks.get(ids[0]).state == "delivered"
        rest = ks.key_ids(state="available")
        # one id not available -> none reserved
        with pytest.raises(KeyStateError):
            ks.reserve_ids([rest[0], ids[0]], master_sae="A", slave_sae="B", request_id="q2")
        assert ks.available_count() == 3
        ks.reserve_ids(rest[:2], master_sae="A", slave_sae="B", request_id="q2")
        ks.release(rest[:1])
        assert ks.counts() == {"available": 2, "reserved": 1, "delivered": 2}


def test_reopen_keeps_state_and_unit(tmp_path: Path) -> None:
    p = tmp_path / "k.db"
    with KeyStore(p) as ks:
        ks.stage_block(run_id="r", block=0, key=_key(64, 4))
        ks.commit_block(run_id="r", block=0)
        ks.stage_block(run_id="r", block=1, key=_key(64, 5))
    with KeyStore(p) as ks:
        assert ks.available_count() == 2
        assert ks.block_state(run_id="r", block=1) == "pending"
    with pytest.raises(KeyStoreError):
        KeyStore(p, unit_bits=128)
    with pytest.raises(KeyStoreError):
        KeyStore(tmp_path / "missing" / "k.db")


_WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from qrepeater.qkdpp.keystore import KeyStore
    ks = KeyStore(sys.argv[1], unit_bits=64)
    rng = np.random.default_rng(0)
    b = int(sys.argv[2])
    print("R", flush=True)
    while True:
        ks.stage_block(run_id="r", block=b, key=rng.bytes(8 * 50))
        ks.commit_block(run_id="r", block=b)
        print("C", b, flush=True)
        recs = ks.reserve(3, master_sae="A", slave_sae="B", request_id=f"q{b}")
        ks.deliver([r.key_id for r in recs], sae="A")
        print("D", *[r.key_id for r in recs], flush=True)
        b += 1
    """
)


@pytest.mark.timeout(120)
def test_kill9_loses_no_commit_and_delivers_nothing_twice(tmp_path: Path) -> None:
    """SIGKILL a writer at random moments; every acknowledged change survives, none is half."""
    p = tmp_path / "k.db"
    rng = np.random.default_rng(7)
    committed: set[int] = set()
    delivered: set[str] = set()
    start = 0
    for _ in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(p), str(start)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "R"
            time.sleep(float(rng.uniform(0.05, 0.6)))
        finally:
            proc.send_signal(signal.SIGKILL)
            out, _ = proc.communicate(timeout=30)
        for line in out.splitlines():
            tag, *rest = line.split()
            if tag == "C" and rest:
                committed.add(int(rest[0]))
            elif tag == "D" and len(rest) == 3:
                delivered.update(rest)
        with KeyStore(p, unit_bits=64) as ks:
            for info in ks.blocks():
                assert info.state in ("pending", "committed", "aborted")
                if info.state == "committed":
                    assert info.n_keys == 50
            states = {b.block: b.state for b in ks.blocks()}
            assert all(states.get(b) == "committed" for b in committed)
            for k in delivered:
                assert ks.get(k).state == "delivered"
                assert ks.get(k).key == b""
            n_keys = _sql(p, "SELECT COUNT(*) FROM keys")
            assert n_keys == 50 * sum(s == "committed" for s in states.values())
            # a block half-written at the kill stays pending; give it up and move on
            for b, s in states.items():
                if s == "pending":
                    ks.discard_block(run_id="r", block=b)
            start = max(states, default=-1) + 1
    assert committed, "the writer never got to commit: timing too tight"
