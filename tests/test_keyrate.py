"""Tests of qrepeater.diqkd.keyrate: asymptotic rate, phase-error and EAT finite-key bounds."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyrate_support import PAPER, PAPER_KEY_BITS
from qrepeater.diqkd.keyrate import (
    ASSUMPTIONS,
    TSIRELSON,
    FiniteKeyInputs,
    SettingProbabilities,
    asymptotic_rate,
    binary_entropy,
    chsh_entropy_bound,
    eat_entropy_bound,
    finite_key,
    phase_error_relation,
)
from qrepeater.diqkd.keyrate.common import (
    CHORD_LABEL,
    DEVICE_MEMORY_ALLOWED,
    PROTOCOL_AS_RUN,
    PROTOCOL_SPOT_CHECKING,
)
from qrepeater.errors import ParameterError

# The experiment's 10 km run (paper, Fig. 4 and text): N, key rounds, S, Q, f, eps. The paper gives
# test rounds only as about 2/3 of N; 270,097 stands in for them.

# Nadlinger et al., Nature 607, 682 (2022): n, gamma, omega_thr, syndrome length m, eps_snd.
NAD_N = 1_500_000
NAD_GAMMA = 13 / 256
NAD_OMEGA_THR = 0.825538
NAD_M = 296_517
NAD_KEY_BITS = 95_884


def _spot_check(n_rounds: int, gamma: float) -> dict[str, int]:
    """Round counts of a spot-checking run without discarded rounds."""
    t = max(1, round(gamma * n_rounds))
    return {"rounds": n_rounds, "key_rounds": n_rounds - t, "test_rounds": t}


# ------------------------------------------------------------------------------ entropy, rate


def test_binary_entropy_values_and_vectorisation() -> None:
    assert binary_entropy(0.0) == 0.0
    assert binary_entropy(1.0) == 0.0
    assert binary_entropy(0.5) == pytest.approx(1.0)
    assert binary_entropy(0.11) == pytest.approx(binary_entropy(0.89))
    arr = binary_entropy(np.array([[0.0, 0.25], [0.5, 1.0]]))
    assert isinstance(arr, np.ndarray)
    assert arr.shape == (2, 2)
    assert arr[0, 1] == pytest.approx(0.8112781244591328)
    with pytest.raises(ParameterError):
        binary_entropy(1.5)
    with pytest.raises(ParameterError):
        binary_entropy(np.array([0.2, float("nan")]))


def test_chsh_entropy_bound_endpoints() -> None:
    assert chsh_entropy_bound(2.0) == 0.0
    assert chsh_entropy_bound(1.0) == 0.0
    assert chsh_entropy_bound(TSIRELSON) == pytest.approx(1.0)
    with pytest.raises(ParameterError):
        chsh_entropy_bound(2.9)


def test_asymptotic_rate_reproduces_paper() -> None:
    """Paper: 0.325 per round at 10 km (S = 2.5758, Q = 0.036) and 0.0974 at 100 km
    (S = 2.504, Q = 0.069). The formula gives 0.326 and 0.099; the paper's own rounding or
    unrounded S, Q explain the last digit, so we allow 0.002 against the paper."""
    r10 = asymptotic_rate(chsh=2.5758, qber=0.036)
    r100 = asymptotic_rate(chsh=2.504, qber=0.069)
    assert r10 == pytest.approx(0.326, abs=5e-4)
    assert r100 == pytest.approx(0.099, abs=5e-4)
    assert r10 == pytest.approx(0.325, abs=2e-3)
    assert r100 == pytest.approx(0.0974, abs=2e-3)


def test_asymptotic_rate_clamps_and_validates() -> None:
    assert asymptotic_rate(chsh=2.0, qber=0.0) == 0.0
    assert asymptotic_rate(chsh=-1.0, qber=0.0) == 0.0
    assert asymptotic_rate(chsh=2.2, qber=0.2) == 0.0  # formula negative: clamped, not < 0
    assert asymptotic_rate(chsh=TSIRELSON, qber=0.0) == pytest.approx(1.0)
    for bad in ({"chsh": 2.83, "qber": 0.0}, {"chsh": 2.5, "qber": 0.5}, {"chsh": 2.5, "qber": -1}):
        with pytest.raises(ParameterError):
            asymptotic_rate(**bad)


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    "change",
    [
        {"chsh": 2.0},
        {"chsh": 1.5},
        {"chsh": 2.9},
        {"qber": 0.5},
        {"qber": -0.01},
        {"eps": 0.0},
        {"eps": 1.0},
        {"rounds": 0, "key_rounds": 0, "test_rounds": 0},
        {"key_rounds": 0},
        {"test_rounds": 0},
        {"key_rounds": 200_000, "test_rounds": 250_000},
        {"rounds": 405_145.0},
        {"rounds": True},
        {"ec_efficiency": 0.9},
        {"leak_ec_bits": -1.0},
        {"leak_ec_bits": 1000.0},  # together with ec_efficiency
    ],
)
def test_finite_key_rejects_bad_parameters(change: dict[str, Any]) -> None:
    kwargs: dict[str, Any] = {**PAPER, **change}
    with pytest.raises(ParameterError):
        finite_key(method="phase-error", **kwargs)


def test_unknown_method_and_settings_are_rejected() -> None:
    with pytest.raises(ParameterError):
        _key("magic", PAPER)
    with pytest.raises(ParameterError):
        SettingProbabilities(key=0.5, test=(0.1, 0.1, 0.1, 0.1), discard=0.2)  # sums to 1.1
    with pytest.raises(ParameterError):
        SettingProbabilities(key=0.6, test=(0.1, 0.1, 0.2, 0.0), discard=0.0)
    skewed = SettingProbabilities(key=0.5, test=(0.1, 0.1, 0.1, 0.2), discard=0.0)
    with pytest.raises(ParameterError):  # the EAT method needs equally likely test pairs
        finite_key(method="eat", setting_probabilities=skewed, **PAPER)
    assert finite_key(method="phase-error", setting_probabilities=skewed, **PAPER).method == (
        "phase-error"
    )


def test_default_setting_distribution_uses_observed_fractions() -> None:
    inp = FiniteKeyInputs(**PAPER)
    s = inp.settings
    assert s.key == pytest.approx(105_976 / 405_145)
    assert s.test == pytest.approx((270_097 / 405_145 / 4,) * 4)
    assert s.discard == pytest.approx(1 - (105_976 + 270_097) / 405_145)
    assert s.uniform_test_pairs


# ------------------------------------------------------------------------------ phase error


def test_phase_error_relation_majorises_the_curve() -> None:
    s = np.linspace(2.0, TSIRELSON, 501)
    curve = (1.0 - np.sqrt(np.clip(s**2 / 4.0 - 1.0, 0.0, None))) / 2.0
    for rel in ("chord", "strict"):
        a, b = phase_error_relation(rel)
        assert np.all(a - b * s >= curve - 1e-12)
        assert a - b * TSIRELSON == pytest.approx(0.0, abs=1e-12)
    a, b = phase_error_relation("chord")
    assert a - 2.0 * b == pytest.approx(0.5)
    a, b = phase_error_relation("strict")
    assert a - 2.0 * b == pytest.approx(1.0)


def test_phase_error_chord_on_paper_statistics_is_conditional_and_recomputes() -> None:
    """The chord key on the paper's statistics: checked against an independent evaluation of
    l = n (1 - h(e_U)) - f n h(Q) - log2(2/eps_EC) - 2 log2(1/(2 eps_PA)) from the reported e_U
    and split, and labelled with the Jordan-block-label assumption it rests on. It exceeds the
    paper's 1,917 bits (a different, unpublished finite-size accounting of the same method), so
    nothing here says the two agree."""
    res = finite_key(method="phase-error", **PAPER)
    d = res.details
    n = PAPER["key_rounds"]
    expected = (
        n * (1 - float(binary_entropy(d.phase_error_upper)))
        - 1.122 * n * float(binary_entropy(0.036))
        - math.log2(2 / res.eps.correctness)
        - 2 * math.log2(1 / (2 * res.eps.privacy_amplification))
    )
    assert res.finite_key_bits == math.floor(expected)
    assert res.finite_key_bits > PAPER_KEY_BITS
    assert res.asymptotic_rate == pytest.approx(0.326, abs=5e-4)
    assert d.phase_error_from_chsh == pytest.approx((TSIRELSON - 2.5758) / (4 * (2**0.5 - 1)))
    assert d.phase_error_upper == pytest.approx(d.phase_error_from_chsh + d.deviation)
    assert res.eps.correctness + res.eps.secrecy == pytest.approx(1e-5)
    assert res.eps.secrecy == pytest.approx(
        res.eps.privacy_amplification + 2 * math.sqrt(res.eps.parameter_estimation)
    )
    assert CHORD_LABEL in res.assumptions
    assert res.protocol == PROTOCOL_AS_RUN
    assert res.to_dict()["eps"]["fixed_in_advance"] is True


def test_epsilon_splits_do_not_depend_on_the_data() -> None:
    """The splits are fixed fractions of eps (part of the protocol), whatever S, Q and N are."""
    for method in ("phase-error", "geat", "eat"):
        a = finite_key(method=method, **PAPER).eps
        b = finite_key(method=method, **{**PAPER, "chsh": 2.7, "qber": 0.02}).eps
        c = finite_key(method=method, **{**PAPER, "rounds": 800_000}).eps
        for split in (b, c):
            assert split.correctness == a.correctness
            assert split.privacy_amplification == a.privacy_amplification
            assert split.smoothing == a.smoothing


def test_phase_error_strict_relation_gives_no_key_on_paper_data() -> None:
    res = finite_key(method="phase-error", relation="strict", **PAPER)
    assert res.finite_key_bits == 0
    assert res.details.phase_error_upper > 0.3


def test_result_to_dict_is_json_and_has_cli_keys() -> None:
    methods: tuple[Any, ...] = ("phase-error", "geat", "eat")
    for method in methods:
        res = finite_key(method=method, **PAPER)
        d = json.loads(json.dumps(res.to_dict()))
        assert {"asymptotic_rate", "finite_key_bits", "method"} <= set(d)
        assert d["method"] == method
        assert isinstance(d["finite_key_bits"], int)
        assert d["eps"]["soundness"] == pytest.approx(1e-5)
        assert d["eps"]["fixed_in_advance"] is True
        assert d["assumptions"] == list(res.assumptions)
        assert d["assumptions"]
        assert d["protocol"]


# ------------------------------------------------------------------------------ EAT


def test_eat_spot_checking_on_paper_statistics_gives_no_key() -> None:
    """The EAT method bounds the spot-checking protocol, not the one the experiment ran: with 2/3
    of the rounds spent on tests, reconciling Alice's test outputs and the n*gamma max-entropy
    term exceed the accumulated entropy. A property of that protocol variant (the GEAT bound of
    the protocol as run gives key, tests/test_keyrate_geat.py)."""
    res = finite_key(method="eat", **PAPER)
    assert res.protocol == PROTOCOL_SPOT_CHECKING
    assert res.assumptions == ASSUMPTIONS["eat"]
    assert DEVICE_MEMORY_ALLOWED in res.assumptions
    assert res.finite_key_bits == 0
    assert res.details.max_entropy_bits > 0.6 * res.details.first_order_bits


def _nadlinger_upsilon(x: float) -> float:
    """Nadlinger et al. Suppl. Eq. (54): the y with y + (4/ln 2) ln y = x (Trevisan extractor)."""
    b = 4.0 / math.log(2.0)
    y = x
    for _ in range(60):
        y = x - b * math.log(y)
    return y


def test_eat_entropy_reproduces_nadlinger_key_length() -> None:
    """Published EAT number: Nadlinger et al., Nature 607, 682 (2022), Fig. 4 and Table I:
    n = 1.5e6, gamma = 13/256, omega_thr = 0.825538, syndrome m = 296,517, eps_snd = 1e-10 give
    95,884 bits by Suppl. Proposition 2, Eq. (73). That is the extracted length; the journal's
    net figure, 95,628 bits, is 256 bits less (the authentication key consumed), so we compare
    with 95,884, the quantity Eq. (73) defines. We evaluate our entropy bound with their
    extractor and authentication terms (Upsilon_b, 5 log 1/eps_PA, 264 bits) and an epsilon split
    satisfying their soundness max(eps_EA, eps_PA + 2 eps_s) + 4 eps_h = 1e-10 (they optimise the
    split; ours comes from a coarse search). Tolerance 0.5%."""
    eps_h = 2.0**-61
    total = 1e-10 - 4 * eps_h
    eps_pa = 1e-3 * total
    eps_s = (total - eps_pa) / 2
    bound = eat_entropy_bound(
        rounds=NAD_N,
        test_probability=NAD_GAMMA,
        discard_probability=0.0,
        chsh_threshold=8 * NAD_OMEGA_THR - 4,
        eps_smooth=eps_s,
        eps_smooth_min=0.85 * eps_s,
        eps_smooth_max=0.07 * eps_s,
        eps_ea=total,
    )
    key = _nadlinger_upsilon(bound.entropy_bits - 5 * math.log2(1 / eps_pa) - NAD_M - 264)
    assert key == pytest.approx(NAD_KEY_BITS, rel=5e-3)
    assert 0.79 < bound.tangent_winning_probability < NAD_OMEGA_THR


def test_eat_finite_key_close_to_nadlinger() -> None:
    """Same run through finite_key: two-universal hashing instead of the Trevisan extractor and a
    plain verification tag instead of encrypted hashes change the overhead by a few hundred bits,
    and the epsilon split is our a-priori one; tolerance 1.5% of the published 95,884 bits (the
    length before the 256-bit authentication key, see the test above)."""
    counts = _spot_check(NAD_N, NAD_GAMMA)
    res = finite_key(
        method="eat",
        chsh=8 * NAD_OMEGA_THR - 4,
        qber=0.018,
        eps=1e-10,
        leak_ec_bits=NAD_M,
        **counts,
    )
    assert res.finite_key_bits == pytest.approx(NAD_KEY_BITS, rel=1.5e-2)
    assert res.details.test_probability == pytest.approx(NAD_GAMMA, rel=1e-5)
    assert res.eps.correctness + res.eps.secrecy == pytest.approx(1e-10)


def _nadlinger_completeness_run(n_rounds: int, gamma: float) -> int:
    """Nadlinger et al. Suppl. S6-S7 parameter choice for the depolarising model at visibility 1
    (S = 2 sqrt 2, Q = 0): threshold with 3 standard deviations (Eqs. (24)-(25)) and syndrome
    m = n((1-gamma) h(Q) + gamma h((4-S)/8)) + 50 sqrt(n) (Eq. (23)), eps_snd = 1e-10."""
    s = TSIRELSON
    q = gamma * (1 - (4 + s) / 8)
    omega_thr = 1 - (q + 3 * math.sqrt(q * (1 - q) / n_rounds)) / gamma
    m = n_rounds * gamma * float(binary_entropy((4 - s) / 8)) + 50 * math.sqrt(n_rounds)
    res = finite_key(
        method="eat",
        chsh=8 * omega_thr - 4,
        qber=0.0,
        eps=1e-10,
        leak_ec_bits=m,
        **_spot_check(n_rounds, gamma),
    )
    return res.finite_key_bits


@pytest.mark.slow
def test_eat_minimal_rounds_matches_nadlinger_fig_s15() -> None:
    """Published: Nadlinger et al. Suppl. Fig. S15a, "a positive key rate is found starting from
    n ~ 2.6e5 rounds" (depolarising model, eps_snd = 1e-10, free parameters optimised). Read from
    text with '~': we bracket it by n = 2.0e5 (no key for any gamma tried) and 3.0e5 (key)."""
    assert all(_nadlinger_completeness_run(200_000, g) == 0 for g in (0.07, 0.1, 0.13, 0.16, 0.2))
    assert _nadlinger_completeness_run(300_000, 0.13) > 0


@pytest.mark.slow
def test_phase_error_needs_far_fewer_rounds_than_eat() -> None:
    """Zhang et al. (PRL 131, 140801 (2023), abstract) report that the complementarity analysis
    needs less than a third of the data the EAT analysis needs on Nadlinger et al.'s ion-trap
    data. Same check here at S = 2.64, Q = 1.8%, f = 1, eps = 1e-10: the EAT bound gives no key at
    3e5 rounds for any test fraction tried, the phase-error bound gives key at 1e5."""
    common = {"chsh": 2.64, "qber": 0.018, "eps": 1e-10, "ec_efficiency": 1.0}
    for gamma in (0.02, 0.04, 0.07, 0.1, 0.15):
        assert _key("eat", {**common, **_spot_check(300_000, gamma)}) == 0
    pe = finite_key(method="phase-error", **common, **_spot_check(100_000, 0.3))
    assert pe.finite_key_bits > 0


# ------------------------------------------------------------------------------ shared properties


def _key(method: Any, kwargs: dict[str, Any]) -> int:
    return finite_key(method=method, **kwargs).finite_key_bits


def _paper_like(n_rounds: int, *, chsh: float = 2.5758, qber: float = 0.036) -> dict[str, Any]:
    return {
        "rounds": n_rounds,
        "key_rounds": round(n_rounds * 105_976 / 405_145),
        "test_rounds": round(n_rounds * 270_097 / 405_145),
        "chsh": chsh,
        "qber": qber,
        "eps": 1e-5,
        "ec_efficiency": 1.122,
    }


def _nad_like(n_rounds: int, *, chsh: float = 2.64, qber: float = 0.018) -> dict[str, Any]:
    counts = _spot_check(n_rounds, NAD_GAMMA)
    return {"chsh": chsh, "qber": qber, "eps": 1e-10, "ec_efficiency": 1.0, **counts}


@pytest.mark.parametrize(
    ("method", "make", "size"),
    [
        ("phase-error", _paper_like, 405_145),
        ("geat", _paper_like, 405_145),
        ("eat", _nad_like, 1_500_000),
    ],
)
def test_monotonicity(method: str, make: Any, size: int) -> None:
    """More rounds -> more key; higher S -> more key; higher Q -> less key."""

    def key(**kw: Any) -> int:
        return _key(method, make(**kw))

    base = key(n_rounds=size)
    assert base > 0
    assert key(n_rounds=2 * size) > base
    assert key(n_rounds=size // 2) < base
    s0, q0 = (2.64, 0.018) if method == "eat" else (2.5758, 0.036)
    assert key(n_rounds=size, chsh=s0 + 0.02) > base
    assert key(n_rounds=size, chsh=s0 - 0.02) < base
    assert key(n_rounds=size, qber=q0 + 0.005) < base
    assert key(n_rounds=size, qber=q0 - 0.005) > base


@pytest.mark.parametrize("method", ["phase-error", "geat", "eat"])
def test_finite_key_never_exceeds_asymptotic(method: Any) -> None:
    for kw in (_paper_like(405_145), _paper_like(4_000_000), _nad_like(1_500_000)):
        res = finite_key(method=method, **kw)
        assert res.finite_key_bits <= res.asymptotic_rate * res.inputs.key_rounds


@pytest.mark.parametrize("method", ["phase-error", "geat", "eat"])
def test_hopeless_inputs_give_zero(method: Any) -> None:
    assert _key(method, _paper_like(405_145, chsh=2.01, qber=0.2)) == 0
    assert _key(method, _paper_like(2_799, chsh=2.504, qber=0.069)) == 0
    assert _key(method, _nad_like(1_000)) == 0


@settings(max_examples=40, deadline=None)
@given(
    n_rounds=st.integers(min_value=100, max_value=10**8),
    key_frac=st.floats(min_value=0.05, max_value=0.9),
    test_frac=st.floats(min_value=0.05, max_value=0.9),
    chsh=st.floats(min_value=2.0001, max_value=TSIRELSON),
    qber=st.floats(min_value=0.0, max_value=0.49),
    log_eps=st.floats(min_value=-15.0, max_value=-2.0),
)
def test_phase_error_bound_properties(
    n_rounds: int, key_frac: float, test_frac: float, chsh: float, qber: float, log_eps: float
) -> None:
    """0 <= key <= asymptotic rate x key rounds, and the reported e_U >= the relation at S."""
    key_rounds = max(1, int(n_rounds * key_frac))
    test_rounds = max(1, min(n_rounds - key_rounds, int(n_rounds * test_frac)))
    if key_rounds + test_rounds > n_rounds:
        return
    res = finite_key(
        method="phase-error",
        rounds=n_rounds,
        key_rounds=key_rounds,
        test_rounds=test_rounds,
        chsh=chsh,
        qber=qber,
        eps=10.0**log_eps,
        ec_efficiency=1.05,
    )
    assert isinstance(res.finite_key_bits, int)
    assert 0 <= res.finite_key_bits <= res.asymptotic_rate * key_rounds
    assert res.details.phase_error_upper >= res.details.phase_error_from_chsh
    assert res.eps.correctness + res.eps.secrecy <= 10.0**log_eps * (1 + 1e-9)
