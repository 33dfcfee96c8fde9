"""Networked nodes against the in-process driver: throughput ratio and block-to-commit latency.

Simulates a 10 km run (a better-than-paper link by default, so that blocks of 100,000 rounds
give keys), distils every block in this process with :func:`qrepeater.diqkd.pipeline.distill`
(the baseline), then starts ``qrepeater node alice`` and ``qrepeater node bob`` as two processes
on 127.0.0.1 and lets them distil the same blocks with the same seeds. Reported:

* ``ratio``: node wall time (first block opened to last block committed in both stores, from
  the nodes' own timestamps, so process start-up is excluded) over the in-process time of the
  same blocks (goal: the network costs under 10%, ratio <= 1.10);
* ``latency_s`` per block: from the block's start (its records are complete) to its keys being
  committed in *both* stores, and ``commit_s``, the part after the parties finished (staging,
  ``node.ready``, commit, ``node.commit``, commit);
* the keys must be identical to the baseline's (checked), and the auth pool bits per block.

    python benchmarks/bench_node.py [--rounds 300000] [--block-rounds 100000] [--repeats 3]
        [--paper]

The in-process baseline is run once untimed first (codes built and cached), then baseline and
node pair alternate ``--repeats`` times; the median ratio is reported. Alice and Bob run in
two processes, so on a machine with two or more free cores they overlap some work (both
compute the bound, Bob decodes while Alice waits): a ratio below 1 is possible and is no
measure of the network.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from qrepeater.diqkd.parties import block_seed, slice_rounds
from qrepeater.diqkd.pipeline import distill
from qrepeater.diqkd.records import write_run
from qrepeater.diqkd.rounds import DIQKDRun, simulate_from_preset
from qrepeater.presets import load_preset
from qrepeater.qkdpp.framing import write_auth_key_pair
from qrepeater.qkdpp.keystore import KeyStore, key_id

GOOD = {"ion.residual_coherence": 1.0, "ion.spam_error": 0.0, "phase.contrast": 1.0}


def _node(party: str, tmp: Path, block_rounds: int, seed: int, addr: str) -> list[str]:
    where = (
        ["--listen", addr, "--port-file", str(tmp / "port")]
        if party == "alice"
        else [
            "--connect",
            addr,
        ]
    )
    return [
        sys.executable, "-m", "qrepeater", "node", party,
        "--records", str(tmp / "rec" / f"{party}.parquet"),
        "--auth-key", str(tmp / f"{party}.auth"),
        "--store", str(tmp / f"{party}.db"),
        "--block-rounds", str(block_rounds), "--seed", str(seed), "--json", *where,
    ]  # fmt: skip


def _nodes(
    run: DIQKDRun, args: argparse.Namespace, n_blocks: int, expected: dict[str, bytes]
) -> tuple[float, list[dict[str, object]]]:
    """Two node processes over loopback; returns their wall time and per-block figures."""
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        write_run(tmp / "rec", run)
        write_auth_key_pair(1 << 23, tmp / "alice.auth", tmp / "bob.auth")
        with open(tmp / "alice.log", "wb") as la, open(tmp / "bob.log", "wb") as lb:
            pa = subprocess.Popen(
                _node("alice", tmp, args.block_rounds, args.seed, "127.0.0.1:0"),
                stdout=subprocess.PIPE,
                stderr=la,
            )
            try:
                while not (tmp / "port").exists():
                    if pa.poll() is not None:
                        sys.exit("alice exited early")
                    time.sleep(0.05)
                port = (tmp / "port").read_text().strip()
                pb = subprocess.Popen(
                    _node("bob", tmp, args.block_rounds, args.seed, f"127.0.0.1:{port}"),
                    stdout=subprocess.PIPE,
                    stderr=lb,
                )
                out_b, _ = pb.communicate(timeout=3600)
                out_a, _ = pa.communicate(timeout=120)
            finally:
                if pa.poll() is None:
                    pa.kill()
                    pa.wait()
        if pa.returncode or pb.returncode:
            sys.exit(f"node failed: alice {pa.returncode}, bob {pb.returncode}")
        rep_a, rep_b = json.loads(out_a), json.loads(out_b)
        for party in ("alice", "bob"):
            with KeyStore(tmp / f"{party}.db") as ks:
                got = {k: ks.get(k).key for k in ks.key_ids()}
            if got != expected:
                sys.exit(f"{party}'s store differs from the in-process keys")
    blocks: list[dict[str, object]] = []
    for ba, bb in zip(rep_a["blocks"], rep_b["blocks"], strict=True):
        opened = min(ba["opened_at"], bb["opened_at"])
        both = None
        if ba["committed_at"] and bb["committed_at"]:
            both = max(ba["committed_at"], bb["committed_at"])
        finished = max(ba["finished_at"] or 0.0, bb["finished_at"] or 0.0)
        blocks.append(
            {
                "block": ba["block"],
                "state": ba["state"],
                "secret_bits": ba["secret_bits"],
                "keys": ba["keys"],
                "auth_bits": ba["auth_bits"],
                "latency_s": None if both is None else both - opened,
                "commit_s": None if both is None else both - finished,
            }
        )
    first = min(min(b["opened_at"] for b in r["blocks"]) for r in (rep_a, rep_b))
    last = max(
        max((b["committed_at"] or b["opened_at"]) for b in r["blocks"]) for r in (rep_a, rep_b)
    )
    return float(last - first), blocks


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=300_000)
    ap.add_argument("--block-rounds", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--paper", action="store_true", help="the calibrated preset, not GOOD")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    preset = load_preset() if args.paper else load_preset().replace(GOOD)
    run = simulate_from_preset(
        preset, n_rounds=args.rounds, seed=args.seed, fiber_km=10.0, alpha=0.01
    )
    n_blocks = -(-args.rounds // args.block_rounds)

    def baseline() -> tuple[list[dict[str, object]], dict[str, bytes]]:
        """The in-process driver, block by block."""
        base: list[dict[str, object]] = []
        expected: dict[str, bytes] = {}
        for b in range(n_blocks):
            lo, hi = b * args.block_rounds, min(args.rounds, (b + 1) * args.block_rounds)
            t0 = time.perf_counter()
            res = distill(
                slice_rounds(run.alice, lo, hi),
                slice_rounds(run.bob, lo, hi),
                alice_meta=run.metadata,
                bob_meta=run.metadata,
                seed=block_seed(args.seed, b),
            )
            dt = time.perf_counter() - t0
            base.append({"block": b, "seconds": dt, "secret_bits": res.report.secret_bits})
            if not res.report.aborted:
                key = res.require_keys()[0]
                data = np.packbits(key[: key.size - key.size % 8]).tobytes()
                for i in range(len(data) // 32):
                    kid = key_id(run.metadata.run_id, b, 256 * i)
                    expected[kid] = data[32 * i : 32 * i + 32]
        return base, expected

    baseline()  # warm-up: LDPC codes built and cached, imports done
    reps = []
    for rep in range(args.repeats):
        base, expected = baseline()
        t_base = sum(float(x["seconds"]) for x in base)  # type: ignore[arg-type]
        t_net, blocks = _nodes(run, args, n_blocks, expected)
        # steady state: without the first block, which in the fresh node processes also pays
        # for imports and loading the codes (the baseline was warmed up)
        warm_net = sum(float(b["latency_s"] or 0.0) for b in blocks[1:])  # type: ignore[arg-type]
        warm_base = sum(float(x["seconds"]) for x in base[1:])  # type: ignore[arg-type]
        reps.append(
            {
                "in_process_s": t_base,
                "nodes_s": t_net,
                "ratio": t_net / t_base,
                "ratio_warm": warm_net / warm_base if warm_base > 0 else None,
                "baseline": base,
                "blocks": blocks,
            }
        )
        lat = [float(b["latency_s"]) for b in blocks if b["latency_s"] is not None]
        com = [float(b["commit_s"]) for b in blocks if b["commit_s"] is not None]
        print(
            f"repeat {rep}: {n_blocks} blocks of {args.block_rounds:,} rounds: in-process "
            f"{t_base:.2f} s, two nodes over loopback {t_net:.2f} s, ratio {t_net / t_base:.3f}; "
            f"block-to-commit-in-both latency mean {np.mean(lat):.2f} s "
            f"(commit exchange {1000 * np.mean(com):.1f} ms); keys identical: yes",
            flush=True,
        )
    ratio = float(np.median([float(r["ratio"]) for r in reps]))  # type: ignore[arg-type]
    ratio_warm = float(np.median([float(r["ratio_warm"]) for r in reps]))  # type: ignore[arg-type]
    lat_all = [float(b["latency_s"]) for r in reps for b in r["blocks"] if b["latency_s"]]  # type: ignore[union-attr]
    com_all = [float(b["commit_s"]) for r in reps for b in r["blocks"] if b["commit_s"]]  # type: ignore[union-attr]
    print(
        f"median ratio nodes / in-process {ratio:.3f} over {len(reps)} repeats, "
        f"{ratio_warm:.3f} without the first (cold) block (goal <= 1.10); "
        f"latency block start -> committed in both stores: median "
        f"{np.median(lat_all):.2f} s, of which the commit exchange "
        f"{1000 * np.median(com_all):.1f} ms"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_avg": os.getloadavg(),
        "rounds": args.rounds,
        "block_rounds": args.block_rounds,
        "preset": "ustc2025" if args.paper else "ustc2025 + ideal phase/motion/readout",
    }
    (args.out / "bench_node.json").write_text(
        json.dumps(
            {
                "meta": meta,
                "ratio_median": ratio,
                "ratio_warm_median": ratio_warm,
                "latency_s_median": float(np.median(lat_all)),
                "commit_s_median": float(np.median(com_all)),
                "repeats": reps,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
