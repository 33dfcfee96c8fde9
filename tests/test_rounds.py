"""DI-QKD round simulation: settings distribution, sampler statistics, seeds and streams,
herald-dependent directions, external settings."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from qrepeater.diqkd.estimate import estimate_bell
from qrepeater.diqkd.rounds import (
    DIQKDRun,
    PartyRounds,
    RunMetadata,
    SettingDistribution,
    herald_directions,
    outcome_table,
    sample_outcomes,
    simulate_from_preset,
    simulate_rounds,
    validate_settings,
)
from qrepeater.errors import ParameterError
from qrepeater.link.heralding import ElementaryLink
from qrepeater.presets import Preset
from qrepeater.quantum.bell import chsh_value, key_qber, optimal_settings

N = 200_000
P_MIN = 1e-4  # chi-square tests: fail only for gross deviations at these fixed seeds


@pytest.fixture(scope="module")
def link(preset: Preset) -> ElementaryLink:
    return ElementaryLink.from_preset(preset, alpha=preset.operating.alpha_diqkd, fiber_km=10.0)


@pytest.fixture(scope="module")
def run(link: ElementaryLink, preset: Preset) -> DIQKDRun:
    return simulate_rounds(link, n_rounds=N, seed=7, preset=preset)


# ---- settings distribution ---------------------------------------------------------------------
def test_distribution_from_preset_reproduces_the_fit(preset: Preset) -> None:
    d = SettingDistribution.from_preset(preset)
    assert d.p_y0 == d.p_y1 == pytest.approx((1 - d.p_y2) / 2)
    s, sigma, n = 2.5758, 0.0059, 405_145
    assert d.p_y2 == pytest.approx(1 - (16 - s**2) / sigma**2 / n, rel=1e-6)
    assert d.p_x0 == pytest.approx(105_976 / n / d.p_y2, rel=1e-6)
    assert d.key_fraction * n == pytest.approx(105_976)
    assert d.key_fraction + d.test_fraction + d.discard_fraction == pytest.approx(1.0)
    # an equal split would give the paper's error bar; this distribution does not
    assert d.chsh_std(chsh=s, rounds=n) > 1.15 * sigma
    equal = SettingDistribution.from_fractions(p_x0=0.5, p_y2=d.p_y2)
    assert equal.chsh_std(chsh=s, rounds=n) == pytest.approx(sigma, rel=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"p_x0": -0.1, "p_y0": 0.5, "p_y1": 0.5, "p_y2": 0.0},
        {"p_x0": 1.1, "p_y0": 0.5, "p_y1": 0.5, "p_y2": 0.0},
        {"p_x0": 0.5, "p_y0": 0.5, "p_y1": 0.5, "p_y2": 0.5},
        {"p_x0": float("nan"), "p_y0": 0.5, "p_y1": 0.5, "p_y2": 0.0},
        {"p_x0": 0.5, "p_y0": 1.2, "p_y1": -0.2, "p_y2": 0.0},
        {"p_x0": "a", "p_y0": 0.5, "p_y1": 0.5, "p_y2": 0.0},
    ],
)
def test_distribution_rejects_bad_probabilities(kwargs: dict[str, float]) -> None:
    with pytest.raises(ParameterError):
        SettingDistribution(**kwargs)


def test_distribution_dict_round_trip() -> None:
    d = SettingDistribution.from_fractions(p_x0=0.3, p_y2=0.4)
    assert SettingDistribution.from_dict(d.to_dict()) == d
    with pytest.raises(ParameterError):
        SettingDistribution.from_dict({"p_x0": 0.5})


def test_setting_frequencies_match_distribution(run: DIQKDRun, preset: Preset) -> None:
    d = SettingDistribution.from_preset(preset)
    x_counts = np.bincount(run.alice.setting, minlength=2)
    y_counts = np.bincount(run.bob.setting, minlength=3)
    assert x_counts.size == 2
    assert y_counts.size == 3
    assert stats.chisquare(x_counts, N * np.array(d.alice)).pvalue > P_MIN
    assert stats.chisquare(y_counts, N * np.array(d.bob)).pvalue > P_MIN
    table = np.zeros((2, 3))
    np.add.at(table, (run.alice.setting, run.bob.setting), 1)
    assert stats.chi2_contingency(table).pvalue > P_MIN  # X independent of Y


def test_herald_signs_are_balanced(run: DIQKDRun) -> None:
    plus = int(np.sum(run.alice.herald == 1))
    assert set(np.unique(run.alice.herald)) == {-1, 1}
    assert stats.binomtest(plus, N, 0.5).pvalue > P_MIN


# ---- outcomes --------------------------------------------------------------------------------
def test_chsh_and_qber_within_four_sigma(run: DIQKDRun, link: ElementaryLink) -> None:
    est = estimate_bell(run.alice, run.bob)
    assert abs(est.chsh - link.chsh()) < 4 * est.chsh_std
    assert abs(est.qber - link.qber()) < 4 * est.qber_std
    assert est.chsh > 2.4


def test_chsh_and_qber_at_100_km(preset: Preset) -> None:
    link = ElementaryLink.from_preset(preset, alpha=preset.operating.alpha_diqkd, fiber_km=100.0)
    run = simulate_rounds(link, n_rounds=N, seed=11, preset=preset)
    est = estimate_bell(run.alice, run.bob)
    assert abs(est.chsh - link.chsh()) < 4 * est.chsh_std
    assert abs(est.qber - link.qber()) < 4 * est.qber_std
    assert run.metadata.fiber_km == 100.0


def test_joint_outcome_frequencies_per_cell(run: DIQKDRun, link: ElementaryLink) -> None:
    table = outcome_table(link, run.metadata.directions)
    assert np.allclose(table.sum(axis=-1), 1.0)
    h = (run.alice.herald < 0).astype(int)
    k = 2 * run.alice.outcome.astype(int) + run.bob.outcome
    for hh in range(2):
        for x in range(2):
            for y in range(3):
                sel = (h == hh) & (run.alice.setting == x) & (run.bob.setting == y)
                counts = np.bincount(k[sel], minlength=4)
                expected = sel.sum() * table[hh, x, y]
                assert stats.chisquare(counts, expected).pvalue > P_MIN, (hh, x, y)


def test_bob_uses_the_settings_of_the_heralded_state(link: ElementaryLink) -> None:
    plus, minus = herald_directions(link)
    assert plus == optimal_settings(link.measured_state(1))
    assert minus == optimal_settings(link.measured_state(-1))
    assert plus.bob[0][0] == pytest.approx(-minus.bob[0][0])  # X component flips with the sign
    assert plus.bob[2] == minus.bob[2]


@pytest.mark.parametrize("detector", [1, -1])
def test_each_herald_sign_violates_chsh(run: DIQKDRun, link: ElementaryLink, detector: int) -> None:
    sel = run.alice.herald == detector
    est = estimate_bell(_subset(run.alice, sel), _subset(run.bob, sel))
    rho = link.measured_state(detector)  # type: ignore[arg-type]
    assert abs(est.chsh - chsh_value(rho)) < 4 * est.chsh_std
    assert abs(est.qber - key_qber(rho)) < 4 * est.qber_std


def test_direction_override_applies_to_both_signs(link: ElementaryLink) -> None:
    fixed = optimal_settings(link.measured_state(1))
    run = simulate_rounds(link, n_rounds=N, seed=3, directions=fixed)
    assert run.metadata.directions == (fixed, fixed)
    sel = run.alice.herald == -1
    est = estimate_bell(_subset(run.alice, sel), _subset(run.bob, sel))
    expected = chsh_value(link.measured_state(-1), fixed)  # psi- measured with psi+ settings
    assert expected < 0.5
    assert abs(est.chsh - expected) < 4 * est.chsh_std
    per_sign = simulate_rounds(link, n_rounds=10, seed=3, directions={1: fixed, -1: fixed})
    assert per_sign.metadata.directions == (fixed, fixed)
    with pytest.raises(ParameterError):
        simulate_rounds(link, n_rounds=10, seed=3, directions={1: fixed})


def test_sample_outcomes_deterministic_table() -> None:
    table = np.zeros((2, 2, 3, 4))
    table[..., 2] = 1.0  # always a = 1, b = 0
    table[1, 1, 2] = [0, 0, 0, 1]  # herald -1, x = 1, y = 2: a = b = 1
    herald = np.array([1, -1, -1], dtype=np.int8)
    x = np.array([0, 1, 1], dtype=np.uint8)
    y = np.array([0, 2, 1], dtype=np.uint8)
    a, b = sample_outcomes(
        table, herald=herald, alice_setting=x, bob_setting=y, rng=np.random.default_rng(0)
    )
    assert a.tolist() == [1, 1, 1]
    assert b.tolist() == [0, 1, 0]
    assert a.dtype == b.dtype == np.uint8


# ---- seeds, streams, external settings ---------------------------------------------------------
def test_same_seed_same_run_and_run_id(link: ElementaryLink) -> None:
    r1 = simulate_rounds(link, n_rounds=1000, seed=5)
    r2 = simulate_rounds(link, n_rounds=1000, seed=5)
    r3 = simulate_rounds(link, n_rounds=1000, seed=6)
    for name in ("time_s", "herald", "setting", "outcome"):
        assert np.array_equal(getattr(r1.alice, name), getattr(r2.alice, name))
        assert np.array_equal(getattr(r1.bob, name), getattr(r2.bob, name))
    assert r1.metadata.run_id == r2.metadata.run_id != r3.metadata.run_id
    assert not np.array_equal(r1.alice.setting, r3.alice.setting)
    assert r1.metadata.seed == 5


def test_parties_streams_are_independent(link: ElementaryLink) -> None:
    base = simulate_rounds(link, n_rounds=5000, seed=9)
    ext = np.zeros(5000, dtype=np.int64)
    swapped = simulate_rounds(link, n_rounds=5000, seed=9, alice_settings=ext)
    assert np.array_equal(swapped.bob.setting, base.bob.setting)
    assert np.array_equal(swapped.alice.time_s, base.alice.time_s)
    assert np.array_equal(swapped.alice.herald, base.alice.herald)
    assert np.all(swapped.alice.setting == 0)
    assert swapped.metadata.alice_source == "external"
    assert swapped.metadata.bob_source == "simulated"


def test_external_settings_for_both_parties(link: ElementaryLink) -> None:
    x = [0, 1, 0, 1, 0]
    y = np.array([0, 1, 2, 2, 1.0])
    run = simulate_rounds(link, n_rounds=None, seed=1, alice_settings=x, bob_settings=y)
    assert len(run) == 5
    assert run.alice.setting.tolist() == x
    assert run.bob.setting.tolist() == [0, 1, 2, 2, 1]
    assert run.metadata.distribution is None
    assert run.alice.round.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("values", "party"),
    [
        ([0, 1, 2], "alice"),
        ([0, 3], "bob"),
        ([0, -1], "bob"),
        ([0.5, 1.0], "alice"),
        ([[0, 1]], "alice"),
        (["0", "1"], "alice"),
        ([0.0, float("nan")], "bob"),
    ],
)
def test_external_settings_are_validated(values: object, party: str) -> None:
    with pytest.raises(ParameterError):
        validate_settings(values, party=party)  # type: ignore[arg-type]


def test_external_settings_length_and_seed_checks(link: ElementaryLink) -> None:
    with pytest.raises(ParameterError):
        simulate_rounds(link, n_rounds=4, seed=1, alice_settings=[0, 1, 0])
    with pytest.raises(ParameterError):
        simulate_rounds(link, n_rounds=None, seed=1, alice_settings=[0, 1], bob_settings=[0])
    with pytest.raises(ParameterError):
        simulate_rounds(link, n_rounds=None, seed=1)
    with pytest.raises(ParameterError):
        simulate_rounds(link, n_rounds=-1, seed=1)
    with pytest.raises(ParameterError):
        simulate_rounds(link, n_rounds=10, seed=-3)
    with pytest.raises(ParameterError):
        simulate_rounds(link, n_rounds=10, seed="x")  # type: ignore[arg-type]


def test_seed_forms(link: ElementaryLink) -> None:
    a = simulate_rounds(link, n_rounds=100, seed=np.random.SeedSequence(12))
    b = simulate_rounds(link, n_rounds=100, seed=12)
    assert np.array_equal(a.bob.outcome, b.bob.outcome)
    g = simulate_rounds(link, n_rounds=100, seed=np.random.default_rng(12))
    assert g.metadata.seed is None
    fresh = simulate_rounds(link, n_rounds=100, seed=None)
    assert isinstance(fresh.metadata.seed, int)
    again = simulate_rounds(link, n_rounds=100, seed=fresh.metadata.seed)
    assert np.array_equal(again.alice.outcome, fresh.alice.outcome)


def test_empty_run(link: ElementaryLink) -> None:
    run = simulate_rounds(link, n_rounds=0, seed=1)
    assert len(run) == 0
    assert run.duration_s == 0.0


def test_metadata_round_trip_and_provenance(run: DIQKDRun, preset: Preset) -> None:
    m = run.metadata
    assert m.preset == preset.label
    assert m.preset_digest == preset.digest
    assert m.rounds == N
    d = m.to_dict("bob")
    party, back = RunMetadata.from_dict(d)
    assert party == "bob"
    assert back == m
    with pytest.raises(ParameterError):
        RunMetadata.from_dict({**d, "format": "other/9"})
    with pytest.raises(ParameterError):
        RunMetadata.from_dict({k: v for k, v in d.items() if k != "run_id"})


def test_party_rounds_checks_dtypes() -> None:
    r = np.arange(3, dtype=np.uint64)
    t = np.zeros(3)
    h = np.ones(3, dtype=np.int8)
    s = np.zeros(3, dtype=np.uint8)
    PartyRounds("alice", r, t, h, s, s)
    with pytest.raises(ParameterError):
        PartyRounds("alice", r.astype(np.int64), t, h, s, s)
    with pytest.raises(ParameterError):
        PartyRounds("alice", r, t, h, s, s[:2])
    with pytest.raises(ParameterError):
        PartyRounds("eve", r, t, h, s, s)  # type: ignore[arg-type]


def test_simulate_from_preset_uses_diqkd_point(preset: Preset) -> None:
    run = simulate_from_preset(preset, n_rounds=100, seed=1)
    assert run.metadata.alpha == preset.operating.alpha_diqkd
    assert run.metadata.fiber_km == preset.operating.fiber_km
    assert run.metadata.distribution == SettingDistribution.from_preset(preset)
    other = simulate_from_preset(preset, n_rounds=100, seed=1, alpha=0.05, fiber_km=50.0)
    assert (other.metadata.alpha, other.metadata.fiber_km) == (0.05, 50.0)


def _subset(p: PartyRounds, sel: np.ndarray) -> PartyRounds:
    return PartyRounds(
        p.party, p.round[sel], p.time_s[sel], p.herald[sel], p.setting[sel], p.outcome[sel]
    )
