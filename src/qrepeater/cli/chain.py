"""`qrepeater chain ...` and `qrepeater chain requirements ...`: repeater chains.

Two modes: abstract segments in attempt units (``--p``, the literature's conventions) and chains
of the calibrated elementary link of a preset (``--total-km``). Heavy modules (numpy, scipy) are
imported inside the commands, so ``qrepeater --help`` stays fast.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import typer

from qrepeater.cli._common import handle_errors, kv_table, print_json, stdout
from qrepeater.errors import ParameterError

app = typer.Typer(
    help="Repeater chains of elementary links: waiting time, delivered state and key rate.",
    invoke_without_command=True,
    no_args_is_help=False,
    pretty_exceptions_enable=False,
    add_completion=False,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout.")]


def _whole(name: str, text: str | None) -> int | None:
    """Parse a positive whole number given as text (so '2.5' is a one-line error, exit 2)."""
    if text is None:
        return None
    try:
        v = float(text)
    except ValueError:
        raise ParameterError(f"{name} must be a positive integer, got {text!r}") from None
    if not math.isfinite(v) or v != int(v) or v < 1:
        raise ParameterError(f"{name} must be a positive integer, got {text!r}")
    return int(v)


def _one_cutoff(text: str, name: str) -> int | None:
    try:
        v = float(text)
    except ValueError:
        raise ParameterError(f"{name} must be a non-negative number, got {text!r}") from None
    if math.isnan(v) or v < 0 or (math.isfinite(v) and v != int(v)):
        raise ParameterError(
            f"{name} must be a non-negative whole number of attempts, got {text!r}"
        )
    return None if math.isinf(v) else int(v)


def _cutoff_attempts(
    text: str | None, name: str = "cut-off"
) -> int | tuple[int | None, ...] | None:
    """One cut-off in attempts, or one per nesting level as a comma-separated list
    ('inf' for none at a level), as in Li et al.'s examples (16,31,55)."""
    if text is None:
        return None
    parts = [t.strip() for t in text.split(",")]
    if len(parts) == 1:
        return _one_cutoff(parts[0], name)
    return tuple(_one_cutoff(t, name) for t in parts)


def _werner_cutoff(text: str | None) -> float | tuple[float | None, ...] | None:
    """A Werner threshold, or one per level ('none' for none at a level)."""
    if text is None:
        return None

    def one(t: str) -> float | None:
        if t.lower() in ("none", "-"):
            return None
        try:
            v = float(t)
        except ValueError:
            raise ParameterError(f"Werner cut-off must be a number, got {t!r}") from None
        if not 0.0 < v <= 1.0:
            raise ParameterError(f"Werner cut-off must lie in (0, 1], got {t!r}")
        return v

    parts = [t.strip() for t in text.split(",")]
    return one(parts[0]) if len(parts) == 1 else tuple(one(t) for t in parts)


