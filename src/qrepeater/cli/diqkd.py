"""`qrepeater diqkd simulate | estimate | distill`: DI-QKD records, estimates and keys."""

from __future__ import annotations

import json as json_module
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from qrepeater.cli._common import (
    fail,
    handle_errors,
    jsonable,
    kv_table,
    print_json,
    stderr,
    stdout,
)
from qrepeater.errors import ParameterError

# heavy modules (numpy, pyarrow, scipy, ldpc) are imported inside the commands: `--help` stays fast
DEFAULT_PRESET = "ustc2025"

app = typer.Typer(
    help="DI-QKD rounds: simulate per-party records, estimate CHSH and QBER.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout.")]


@app.command("simulate")
@handle_errors
def simulate(
    out: Annotated[Path, typer.Option("--out", help="Folder for alice.parquet and bob.parquet.")],
    preset: Annotated[
        str, typer.Option("--preset", help="Preset name or path to a .toml file.")
    ] = DEFAULT_PRESET,
    fiber_km: Annotated[
        float | None, typer.Option("--fiber-km", help="Node-to-node fibre (km); preset default.")
    ] = None,
    rounds: Annotated[int, typer.Option("--rounds", help="Number of heralded rounds.")] = 405_145,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the run (non-negative).")] = 1,
    alpha: Annotated[
        float | None,
        typer.Option("--alpha", help="Excitation probability; default: the preset's DI-QKD one."),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Simulate a DI-QKD run and write each party's round record (Parquet)."""
    from qrepeater.diqkd.estimate import estimate_bell
    from qrepeater.diqkd.records import write_run
    from qrepeater.diqkd.rounds import simulate_from_preset
    from qrepeater.presets import load_preset

    if rounds < 1:
        raise ParameterError(f"--rounds must be a positive integer, got {rounds}")
    if seed < 0:
        raise ParameterError(f"--seed must be a non-negative integer, got {seed}")
    _check_memory(rounds)
    p = load_preset(preset)
    run = simulate_from_preset(p, n_rounds=rounds, seed=seed, fiber_km=fiber_km, alpha=alpha)
    est = estimate_bell(run.alice, run.bob)
    alice_path, bob_path = write_run(out, run)
    m = run.metadata
    summary: dict[str, Any] = {
        "run_id": m.run_id,
        "preset": m.preset,
        "seed": m.seed,
        "fiber_km": m.fiber_km,
        "alpha": m.alpha,
        "duration_s": run.duration_s,
        "rounds_per_s": len(run) / run.duration_s if run.duration_s > 0 else None,
        "alice": str(alice_path),
        "bob": str(bob_path),
        **est.to_dict(),
    }
    if json:
        print_json(summary)
    else:
        stdout.print(kv_table(f"DI-QKD run {m.run_id}", _short(summary)))
        stderr.print(f"wrote {alice_path} and {bob_path}", markup=False, highlight=False)


@app.command("estimate")
@handle_errors
def estimate(
    alice: Annotated[Path, typer.Option("--alice", help="Alice's record (alice.parquet).")],
    bob: Annotated[Path, typer.Option("--bob", help="Bob's record (bob.parquet).")],
    json: JsonOpt = False,
) -> None:
    """Validate both records, check their alignment and estimate CHSH S and QBER."""
    from qrepeater.diqkd.estimate import estimate_bell
    from qrepeater.diqkd.records import read_run

    run = read_run(alice, bob)
    result = {"run_id": run.metadata.run_id, **estimate_bell(run.alice, run.bob).to_dict()}
    if json:
        print_json(result)
    else:
        stdout.print(kv_table(f"DI-QKD estimate, run {run.metadata.run_id}", _short(result)))


#: peak bytes per simulated round (both parties' columns, herald samples and temporaries)
_BYTES_PER_ROUND = 256


def _check_memory(rounds: int) -> None:
    """Refuse a run that cannot fit in this machine's memory (instead of a MemoryError)."""
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):  # pragma: no cover - not POSIX
        return
    need = rounds * _BYTES_PER_ROUND
    if need > memory:
        raise ParameterError(
            f"--rounds {rounds:,} needs about {need / 2**30:,.0f} GiB of memory, this machine has "
            f"{memory / 2**30:,.0f} GiB"
        )


def _short(d: dict[str, Any]) -> dict[str, Any]:
    """Drop the per-cell breakdowns from the human table."""
    return {k: v for k, v in d.items() if k not in ("correlator_std", "counts")}


@app.command("distill")
@handle_errors
def distill_cmd(
    alice: Annotated[Path, typer.Option("--alice", help="Alice's record (alice.parquet).")],
    bob: Annotated[Path, typer.Option("--bob", help="Bob's record (bob.parquet).")],
    out: Annotated[
        Path, typer.Option("--out", help="New (or empty) folder for the key set of this run.")
    ],
    method: Annotated[
        str,
        typer.Option("--method", help="Finite-key bound: phase-error, geat, renyi-geat or eat."),
    ] = "phase-error",
    eps: Annotated[float, typer.Option("--eps", help="Total soundness error.")] = 1e-5,
    key_format: Annotated[
        str, typer.Option("--format", help="Key file format: bin or parquet.")
    ] = "bin",
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            help="Seed the public random choices (tests only; real keys use `secrets`).",
        ),
    ] = None,
    preset: Annotated[
        str,
        typer.Option(
            "--preset",
            help="Protocol configuration (preset name or .toml) fixing the setting distribution.",
        ),
    ] = DEFAULT_PRESET,
    force: Annotated[
        bool, typer.Option("--force", help="Replace the key set already in OUT.")
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Distil identical secret keys from both parties' records.

    The setting distribution is the one agreed before the run (the preset's operating point);
    records declaring another one, or whose settings do not follow it, abort.

    OUT must be new or empty (or pass --force): it appears in one step holding alice.key.bin
    and bob.key.bin (mode 0600), report.json and manifest.json (run id, SHA-256 of each file),
    or, for an aborted run (exit status 3), report.json alone.
    """
    from qrepeater.diqkd.keyrate import METHODS
    from qrepeater.diqkd.pipeline import DistillConfig, distill
    from qrepeater.diqkd.records import read_run
    from qrepeater.diqkd.rounds import SettingDistribution
    from qrepeater.presets import load_preset
    from qrepeater.qkdpp.keyfiles import check_output_folder, recover_key_set, write_key_set

    if method not in METHODS:
        raise ParameterError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if key_format not in ("bin", "parquet"):
        raise ParameterError(f"--format must be bin or parquet, got {key_format!r}")
    if seed is not None and seed < 0:
        raise ParameterError(f"--seed must be a non-negative integer, got {seed}")
    recover_key_set(out)  # staging folders of a killed earlier run
    check_output_folder(out, force=force)  # refuse before the work, not after
    agreed = SettingDistribution.from_preset(load_preset(preset))
    cfg = DistillConfig(method=method, eps=eps, settings=agreed)
    run = read_run(alice, bob)
    from rich.progress import Progress, TextColumn

    with Progress(
        TextColumn("{task.description}"), console=stderr, transient=True, disable=json
    ) as bar:
        task = bar.add_task("distilling", total=None)
        result = distill(
            run.alice,
            run.bob,
            alice_meta=run.metadata,
            bob_meta=run.metadata,
            config=cfg,
            seed=seed,
            progress=lambda stage: bar.update(task, description=f"distilling: {stage}"),
        )
    report = {"run_id": run.metadata.run_id, **result.report.to_dict()}
    report_bytes = (json_module.dumps(jsonable(report), indent=2) + "\n").encode()
    a_key, b_key = (None, None) if result.report.aborted else result.require_keys()
    write_key_set(
        out,
        report=report_bytes,
        run_id=run.metadata.run_id,
        alice_key=a_key,
        bob_key=b_key,
        suffix=f".{key_format}",
        force=force,
    )
    if json:
        print_json(report)
    else:
        stdout.print(kv_table("DI-QKD distillation", _distill_summary(report)))
    if result.report.aborted:
        raise fail(f"aborted ({result.report.abort_reason}): {result.report.abort_message}", 3)


def _distill_summary(r: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "aborted",
        "abort_reason",
        "abort_message",
        "method",
        "rounds",
        "key_rounds",
        "test_rounds",
        "chsh",
        "chsh_std",
        "qber",
        "leak_bits",
        "ec_efficiency",
        "secret_bits",
        "auth_key_bits",
    )
    out = {k: r[k] for k in keys if r.get(k) is not None}
    out["eps_total"] = r["eps"].get("total")
    return out


@app.command("optimise")
@handle_errors
def optimise_cmd(
    preset: Annotated[
        str, typer.Option("--preset", help="Preset name or path to a .toml file.")
    ] = DEFAULT_PRESET,
    fiber_km: Annotated[float, typer.Option("--fiber-km", help="Node-to-node fibre (km).")] = 10.0,
    hours: Annotated[
        float | None, typer.Option("--hours", help="Budget of running time (h).")
    ] = None,
    heralds: Annotated[
        int | None, typer.Option("--heralds", help="Budget of heralded pairs.")
    ] = None,
    method: Annotated[
        str, typer.Option("--method", help="phase-error, geat or eat.")
    ] = "phase-error",
    eps: Annotated[float, typer.Option("--eps", help="Total soundness error.")] = 1e-5,
    ec_efficiency: Annotated[
        float, typer.Option("--ec-efficiency", help="Reconciliation efficiency f.")
    ] = 1.122,
    json: JsonOpt = False,
) -> None:
    """Choose alpha and the setting probabilities that maximise the finite key.

    Also reports what the paper's protocol certifies under each method of the protocol as run."""
    from qrepeater.diqkd.keyrate import METHODS
    from qrepeater.diqkd.optimize import evaluate_protocol, optimise_protocol
    from qrepeater.presets import load_preset

    if method not in METHODS:
        raise ParameterError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if hours is None and heralds is None:
        hours = 386.1
    p = load_preset(preset)
    op = p.operating
    kwargs: dict[str, Any] = {
        "hours": hours,
        "heralds": heralds,
        "eps": eps,
        "ec_efficiency": ec_efficiency,
        "method": method,
    }
    paper = evaluate_protocol(
        p,
        fiber_km=fiber_km,
        alpha=op.alpha_diqkd,
        p_x0=op.diqkd_prob_x0,
        p_y2=op.diqkd_prob_y2,
        **kwargs,
    )
    best = optimise_protocol(p, fiber_km=fiber_km, **kwargs)
    as_run = {
        m: evaluate_protocol(
            p,
            fiber_km=fiber_km,
            alpha=op.alpha_diqkd,
            p_x0=op.diqkd_prob_x0,
            p_y2=op.diqkd_prob_y2,
            **{**kwargs, "method": m},
        ).finite_key_bits
        for m in ("phase-error", "geat")  # eat bounds a different (spot-checking) protocol
    }
    out = {
        "paper_protocol": paper.to_dict(),
        "optimised": best.to_dict(),
        "paper_protocol_key_by_method": as_run,
    }
    if json:
        print_json(out)
    else:
        stdout.print(kv_table(f"Protocol optimisation ({method}, {fiber_km:g} km)", out))
