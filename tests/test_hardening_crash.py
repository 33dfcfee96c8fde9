"""Issue 8, items 2-5: SIGKILL of `diqkd distill` at random moments.

After every kill ``--out`` holds a complete, consistent key set with its report, or nothing; no
process of the killed run survives; and a rerun succeeds and clears the staging leftovers.
Half of the kills fall anywhere in the run, half inside the writing of the key set (the child
slows its file writes and renames down so that a kill lands between them).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from qrepeater.diqkd.records import write_run
from qrepeater.diqkd.rounds import simulate_from_preset
from qrepeater.presets import Preset
from qrepeater.qkdpp.keyfiles import read_key_set

GOOD = {"ion.residual_coherence": 1.0, "ion.spam_error": 0.0, "phase.contrast": 1.0}
KILLS = 14

SLOW_CHILD = """
import os, sys, time
import qrepeater.qkdpp.keyfiles as kf
_write, _rename = kf._write_durable, os.rename
def slow_write(*a, **k):
    time.sleep(0.04)
    return _write(*a, **k)
def slow_rename(src, dst):
    time.sleep(0.04)
    _rename(src, dst)
    time.sleep(0.04)
kf._write_durable = slow_write
os.rename = slow_rename
from qrepeater.cli import app
app(sys.argv[1:], prog_name="qrepeater")
"""


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _check_consistent(out: Path) -> str:
    """'none' or 'keys' (a complete set whose files belong together)."""
    if not out.exists():
        return "none"
    ks = read_key_set(out)  # raises on a partial or mixed set
    assert not ks.aborted
    assert ks.alice_key is not None
    assert ks.bob_key is not None
    assert np.array_equal(ks.alice_key, ks.bob_key)
    assert ks.alice_key.size == ks.report["secret_bits"] > 0
    assert ks.report["run_id"] == ks.run_id
    return "keys"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkill_leaves_a_whole_key_set_or_none(preset: Preset, tmp_path: Path) -> None:
    run = simulate_from_preset(
        preset.replace(GOOD), n_rounds=120_000, seed=3, fiber_km=2.0, alpha=0.01
    )
    a_path, b_path = write_run(tmp_path / "rec", run)
    out = tmp_path / "keys"
    child = tmp_path / "slow_child.py"
    child.write_text(SLOW_CHILD)
    args = [
        *("diqkd", "distill", "--alice", str(a_path), "--bob", str(b_path)),
        *("--out", str(out), "--seed", "5", "--json", "--force"),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # one undisturbed run for the time scale
    t0 = time.monotonic()
    first = subprocess.run(
        [sys.executable, "-m", "qrepeater", *args], capture_output=True, env=env, timeout=120
    )
    full = time.monotonic() - t0
    assert first.returncode == 0, first.stderr
    assert _check_consistent(out) == "keys"

    rng = random.Random(8)
    seen: set[str] = set()
    for i in range(KILLS):
        in_write = i % 2 == 1
        cmd = (
            [sys.executable, str(child), *args]
            if in_write
            else [sys.executable, "-m", "qrepeater", *args]
        )
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        try:
            if in_write:  # wait for the staging folder, then kill somewhere in the writing
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and proc.poll() is None:
                    if any(p.name.startswith(".keys.staging-") for p in tmp_path.iterdir()):
                        break
                    time.sleep(0.005)
                time.sleep(rng.uniform(0.0, 0.35))
            else:
                time.sleep(rng.uniform(0.0, full))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            # no orphan: every process of the killed run's group is gone
            deadline = time.monotonic() + 5
            while _group_alive(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not _group_alive(proc.pid), f"kill {i}: orphaned processes remain"
            seen.add(_check_consistent(out))
        finally:
            if _group_alive(proc.pid):
                os.killpg(proc.pid, signal.SIGKILL)
    # the rerun succeeds, leaves a whole set and clears every staging leftover
    again = subprocess.run(
        [sys.executable, "-m", "qrepeater", *args], capture_output=True, env=env, timeout=120
    )
    assert again.returncode == 0, again.stderr
    assert _check_consistent(out) == "keys"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".keys.")]
    assert seen  # every kill was checked
