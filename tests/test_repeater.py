"""Repeater-chain engines on abstract segments: state algebra, closed forms, literature anchors,
and agreement of the exact (Brand-Coopmans-Elkouss) and Monte-Carlo engines."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qrepeater.errors import ParameterError
from qrepeater.quantum import bell_density, entanglement_swap, two_qubit_correlators
from qrepeater.repeater.chain import Chain
from qrepeater.repeater.exact import NestedPlan, solve
from qrepeater.repeater.montecarlo import AsapPlan, sample_nested, sample_swap_asap
from qrepeater.repeater.purification import error_probabilities, frame_from_errors, purify
from qrepeater.repeater.segments import (
    Segment,
    SwapNoise,
    bb84_secret_fraction,
    frame_vector,
    swap,
)

BELLS = ("psi+", "psi-", "phi+", "phi-")


def _bell_diagonal(weights: np.ndarray) -> np.ndarray:
    return sum(w * bell_density(n) for w, n in zip(weights, BELLS, strict=True))  # type: ignore[return-value]


def _frame(rho: np.ndarray) -> np.ndarray:
    c = two_qubit_correlators(rho)
    return frame_vector(c["xx"], c["yy"], c["zz"])


def _e_max_two_geometric(p: float) -> float:
    # E[max(T1, T2)], T_i ~ Geom(p) on {1, 2, ...}: 2/p - 1/(1 - (1-p)^2)
    return 2.0 / p - 1.0 / (1.0 - (1.0 - p) ** 2)


def _e_decay_two_geometric(p: float, t_coh: float) -> float:
    # E[exp(-|T1 - T2| / T)]: P(|D| = 0) = p/(2-p), P(|D| = d) = 2 p (1-p)^d / (2-p), d >= 1
    q, x = 1.0 - p, math.exp(-1.0 / t_coh)
    return p / (2.0 - p) * (1.0 + 2.0 * q * x / (1.0 - q * x))


def _plan(n: int, **kw: object) -> NestedPlan:
    seg = Segment.abstract(p=float(kw.pop("p", 0.1)), werner=0.98, coherence_attempts=400.0)  # type: ignore[arg-type]
    levels = n.bit_length() - 1
    cut = kw.pop("cutoffs", (None,) * levels)
    return NestedPlan(
        segments=(seg,) * n,
        swap_probability=float(kw.pop("a", 1.0)),  # type: ignore[arg-type]
        noise=kw.pop("noise", SwapNoise()),  # type: ignore[arg-type]
        cutoffs=cut,  # type: ignore[arg-type]
        delays=kw.pop("delays", (0,) * levels),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


# ---- state algebra ------------------------------------------------------------------------
def test_swap_multiplies_frame_correlators_like_a_bell_measurement() -> None:
    rng = np.random.default_rng(7)
    for _ in range(5):
        a, b = rng.dirichlet(np.ones(4)), rng.dirichlet(np.ones(4))
        rho1, rho2 = _bell_diagonal(a), _bell_diagonal(b)
        out = entanglement_swap(rho1, rho2).average_state
        np.testing.assert_allclose(swap(_frame(rho1), _frame(rho2)), _frame(out), atol=1e-12)


def test_swap_noise_factors() -> None:
    n = SwapNoise(gate_shrink=0.9, measurement_error=0.1)
    np.testing.assert_allclose(n.factors, 0.9 * np.array([0.8, 0.64, 0.8]))
    with pytest.raises(ParameterError):
        SwapNoise(measurement_error=0.5)


def test_bell_coefficients_round_trip() -> None:
    f = np.array([0.7, -0.2, 0.4])
    p = error_probabilities(f)
    assert p.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(frame_from_errors(p), f)
    # p_I is the fidelity with psi+
    assert p[0] == pytest.approx((1 + f.sum()) / 4)


def test_dejmps_matches_deutsch_et_al_formula() -> None:
    # Deutsch et al., PRL 77, 2818 (1996): A' = (A^2+B^2)/N, B' = 2CD/N, C' = (C^2+D^2)/N,
    # D' = 2AB/N, N = (A+B)^2 + (C+D)^2; A target, B its Y-error partner, C = X, D = Z errors.
    f = np.array([0.8, 0.6, 0.7])
    pi, px, py, pz = error_probabilities(f)
    a, b, c, d = pi, py, px, pz
    n_ref = (a + b) ** 2 + (c + d) ** 2
    n, out = purify(f, f, "dejmps")
    got = error_probabilities(out)
    assert n == pytest.approx(n_ref)
    assert got[0] == pytest.approx((a * a + b * b) / n_ref)
    assert got[2] == pytest.approx(2 * c * d / n_ref)
    assert got[1] == pytest.approx((c * c + d * d) / n_ref)
    assert got[3] == pytest.approx(2 * a * b / n_ref)


def test_bbpssw_matches_bennett_et_al_formula() -> None:
    # Bennett et al., PRL 76, 722 (1996): F' = (F^2 + e^2) / (F^2 + 2Fe + 5e^2), e = (1-F)/3
    w = 0.7
    fid = (1 + 3 * w) / 4
    e = (1 - fid) / 3
    n, out = purify(np.full(3, w), np.full(3, w), "bbpssw")
    assert n == pytest.approx(fid**2 + 2 * fid * e + 5 * e * e)
    assert (1 + out.sum()) / 4 == pytest.approx((fid**2 + e * e) / float(n))
    assert np.ptp(out) == pytest.approx(0.0, abs=1e-15)  # twirled back to Werner form
    with pytest.raises(ParameterError):
        purify(np.full(3, w), np.full(3, w), "bogus")


def test_bb84_fraction_for_werner_pairs() -> None:
    w = 0.9
    q = (1 - w) / 2
    h = -(q * math.log2(q) + (1 - q) * math.log2(1 - q))
    assert bb84_secret_fraction(np.full(3, w)) == pytest.approx(1 - 2 * h)
    assert bb84_secret_fraction(np.full(3, 0.7)) == 0.0


# ---- closed forms -------------------------------------------------------------------------
def test_single_segment_is_geometric() -> None:
    r = Chain.abstract(segments=1, p=0.05, werner=0.9).evaluate("exact")
    assert r.mean_wait_attempts == pytest.approx(20.0)
    assert r.werner == pytest.approx(0.9)
    assert r.wait_quantiles_attempts[0.5] == math.ceil(math.log(0.5) / math.log(0.95))


@pytest.mark.parametrize("a", [1.0, 0.5])
def test_two_segments_closed_form(a: float) -> None:
    p, t_coh = 0.1, 400.0
    d = solve(_plan(2, a=a), tol=1e-12)
    assert d.mean_wait == pytest.approx(_e_max_two_geometric(p) / a, rel=1e-9)
    # Werner decay of the stored pair: w0^2 E[exp(-|T1 - T2|/T_coh)] (the swap that succeeds
    # uses an independent copy of the join, so the probabilistic swap does not change it)
    np.testing.assert_allclose(d.mean_state, 0.98**2 * _e_decay_two_geometric(p, t_coh))


def test_delays_add_to_the_waiting_time_and_decay() -> None:
    base = solve(_plan(4), tol=1e-12)
    slow = solve(_plan(4, delays=(3, 5)), tol=1e-12)
    assert slow.mean_wait == pytest.approx(base.mean_wait + 8.0, rel=1e-9)
    assert slow.mean_state[0] < base.mean_state[0]


def test_multiplexing_raises_the_success_probability() -> None:
    r = Chain.abstract(segments=1, p=0.1, werner=1.0, memories=4).evaluate("exact")
    assert r.mean_wait_attempts == pytest.approx(1.0 / (1.0 - 0.9**4))


def test_no_underflow_at_long_truncations() -> None:
    # coherence of 2 attempts over a truncation of ~1e5: decay factors underflow to exact zeros
    seg = Segment.abstract(p=2e-4, werner=0.99, coherence_attempts=2.0)
    plan = NestedPlan(
        segments=(seg,) * 4,
        swap_probability=1.0,
        noise=SwapNoise(),
        cutoffs=(None, None),
        delays=(0, 0),
    )
    d = solve(plan, tol=1e-6)
    assert d.truncation >= 1 << 15
    assert np.all(np.isfinite(d.pmf))
    assert np.all(np.isfinite(d.weighted))
    assert 0.0 <= d.mean_state[0] < 0.01


# ---- literature anchors -------------------------------------------------------------------
def test_li_et_al_example_chain_has_no_key_without_cutoff() -> None:
    """Li, Coopmans, Emonts, Goodenough, Elkouss & Wehner, IEEE TQE 2, 1 (2021), worked example
    (3-level nested swap, p_gen = 0.1, p_swap = 0.5, w0 = 0.98, t_coh = 400 attempts, their
    cut-offs (16, 31, 55)); their code's example states that without cut-off these parameters
    give zero secret-key rate (log2 BB84 fraction of the mean Werner parameter over E[T])."""
    none = Chain.abstract(
        segments=8, p=0.1, werner=0.98, coherence_attempts=400, swap_probability=0.5
    ).evaluate("exact")
    assert none.bb84_secret_fraction == 0.0
    cut = Chain.abstract(
        segments=8,
        p=0.1,
        werner=0.98,
        coherence_attempts=400,
        swap_probability=0.5,
        cutoff_attempts=(16, 31, 55),
    ).evaluate("exact")
    # the cut-off trades waiting time for a fresher delivered pair
    assert cut.werner > none.werner + 0.1
    assert cut.mean_wait_attempts > none.mean_wait_attempts


# ---- engines agree ------------------------------------------------------------------------
CASES = [
    {"n": 2, "cutoffs": (5,)},
    {"n": 4, "a": 0.7, "cutoffs": (3, 7), "noise": SwapNoise(0.99, 0.01), "delays": (2, 4)},
    {"n": 8, "a": 0.5, "cutoffs": (16, 31, 55), "p": 0.1},
    {"n": 2, "purify": "dejmps", "purify_cutoff": 20, "purify_delay": 1, "p": 0.2},
    {"n": 2, "purify": "bbpssw", "p": 0.2},
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"N{c['n']}")
def test_exact_and_monte_carlo_agree(case: dict[str, object]) -> None:
    kw = dict(case)
    n = int(kw.pop("n"))  # type: ignore[call-overload]
    plan = _plan(n, **kw)
    d = solve(plan, tol=1e-9)
    size = 6000 if n == 8 else 20000
    mc = sample_nested(plan, n=size, seed=11)
    se_t = mc.time.std(ddof=1) / math.sqrt(size)
    assert abs(mc.time.mean() - d.mean_wait) < 4.5 * se_t
    for c in range(3):
        se = mc.f[c].std(ddof=1) / math.sqrt(size)
        assert abs(mc.f[c].mean() - d.mean_state[c]) < 4.5 * se + 1e-12
    # distributions: the median and the 90% quantile within Monte-Carlo error
    for q in (0.5, 0.9):
        exact_q = d.quantiles([q])[0]
        frac = np.mean(mc.time <= exact_q)
        assert abs(frac - q) < 4.5 * math.sqrt(q * (1 - q) / size) + d.pmf[int(exact_q)]


@pytest.mark.parametrize(("cut", "a"), [(5, 1.0), (3, 0.6), (None, 0.5)])
def test_swap_asap_two_segments_equals_nested(cut: int | None, a: float) -> None:
    seg = Segment.abstract(p=0.1, werner=0.98, coherence_attempts=400.0)
    d = solve(_plan(2, a=a, cutoffs=(cut,)), tol=1e-10)
    asap = AsapPlan(
        segments=(seg, seg),
        swap_probability=a,
        noise=SwapNoise(),
        cutoff=cut,
        node_delays=(0, 0, 0),
    )
    mc = sample_swap_asap(asap, n=20000, seed=5)
    se = mc.time.std(ddof=1) / math.sqrt(len(mc))
    assert abs(mc.time.mean() - d.mean_wait) < 4.5 * se
    se_f = mc.f[0].std(ddof=1) / math.sqrt(len(mc))
    assert abs(mc.f[0].mean() - d.mean_state[0]) < 4.5 * se_f + 1e-12


def test_swap_asap_without_cutoff_waits_for_the_slowest_segment() -> None:
    p, n = 0.1, 4
    seg = Segment.abstract(p=p, werner=1.0)
    plan = AsapPlan(
        segments=(seg,) * n,
        swap_probability=1.0,
        noise=SwapNoise(),
        cutoff=None,
        node_delays=(0,) * (n + 1),
    )
    mc = sample_swap_asap(plan, n=20000, seed=3)
    e_max = sum(1 - (1 - (1 - p) ** k) ** n for k in range(4000))  # E[max of n geometrics]
    assert abs(mc.time.mean() - e_max) < 4.5 * mc.time.std(ddof=1) / math.sqrt(len(mc))
    np.testing.assert_allclose(mc.f, 1.0)


def test_calibrated_linear_zz_decay_of_one_stored_pair() -> None:
    # per-qubit z shrink sqrt(1 - k t) on both qubits of the waiting pair: <ZZ> x (1 - k d)
    k = 0.02
    seg = Segment(
        p=0.1,
        f0=np.ones(3),
        decay=np.array([0.0, 0.0, k]),
        ion_xy=lambda t: np.ones_like(t),
        ion_z=lambda t: np.sqrt(np.clip(1.0 - k * t, 0.0, None)),
    )
    plan = NestedPlan(
        segments=(seg, seg), swap_probability=1.0, noise=SwapNoise(), cutoffs=(None,), delays=(0,)
    )
    mc = sample_nested(plan, n=40000, seed=9, memory_model="calibrated")
    d = np.arange(0, 2000)
    p, q = 0.1, 0.9
    prob = np.where(d == 0, p / (2 - p), 2 * p * q**d / (2 - p))
    expected = float(prob @ np.clip(1 - k * d, 0, None))
    se = mc.f[2].std(ddof=1) / math.sqrt(len(mc))
    assert abs(mc.f[2].mean() - expected) < 4.5 * se
    # the exponential surrogate of the exact engine differs: it keeps more <ZZ>
    assert solve(plan, tol=1e-10).mean_state[2] > expected + 10 * se


# ---- bad input ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"segments": 0, "p": 0.1}, "positive integer"),
        ({"segments": 2.5, "p": 0.1}, "positive integer"),
        ({"segments": 3, "p": 0.1}, "power-of-two"),
        ({"segments": 2, "p": 0.1, "cutoff_attempts": -1}, "cut-off"),
        ({"segments": 2, "p": 0.1, "purify": "dejmps"}, "two memories"),
        ({"segments": 2, "p": 1e-14}, "no heralds in any reasonable time"),
        ({"segments": 2, "p": 0.1, "swap_probability": 0.0}, "swap probability"),
        ({"segments": 2, "p": 0.1, "protocol": "ring"}, "protocol"),
    ],
)
def test_bad_input(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        Chain.abstract(**kwargs)  # type: ignore[arg-type]


def test_exact_engine_refuses_what_it_does_not_cover() -> None:
    c = Chain.abstract(segments=3, p=0.1, protocol="swap-asap")
    with pytest.raises(ParameterError, match="monte-carlo"):
        c.evaluate("exact")
    assert c.evaluate("monte-carlo", n=2000, seed=1).mean_wait_attempts > 10


def test_exact_engine_stops_when_no_pair_arrives_in_reasonable_time() -> None:
    c = Chain.abstract(segments=16, p=1e-10, swap_probability=0.01)
    with pytest.raises(ParameterError, match="reasonable time"):
        c.evaluate("exact")
    # a long but finite wait: beyond the exact engine's truncation, not beyond reason
    c = Chain.abstract(segments=16, p=1e-6, swap_probability=0.1)
    with pytest.raises(ParameterError, match="use the monte-carlo engine"):
        c.evaluate("exact")
