"""Benchmark of the DI-QKD cryptographic post-processing primitives (single core).

* privacy amplification: FFT Toeplitz hashing of ``--n-in`` -> ``--n-out`` bits, against an
  unchunked single-FFT convolution at the same size and the dense matrix product at a smaller
  size (``--dense-n-in``), in the same process; with the exactness diagnostics (a-priori FFT
  error bound, largest observed distance to an integer);
* error verification: polynomial hash over GF(2^64) of a ``--verify-bits`` key (fresh key,
  so the table set-up is included), against plain Horner in Python;
* authentication: Wegman-Carter ``send`` + ``receive`` through :class:`AuthenticatedChannel`,
  for short messages (messages/s) and for a long payload (Mbit/s).

Usage: ``python benchmarks/bench_crypto.py [--repeat 7] [--out benchmarks/results]``; prints a
table and writes ``bench_crypto.json`` to the output directory.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.fft  # noqa: E402

from qrepeater.qkdpp.amplify import (  # noqa: E402
    _toeplitz_fft,
    random_bits,
    toeplitz_hash,
    toeplitz_hash_dense,
)
from qrepeater.qkdpp.auth import PolyHash64, _horner_py, _mul_rows  # noqa: E402
from qrepeater.qkdpp.channel import AuthenticatedChannel, pack_bits  # noqa: E402


def timeit(fn: Callable[[], object], repeat: int) -> dict[str, float]:
    """Run ``fn`` once to warm up, then ``repeat`` times; seconds (median, min)."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times)}


def single_fft_toeplitz(key: np.ndarray, seed: np.ndarray, n_out: int) -> np.ndarray:
    """Simpler baseline: one full linear convolution with a power-of-two real FFT."""
    n = key.size
    size = 1 << (n + seed.size - 1).bit_length()
    conv = scipy.fft.irfft(
        scipy.fft.rfft(key.astype(np.float64), size, workers=1)
        * scipy.fft.rfft(seed.astype(np.float64), size, workers=1),
        size,
        workers=1,
    )
    bits: np.ndarray = (np.rint(conv[n - 1 : n - 1 + n_out]).astype(np.int64) & 1).astype(np.uint8)
    return bits


