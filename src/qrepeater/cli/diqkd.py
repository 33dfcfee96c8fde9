"""`qrepeater diqkd simulate | estimate`: DI-QKD round records and Bell-test estimates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from qrepeater.cli._common import handle_errors, kv_table, print_json, stderr, stdout
from qrepeater.diqkd.estimate import estimate_bell
from qrepeater.diqkd.records import read_run, write_run
from qrepeater.diqkd.rounds import simulate_from_preset
from qrepeater.errors import ParameterError
from qrepeater.presets import DEFAULT_PRESET, load_preset

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
    if rounds < 1:
        raise ParameterError(f"--rounds must be a positive integer, got {rounds}")
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
        stderr.print(f"wrote {alice_path} and {bob_path}")


@app.command("estimate")
@handle_errors
def estimate(
    alice: Annotated[Path, typer.Option("--alice", help="Alice's record (alice.parquet).")],
    bob: Annotated[Path, typer.Option("--bob", help="Bob's record (bob.parquet).")],
    json: JsonOpt = False,
) -> None:
    """Validate both records, check their alignment and estimate CHSH S and QBER."""
    run = read_run(alice, bob)
    result = {"run_id": run.metadata.run_id, **estimate_bell(run.alice, run.bob).to_dict()}
    if json:
        print_json(result)
    else:
        stdout.print(kv_table(f"DI-QKD estimate, run {run.metadata.run_id}", _short(result)))


def _short(d: dict[str, Any]) -> dict[str, Any]:
    """Drop the per-cell breakdowns from the human table."""
    return {k: v for k, v in d.items() if k not in ("correlator_std", "counts")}
