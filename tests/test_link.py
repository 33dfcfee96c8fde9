"""Elementary link: heralding probabilities, rates, heralded state, paper targets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qrepeater.errors import ParameterError
from qrepeater.link.heralding import MECHANISMS, ElementaryLink, Mechanisms
from qrepeater.presets import Preset
from qrepeater.quantum import bell_fidelity, is_density_matrix, two_qubit_correlators


def test_herald_probability_matches_first_order_formula(rate_link: ElementaryLink) -> None:
    a = rate_link.alpha
    ea, eb = rate_link.node_efficiencies
    q = rate_link.noise_click_probability
    approx = a * (ea + eb) - a * a * ea * eb + 2 * q
    assert rate_link.herald_probability == pytest.approx(approx, rel=1e-3)


def test_rate_target_and_mean_wait(rate_link: ElementaryLink) -> None:
    assert rate_link.rate_hz == pytest.approx(2.226, rel=0.01)
    assert rate_link.mean_wait_s == pytest.approx(0.450, rel=0.01)
    assert rate_link.attempt_period_s == pytest.approx(
        rate_link.hardware.timing.attempt_period_base_s + 10.0 / 2.04e5
    )


def test_snr_about_100_at_alpha_2_5_percent(tomo_link: ElementaryLink) -> None:
    assert tomo_link.snr == pytest.approx(100.0, rel=0.05)


def test_fidelity_at_alpha_2_5_percent_matches_paper(tomo_link: ElementaryLink) -> None:
    """Prediction: the preset is not fitted to the tomography fidelities (0.923, 0.910)."""
    assert abs(tomo_link.fidelity() - (0.923 + 0.910) / 2) < 0.015


def test_fidelity_essentially_constant_from_10_to_100_km(preset: Preset) -> None:
    f10 = ElementaryLink(preset.hardware, alpha=0.05, fiber_km=10).fidelity()
    f100 = ElementaryLink(preset.hardware, alpha=0.05, fiber_km=100).fidelity()
    assert abs(f100 - f10) < 0.03
    assert f100 < f10  # noise heralds grow with distance


def test_heralded_state_is_physical_and_has_paper_form(tomo_link: ElementaryLink) -> None:
    for det in (1, -1):
        rho = tomo_link.state(det)
        assert is_density_matrix(rho)
    only_double = tomo_link.with_mechanisms(Mechanisms.only("double_excitation"))
    rho = only_double.state(1)
    # paper Eq. (1): (1 - alpha) psi+ + alpha |down,down>, up to the exact weights
    assert rho[3, 3].real == pytest.approx(tomo_link.alpha, rel=0.01)
    assert bell_fidelity(rho, "psi+") == pytest.approx(1 - tomo_link.alpha, rel=0.01)


def test_no_mechanism_gives_a_perfect_bell_state(tomo_link: ElementaryLink) -> None:
    ideal = tomo_link.with_mechanisms(Mechanisms.none())
    assert ideal.fidelity(1) == pytest.approx(1.0, abs=1e-12)
    assert ideal.fidelity(-1) == pytest.approx(1.0, abs=1e-12)
    assert ideal.chsh() == pytest.approx(2 * math.sqrt(2))


def test_error_budget_adds_up_to_first_order(tomo_link: ElementaryLink) -> None:
    budget = tomo_link.error_budget()
    assert set(budget) == set(MECHANISMS)
    assert all(v >= 0 for v in budget.values())
    total = 1 - tomo_link.fidelity()
    assert sum(budget.values()) == pytest.approx(total, abs=0.1 * total)
    # double excitation is alpha, phase (1 - C)/2 to first order
    assert budget["double_excitation"] == pytest.approx(tomo_link.alpha, rel=0.05)
    assert budget["phase"] == pytest.approx((1 - 0.986) / 2, rel=0.05)


def test_double_excitation_dominates_at_high_alpha(rate_link: ElementaryLink) -> None:
    budget = rate_link.error_budget()
    assert max(budget, key=budget.__getitem__) == "double_excitation"


def test_noise_budget_grows_with_distance(preset: Preset) -> None:
    b10 = ElementaryLink(preset.hardware, alpha=0.05, fiber_km=10).error_budget()
    b100 = ElementaryLink(preset.hardware, alpha=0.05, fiber_km=100).error_budget()
    assert b100["noise"] > 2 * b10["noise"]
    assert b100["double_excitation"] == pytest.approx(b10["double_excitation"], rel=0.01)


def test_chsh_and_qber_from_correlators(tomo_link: ElementaryLink) -> None:
    c = two_qubit_correlators(tomo_link.measured_state(1))
    assert tomo_link.chsh() == pytest.approx(2 * math.hypot(c["xx"], c["zz"]))
    assert tomo_link.qber() == pytest.approx((1 - abs(c["zz"])) / 2)


def test_diqkd_operating_point_reproduces_fitted_s_and_q(preset: Preset) -> None:
    link = ElementaryLink(preset.hardware, alpha=preset.operating.alpha_diqkd, fiber_km=10)
    assert link.chsh() == pytest.approx(2.5758, abs=1e-6)
    assert link.qber() == pytest.approx(0.036, abs=1e-6)
    assert link.rate_hz == pytest.approx(0.291, rel=1e-6)


def test_chsh_at_100_km_is_predicted_within_paper_error(preset: Preset) -> None:
    link = ElementaryLink(preset.hardware, alpha=preset.operating.alpha_diqkd, fiber_km=100)
    assert abs(link.chsh() - 2.504) < 0.075 * 1.5


def test_rate_falls_with_distance_and_rises_with_alpha(preset: Preset) -> None:
    rates = [
        ElementaryLink(preset.hardware, alpha=0.05, fiber_km=L).rate_hz for L in (0, 10, 50, 100)
    ]
    assert np.all(np.diff(rates) < 0)
    rates = [
        ElementaryLink(preset.hardware, alpha=a, fiber_km=10).rate_hz for a in (0.01, 0.1, 0.3)
    ]
    assert np.all(np.diff(rates) > 0)


@pytest.mark.parametrize(
    ("alpha", "km"), [(0.0, 10), (1.0, 10), (-0.1, 10), (0.1, -1), (float("nan"), 10)]
)
def test_invalid_link_parameters(preset: Preset, alpha: float, km: float) -> None:
    with pytest.raises(ParameterError):
        ElementaryLink(preset.hardware, alpha=alpha, fiber_km=km)


def test_invalid_detector_and_mechanism(tomo_link: ElementaryLink) -> None:
    with pytest.raises(ParameterError):
        tomo_link.state(0)  # type: ignore[arg-type]
    with pytest.raises(ParameterError):
        Mechanisms.only("gremlins")


def test_summary_has_the_json_contract_keys(rate_link: ElementaryLink) -> None:
    s = rate_link.summary()
    for key in (
        "herald_probability",
        "attempt_rate_hz",
        "rate_hz",
        "mean_wait_s",
        "snr",
        "fidelity",
    ):
        assert isinstance(s[key], float)
    assert set(s["correlators"]) == {"xx", "yy", "zz"}  # type: ignore[arg-type]
    assert {"double_excitation", "noise", "phase", "motion", "spam"} <= set(s["error_budget"])  # type: ignore[arg-type]
