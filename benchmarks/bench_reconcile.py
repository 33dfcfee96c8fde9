"""Benchmark of LDPC information reconciliation (qrepeater.qkdpp.reconciliation).

Measures, for keys with BSC errors at QBER Q:

* ``headline``: efficiency f and frame success at Q = 3.6% with a key of about 1e5 bits (the
  experiment's sifted key is 105,976 bits; the paper reports f = 1.122);
* ``sweep``: f and frame success for Q = 1% ... 10%;
* ``throughput``: code construction time and decoding throughput (key bits per second of
  belief propagation, and end to end) for block lengths 1e5 and 1e6.

Baselines run in the same process: the Shannon limit (f = 1) and the fixed-rate,
non-adaptive scheme of Elkouss et al., ISIT 2009 (one code per published rate, the highest rate
whose BP threshold exceeds Q, its full syndrome sent once, no puncturing/shortening/reveals).

Usage::

    python benchmarks/bench_reconcile.py                 # full sizes (about 15 min on 1 core)
    python benchmarks/bench_reconcile.py --quick         # reduced sizes (about 3 min)
    python benchmarks/bench_reconcile.py --sections headline --trials 40

Writes ``bench_reconcile.json`` and ``bench_reconcile.png`` to ``--out`` (default
``benchmarks/results/``); codes are cached in ``--cache-dir`` (default: the library default).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from ldpc.bp_decoder import BpDecoder

from qrepeater.errors import ReconciliationError
from qrepeater.qkdpp.channel import PublicChannel, pack_bits, unpack_bits
from qrepeater.qkdpp.codes import ELKOUSS2009, CodeFamily
from qrepeater.qkdpp.reconciliation import (
    ReconcileConfig,
    ReconcileResult,
    binary_entropy,
    plan,
    reconcile,
)

PAPER_Q = 0.036
PAPER_F = 1.122
PAPER_KEY_BITS = 105_976


@dataclass
class Point:
    """Aggregated runs of one protocol at one QBER."""

    protocol: str
    qber: float
    key_bits: int
    runs: int = 0
    frames: int = 0
    frames_ok: int = 0
    keys_correct: int = 0
    efficiencies: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)
    rate: float = float("nan")

    def summary(self) -> dict[str, Any]:
        f = np.array(self.efficiencies) if self.efficiencies else np.array([np.nan])
        return {
            "protocol": self.protocol,
            "qber": self.qber,
            "key_bits": self.key_bits,
            "runs": self.runs,
            "frames": self.frames,
            "frame_success": self.frames_ok / self.frames if self.frames else float("nan"),
            "keys_correct": self.keys_correct,
            "f_mean": float(f.mean()),
            "f_std": float(f.std()),
            "f_min": float(f.min()),
            "f_max": float(f.max()),
            "f_over_shannon": float(f.mean()),
            "mean_attempts": float(np.mean(self.attempts)) if self.attempts else float("nan"),
            "mean_seconds": float(np.mean(self.seconds)) if self.seconds else float("nan"),
            "mother_rate": self.rate,
        }


def bsc_pair(
    n: int, qber: float, rng: np.random.Generator
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    x = rng.integers(0, 2, n, dtype=np.uint8)
    y = x ^ (rng.random(n) < qber).astype(np.uint8)
    return x, y


def run_blind(point: Point, qber: float, cfg: ReconcileConfig, seed: int) -> ReconcileResult:
    rng = np.random.default_rng(seed)
    x, y = bsc_pair(point.key_bits, qber, rng)
    channel = PublicChannel()
    res = reconcile(x, y, qber=qber, channel=channel, seed=rng, config=cfg)
    assert res.leak_bits == channel.bits_sent(prefix="ec.")
    point.runs += 1
    point.frames += res.frames
    point.frames_ok += res.frames - res.frames_failed
    point.keys_correct += bool(res.success and np.array_equal(res.bob_key, x))
    if res.success and not np.array_equal(res.bob_key, x):
        print(f"  !! undetected error at Q={qber} seed={seed}", file=sys.stderr)
    point.efficiencies.append(res.efficiency)
    point.seconds.append(res.seconds)
    point.attempts.append(res.decode_attempts)
    point.rate = res.rate
    return res


def fixed_rate_code(qber: float) -> float | None:
    """Elkouss et al. 2009: the highest published rate whose BP threshold exceeds ``qber``."""
    ok = [r for r, d in ELKOUSS2009.items() if d.threshold > qber]
    return max(ok) if ok else None


def run_fixed(
    point: Point, qber: float, cfg: ReconcileConfig, seed: int, decoders: dict[Any, Any]
) -> None:
    """One frame of the non-adaptive baseline: the whole syndrome, one decoding attempt."""
    r0 = fixed_rate_code(qber)
    if r0 is None:
        return
    fam = CodeFamily(
        name="elkouss2009-published",
        rates=tuple(sorted(ELKOUSS2009)),
        granularity=20,
        distributions=dict(ELKOUSS2009),
    )
    n = point.key_bits
    key = (r0, n)
    if key not in decoders:
        try:
            code = fam.code(r0, n, cache_dir=cfg.cache_dir)
        except ReconciliationError as exc:
            print(f"  fixed-rate baseline skipped at Q={qber}: {exc}", file=sys.stderr)
            return
        dec = BpDecoder(
            code.H,
            error_rate=qber,
            max_iter=cfg.bp_max_iter,
            bp_method="product_sum",
            schedule="parallel",
            input_vector_type="syndrome",
        )
        decoders[key] = (code, dec)
    code, dec = decoders[key]
    rng = np.random.default_rng(seed)
    x, y = bsc_pair(n, qber, rng)
    channel = PublicChannel()
    t0 = time.perf_counter()
    payload, nbits = pack_bits(code.syndrome(x))
    channel.send("alice", "ec.syndrome", payload, bits=nbits)
    syn = unpack_bits(channel.receive("bob", "ec.syndrome"), nbits)
    dec.update_channel_probs(np.full(n, qber))
    err = np.asarray(dec.decode(syn ^ code.syndrome(y)), dtype=np.uint8)
    ok = bool(dec.converge) and np.array_equal(y ^ err, x)
    leak = channel.bits_sent(prefix="ec.")
    point.runs += 1
    point.frames += 1
    point.frames_ok += ok
    point.keys_correct += ok
    point.efficiencies.append(leak / (n * binary_entropy(qber)))
    point.seconds.append(time.perf_counter() - t0)
    point.attempts.append(1)
    point.rate = r0


def headline(args: argparse.Namespace, cfg: ReconcileConfig) -> dict[str, Any]:
    blind = Point("blind", PAPER_Q, args.key_bits)
    fixed = Point("fixed-rate", PAPER_Q, args.key_bits)
    decoders: dict[Any, Any] = {}
    for t in range(args.headline_trials):
        res = run_blind(blind, PAPER_Q, cfg, args.seed + t)
        print(
            f"  headline trial {t}: f={res.efficiency:.4f} ok={res.success} "
            f"attempts={res.decode_attempts} {res.seconds:.1f}s",
            file=sys.stderr,
            flush=True,
        )
        if t < args.baseline_trials:
            run_fixed(fixed, PAPER_Q, cfg, args.seed + t, decoders)
    out = {"blind": blind.summary(), "fixed_rate": fixed.summary()}
    out["blind"]["efficiencies"] = blind.efficiencies
    out["paper_f"] = PAPER_F
    out["f_over_paper"] = out["blind"]["f_mean"] / PAPER_F
    return out


def sweep(args: argparse.Namespace, cfg: ReconcileConfig) -> list[dict[str, Any]]:
    rows = []
    decoders: dict[Any, Any] = {}
    for q in args.qbers:
        blind = Point("blind", q, args.key_bits)
        fixed = Point("fixed-rate", q, args.key_bits)
        for t in range(args.trials):
            run_blind(blind, q, cfg, args.seed + 1000 + t)
            if t < args.baseline_trials:
                run_fixed(fixed, q, cfg, args.seed + 1000 + t, decoders)
        decoders.clear()
        b, f = blind.summary(), fixed.summary()
        rows.append({"qber": q, "blind": b, "fixed_rate": f})
        print(
            f"  Q={q:.3f} blind f={b['f_mean']:.4f} success={b['frame_success']:.3f} | "
            f"fixed f={f['f_mean']:.4f} success={f['frame_success']:.3f}",
            file=sys.stderr,
            flush=True,
        )
    return rows


def throughput(args: argparse.Namespace, cfg: ReconcileConfig) -> list[dict[str, Any]]:
    rows = []
    for n in args.throughput_n:
        q = PAPER_Q
        key_bits = int(n * 0.97)
        tcfg = ReconcileConfig(
            block_length=max(cfg.block_length, n + n // 10),
            min_block_length=cfg.min_block_length,
            target_efficiency=cfg.target_efficiency,
            puncture_range=cfg.puncture_range,
            reveal_step=cfg.reveal_step,
            max_reveals=cfg.max_reveals,
            bp_max_iter=cfg.bp_max_iter,
            family=cfg.family,
            cache_dir=cfg.cache_dir,
        )
        fp = plan(key_bits, qber=q, config=tcfg)
        t0 = time.perf_counter()
        cfg.family.code(fp.rate, fp.block_length, cache_dir=tcfg.cache_dir, use_cache=False)
        build_s = time.perf_counter() - t0
        point = Point("blind", q, key_bits)
        res = run_blind(point, q, tcfg, args.seed + 7)
        per_decode = res.decode_seconds / max(res.decode_attempts, 1)
        rows.append(
            {
                "block_length": fp.block_length,
                "key_bits": key_bits,
                "qber": q,
                "rate": fp.rate,
                "build_seconds": build_s,
                "decode_attempts": res.decode_attempts,
                "seconds_per_decode": per_decode,
                "bp_bits_per_s": key_bits / per_decode,
                "end_to_end_bits_per_s": key_bits / res.seconds,
                "efficiency": res.efficiency,
                "success": res.success,
            }
        )
        print(
            f"  n={fp.block_length}: build {build_s:.1f}s, {per_decode:.1f}s/decode, "
            f"{key_bits / per_decode:.3g} bit/s BP, {key_bits / res.seconds:.3g} bit/s total",
            file=sys.stderr,
            flush=True,
        )
    return rows


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax, ax2 = axes
    rows = results.get("sweep", [])
    if rows:
        q = np.array([r["qber"] for r in rows]) * 100
        fb = np.array([r["blind"]["f_mean"] for r in rows])
        sb = np.array([r["blind"]["f_std"] for r in rows])
        ff = np.array([r["fixed_rate"]["f_mean"] for r in rows])
        ax.errorbar(q, fb, yerr=sb, marker="o", capsize=3, label="blind rate-adaptive (this)")
        sf = np.array([r["fixed_rate"]["frame_success"] for r in rows])
        ax.plot(q, ff, "--", color="C1", alpha=0.5)
        good = sf >= 0.99
        ax.plot(q[good], ff[good], "s", color="C1", label="fixed-rate codes (Elkouss 2009)")
        ax.plot(q[~good], ff[~good], "s", mfc="none", color="C1", label="fixed-rate, frames lost")
        ax2.plot(q, [r["blind"]["frame_success"] for r in rows], "o-", label="blind")
        ax2.plot(
            q,
            [r["fixed_rate"]["frame_success"] for r in rows],
            "s--",
            alpha=0.7,
            label="fixed-rate",
        )
    head = results.get("headline")
    if head:
        ax.errorbar(
            [PAPER_Q * 100],
            [head["blind"]["f_mean"]],
            yerr=[head["blind"]["f_std"]],
            marker="D",
            color="k",
            capsize=3,
            label=f"Q=3.6%, {head['blind']['runs']} runs",
        )
        ax.plot([PAPER_Q * 100], [PAPER_F], "*", ms=12, color="C3", label="paper f = 1.122")
    ax.axhline(1.0, color="grey", lw=1, label="Shannon limit")
    ax.axhline(1.10, color="grey", lw=1, ls=":", label="goal f = 1.10")
    ax.set_xlabel("QBER (%)")
    ax.set_ylabel("efficiency f = leak / (N h(Q))")
    ax.legend(fontsize=8)
    ax2.set_xlabel("QBER (%)")
    ax2.set_ylabel("frame success")
    ax2.set_ylim(-0.05, 1.05)
    if rows:
        ax2.legend(fontsize=8)
    key_bits = results["args"]["key_bits"]
    fig.suptitle(f"LDPC reconciliation, key of {key_bits} bits per run")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_table(results: dict[str, Any]) -> None:
    head = results.get("headline")
    if head:
        b, f = head["blind"], head["fixed_rate"]
        print(f"\nQ = 3.6%, key {b['key_bits']} bits, {b['runs']} runs ({b['frames']} frames)")
        print(
            f"  blind      f = {b['f_mean']:.4f} +- {b['f_std']:.4f} "
            f"[{b['f_min']:.4f}, {b['f_max']:.4f}], frame success {b['frame_success']:.3f}, "
            f"f/paper = {head['f_over_paper']:.3f}, attempts {b['mean_attempts']:.2f}"
        )
        print(
            f"  fixed-rate f = {f['f_mean']:.4f}, frame success {f['frame_success']:.3f} "
            f"(rate {f['mother_rate']})"
        )
    rows = results.get("sweep", [])
    if rows:
        print(
            f"\n{'Q':>6} {'R0':>5} {'f blind':>8} {'sd':>6} {'succ':>6} {'att':>5} "
            f"{'f fixed':>8} {'succ':>6} {'fixed/blind':>11}"
        )
        for r in rows:
            b, f = r["blind"], r["fixed_rate"]
            print(
                f"{r['qber']:6.3f} {b['mother_rate']:5.2f} {b['f_mean']:8.4f} "
                f"{b['f_std']:6.4f} {b['frame_success']:6.3f} {b['mean_attempts']:5.2f} "
                f"{f['f_mean']:8.4f} {f['frame_success']:6.3f} "
                f"{f['f_mean'] / b['f_mean']:11.3f}"
            )
    for t in results.get("throughput", []):
        print(
            f"\nn = {t['block_length']}: build {t['build_seconds']:.1f} s; BP "
            f"{t['bp_bits_per_s']:.3g} key bit/s ({t['seconds_per_decode']:.2f} s/attempt); "
            f"end to end {t['end_to_end_bits_per_s']:.3g} bit/s, f = {t['efficiency']:.4f}"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--quick", action="store_true", help="reduced sizes")
    p.add_argument("--sections", default="headline,sweep,throughput")
    p.add_argument("--key-bits", type=int, default=None)
    p.add_argument("--qbers", default="0.01,0.02,0.03,0.04,0.05,0.06,0.07,0.08,0.09,0.10")
    p.add_argument("--trials", type=int, default=None, help="runs per QBER of the sweep")
    p.add_argument("--headline-trials", type=int, default=None)
    p.add_argument("--baseline-trials", type=int, default=None)
    p.add_argument("--throughput-n", default=None)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--plot-only", action="store_true", help="redraw the plot and table from --out's JSON"
    )
    args = p.parse_args(argv)
    if args.plot_only:
        saved = json.loads((args.out / "bench_reconcile.json").read_text())
        plot(saved, args.out / "bench_reconcile.png")
        print_table(saved)
        return 0
    quick = args.quick
    args.key_bits = args.key_bits or (20_000 if quick else PAPER_KEY_BITS)
    args.trials = args.trials or (2 if quick else 3)
    args.headline_trials = args.headline_trials or (4 if quick else 20)
    args.baseline_trials = args.baseline_trials or (2 if quick else 3)
    args.qbers = [float(v) for v in args.qbers.split(",")]
    if quick and "--qbers" not in " ".join(argv or sys.argv):
        args.qbers = [0.01, 0.03, 0.05, 0.07, 0.10]
    tn = args.throughput_n or ("20000,100000" if quick else "100000,1000000")
    args.throughput_n = [int(float(v)) for v in tn.split(",")]
    sections = set(args.sections.split(","))
    cfg = ReconcileConfig(cache_dir=args.cache_dir)
    results: dict[str, Any] = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "config": {k: v for k, v in asdict(cfg).items() if k != "family"},
        "environment": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "ldpc": __import__("ldpc").__version__
            if hasattr(__import__("ldpc"), "__version__")
            else "unknown",
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
        },
    }
    t0 = time.perf_counter()
    if "headline" in sections:
        results["headline"] = headline(args, cfg)
    if "sweep" in sections:
        results["sweep"] = sweep(args, cfg)
    if "throughput" in sections:
        results["throughput"] = throughput(args, cfg)
    results["seconds"] = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_reconcile.json").write_text(json.dumps(results, indent=2))
    plot(results, args.out / "bench_reconcile.png")
    print_table(results)
    print(
        f"\nwrote {args.out / 'bench_reconcile.json'} and bench_reconcile.png "
        f"({results['seconds']:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
