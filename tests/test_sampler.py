"""Monte-Carlo sampler: both modes agree with the analytic herald model (fixed seeds)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from qrepeater.errors import ParameterError
from qrepeater.link.heralding import ElementaryLink
from qrepeater.link.sampler import sample_attempts, sample_heralds
from qrepeater.presets import Preset


def _chi2_pvalue(counts: dict[str, int], probs: tuple[float, float, float]) -> float:
    obs = np.array([counts["single"], counts["double"], counts["noise"]], dtype=float)
    exp = np.array(probs) * obs.sum()
    return float(stats.chisquare(obs, exp).pvalue)


def test_fast_sampler_matches_geometric_waits_and_composition(rate_link: ElementaryLink) -> None:
    h = sample_heralds(rate_link, n_pairs=200_000, seed=11)
    p = rate_link.herald_probability
    mean = h.attempts.mean()
    se = np.sqrt((1 - p) / p**2 / len(h))
    assert abs(mean - 1 / p) < 4 * se
    assert np.all(np.diff(h.time_s) > 0)
    assert _chi2_pvalue(h.kind_counts(), rate_link.composition.fractions()) > 1e-3
    assert abs((h.detector == 1).mean() - 0.5) < 4 * 0.5 / np.sqrt(len(h))


def test_attempt_by_attempt_mode_matches_analytic_probability(preset: Preset) -> None:
    # extra dark counts make noise heralds frequent enough to test their share as well
    noisy = preset.replace({"detector.dark_count_cps": 3000.0})
    link = ElementaryLink(noisy.hardware, alpha=0.17, fiber_km=10.0)
    assert link.composition.fractions()[2] > 0.2
    n = 4_000_000
    h = sample_attempts(link, n_attempts=n, seed=5)
    p = link.herald_probability
    assert abs(len(h) - n * p) < 4 * np.sqrt(n * p * (1 - p))
    assert _chi2_pvalue(h.kind_counts(), link.composition.fractions()) > 1e-3
    assert h.total_attempts == n
    assert h.attempts.sum() <= n


def test_both_modes_agree_on_the_herald_mix(rate_link: ElementaryLink) -> None:
    fast = sample_heralds(rate_link, n_pairs=3000, seed=2).kind_counts()
    slow = sample_attempts(rate_link, n_attempts=3_600_000, seed=3).kind_counts()
    table = np.array([[fast["single"], fast["double"]], [slow["single"], slow["double"]]])
    assert stats.chi2_contingency(table).pvalue > 1e-3


def test_sampler_is_reproducible(rate_link: ElementaryLink) -> None:
    a = sample_heralds(rate_link, n_pairs=1000, seed=np.random.default_rng(9))
    b = sample_heralds(rate_link, n_pairs=1000, seed=np.random.default_rng(9))
    assert np.array_equal(a.time_s, b.time_s)
    assert np.array_equal(a.kind, b.kind)


@pytest.mark.parametrize("n", [0, -5, 2.5])
def test_invalid_counts(rate_link: ElementaryLink, n: float) -> None:
    with pytest.raises(ParameterError):
        sample_heralds(rate_link, n_pairs=n)  # type: ignore[arg-type]


def test_sampled_states_reproduce_the_heralded_state(rate_link: ElementaryLink) -> None:
    """The mixture of per-process states with sampled frequencies matches the analytic state:
    ``<ZZ>`` of the sampled mixture within 4 standard errors of the analytic value."""
    from qrepeater.link.sampler import KIND_NAMES
    from qrepeater.quantum import correlator

    h = sample_heralds(rate_link, n_pairs=50_000, seed=21)
    parts = rate_link.process_states(1)
    zz = np.array([correlator(parts[name][1], "ZZ") for name in KIND_NAMES])
    per_herald = zz[h.kind]
    estimate, se = per_herald.mean(), per_herald.std(ddof=1) / np.sqrt(len(h))
    assert abs(estimate - correlator(rate_link.state(1), "ZZ")) < 4 * se
    assert set(parts) == set(KIND_NAMES)
