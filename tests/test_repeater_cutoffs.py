"""Cut-off policies of Li, Coopmans & Elkouss (IEEE TQE 2, 1 (2021)) in both chain engines.

Reference values: the authors' published implementation of their algorithm
(github.com/BoxiLi/repeater-cut-off-optimization, commit c9245ed, ``repeater_sim``), run with
``t_trunc = 20000`` (``40000`` for ``p = 0.01``), where its covered probability mass is 1 to
nine digits; ``T`` is ``sum t pmf(t) / sum pmf`` and ``w`` the mean Werner parameter
``sum pmf(t) w(t) / sum pmf``. Parameters are those of its ``examples.swap_protocol`` (the
setting of the paper's Fig. 4: ``p_gen = 0.1``, ``p_swap = 0.5``, ``w0 = 0.98``,
``t_coh = 400``, memory-time cut-offs ``(16, 31, 55)``) and variations of it for the run-time
and fidelity cut-offs.
"""

from __future__ import annotations

import numpy as np
import pytest

from qrepeater.errors import ParameterError
from qrepeater.repeater.chain import Chain
from qrepeater.repeater.exact import NestedPlan, elementary, join_swap, solve
from qrepeater.repeater.montecarlo import mean_with_error, sample_nested
from qrepeater.repeater.segments import Segment, SwapNoise, werner_window

# (segments, p, p_swap, w0, t_coh, memory, run, werner) -> (E[T], mean Werner) of Li et al.'s code
LI_REFERENCE = [
    (8, 0.1, 0.5, 0.98, 400, (16, 31, 55), None, None, 471.971333, 0.70702860),
    (8, 0.1, 0.5, 0.98, 400, None, None, None, 242.348372, 0.57947796),
    (4, 0.2, 1.0, 0.95, 100, 10, None, None, 10.983796, 0.73520102),
    (2, 0.01, 0.5, 1.0, 1000, 50, None, None, 449.972229, 0.97724753),
    (8, 0.1, 0.5, 0.98, 400, None, (60, 200, 800), None, 242.917190, 0.58026094),
    (4, 0.2, 1.0, 0.95, 100, None, (8, 20), None, 12.047256, 0.74114014),
    (8, 0.1, 0.5, 0.98, 400, None, None, (0.9, 0.8, 0.6), 275.395666, 0.62771832),
    (2, 0.01, 0.5, 1.0, 1000, None, None, 0.95, 446.248103, 0.97684574),
]


@pytest.mark.parametrize(
    ("n", "p", "a", "w0", "tcoh", "mem", "run", "wcut", "t_ref", "w_ref"), LI_REFERENCE
)
def test_exact_engine_reproduces_li_et_al_reference_implementation(
    n: int,
    p: float,
    a: float,
    w0: float,
    tcoh: float,
    mem: object,
    run: object,
    wcut: object,
    t_ref: float,
    w_ref: float,
) -> None:
    chain = Chain.abstract(
        segments=n,
        p=p,
        werner=w0,
        coherence_attempts=tcoh,
        swap_probability=a,
        cutoff_attempts=mem,  # type: ignore[arg-type]
        run_cutoff_attempts=run,  # type: ignore[arg-type]
        werner_cutoff=wcut,  # type: ignore[arg-type]
    )
    r = chain.evaluate("exact", tol=1e-10)
    assert r.mean_wait_attempts == pytest.approx(t_ref, rel=2e-8, abs=2e-6)
    assert r.werner == pytest.approx(w_ref, abs=2e-8)
    # Li et al.'s secret_key_rate: (1/T) max(0, 1 - 2 h((1 - w)/2)) with h in nats
    q = (1 - w_ref) / 2
    h_nats = -(q * np.log(q) + (1 - q) * np.log(1 - q)) if 0 < q < 1 else 0.0
    d = r.abstract_dict()
    assert d["bb84_key_per_attempt_nats_entropy"] == pytest.approx(
        max(0.0, 1 - 2 * h_nats) / t_ref, rel=1e-6, abs=1e-12
    )


def _plan(n: int, **cuts: object) -> NestedPlan:
    seg = Segment.abstract(p=0.1, werner=0.98, coherence_attempts=400)
    levels = n.bit_length() - 1
    kw: dict[str, object] = {"cutoffs": (None,) * levels}
    kw.update(cuts)
    return NestedPlan(
        segments=(seg,) * n,
        swap_probability=0.5,
        noise=SwapNoise(),
        delays=(0,) * levels,
        **kw,  # type: ignore[arg-type]
    )


