"""Bell-test estimation: exact counts on hand-made rounds, error propagation checked against the
spread over repeated runs, undefined cells, and accumulated estimates (Fig. 4c data)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qrepeater.diqkd.estimate import (
    AccumulatedEstimate,
    BellEstimate,
    accumulate,
    bell_counts,
    estimate_bell,
)
from qrepeater.diqkd.rounds import DIQKDRun, PartyRounds, simulate_from_preset
from qrepeater.errors import ParameterError
from qrepeater.presets import Preset


def _parties(x: list[int], y: list[int], a: list[int], b: list[int]) -> tuple[PartyRounds, ...]:
    n = len(x)
    r = np.arange(n, dtype=np.uint64)
    t = np.arange(n, dtype=np.float64)
    h = np.ones(n, dtype=np.int8)
    u8 = np.uint8
    return (
        PartyRounds("alice", r, t, h, np.array(x, u8), np.array(a, u8)),
        PartyRounds("bob", r, t, h, np.array(y, u8), np.array(b, u8)),
    )


@pytest.fixture(scope="module")
def run(preset: Preset) -> DIQKDRun:
    return simulate_from_preset(preset, n_rounds=100_000, seed=21)


def test_hand_counted_example() -> None:
    # cell (0,0): 3 same, 1 diff -> E = 0.5; (0,1): 2 same -> 1; (1,0): 1 same 1 diff -> 0;
    # (1,1): 2 diff -> -1; key (0,2): 1 diff of 4 -> Q = 0.25; discarded (1,2): 1 round
    x = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1]
    y = [0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 2, 2, 2]
    a = [0, 1, 1, 0, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0]
    b = [0, 1, 1, 1, 0, 1, 0, 0, 1, 0, 0, 1, 1, 1, 1]
    est = estimate_bell(*_parties(x, y, a, b))
    assert est.correlators == ((0.5, 1.0), (0.0, -1.0))
    assert est.chsh == pytest.approx(0.5 + 1.0 + 0.0 + 1.0)
    assert est.chsh_std == pytest.approx(math.sqrt((1 - 0.25) / 4 + 0 + 1 / 2 + 0))
    assert est.qber == pytest.approx(0.25)
    assert est.qber_std == pytest.approx(math.sqrt(0.25 * 0.75 / 4))
    assert (est.rounds, est.key_rounds, est.test_rounds, est.discarded_rounds) == (15, 4, 10, 1)
    assert est.key_errors == 1
    assert est.counts == ((4, 2, 4), (2, 2, 1))


def test_outcome_sign_convention() -> None:
    # a = b = 0 is eigenvalues (+1, +1): E = +1; a = 0, b = 1: E = -1
    same = estimate_bell(*_parties([0], [0], [0], [0]))
    diff = estimate_bell(*_parties([0], [0], [0], [1]))
    assert same.correlators[0][0] == 1.0
    assert diff.correlators[0][0] == -1.0


def test_to_dict_contract(run: DIQKDRun) -> None:
    d = estimate_bell(run.alice, run.bob).to_dict()
    for key in ("chsh", "chsh_std", "qber", "qber_std"):
        assert isinstance(d[key], float), key
    for key in ("rounds", "key_rounds", "test_rounds", "discarded_rounds", "key_errors"):
        assert isinstance(d[key], int), key
    assert set(d["correlators"]) == {"E00", "E01", "E10", "E11"}
    assert set(d["counts"]) == {"n00", "n01", "n02", "n10", "n11", "n12"}
    assert d["rounds"] == d["key_rounds"] + d["test_rounds"] + d["discarded_rounds"]


def test_empty_cells_give_nan_without_warnings() -> None:
    est = estimate_bell(*_parties([0, 0], [0, 1], [0, 1], [0, 1]))
    assert math.isnan(est.chsh)
    assert math.isnan(est.chsh_std)
    assert math.isnan(est.qber)
    assert math.isnan(est.qber_std)
    assert est.correlators[0] == (1.0, 1.0)


def test_error_propagation_matches_spread(preset: Preset) -> None:
    """The quoted sigma_S and sigma_Q match the standard deviation over independent runs."""
    s, q, s_std, q_std = [], [], [], []
    for seed in range(60):
        run = simulate_from_preset(preset, n_rounds=20_000, seed=1000 + seed)
        est = estimate_bell(run.alice, run.bob)
        s.append(est.chsh)
        q.append(est.qber)
        s_std.append(est.chsh_std)
        q_std.append(est.qber_std)
    # the sample std of 60 runs is within ~ +-9% (1 sigma) of the truth; allow 35%
    assert np.std(s, ddof=1) == pytest.approx(np.mean(s_std), rel=0.35)
    assert np.std(q, ddof=1) == pytest.approx(np.mean(q_std), rel=0.35)


def test_bell_counts_shape_and_checks() -> None:
    n = bell_counts(x=[0, 1, 1], y=[2, 0, 0], a=[1, 0, 1], b=[0, 0, 0])
    assert n.shape == (2, 3, 2)
    assert n[0, 2, 1] == 1
    assert n[1, 0].tolist() == [1, 1]
    assert BellEstimate.from_counts(n).key_errors == 1
    with pytest.raises(ParameterError):
        bell_counts(x=[0, 1], y=[0], a=[0, 1], b=[0, 1])


def test_estimate_requires_aligned_parties(run: DIQKDRun) -> None:
    alice, bob = _parties([0, 1], [0, 1], [0, 1], [0, 1])
    short, _ = _parties([0], [0], [0], [0])
    with pytest.raises(ParameterError):
        estimate_bell(short, bob)
    with pytest.raises(ParameterError):
        estimate_bell(bob, alice)


# ---- accumulation ------------------------------------------------------------------------------
def test_accumulated_final_point_equals_full_estimate(run: DIQKDRun) -> None:
    est = estimate_bell(run.alice, run.bob)
    acc = accumulate(run.alice, run.bob, points=50)
    assert isinstance(acc, AccumulatedEstimate)
    assert acc.rounds[-1] == len(run)
    assert acc.chsh[-1] == pytest.approx(est.chsh)
    assert acc.chsh_std[-1] == pytest.approx(est.chsh_std)
    assert acc.qber[-1] == pytest.approx(est.qber)
    assert acc.qber_std[-1] == pytest.approx(est.qber_std)
    assert acc.key_rounds[-1] == est.key_rounds
    assert acc.test_rounds[-1] == est.test_rounds
    assert acc.rounds.size == 50
    assert np.all(np.diff(acc.rounds) > 0)
    assert np.all(np.diff(acc.time_s) >= 0)


def test_accumulated_points_equal_prefix_estimates(run: DIQKDRun) -> None:
    acc = accumulate(run.alice, run.bob, points=7)
    for i in (0, 3):
        k = int(acc.rounds[i])
        pre = estimate_bell(_prefix(run.alice, k), _prefix(run.bob, k))
        assert acc.chsh[i] == pytest.approx(pre.chsh)
        assert acc.qber_std[i] == pytest.approx(pre.qber_std)
        assert acc.time_s[i] == run.alice.time_s[k - 1]


def test_accumulated_against_time(run: DIQKDRun) -> None:
    acc = accumulate(run.alice, run.bob, points=20, axis="time")
    assert acc.rounds[-1] == len(run)
    assert acc.time_s[-1] == run.alice.time_s[-1]
    step = run.alice.time_s[-1] - run.alice.time_s[0]
    assert np.allclose(np.diff(acc.time_s), step / 20, rtol=0.05)
    assert np.all(np.diff(acc.chsh_std) < 0)  # error bars shrink as rounds accumulate
    d = acc.to_dict()
    assert len(d["chsh"]) == acc.rounds.size


def test_accumulate_rejects_bad_arguments(run: DIQKDRun) -> None:
    with pytest.raises(ParameterError):
        accumulate(run.alice, run.bob, points=0)
    with pytest.raises(ParameterError):
        accumulate(run.alice, run.bob, axis="bits")  # type: ignore[arg-type]
    empty_a, empty_b = _parties([], [], [], [])
    with pytest.raises(ParameterError):
        accumulate(empty_a, empty_b)


def test_accumulated_early_points_may_be_nan() -> None:
    alice, bob = _parties([0, 0, 1, 1, 0], [0, 1, 0, 1, 2], [0] * 5, [0] * 5)
    acc = accumulate(alice, bob, points=5)
    assert np.isnan(acc.chsh[:3]).all()
    assert acc.chsh[3] == pytest.approx(2.0)
    assert np.isnan(acc.qber[:4]).all()
    assert acc.qber[4] == 0.0


def _prefix(p: PartyRounds, k: int) -> PartyRounds:
    return PartyRounds(
        p.party, p.round[:k], p.time_s[:k], p.herald[:k], p.setting[:k], p.outcome[:k]
    )


# ---- reproduction rows and figure (qrepeater.report.diqkd_report) --------------------------------
def test_report_rows_and_figure(preset: Preset) -> None:
    from matplotlib.figure import Figure

    from qrepeater.report.diqkd_report import diqkd_rows, fig_accumulated, simulate_paper_run
    from qrepeater.report.rows import ReproductionContext

    run = simulate_paper_run(preset, fiber_km=10.0, rounds=1000, seed=1)
    assert len(run) == 1000
    assert run.metadata.alpha == preset.operating.alpha_diqkd
    ctx = ReproductionContext(preset=preset, seed=5)
    rows = {r.name: r for r in diqkd_rows(ctx)}
    assert {r.kind for r in rows.values()} <= {"fit", "prediction", "check"}
    assert all(r.group == "diqkd" for r in rows.values())
    sim_s = rows["DI-QKD CHSH S, 10 km, simulated run"]
    sim_q = rows["DI-QKD QBER, 10 km, simulated run"]
    assert sim_s.kind == sim_q.kind == "check"
    assert "sampler" in sim_s.note
    assert abs(sim_s.model - rows["DI-QKD CHSH S, 10 km (analytic)"].model) < 4 * 0.0075
    assert rows["DI-QKD CHSH S, 100 km (analytic)"].kind == "prediction"
    assert rows["DI-QKD QBER, 100 km (analytic)"].kind == "fit"
    assert rows["DI-QKD rounds per second, 10 km"].model == pytest.approx(0.291, rel=1e-3)
    assert rows["DI-QKD sigma_S, 10 km, simulated run"].model > 0.0059
    fig = fig_accumulated(ctx, points=20)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 4  # two panels, each with a twin QBER axis