def bench_pa(args: argparse.Namespace, rng: np.random.Generator) -> dict[str, Any]:
    n, m = args.n_in, args.n_out
    key, seed = random_bits(n, rng=rng), random_bits(n + m - 1, rng=rng)
    fft = timeit(lambda: toeplitz_hash(key, seed, n_out=m), args.repeat)
    single = timeit(lambda: single_fft_toeplitz(key, seed, m), max(3, args.repeat // 2))
    out, bound, residual = _toeplitz_fft(key, seed, m)
    assert np.array_equal(out, single_fft_toeplitz(key, seed, m))
    seed_gen = timeit(lambda: random_bits(n + m - 1), args.repeat)  # secrets

    dn = args.dense_n_in
    dm = max(1, dn * m // n)
    dkey, dseed = random_bits(dn, rng=rng), random_bits(dn + dm - 1, rng=rng)
    dense = timeit(lambda: toeplitz_hash_dense(dkey, dseed, n_out=dm), max(3, args.repeat // 2))
    small_fft = timeit(lambda: toeplitz_hash(dkey, dseed, n_out=dm), args.repeat)
    assert np.array_equal(
        toeplitz_hash(dkey, dseed, n_out=dm), toeplitz_hash_dense(dkey, dseed, n_out=dm)
    )
    return {
        "n_in": n,
        "n_out": m,
        "fft": fft,
        "single_fft_baseline": single,
        "speedup_vs_single_fft": single["median_s"] / fft["median_s"],
        "seed_generation_secrets": seed_gen,
        "fft_error_bound": bound,
        "max_rounding_residual": residual,
        "dense_n_in": dn,
        "dense_n_out": dm,
        "dense_baseline": dense,
        "fft_at_dense_size": small_fft,
        "speedup_vs_dense_same_size": dense["median_s"] / small_fft["median_s"],
        "dense_extrapolated_full_size_s": dense["median_s"] * (n * m) / (dn * dm),
    }


def bench_verify(args: argparse.Namespace, rng: np.random.Generator) -> dict[str, Any]:
    n = args.verify_bits
    packed, _ = pack_bits(random_bits(n, rng=rng))
    keys = iter(int(k) for k in rng.integers(0, 2**64, size=10_000, dtype=np.uint64))
    lanes = timeit(lambda: PolyHash64(next(keys)).digest(packed, n_bits=n), args.repeat)
    words = [*np.frombuffer(packed + bytes(-len(packed) % 8), dtype=">u8").tolist(), n]
    rows = _mul_rows(next(keys))
    horner = timeit(lambda: _horner_py(rows, words), max(3, args.repeat // 2))
    return {
        "n_bits": n,
        "poly_hash": lanes,
        "throughput_mbit_s": n / lanes["median_s"] / 1e6,
        "python_horner_baseline": horner,
        "speedup_vs_python_horner": horner["median_s"] / lanes["median_s"],
    }


def bench_mac(args: argparse.Namespace, rng: np.random.Generator) -> dict[str, Any]:
    n_msgs = args.mac_messages
    short = rng.bytes(32)
    long_payload = rng.bytes(args.mac_long_bytes)

    def run_short() -> None:
        ch = AuthenticatedChannel.with_shared_key(64 * (2 * n_msgs + 8), rng=rng)
        for _ in range(n_msgs):
            ch.send("alice", "bench", short)
            ch.receive("bob", "bench")

    def run_long() -> None:
        ch = AuthenticatedChannel.with_shared_key(1024, rng=rng)
        ch.send("alice", "bench", long_payload)
        ch.receive("bob", "bench")

    s = timeit(run_short, args.repeat)
    lg = timeit(run_long, args.repeat)
    return {
        "short_payload_bytes": 32,
        "short_messages": n_msgs,
        "short": s,
        "short_messages_per_s": n_msgs / s["median_s"],
        "long_payload_bytes": args.mac_long_bytes,
        "long": lg,
        "long_throughput_mbit_s": 8 * args.mac_long_bytes / lg["median_s"] / 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-in", type=int, default=1_000_000)
    ap.add_argument("--n-out", type=int, default=100_000)
    ap.add_argument("--dense-n-in", type=int, default=16_384)
    ap.add_argument("--verify-bits", type=int, default=1_000_000)
    ap.add_argument("--mac-messages", type=int, default=200)
    ap.add_argument("--mac-long-bytes", type=int, default=125_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    pa = bench_pa(args, rng)
    ver = bench_verify(args, rng)
    mac = bench_mac(args, rng)
    ms = 1e3
    rows = [
        (
            f"PA Toeplitz FFT {pa['n_in']:.0e} -> {pa['n_out']:.0e}",
            f"{pa['fft']['median_s'] * ms:.1f} ms",
            f"min {pa['fft']['min_s'] * ms:.1f} ms",
        ),
        (
            "  single unchunked FFT (same size)",
            f"{pa['single_fft_baseline']['median_s'] * ms:.1f} ms",
            f"x{pa['speedup_vs_single_fft']:.2f} for chunked",
        ),
        (
            f"  dense product {pa['dense_n_in']} -> {pa['dense_n_out']}",
            f"{pa['dense_baseline']['median_s'] * ms:.1f} ms",
            f"FFT same size {pa['fft_at_dense_size']['median_s'] * ms:.2f} ms, "
            f"x{pa['speedup_vs_dense_same_size']:.0f}",
        ),
        (
            "  dense extrapolated to full size",
            f"{pa['dense_extrapolated_full_size_s']:.1f} s",
            f"x{pa['dense_extrapolated_full_size_s'] / pa['fft']['median_s']:.0f} slower",
        ),
        (
            "  exactness: a-priori bound / observed",
            f"{pa['fft_error_bound']:.1e}",
            f"{pa['max_rounding_residual']:.1e} (rounding needs < 0.5)",
        ),
        (
            "  seed generation (secrets)",
            f"{pa['seed_generation_secrets']['median_s'] * ms:.1f} ms",
            "",
        ),
        (
            f"verification hash GF(2^64), {ver['n_bits']:.0e} bits",
            f"{ver['poly_hash']['median_s'] * ms:.2f} ms",
            f"{ver['throughput_mbit_s']:.0f} Mbit/s, x{ver['speedup_vs_python_horner']:.0f} "
            "vs Python Horner",
        ),
        (
            f"MAC send+receive, {mac['short_payload_bytes']} B",
            f"{mac['short']['median_s'] / mac['short_messages'] * 1e6:.1f} us/msg",
            f"{mac['short_messages_per_s']:.0f} msg/s (incl. channel set-up)",
        ),
        (
            f"MAC send+receive, {mac['long_payload_bytes']} B",
            f"{mac['long']['median_s'] * ms:.2f} ms",
            f"{mac['long_throughput_mbit_s']:.0f} Mbit/s",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>12}  {note}")

    result = {
        "benchmark": "bench_crypto",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "threads": 1,
            "cpu_count": os.cpu_count(),
            "load_average_1min_at_end": os.getloadavg()[0],
        },
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "privacy_amplification": pa,
        "verification_hash": ver,
        "mac": mac,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "bench_crypto.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
