"""Finite key by phase-error estimation (complementarity) for the protocol as run.

Zhang, Zeng, Ye, Lo & Ma, PRL 131, 140801 (2023): the key is secure if the phase-error rate of the
key rounds is bounded; it is bounded from the CHSH rounds through an affine relation that holds
round by round and a martingale concentration bound. The ``"chord"`` relation rests on the
Jordan-block-label reduction (see :data:`~qrepeater.diqkd.keyrate.common.CHORD_LABEL`); the
label-free ``"strict"`` relation gives no key at the experiment's statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from qrepeater.diqkd.keyrate.asymptotic import asymptotic_rate
from qrepeater.diqkd.keyrate.common import (
    ASSUMPTIONS,
    PROTOCOL_AS_RUN,
    TSIRELSON,
    EpsilonSplit,
    FiniteKeyInputs,
    FiniteKeyResult,
    PhaseErrorRelation,
    _floor_bits,
    _h,
    _key_round_leak,
    _privacy_amplification_bits,
    _verification_bits,
)
from qrepeater.errors import ParameterError

__all__ = [
    "PHASE_ERROR_SPLIT",
    "PhaseErrorDetails",
    "phase_error_key",
    "phase_error_relation",
]

PHASE_ERROR_SPLIT = (0.01, 0.01, 0.98)
"""A-priori split of the soundness budget eps: (eps_EC, eps_PA, 2 sqrt(eps_PE)) / eps. Fixed before
any data (part of the protocol); against the split optimised on the paper's statistics it costs
under 10 bits."""


@dataclass(frozen=True)
class PhaseErrorDetails:
    """Intermediate quantities of the phase-error bound (all rates per key round).

    The relation e_ph <= intercept - slope * S holds round by round; ``phase_error_from_chsh`` is
    it at the observed S, ``deviation`` the martingale correction (delta / n), ``phase_error_upper``
    = e_U their sum. ``entropy_bits`` = n (1 - h(e_U)) lower-bounds the smooth min-entropy of the
    key-round string before reconciliation.
    """

    relation: PhaseErrorRelation
    relation_intercept: float
    relation_slope: float
    phase_error_from_chsh: float
    deviation: float
    phase_error_upper: float
    concentration: str
    martingale_range: float
    martingale_variance: float
    entropy_bits: float
    verification_bits: float
    privacy_amplification_bits: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return dict(self.__dict__)


def phase_error_relation(relation: PhaseErrorRelation = "chord") -> tuple[float, float]:
    """Affine upper bound e_ph <= a - b S valid round by round; returns (a, b).

    The qubit-block relation of the complementarity analysis (Zhang et al., PRL 131, 140801
    (2023)), e_ph <= (1 - sqrt((S/2)^2 - 1))/2, is convex in S, so it does not survive averaging
    over the Jordan blocks (and over rounds); an affine majorant does.

    * ``"chord"``: the chord through (2, 1/2) and (2 sqrt 2, 0), a = sqrt2/(2(sqrt2-1)),
      b = 1/(4(sqrt2-1)). It majorises the curve on [2, 2 sqrt 2] and 1/2 below S = 2. This needs
      the phase error of a non-violating block to be at most 1/2, i.e. the virtual phase-error
      estimator may use Alice's block labels. The labels commute with every measurement of a
      round (Pironio et al. 2009), which justifies this for devices that measure a fresh
      subsystem each round; for devices with memory across rounds it is not proven, so every key
      from this line is conditional on that reduction (:data:`ASSUMPTIONS`).
    * ``"strict"``: the line through (2, 1) and (2 sqrt 2, 0), a = sqrt2/(sqrt2-1),
      b = 1/(2(sqrt2-1)): valid for a fixed, label-blind estimator, for which a block with S <= 2
      can have e_ph = 1 (both of Alice's settings equal or Bob's equal, anticorrelated in X).
    """
    if relation == "chord":
        b = 1.0 / (4.0 * (math.sqrt(2.0) - 1.0))
    elif relation == "strict":
        b = 1.0 / (2.0 * (math.sqrt(2.0) - 1.0))
    else:
        raise ParameterError(f"unknown phase-error relation {relation!r}")
    return TSIRELSON * b, b


@dataclass(frozen=True)
class _PhaseErrorTerms:
    key: float
    e_chsh: float
    delta: float
    e_upper: float
    concentration: str
    span: float
    variance: float
    entropy: float
    leak: float
    v_bits: float
    pa_bits: float


def _phase_error_terms(
    inputs: FiniteKeyInputs, a: float, b: float, eps_ec: float, eps_pa: float, eps_pe: float
) -> _PhaseErrorTerms:
    st = inputs.settings
    n_total = inputs.rounds
    n_key = inputs.key_rounds
    c = st.key * b  # weight of the CHSH score in the supermartingale
    p_min = min(st.test)
    inv_sum = sum(1.0 / p for p in st.test)
    log_term = math.log(1.0 / eps_pe)

    jump = max(1.0, c / p_min) + c * TSIRELSON  # D_i <= max Z_i - min E[Z_i | past]
    variance = st.key + c * c * inv_sum  # Var(Z_i | past) <= E[(E_i + c J_i)^2 | past]
    third = jump * log_term / 3.0
    delta_freedman = third + math.sqrt(third * third + 2.0 * n_total * variance * log_term)
    span = max(1.0, c / p_min) + c / p_min  # Z_i lies in an interval of this length
    delta_hoeffding = span * math.sqrt(n_total * log_term / 2.0)
    if delta_freedman <= delta_hoeffding:
        delta, concentration, used = delta_freedman, "freedman", jump
    else:
        delta, concentration, used = delta_hoeffding, "azuma-hoeffding", span

    e_chsh = a - b * inputs.s
    e_upper = (st.key * n_total * e_chsh + delta) / n_key
    entropy = n_key * (1.0 - _h(e_upper)) if e_upper < 0.5 else 0.0
    leak = _key_round_leak(inputs)
    v_bits = _verification_bits(eps_ec)
    pa_bits = _privacy_amplification_bits(eps_pa)
    return _PhaseErrorTerms(
        key=entropy - leak - v_bits - pa_bits,
        e_chsh=e_chsh,
        delta=delta,
        e_upper=e_upper,
        concentration=concentration,
        span=used,
        variance=variance,
        entropy=entropy,
        leak=leak,
        v_bits=v_bits,
        pa_bits=pa_bits,
    )


def phase_error_key(
    inputs: FiniteKeyInputs, *, relation: PhaseErrorRelation = "chord"
) -> FiniteKeyResult:
    """Finite key by phase-error estimation (complementarity) for the protocol as run.

    Sound against general attacks given the assumptions of the chosen relation
    (``result.assumptions``): with ``"chord"`` it is conditional on the Jordan-block-label
    reduction; ``"strict"`` needs no label but gives no key at the experiment's statistics.

    Zhang, Zeng, Ye, Lo & Ma, PRL 131, 140801 (2023) reduce security to bounding the number of
    phase errors on the key rounds from the CHSH rounds. Here, round i has conditional phase-error
    probability e_i <= a - b S_i (:func:`phase_error_relation`, linear, hence also for the mixture
    over Jordan blocks) and conditional CHSH value S_i = E[J_i | past] with the score
    J_i = (-1)^(x y) a b / p(x, y) on test rounds. Z_i = E_i + p_k b J_i - p_k a (E_i the phase
    error indicator of a key round) is a supermartingale difference, so with probability
    >= 1 - eps_PE the phase errors number at most p_k N (a - b S) + delta, with delta from
    Freedman's inequality (Ann. Probab. 3, 100 (1975), Thm 1.6, in its Bernstein form; per-round
    variance <= p_k + (p_k b)^2 sum 1/p(x,y)) or Azuma-Hoeffding (Azuma, Tohoku Math. J. 19, 357
    (1967), with Hoeffding's lemma for the range max(1, p_k b/p_min) + p_k b/p_min), whichever is
    smaller (both are fixed before the data are seen). Then e_U = (p_k N (a - b S) + delta)/n
    and, via the entropic uncertainty relation (Tomamichel & Renner, PRL 106, 110506 (2011)) with
    H_max(X|B) <= log2 sum_{k <= n e_U} C(n, k) <= n h(e_U),

        l = n [1 - h(e_U)] - leak_EC - log2(2/eps_EC) - 2 log2(1/(2 eps_PA)),

    where leak_EC is the reconciliation syndrome (given, or f n h(Q)), log2(2/eps_EC) the
    verification hash and the last term the leftover hash lemma. Soundness eps_EC + eps_PA +
    2 sqrt(eps_PE), split fixed in advance (:data:`PHASE_ERROR_SPLIT`). Asymptotically this gives
    1 - h(a - b S) - f h(Q) per key round, below :func:`asymptotic_rate` (the chord lies above the
    convex phase-error curve): conservative by construction.
    """
    a, b = phase_error_relation(relation)
    eps = float(inputs.eps)
    f_ec, f_pa, f_root = PHASE_ERROR_SPLIT
    eps_ec, eps_pa = eps * f_ec, eps * f_pa
    eps_pe = (eps * f_root / 2.0) ** 2
    terms = _phase_error_terms(inputs, a, b, eps_ec, eps_pa, eps_pe)
    root = math.sqrt(eps_pe)
    split = EpsilonSplit(
        soundness=eps,
        correctness=eps_ec,
        secrecy=eps_pa + 2.0 * root,
        privacy_amplification=eps_pa,
        smoothing=root,
        parameter_estimation=eps_pe,
        composition=(
            "soundness = eps_EC + eps_PA + 2 sqrt(eps_PE): conditioned on acceptance the state is "
            "smoothed by sqrt(eps_PE/P(accept)), and P(accept) (eps_PA + 2 sqrt(eps_PE/P(accept)))"
            " <= eps_PA + 2 sqrt(eps_PE)"
        ),
        rule="eps_EC = 0.01 eps, eps_PA = 0.01 eps, 2 sqrt(eps_PE) = 0.98 eps (fixed a priori)",
    )
    details = PhaseErrorDetails(
        relation=relation,
        relation_intercept=a,
        relation_slope=b,
        phase_error_from_chsh=terms.e_chsh,
        deviation=terms.delta / inputs.key_rounds,
        phase_error_upper=terms.e_upper,
        concentration=terms.concentration,
        martingale_range=terms.span,
        martingale_variance=terms.variance,
        entropy_bits=terms.entropy,
        verification_bits=terms.v_bits,
        privacy_amplification_bits=terms.pa_bits,
    )
    return FiniteKeyResult(
        method="phase-error",
        finite_key_bits=_floor_bits(terms.key),
        asymptotic_rate=asymptotic_rate(chsh=inputs.s, qber=float(inputs.qber)),
        inputs=inputs,
        leak_ec_bits=terms.leak,
        eps=split,
        details=details,
        protocol=PROTOCOL_AS_RUN,
        assumptions=ASSUMPTIONS[f"phase-error/{relation}"],
    )
