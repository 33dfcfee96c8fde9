"""Helpers of the sweep tests: run the CLI, read a store's statistics, stop process groups."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from qrepeater.sweep._store import read_store


def cli(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``qrepeater ARGS`` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "qrepeater", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def payloads(path: Path) -> dict[tuple[str, int], str]:
    """(strong id, piece) -> stored statistics (everything but the timing); each piece once."""
    out: dict[tuple[str, int], str] = {}
    for p in read_store(path).pieces:
        assert (p.strong_id, p.piece) not in out, f"piece {p.piece} stored twice"
        out[p.strong_id, p.piece] = json.dumps(p.payload, sort_keys=True)
    return out


def stop_group(proc: subprocess.Popen[bytes], *, grace: float = 10.0) -> None:
    """SIGTERM a process group started with ``start_new_session=True``; SIGKILL if needed."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)
    # children of the group may outlive its leader for a moment
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
