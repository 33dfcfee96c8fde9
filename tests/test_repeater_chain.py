"""Repeater chains built from the calibrated elementary link of the ustc2025 preset."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qrepeater.errors import ParameterError
from qrepeater.link.heralding import ElementaryLink
from qrepeater.link.storage import StoredLink
from qrepeater.presets import load_preset
from qrepeater.repeater.chain import Chain, ChainResult, RepeaterParameters
from qrepeater.repeater.requirements import meets, requirements


@pytest.fixture(scope="module")
def preset():  # type: ignore[no-untyped-def]
    return load_preset("ustc2025")


def test_one_segment_is_the_elementary_link(preset) -> None:  # type: ignore[no-untyped-def]
    c = Chain.from_preset(preset, total_km=10.0, segments=1)
    r = c.evaluate("exact")
    link = ElementaryLink.from_preset(preset, fiber_km=10.0)
    assert r.rate_hz == pytest.approx(link.rate_hz, rel=1e-12)
    # the stored pair at t = 0, read out with the SPAM error
    assert r.fidelity == pytest.approx(float(StoredLink(link).fidelity(0.0)), abs=1e-12)
    d = r.to_dict()
    assert d["direct_rate_hz"] > 0
    assert d["plob_bits_per_s"] > 0


def test_link_chain_engines_agree_with_memory_channel_and_delays(preset) -> None:  # type: ignore[no-untyped-def]
    c = Chain.from_preset(preset, total_km=40.0, segments=2, cutoff_s=0.5, delays=True)
    plan = c.nested_plan()
    assert plan.delays[0] == math.ceil(20.0 / 2.04e5 / c.dt_s)
    assert_engines_agree(c.evaluate("exact", tol=1e-8), c.evaluate("monte-carlo", n=20000, seed=4))


def assert_engines_agree(ex: ChainResult, mc: ChainResult) -> None:
    """Mean wait and mean fidelity within 4.5 Monte-Carlo standard errors."""
    se_t = float(mc.truncation["mean_wait_stderr_attempts"])  # type: ignore[arg-type]
    assert abs(mc.mean_wait_attempts - ex.mean_wait_attempts) < 4.5 * se_t
    se_f = float(mc.truncation["fidelity_stderr"])  # type: ignore[arg-type]
    assert abs(mc.fidelity - ex.fidelity) < 4.5 * se_f


def test_delays_switch(preset) -> None:  # type: ignore[no-untyped-def]
    on = Chain.from_preset(preset, total_km=200.0, segments=4, delays=True).evaluate("exact")
    off = Chain.from_preset(preset, total_km=200.0, segments=4, delays=False).evaluate("exact")
    assert on.mean_wait_attempts > off.mean_wait_attempts
    assert on.fidelity < off.fidelity


def test_calibrated_memory_channel_differs_from_the_exponential_surrogate(preset) -> None:  # type: ignore[no-untyped-def]
    kw = {"total_km": 20.0, "segments": 2, "delays": False}
    exp = Chain.from_preset(preset, **kw).evaluate("monte-carlo", n=20000, seed=2)  # type: ignore[arg-type]
    cal = Chain.from_preset(preset, memory_model="calibrated", **kw).evaluate(  # type: ignore[arg-type]
        "monte-carlo", n=20000, seed=2
    )
    # same waits (same seed, same process); <XX> identical, <ZZ> lower with the linear law
    assert cal.mean_wait_attempts == exp.mean_wait_attempts
    assert cal.correlators["xx"] == pytest.approx(exp.correlators["xx"], rel=1e-12)
    assert abs(cal.correlators["zz"]) < abs(exp.correlators["zz"])
    with pytest.raises(ParameterError, match="monte-carlo"):
        Chain.from_preset(  # type: ignore[misc]
            preset, memory_model="calibrated", total_km=40.0, segments=4, delays=False
        ).evaluate("exact")


@pytest.mark.parametrize("cutoff_s", [None, 0.5])
def test_exact_engine_follows_the_calibrated_memory_for_one_swap(preset, cutoff_s) -> None:  # type: ignore[no-untyped-def]
    """One swap of elementary pairs: the per-qubit linear <ZZ> law enters the exact engine as
    a join kernel (delays included) and agrees with the Monte-Carlo engine's ion-by-ion
    channel; <XX> (exponential in both models) is unchanged from the surrogate."""
    kw = {"total_km": 20.0, "segments": 2, "cutoff_s": cutoff_s}
    cal = Chain.from_preset(preset, memory_model="calibrated", **kw)  # type: ignore[arg-type]
    ex = cal.evaluate("exact", tol=1e-9)
    assert_engines_agree(ex, cal.evaluate("monte-carlo", n=40_000, seed=21))
    surrogate = Chain.from_preset(preset, **kw).evaluate("exact", tol=1e-9)  # type: ignore[arg-type]
    assert ex.correlators["xx"] == pytest.approx(surrogate.correlators["xx"], rel=1e-9)
    assert abs(ex.correlators["zz"]) < abs(surrogate.correlators["zz"]) - 1e-3


def test_longer_coherence_improves_the_delivered_state(preset) -> None:  # type: ignore[no-untyped-def]
    today = Chain.from_preset(preset, total_km=100.0, segments=4).evaluate("exact", tol=1e-4)
    better = Chain.from_preset(
        preset, total_km=100.0, segments=4, coherence_time_s=55.0, zz_decay_per_s=0.0065
    ).evaluate("exact", tol=1e-4)
    assert better.rate_hz == pytest.approx(today.rate_hz)
    assert better.fidelity > today.fidelity + 0.1


def test_purification_and_multiplexing(preset) -> None:  # type: ignore[no-untyped-def]
    plain = Chain.from_preset(preset, total_km=20.0, segments=2, memories=2)
    pur = Chain.from_preset(preset, total_km=20.0, segments=2, purify="dejmps", cutoff_s=0.3)
    assert pur.segments[0].memories == 2
    r_plain, r_pur = plain.evaluate("exact"), pur.evaluate("exact")
    assert r_pur.mean_wait_attempts > r_plain.mean_wait_attempts  # two pairs, then a success
    assert plain.segments[0].p_eff == pytest.approx(1 - (1 - plain.segments[0].p) ** 2)


def test_references_scale_as_expected(preset) -> None:  # type: ignore[no-untyped-def]
    a = Chain.from_preset(preset, total_km=100.0, segments=2).reference
    b = Chain.from_preset(preset, total_km=200.0, segments=2).reference
    assert a is not None
    assert b is not None
    # direct transmission loses 0.2 dB/km over the whole distance (20 dB more), PLOB ~ eta
    hw = preset.hardware
    periods = hw.attempt_period_s(200.0) / hw.attempt_period_s(100.0)  # T_0 + L/v
    assert a.direct_rate_hz / b.direct_rate_hz == pytest.approx(100.0 * periods, rel=1e-9)
    eta = 10 ** (-0.02 * 1000.0)  # -log2(1 - eta) ~ eta / ln 2, no cancellation at 1e-20
    long = Chain.from_preset(preset, total_km=1000.0, segments=8)
    assert long.reference is not None
    assert long.reference.plob_bits_per_s == pytest.approx(eta / math.log(2) / long.dt_s, rel=1e-9)


def test_repeater_parameters_defaults_and_validation(preset) -> None:  # type: ignore[no-untyped-def]
    rp = RepeaterParameters.from_preset(preset)
    assert 0 < rp.swap_probability <= 1
    assert rp.memories >= 1
    noise = rp.noise(preset.hardware.ion.spam_error)
    assert noise.gate_shrink == pytest.approx(1 - 16 * (1 - rp.swap_gate_fidelity) / 15)
    with pytest.raises(ParameterError):
        RepeaterParameters(swap_gate_fidelity=0.1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"total_km": 100.0, "segments": 0}, "positive integer"),
        ({"total_km": 100.0, "segments": 3}, "power-of-two"),
        ({"total_km": float("nan"), "segments": 2}, "non-negative"),
        ({"total_km": 100.0, "segments": 2, "cutoff_s": -0.1}, "cut-off"),
        ({"total_km": 100.0, "segments": 2, "cutoff_s": float("nan")}, "cut-off"),
        ({"total_km": 100.0, "segments": 2, "purify": "dejmps", "memories": 1}, "two memories"),
    ],
)
def test_bad_preset_chains(preset, kwargs, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ParameterError, match=match):
        Chain.from_preset(preset, **kwargs)


def test_no_pair_in_reasonable_time_is_an_error_not_a_hang(preset) -> None:  # type: ignore[no-untyped-def]
    for protocol in ("nested", "swap-asap"):
        c = Chain.from_preset(
            preset, total_km=4000.0, segments=16, cutoff_s=0.001, protocol=protocol
        )
        for engine in ("exact", "monte-carlo") if protocol == "nested" else ("monte-carlo",):
            with pytest.raises(ParameterError, match="reasonable time"):
                c.evaluate(engine, n=1000)  # type: ignore[arg-type]


def test_requirements_bisection_is_tight(preset) -> None:  # type: ignore[no-untyped-def]
    r = requirements(
        preset,
        total_km=100.0,
        target="f-above-half",
        segments=(2,),
        alphas=(0.1,),
        cutoffs=(2.0,),
        rel_precision=0.01,
    )
    assert r.reachable
    assert r.segments == 2
    assert r.at_requirement is not None
    assert float(r.at_requirement["fidelity"]) > 0.5
    # one swap: the solver follows the calibrated memory channel exactly
    assert r.at_requirement["memory_model"] == "calibrated"
    below = Chain.from_preset(
        preset,
        total_km=100.0,
        segments=2,
        alpha=0.1,
        memory_model="calibrated",
        cutoff_s=r.cutoff_s,
        coherence_time_s=r.coherence_time_s / 1.02,
        zz_decay_per_s=preset.hardware.memory.zz_decay_per_s
        * preset.hardware.memory.coherence_time_s
        / (r.coherence_time_s / 1.02),
    ).evaluate("exact", tol=1e-3)
    assert not meets(below, "f-above-half")
    # today's 550 ms memory does not reach it with this configuration
    assert r.coherence_time_s > preset.hardware.memory.coherence_time_s
    assert r.to_dict()["single_link"] is not None


def test_requirements_reports_unreachable_targets(preset) -> None:  # type: ignore[no-untyped-def]
    r = requirements(
        preset,
        total_km=100.0,
        target="positive-key",
        segments=(2,),
        alphas=(0.05,),
        cutoffs=(None,),
    )
    assert not r.reachable
    d = r.to_dict()
    assert d["coherence_time_s"] is None
    # even a practically perfect memory: the swapped SPEP pairs violate CHSH too little
    assert d["at_requirement"] is not None
    with pytest.raises(ParameterError):
        requirements(preset, total_km=100.0, target="nonsense")


def test_monte_carlo_records_are_reproducible(preset) -> None:  # type: ignore[no-untyped-def]
    c = Chain.from_preset(preset, total_km=100.0, segments=4, protocol="swap-asap", cutoff_s=0.5)
    a = c.monte_carlo(n=500, seed=np.random.SeedSequence(3))
    b = c.monte_carlo(n=500, seed=np.random.SeedSequence(3))
    np.testing.assert_array_equal(a.time, b.time)
    np.testing.assert_array_equal(a.f, b.f)


def test_preset_repeater_table_is_strict_and_round_trips(preset) -> None:  # type: ignore[no-untyped-def]
    from qrepeater.errors import PresetError
    from qrepeater.presets import parse_preset

    q = preset.quantities["repeater.swap_gate_fidelity"]
    assert q.kind == "assumed"
    assert q.unit == "1"
    assert parse_preset(preset.to_toml()).quantities["repeater.memories"].value == 1.0
    bad = preset.to_toml().replace("swap_probability = ", "swap_probabilty = ")
    with pytest.raises(PresetError, match="swap_probability"):
        parse_preset(bad)


def test_chain_of_different_links(preset) -> None:  # type: ignore[no-untyped-def]
    links = [
        ElementaryLink(preset.hardware, alpha=a, fiber_km=10.0) for a in (0.05, 0.17, 0.1, 0.17)
    ]
    c = Chain.from_links(links, cutoff_s=1.0)
    assert c.segments[0].p < c.segments[1].p
    assert c.reference is not None
    assert c.reference.total_km == 40.0
    ex = c.evaluate("exact", tol=1e-8)
    mc = c.evaluate("monte-carlo", n=20000, seed=8)
    se_t = float(mc.truncation["mean_wait_stderr_attempts"])  # type: ignore[arg-type]
    assert abs(mc.mean_wait_attempts - ex.mean_wait_attempts) < 4.5 * se_t
    se_f = float(mc.truncation["fidelity_stderr"])  # type: ignore[arg-type]
    assert abs(mc.fidelity - ex.fidelity) < 4.5 * se_f
    with pytest.raises(ParameterError, match="attempt period"):
        Chain.from_links([links[0], ElementaryLink(preset.hardware, alpha=0.1, fiber_km=20.0)])


@pytest.mark.slow
def test_outlook_rows_and_figure(preset) -> None:  # type: ignore[no-untyped-def]
    from qrepeater.report.chain_outlook import chain_rows, fig_chain_distance
    from qrepeater.report.rows import ReproductionContext

    ctx = ReproductionContext(preset=preset)
    rows = chain_rows(ctx)
    assert [r.group for r in rows] == ["chain"] * 3
    assert all(r.kind == "prediction" for r in rows)
    # 100 km needs a longer-lived memory than today's
    assert rows[1].model > preset.hardware.memory.coherence_time_s
    fig = fig_chain_distance(ctx)
    assert len(fig.axes) == 2


def test_requirements_memory_law_policy(preset) -> None:  # type: ignore[no-untyped-def]
    kw = {"total_km": 100.0, "target": "f-above-half", "alphas": (0.1,), "cutoffs": (2.0,)}
    strict = requirements(preset, segments=(4,), memory_model="calibrated", **kw)  # type: ignore[arg-type]
    assert not strict.reachable
    assert strict.evaluations >= 1
    assert [s["segments"] for s in strict.skipped] == [4]
    assert "N <= 2" in str(strict.skipped[0]["reason"])
    surrogate = requirements(preset, segments=(2,), memory_model="exponential", **kw)  # type: ignore[arg-type]
    assert surrogate.at_requirement is not None
    assert surrogate.at_requirement["memory_model"] == "exponential"
    # the linear <ZZ> law decays faster than its exponential surrogate: it needs more coherence
    calibrated = requirements(preset, segments=(2,), **kw)  # type: ignore[arg-type]
    assert calibrated.coherence_time_s > surrogate.coherence_time_s
    with pytest.raises(ParameterError, match="memory model"):
        requirements(preset, segments=(2,), memory_model="linear", **kw)  # type: ignore[arg-type]
