"""`qrepeater keyrate` and `qrepeater reconcile`: key-rate bounds and raw-key reconciliation."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer

from qrepeater.cli._common import handle_errors, kv_table, print_json, stdout
from qrepeater.errors import ParameterError
from qrepeater.quantum.bell import TSIRELSON

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout.")]


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
        str,
        typer.Option("--method", help="phase-error, geat, renyi-geat or eat (docs/keyrate.md)."),
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
    alice: Annotated[Path, typer.Option("--alice", help="Alice's sifted key file.")],
    bob: Annotated[Path, typer.Option("--bob", help="Bob's sifted key file.")],
    qber: Annotated[
        float | None,
        typer.Option("--qber", help="QBER hint; default: measured on a disclosed 2% sample."),
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the public choices.")] = None,
    key_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="Key file format: auto (detect), qrkey, parquet, npy, text (0/1) or packed "
            "(raw bits, 8 per byte, MSB first, no header).",
        ),
    ] = "auto",
    bits: Annotated[
        int | None, typer.Option("--bits", help="Bit count of --format packed files.")
    ] = None,
    threads: Annotated[int, typer.Option("--threads", help="Decoding threads.")] = 1,
    json: JsonOpt = False,
) -> None:
    """Reconcile two raw sifted keys with LDPC syndrome decoding and report the efficiency.

    Exit 3 when a frame cannot be reconciled, or when everything disclosed (sample, syndromes,
    reveals) reaches the key length: the keys may then agree but no secret is left.
    """
    _reconcile_command(
        alice,
        bob,
        qber=qber,
        seed=seed,
        key_format=key_format,
        bits=bits,
        threads=threads,
        as_json=json,
    )


def _reconcile_command(
    alice: Path,
    bob: Path,
    *,
    qber: float | None,
    seed: int | None,
    key_format: str,
    bits: int | None,
    threads: int,
    as_json: bool,
) -> None:
    import time

    import numpy as np

    from qrepeater.cli._common import fail
    from qrepeater.errors import ReconciliationError
    from qrepeater.qkdpp.channel import PublicChannel
    from qrepeater.qkdpp.entropy import binary_entropy
    from qrepeater.qkdpp.keyformats import read_key
    from qrepeater.qkdpp.reconciliation import ReconcileConfig, sample_qber
    from qrepeater.qkdpp.reconciliation import reconcile as run_reconcile

    if seed is not None and seed < 0:
        raise ParameterError(f"--seed must be >= 0, got {seed}")
    if qber is not None and not 0.0 < qber < 0.5:
        raise ParameterError(f"--qber must lie in (0, 0.5), got {qber}")
    if not 1 <= threads <= 256:
        raise ParameterError(f"--threads must be in [1, 256], got {threads}")
    ka = read_key(alice, format=key_format, bits=bits)
    kb = read_key(bob, format=key_format, bits=bits)
    key_a, key_b = ka.bits, kb.bits
    if key_a.size != key_b.size:
        raise ReconciliationError(
            f"key files differ in length: {key_a.size} (alice) vs {key_b.size} (bob) bits"
        )
    if key_a.size < 2:
        raise ReconciliationError(f"the key files hold {key_a.size} bits: nothing to reconcile")
    input_bits = int(key_a.size)
    sampled = 0
    if qber is None:
        # a disclosed sample sets the code rate; those bits are reported and not reconciled
        sample = sample_qber(key_a, key_b, rng=np.random.default_rng(seed))
        qber = sample.estimate
        sampled = sample.bits
        key_a, key_b = key_a[sample.keep], key_b[sample.keep]
    out: dict[str, Any] = {
        "format": {"alice": ka.format, "bob": kb.format},
        "input_bits": input_bits,
        "sampled_bits": sampled,
        "key_bits": int(key_a.size),
        "qber_estimate": qber,
    }
    if qber >= 0.5:
        out.update(success=False, secret_capacity_left=False, leak_bits=0)
        _emit(out, as_json)
        raise fail(f"the sampled QBER {qber:.3f} leaves no secret key", 3)
    config = ReconcileConfig(workers=threads)
    channel = PublicChannel()
    t0 = time.perf_counter()
    result = run_reconcile(
        key_a,
        key_b,
        qber=qber,
        channel=channel,
        seed=seed,
        config=config,
        qber_sample_bits=sampled or None,
    )
    seconds = time.perf_counter() - t0
    disclosed = result.leak_bits + sampled
    capacity = result.success and disclosed < input_bits
    h_true = binary_entropy(result.observed_qber) if result.success else 0.0
    out.update(
        success=result.success,
        secret_capacity_left=capacity,
        efficiency=_finite(result.efficiency) if result.success else None,
        efficiency_with_sample=(disclosed / (key_a.size * h_true)) if h_true > 0 else None,
        efficiency_estimate=_finite(result.efficiency_estimate),
        qber_upper=result.qber_upper,
        qber_observed=result.observed_qber if result.success else None,
        leak_bits=result.leak_bits,
        disclosed_bits=disclosed,
        revealed_bits=result.revealed_bits,
        check_bits=result.check_bits,
        frames=result.frames,
        frames_failed=result.frames_failed,
        rounds=result.rounds,
        iterations=result.iterations,
        block_length=result.block_length,
        rate=result.rate,
        decoder=result.decoder,
        seconds=seconds,
        decode_seconds=result.decode_seconds,
        key_mbit_per_s=(key_a.size / seconds / 1e6) if seconds > 0 else None,
    )
    _emit(out, as_json)
    if not result.success:
        raise fail(
            f"{result.frames_failed} of {result.frames} frames could not be reconciled before "
            f"the disclosed bits reached their length ({result.leak_bits} bits leaked)",
            3,
        )
    if not capacity:
        raise fail(
            f"the keys agree but {disclosed} disclosed bits (sample {sampled}, reconciliation "
            f"{result.leak_bits}) reach the {input_bits}-bit key: no secret is left",
            3,
        )


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _emit(out: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(out)
    else:
        stdout.print(kv_table("Reconciliation", out))
