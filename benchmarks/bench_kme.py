"""Benchmark of ETSI GS QKD 014 key delivery: sustained enc_keys + dec_keys through two KMEs.

Two ``qrepeater kme serve`` processes on 127.0.0.1 (leader A, follower B; mutual TLS with
trustme certificates; stores filled with identical keys). ``S`` SAE pairs run concurrently, half
of them with the master on A and the slave on B, half the other way round; each pair loops
``enc_keys(number=N, size=256)`` at the master's KME then ``dec_keys`` of the same ids at the
slave's KME (aiohttp client, one connection pool per SAE), for ``--seconds`` seconds.
Reported per concurrency: completed pairs/s and keys/s, enc_keys and dec_keys latency p50/p99.

Baseline, in the same process: the same key life cycle done directly on two SQLite key stores
(``reserve`` + ``deliver`` on the master's store, ``reserve_ids`` + ``deliver`` on the slave's:
the durable writes every delivered key needs at minimum, without HTTP, TLS, the ledger or the
KME link). ``ratio_vs_store`` = KME keys/s / baseline keys/s.

Usage: ``python benchmarks/bench_kme.py [--seconds 10] [--sae 1 16] [--number 1]
[--out benchmarks/results]``; prints a table and writes ``bench_kme.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from kme_support import (  # noqa: E402
    KMEProcess,
    PairFiles,
    fill_store,
    make_certs,
    start_process_pair,
    write_auth_key,
)
from qrepeater.qkdpp.keystore import KeyStore  # noqa: E402
from qrepeater.service.client import AsyncClient  # noqa: E402


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def make_files(root: Path, *, keys: int, n_sae: int) -> PairFiles:
    """Certificates (KMEs, SAEs bench-m{i}/bench-s{i}), two identical stores, a link key."""
    certs = make_certs(root / "certs")
    for i in range(n_sae):
        certs.issue(f"bench-m{i}")
        certs.issue(f"bench-s{i}")
    store_a, store_b = root / "alice-keys.db", root / "bob-keys.db"
    blocks = max(1, keys // 256)
    ids = fill_store(store_a, blocks=blocks, keys_per_block=256)
    fill_store(store_b, blocks=blocks, keys_per_block=256)
    return PairFiles(certs, store_a, store_b, write_auth_key(root / "link.auth", 8 << 20), ids)


async def run_load(
    files: PairFiles, urls: dict[str, str], *, n_sae: int, number: int, seconds: float
) -> dict[str, Any]:
    enc_lat: list[float] = []
    dec_lat: list[float] = []
    pairs = 0
    errors = 0
    stop = time.perf_counter() + seconds

    async def sae_pair(i: int) -> None:
        nonlocal pairs, errors
        m_kme, s_kme = ("a", "b") if i % 2 == 0 else ("b", "a")
        master, slave = f"bench-m{i}", f"bench-s{i}"
        async with (
            AsyncClient(urls[m_kme], **files.certs.client_kwargs(master), connections=1) as mc,
            AsyncClient(urls[s_kme], **files.certs.client_kwargs(slave), connections=1) as sc,
        ):
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                try:
                    keys = await mc.enc_keys(slave, number=number, size=256)
                    t1 = time.perf_counter()
                    got = await sc.dec_keys(master, [k.key_id for k in keys])
                    t2 = time.perf_counter()
                except Exception:
                    errors += 1
                    await asyncio.sleep(0.05)
                    continue
                if [g.key for g in got] != [k.key for k in keys]:
                    raise AssertionError("slave key differs from master key")
                enc_lat.append(t1 - t0)
                dec_lat.append(t2 - t1)
                pairs += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(sae_pair(i) for i in range(n_sae)))
    wall = time.perf_counter() - t0
    return {
        "concurrent_sae_pairs": n_sae,
        "keys_per_request": number,
        "seconds": wall,
        "pairs": pairs,
        "errors": errors,
        "pairs_per_s": pairs / wall,
        "keys_per_s": pairs * number / wall,
        "enc_p50_ms": 1e3 * pct(enc_lat, 50),
        "enc_p99_ms": 1e3 * pct(enc_lat, 99),
        "dec_p50_ms": 1e3 * pct(dec_lat, 50),
        "dec_p99_ms": 1e3 * pct(dec_lat, 99),
    }


def store_baseline(root: Path, *, number: int, seconds: float) -> dict[str, Any]:
    """The same life cycle directly on two stores, sequentially (durable writes only)."""
    a, b = root / "base-a.db", root / "base-b.db"
    fill_store(a, blocks=40, keys_per_block=256)
    fill_store(b, blocks=40, keys_per_block=256)
    lat: list[float] = []
    with KeyStore(a) as sa, KeyStore(b) as sb:
        stop = time.perf_counter() + seconds
        i = 0
        t0 = time.perf_counter()
        while time.perf_counter() < stop:
            t = time.perf_counter()
            rid = f"r{i}"
            recs = sa.reserve(number, master_sae="m", slave_sae="s", request_id=rid)
            ids = [r.key_id for r in recs]
            sb.reserve_ids(ids, master_sae="m", slave_sae="s", request_id=rid)
            sa.deliver(ids, sae="m")
            sb.deliver(ids, sae="s")
            lat.append(time.perf_counter() - t)
            i += 1
        wall = time.perf_counter() - t0
    return {
        "pairs_per_s": i / wall,
        "keys_per_s": i * number / wall,
        "p50_ms": 1e3 * pct(lat, 50),
        "p99_ms": 1e3 * pct(lat, 99),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--sae", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--number", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = store_baseline(root, number=args.number, seconds=min(args.seconds, 5.0))
        files = make_files(root, keys=20_000, n_sae=max(args.sae))
        a, b = start_process_pair(files)
        procs: dict[str, KMEProcess] = {"a": a, "b": b}
        try:
            urls = {k: p.url for k, p in procs.items()}
            time.sleep(1.0)  # link up
            rows = []
            for n in args.sae:
                row = asyncio.run(
                    run_load(files, urls, n_sae=n, number=args.number, seconds=args.seconds)
                )
                row["ratio_vs_store"] = row["keys_per_s"] / base["keys_per_s"]
                rows.append(row)
        finally:
            a.stop()
            b.stop()

    print(
        f"store baseline (no HTTP/TLS/link): {base['keys_per_s']:.0f} keys/s, "
        f"p50 {base['p50_ms']:.2f} ms, p99 {base['p99_ms']:.2f} ms per key pair"
    )
    print(
        f"{'SAE pairs':>9} {'keys/s':>8} {'vs store':>8} {'enc p50':>8} {'enc p99':>8} "
        f"{'dec p50':>8} {'dec p99':>8} {'errors':>6}"
    )
    for r in rows:
        print(
            f"{r['concurrent_sae_pairs']:>9} {r['keys_per_s']:>8.0f} {r['ratio_vs_store']:>8.2f} "
            f"{r['enc_p50_ms']:>7.1f}ms {r['enc_p99_ms']:>7.1f}ms "
            f"{r['dec_p50_ms']:>7.1f}ms {r['dec_p99_ms']:>7.1f}ms {r['errors']:>6}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "kme",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": __import__("os").cpu_count(),
        "key_bits": 256,
        "store_baseline": base,
        "rows": rows,
        "median_enc_p50_ms": statistics.median(r["enc_p50_ms"] for r in rows),
    }
    (args.out / "bench_kme.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
