"""Memory storage, wait averages, deterministic delivery and the first swap."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from qrepeater.errors import ParameterError
from qrepeater.hardware import Memory
from qrepeater.hardware.memory import zz_decay_from_pulse_errors
from qrepeater.link.heralding import ElementaryLink
from qrepeater.link.storage import (
    StoredLink,
    delivery_fidelity,
    delivery_threshold,
    required_coherence_time,
    swap_requirements,
)
from qrepeater.quantum import bell_fidelity, is_density_matrix, two_qubit_correlators


@pytest.fixture(scope="module")
def stored(rate_link: ElementaryLink) -> StoredLink:
    return StoredLink(rate_link)


def test_memory_fit_targets_are_met(stored: StoredLink) -> None:
    # the coherence time is the paper's value and the <ZZ> slope is fitted to the infinite-window
    # average: these two must be hit tightly
    assert stored.memory.coherence_time_s == pytest.approx(0.550)
    assert stored.average_fidelity(None) == pytest.approx(0.578, abs=0.006)
    assert stored.link_efficiency == pytest.approx(1.2, rel=0.05)
    assert delivery_threshold(initial_fidelity=1.0) == pytest.approx(0.826, abs=0.005)


def test_memory_predictions_within_the_papers_one_sigma(stored: StoredLink) -> None:
    """Predictions that hang on the fitted slope, checked against the paper's error bars.

    The slope's own uncertainty moves F(450 ms) only by about +-0.007 (docs/model.md), so the
    paper's one-sigma bars (0.005, 34 ms, 0.050) are the binding tolerance here; the 450 ms
    window average has the paper's tight 0.005.
    """
    assert stored.average_fidelity(0.45) == pytest.approx(0.668, abs=0.005)
    assert abs(stored.time_above_half_s() - 0.547) < 0.034
    assert abs(float(stored.fidelity(0.45)) - 0.554) < 0.050


def test_stored_state_follows_the_measured_decay_laws(stored: StoredLink) -> None:
    c0 = stored.initial_correlators
    for t in (0.1, 0.45, 1.0):
        rho = stored.state(t)
        assert is_density_matrix(rho)
        c = two_qubit_correlators(rho)
        assert c["xx"] == pytest.approx(c0["xx"] * math.exp(-t / 0.55), rel=1e-9)
        kappa = stored.memory.zz_decay_per_s
        assert c["zz"] == pytest.approx(c0["zz"] * (1 - kappa * t), rel=1e-9)
        assert bell_fidelity(rho, "psi+") == pytest.approx(float(stored.fidelity(t)), abs=1e-12)


def test_closed_form_average_agrees_with_monte_carlo(stored: StoredLink) -> None:
    for window in (None, 0.45):
        mean, se = stored.average_fidelity_mc(n_pairs=100_000, window_s=window, seed=7)
        assert abs(mean - stored.average_fidelity(window)) < 4 * se


def test_numeric_and_closed_form_wait_sums_agree(stored: StoredLink) -> None:
    closed = stored.wait_averages(0.45)
    p, period = stored.link.herald_probability, stored.link.attempt_period_s
    numeric = stored._wait_averages_numeric(p=p, period=period, kmax=math.floor(0.45 / period))
    assert closed.xx == pytest.approx(numeric.xx, rel=1e-9)
    assert closed.zz == pytest.approx(numeric.zz, rel=1e-9)
    assert closed.probability == pytest.approx(numeric.probability, rel=1e-9)


def test_swap_fidelity_is_affine_in_the_decay_factors(stored: StoredLink) -> None:
    for t in (0.0, 0.3, 0.9):
        direct = bell_fidelity(stored.swap_state(t), "psi+")
        via = stored._swap_fidelity_at(
            float(stored.memory.xx_factor(t)), float(stored.memory.zz_factor(t))
        )
        assert direct == pytest.approx(via, abs=1e-12)


def test_swap_with_todays_memory_falls_just_short(stored: StoredLink) -> None:
    f = stored.swap_fidelity(None)
    assert 0.45 < f < 0.5
    req = swap_requirements(stored.link)
    assert 0.55 < req.coherence_time_needed_s < 1.0
    assert req.best_swap_fidelity >= req.swap_fidelity
    longer = StoredLink(
        stored.link,
        memory=dataclasses.replace(
            stored.memory, coherence_time_s=req.coherence_time_needed_s * 1.01
        ),
    )
    assert longer.swap_fidelity(None) > 0.5


def test_pulse_errors_bound_the_coherence(rate_link: ElementaryLink) -> None:
    # at 100 km the wait is so long that no dephasing improvement helps: pulse errors dominate
    far = ElementaryLink(rate_link.hardware, alpha=0.17, fiber_km=100.0)
    assert required_coherence_time(far) == math.inf
    mem = dataclasses.replace(rate_link.hardware.memory, coherence_time_s=100.0)
    assert mem.pulse_limited
    assert np.all(mem.xx_factor(np.linspace(0, 2, 50)) <= 1.0)


def test_delivery_formula() -> None:
    assert delivery_fidelity(link_efficiency=1e-9) == pytest.approx(0.25, abs=1e-6)
    assert delivery_fidelity(link_efficiency=1.0) == pytest.approx(0.25 + 0.75 / math.e)
    assert delivery_fidelity(link_efficiency=100.0) > 0.95
    with pytest.raises(ParameterError):
        delivery_fidelity(link_efficiency=-1.0)


def test_implied_zz_decay_from_quoted_gate_errors_is_faster_than_fitted(stored: StoredLink) -> None:
    implied = zz_decay_from_pulse_errors(gate_errors=(6.1e-4, 5.7e-4), pulse_interval_s=5e-4)
    assert implied == pytest.approx(2.36)
    assert implied > 3 * stored.memory.zz_decay_per_s


@pytest.mark.parametrize("window", [0.0, -1.0, float("nan")])
def test_invalid_windows(stored: StoredLink, window: float) -> None:
    with pytest.raises(ParameterError):
        stored.average_fidelity(window)


def test_invalid_times_and_memory(stored: StoredLink) -> None:
    with pytest.raises(ParameterError):
        stored.fidelity(-0.1)
    with pytest.raises(ParameterError):
        stored.state(-1.0)
    with pytest.raises(ParameterError):
        Memory(
            coherence_time_s=-1,
            zz_decay_per_s=0.5,
            pulse_interval_s=5e-4,
            transfer_time_s=0,
            transfer_fidelity=1,
        )
