"""Benchmark of the DI-QKD round sampler (qrepeater.diqkd.rounds).

Measures, in one process:

* outcome sampling alone (``sample_outcomes``: one uniform per round against the cumulative
  table of its (herald, x, y) cell), goal >= 1e7 rounds/s;
* settings + outcomes (``draw_settings`` + ``sample_outcomes``);
* a naive per-round Python loop doing the same work on a small subset, and the speed-up;
* the wall time of a whole simulated run of 405,145 rounds (heralds, settings, outcomes,
  metadata), also with both Parquet records written (what ``qrepeater diqkd simulate`` does).

Usage: ``python benchmarks/bench_rounds.py [--rounds 10000000] [--naive-rounds 20000]
[--repeat 5] [--out benchmarks/results/bench_rounds.json]``. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from qrepeater.diqkd.records import write_run
from qrepeater.diqkd.rounds import (
    SettingDistribution,
    draw_settings,
    herald_directions,
    outcome_table,
    sample_outcomes,
    simulate_from_preset,
)
from qrepeater.link.heralding import ElementaryLink
from qrepeater.presets import load_preset

PAPER_ROUNDS = 405_145


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    """Smallest wall time of ``repeat`` calls (s)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def naive_outcomes(
    table: np.ndarray,
    herald: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
) -> tuple[list[int], list[int]]:
    """Per-round Python loop: look up the cell, draw a uniform, walk the cumulative sum."""
    a_out, b_out = [], []
    for i in range(herald.size):
        p = table[0 if herald[i] > 0 else 1, x[i], y[i]]
        u = rng.random()
        k, acc = 3, 0.0
        for j in range(4):
            acc += p[j]
            if u < acc:
                k = j
                break
        a_out.append(k >> 1)
        b_out.append(k & 1)
    return a_out, b_out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10_000_000, help="rounds for the fast path")
    ap.add_argument("--naive-rounds", type=int, default=20_000, help="rounds for the loop")
    ap.add_argument("--repeat", type=int, default=5, help="repetitions (best time is kept)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent / "results" / "bench_rounds.json",
        help="JSON output file",
    )
    args = ap.parse_args()

    preset = load_preset()
    link = ElementaryLink.from_preset(preset, alpha=preset.operating.alpha_diqkd, fiber_km=10.0)
    dist = SettingDistribution.from_preset(preset)
    table = outcome_table(link, herald_directions(link))
    rng = np.random.default_rng(args.seed)
    n = args.rounds
    herald = np.where(rng.random(n) < 0.5, 1, -1).astype(np.int8)
    x, y = draw_settings(dist, n, alice_rng=rng, bob_rng=rng)

    def outcomes() -> object:
        return sample_outcomes(table, herald=herald, alice_setting=x, bob_setting=y, rng=rng)

    def settings_and_outcomes() -> object:
        xs, ys = draw_settings(dist, n, alice_rng=rng, bob_rng=rng)
        return sample_outcomes(table, herald=herald, alice_setting=xs, bob_setting=ys, rng=rng)

    t_out = best_of(args.repeat, outcomes)
    t_both = best_of(args.repeat, settings_and_outcomes)
    m = min(args.naive_rounds, n)
    hs, xs, ys = herald[:m], x[:m].astype(int), y[:m].astype(int)
    t_naive = best_of(1, lambda: naive_outcomes(table, hs, xs, ys, rng))

    def whole_run() -> object:
        return simulate_from_preset(preset, n_rounds=PAPER_ROUNDS, seed=args.seed)

    t_run = best_of(args.repeat, whole_run)
    with tempfile.TemporaryDirectory() as tmp:

        def run_and_write() -> object:
            run = simulate_from_preset(load_preset(), n_rounds=PAPER_ROUNDS, seed=args.seed)
            return write_run(Path(tmp) / "run", run)

        t_write = best_of(args.repeat, run_and_write)

    fast_rate, naive_rate = n / t_out, m / t_naive
    results: dict[str, Any] = {
        "rounds_fast": n,
        "rounds_naive": m,
        "outcome_sampling_s": t_out,
        "outcome_sampling_rounds_per_s": fast_rate,
        "settings_and_outcomes_rounds_per_s": n / t_both,
        "naive_loop_rounds_per_s": naive_rate,
        "speedup_vs_naive": fast_rate / naive_rate,
        "simulate_405145_s": t_run,
        "simulate_and_write_405145_s": t_write,
        "goal_rounds_per_s": 1e7,
        "meets_goal": fast_rate >= 1e7,
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
        },
        "repeat": args.repeat,
        "seed": args.seed,
    }
    rows = [
        ("outcome sampling (vectorised)", f"{fast_rate:,.3g} rounds/s", f"{n:,} rounds"),
        ("settings + outcomes", f"{n / t_both:,.3g} rounds/s", f"{n:,} rounds"),
        ("naive per-round loop", f"{naive_rate:,.3g} rounds/s", f"{m:,} rounds"),
        ("speed-up", f"{fast_rate / naive_rate:,.0f}x", ""),
        (f"simulate {PAPER_ROUNDS:,} rounds", f"{t_run:.3f} s", "in memory"),
        (f"simulate + write {PAPER_ROUNDS:,}", f"{t_write:.3f} s", "two Parquet files"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'benchmark':<{width}}  {'result':>22}  note")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>22}  {note}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
