"""`qrepeater keyrate` and `qrepeater reconcile`: key-rate bounds and raw-key reconciliation."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from qrepeater.cli._common import handle_errors, kv_table, print_json, stdout
from qrepeater.diqkd.records import read_key_bits
from qrepeater.errors import ParameterError, ReconciliationError
from qrepeater.qkdpp.channel import PublicChannel
from qrepeater.qkdpp.reconciliation import reconcile as run_reconcile

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout.")]
TSIRELSON = 2 * np.sqrt(2)


@handle_errors
def keyrate(
    chsh: Annotated[float, typer.Option("--chsh", help="CHSH value S in (2, 2 sqrt 2].")],
    qber: Annotated[float, typer.Option("--qber", help="QBER in [0, 0.5).")],
    rounds: Annotated[int | None, typer.Option("--rounds", help="Total rounds N.")] = None,
    key_rounds: Annotated[int | None, typer.Option("--key-rounds", help="Key rounds n.")] = None,
    test_rounds: Annotated[int | None, typer.Option("--test-rounds", help="Test rounds t.")] = None,
    eps: Annotated[float, typer.Option("--eps", help="Total soundness error.")] = 1e-5,
    ec_efficiency: Annotated[
        float | None, typer.Option("--ec-efficiency", help="Reconciliation efficiency f >= 1.")
    ] = None,
    method: Annotated[
        str, typer.Option("--method", help="phase-error, geat or eat (see docs/keyrate.md).")
    ] = "phase-error",
    p_x0: Annotated[
        float | None, typer.Option("--p-x0", help="P(X = 0); with --p-y2 fixes the settings.")
    ] = None,
    p_y2: Annotated[float | None, typer.Option("--p-y2", help="P(Y = 2).")] = None,
    min_rounds: Annotated[
        bool,
        typer.Option("--minimum-rounds", help="Also find the fewest rounds with a positive key."),
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Asymptotic key rate and, given the round counts, the finite key of a DI-QKD run.

    The result lists the protocol variant the bound is for and the assumptions it rests on."""
    from qrepeater.diqkd.keyrate import METHODS, asymptotic_rate, finite_key, minimum_rounds
    from qrepeater.diqkd.rounds import SettingDistribution

    if not 2.0 < chsh <= TSIRELSON + 1e-12:
        raise ParameterError(f"--chsh must lie in (2, 2*sqrt(2)], got {chsh}")
    if not 0.0 <= qber < 0.5:
        raise ParameterError(f"--qber must lie in [0, 0.5), got {qber}")
    if not 0.0 < eps < 1.0:
        raise ParameterError(f"--eps must lie in (0, 1), got {eps}")
    if method not in METHODS:
        raise ParameterError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    settings = None
    if (p_x0 is None) != (p_y2 is None):
        raise ParameterError("--p-x0 and --p-y2 go together")
    if p_x0 is not None and p_y2 is not None:
        if not (0.0 < p_x0 < 1.0 and 0.0 < p_y2 < 1.0):
            raise ParameterError("--p-x0 and --p-y2 must lie in (0, 1)")
        settings = SettingDistribution.from_fractions(p_x0=p_x0, p_y2=p_y2).probabilities()
    out: dict[str, Any] = {
        "method": method,
        "chsh": chsh,
        "qber": qber,
        "asymptotic_rate": asymptotic_rate(chsh=chsh, qber=qber),
        "finite_key_bits": None,
    }
    counts = (rounds, key_rounds, test_rounds)
    if any(c is not None for c in counts):
        if rounds is None or key_rounds is None or test_rounds is None:
            raise ParameterError("--rounds, --key-rounds and --test-rounds go together")
        if rounds < 1:
            raise ParameterError(f"--rounds must be at least 1, got {rounds}")
        result = finite_key(
            method=method,
            rounds=rounds,
            key_rounds=key_rounds,
            test_rounds=test_rounds,
            chsh=chsh,
            qber=qber,
            eps=eps,
            ec_efficiency=ec_efficiency,
            setting_probabilities=settings,
        )
        out.update(result.to_dict())
        if min_rounds:
            out["minimum_rounds"] = minimum_rounds(
                method=method,
                chsh=chsh,
                qber=qber,
                eps=eps,
                key_fraction=key_rounds / rounds,
                test_fraction=test_rounds / rounds,
                ec_efficiency=ec_efficiency,
                setting_probabilities=settings,
            )
    if json:
        print_json(out)
    else:
        shown = {
            k: v
            for k, v in out.items()
            if k not in ("details", "settings", "inputs", "assumptions")
        }
        for i, assumption in enumerate(out.get("assumptions", []), start=1):
            shown[f"assumption {i}"] = assumption
        if isinstance(shown.get("eps"), dict):
            shown["eps"] = {k: v for k, v in shown["eps"].items() if k != "composition"}
        stdout.print(kv_table("DI-QKD key rate", shown))


@handle_errors
def reconcile(
    alice: Annotated[Path, typer.Option("--alice", help="Alice's sifted key (.bin or .parquet).")],
    bob: Annotated[Path, typer.Option("--bob", help="Bob's sifted key (.bin or .parquet).")],
    qber: Annotated[
        float | None,
        typer.Option("--qber", help="QBER estimate; default: measured on a disclosed 2% sample."),
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the public choices.")] = None,
    json: JsonOpt = False,
) -> None:
    """Reconcile two raw sifted keys with LDPC syndrome decoding and report the efficiency."""
    key_a = read_key_bits(alice)
    key_b = read_key_bits(bob)
    if key_a.size != key_b.size:
        raise ReconciliationError(
            f"key files differ in length: {key_a.size} (alice) vs {key_b.size} (bob) bits"
        )
    if qber is None:
        # a disclosed sample sets the code rate; those bits are reported and not reconciled
        rng = np.random.default_rng(seed)
        k = max(1, min(key_a.size // 50, 10_000))
        idx = rng.choice(key_a.size, size=k, replace=False)
        qber = max(int(np.sum(key_a[idx] != key_b[idx])), 1) / k
        keep = np.ones(key_a.size, dtype=bool)
        keep[idx] = False
        key_a, key_b = key_a[keep], key_b[keep]
        sampled = k
    else:
        sampled = 0
    channel = PublicChannel()
    t0 = time.perf_counter()
    result = run_reconcile(key_a, key_b, qber=qber, channel=channel, seed=seed)
    seconds = time.perf_counter() - t0
    out = {
        "success": result.success,
        "efficiency": result.efficiency,
        "leak_bits": result.leak_bits,
        "frames": result.frames,
        "frames_failed": result.frames_failed,
        "seconds": seconds,
        "key_bits": int(key_a.size),
        "qber_estimate": qber,
        "qber_observed": result.observed_qber if result.success else None,
        "sampled_bits": sampled,
        "revealed_bits": result.revealed_bits,
    }
    if json:
        print_json(out)
    else:
        stdout.print(kv_table("Reconciliation", out))
    if not result.success:
        raise typer.Exit(3)
