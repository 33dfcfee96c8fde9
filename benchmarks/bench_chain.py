"""Repeater-chain engines: speed, as ratios against baselines run in the same process.

1. Exact engine (Brand-Coopmans-Elkouss probability tracking): N = 8 abstract chain with
   cut-offs, full waiting-time distribution to 1e-6 tail mass; N = 64 with truncations of
   1e5-1e6 attempts (log-domain safety: no NaN, no overflow).
2. Monte-Carlo engine: end-to-end deliveries per second for N = 4 at the paper's alpha = 17%
   over 100 km (calibrated preset, classical delays on), nested and swap-asap, against an
   attempt-by-attempt event loop of the same nested protocol (the way event-driven simulators
   step through attempts), which computes the same per-delivery records.

Usage: ``python benchmarks/bench_chain.py [--quick]``
"""

from __future__ import annotations

import argparse
import math
import random
import time

import numpy as np

from qrepeater.repeater.chain import Chain
from qrepeater.repeater.exact import NestedPlan, solve
from qrepeater.repeater.segments import Segment, SwapNoise


def timed(fn, repeat: int = 3):  # type: ignore[no-untyped-def]
    best = math.inf
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def exact_benchmarks(quick: bool) -> None:
    print("== exact engine")
    c8 = Chain.abstract(
        segments=8,
        p=0.1,
        werner=0.98,
        coherence_attempts=400,
        swap_probability=0.5,
        cutoff_attempts=(16, 31, 55),
    )
    t, d = timed(lambda: c8.exact(tol=1e-6))
    print(
        f"N=8, cut-offs (16,31,55), tail <= 1e-6: {t * 1e3:.1f} ms "
        f"(truncation {d.truncation:,}, neglected {1 - d.coverage:.1e}, E[T] = {d.mean_wait:.1f})"
    )
    for p in (1e-3, 1e-4) if not quick else (1e-3,):
        seg = Segment.abstract(p=p, werner=0.99, coherence_attempts=10.0 / p)
        plan = NestedPlan(
            segments=(seg,) * 64,
            swap_probability=1.0,
            noise=SwapNoise(),
            cutoffs=(None,) * 6,
            delays=(0,) * 6,
        )
        t, d = timed(lambda plan=plan: solve(plan, tol=1e-6), repeat=1)
        ok = bool(np.all(np.isfinite(d.pmf)) and np.all(np.isfinite(d.weighted)))
        print(
            f"N=64, p={p:g}: {t:.2f} s, truncation {d.truncation:,} attempts, "
            f"neglected {1 - d.coverage:.1e}, finite={ok}, w={d.mean_state[0]:.4f}"
        )


def event_loop_nested(chain: Chain, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Attempt-by-attempt simulation of a nested chain without cut-off, deterministic swaps:
    every segment tries once per attempt until it heralds, every join waits for both halves and
    the classical delay; per-qubit decay from each memory's storage time (same records)."""
    rng = random.Random(seed)
    plan = chain.nested_plan()
    segs = plan.segments
    ns = len(segs)
    p = segs[0].p_eff
    xy, zf = segs[0].ion_shrinks("exponential")
    noise = plan.noise.factors
    times = np.empty(n)
    states = np.empty((3, n))
    for r in range(n):
        herald = [0] * ns
        pending = set(range(ns))
        t = 0
        while pending:  # one iteration per attempt
            t += 1
            for i in list(pending):
                if rng.random() < p:
                    herald[i] = t
                    pending.discard(i)
        # joins level by level: (ready time, f, left-end age origin, right-end age origin)
        links = [(float(h), segs[i].f0.copy(), float(h), float(h)) for i, h in enumerate(herald)]
        for k in range(plan.levels):
            d = plan.delays[k]
            nxt = []
            for a, b in zip(links[::2], links[1::2], strict=True):
                ready = max(a[0], b[0])
                fa = np.array([xy(np.array(ready - a[3]))] * 2 + [zf(np.array(ready - a[3]))])
                fb = np.array([xy(np.array(ready - b[2]))] * 2 + [zf(np.array(ready - b[2]))])
                nxt.append((ready + d, a[1] * b[1] * fa * fb * noise, a[2], b[3]))
            links = nxt
        end, f, left0, right0 = links[0]
        for origin in (left0, right0):
            age = np.array(end - origin)
            f = f * np.array([xy(age), xy(age), zf(age)])
        times[r] = end
        states[:, r] = f
    return times, states


def monte_carlo_benchmarks(quick: bool) -> None:
    print("== Monte-Carlo engine: N = 4, alpha = 0.17, 100 km, delays on (ustc2025)")
    nested = Chain.from_preset("ustc2025", total_km=100.0, segments=4, alpha=0.17)
    asap = Chain.from_preset(
        "ustc2025", total_km=100.0, segments=4, alpha=0.17, protocol="swap-asap"
    )
    n = 100_000 if quick else 1_000_000
    t_nested, mc = timed(lambda: nested.monte_carlo(n=n, seed=1), repeat=2)
    rate_nested = n / t_nested
    t_asap, _ = timed(lambda: asap.monte_carlo(n=n // 4, seed=2), repeat=1)
    rate_asap = (n // 4) / t_asap
    m = 20 if quick else 100
    t_loop, (loop_t, loop_f) = timed(lambda: event_loop_nested(nested, m, seed=3), repeat=1)
    rate_loop = m / t_loop
    print(
        f"segment p = {nested.segments[0].p:.3g}, E[T] = {mc.time.mean():.0f} attempts "
        f"(loop: {loop_t.mean():.0f} from {m} deliveries)"
    )
    print(f"nested, vectorised MC:      {rate_nested:12,.0f} deliveries/s")
    print(f"swap-asap, vectorised MC:   {rate_asap:12,.0f} deliveries/s")
    print(f"nested, attempt-by-attempt: {rate_loop:12,.1f} deliveries/s")
    print(f"ratio nested MC / event loop: {rate_nested / rate_loop:,.0f}x")
    # the loop simulates the same process: its mean fidelity within its Monte-Carlo error
    f_mc = (1 + mc.f.sum(axis=0)) / 4
    f_loop = (1 + loop_f.sum(axis=0)) / 4
    print(
        f"mean fidelity: MC {f_mc.mean():.4f}, loop {f_loop.mean():.4f} "
        f"+- {f_loop.std(ddof=1) / math.sqrt(m):.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (CI smoke run)")
    args = parser.parse_args()
    exact_benchmarks(args.quick)
    monte_carlo_benchmarks(args.quick)


if __name__ == "__main__":
    main()
