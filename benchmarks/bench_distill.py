"""End-to-end benchmark: simulate the paper's 405,145-round 10 km run and distil keys from it.

Reports the wall time of every stage of :func:`qrepeater.diqkd.pipeline.distill` (goal: the whole
distillation in <= 10 s on one core), the secret bits and the reconciliation efficiency.

    python benchmarks/bench_distill.py [--rounds 405145] [--seeds 1 2 3] [--out DIR]
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
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    preset = load_preset()
    runs = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        run = simulate_paper_run(preset, rounds=args.rounds, seed=seed)
        t_sim = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = distill(
            run.alice, run.bob, alice_meta=run.metadata, bob_meta=run.metadata, seed=seed
        )
        t_distill = time.perf_counter() - t0
        r = result.report
        runs.append(
            {
                "seed": seed,
                "simulate_s": t_sim,
                "distill_s": t_distill,
                "stages_s": r.seconds,
                "secret_bits": r.secret_bits,
                "aborted": r.aborted,
                "chsh": r.chsh,
                "qber": r.qber,
                "ec_efficiency": r.ec_efficiency,
                "leak_bits": r.leak_bits,
            }
        )
        print(
            f"seed {seed}: simulate {t_sim:.2f} s, distill {t_distill:.2f} s "
            f"(reconciliation {r.seconds.get('reconciliation', 0.0):.2f} s); "
            f"S={r.chsh:.4f} QBER={r.qber} f={r.ec_efficiency} secret={r.secret_bits} "
            f"aborted={r.aborted}",
            flush=True,
        )
    times = [x["distill_s"] for x in runs]
    print(
        f"distill of {args.rounds:,} rounds: mean {sum(times) / len(times):.2f} s, "
        f"max {max(times):.2f} s over {len(times)} seeds (goal <= 10 s)"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "rounds": args.rounds,
    }
    (args.out / "bench_distill.json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
