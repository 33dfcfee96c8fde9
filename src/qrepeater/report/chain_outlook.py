"""The paper's outlook, projected with repeater chains of the calibrated link.

Rows (``prediction``): the first swap of two 10 km links with today's memory (the paper argues
that its 10 km link "enables multi-stage entanglement swapping": the row compares the swapped
pair's mean fidelity with the 1/2 that entanglement needs), and the memory coherence time that
100 km and 1,000 km chains need for a delivered fidelity above 1/2 (solver of
:mod:`qrepeater.repeater.requirements`, a memory improved uniformly in ``tau`` and the ``<ZZ>``
slope), compared with today's 550 ms. Figure: end-to-end rate and fidelity against total
distance for N = 1, 2, 4, 8, with today's memory and with the coherence the solver asks for at
1,000 km (or at 100 km when 1,000 km is out of reach), beside direct transmission and the
PLOB bound; the figure's points come from the Monte-Carlo engine (seeded), the rows from the
exact engine.

Computations are cached on the reproduction context (``ctx.extras``), so rows and figure share
the solver's answers.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from qrepeater.errors import ParameterError
from qrepeater.repeater.chain import Chain, ChainResult
from qrepeater.repeater.requirements import Requirement, requirements
from qrepeater.report.rows import ReproductionContext, Row

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: the solver's grid for the outlook (reduced so that the reproduction stays quick)
OUTLOOK_GRID: dict[int, dict[str, tuple[object, ...]]] = {
    100: {"segments": (2,), "alphas": (0.1,), "cutoffs": (2.0,)},
    1000: {"segments": (8, 16), "alphas": (0.1,), "cutoffs": (2.0,)},
}
#: deliveries per point of the distance figure (Monte-Carlo engine, seeded from the context)
FIGURE_DELIVERIES = 3000


def _requirement(ctx: ReproductionContext, km: int) -> Requirement:
    key = f"chain_requirement_{km}"
    if key not in ctx.extras:
        grid = OUTLOOK_GRID[km]
        ctx.extras[key] = requirements(
            ctx.preset,
            total_km=float(km),
            target="f-above-half",
            segments=grid["segments"],  # type: ignore[arg-type]
            alphas=grid["alphas"],  # type: ignore[arg-type]
            cutoffs=grid["cutoffs"],  # type: ignore[arg-type]
            rel_precision=0.05,
        )
    req = ctx.extras[key]
    assert isinstance(req, Requirement)
    return req


def first_swap(ctx: ReproductionContext) -> ChainResult:
    """Two 10 km segments at the rate operating point, today's memory (its calibrated channel,
    exact for one swap), no cut-off, delays on."""
    key = "chain_first_swap"
    if key not in ctx.extras:
        alpha = ctx.preset.target("herald_rate_hz").condition("alpha")
        chain = Chain.from_preset(
            ctx.preset, total_km=20.0, segments=2, alpha=alpha, memory_model="calibrated"
        )
        ctx.extras[key] = chain.evaluate("exact", tol=1e-6)
    res = ctx.extras[key]
    assert isinstance(res, ChainResult)
    return res


def chain_rows(ctx: ReproductionContext) -> list[Row]:
    """The outlook rows (see the module docstring)."""
    tau0 = ctx.preset.hardware.memory.coherence_time_s
    swap = first_swap(ctx)
    rows = [
        Row(
            "chain: first swap of 2 x 10 km links, today's memory, mean F",
            0.5,
            swap.fidelity,
            "1",
            "prediction",
            "chain",
            note=(
                "paper: the 10 km link enables swapping (needs F > 1/2 after the swap); model "
                f"at alpha 17%, calibrated memory channel, no cut-off, classical delays on, "
                "swap gate fidelity 0.99; "
                f"E[T] = {swap.rate_hz**-1:.2f} s"
            ),
        )
    ]
    for km in (100, 1000):
        req = _requirement(ctx, km)
        model = req.coherence_time_s if req.reachable else math.inf
        note = (
            f"F > 1/2 with N = {req.segments}, alpha = {req.alpha}, cut-off "
            f"{req.cutoff_s:.3g} s; tau and the <ZZ> slope improved together; memory law "
            f"{(req.at_requirement or {}).get('memory_model')}; paper value is today's "
            "coherence time"
            if req.reachable
            else "not reachable on the outlook grid even with a practically perfect memory"
        )
        rows.append(
            Row(
                f"chain: coherence time for F > 1/2 over {km} km",
                tau0,
                model,
                "s",
                "prediction",
                "chain",
                note=note,
            )
        )
    return rows


def fig_chain_distance(ctx: ReproductionContext) -> Figure:
    """Rate and fidelity against total distance for N = 1, 2, 4, 8 (today's memory, solid; the
    coherence the solver asks for at 1,000 km, dashed), with direct transmission and PLOB."""
    from matplotlib.figure import Figure

    req = _requirement(ctx, 1000)
    if not req.reachable:  # fall back on what 100 km needs
        req = _requirement(ctx, 100)
    mem = ctx.preset.hardware.memory
    memories: list[tuple[str, float | None, float | None]] = [("today", None, None)]
    if req.reachable:
        memories.append(("needed", req.coherence_time_s, float(req.zz_decay_per_s or 0.0)))
    km = np.geomspace(10.0, 1000.0, 7)
    alpha = 0.1
    seeds = iter(np.random.SeedSequence(ctx.seed).spawn(len(km) * 8))
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax_r, ax_f = fig.subplots(1, 2)
    colors = {1: "C0", 2: "C1", 4: "C2", 8: "C3"}
    for n, color in colors.items():
        for label, tau, kappa in memories:
            style = "-" if label == "today" else "--"
            rates, fids = [], []
            for length in km:
                try:
                    r = Chain.from_preset(
                        ctx.preset,
                        total_km=float(length),
                        segments=n,
                        alpha=alpha,
                        coherence_time_s=tau,
                        zz_decay_per_s=kappa,
                    ).evaluate("monte-carlo", n=FIGURE_DELIVERIES, seed=next(seeds))
                    rates.append(r.rate_hz)
                    fids.append(r.fidelity)
                except ParameterError:
                    rates.append(math.nan)
                    fids.append(math.nan)
            kw = {"color": color, "linestyle": style}
            ax_r.plot(km, rates, label=f"N = {n}" if label == "today" else None, **kw)
            ax_f.plot(km, fids, **kw)
    direct, plob = [], []
    for length in km:
        ref = Chain.from_preset(ctx.preset, total_km=float(length), segments=1, alpha=alpha)
        assert ref.reference is not None
        direct.append(ref.reference.direct_rate_hz)
        plob.append(ref.reference.plob_bits_per_s)
    ax_r.plot(km, direct, color="k", linestyle=":", label="direct transmission (pairs/s)")
    ax_r.plot(km, plob, color="0.5", linestyle="-.", label="PLOB (bits/s)")
    ax_r.set(xscale="log", yscale="log", xlabel="total fibre (km)", ylabel="rate (1/s)")
    ax_r.set_title(f"end-to-end rate, alpha = {alpha}")
    ax_r.legend(fontsize=7)
    ax_f.axhline(0.5, color="k", linewidth=0.8)
    ax_f.set(xscale="log", xlabel="total fibre (km)", ylabel="mean delivered fidelity")
    tau_note = (
        f"dashed: tau = {req.coherence_time_s:.3g} s" if req.reachable else "no requirement found"
    )
    ax_f.set_title(
        f"solid: tau = {mem.coherence_time_s:g} s (today); {tau_note} ({req.total_km:g} km need)",
        fontsize=8,
    )
    fig.suptitle(
        f"Repeater chains of the calibrated link (Monte Carlo, {FIGURE_DELIVERIES} pairs a point)",
        fontsize=9,
    )
    return fig


__all__ = ["FIGURE_DELIVERIES", "OUTLOOK_GRID", "chain_rows", "fig_chain_distance", "first_swap"]