@app.callback()
@handle_errors
def chain(
    ctx: typer.Context,
    segments: Annotated[
        str | None, typer.Option("--segments", help="Number of segments N (default 4).")
    ] = None,
    protocol: Annotated[
        str, typer.Option("--protocol", help="nested (doubling) or swap-asap.")
    ] = "nested",
    p: Annotated[
        float | None,
        typer.Option("--p", help="Abstract mode: success probability per attempt."),
    ] = None,
    swap_probability: Annotated[
        float | None,
        typer.Option("--swap-probability", help="Swap success (abstract default 1; preset's)."),
    ] = None,
    werner: Annotated[
        float, typer.Option("--werner", help="Abstract mode: initial Werner parameter.")
    ] = 1.0,
    coherence_attempts: Annotated[
        float | None,
        typer.Option(
            "--coherence-attempts",
            help="Abstract mode: pair coherence time in attempts (exp(-t/T) per pair).",
        ),
    ] = None,
    cutoff_attempts: Annotated[
        str | None,
        typer.Option(
            "--cutoff-attempts",
            help="Abstract mode: memory-time cut-off in attempts, or one per level (16,31,55).",
        ),
    ] = None,
    run_cutoff_attempts: Annotated[
        str | None,
        typer.Option(
            "--run-cutoff-attempts",
            help="Abstract mode: run-time cut-off (Li et al. 2021) in attempts, or per level.",
        ),
    ] = None,
    werner_cutoff: Annotated[
        str | None,
        typer.Option(
            "--werner-cutoff",
            help="Fidelity cut-off (Li et al. 2021): Werner threshold, or one per level.",
        ),
    ] = None,
    preset: Annotated[
        str, typer.Option("--preset", help="Preset name or path to a .toml file.")
    ] = "ustc2025",
    total_km: Annotated[
        float | None, typer.Option("--total-km", help="Preset mode: total fibre length (km).")
    ] = None,
    alpha: Annotated[
        float | None, typer.Option("--alpha", help="Excitation probability (preset default).")
    ] = None,
    cutoff_s: Annotated[
        float | None, typer.Option("--cutoff-s", help="Preset mode: per-memory cut-off (s).")
    ] = None,
    run_cutoff_s: Annotated[
        float | None,
        typer.Option("--run-cutoff-s", help="Preset mode: run-time cut-off of every join (s)."),
    ] = None,
    purify: Annotated[
        str | None, typer.Option("--purify", help="Segment-level purification: dejmps, bbpssw.")
    ] = None,
    memories: Annotated[
        str | None, typer.Option("--memories", help="Memories per side and segment.")
    ] = None,
    engine: Annotated[str, typer.Option("--engine", help="exact or monte-carlo.")] = "exact",
    delays: Annotated[
        bool, typer.Option("--delays/--no-delays", help="Classical communication delays.")
    ] = True,
    memory_model: Annotated[
        str,
        typer.Option("--memory-model", help="exponential (both engines) or calibrated (MC)."),
    ] = "exponential",
    coherence_s: Annotated[
        float | None, typer.Option("--coherence-s", help="Preset mode: replace the memory tau.")
    ] = None,
    zz_decay: Annotated[
        float | None,
        typer.Option("--zz-decay-per-s", help="Preset mode: replace the <ZZ> slope kappa (1/s)."),
    ] = None,
    tol: Annotated[float, typer.Option("--tol", help="Exact engine: neglected mass.")] = 1e-6,
    samples: Annotated[
        str, typer.Option("--samples", help="Monte Carlo: number of deliveries.")
    ] = "100000",
    seed: Annotated[int, typer.Option("--seed", help="Monte Carlo seed.")] = 1,
    json: JsonOpt = False,
) -> None:
    """Waiting time, delivered state and key rate of a repeater chain."""
    if ctx.invoked_subcommand is not None:
        return
    from qrepeater.repeater.chain import Chain

    n = _whole("segments", segments) or 4
    mem = _whole("memories", memories)
    count = _whole("samples", samples) or 1
    if engine not in ("exact", "monte-carlo"):
        raise ParameterError(f"unknown engine {engine!r}; use exact or monte-carlo")
    if seed < 0:
        raise ParameterError(f"seed must be non-negative, got {seed}")
    summary: dict[str, Any]
    if p is not None:
        if total_km is not None:
            raise ParameterError("give either --p (abstract segments) or --total-km (a preset)")
        c = Chain.abstract(
            segments=n,
            p=p,
            werner=werner,
            coherence_attempts=coherence_attempts,
            swap_probability=1.0 if swap_probability is None else swap_probability,
            protocol=protocol,  # type: ignore[arg-type]
            cutoff_attempts=_cutoff_attempts(cutoff_attempts),
            run_cutoff_attempts=_cutoff_attempts(run_cutoff_attempts, "run-time cut-off"),
            werner_cutoff=_werner_cutoff(werner_cutoff),
            purify=purify,
            memories=mem or (2 if purify else 1),
        )
        import dataclasses

        c = dataclasses.replace(c, memory_model=memory_model)  # type: ignore[arg-type]
        res = c.evaluate(engine, tol=tol, n=count, seed=seed)  # type: ignore[arg-type]
        summary = {
            "segments": n,
            "protocol": protocol,
            "cutoffs": {
                "memory_time_attempts": c.cutoff,
                "run_time_attempts": c.run_cutoff,
                "werner": c.werner_cutoff,
            },
            **res.abstract_dict(),
        }
        title = f"Abstract chain, N = {n}, {protocol}"
    else:
        if total_km is None:
            raise ParameterError("give --total-km (preset mode) or --p (abstract segments)")
        if cutoff_attempts is not None or run_cutoff_attempts is not None:
            raise ParameterError(
                "cut-offs in attempts are for abstract chains; use --cutoff-s / --run-cutoff-s"
            )
        w_cut = _werner_cutoff(werner_cutoff)
        if isinstance(w_cut, tuple):
            raise ParameterError("preset mode takes one --werner-cutoff for every level")
        c = Chain.from_preset(
            preset,
            total_km=total_km,
            segments=n,
            alpha=alpha,
            protocol=protocol,  # type: ignore[arg-type]
            cutoff_s=cutoff_s,
            run_cutoff_s=run_cutoff_s,
            werner_cutoff=w_cut,
            purify=purify,
            memories=mem,
            delays=delays,
            memory_model=memory_model,  # type: ignore[arg-type]
            coherence_time_s=coherence_s,
            zz_decay_per_s=zz_decay,
        )
        if swap_probability is not None:
            import dataclasses

            c = dataclasses.replace(c, swap_probability=swap_probability)
        res = c.evaluate(engine, tol=tol, n=count, seed=seed)  # type: ignore[arg-type]
        summary = {
            "preset": preset,
            "total_km": total_km,
            "segments": n,
            "protocol": protocol,
            "alpha": alpha,
            "cutoff_s": cutoff_s,
            "run_cutoff_s": run_cutoff_s,
            "werner_cutoff": w_cut,
            "purify": purify,
            "delays": delays,
            "memory_model": memory_model,
            **res.to_dict(),
        }
        title = f"Chain over {total_km:g} km, N = {n}, {protocol} ({preset})"
    if json:
        print_json(summary)
    else:
        stdout.print(kv_table(title, summary))


