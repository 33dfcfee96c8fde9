"""Benchmark of command-line start-up: whole-process wall time of short commands.

Goals (issue 8): ``qrepeater --help`` and ``keyrate --json`` under 0.4 s, ``link --json`` under
0.6 s on a quiet machine. Each command runs as a fresh ``python -m qrepeater`` process; the
baseline in the same run is a bare interpreter (``python -c pass``), so the ratio column is
meaningful on a busy or slow machine too. The median of ``--repeats`` runs is reported, plus
the modules that cost most to import (``python -X importtime``).

    python benchmarks/bench_cli_startup.py [--repeats N] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS: dict[str, tuple[list[str], float]] = {
    "--help": (["--help"], 0.4),
    "keyrate --json": (["keyrate", "--chsh", "2.5758", "--qber", "0.036", "--json"], 0.4),
    "link --json": (["link", "--json"], 0.6),
    "diqkd --help": (["diqkd", "--help"], 0.4),
}


def wall(cmd: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def top_imports(module: str, n: int = 8) -> list[tuple[str, float]]:
    """The ``n`` slowest imports (cumulative seconds) of ``import module``, by -X importtime."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            rows.append((m.group(4), int(m.group(2)) / 1e6, len(m.group(3))))
    # first-level children of the module itself and the module
    shallow = [(name, t) for name, t, depth in rows if depth <= 3]
    return sorted(shallow, key=lambda r: -r[1])[:n]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    env_python = [sys.executable]
    base = wall([*env_python, "-c", "pass"], args.repeats)
    rows = []
    print(f"{'command':<16} {'median s':>9} {'goal s':>7} {'x bare python':>14}")
    print(f"{'(bare python)':<16} {base:9.3f} {'':>7} {1.0:14.1f}")
    for name, (argv, goal) in COMMANDS.items():
        t = wall([*env_python, "-m", "qrepeater", *argv], args.repeats)
        rows.append({"command": name, "median_s": t, "goal_s": goal, "ratio_to_bare": t / base})
        flag = "" if t < goal else "  (over goal)"
        print(f"{name:<16} {t:9.3f} {goal:7.1f} {t / base:14.1f}{flag}")
    imports = top_imports("qrepeater.cli")
    print("slowest imports under `import qrepeater.cli` (cumulative s):")
    for mod, t in imports:
        print(f"  {mod:<40} {t:.3f}")
    result = {
        "benchmark": "cli_startup",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "repeats": args.repeats,
        "bare_python_s": base,
        "commands": rows,
        "imports": [{"module": m, "cumulative_s": t} for m, t in imports],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_cli_startup.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
