"""Kill a running sweep (SIGKILL, or SIGINT as Ctrl-C sends it) at a random point, restart it,
and compare with an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qrepeater.sweep._store import read_store
from sweep_support import cli, payloads, stop_group

SPEC = """
model = "link"
[fixed]
fiber_km = 10
[axes]
alpha = [0.05, 0.1, 0.17]
[budget]
max_samples = 12_000_000
piece_samples = 2_000_000
"""
PLANNED = 18


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n") - 1
    except FileNotFoundError:
        return -1


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The store of an uninterrupted run."""
    folder = tmp_path_factory.mktemp("reference")
    spec = folder / "s.toml"
    spec.write_text(SPEC)
    store = folder / "ref.csv"
    r = cli("sweep", spec, "--out", store, "--json")
    assert r.returncode == 0, r.stderr
    assert len(payloads(store)) == PLANNED
    return store


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_kill_at_a_random_point_then_resume(
    tmp_path: Path, reference: Path, sig: signal.Signals
) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC)

    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    store = tmp_path / "killed.csv"
    # pieces stored before the kill (at least six still to run, a few tenths of a second of
    # work even on a fast idle machine), then a little more: mid-piece or mid-write
    target = rng.randrange(0, PLANNED - 6)
    extra_s = rng.uniform(0.0, 0.05)
    err = tmp_path / "stderr.txt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "qrepeater", "sweep", str(spec), "--out", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=err.open("wb"),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while _lines(store) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(extra_s)
        assert proc.poll() is None, f"sweep ended before the kill (seed {seed})"
        os.killpg(proc.pid, sig)  # the sweep and its spawned workers, as a terminal does
        rc = proc.wait(timeout=60)
    finally:
        stop_group(proc)
    if sig == signal.SIGINT:
        assert rc == 130, f"seed {seed}"
        assert err.read_text().strip().splitlines()[-1].startswith("error: interrupted")
    else:
        assert rc == -signal.SIGKILL
    before = read_store(store).pieces if store.exists() else ()
    assert len(before) < PLANNED, f"seed {seed}"

    r = cli("sweep", store.parent / "s.toml", "--out", store, "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["pieces_reused"] == len(before), f"seed {seed}"
    assert summary["pieces_run"] == PLANNED - len(before), f"seed {seed}"
    assert payloads(store) == payloads(reference), f"seed {seed}"
    contents = read_store(store)
    assert not contents.torn_tail
    assert len(contents.pieces) == PLANNED  # no piece recomputed into a second line
    ref_rows = json.loads(cli("results", reference, "--json").stdout)["rows"]
    rows = json.loads(cli("results", store, "--json").stdout)["rows"]
    assert [{k: v for k, v in x.items() if k != "seconds"} for x in rows] == [
        {k: v for k, v in x.items() if k != "seconds"} for x in ref_rows
    ]
    assert all(x["pieces"] == 6 and x["samples"] == 12_000_000 for x in rows)
