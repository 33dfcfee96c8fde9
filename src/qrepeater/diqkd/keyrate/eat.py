"""Finite key by entropy accumulation for the spot-checking protocol (NOT the protocol as run).

Dupuis-Fawzi EAT (IEEE TIT 65, 7596 (2019)) in the form of Tan et al. (Quantum 6, 880 (2022),
"Improved DIQKD protocols with finite-size analysis") as stated by Nadlinger et al., Nature 607,
682 (2022), Supplementary Proposition 2, Eq. (73), for the spot-checking protocol of
Arnon-Friedman et al. (Nat. Commun. 9, 459 (2018)): test outputs are never announced, Alice's
test outputs are reconciled and stay in the raw key, and Bob's test outputs are paid for by a
max-entropy term of about n gamma bits. That structure needs a small test fraction gamma; with
the experiment's gamma = 2/3 it gives no key, which is a property of this protocol variant, not
of entropy accumulation (:mod:`qrepeater.diqkd.keyrate.geat` treats the protocol as run). The
Tan et al. refinement of the second-order term (the infimum over winning probabilities of
Delta - (alpha - 1) V, Eq. (73)) is essential: with the plain Dupuis-Fawzi term the key on
Nadlinger et al.'s data is negative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from qrepeater.diqkd.keyrate.asymptotic import asymptotic_rate
from qrepeater.diqkd.keyrate.common import (
    _LN2,
    _S_TOL,
    ASSUMPTIONS,
    PROTOCOL_SPOT_CHECKING,
    TSIRELSON,
    EpsilonSplit,
    FiniteKeyInputs,
    FiniteKeyResult,
    FloatArray,
    _check_int,
    _check_prob,
    _floor_bits,
    _h,
    _maximise_scalar,
    _pironio,
    _pironio_slope,
    _privacy_amplification_bits,
    _theta,
    _verification_bits,
)
from qrepeater.errors import ParameterError

__all__ = ["EAT_SPLIT", "EatBound", "EatDetails", "eat_entropy_bound", "eat_key"]

_OMEGA_MIN = (1.0 - 1.0 / math.sqrt(2.0)) / 2.0  # smallest quantum CHSH winning probability
_OMEGA_MAX = (1.0 + 1.0 / math.sqrt(2.0)) / 2.0  # largest quantum CHSH winning probability
_EAT_REGISTER_DIM = 4  # per-round register (A_i, B'_i), two bits (Nadlinger et al. Suppl. S11)
_EAT_MAX_ENTROPY_DIM = 2  # Bob's test outputs B'_i, one bit
_OMEGA_GRID = 4001  # grid for the infimum over quantum winning probabilities in Eq. (73)

EAT_SPLIT = (0.01, 0.01, 0.8, 0.05)
"""A-priori split: eps_EC = 0.01 eps; secrecy budget s = eps - eps_EC = eps_EA = eps_PA + 2 eps_s
with eps_PA = 0.01 s; eps_s' = 0.8 eps_s (EAT), eps_s'' = 0.05 eps_s (max-entropy), the rest of
eps_s for the chain rule. Fixed before any data."""


@dataclass(frozen=True)
class EatBound:
    """Result of :func:`eat_entropy_bound`: lower bound on H_min^{eps_s}(A | X Y E) and its parts.

    ``entropy_bits`` = ``first_order_bits`` - ``second_order_bits`` - ``constant_bits`` -
    ``max_entropy_bits`` - ``chain_rule_bits``, in the notation of Nadlinger et al. Suppl. Eq. (73):
    first order n g_t(omega_thr); second order -n inf_omega[Delta - (alpha-1) V] + n (alpha-1)^2 K;
    constant (theta + alpha log 1/eps_EA)/(alpha-1); max-entropy of Bob's test outputs
    n gamma + n (alpha''-1) log^2 5 + (theta'' + alpha'' log 1/eps_EA)/(alpha''-1); chain rule
    3 theta(eps_s - eps_s' - 2 eps_s''). t is the tangent point (a CHSH winning probability).
    """

    entropy_bits: float
    first_order_bits: float
    second_order_bits: float
    constant_bits: float
    max_entropy_bits: float
    chain_rule_bits: float
    tangent_winning_probability: float
    alpha: float
    alpha_max_entropy: float

    @property
    def tangent_chsh(self) -> float:
        """The tangent point as a CHSH value, 8 t - 4."""
        return 8.0 * self.tangent_winning_probability - 4.0


@dataclass(frozen=True)
class EatDetails:
    """Intermediate quantities of the EAT bound (see :class:`EatBound`)."""

    test_probability: float
    key_probability: float
    discard_probability: float
    threshold_winning_probability: float
    tangent_chsh: float
    tangent_winning_probability: float
    alpha: float
    alpha_max_entropy: float
    eps_smooth_min: float
    eps_smooth_max: float
    first_order_bits: float
    second_order_bits: float
    constant_bits: float
    max_entropy_bits: float
    chain_rule_bits: float
    entropy_bits: float
    verification_bits: float
    privacy_amplification_bits: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return dict(self.__dict__)


def _eta_omega(omega: FloatArray, scale: float) -> FloatArray:
    """scale * eta(omega), Nadlinger et al. Suppl. Eq. (62): 0 on [1/4, 3/4], else the CHSH bound
    with S = 8 omega - 4 (or its mirror 4 - 8 omega)."""
    s = np.where(omega >= 0.5, 8.0 * omega - 4.0, 4.0 - 8.0 * omega)
    x = np.sqrt(np.clip(s * s / 4.0 - 1.0, 0.0, 1.0))
    p = (1.0 + x) / 2.0
    from scipy import special  # imported here: keeps CLI start-up fast

    ent = (special.entr(p) + special.entr(1.0 - p)) / _LN2
    return np.asarray(np.where(s > 2.0, scale * (1.0 - ent), 0.0), dtype=np.float64)


@dataclass(frozen=True)
class _EatProblem:
    rounds: int
    gamma: float  # test probability
    scale: float  # probability that Alice's output enters the raw key (key + test)
    omega_thr: float
    theta_min: float  # theta(eps_s')
    log_ea: float  # log2(1/eps_EA)
    omega: FloatArray  # grid on [omega_min, omega_max]
    eta_grid: FloatArray  # scale * eta on the grid

    def tangent(self, t: float) -> tuple[float, float]:
        """(g_t value at t, slope) of the tangent to scale*eta at winning probability t."""
        s = 8.0 * t - 4.0
        return self.scale * _pironio(s), self.scale * 8.0 * _pironio_slope(s)

    def inner(self, t: float, alpha: float) -> tuple[float, float, float]:
        """(inf_omega [Delta - (alpha-1) V], K_alpha, g_t(omega_thr)) at tangent t, Eqs. 68-70."""
        eta_t, slope = self.tangent(t)

        def g(w: FloatArray | float) -> FloatArray | float:
            return eta_t + (w - t) * slope

        g1 = float(g(1.0))
        g0 = float(g(0.0))
        f0 = g0 / self.gamma + (1.0 - 1.0 / self.gamma) * g1  # f_t(delta_0), Eq. (64)
        log_d2 = math.log2(2.0 * _EAT_REGISTER_DIM**2 + 1.0)  # log 33

        def objective(w: FloatArray, eta: FloatArray) -> FloatArray:
            gw = np.asarray(g(w), dtype=np.float64)
            second = self.gamma * (1.0 - w) * f0 * f0 + (1.0 - self.gamma * (1.0 - w)) * g1 * g1
            var = np.maximum(second - gw * gw, 0.0)
            v = _LN2 / 2.0 * (log_d2 + np.sqrt(2.0 + var)) ** 2
            return np.asarray(eta - gw - (alpha - 1.0) * v, dtype=np.float64)

        vals = objective(self.omega, self.eta_grid)
        i = int(np.argmin(vals))
        best = float(vals[i])
        lo = self.omega[max(i - 1, 0)]
        hi = self.omega[min(i + 1, self.omega.size - 1)]
        if hi > lo:  # refine: the grid minimum can only overestimate the infimum

            def scalar(w: float) -> float:
                arr = np.array([w])
                return float(objective(arr, _eta_omega(arr, self.scale))[0])

            from scipy import optimize  # imported here: keeps CLI start-up fast

            res = optimize.minimize_scalar(
                scalar, bounds=(float(lo), float(hi)), method="bounded", options={"xatol": 1e-12}
            )
            best = min(best, float(res.fun))
        spread = math.log2(_EAT_REGISTER_DIM) + g1 - float(g(_OMEGA_MIN))  # log d + Max - Min
        ln_term = spread * _LN2 + math.log1p(math.exp(2.0 - spread * _LN2))  # ln(2^spread + e^2)
        k_alpha = 2.0 ** ((alpha - 1.0) * spread) * ln_term**3 / (6.0 * (2.0 - alpha) ** 3 * _LN2)
        return best, k_alpha, float(g(self.omega_thr))

    def entropy(self, t: float, alpha: float) -> tuple[float, float, float]:
        """(first order, second order, constant) bits of the EAT bound, Eq. (73)."""
        inf_term, k_alpha, g_thr = self.inner(t, alpha)
        n = self.rounds
        first = n * g_thr
        second = -n * inf_term + n * (alpha - 1.0) ** 2 * k_alpha
        const = (self.theta_min + alpha * self.log_ea) / (alpha - 1.0)
        return first, second, const


def eat_entropy_bound(
    *,
    rounds: int,
    test_probability: float,
    discard_probability: float,
    chsh_threshold: float,
    eps_smooth: float,
    eps_smooth_min: float,
    eps_smooth_max: float,
    eps_ea: float,
) -> EatBound:
    """Lower bound on H_min^{eps_s}(A | X Y T E) of Alice's raw key for the spot-checking protocol.

    Implements the entropy terms of Nadlinger et al., Nature 607, 682 (2022), Suppl. Proposition 2,
    Eq. (73) -- the Dupuis-Fawzi EAT (IEEE TIT 65, 7596 (2019)) in the form of Tan et al., Quantum
    6, 880 (2022), with the min-tradeoff function tangent to the CHSH bound (Eqs. (61)-(64)) --
    generalised to discarded rounds by scaling the single-round bound by the probability that
    Alice's output is kept: H(A_i|X_i Y_i E) >= (1 - p_discard) eta(omega) (Alice's output enters
    the raw key on key and test rounds, where Pironio's bound holds for either setting). Each round
    is a test round with probability ``test_probability`` (CHSH pairs uniform), accepted if the
    CHSH score is at least ``chsh_threshold``. The tangent point t (scipy bounded Brent after a
    grid), alpha' in (1, 2) and alpha'' in (1, 1 + 1/log2 5) (closed form) are optimised. The
    smoothing parameters must satisfy eps_s' + 2 eps_s'' < eps_s (``eps_smooth_min`` = eps_s',
    ``eps_smooth_max`` = eps_s''). Secrecy of the extracted key: max(eps_EA, eps_PA + 2 eps_s).
    """
    n = _check_int("rounds", rounds)
    if n < 1:
        raise ParameterError(f"rounds must be >= 1, got {rounds}")
    gamma = _check_prob("test_probability", test_probability)
    p_disc = _check_prob("discard_probability", discard_probability)
    if gamma <= 0.0 or gamma + p_disc >= 1.0:
        raise ParameterError("need 0 < test_probability and test + discard probability < 1")
    s_thr = float(chsh_threshold)
    if not math.isfinite(s_thr) or not 2.0 < s_thr <= TSIRELSON + _S_TOL:
        raise ParameterError(f"CHSH threshold must lie in (2, 2*sqrt(2)], got {chsh_threshold!r}")
    for name, e in (
        ("eps_smooth", eps_smooth),
        ("eps_smooth_min", eps_smooth_min),
        ("eps_smooth_max", eps_smooth_max),
        ("eps_ea", eps_ea),
    ):
        if not math.isfinite(e) or not 0.0 < e < 1.0:
            raise ParameterError(f"{name} must lie in (0, 1), got {e!r}")
    if eps_smooth_min + 2.0 * eps_smooth_max >= eps_smooth:
        raise ParameterError("need eps_smooth_min + 2 eps_smooth_max < eps_smooth (Eq. (72))")

    omega = np.linspace(_OMEGA_MIN, _OMEGA_MAX, _OMEGA_GRID)
    scale = 1.0 - p_disc
    problem = _EatProblem(
        rounds=n,
        gamma=gamma,
        scale=scale,
        omega_thr=(min(s_thr, TSIRELSON) + 4.0) / 8.0,
        theta_min=_theta(eps_smooth_min),
        log_ea=math.log2(1.0 / eps_ea),
        omega=omega,
        eta_grid=_eta_omega(omega, scale),
    )

    def best_alpha(t: float) -> tuple[float, float]:
        def value(log_u: float) -> float:
            first, second, const = problem.entropy(t, 1.0 + math.exp(log_u))
            return first - second - const

        log_u, val = _maximise_scalar(value, math.log(1e-7), math.log(0.95), 12)
        return 1.0 + math.exp(log_u), val

    # the tangent point: winning probability in (3/4, omega_max), searched in the CHSH variable
    t_lo = 0.75 + 1e-6
    t_hi = _OMEGA_MAX - 1e-6
    t_best, _ = _maximise_scalar(lambda t: best_alpha(t)[1], t_lo, t_hi, 16)
    alpha, _ = best_alpha(t_best)
    first, second, const = problem.entropy(t_best, alpha)

    # H_max^{eps_s''}(B'|...) <= n gamma + n (a''-1) log^2 5 + (theta'' + a'' log 1/eps_EA)/(a''-1)
    log5 = math.log2(2.0 * _EAT_MAX_ENTROPY_DIM + 1.0)
    theta_max = _theta(eps_smooth_max)
    u_cap = 1.0 / log5
    u = math.sqrt((theta_max + problem.log_ea) / (n * log5 * log5))
    u = min(u, u_cap * (1.0 - 1e-9))
    alpha2 = 1.0 + u
    max_entropy = n * gamma + n * u * log5 * log5 + (theta_max + alpha2 * problem.log_ea) / u
    chain = 3.0 * _theta(eps_smooth - eps_smooth_min - 2.0 * eps_smooth_max)
    return EatBound(
        entropy_bits=first - second - const - max_entropy - chain,
        first_order_bits=first,
        second_order_bits=second,
        constant_bits=const,
        max_entropy_bits=max_entropy,
        chain_rule_bits=chain,
        tangent_winning_probability=t_best,
        alpha=alpha,
        alpha_max_entropy=alpha2,
    )


@dataclass(frozen=True)
class _EatEpsilons:
    correctness: float  # eps_EC
    ea: float  # eps_EA
    pa: float  # eps_PA
    smooth: float  # eps_s
    smooth_min: float  # eps_s'
    smooth_max: float  # eps_s''


def _eat_bound_with(inputs: FiniteKeyInputs, e: _EatEpsilons) -> EatBound:
    st = inputs.settings
    return eat_entropy_bound(
        rounds=inputs.rounds,
        test_probability=st.test_total,
        discard_probability=st.discard,
        chsh_threshold=inputs.s,
        eps_smooth=e.smooth,
        eps_smooth_min=e.smooth_min,
        eps_smooth_max=e.smooth_max,
        eps_ea=e.ea,
    )


def eat_key(inputs: FiniteKeyInputs) -> FiniteKeyResult:
    """Finite key by entropy accumulation for the spot-checking protocol (not the one as run).

    Protocol of Arnon-Friedman, Dupuis, Fawzi, Renner & Vidick, Nat. Commun. 9, 459 (2018) as run
    by Nadlinger et al. (2022): test rounds are not announced; Alice's outputs of key *and* test
    rounds form the raw key, reconciliation lets Bob learn all of them and Bob checks the CHSH
    score himself. Key length

        l = H - leak_EC - log2(2/eps_EC) - 2 log2(1/(2 eps_PA)),

    with H from :func:`eat_entropy_bound` (Nadlinger et al. Suppl. Eq. (73) without their
    Trevisan-extractor and authentication terms, here replaced by two-universal hashing) and
    leak_EC given, or f [n h(Q) + t h((4 - S)/8)] (Bob must also learn Alice's test outputs, which
    disagree with his guess with the CHSH losing probability). Soundness eps_EC + max(eps_EA,
    eps_PA + 2 eps_s), eps_s' + 2 eps_s'' < eps_s, split fixed in advance (:data:`EAT_SPLIT`).
    The test fraction is t/N: with the paper's 2/3 the test rounds' reconciliation and the
    n gamma max-entropy term exceed the entropy and the key is zero; this protocol variant needs
    gamma << 1. Needs equally likely test pairs.
    """
    st = inputs.settings
    if not st.uniform_test_pairs:
        raise ParameterError("the EAT method implements equally likely CHSH test pairs")
    eps = float(inputs.eps)
    f_ec, f_pa, f_min, f_max = EAT_SPLIT
    eps_ec = eps * f_ec
    budget = eps - eps_ec
    eps_pa = budget * f_pa
    eps_s = (budget - eps_pa) / 2.0
    chosen = _EatEpsilons(eps_ec, budget, eps_pa, eps_s, eps_s * f_min, eps_s * f_max)
    bound = _eat_bound_with(inputs, chosen)

    if inputs.leak_ec_bits is not None:
        leak = float(inputs.leak_ec_bits)
    else:
        lose = (4.0 - inputs.s) / 8.0
        leak = inputs.efficiency * (
            inputs.key_rounds * _h(float(inputs.qber)) + inputs.test_rounds * _h(lose)
        )
    v_bits = _verification_bits(chosen.correctness)
    pa_bits = _privacy_amplification_bits(chosen.pa)
    key = bound.entropy_bits - leak - v_bits - pa_bits
    split = EpsilonSplit(
        soundness=eps,
        correctness=chosen.correctness,
        secrecy=chosen.ea,
        privacy_amplification=chosen.pa,
        smoothing=chosen.smooth,
        parameter_estimation=chosen.ea,
        composition=(
            "soundness = eps_EC + max(eps_EA, eps_PA + 2 eps_s) with eps_EA = eps_PA + 2 eps_s; "
            f"eps_s' = {chosen.smooth_min:.3g} (EAT), eps_s'' = {chosen.smooth_max:.3g} "
            "(max-entropy of Bob's test outputs), eps_s - eps_s' - 2 eps_s'' for the chain rule"
        ),
        rule="eps_EC = 0.01 eps, eps_PA = 0.01 (eps - eps_EC), eps_s' = 0.8 eps_s, "
        "eps_s'' = 0.05 eps_s (fixed a priori)",
    )
    details = EatDetails(
        test_probability=st.test_total,
        key_probability=st.key,
        discard_probability=st.discard,
        threshold_winning_probability=(inputs.s + 4.0) / 8.0,
        tangent_chsh=bound.tangent_chsh,
        tangent_winning_probability=bound.tangent_winning_probability,
        alpha=bound.alpha,
        alpha_max_entropy=bound.alpha_max_entropy,
        eps_smooth_min=chosen.smooth_min,
        eps_smooth_max=chosen.smooth_max,
        first_order_bits=bound.first_order_bits,
        second_order_bits=bound.second_order_bits,
        constant_bits=bound.constant_bits,
        max_entropy_bits=bound.max_entropy_bits,
        chain_rule_bits=bound.chain_rule_bits,
        entropy_bits=bound.entropy_bits,
        verification_bits=v_bits,
        privacy_amplification_bits=pa_bits,
    )
    return FiniteKeyResult(
        method="eat",
        finite_key_bits=_floor_bits(key),
        asymptotic_rate=asymptotic_rate(chsh=inputs.s, qber=float(inputs.qber)),
        inputs=inputs,
        leak_ec_bits=leak,
        eps=split,
        details=details,
        protocol=PROTOCOL_SPOT_CHECKING,
        assumptions=ASSUMPTIONS["eat"],
    )
