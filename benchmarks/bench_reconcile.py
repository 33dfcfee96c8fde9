"""Benchmark of LDPC information reconciliation (qrepeater.qkdpp.reconciliation).

Sections (``--sections``, comma separated):

* ``throughput``: Q = 3.6% on the experiment's 105,976-bit key (default frame). One decoding
  problem (the rate-adaptive frame at f ~ 1.09) is solved by the baseline run in the same
  process, ``ldpc``'s product-sum BP with the flooding schedule (the decoder this project used
  before), and by the compiled layered kernel: CPU ns per edge and iteration, iterations, and
  decoding throughput; then the whole blind protocol (``reconcile``) on ``--trials`` keys:
  Mbit/s of sifted key per CPU second (one thread, so per core).
* ``headline``: f at Q = 3.6%, n = 105,976, with the QBER given and with a disclosed 2% sample
  (f from the QBER found after correction; sampled bits reported beside it).
* ``sweep``: mean f against QBER 1-10% for n = 1e4, 1e5, 1e6 (plotted).
* ``robustness``: frame success over ``--frames`` frames per QBER in 1-10% in four modes:
  ``hint`` (the true rate given), ``sample`` (2% disclosed sample, Clopper-Pearson bound),
  ``misjudged`` (a hint of 0.6 Q) and ``drift`` (error rate rising linearly from 0.5 Q to
  1.5 Q across the key, hint Q).
* ``short``: f of short keys (1k-16k) at Q = 1-7%.

Baselines in the same process: ``ldpc`` (decoder speed) and the Shannon limit f = 1.

Usage::

    python benchmarks/bench_reconcile.py --quick           # a few minutes
    python benchmarks/bench_reconcile.py --frames 1000     # the full robustness sweep (hours)
    python benchmarks/bench_reconcile.py --sections robustness --frames 1000 \
        --modes hint,drift --name bench_reconcile_robust1000   # one part of it
    python benchmarks/bench_reconcile.py --sections throughput --trials 5
    python benchmarks/bench_reconcile.py --speed-only      # decoder speed vs ldpc, ~1 minute
    python benchmarks/bench_reconcile.py --collect 'robust1000_*.json' --name robust1000_all

Writes ``<name>.json`` and ``<name>.png`` (``--name``, default ``bench_reconcile``) to
``--out`` (default ``benchmarks/results/``); codes are cached in the library's default cache.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from qrepeater.qkdpp._bp_kernel import LLR_KNOWN, LayeredDecoder
from qrepeater.qkdpp.channel import PublicChannel
from qrepeater.qkdpp.entropy import binary_entropy
from qrepeater.qkdpp.reconciliation import (
    ReconcileConfig,
    ReconcileResult,
    _code_for,
    _Layout,
    reconcile,
    sample_qber,
)

U8 = npt.NDArray[np.uint8]
PAPER_Q = 0.036
PAPER_KEY_BITS = 105_976
QBERS = (0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.10)
SHORT_QBERS = (0.01, 0.02, 0.036, 0.05, 0.07)


def keys(n: int, qber: float | npt.NDArray[np.float64], rng: np.random.Generator) -> tuple[U8, U8]:
    """Alice's uniform key and Bob's copy through a BSC (per-bit rates allowed: drift)."""
    x = rng.integers(0, 2, n, dtype=np.uint8)
    return x, x ^ (rng.random(n) < qber).astype(np.uint8)


def cpu() -> float:
    return time.process_time()


def run(
    x: U8, y: U8, *, hint: float | None, seed: int, cfg: ReconcileConfig
) -> tuple[ReconcileResult | None, int, float]:
    """One reconciliation; ``hint=None`` discloses a 2% sample first. Returns (result, sampled
    bits, CPU seconds); result None if the sampled QBER leaves nothing to reconcile."""
    t0 = cpu()
    sampled = 0
    q = hint
    sample_bits = None
    if q is None:
        s = sample_qber(x, y, rng=np.random.default_rng(seed))
        q, sampled, sample_bits = s.estimate, s.bits, s.bits
        x, y = x[s.keep], y[s.keep]
    if not 0 < q < 0.5:
        return None, sampled, cpu() - t0
    res = reconcile(
        x, y, qber=q, channel=PublicChannel(), seed=seed, config=cfg, qber_sample_bits=sample_bits
    )
    ok = res.success and bool(np.array_equal(res.bob_key, x))
    if res.success and not ok:  # pragma: no cover - would be a wrong key accepted
        print("WRONG KEY ACCEPTED", file=sys.stderr)
    return res, sampled, cpu() - t0


# ---- throughput ----------------------------------------------------------------------------------


def throughput(args: argparse.Namespace, cfg: ReconcileConfig) -> dict[str, Any]:
    from ldpc.bp_decoder import BpDecoder

    q, n_key = PAPER_Q, PAPER_KEY_BITS
    fp, code = _code_for(n_key, q, cfg)
    rng = np.random.default_rng(2025)
    lay = _Layout(code, fp, 0, 12345)
    # the frame after enough punctured symbols are revealed for f ~ 1.09
    h = binary_entropy(q)
    extra = max(0, round(1.09 * n_key * h - (code.m - fp.punctured)))
    known = np.concatenate([lay.short, lay.reveal_seq[:extra]])
    out: dict[str, Any] = {
        "qber": q,
        "key_bits": n_key,
        "code_n": code.n,
        "code_m": code.m,
        "edges": int(code.H.nnz),
        "lift": code.lift,
        "frame_efficiency": (code.m - fp.punctured + extra) / (n_key * h),
        "problems": [],
    }
    layered = LayeredDecoder.for_code(code)
    # load the compiled kernel before timing (the first call reads numba's cache)
    layered.decode(
        layered.state(np.zeros(code.n, dtype=np.float32)),
        np.zeros(code.m, dtype=np.uint8),
        max_iter=1,
    )
    ref = BpDecoder(
        code.H,
        error_rate=0.1,
        max_iter=200,
        bp_method="product_sum",
        schedule="parallel",
        input_vector_type="syndrome",
    )
    for trial in range(args.decode_trials):
        err = np.zeros(code.n, dtype=np.uint8)
        err[lay.key] = rng.random(lay.key.size) < q
        err[known] = 0
        syn = code.syndrome(err)
        llr = np.full(code.n, np.log((1 - q) / q), dtype=np.float32)
        llr[known] = LLR_KNOWN
        llr[lay.punct] = 0.0
        llr[lay.reveal_seq[:extra]] = LLR_KNOWN
        probs = np.clip(1.0 / (1.0 + np.exp(llr.astype(np.float64))), 1e-10, 1 - 1e-10)
        ref.update_channel_probs(probs)
        t0 = cpu()
        e_ref = np.asarray(ref.decode(syn), dtype=np.uint8)
        t_ref = cpu() - t0
        it_ref = int(ref.iter)
        st = layered.state(llr)
        t0 = cpu()
        ok = layered.decode(st, syn, max_iter=200)
        t_lay = cpu() - t0
        row = {
            "ldpc_converged": bool(ref.converge),
            "ldpc_correct": bool(np.array_equal(e_ref, err)),
            "ldpc_iterations": it_ref,
            "ldpc_cpu_s": t_ref,
            "ldpc_ns_per_edge_iter": t_ref / max(it_ref, 1) / code.H.nnz * 1e9,
            "layered_converged": ok,
            "layered_correct": bool(np.array_equal(st.hard_decision(), err)),
            "layered_iterations": st.iterations,
            "layered_cpu_s": t_lay,
            "layered_ns_per_edge_iter": t_lay / st.iterations / code.H.nnz * 1e9,
            "speedup": t_ref / t_lay,
        }
        out["problems"].append(row)
        print(
            f"  decode {trial}: ldpc {t_ref:.3f} s ({it_ref} it, "
            f"{row['ldpc_ns_per_edge_iter']:.1f} ns/edge/it) vs layered {t_lay:.4f} s "
            f"({st.iterations} it, {row['layered_ns_per_edge_iter']:.2f} ns/edge/it): "
            f"x{row['speedup']:.0f}",
            flush=True,
        )
    # the whole blind protocol, QBER given
    runs = []
    for seed in range(args.trials):
        x, y = keys(n_key, q, np.random.default_rng(1000 + seed))
        res, _, sec = run(x, y, hint=q, seed=seed, cfg=cfg)
        assert res is not None
        runs.append(
            {
                "cpu_s": sec,
                "decode_s": res.decode_seconds,
                "success": res.success,
                "efficiency": res.efficiency,
                "rounds": res.rounds,
                "iterations": res.iterations,
            }
        )
    cpu_s = np.array([r["cpu_s"] for r in runs])
    out["protocol"] = runs
    out["protocol_mbit_per_cpu_s"] = float(n_key * len(runs) / cpu_s.sum() / 1e6)
    out["protocol_mean_iterations"] = float(np.mean([r["iterations"] for r in runs]))
    decode_s = float(sum(r["decode_s"] for r in runs))
    out["protocol_decode_share"] = decode_s / float(cpu_s.sum())
    out["protocol_ns_per_edge_iter"] = (
        decode_s / sum(r["iterations"] for r in runs) / code.H.nnz * 1e9
    )
    p = out["problems"]
    out["decode_speedup_median"] = float(np.median([r["speedup"] for r in p]))
    out["layered_decode_mbit_per_cpu_s"] = float(
        n_key * len(p) / sum(r["layered_cpu_s"] for r in p) / 1e6
    )
    out["ldpc_decode_mbit_per_cpu_s"] = float(
        n_key * len(p) / sum(r["ldpc_cpu_s"] for r in p) / 1e6
    )
    print(
        f"throughput: decoding x{out['decode_speedup_median']:.0f} vs ldpc; blind protocol "
        f"{out['protocol_mbit_per_cpu_s']:.3f} Mbit/s per CPU second "
        f"(mean {out['protocol_mean_iterations']:.0f} iterations per key, "
        f"{out['protocol_ns_per_edge_iter']:.2f} ns/edge/it, decoding "
        f"{100 * out['protocol_decode_share']:.0f}% of the time)",
        flush=True,
    )
    return out


# ---- efficiency ----------------------------------------------------------------------------------


def point(
    n: int, q: float, trials: int, cfg: ReconcileConfig, *, hint: str = "hint", seed0: int = 0
) -> dict[str, Any]:
    """``trials`` keys of ``n`` bits at QBER ``q``; ``hint``: hint | sample | misjudged | drift."""
    fs, fs_sample, ok, secs, rounds = [], [], 0, [], []
    for t in range(trials):
        rng = np.random.default_rng([seed0, t, round(q * 1e4), n])
        if hint == "drift":
            x, y = keys(n, np.linspace(0.5 * q, 1.5 * q, n), rng)
        else:
            x, y = keys(n, q, rng)
        h_arg = {"hint": q, "sample": None, "misjudged": 0.6 * q, "drift": q}[hint]
        res, sampled, sec = run(x, y, hint=h_arg, seed=t, cfg=cfg)
        secs.append(sec)
        if res is None or not res.success:
            continue
        ok += 1
        rounds.append(res.rounds)
        fs.append(res.efficiency)
        if sampled:
            fs_sample.append(
                (res.leak_bits + sampled)
                / (res.key_bits * binary_entropy(max(res.observed_qber, 1e-9)))
            )
    out = {
        "n": n,
        "qber": q,
        "mode": hint,
        "trials": trials,
        "success": ok,
        "failure_rate": 1.0 - ok / trials,
        "f_mean": float(np.mean(fs)) if fs else None,
        "f_std": float(np.std(fs)) if fs else None,
        "f_max": float(np.max(fs)) if fs else None,
        "rounds_mean": float(np.mean(rounds)) if rounds else None,
        "cpu_s_mean": float(np.mean(secs)),
    }
    if fs_sample:
        out["f_with_sample_mean"] = float(np.mean(fs_sample))
    print(
        f"  n={n:>8} Q={q:.3f} {hint:>9}: {ok}/{trials} ok, f={out['f_mean']} "
        f"(max {out['f_max']}), {out['cpu_s_mean']:.2f} s CPU each",
        flush=True,
    )
    return out


def headline(args: argparse.Namespace, cfg: ReconcileConfig) -> list[dict[str, Any]]:
    return [
        point(PAPER_KEY_BITS, PAPER_Q, args.trials, cfg, hint=mode, seed0=7)
        for mode in ("hint", "sample")
    ]


def sweep(args: argparse.Namespace, cfg: ReconcileConfig) -> list[dict[str, Any]]:
    rows = []
    sizes = (10_000, 100_000) if args.quick else (10_000, 100_000, 1_000_000)
    for n in sizes:
        trials = max(1, args.sweep_trials if n < 1_000_000 else args.sweep_trials // 4)
        for q in QBERS:
            rows.append(point(n, q, trials, cfg, seed0=11))
    return rows


def robustness(args: argparse.Namespace, cfg: ReconcileConfig) -> list[dict[str, Any]]:
    rows = []
    for mode in args.modes.split(","):
        for q in (float(x) for x in args.qbers.split(",")):
            rows.append(point(args.robust_bits, q, args.frames, cfg, hint=mode, seed0=13))
    return rows


def short(args: argparse.Namespace, cfg: ReconcileConfig) -> list[dict[str, Any]]:
    rows = []
    for n in (1_000, 2_000, 4_000, 8_000, 16_000):
        for q in SHORT_QBERS:
            rows.append(point(n, q, args.short_trials, cfg, seed0=17))
    return rows


# ---- report --------------------------------------------------------------------------------------


def plot_robustness(rows: list[dict[str, Any]], path: Path) -> None:
    """Mean f (bars up to the worst frame) against QBER per robustness mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    modes = sorted({r["mode"] for r in rows})
    for i, mode in enumerate(modes):
        dx = 0.0006 * (i - (len(modes) - 1) / 2)  # side by side where modes share a QBER
        pts = sorted(
            (r["qber"] + dx, r["f_mean"], r["f_max"])
            for r in rows
            if r["mode"] == mode and r["f_mean"]
        )
        ok = sum(r["success"] for r in rows if r["mode"] == mode)
        total = sum(r["trials"] for r in rows if r["mode"] == mode)
        qs, fs, fmax = (np.array(v) for v in zip(*pts, strict=True))
        ax.errorbar(
            qs, fs, yerr=[np.zeros_like(fs), fmax - fs], fmt="o-", capsize=3,
            label=f"{mode}: {ok:,}/{total:,} frames",
        )  # fmt: skip
    ax.axhline(1.0, color="k", lw=0.8, ls=":")
    ax.set_xlabel("QBER")
    ax.set_ylabel("f (mean; bar to the worst frame)")
    ax.set_title(f"Frame success and efficiency, {rows[0]['n']:,}-bit frames")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def collect(args: argparse.Namespace) -> int:
    """Merge the robustness rows of ``--out/<--collect glob>`` into ``<--name>.json`` + plot
    (per point the run with the most frames; among equals the last file in name order)."""
    best: dict[tuple[int, float, str], dict[str, Any]] = {}
    # in name order: a file later in that order with as many frames of a point replaces it
    sources = sorted(p for p in args.out.glob(args.collect) if p.name != f"{args.name}.json")
    for path in sources:
        for row in json.loads(path.read_text()).get("robustness", []):
            key = (row["n"], row["qber"], row["mode"])
            if key not in best or row["trials"] >= best[key]["trials"]:
                best[key] = row | {"source": path.name}
    if not best:
        print(f"no robustness rows in {args.out}/{args.collect}", file=sys.stderr)
        return 2
    rows = [best[k] for k in sorted(best, key=lambda k: (k[2], k[0], k[1]))]
    out = {"meta": {"collected_from": [p.name for p in sources]}, "robustness": rows}
    (args.out / f"{args.name}.json").write_text(json.dumps(out, indent=1))
    plot_robustness(rows, args.out / f"{args.name}.png")
    for mode in sorted({r["mode"] for r in rows}):
        sel = [r for r in rows if r["mode"] == mode]
        print(
            f"{mode}: {sum(r['success'] for r in sel):,}/{sum(r['trials'] for r in sel):,} frames; "
            + ", ".join(f"{r['qber']:.3g}: {r['f_mean']:.3f} (max {r['f_max']:.2f})" for r in sel)
        )
    return 0


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    rows = results.get("sweep", [])
    for n in sorted({r["n"] for r in rows}):
        pts = [(r["qber"], r["f_mean"]) for r in rows if r["n"] == n and r["f_mean"]]
        if pts:
            qs, fs = zip(*pts, strict=True)
            ax[0].plot(qs, fs, "o-", label=f"n = {n:,}")
    ax[0].axhline(1.0, color="k", lw=0.8, ls=":", label="Shannon limit")
    ax[0].set_xlabel("QBER")
    ax[0].set_ylabel("f = leak / (n h(Q))")
    ax[0].set_title("Blind reconciliation efficiency (QBER given)")
    ax[0].legend()
    rows = results.get("short", [])
    for q in sorted({r["qber"] for r in rows}):
        pts = [(r["n"], r["f_mean"]) for r in rows if r["qber"] == q and r["f_mean"]]
        if pts:
            ns, fs = zip(*pts, strict=True)
            ax[1].semilogx(ns, fs, "o-", label=f"Q = {q:.3f}")
    ax[1].axhline(1.25, color="k", lw=0.8, ls="--", label="goal 1.25")
    ax[1].set_xlabel("key bits")
    ax[1].set_ylabel("f")
    ax[1].set_title("Short keys")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sections", default="throughput,headline,sweep,robustness,short")
    p.add_argument("--quick", action="store_true", help="reduced sizes")
    p.add_argument("--trials", type=int, default=10, help="keys per headline/throughput point")
    p.add_argument("--decode-trials", type=int, default=3)
    p.add_argument("--sweep-trials", type=int, default=8)
    p.add_argument("--frames", type=int, default=100, help="frames per robustness point")
    p.add_argument("--robust-bits", type=int, default=20_000)
    p.add_argument("--modes", default="hint,sample,misjudged,drift", help="robustness modes to run")
    p.add_argument("--qbers", default=",".join(str(q) for q in QBERS), help="robustness QBERs")
    p.add_argument("--name", default="bench_reconcile", help="stem of the JSON/PNG written")
    p.add_argument("--short-trials", type=int, default=20)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    p.add_argument(
        "--speed-only",
        action="store_true",
        help="only the throughput section (2 decodes, 8 keys); writes bench_reconcile_speed.json",
    )
    p.add_argument(
        "--collect",
        metavar="GLOB",
        help="merge the robustness rows of the result files in --out matching GLOB into "
        "<name>.json and <name>.png (runs no benchmark)",
    )
    args = p.parse_args(argv)
    if args.collect:
        return collect(args)
    name_json = f"{args.name}.json"
    if args.speed_only:
        args.sections, args.decode_trials, args.trials = "throughput", 2, 8
        name_json = "bench_reconcile_speed.json"
    if args.quick:
        args.trials, args.decode_trials, args.sweep_trials = 3, 2, 2
        args.frames, args.short_trials = 10, 4
    cfg = ReconcileConfig()
    sections = args.sections.split(",")
    results: dict[str, Any] = {
        "meta": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "config": {
                k: getattr(cfg, k)
                for k in (
                    "block_length",
                    "target_efficiency",
                    "reveal_step",
                    "reveal_growth",
                    "bp_max_iter",
                    "patience",
                    "check_bits",
                    "qber_confidence",
                )
            },
            "note": "times are CPU seconds of one thread (time.process_time)",
        }
    }
    t0 = time.perf_counter()
    for name in sections:
        print(f"== {name}", flush=True)
        fn = {
            "throughput": throughput,
            "headline": headline,
            "sweep": sweep,
            "robustness": robustness,
            "short": short,
        }[name]
        results[name] = fn(args, cfg)
        results["meta"]["wall_s"] = time.perf_counter() - t0
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / name_json).write_text(json.dumps(results, indent=1))
    if "sweep" in results or "short" in results:
        plot(results, args.out / f"{args.name}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
