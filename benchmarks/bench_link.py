"""Benchmark of the link sampler: heralded pairs per second, skip mode vs attempt-by-attempt.

Both modes run in the same process on one core, so the ratio is meaningful on any machine.
Event-by-event network simulators spend about 0.5-2 ms per attempt (DESIGN.md); the last
column restates the skip mode's cost per *attempt it replaces* for comparison.

    python benchmarks/bench_link.py [--pairs N] [--attempts N] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from qrepeater.link.heralding import ElementaryLink
from qrepeater.link.sampler import sample_attempts, sample_heralds


def best_of(repeats: int, fn: object) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--pairs", type=int, default=2_000_000)
    ap.add_argument("--attempts", type=int, default=20_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    rows = []
    for alpha in (0.17, 0.025):
        link = ElementaryLink.from_preset(alpha=alpha, fiber_km=10.0)
        t_skip = best_of(
            args.repeats, lambda link=link: sample_heralds(link, n_pairs=args.pairs, seed=1)
        )
        t_att = best_of(
            args.repeats, lambda link=link: sample_attempts(link, n_attempts=args.attempts, seed=1)
        )
        pairs_skip = args.pairs / t_skip
        attempts_per_s = args.attempts / t_att
        pairs_att = attempts_per_s * link.herald_probability
        rows.append(
            {
                "alpha": alpha,
                "fiber_km": 10.0,
                "herald_probability": link.herald_probability,
                "pairs_per_s_skip": pairs_skip,
                "attempts_per_s_attempt_mode": attempts_per_s,
                "pairs_per_s_attempt_mode": pairs_att,
                "speedup_pairs": pairs_skip / pairs_att,
                "ns_per_replaced_attempt_skip": 1e9 / (pairs_skip / link.herald_probability),
            }
        )
    print(
        f"{'alpha':>6} {'P_h':>9} {'pairs/s (skip)':>15} {'attempts/s':>12} "
        f"{'pairs/s (attempts)':>19} {'speed-up':>9} {'ns/attempt replaced':>20}"
    )
    for r in rows:
        print(
            f"{r['alpha']:6.3f} {r['herald_probability']:9.2e} {r['pairs_per_s_skip']:15.3e} "
            f"{r['attempts_per_s_attempt_mode']:12.3e} {r['pairs_per_s_attempt_mode']:19.3e} "
            f"{r['speedup_pairs']:9.0f} {r['ns_per_replaced_attempt_skip']:20.3f}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "pairs": args.pairs,
        "attempts": args.attempts,
    }
    (args.out / "bench_link.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
