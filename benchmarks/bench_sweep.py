"""Benchmark of the sweep executors: per-task overhead and the speed-up of a second worker.

1. Overhead: 1,000 trivial analytic tasks (``keyrate`` asymptotic rate at given S and Q, a few
   microseconds each) through the local spawn-process executor and through Dask (a
   ``LocalCluster``), against the same tasks computed in a plain loop in this process
   (baseline). Overhead per task = (sweep wall time - baseline) / 1,000, executor start-up
   excluded (reported apart); it includes the store (one fsync per finished batch).
   Also with one task per round trip (``max_batch=1``), the cost of a lone small task.
2. Scaling: a Monte-Carlo sweep (link sampler, 16 pieces of 10^6 heralds) with 2 workers
   against 1, for both executors (start-up excluded, workers warmed up first, best of
   ``--repeats`` runs).

All runs happen in this process's session, so the ratios are meaningful on any machine. On a
shared machine other load lowers the speed-up of anything; a control (pure CPU jobs on 1 and 2
plain spawn processes, no sweep) measures what a second process can gain at the time, and the
load average is recorded.

    python benchmarks/bench_sweep.py [--tasks 1000] [--pieces 16] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import math
import multiprocessing as mp
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from qrepeater.presets import load_preset
from qrepeater.sweep import (
    DaskExecutor,
    Executor,
    LocalExecutor,
    SampleBudget,
    Task,
    make_task,
    read_results,
    run_piece,
    sweep,
)


def _spin(n: int) -> int:
    """Pure CPU work (no memory traffic): the control of what two processes can gain."""
    x = 0
    for i in range(n):
        x += i
    return x


def control_speedup(units: int, size: int) -> tuple[float, float]:
    """Wall time of ``units`` spin jobs on 1 and on 2 spawn processes (plain
    ``concurrent.futures``, no sweep): the speed-up this machine offers right now."""
    walls = []
    for workers in (1, 2):
        with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            list(pool.map(_spin, [1000] * workers))  # start the workers
            t0 = time.perf_counter()
            list(pool.map(_spin, [size] * units))
            walls.append(time.perf_counter() - t0)
    return walls[0], walls[1]


def run(
    tasks: list[Task], executor: Executor, folder: Path, name: str, *, max_batch: int = 64
) -> float:
    store = folder / f"{name}.csv"
    t0 = time.perf_counter()
    for _ in sweep(tasks, store=store, executor=executor, max_batch=max_batch):
        pass
    return time.perf_counter() - t0


def started(kind: str, workers: int, warm: list[Task], folder: Path) -> tuple[Executor, float]:
    """An executor with its workers started and warmed up, and the time that took."""
    t0 = time.perf_counter()
    ex: Executor = LocalExecutor(workers) if kind == "local" else DaskExecutor(f"local:{workers}")
    run(warm, ex, folder, f"{kind}{workers}-warm-{time.perf_counter()}")
    return ex, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--pieces", type=int, default=16)
    ap.add_argument("--piece-samples", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    preset = load_preset()
    trivial = [
        make_task("keyrate", {"chsh": 2.6, "qber": float(q)}, preset=preset)
        for q in np.linspace(0.001, 0.1, args.tasks)
    ]
    run_piece(trivial[0], 0)  # imports outside the timing
    t0 = time.perf_counter()
    for t in trivial:
        run_piece(t, 0)
    baseline = time.perf_counter() - t0
    budget = SampleBudget(
        max_samples=args.pieces * args.piece_samples, piece_samples=args.piece_samples
    )
    mc = [make_task("link", {"alpha": 0.17, "fiber_km": 10.0}, preset=preset, budget=budget)]
    # warm-up: every worker imports what the timed runs need (tasks not in the timed runs)
    warm = [
        *(
            make_task("keyrate", {"chsh": 2.7, "qber": float(q)}, preset=preset)
            for q in np.linspace(0.001, 0.1, 200)
        ),
        make_task(
            "link",
            {"alpha": 0.1, "fiber_km": 10.0},
            preset=preset,
            budget=SampleBudget(max_samples=8000, piece_samples=1000),
        ),
    ]
    run_piece(mc[0], 0)
    t0 = time.perf_counter()
    for k in range(args.pieces):
        run_piece(mc[0], k)
    mc_in_process = time.perf_counter() - t0

    overhead: list[dict[str, Any]] = []
    scaling: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for kind in ("local", "dask"):
            ex, start = started(kind, 2, warm, folder)
            try:
                wall = run(trivial, ex, folder, f"{kind}-trivial")
                single = run(trivial, ex, folder, f"{kind}-trivial-1", max_batch=1)
            finally:
                ex.close()
            overhead.append(
                {
                    "executor": ex.description,
                    "startup_s": start,
                    "wall_s": wall,
                    "per_task_overhead_ms": 1e3 * (wall - baseline) / len(trivial),
                    "wall_unbatched_s": single,
                    "per_task_overhead_unbatched_ms": 1e3 * (single - baseline) / len(trivial),
                }
            )
            walls: dict[int, float] = {}
            busy: dict[int, float] = {}
            for workers in (1, 2):
                ex, _ = started(kind, workers, warm, folder)
                try:  # best of a few runs: other load on a shared machine only slows runs
                    for r in range(args.repeats):
                        name = f"{kind}{workers}-mc{r}"
                        wall = run(mc, ex, folder, name)
                        if wall < walls.get(workers, math.inf):
                            walls[workers] = wall
                            # compute seconds the workers spent inside the pieces
                            busy[workers] = read_results(folder / f"{name}.csv")[0].seconds
                finally:
                    ex.close()
            scaling.append(
                {
                    "executor": kind,
                    "wall_1_worker_s": walls[1],
                    "wall_2_workers_s": walls[2],
                    "speedup": walls[1] / walls[2],
                    # piece compute time / (wall x workers): below 1 means time outside the
                    # pieces (overhead) ; piece time growing with 2 workers means contention
                    "piece_seconds_1_worker": busy[1],
                    "piece_seconds_2_workers": busy[2],
                    "utilisation_2_workers": busy[2] / (2 * walls[2]),
                }
            )
    c1, c2 = control_speedup(16, 3_000_000)
    result = {
        "benchmark": "sweep",
        "control": {
            "what": "16 pure-Python CPU jobs on 1 vs 2 spawn processes, no sweep",
            "wall_1_worker_s": c1,
            "wall_2_workers_s": c2,
            "speedup": c1 / c2,
        },
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "load_average_1min": os.getloadavg()[0],
        "trivial_tasks": len(trivial),
        "baseline_in_process_s": baseline,
        "overhead": overhead,
        "monte_carlo": {
            "pieces": args.pieces,
            "piece_samples": args.piece_samples,
            "in_process_s": mc_in_process,
        },
        "scaling": scaling,
    }
    print(f"{len(trivial)} trivial tasks in a plain loop: {baseline:.3f} s (baseline)")
    for row in overhead:
        print(
            f"  {row['executor']}: {row['wall_s']:.2f} s, {row['per_task_overhead_ms']:.2f} ms "
            f"per task overhead in batches, {row['per_task_overhead_unbatched_ms']:.2f} ms one "
            f"task per round trip (start-up and warm-up {row['startup_s']:.1f} s apart)"
        )
    print(
        f"Monte Carlo, {args.pieces} x {args.piece_samples:,} heralds "
        f"({mc_in_process:.2f} s in this process):"
    )
    for row in scaling:
        print(
            f"  {row['executor']}: 1 worker {row['wall_1_worker_s']:.2f} s, 2 workers "
            f"{row['wall_2_workers_s']:.2f} s, speed-up {row['speedup']:.2f}x; time inside "
            f"pieces {row['piece_seconds_1_worker']:.2f} s vs {row['piece_seconds_2_workers']:.2f}"
            f" s, utilisation with 2 workers {row['utilisation_2_workers']:.0%}"
        )
    print(
        f"control (no sweep, pure CPU jobs): 1 process {c1:.2f} s, 2 processes {c2:.2f} s, "
        f"speed-up {c1 / c2:.2f}x: what this machine offers a second process right now"
    )
    print(f"load average (1 min) at the end: {result['load_average_1min']:.1f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_sweep.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