def _agree(plan: NestedPlan, n: int, seed: int) -> None:
    d = solve(plan, tol=1e-9)
    mc = sample_nested(plan, n=n, seed=seed)
    t, et = mean_with_error(mc.time)
    w, ew = mean_with_error(mc.f.mean(axis=0))
    assert abs(t - d.mean_wait) < 4.5 * et
    assert abs(w - float(np.mean(d.mean_state))) < 4.5 * ew


def test_run_time_cutoff_engines_agree() -> None:
    _agree(_plan(4, run_cutoffs=(40, 150)), 40_000, seed=11)


def test_fidelity_cutoff_engines_agree_on_one_swap() -> None:
    # one level: the joined pairs' states are fixed by their times, so deciding on E[w | T]
    # (the numerical engine, as Li et al.) and on each pair's own w (Monte Carlo) coincide
    _agree(_plan(2, werner_cutoffs=(0.95,)), 60_000, seed=12)


def test_all_three_cutoffs_combined_engines_agree() -> None:
    _agree(
        _plan(4, cutoffs=(20, 40), run_cutoffs=(60, 200), werner_cutoffs=(0.93, None)), 40_000, 13
    )


def test_fidelity_cutoff_above_one_swap_decides_on_the_conditional_mean() -> None:
    """From the second level on, a sub-chain's pair state is random given its delivery time.
    The numerical engine (like Li et al.'s algorithm) thresholds ``E[w | T]``; the Monte-Carlo
    engine each pair's own ``w`` (known from its history), keeping good pairs a bad mean would
    discard. Waits agree; the delivered Werner parameter differs, slightly, in that direction."""
    plan = _plan(4, werner_cutoffs=(0.93, 0.85))
    d = solve(plan, tol=1e-9)
    mc = sample_nested(plan, n=40_000, seed=14)
    t, et = mean_with_error(mc.time)
    w, ew = mean_with_error(mc.f.mean(axis=0))
    assert abs(t - d.mean_wait) < 4.5 * et
    gap = w - float(np.mean(d.mean_state))
    assert 3 * ew < gap < 0.003


def test_windowed_join_equals_the_memory_time_join() -> None:
    """A Werner threshold nobody falls below leaves the memory-time cut-off alone: the O(M)
    windowed join (per-pair windows) reproduces the fixed-window join to rounding."""
    seg = Segment.abstract(p=0.05, werner=0.97, coherence_attempts=300)
    d = elementary(seg, 4096)
    kw = {"decay": seg.decay, "cutoff": 25, "swap_probability": 0.7}
    fixed = join_swap(d, d, **kw)  # type: ignore[arg-type]
    windowed = join_swap(d, d, werner_cutoff=1e-9, **kw)  # type: ignore[arg-type]
    np.testing.assert_allclose(windowed.pmf, fixed.pmf, rtol=0, atol=1e-13)
    np.testing.assert_allclose(windowed.weighted, fixed.weighted, rtol=0, atol=1e-13)


def test_run_time_cutoff_is_a_deadline() -> None:
    seg = Segment.abstract(p=0.1, werner=0.99)
    d = elementary(seg, 2048)
    out = join_swap(d, d, decay=seg.decay, cutoff=None, run_cutoff=12)
    # a try lasts at most 12 attempts, so the first try's successes end by 12 and the output
    # is the first try's success law renewed every 12 attempts
    first = (1 - 0.9**12) ** 2
    assert out.pmf[:13].sum() == pytest.approx(first, rel=1e-12)
    assert out.pmf[13:25].sum() == pytest.approx((1 - first) * first, rel=1e-10)
    assert out.coverage == pytest.approx(1.0, abs=1e-12)


def test_werner_window_matches_the_exponential_closed_form() -> None:
    w = np.array([0.99, 0.95, 0.9, 0.89, 0.5])
    g = 1 / 400

    def after(d: np.ndarray) -> np.ndarray:
        return np.asarray(w * np.exp(-g * d))

    got = werner_window(after, threshold=0.9, cap=10**9, size=w.size)
    want = [int(np.floor(400 * np.log(x / 0.9))) if x >= 0.9 else -1 for x in w]
    assert got.tolist() == want
    capped = werner_window(after, threshold=0.9, cap=5, size=w.size)
    assert capped.tolist() == [min(x, 5) if x >= 0 else -1 for x in want]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"protocol": "swap-asap", "run_cutoff_attempts": 30}, "nested"),
        ({"werner_cutoff": 1.5}, r"\(0, 1\]"),
        ({"werner_cutoff": (0.9, 0.8)}, "one value per level"),
        ({"run_cutoff_attempts": -3}, "non-negative"),
        ({"werner_cutoff": 0.99}, "reasonable time"),
    ],
)
def test_bad_cutoffs(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        Chain.abstract(segments=8, p=0.1, werner=0.98, **kwargs).evaluate("exact")  # type: ignore[arg-type]