@app.command("requirements")
@handle_errors
def requirements_cmd(
    total_km: Annotated[float, typer.Option("--total-km", help="Total fibre length (km).")],
    preset: Annotated[
        str, typer.Option("--preset", help="Preset name or path to a .toml file.")
    ] = "ustc2025",
    target: Annotated[
        str,
        typer.Option("--target", help="f-above-half, positive-key, beat-plob or beat-direct."),
    ] = "f-above-half",
    scale: Annotated[
        str,
        typer.Option(
            "--scale",
            help="memory (tau and the <ZZ> slope improve together) or coherence-only.",
        ),
    ] = "memory",
    segments: Annotated[
        str, typer.Option("--segments", help="Candidate N, comma-separated (nested: powers of 2).")
    ] = "2,4,8,16",
    alphas: Annotated[
        str, typer.Option("--alphas", help="Candidate excitation probabilities, comma-separated.")
    ] = "0.02,0.05,0.1,0.17",
    purify: Annotated[
        str | None,
        typer.Option("--purify", help="Segment-level purification in every candidate: dejmps."),
    ] = None,
    memory_model: Annotated[
        str,
        typer.Option(
            "--memory-model",
            help="auto (calibrated where exact: N <= 2), exponential or calibrated.",
        ),
    ] = "auto",
    json: JsonOpt = False,
) -> None:
    """Smallest memory coherence time (and best N, alpha, cut-off) reaching a target."""
    from qrepeater.repeater.requirements import requirements

    if not math.isfinite(total_km) or total_km <= 0:
        raise ParameterError(f"total length must be a positive number of km, got {total_km}")
    ns = [_whole("segments", t.strip()) for t in segments.split(",") if t.strip()]
    try:
        al = [float(t) for t in alphas.split(",") if t.strip()]
    except ValueError:
        raise ParameterError(f"alphas must be comma-separated numbers, got {alphas!r}") from None
    if not ns or not al:
        raise ParameterError("give at least one segment count and one alpha")
    r = requirements(
        preset,
        total_km=total_km,
        target=target,
        scale=scale,  # type: ignore[arg-type]
        segments=[int(n) for n in ns if n is not None],
        alphas=al,
        purify=purify,
        memory_model=memory_model,  # type: ignore[arg-type]
    )
    if json:
        print_json(r.to_dict())
    else:
        stdout.print(kv_table(f"Requirement over {total_km:g} km: {target}", r.to_dict()))


__all__ = ["app"]
