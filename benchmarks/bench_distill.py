"""End-to-end benchmark: simulate the paper's 405,145-round 10 km run and distil keys from it.

Reports the wall time of every stage of :func:`qrepeater.diqkd.pipeline.distill` (goal: the whole
distillation in <= 10 s on one core), the secret bits and the reconciliation efficiency.

    python benchmarks/bench_distill.py [--rounds 405145] [--seed 1] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from qrepeater.diqkd.pipeline import distill
from qrepeater.presets import load_preset
from qrepeater.report.diqkd_report import simulate_paper_run


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=405_145)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--method", default="phase-error")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    preset = load_preset()
    t0 = time.perf_counter()
    run = simulate_paper_run(preset, rounds=args.rounds, seed=args.seed)
    t_sim = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = distill(
        run.alice, run.bob, alice_meta=run.metadata, bob_meta=run.metadata, seed=args.seed
    )
    t_distill = time.perf_counter() - t0
    r = result.report
    print(f"simulate {args.rounds:,} rounds: {t_sim:.2f} s")
    for stage, sec in r.seconds.items():
        print(f"  {stage:<24} {sec:8.3f} s")
    print(f"distill total: {t_distill:.2f} s (goal <= 10 s)")
    print(
        f"aborted={r.aborted} secret_bits={r.secret_bits} S={r.chsh:.4f} "
        f"QBER={r.qber} f={r.ec_efficiency} leak={r.leak_bits}"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "rounds": args.rounds,
        "seed": args.seed,
    }
    out = {
        "meta": meta,
        "simulate_s": t_sim,
        "distill_s": t_distill,
        "stages_s": r.seconds,
        "secret_bits": r.secret_bits,
        "aborted": r.aborted,
        "ec_efficiency": r.ec_efficiency,
        "leak_bits": r.leak_bits,
    }
    (args.out / "bench_distill.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
