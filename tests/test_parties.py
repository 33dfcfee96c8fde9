"""The sans-IO parties: each holds only its own record and learns everything else from messages."""

from __future__ import annotations

import multiprocessing as mp
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qrepeater.diqkd.parties import Alice, Bob, DistillConfig, max_messages
from qrepeater.diqkd.pipeline import DistillResult, distill
from qrepeater.diqkd.records import read_party_record, write_run
from qrepeater.diqkd.rounds import DIQKDRun, simulate_from_preset
from qrepeater.errors import ParameterError
from qrepeater.presets import Preset
from qrepeater.qkdpp.channel import Message

GOOD = {"ion.residual_coherence": 1.0, "ion.spam_error": 0.0, "phase.contrast": 1.0}


@pytest.fixture(scope="module")
def good_run(preset: Preset) -> DIQKDRun:
    p = preset.replace(GOOD)
    return simulate_from_preset(p, n_rounds=120_000, seed=3, fiber_km=2.0, alpha=0.01)


def _pump(a: Alice, b: Bob) -> list[Message]:
    """Deliver messages between the two parties, in order; returns the transcript."""
    log: list[Message] = []
    queue = [*a.start(), *b.start()]
    while queue:
        msg = queue.pop(0)
        log.append(msg)
        target = b if msg.sender == "alice" else a
        queue.extend(target.receive(msg))
    return log


def test_parties_refuse_the_other_record(good_run: DIQKDRun) -> None:
    with pytest.raises(ParameterError):
        Alice(good_run.bob, good_run.metadata)
    with pytest.raises(ParameterError):
        Bob(good_run.alice, good_run.metadata)
    a = Alice(good_run.alice, good_run.metadata, seed=1)
    first = a.start()
    assert [m.kind for m in first] == ["sync.digest", "sift.settings"]
    assert not a.done
    with pytest.raises(ParameterError):
        a.start()


def test_qber_sample_comes_through_messages(good_run: DIQKDRun) -> None:
    # a sample large enough (3,000 bits) that the code-rate estimate is not far too low
    cfg = DistillConfig(qber_source="sample", min_qber_sample=3000)
    a = Alice(good_run.alice, good_run.metadata, config=cfg, seed=7)
    b = Bob(good_run.bob, good_run.metadata, config=cfg, seed=7)
    log = _pump(a, b)
    assert a.outcome is not None
    assert b.outcome is not None
    assert not a.outcome.aborted, a.outcome.abort_message
    assert a.outcome.key is not None
    assert b.outcome.key is not None
    assert np.array_equal(a.outcome.key, b.outcome.key)
    kinds = [(m.sender, m.kind) for m in log]
    assert ("bob", "pe.sample_bits") in kinds
    assert ("alice", "pe.sample_positions") in kinds
    k = a.outcome.public["sample_bits"]
    assert k > 0
    assert b.outcome.public["sample_bits"] == k
    # both parties count the same leakage from the messages each saw
    assert a.outcome.public["leak_bits"] == b.outcome.public["leak_bits"] >= k
    # the message budget used for the authentication-pool check holds
    n_alice = sum(m.sender == "alice" for m in log)
    n_bob = sum(m.sender == "bob" for m in log)
    bound = max_messages(cfg)
    assert n_alice <= bound[0]
    assert n_bob <= bound[1]
    # a report never carries key bits
    assert "key" not in a.outcome.public
    assert "key=" not in repr(a.outcome)


def _party_process(party: str, record: str, seed: int, conn: Connection, out: Any) -> None:
    rec = read_party_record(record, party=party)  # type: ignore[arg-type]
    cls = Alice if party == "alice" else Bob
    p = cls(rec.rounds, rec.metadata, seed=seed)
    for m in p.start():
        conn.send(m)
    while not p.done:
        if not conn.poll(120):
            p.abort("timeout", "no message")
            break
        for m in p.receive(conn.recv()):
            conn.send(m)
    o = p.outcome
    assert o is not None
    key = None if o.key is None else np.packbits(o.key).tobytes()
    out.put((party, o.aborted, o.abort_reason, key, o.public["secret_bits"]))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_processes_give_the_in_process_keys(good_run: DIQKDRun, tmp_path: Path) -> None:
    """Alice and Bob in separate processes, each reading only its own record file."""
    a_path, b_path = write_run(tmp_path, good_run)
    ctx = mp.get_context("spawn")
    ca, cb = ctx.Pipe()
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_party_process, args=("alice", str(a_path), 11, ca, results)),
        ctx.Process(target=_party_process, args=("bob", str(b_path), 11, cb, results)),
    ]
    for p in procs:
        p.start()
    try:
        got = {}
        for _ in range(2):
            party, aborted, reason, key, bits = results.get(timeout=280)
            got[party] = (aborted, reason, key, bits)
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
    assert got["alice"][0] is False, got["alice"][1]
    assert got["alice"][2] == got["bob"][2]
    ref: DistillResult = distill(
        good_run.alice,
        good_run.bob,
        alice_meta=good_run.metadata,
        bob_meta=good_run.metadata,
        seed=11,
    )
    ka, _ = ref.require_keys()
    assert got["alice"][3] == ref.report.secret_bits == ka.size
    assert got["alice"][2] == np.packbits(ka).tobytes()


def test_parties_with_different_configurations_both_abort(good_run: DIQKDRun) -> None:
    a = Alice(good_run.alice, good_run.metadata, config=DistillConfig(method="eat"), seed=1)
    b = Bob(good_run.bob, good_run.metadata, config=DistillConfig(), seed=1)
    log = _pump(a, b)
    assert {m.kind for m in log} <= {"sync.digest", "sift.settings", "pe.test_outcomes"}
    for p in (a, b):
        assert p.outcome is not None
        assert p.outcome.aborted
        assert p.outcome.abort_reason == "config"
        assert p.outcome.key is None


def test_a_tampered_message_aborts_the_receiver(good_run: DIQKDRun) -> None:
    """A party that is handed a message out of protocol order aborts instead of guessing."""
    a = Alice(good_run.alice, good_run.metadata, seed=1)
    b = Bob(good_run.bob, good_run.metadata, seed=1)
    sync_a, _ = a.start()
    b.start()
    assert b.receive(Message("alice", "sift.settings", b"\x00", 1)) == []
    assert b.outcome is not None
    assert b.outcome.abort_reason == "channel"
    assert b.receive(sync_a) == []  # nothing more after an abort
