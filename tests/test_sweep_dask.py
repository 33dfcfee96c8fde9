"""A real Dask cluster: a scheduler and two workers as separate processes on 127.0.0.1.

The same sweep through ``--scheduler tcp://127.0.0.1:PORT`` and through the local executor must
write the same statistics, piece by piece (same tasks, same seeds).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qrepeater.sweep import read_results
from sweep_support import cli, payloads, stop_group

pytest.importorskip("distributed")

SPEC = """
model = "link"
[axes]
alpha = [0.05, 0.17]
fiber_km = [10, 50]
[budget]
max_samples = 600_000
piece_samples = 200_000
"""

ANALYTIC = """
model = "memory"
[fixed]
alpha = 0.17
[axes]
fiber_km = [10, 25, 50]
"memory.coherence_time_s" = [0.55, 1.0]
"""


def _dask(*args: str) -> list[str]:
    exe = shutil.which("dask", path=str(Path(sys.executable).parent))
    return (
        [exe, *args]
        if exe
        else [sys.executable, "-m", "distributed.cli.dask_" + args[0], *args[1:]]
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Address of a scheduler with two single-threaded workers (separate processes)."""
    from distributed import Client

    root = tmp_path_factory.mktemp("dask")
    sched_file = root / "scheduler.json"
    procs: list[subprocess.Popen[bytes]] = []
    log = (root / "cluster.log").open("wb")

    def start(*args: str) -> None:
        procs.append(
            subprocess.Popen(
                _dask(*args),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=root,
            )
        )

    try:
        start(
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(sched_file),
        )
        deadline = time.monotonic() + 60
        while not sched_file.exists() and time.monotonic() < deadline:
            assert procs[0].poll() is None, "dask scheduler exited"
            time.sleep(0.1)
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        for i in range(2):
            start(
                "worker",
                address,
                "--nthreads",
                "1",
                "--nworkers",
                "1",
                "--no-dashboard",
                "--host",
                "127.0.0.1",
                "--name",
                f"w{i}",
                "--local-directory",
                str(root),
            )
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=90)
        yield address
    finally:
        for p in reversed(procs):
            stop_group(p)
        log.close()


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_dask_cluster_store_equals_local_store(cluster: str, tmp_path: Path) -> None:
    spec = tmp_path / "mc.toml"
    spec.write_text(SPEC)
    analytic = tmp_path / "an.toml"
    analytic.write_text(ANALYTIC)
    for s in (spec, analytic):
        via_dask = tmp_path / f"{s.stem}_dask.csv"
        via_local = tmp_path / f"{s.stem}_local.csv"
        r = cli("sweep", s, "--out", via_dask, "--scheduler", cluster, "--json")
        assert r.returncode == 0, r.stderr
        summary = json.loads(r.stdout)
        assert summary["executor"].startswith(f"dask {cluster} (2 workers")
        assert summary["complete"]
        r = cli("sweep", s, "--out", via_local, "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["executor"].startswith("local processes")
        a, b = payloads(via_dask), payloads(via_local)
        assert a == b
        assert len(a) == (12 if s is spec else 6)
    # merged tables agree to the last bit
    for name in ("mc", "an"):
        r1 = read_results(tmp_path / f"{name}_dask.csv")
        r2 = read_results(tmp_path / f"{name}_local.csv")
        assert [(r.strong_id, r.values, r.errors) for r in r1] == [
            (r.strong_id, r.values, r.errors) for r in r2
        ]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_reconciliation_runs_inside_daemonic_dask_workers(cluster: str, tmp_path: Path) -> None:
    """Dask's nanny starts daemonic worker processes, which may not fork process pools: the
    reconcile model must run there serially (the sweep owns the parallelism)."""
    spec = tmp_path / "rec.toml"
    spec.write_text(
        'model = "reconcile"\n[fixed]\nkey_bits = 30_000\nblock_length = 30_000\n'
        "[axes]\nqber = [0.02]\n[budget]\nmax_samples = 2\npiece_samples = 1\n"
    )
    r = cli("sweep", spec, "--out", tmp_path / "rec.csv", "--scheduler", cluster, "--json")
    assert r.returncode == 0, r.stderr
    (row,) = read_results(tmp_path / "rec.csv")
    assert row.samples == 2
    assert row.complete
    leak = row.values["leak_bits"]
    assert isinstance(leak, float)
    assert leak > 0


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_unreachable_scheduler_fails_cleanly(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = tmp_path / "mc.toml"
    spec.write_text(SPEC)
    out = tmp_path / "r.csv"
    r = cli("sweep", spec, "--out", out, "--scheduler", f"tcp://127.0.0.1:{port}")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0
    assert "cannot reach the Dask scheduler" in r.stderr
    assert not out.exists()
