"""Networked nodes: two real processes on 127.0.0.1, real SQLite stores, a real TCP proxy.

No mocks: every test starts ``qrepeater node alice|bob`` as separate processes (each reading
only its own record and its own copy of the auth pool), optionally with a frame-aware proxy
process between them, and inspects the two key stores afterwards.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from qrepeater.diqkd.parties import block_seed, slice_rounds
from qrepeater.diqkd.pipeline import distill
from qrepeater.diqkd.records import write_run
from qrepeater.diqkd.rounds import DIQKDRun, simulate_from_preset
from qrepeater.presets import Preset
from qrepeater.qkdpp.framing import write_auth_key_pair
from qrepeater.qkdpp.keystore import KeyStore, key_id

GOOD = {"ion.residual_coherence": 1.0, "ion.spam_error": 0.0, "phase.contrast": 1.0}
POOL_BITS = 1 << 23  # 1 MiB: room for several blocks at the worst-case message budget


class Procs:
    """Node and proxy processes of one test; all killed at teardown (no orphans)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as err:
            p = subprocess.Popen(
                [sys.executable, "-m", "qrepeater", *args],
                stdout=subprocess.PIPE,
                stderr=err,
                cwd=self.tmp,
            )
        self.procs.append(p)
        return p

    def start_script(self, code: str, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as err:
            p = subprocess.Popen(
                [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=err
            )
        self.procs.append(p)
        return p

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)
            if p.stdout is not None:
                p.stdout.close()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    pr = Procs(tmp_path)
    try:
        yield pr
    finally:
        pr.close()


def _wait_file(path: Path, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> str:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        if proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} before writing {path}")
        time.sleep(0.05)
    raise AssertionError(f"{path} not written within {timeout} s")


class Site:
    """One node's files."""

    def __init__(self, tmp: Path, party: str) -> None:
        self.party = party
        self.records = tmp / "rec" / f"{party}.parquet"
        self.auth = tmp / f"{party}.auth"
        self.store = tmp / f"{party}-keys.db"
        self.log = tmp / f"{party}.log"

    def args(
        self, *, block_rounds: int, seed: int, address: str, extra: list[str], warm: bool = False
    ) -> list[str]:
        where = ["--listen", address] if self.party == "alice" else ["--connect", address]
        return [
            "node",
            self.party,
            "--records",
            str(self.records),
            "--auth-key",
            str(self.auth),
            "--store",
            str(self.store),
            *where,
            "--block-rounds",
            str(block_rounds),
            "--seed",
            str(seed),
            "--json",
            "--verbose",
            *([] if warm else ["--no-warm-up"]),
            *extra,
        ]


def _setup(tmp: Path, run: DIQKDRun, pool_bits: int = POOL_BITS) -> tuple[Site, Site]:
    write_run(tmp / "rec", run)
    alice, bob = Site(tmp, "alice"), Site(tmp, "bob")
    write_auth_key_pair(pool_bits, alice.auth, bob.auth)
    return alice, bob


def _run_pair(
    procs: Procs,
    alice: Site,
    bob: Site,
    *,
    block_rounds: int,
    seed: int,
    proxy: str | None = None,
    extra: list[str] | None = None,
    timeout: float = 300.0,
    warm: bool = False,
) -> tuple[dict[str, object], dict[str, object]]:
    extra = extra or []
    port_file = procs.tmp / "alice.port"
    pa = procs.start(
        alice.args(
            block_rounds=block_rounds,
            seed=seed,
            address="127.0.0.1:0",
            extra=[*extra, "--port-file", str(port_file)],
            warm=warm,
        ),
        alice.log,
    )
    port = _wait_file(port_file, pa)
    target = f"127.0.0.1:{port}"
    if proxy is not None:
        pp = procs.start_script(
            _PROXY, [port, str(procs.tmp / "proxy.port"), proxy], procs.tmp / "proxy.log"
        )
        target = f"127.0.0.1:{_wait_file(procs.tmp / 'proxy.port', pp)}"
    pb = procs.start(
        bob.args(block_rounds=block_rounds, seed=seed, address=target, extra=extra, warm=warm),
        bob.log,
    )
    out_b, _ = pb.communicate(timeout=timeout)
    out_a, _ = pa.communicate(timeout=60)
    assert pb.returncode == 0, bob.log.read_text()[-3000:]
    assert pa.returncode == 0, alice.log.read_text()[-3000:]
    return json.loads(out_a), json.loads(out_b)


def _store_rows(path: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    db = sqlite3.connect(path)
    try:
        blocks = db.execute(
            "SELECT run_id, block, state, n_bits, n_keys FROM blocks ORDER BY block"
        ).fetchall()
        keys = db.execute("SELECT key_id, key, state FROM keys ORDER BY seq").fetchall()
    finally:
        db.close()
    return blocks, keys


def _assert_private(*paths: Path) -> None:
    for p in paths:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


def _seqs(log: Path, what: str) -> list[int]:
    return [int(m) for m in re.findall(rf"frame {what} seq=(\d+)", log.read_text())]


def _assert_no_pad_reuse(alice: Site, bob: Site) -> None:
    """Every pad index is used once per site and direction, across all restarts."""
    for site in (alice, bob):
        for what in ("sent", "checked"):
            seqs = _seqs(site.log, what)
            assert seqs, (site.party, what)
            assert len(set(seqs)) == len(seqs), (site.party, what)
            assert seqs == sorted(seqs), (site.party, what)


# ---- a frame-aware TCP proxy (its own process) ---------------------------------------------------

_PROXY = textwrap.dedent(
    r"""
    import asyncio, struct, sys
    target_port, port_file, plan = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    # plan: "session:direction:frame:fault,..."; direction a (alice->bob) or b; fault in
    # flip, replay, reorder, drop, truncate, oversize
    faults = {}
    for item in filter(None, plan.split(",")):
        s, d, f, kind = item.split(":")
        faults[(int(s), d, int(f))] = kind
    sessions = [0]

    async def pump(reader, writer, session, direction):
        n = 0
        held = None
        try:
            while True:
                head = await reader.readexactly(4)
                (length,) = struct.unpack(">I", head)
                body = await reader.readexactly(length)
                frame = head + body
                kind = faults.get((session, direction, n))
                n += 1
                if held is not None:
                    writer.write(frame + held)
                    held = None
                elif kind == "flip":
                    b = bytearray(frame)
                    b[len(b) // 2] ^= 0x10
                    writer.write(bytes(b))
                elif kind == "replay":
                    writer.write(frame + frame)
                elif kind == "reorder":
                    held = frame
                elif kind == "drop":
                    pass
                elif kind == "truncate":
                    writer.write(frame[: len(frame) // 2])
                    await writer.drain()
                    writer.close()
                    return
                elif kind == "oversize":
                    writer.write(struct.pack(">I", 1 << 30) + body)
                else:
                    writer.write(frame)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def handle(cr, cw):
        session = sessions[0]
        sessions[0] += 1
        sr, sw = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pump(cr, sw, session, "b"), pump(sr, cw, session, "a"))

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        with open(port_file + ".tmp", "w") as fh:
            fh.write(str(server.sockets[0].getsockname()[1]))
        import os
        os.replace(port_file + ".tmp", port_file)
        async with server:
            await server.serve_forever()

    asyncio.run(main())
    """
)


# ---- fast tests: blocks too short for a key abort identically -----------------------------------


@pytest.fixture(scope="module")
def short_run(preset: Preset) -> DIQKDRun:
    p = preset.replace(GOOD)
    return simulate_from_preset(p, n_rounds=35_000, seed=4, fiber_km=10.0, alpha=0.01)


@pytest.mark.timeout(180)
def test_faulty_frames_abort_the_block_on_both_sides(
    procs: Procs, tmp_path: Path, short_run: DIQKDRun
) -> None:
    """Flip, replay, reorder, drop, truncate, oversize one frame per session: that block is
    aborted on both sides, for the link failure, and the next session goes on; the last,
    untouched block gets through the link to the protocol's own decision (too short for a
    key: ``no_key``) on both sides."""
    alice, bob = _setup(tmp_path, short_run)
    # session 0: flip Alice's sync frame (frame 0 is her hello); 1: replay Bob's sync; 2: hold
    # Alice's sync back behind her settings; 3: drop Bob's sync; 4: truncate; 5: oversize.
    plan = "0:a:1:flip,1:b:1:replay,2:a:1:reorder,3:b:1:drop,4:a:2:truncate,5:b:2:oversize"
    rep_a, rep_b = _run_pair(
        procs, alice, bob, block_rounds=5_000, seed=1, proxy=plan, extra=["--timeout", "10"]
    )
    blocks_a, keys_a = _store_rows(alice.store)
    blocks_b, keys_b = _store_rows(bob.store)
    assert blocks_a == blocks_b
    assert [b[2] for b in blocks_a] == ["aborted"] * 7
    assert keys_a == keys_b == []
    reasons = {}
    for rep in (rep_a, rep_b):
        for b in rep["blocks"]:  # type: ignore[union-attr]
            reasons.setdefault(b["block"], set()).add(b["abort_reason"])
    link = {"authentication", "peer_abort", "TransportError", "transport"}
    for blk in range(6):  # faulted: the side that saw the fault reports the link; the other
        # may have reached the protocol's own decision first (too short for a key) or learned
        # of the failure from the closed connection
        assert reasons[blk] & link, (blk, reasons[blk])
        assert reasons[blk] <= link | {"protocol", "channel", "no_key"}, (blk, reasons[blk])
    assert reasons[6] == {"no_key"}
    for rep in (rep_a, rep_b):
        assert rep["done"] is True
        assert all(b["auth_bits"] > 0 for b in rep["blocks"])  # type: ignore[union-attr]
    pos = json.loads((tmp_path / "alice.auth.pos").read_text())
    assert pos["send_next"] > 0  # durable, and only moves forward
    assert pos["recv_next"] > 0
    # every frame consumed pads; none was used twice
    _assert_no_pad_reuse(alice, bob)
    _assert_private(alice.store, bob.store, alice.auth, bob.auth)


@pytest.mark.timeout(120)
def test_node_refuses_a_block_its_pool_cannot_authenticate(
    procs: Procs, tmp_path: Path, short_run: DIQKDRun
) -> None:
    alice, bob = _setup(tmp_path, short_run, pool_bits=8_192)
    port_file = tmp_path / "alice.port"
    pa = procs.start(
        alice.args(
            block_rounds=10_000,
            seed=1,
            address="127.0.0.1:0",
            extra=["--port-file", str(port_file), "--retry-for", "60"],
        ),
        alice.log,
    )
    port = _wait_file(port_file, pa)
    pb = procs.start(
        bob.args(
            block_rounds=10_000, seed=1, address=f"127.0.0.1:{port}", extra=["--retry-for", "5"]
        ),
        bob.log,
    )
    pb.communicate(timeout=90)
    pa.communicate(timeout=30)
    assert pa.returncode == 3
    assert pb.returncode == 3
    assert "authentication pool" in alice.log.read_text()
    for site in (alice, bob):
        blocks, keys = _store_rows(site.store)
        assert blocks == []
        assert keys == []


def test_cli_bad_input_is_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner, Result

    from qrepeater.cli import app

    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(app, list(args))

    r = run(
        "auth-key",
        "new",
        "--bits",
        "65536",
        "--out",
        str(tmp_path / "a"),
        "--peer-out",
        str(tmp_path / "b"),
        "--json",
    )
    assert r.exit_code == 0
    assert json.loads(r.stdout)["bits"] == 65536
    _assert_private(tmp_path / "a", tmp_path / "b")
    again = run(
        "auth-key",
        "new",
        "--bits",
        "65536",
        "--out",
        str(tmp_path / "a"),
        "--peer-out",
        str(tmp_path / "c"),
    )
    assert again.exit_code == 2
    assert len(again.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()
    bad = run("node", "carol", "--records", "x", "--auth-key", "y", "--store", "z")
    assert bad.exit_code == 2
    assert len(bad.stderr.strip().splitlines()) == 1
    missing = run(
        "node",
        "alice",
        "--records",
        str(tmp_path / "none.parquet"),
        "--auth-key",
        str(tmp_path / "a"),
        "--store",
        str(tmp_path / "s.db"),
        "--listen",
        "127.0.0.1:0",
    )
    assert missing.exit_code == 2
    assert len(missing.stderr.strip().splitlines()) == 1


# ---- slow: blocks with keys ---------------------------------------------------------------------


def _key_run(preset: Preset, n_rounds: int) -> DIQKDRun:
    """10 km, a better-than-paper link: 100,000 rounds give a finite key of ~1,900 bits."""
    p = preset.replace(GOOD)
    return simulate_from_preset(p, n_rounds=n_rounds, seed=3, fiber_km=10.0, alpha=0.01)


def _expected_keys(
    run: DIQKDRun, *, block_rounds: int, seed: int, blocks: set[int] | None = None
) -> dict[str, bytes]:
    """Key id -> key bytes that the in-process driver gives for every block (or ``blocks``)."""
    out: dict[str, bytes] = {}
    n = len(run.alice)
    for b in range((n + block_rounds - 1) // block_rounds):
        if blocks is not None and b not in blocks:
            continue
        lo, hi = b * block_rounds, min(n, (b + 1) * block_rounds)
        res = distill(
            slice_rounds(run.alice, lo, hi),
            slice_rounds(run.bob, lo, hi),
            alice_meta=run.metadata,
            bob_meta=run.metadata,
            seed=block_seed(seed, b),
        )
        if res.report.aborted:
            continue
        key, _ = res.require_keys()
        data = np.packbits(key[: key.size - key.size % 8]).tobytes()
        for i in range(len(data) // 32):
            out[key_id(run.metadata.run_id, b, 256 * i)] = data[32 * i : 32 * (i + 1)]
    return out


def _assert_no_key_in(text: str, keys: dict[str, bytes]) -> None:
    for k in keys.values():
        assert k.hex() not in text
        assert k[:8].hex() not in text


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_nodes_store_the_in_process_keys(procs: Procs, tmp_path: Path, preset: Preset) -> None:
    key_run = _key_run(preset, 200_000)
    alice, bob = _setup(tmp_path, key_run)
    rep_a, rep_b = _run_pair(procs, alice, bob, block_rounds=100_000, seed=21, warm=True)
    expected = _expected_keys(key_run, block_rounds=100_000, seed=21)
    assert expected, "the in-process driver found no key: test data too weak"
    for site in (alice, bob):
        with KeyStore(site.store) as ks:
            ids = ks.key_ids()
            assert ids == list(expected)
            assert [ks.get(k).key for k in ids] == list(expected.values())
    assert _store_rows(alice.store) == _store_rows(bob.store)
    assert rep_a["keys"] == rep_b["keys"] == len(expected)
    for rep in (rep_a, rep_b):
        for b in rep["blocks"]:  # type: ignore[union-attr]
            assert b["auth_bits"] > 0
    _assert_private(alice.store, bob.store)
    for text in (alice.log.read_text(), bob.log.read_text(), json.dumps([rep_a, rep_b])):
        _assert_no_key_in(text, expected)
    _assert_no_pad_reuse(alice, bob)


def _count(path: Path, text: str) -> int:
    return path.read_text().count(text) if path.exists() else 0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_at_random_moments_keeps_stores_identical(
    procs: Procs, tmp_path: Path, preset: Preset
) -> None:
    """Kill either node with SIGKILL, at random moments and right around the commit exchange,
    restart it, repeat; at the end both stores hold the same keys under the same ids, equal to
    the in-process driver's, nothing is committed on one side only and no pad was used twice."""
    key_run = _key_run(preset, 1_500_000)
    alice, bob = _setup(tmp_path, key_run)
    rng = np.random.default_rng(2026)
    block_rounds, seed = 100_000, 5
    port_file = tmp_path / "alice.port"
    extra = ["--timeout", "20", "--retry-for", "30"]
    a_args = alice.args(
        block_rounds=block_rounds,
        seed=seed,
        address="127.0.0.1:0",
        extra=[*extra, "--port-file", str(port_file)],
    )
    pa = procs.start(a_args, alice.log)
    port = _wait_file(port_file, pa)
    a_args[a_args.index("127.0.0.1:0")] = f"127.0.0.1:{port}"  # restarts reuse the port
    b_args = bob.args(
        block_rounds=block_rounds, seed=seed, address=f"127.0.0.1:{port}", extra=extra
    )
    pb = procs.start(b_args, bob.log)
    kills = 0
    for _ in range(14):
        if rng.random() < 0.5:
            time.sleep(float(rng.uniform(0.2, 2.5)))  # anywhere
        else:  # right after Bob staged a block and told Alice (the commit window)
            seen = _count(bob.log, "kind=node.ready")
            t0 = time.monotonic()
            while _count(bob.log, "kind=node.ready") == seen and time.monotonic() - t0 < 90:
                if pa.poll() is not None or pb.poll() is not None:
                    break
                time.sleep(0.01)
            time.sleep(float(rng.uniform(0.0, 0.05)))
        if pb.poll() is not None and pb.returncode == 0:
            break
        victim = pa if rng.random() < 0.5 else pb
        if victim.poll() is None:
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=30)
            kills += 1
        if pa.poll() is not None and pa.returncode == -signal.SIGKILL:
            pa = procs.start(a_args, alice.log)
        if pb.poll() is not None and pb.returncode == -signal.SIGKILL:
            pb = procs.start(b_args, bob.log)
    pb.communicate(timeout=600)
    pa.communicate(timeout=120)
    assert kills >= 5
    assert pb.returncode == 0, bob.log.read_text()[-3000:]
    # Alice either saw Bob's goodbye or, restarted after it, gave up waiting for him
    assert pa.returncode in (0, 3), alice.log.read_text()[-3000:]
    blocks_a, keys_a = _store_rows(alice.store)
    blocks_b, keys_b = _store_rows(bob.store)
    assert blocks_a == blocks_b
    assert keys_a == keys_b
    assert {b[2] for b in blocks_a} <= {"committed", "aborted"}
    committed = {int(str(b[1])) for b in blocks_a if b[2] == "committed"}
    want = _expected_keys(key_run, block_rounds=block_rounds, seed=seed, blocks=committed)
    assert [k[0] for k in keys_a] == list(want)
    assert [k[1] for k in keys_a] == list(want.values())
    _assert_no_pad_reuse(alice, bob)
    _assert_private(alice.store, bob.store)
