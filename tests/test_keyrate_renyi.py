"""Renyi-GEAT bound (Renyi entropy accumulation + Renyi privacy amplification), protocol as run."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from keyrate_support import EXPERIMENT, PAPER
from qrepeater.cli import app
from qrepeater.diqkd.keyrate import (
    GeatDetails,
    RenyiDetails,
    SettingProbabilities,
    binary_entropy,
    chsh_entropy_bound,
    finite_key,
    minimum_rounds,
    renyi_entropy_bound,
)
from qrepeater.diqkd.keyrate.common import (
    CHORD_LABEL,
    NO_DEVICE_MEMORY,
    PROTOCOL_AS_RUN,
    _pironio,
    _pironio_slope,
)
from qrepeater.diqkd.keyrate.renyi import _t_alpha_lower
from qrepeater.errors import ParameterError


def test_renyi_geat_on_paper_statistics_meets_the_issue_goal() -> None:
    """Fitted (experiment's) settings: above the paper's 1,917 bits with no label assumption,
    below the asymptotic rate with leakage on the key rounds; the parts add up."""
    res = finite_key(method="renyi-geat", setting_probabilities=EXPERIMENT, **PAPER)
    leak = 1.122 * 105_976 * float(binary_entropy(0.036))
    ceiling = 105_976 * chsh_entropy_bound(2.5758) - leak
    assert 1_917 < res.finite_key_bits < ceiling
    assert res.protocol == PROTOCOL_AS_RUN
    assert NO_DEVICE_MEMORY in res.assumptions
    assert CHORD_LABEL not in res.assumptions
    d = res.details
    assert isinstance(d, RenyiDetails)
    assert d.entropy_bits == pytest.approx(
        d.first_order_bits - d.second_order_bits - d.k_alpha_bits
    )
    assert res.finite_key_bits == math.floor(
        d.entropy_bits - leak - d.verification_bits - d.privacy_amplification_bits
    )
    assert d.privacy_amplification_bits == pytest.approx(
        d.alpha / (d.alpha - 1.0) * math.log2(1.0 / (0.99e-5))
    )
    assert 1.0 < d.alpha < 1.5
    assert 2.0 < d.tangent_chsh < 2 * math.sqrt(2)
    assert res.eps.correctness + res.eps.privacy_amplification == pytest.approx(1e-5)
    assert res.eps.smoothing is None
    assert res.to_dict()["eps"]["smoothing"] is None


def test_renyi_geat_never_below_geat_and_smaller_constant() -> None:
    """Same min-tradeoff function and K(alpha) as the smooth GEAT; the Renyi route drops the
    smoothing cost g(eps)/(alpha - 1) and can only shrink the variance term, so it never
    certifies less (to the optimiser's 1 bit)."""
    for sp in (None, EXPERIMENT):
        r = finite_key(method="renyi-geat", setting_probabilities=sp, **PAPER)
        g = finite_key(method="geat", setting_probabilities=sp, **PAPER)
        assert isinstance(r.details, RenyiDetails)
        assert isinstance(g.details, GeatDetails)
        assert r.finite_key_bits >= g.finite_key_bits - 1
        assert r.details.second_order_bits >= 0.0
        assert r.details.privacy_amplification_bits < g.details.constant_bits


def test_t_alpha_lower_bound_is_rigorous_and_tight() -> None:
    """The grid lower bound on T_alpha = inf_S [rate - f - beta (ln 2/2) V] never exceeds a
    brute-force minimum on a 50x finer grid, and is within 0.1% of it."""
    rng = np.random.default_rng(7)
    s_fine = np.linspace(-2 * math.sqrt(2), 2 * math.sqrt(2), 80_001)
    for _ in range(20):
        p_key = float(rng.uniform(0.05, 0.6))
        s_t = float(rng.uniform(2.01, 2.82))
        beta = float(10 ** rng.uniform(-4, -0.5))
        inv_p = float(rng.uniform(16.0, 80.0))
        slope = p_key * _pironio_slope(s_t)
        lt = math.log2(9.0)
        lb, _ = _t_alpha_lower(
            p_key=p_key, s_t=s_t, slope=slope, inv_p_sum=inv_p, beta=beta, log_term=lt
        )
        eta = np.array([_pironio(float(s)) for s in s_fine])
        tangent = _pironio(s_t) + _pironio_slope(s_t) * (s_fine - s_t)
        v = (lt + np.sqrt(2.0 + slope**2 * (inv_p - s_fine**2))) ** 2
        brute = float(np.min(p_key * (eta - tangent) - beta * math.log(2.0) / 2.0 * v))
        assert lb <= brute + 1e-12
        assert brute - lb <= 1e-3 * abs(brute) + 1e-9


def test_renyi_geat_tends_to_the_pironio_rate() -> None:
    """As N grows the key per key round tends to eta(S) - f h(Q) from below."""
    sp = SettingProbabilities(key=0.5, test=(0.1, 0.1, 0.1, 0.1), discard=0.1)
    n_total = 10**11
    res = finite_key(
        method="renyi-geat",
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
    per_round = res.finite_key_bits / (n_total // 2)
    assert per_round < ideal
    assert per_round == pytest.approx(ideal, rel=5e-3)


def test_renyi_entropy_bound_validates() -> None:
    sp = SettingProbabilities(key=0.5, test=(0.1, 0.1, 0.1, 0.1), discard=0.1)
    good: dict[str, Any] = {"rounds": 1000, "settings": sp, "chsh_threshold": 2.6, "eps_pa": 1e-6}
    for change in (
        {"rounds": 0},
        {"rounds": 10.0},
        {"chsh_threshold": 2.0},
        {"chsh_threshold": 2.9},
        {"eps_pa": 0.0},
        {"eps_pa": 1.0},
        {"settings": None},
    ):
        with pytest.raises(ParameterError):
            renyi_entropy_bound(**{**good, **change})


def test_renyi_geat_minimum_rounds_brackets_first_key() -> None:
    kw: dict[str, Any] = {"chsh": 2.5758, "qber": 0.036, "eps": 1e-5, "ec_efficiency": 1.122}
    fr: dict[str, Any] = {"key_fraction": 105_976 / 405_145, "test_fraction": 270_097 / 405_145}
    n_min = minimum_rounds(method="renyi-geat", setting_probabilities=EXPERIMENT, **kw, **fr)
    assert n_min is not None

    def key(n: int) -> int:
        return finite_key(
            method="renyi-geat",
            rounds=n,
            key_rounds=round(n * fr["key_fraction"]),
            test_rounds=round(n * fr["test_fraction"]),
            setting_probabilities=EXPERIMENT,
            **kw,
        ).finite_key_bits

    assert key(n_min) > 0
    assert key(math.floor(n_min / 1.011)) == 0
    # fewer rounds than the smooth GEAT needs at the same fractions
    n_geat = minimum_rounds(method="geat", setting_probabilities=EXPERIMENT, **kw, **fr)
    assert n_geat is not None
    assert n_min < n_geat


@settings(max_examples=25, deadline=None)
@given(
    n_rounds=st.integers(min_value=1_000, max_value=10**9),
    key_frac=st.floats(min_value=0.05, max_value=0.6),
    test_frac=st.floats(min_value=0.05, max_value=0.35),
    chsh=st.floats(min_value=2.2, max_value=2.8),
    qber=st.floats(min_value=0.0, max_value=0.1),
    log_eps=st.floats(min_value=-12.0, max_value=-3.0),
)
def test_renyi_geat_bounded_and_monotone(
    n_rounds: int, key_frac: float, test_frac: float, chsh: float, qber: float, log_eps: float
) -> None:
    """0 <= key <= asymptotic rate x key rounds; never decreasing in S or N, never increasing in
    Q (to 1 bit for the optimiser); never below the smooth GEAT on the same inputs."""

    def run(method: str, n: int = n_rounds, s: float = chsh, q: float = qber) -> int:
        k, t = max(1, round(n * key_frac)), max(1, round(n * test_frac))
        res = finite_key(
            method=method,  # type: ignore[arg-type]
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

    base = run("renyi-geat")
    assert run("renyi-geat", s=min(chsh + 0.01, 2 * math.sqrt(2))) >= base - 1
    assert run("renyi-geat", q=qber + 0.005) <= base + 1
    assert run("renyi-geat", n=2 * n_rounds) >= base - 1
    assert base >= run("geat") - 1


def test_cli_keyrate_renyi_geat_json() -> None:
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
        "renyi-geat",
        "--p-x0",
        "0.7786295345631634",
        "--p-y2",
        "0.33594344127573195",
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert d["method"] == "renyi-geat"
    expected = finite_key(method="renyi-geat", setting_probabilities=EXPERIMENT, **PAPER)
    assert d["finite_key_bits"] == expected.finite_key_bits
    assert NO_DEVICE_MEMORY in d["assumptions"]
    assert d["eps"]["fixed_in_advance"] is True
    assert d["eps"]["smoothing"] is None
