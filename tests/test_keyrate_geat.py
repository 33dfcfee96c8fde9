"""GEAT bound for the protocol as run, minimum rounds, properties shared by the methods."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from keyrate_support import EXPERIMENT, PAPER
from qrepeater.cli import app
from qrepeater.diqkd.keyrate import (
    METHODS,
    SettingProbabilities,
    asymptotic_rate,
    binary_entropy,
    chsh_entropy_bound,
    finite_key,
    geat_entropy_bound,
    minimum_rounds,
)
from qrepeater.diqkd.keyrate.common import (
    CHORD_LABEL,
    DEVICE_MEMORY_ALLOWED,
    NO_DEVICE_MEMORY,
    PROTOCOL_AS_RUN,
)
from qrepeater.errors import ParameterError


def test_geat_on_paper_statistics_is_positive_and_label_free() -> None:
    """The protocol as run, bounded by a published theorem without the Jordan-label reduction;
    the key is positive with both setting distributions and the parts add up."""
    for sp in (None, EXPERIMENT):
        res = finite_key(method="geat", setting_probabilities=sp, **PAPER)
        assert res.finite_key_bits > 0
        assert res.protocol == PROTOCOL_AS_RUN
        assert NO_DEVICE_MEMORY in res.assumptions
        assert CHORD_LABEL not in res.assumptions
        d = res.details
        assert d.entropy_bits == pytest.approx(
            d.first_order_bits - d.variance_bits - d.constant_bits - d.k_alpha_bits
        )
        leak = 1.122 * 105_976 * float(binary_entropy(0.036))
        assert res.leak_ec_bits == pytest.approx(leak)
        assert res.finite_key_bits == math.floor(
            d.entropy_bits - leak - d.verification_bits - d.privacy_amplification_bits
        )
        assert 1.0 < d.alpha < 1.5
        assert 2.0 < d.tangent_chsh < 2 * math.sqrt(2)
        assert res.eps.correctness + res.eps.secrecy == pytest.approx(1e-5)


def test_geat_rare_test_pairs_cost_variance() -> None:
    """The experiment's X = 1 test pairs are rare (p = 0.074): the importance-weighted score then
    has a large variance and the second-order term grows, so equal test pairs give more key."""
    equal = finite_key(method="geat", **PAPER)
    skew = finite_key(method="geat", setting_probabilities=EXPERIMENT, **PAPER)
    assert skew.details.f_variance_max > equal.details.f_variance_max
    assert skew.finite_key_bits < equal.finite_key_bits


def test_geat_first_order_is_the_pironio_rate() -> None:
    """First order: N p_key eta(S) at the tangent S_t = S_thr, and the finite key per key round
    tends to eta(S) - f h(Q) (the Devetak-Winter rate with leakage f h(Q)) as N grows."""
    sp = SettingProbabilities(key=0.5, test=(0.1, 0.1, 0.1, 0.1), discard=0.1)
    b = geat_entropy_bound(
        rounds=10**12, settings=sp, chsh_threshold=2.6, eps_smooth=1e-6, eps_ea=1e-6
    )
    assert b.first_order_bits / (0.5 * 10**12) == pytest.approx(chsh_entropy_bound(2.6), rel=1e-3)
    n_total = 10**11
    res = finite_key(
        method="geat",
        rounds=n_total,
        key_rounds=n_total // 2,
        test_rounds=4 * n_total // 10,
        chsh=2.6,
        qber=0.03,
        eps=1e-8,
        ec_efficiency=1.1,
        setting_probabilities=sp,
    )
    ideal = chsh_entropy_bound(2.6) - 1.1 * float(binary_entropy(0.03))
    assert res.finite_key_bits / (n_total // 2) == pytest.approx(ideal, rel=1e-2)
    assert res.finite_key_bits / (n_total // 2) < ideal


def test_geat_entropy_bound_validates() -> None:
    sp = SettingProbabilities(key=0.5, test=(0.1, 0.1, 0.1, 0.1), discard=0.1)
    good: dict[str, Any] = {
        "rounds": 1000,
        "settings": sp,
        "chsh_threshold": 2.6,
        "eps_smooth": 1e-6,
        "eps_ea": 1e-6,
    }
    for change in (
        {"rounds": 0},
        {"rounds": 10.0},
        {"chsh_threshold": 2.0},
        {"chsh_threshold": 2.9},
        {"eps_smooth": 0.0},
        {"eps_ea": 1.0},
        {"settings": None},
    ):
        with pytest.raises(ParameterError):
            geat_entropy_bound(**{**good, **change})


def test_geat_beats_the_chord_relation_at_large_n() -> None:
    """The GEAT reaches the Pironio rate; the chord relation cannot (it lies above the curve), so
    with enough rounds the GEAT certifies more than the phase-error bound."""
    big = {**PAPER, "rounds": 40_514_500, "key_rounds": 10_597_600, "test_rounds": 27_009_700}
    assert finite_key(method="geat", **big).finite_key_bits > (
        finite_key(method="phase-error", **big).finite_key_bits
    )


# ------------------------------------------------------------------------------ minimum rounds


@pytest.mark.parametrize("method", ["phase-error", "geat"])
def test_minimum_rounds_brackets_the_first_positive_key(method: Any) -> None:
    kw = {"chsh": 2.5758, "qber": 0.036, "eps": 1e-5, "ec_efficiency": 1.122}
    fr = {"key_fraction": 105_976 / 405_145, "test_fraction": 270_097 / 405_145}
    n_min = minimum_rounds(method=method, **kw, **fr)
    assert n_min is not None

    def key(n: int) -> int:
        return finite_key(
            method=method,
            rounds=n,
            key_rounds=round(n * fr["key_fraction"]),
            test_rounds=round(n * fr["test_fraction"]),
            **kw,
        ).finite_key_bits

    assert key(n_min) > 0
    assert key(math.floor(n_min / 1.011)) == 0
    assert 10_000 < n_min < 405_145  # both give key at the paper's N


def test_minimum_rounds_none_and_validation() -> None:
    assert (
        minimum_rounds(
            method="geat",
            chsh=2.05,
            qber=0.2,
            eps=1e-5,
            key_fraction=0.3,
            test_fraction=0.6,
            max_rounds=10**8,
        )
        is None
    )
    with pytest.raises(ParameterError):
        minimum_rounds(
            method="geat", chsh=2.6, qber=0.02, eps=1e-5, key_fraction=0.6, test_fraction=0.6
        )


# ------------------------------------------------------------------------------ properties


def _counts(n_rounds: int, key_frac: float, test_frac: float) -> tuple[int, int]:
    return max(1, round(n_rounds * key_frac)), max(1, round(n_rounds * test_frac))


@settings(max_examples=25, deadline=None)
@given(
    method=st.sampled_from(["phase-error", "geat"]),
    n_rounds=st.integers(min_value=1_000, max_value=10**9),
    key_frac=st.floats(min_value=0.05, max_value=0.6),
    test_frac=st.floats(min_value=0.05, max_value=0.35),
    chsh=st.floats(min_value=2.2, max_value=2.8),
    qber=st.floats(min_value=0.0, max_value=0.1),
    log_eps=st.floats(min_value=-12.0, max_value=-3.0),
)
def test_properties_bounded_and_monotone(
    method: Any,
    n_rounds: int,
    key_frac: float,
    test_frac: float,
    chsh: float,
    qber: float,
    log_eps: float,
) -> None:
    """For each method of the protocol as run: 0 <= key <= asymptotic rate x key rounds, and the
    key never decreases with S or N and never increases with Q (the bounds are monotone; the GEAT
    optimiser may be off by a bit, so monotonicity is checked to 1 bit)."""

    def key(n: int = n_rounds, s: float = chsh, q: float = qber) -> int:
        k, t = _counts(n, key_frac, test_frac)
        res = finite_key(
            method=method,
            rounds=n,
            key_rounds=k,
            test_rounds=t,
            chsh=s,
            qber=q,
            eps=10.0**log_eps,
            ec_efficiency=1.1,
        )
        assert 0 <= res.finite_key_bits <= res.asymptotic_rate * k
        return res.finite_key_bits

    base = key()
    assert key(s=min(chsh + 0.01, 2 * math.sqrt(2))) >= base - 1
    assert key(q=qber + 0.005) <= base + 1
    assert key(n=2 * n_rounds) >= base - 1


@pytest.mark.parametrize("method", METHODS)
def test_every_method_reports_assumptions_and_protocol(method: Any) -> None:
    res = finite_key(method=method, **PAPER)
    assert res.assumptions
    assert all(isinstance(a, str) and a for a in res.assumptions)
    assert res.protocol
    assert res.asymptotic_rate == asymptotic_rate(chsh=2.5758, qber=0.036)


def test_assumption_labels_say_what_each_theorem_needs() -> None:
    """The GEAT label names the theorem's non-signalling condition and what it excludes (device
    memory of earlier key outputs reaching announced test outputs), not a blanket 'no memory';
    the EAT (spot-checking) allows device memory; the chord alone carries the label reduction."""
    geat = finite_key(method="geat", **PAPER)
    eat = finite_key(method="eat", **PAPER)
    chord = finite_key(method="phase-error", **PAPER)
    label = NO_DEVICE_MEMORY
    for phrase in ("non-signalling", "Thm. 4.3", "earlier key", "announced", "Markov"):
        assert phrase in label
    assert label in geat.assumptions
    assert label not in eat.assumptions
    assert DEVICE_MEMORY_ALLOWED in eat.assumptions
    assert CHORD_LABEL in chord.assumptions
    assert CHORD_LABEL not in geat.assumptions


# ------------------------------------------------------------------------------ CLI

runner = CliRunner()


def test_cli_keyrate_geat_json() -> None:
    args = [
        "keyrate",
        "--chsh",
        "2.5758",
        "--qber",
        "0.036",
        "--rounds",
        "405145",
        "--key-rounds",
        "105976",
        "--test-rounds",
        "270097",
        "--ec-efficiency",
        "1.122",
        "--method",
        "geat",
        "--p-x0",
        "0.7786295345631634",
        "--p-y2",
        "0.33594344127573195",
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert {"asymptotic_rate", "finite_key_bits", "method"} <= set(d)
    assert d["method"] == "geat"
    assert (
        d["finite_key_bits"]
        == finite_key(method="geat", setting_probabilities=EXPERIMENT, **PAPER).finite_key_bits
    )
    assert NO_DEVICE_MEMORY in d["assumptions"]
    assert d["eps"]["fixed_in_advance"] is True
    assert d["settings"]["key"] == pytest.approx(105_976 / 405_145, rel=1e-3)


@pytest.mark.parametrize(
    "extra",
    [["--method", "magic"], ["--p-x0", "0.5"], ["--p-x0", "1.5", "--p-y2", "0.3"]],
)
def test_cli_keyrate_rejects_bad_method_and_settings(extra: list[str]) -> None:
    base = ["keyrate", "--chsh", "2.5", "--qber", "0.03", "--rounds", "1000"]
    result = runner.invoke(app, [*base, "--key-rounds", "300", "--test-rounds", "600", *extra])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


@pytest.mark.slow
@settings(max_examples=6, deadline=None)
@given(
    n_rounds=st.integers(min_value=200_000, max_value=10**8),
    gamma=st.floats(min_value=0.01, max_value=0.2),
    chsh=st.floats(min_value=2.5, max_value=2.8),
    qber=st.floats(min_value=0.0, max_value=0.05),
)
def test_eat_properties_bounded_and_monotone(
    n_rounds: int, gamma: float, chsh: float, qber: float
) -> None:
    """The same properties for the EAT (spot-checking variant, no discards; slow: ~1 s per
    evaluation), monotonicity to 1 bit for the optimiser."""

    def key(n: int = n_rounds, s: float = chsh, q: float = qber) -> int:
        t = max(1, round(n * gamma))
        res = finite_key(
            method="eat",
            rounds=n,
            key_rounds=n - t,
            test_rounds=t,
            chsh=s,
            qber=q,
            eps=1e-8,
            ec_efficiency=1.1,
        )
        assert 0 <= res.finite_key_bits <= res.asymptotic_rate * (n - t)
        return res.finite_key_bits

    base = key()
    assert key(s=min(chsh + 0.01, 2 * math.sqrt(2))) >= base - 1
    assert key(q=qber + 0.005) <= base + 1
    assert key(n=2 * n_rounds) >= base - 1
