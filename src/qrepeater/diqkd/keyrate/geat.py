"""Finite key by generalised entropy accumulation (GEAT) for the protocol as run.

Protocol (Zhang et al., PRL 131, 140801 (2023), as the experiment ran it): every round draws
(X, Y) from fixed probabilities p(x, y); CHSH rounds (x, y in {0, 1}) announce inputs and outputs;
key rounds (0, 2) keep Alice's output A_i as raw key; (1, 2) rounds are discarded. The test is the
importance-weighted CHSH score (1/N) sum_i J_i >= S_thr with J_i = (-1)^(x y) a b / p(x, y) on
CHSH rounds and 0 otherwise, whose conditional expectation is the round's CHSH value whatever the
p(x, y) are, so unequal test-pair probabilities (the experiment's) are handled exactly.

GEAT model (Metger, Fawzi, Sutter & Renner, "Generalised entropy accumulation", CMP 405, 261
(2024), arXiv:2203.04989): round i is a channel M_i: E_{i-1} -> S_i C_i E_i with secret register
S_i = A_i on key rounds and a fixed 0 otherwise (dimension d_S = 2), statistics register C_i
(the score J_i, computed from announced data) and side information E_i (Eve's systems, all inputs
and the announced test outputs). The GEAT (Metger et al., Thm. 4.3) asks for channels
M_i: R_{i-1} E_{i-1} -> S_i C_i R_i E_i with a non-signalling condition: some channel
R_i: E_{i-1} -> E_i reproduces Tr_{S_i C_i R_i} o M_i without R_{i-1}. With devices that keep
no memory across rounds, each round's systems come from Eve's register E_{i-1} and the memory
register R_i holds only the parties' stored key-round outputs (Bob's key bits for
reconciliation), which no later round reads, so the condition holds although test outputs are
announced; Eve's states may still be entangled across rounds and chosen adaptively. The condition
is weaker than "no memory": what it excludes is a device carrying information about earlier
key-round outputs (held in R) into later announced outputs; classical memory of inputs,
announced data or discarded-round outputs (which the model may hand to Eve) is harmless. With
general device memory it fails (a device could encode earlier key outputs in announced test
outputs, the memory attacks of Barrett, Colbeck & Kent, PRL 110, 010503 (2013)); the EAT's Markov
condition fails for the same reason, which is why the spot-checking variant keeps test outputs
secret. Hence ``assumptions`` carries :data:`~qrepeater.diqkd.keyrate.common.NO_DEVICE_MEMORY`.
No Jordan-block label is used anywhere.

Min-tradeoff function: the tangent at CHSH value S_t of p_key eta(S), with eta the single-round
bound of Pironio et al., NJP 11, 045021 (2009) (tight for CHSH, convex in S, so the tangent is a
lower bound for every S and every mixture): f(q) = p_key [eta(S_t) + eta'(S_t) (S(q) - S_t)],
S(q) = E_q[J]. Its values on point distributions are A (no test) and A +- p_key eta'(S_t)/p(x, y),
so Var_q(f) <= (p_key eta')^2 sum_xy 1/p(x, y) and Max f - Min f = 2 p_key eta'/min p(x, y).

Second order: the GEAT with its explicit second-order terms (Metger et al., arXiv:2203.04989v2,
the Dupuis-Fawzi-type statement; Dupuis & Fawzi, IEEE TIT 65, 7596 (2019)),

    H_min^{eps_s}(S^n | E_n)_{rho|Omega} >= N h - N u (ln 2 / 2) V^2
        - (g(eps_s) + alpha log 1/eps_EA)/(alpha - 1) - N u^2 K_alpha,

u = (alpha - 1)/(2 - alpha), alpha in (1, 3/2), g(eps) = log(1/(1 - sqrt(1 - eps^2))),
V = log(1 + 2 d_S^2) + sqrt(2 + Var(f)), K_alpha = (2 - alpha)^3 / (6 (3 - 2 alpha)^3 ln 2)
2^(u (2 log d_S + Max f - Min f)) ln^3(2^(2 log d_S + Max f - Min f) + e^2). These constants
agree term by term with an independent implementation of the same theorem (perambluate/
ZPConstr2CHSH, finiteRateCalculator.py, whose beta is our u). Where we could not check a choice we
take the larger penalty: K_alpha is the larger of that form and the Dupuis-Fawzi one, Var(f) is
maximised over every quantum CHSH value (not the Tan et al. infimum of Delta - (alpha - 1) V), and
Max f - Min f is taken over all point masses. The tangent S_t and alpha are optimised numerically
for the pre-agreed threshold (a deterministic function of N, the threshold, eps and the settings,
so fixed before the data). The Renyi route (Renyi entropy fed straight to Renyi privacy
amplification, no smoothing term, the refined second-order infimum) is :mod:`.renyi`
(``"renyi-geat"``); this module keeps the smooth-min-entropy statement.

Key length (leftover hash lemma, Tomamichel et al., IEEE TIT 57, 5524 (2011)):
l = H - leak_EC - log2(2/eps_EC) - 2 log2(1/(2 eps_PA)), leak_EC given or f n h(Q) (only key
rounds are reconciled: test data are public). Soundness eps_EC + max(eps_EA, eps_PA + 2 eps_s)
(if the acceptance probability is below eps_EA the protocol is eps_EA-secret trivially), the split
fixed in advance (:data:`GEAT_SPLIT`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from qrepeater.diqkd.keyrate.asymptotic import asymptotic_rate
from qrepeater.diqkd.keyrate.common import (
    _LN2,
    ASSUMPTIONS,
    PROTOCOL_AS_RUN,
    EpsilonSplit,
    FiniteKeyInputs,
    FiniteKeyResult,
    SettingProbabilities,
    _check_bound_args,
    _floor_bits,
    _key_round_leak,
    _maximise_tangent_and_order,
    _pironio,
    _pironio_slope,
    _privacy_amplification_bits,
    _theta,
    _verification_bits,
)
from qrepeater.errors import ParameterError

__all__ = ["GEAT_SPLIT", "GeatBound", "GeatDetails", "geat_entropy_bound", "geat_key"]

GEAT_SPLIT = (0.01, 0.01)
"""A-priori split: eps_EC = 0.01 eps; secrecy budget s = eps - eps_EC = eps_EA = eps_PA + 2 eps_s
with eps_PA = 0.01 s. Fixed before any data (part of the protocol)."""

_SECRET_DIM = 2  # S_i: Alice's key bit, or a fixed 0 on other rounds
_ALPHA_MAX = 1.5  # GEAT's range of alpha, (1, 3/2)


def _ln_2pow_plus_e2(x: float) -> float:
    """ln(2^x + e^2) without overflow."""
    y = x * _LN2
    if y > 2.0:
        return y + math.log1p(math.exp(2.0 - y))
    return 2.0 + math.log1p(math.exp(y - 2.0))


def _exp2(x: float) -> float:
    return math.inf if x > 1000.0 else 2.0**x


@dataclass(frozen=True)
class GeatBound:
    """Lower bound on H_min^{eps_s}(S^n | E_n) and its parts (bits; see the module docstring).

    ``entropy_bits`` = ``first_order_bits`` - ``variance_bits`` - ``constant_bits`` -
    ``k_alpha_bits``.
    """

    entropy_bits: float
    first_order_bits: float
    variance_bits: float
    constant_bits: float
    k_alpha_bits: float
    tangent_chsh: float
    alpha: float
    min_tradeoff_slope: float
    f_variance_max: float
    f_range: float


@dataclass(frozen=True)
class GeatDetails:
    """Intermediate quantities of the GEAT bound (see :class:`GeatBound`)."""

    key_probability: float
    test_probability: float
    test_pair_probabilities: tuple[float, float, float, float]
    threshold_chsh: float
    tangent_chsh: float
    alpha: float
    min_tradeoff_slope: float
    f_variance_max: float
    f_range: float
    first_order_bits: float
    variance_bits: float
    constant_bits: float
    k_alpha_bits: float
    entropy_bits: float
    verification_bits: float
    privacy_amplification_bits: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        d = dict(self.__dict__)
        d["test_pair_probabilities"] = list(self.test_pair_probabilities)
        return d


def _entropy_at(
    *,
    rounds: int,
    settings: SettingProbabilities,
    s_thr: float,
    s_t: float,
    alpha: float,
    theta_s: float,
    log_ea: float,
) -> GeatBound:
    p_key = settings.key
    slope = p_key * _pironio_slope(s_t)  # f's slope in the score J, bits per unit
    first = rounds * p_key * (_pironio(s_t) + _pironio_slope(s_t) * (s_thr - s_t))
    var_max = slope * slope * sum(1.0 / p for p in settings.test)
    f_range = 2.0 * slope / min(settings.test)
    log_d = math.log2(_SECRET_DIM)
    v = math.log2(1.0 + 2.0 * _SECRET_DIM**2) + math.sqrt(2.0 + var_max)
    u = (alpha - 1.0) / (2.0 - alpha)
    variance = rounds * u * _LN2 / 2.0 * v * v
    const = (theta_s + alpha * log_ea) / (alpha - 1.0)
    x_df = log_d + f_range
    k_df = (
        _exp2((alpha - 1.0) * x_df)
        * _ln_2pow_plus_e2(x_df) ** 3
        / (6.0 * (2.0 - alpha) ** 3 * _LN2)
    )
    x_g = 2.0 * log_d + f_range
    k_g = (
        (2.0 - alpha) ** 3
        / (6.0 * (3.0 - 2.0 * alpha) ** 3 * _LN2)
        * _exp2(u * x_g)
        * _ln_2pow_plus_e2(x_g) ** 3
    )
    k_bits = rounds * u * u * max(k_df, k_g)
    return GeatBound(
        entropy_bits=first - variance - const - k_bits,
        first_order_bits=first,
        variance_bits=variance,
        constant_bits=const,
        k_alpha_bits=k_bits,
        tangent_chsh=s_t,
        alpha=alpha,
        min_tradeoff_slope=slope,
        f_variance_max=var_max,
        f_range=f_range,
    )


def geat_entropy_bound(
    *,
    rounds: int,
    settings: SettingProbabilities,
    chsh_threshold: float,
    eps_smooth: float,
    eps_ea: float,
) -> GeatBound:
    """GEAT lower bound on H_min^{eps_s}(A_key | E, public data) for the protocol as run.

    Maximises the bound of the module docstring over the tangent point S_t in (2, 2 sqrt 2) and
    alpha in (1, 3/2) (scipy bounded Brent, nested; any choice is a valid bound, so imperfect
    optimisation only costs key). Raises :class:`ParameterError` for invalid arguments.
    """
    n, s_thr = _check_bound_args(rounds, settings, chsh_threshold)
    for name, e in (("eps_smooth", eps_smooth), ("eps_ea", eps_ea)):
        if not math.isfinite(e) or not 0.0 < e < 1.0:
            raise ParameterError(f"{name} must lie in (0, 1), got {e!r}")
    theta_s = _theta(eps_smooth)
    log_ea = math.log2(1.0 / eps_ea)

    def at(s_t: float, log_u: float) -> GeatBound:
        alpha = 1.0 + (_ALPHA_MAX - 1.0) / (1.0 + math.exp(-log_u))
        return _entropy_at(
            rounds=n,
            settings=settings,
            s_thr=s_thr,
            s_t=s_t,
            alpha=alpha,
            theta_s=theta_s,
            log_ea=log_ea,
        )

    s_best, z_best = _maximise_tangent_and_order(
        lambda s_t, z: at(s_t, z).entropy_bits,
        grid_points=25,
        xatol_order=1e-6,
        xatol_tangent=1e-7,
    )
    return at(s_best, z_best)


def geat_key(inputs: FiniteKeyInputs) -> FiniteKeyResult:
    """Finite key by the GEAT for the protocol as run (test data announced); see the module
    docstring for the bound, its constants and ``result.assumptions``."""
    st = inputs.settings
    eps = float(inputs.eps)
    f_ec, f_pa = GEAT_SPLIT
    eps_ec = eps * f_ec
    budget = eps - eps_ec
    eps_pa = budget * f_pa
    eps_s = (budget - eps_pa) / 2.0
    bound = geat_entropy_bound(
        rounds=inputs.rounds,
        settings=st,
        chsh_threshold=inputs.s,
        eps_smooth=eps_s,
        eps_ea=budget,
    )
    leak = _key_round_leak(inputs)
    v_bits = _verification_bits(eps_ec)
    pa_bits = _privacy_amplification_bits(eps_pa)
    key = bound.entropy_bits - leak - v_bits - pa_bits
    split = EpsilonSplit(
        soundness=eps,
        correctness=eps_ec,
        secrecy=budget,
        privacy_amplification=eps_pa,
        smoothing=eps_s,
        parameter_estimation=budget,
        composition=(
            "soundness = eps_EC + max(eps_EA, eps_PA + 2 eps_s) with eps_EA = eps_PA + 2 eps_s: "
            "if P(accept) < eps_EA the protocol is eps_EA-secret trivially, else the GEAT bound "
            "on the state conditioned on acceptance holds with log 1/P(accept) <= log 1/eps_EA"
        ),
        rule="eps_EC = 0.01 eps, eps_PA = 0.01 (eps - eps_EC), eps_s the rest (fixed a priori)",
    )
    details = GeatDetails(
        key_probability=st.key,
        test_probability=st.test_total,
        test_pair_probabilities=st.test,
        threshold_chsh=inputs.s,
        tangent_chsh=bound.tangent_chsh,
        alpha=bound.alpha,
        min_tradeoff_slope=bound.min_tradeoff_slope,
        f_variance_max=bound.f_variance_max,
        f_range=bound.f_range,
        first_order_bits=bound.first_order_bits,
        variance_bits=bound.variance_bits,
        constant_bits=bound.constant_bits,
        k_alpha_bits=bound.k_alpha_bits,
        entropy_bits=bound.entropy_bits,
        verification_bits=v_bits,
        privacy_amplification_bits=pa_bits,
    )
    return FiniteKeyResult(
        method="geat",
        finite_key_bits=_floor_bits(key),
        asymptotic_rate=asymptotic_rate(chsh=inputs.s, qber=float(inputs.qber)),
        inputs=inputs,
        leak_ec_bits=leak,
        eps=split,
        details=details,
        protocol=PROTOCOL_AS_RUN,
        assumptions=ASSUMPTIONS["geat"],
    )
