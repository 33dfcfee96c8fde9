"""Secret-key rates of CHSH-based device-independent QKD: asymptotic and finite-key.

Protocol (Zhang, Zeng, Ye, Lo & Ma, PRL 131, 140801 (2023), as run by the experiment this package
models): Alice's input X is in {0, 1}, Bob's Y in {0, 1, 2}. Rounds with X, Y in {0, 1} are CHSH
test rounds, (X, Y) = (0, 2) are key rounds (Alice's A0 = Z is both a CHSH setting and her key
setting), (1, 2) rounds are discarded. Observed: the CHSH value S of the test rounds and the QBER Q
of the key rounds.

* :func:`asymptotic_rate` -- r = 1 - h(Q) - h((1 + sqrt((S/2)^2 - 1))/2) per key round
  (Pironio et al., NJP 11, 045021 (2009); reproduced asymptotically by Zhang et al. 2023).
* :func:`finite_key` -- finite-key length, sound against general (coherent) attacks, by one of

  - ``"phase-error"``: complementarity / phase-error estimation (Zhang et al. 2023) with an affine
    CHSH -> phase-error relation that holds round by round and a martingale (Freedman or
    Azuma-Hoeffding) bound, then privacy amplification by two-universal hashing;
  - ``"eat"``: entropy accumulation with the Dupuis-Fawzi second-order term (IEEE TIT 65, 7596
    (2019)) for the spot-checking protocol of Arnon-Friedman et al. (Nat. Commun. 9, 459 (2018)), in
    the explicit form of Tan et al. (Quantum 6, 880 (2022), "Improved DIQKD protocols with
    finite-size analysis") as stated in Nadlinger et al., Nature 607, 682 (2022), Supplementary
    Proposition 2, Eq. (73).

Settings: unless :class:`SettingProbabilities` are given, every round is a key round with
probability n/N, a test round with probability t/N (the four test pairs equally likely) and
discarded otherwise, independently from round to round (the observed fractions).

Security parameters follow the usual composable split: soundness = correctness (eps_EC, the
verification-hash collision probability) + secrecy; see :class:`EpsilonSplit` for each method's
secrecy composition. Key lengths are evaluated at the observed S and Q, i.e. they are the key a
protocol would certify with acceptance thresholds set at the observed values; completeness (the
honest abort probability) depends on how those thresholds are fixed before the run and is not
bounded here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import optimize, special

from qrepeater.errors import ParameterError
from qrepeater.qkdpp.entropy import binary_entropy

__all__ = [
    "DEFAULT_EC_EFFICIENCY",
    "TSIRELSON",
    "EatBound",
    "EatDetails",
    "EpsilonSplit",
    "FiniteKeyInputs",
    "FiniteKeyResult",
    "Method",
    "PhaseErrorDetails",
    "PhaseErrorRelation",
    "SettingProbabilities",
    "asymptotic_rate",
    "binary_entropy",
    "chsh_entropy_bound",
    "eat_entropy_bound",
    "eat_key",
    "finite_key",
    "phase_error_key",
    "phase_error_relation",
]

Method = Literal["phase-error", "eat"]
PhaseErrorRelation = Literal["chord", "strict"]
FloatArray = npt.NDArray[np.float64]

TSIRELSON = 2.0 * math.sqrt(2.0)
"""Largest quantum CHSH value, 2*sqrt(2) (Tsirelson bound)."""

DEFAULT_EC_EFFICIENCY = 1.16
"""Reconciliation efficiency f used when neither ``ec_efficiency`` nor ``leak_ec_bits`` is given:
a typical value for practical LDPC reconciliation. It only predicts the leakage; for a security
claim pass the bits actually disclosed (``leak_ec_bits``)."""

_S_TOL = 1e-12  # tolerance on S <= 2*sqrt(2) for values computed in floating point
_LN2 = math.log(2.0)
_OMEGA_MIN = (1.0 - 1.0 / math.sqrt(2.0)) / 2.0  # smallest quantum CHSH winning probability
_OMEGA_MAX = (1.0 + 1.0 / math.sqrt(2.0)) / 2.0  # largest quantum CHSH winning probability
_EAT_REGISTER_DIM = 4  # per-round register (A_i, B'_i), two bits (Nadlinger et al. Suppl. S11)
_EAT_MAX_ENTROPY_DIM = 2  # Bob's test outputs B'_i, one bit
_OMEGA_GRID = 4001  # grid for the infimum over quantum winning probabilities in Eq. (73)


# ---------------------------------------------------------------------------------------------
# entropy helpers and the asymptotic rate
# ---------------------------------------------------------------------------------------------


def _h(p: float) -> float:
    """Scalar binary entropy without validation (internal, p in [0, 1])."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -(p * math.log2(p) + (1.0 - p) * math.log2(1.0 - p))


def _check_chsh_physical(chsh: float) -> float:
    s = float(chsh)
    if not math.isfinite(s) or abs(s) > TSIRELSON + _S_TOL:
        raise ParameterError(
            f"CHSH value must lie in [-2*sqrt(2), 2*sqrt(2)] (Tsirelson bound), got {chsh!r}"
        )
    return min(s, TSIRELSON)


def _check_qber(qber: float) -> float:
    q = float(qber)
    if not math.isfinite(q) or not 0.0 <= q < 0.5:
        raise ParameterError(f"QBER must lie in [0, 0.5), got {qber!r}")
    return q


def _pironio(s: float) -> float:
    """1 - h((1 + sqrt((S/2)^2 - 1))/2) for S in (2, 2 sqrt 2], 0 for S <= 2 (no validation)."""
    if s <= 2.0:
        return 0.0
    x = math.sqrt(max(min(s, TSIRELSON) ** 2 / 4.0 - 1.0, 0.0))
    return 1.0 - _h((1.0 + x) / 2.0)


def _pironio_slope(s: float) -> float:
    """dF/dS of :func:`_pironio` for S in (2, 2 sqrt 2)."""
    x = math.sqrt(s * s / 4.0 - 1.0)
    return 0.5 * math.log2((1.0 + x) / (1.0 - x)) * s / (4.0 * x)


def chsh_entropy_bound(chsh: float) -> float:
    """Single-round bound H(A_x|E) >= 1 - h((1 + sqrt((S/2)^2 - 1))/2) for CHSH value S.

    Pironio et al., NJP 11, 045021 (2009), main result (the Holevo bound chi(B:E) <=
    h((1 + sqrt((S/2)^2 - 1))/2)); written in winning probability omega = (4 + S)/8 it is
    Nadlinger et al., Nature 607, 682 (2022), Suppl. Eq. (62). It holds for either of Alice's
    settings (CHSH is symmetric under relabelling x and Bob's y = 1 output). Returns 0 for
    S <= 2; raises :class:`ParameterError` beyond the Tsirelson bound.
    """
    return _pironio(_check_chsh_physical(chsh))


def asymptotic_rate(*, chsh: float, qber: float) -> float:
    """Asymptotic key rate per key round, r = 1 - h(Q) - h((1 + sqrt((S/2)^2 - 1))/2).

    Pironio et al., NJP 11, 045021 (2009) (Devetak-Winter rate with their CHSH bound on Eve's
    Holevo information, collective attacks, which the EAT and the complementarity analysis of
    Zhang et al., PRL 131, 140801 (2023) extend to general attacks asymptotically). Clamped at 0:
    S <= 2 (no Bell violation) and parameters where the expression is negative return 0.0.
    Raises :class:`ParameterError` for |S| > 2 sqrt 2 or Q outside [0, 0.5).
    """
    s = _check_chsh_physical(chsh)
    q = _check_qber(qber)
    return max(0.0, _pironio(s) - _h(q))


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------


def _check_prob(name: str, value: float) -> float:
    v = float(value)
    if not math.isfinite(v) or not 0.0 <= v <= 1.0:
        raise ParameterError(f"{name} must be a probability in [0, 1], got {value!r}")
    return v


@dataclass(frozen=True)
class SettingProbabilities:
    """Per-round probabilities of the input pairs (X, Y), drawn i.i.d. in every round.

    ``key`` = p(0, 2), ``test`` = (p(0,0), p(0,1), p(1,0), p(1,1)), ``discard`` = p(1, 2). They must
    sum to one; key and every test pair must be possible. The CHSH score of a test round with
    inputs (x, y) and outputs a, b in {+1, -1} is (-1)^(x y) a b / p(x, y), whose expectation is
    the device's CHSH value S whatever the probabilities are.
    """

    key: float
    test: tuple[float, float, float, float]
    discard: float = 0.0

    def __post_init__(self) -> None:
        key = _check_prob("key probability", self.key)
        disc = _check_prob("discard probability", self.discard)
        if len(self.test) != 4:
            raise ParameterError(f"test needs the four pairs (00, 01, 10, 11), got {self.test!r}")
        test = tuple(_check_prob("test-pair probability", p) for p in self.test)
        if key <= 0.0 or min(test) <= 0.0:
            raise ParameterError("key rounds and all four CHSH test pairs must have p > 0")
        total = key + disc + sum(test)
        if abs(total - 1.0) > 1e-9:
            raise ParameterError(f"setting probabilities must sum to 1, got {total!r}")

    @classmethod
    def from_counts(cls, *, rounds: int, key_rounds: int, test_rounds: int) -> SettingProbabilities:
        """The default distribution: key with n/N, test with t/N (pairs equally likely), rest
        discarded."""
        _check_counts(rounds, key_rounds, test_rounds)
        p_test = test_rounds / rounds / 4.0
        key = key_rounds / rounds
        discard = (rounds - key_rounds - test_rounds) / rounds
        return cls(key=key, test=(p_test, p_test, p_test, p_test), discard=discard)

    @property
    def test_total(self) -> float:
        """Probability that a round is a CHSH test round."""
        return float(sum(self.test))

    @property
    def uniform_test_pairs(self) -> bool:
        """Whether the four test pairs are equally likely (needed by the EAT method)."""
        return max(self.test) - min(self.test) <= 1e-12 * max(self.test)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"key": self.key, "test": list(self.test), "discard": self.discard}


def _check_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _check_counts(rounds: int, key_rounds: int, test_rounds: int) -> None:
    n_total = _check_int("rounds", rounds)
    n_key = _check_int("key_rounds", key_rounds)
    n_test = _check_int("test_rounds", test_rounds)
    if n_total < 1:
        raise ParameterError(f"rounds must be >= 1, got {rounds}")
    if n_key < 1 or n_test < 1:
        raise ParameterError(
            f"need at least one key round and one test round, got key_rounds={key_rounds}, "
            f"test_rounds={test_rounds}"
        )
    if n_key + n_test > n_total:
        raise ParameterError(
            f"key_rounds + test_rounds = {n_key + n_test} exceeds rounds = {n_total}"
        )


@dataclass(frozen=True)
class FiniteKeyInputs:
    """Observed statistics and security target of one DI-QKD run (validated on construction).

    ``chsh`` is the CHSH value of the test rounds, used as the acceptance threshold: with
    non-default ``setting_probabilities`` it must be the importance-weighted score
    (1/N) sum_i (-1)^(x_i y_i) a_i b_i / p(x_i, y_i) (equal to the usual per-pair estimate when the
    test pairs occur in proportion to their probabilities). ``eps`` is the total soundness error.
    Reconciliation leakage: either ``leak_ec_bits`` (bits actually disclosed) or ``ec_efficiency``
    f (leakage f n h(Q), plus the test rounds for the EAT method), default
    :data:`DEFAULT_EC_EFFICIENCY`.
    """

    rounds: int
    key_rounds: int
    test_rounds: int
    chsh: float
    qber: float
    eps: float
    ec_efficiency: float | None = None
    leak_ec_bits: float | None = None
    setting_probabilities: SettingProbabilities | None = None

    def __post_init__(self) -> None:
        _check_counts(self.rounds, self.key_rounds, self.test_rounds)
        s = float(self.chsh)
        if not math.isfinite(s) or not 2.0 < s <= TSIRELSON + _S_TOL:
            raise ParameterError(
                f"finite-key analysis needs a CHSH violation 2 < S <= 2*sqrt(2), got {self.chsh!r}"
            )
        _check_qber(self.qber)
        e = float(self.eps)
        if not math.isfinite(e) or not 0.0 < e < 1.0:
            raise ParameterError(f"eps must lie in (0, 1), got {self.eps!r}")
        if self.ec_efficiency is not None and self.leak_ec_bits is not None:
            raise ParameterError("give either ec_efficiency or leak_ec_bits, not both")
        if self.ec_efficiency is not None:
            f = float(self.ec_efficiency)
            if not math.isfinite(f) or f < 1.0:
                raise ParameterError(
                    f"ec_efficiency must be >= 1 (Shannon limit), got {self.ec_efficiency!r}"
                )
        if self.leak_ec_bits is not None:
            leak = float(self.leak_ec_bits)
            if not math.isfinite(leak) or leak < 0.0:
                raise ParameterError(f"leak_ec_bits must be >= 0, got {self.leak_ec_bits!r}")
        if self.setting_probabilities is not None and not isinstance(
            self.setting_probabilities, SettingProbabilities
        ):
            raise ParameterError("setting_probabilities must be a SettingProbabilities")

    @property
    def settings(self) -> SettingProbabilities:
        """The setting distribution (the default one built from the counts if none was given)."""
        if self.setting_probabilities is not None:
            return self.setting_probabilities
        return SettingProbabilities.from_counts(
            rounds=self.rounds, key_rounds=self.key_rounds, test_rounds=self.test_rounds
        )

    @property
    def s(self) -> float:
        """The CHSH value, clipped to the Tsirelson bound."""
        return min(float(self.chsh), TSIRELSON)

    @property
    def efficiency(self) -> float:
        """Reconciliation efficiency used for the predicted leakage."""
        return DEFAULT_EC_EFFICIENCY if self.ec_efficiency is None else float(self.ec_efficiency)


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EpsilonSplit:
    """How the total soundness error is shared among the steps of a finite-key bound.

    ``correctness`` = eps_EC (probability that differing keys pass the verification hash);
    ``privacy_amplification`` = eps_PA (leftover hash lemma); ``smoothing`` = the smooth-entropy
    parameter; ``parameter_estimation`` = eps_PE (phase-error method: failure probability of the
    martingale bound) or eps_EA (EAT: the acceptance-probability cut-off); ``secrecy`` and
    ``soundness`` as composed in ``composition``. ``completeness`` (honest abort probability) is
    ``None``: it depends on thresholds fixed before the run, not on this bound.
    """

    soundness: float
    correctness: float
    secrecy: float
    privacy_amplification: float
    smoothing: float
    parameter_estimation: float
    composition: str
    completeness: float | None = None

    def __post_init__(self) -> None:
        for name in (
            "soundness",
            "correctness",
            "secrecy",
            "privacy_amplification",
            "smoothing",
            "parameter_estimation",
        ):
            v = getattr(self, name)
            if not 0.0 < v < 1.0:
                raise ParameterError(f"{name} must lie in (0, 1), got {v!r}")
        if self.correctness + self.secrecy > self.soundness * (1.0 + 1e-9):
            raise ParameterError("correctness + secrecy exceeds the soundness budget")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "soundness": self.soundness,
            "correctness": self.correctness,
            "secrecy": self.secrecy,
            "privacy_amplification": self.privacy_amplification,
            "smoothing": self.smoothing,
            "parameter_estimation": self.parameter_estimation,
            "composition": self.composition,
            "completeness": self.completeness,
        }


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


@dataclass(frozen=True)
class FiniteKeyResult:
    """A finite-key length with everything needed to audit it.

    ``finite_key_bits`` is the floor of the bound, never negative; ``asymptotic_rate`` the
    per-key-round rate of :func:`asymptotic_rate` at the same S and Q; ``leak_ec_bits`` the
    reconciliation leakage charged; ``eps`` the epsilon split; ``details`` the method's
    intermediate quantities.
    """

    method: Method
    finite_key_bits: int
    asymptotic_rate: float
    inputs: FiniteKeyInputs
    leak_ec_bits: float
    eps: EpsilonSplit
    details: PhaseErrorDetails | EatDetails

    def __post_init__(self) -> None:
        if self.method not in ("phase-error", "eat"):
            raise ParameterError(f"unknown method {self.method!r}")
        if isinstance(self.finite_key_bits, bool) or not isinstance(self.finite_key_bits, int):
            raise ParameterError("finite_key_bits must be an int")
        if self.finite_key_bits < 0:
            raise ParameterError("finite_key_bits must be >= 0")
        if not 0.0 <= self.asymptotic_rate <= 1.0:
            raise ParameterError(f"asymptotic_rate out of [0, 1]: {self.asymptotic_rate!r}")

    @property
    def finite_key_rate(self) -> float:
        """Secret bits per round (all rounds, as the experiment quotes it)."""
        return self.finite_key_bits / self.inputs.rounds

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (keys ``asymptotic_rate``, ``finite_key_bits``, ``method``
        are the CLI contract)."""
        inp = self.inputs
        return {
            "method": self.method,
            "finite_key_bits": self.finite_key_bits,
            "asymptotic_rate": self.asymptotic_rate,
            "finite_key_rate": self.finite_key_rate,
            "rounds": inp.rounds,
            "key_rounds": inp.key_rounds,
            "test_rounds": inp.test_rounds,
            "chsh": float(inp.chsh),
            "qber": float(inp.qber),
            "leak_ec_bits": self.leak_ec_bits,
            "ec_efficiency": None if inp.leak_ec_bits is not None else inp.efficiency,
            "settings": inp.settings.to_dict(),
            "eps": self.eps.to_dict(),
            "details": self.details.to_dict(),
        }


# ---------------------------------------------------------------------------------------------
# shared finite-key pieces
# ---------------------------------------------------------------------------------------------


def _verification_bits(eps_ec: float) -> float:
    """log2(2/eps_EC): the verification hash disclosed after reconciliation (two-universal tag of
    ceil(log2(1/eps_EC)) bits, rounded up by one)."""
    return math.log2(2.0 / eps_ec)


def _privacy_amplification_bits(eps_pa: float) -> float:
    """2 log2(1/(2 eps_PA)): leftover hash lemma against quantum side information (Tomamichel,
    Schaffner, Smith & Renner, IEEE TIT 57, 5524 (2011)), key eps_PA + 2 eps_s close to ideal."""
    return 2.0 * math.log2(1.0 / (2.0 * eps_pa))


def _theta(eps: float) -> float:
    """theta_eps = log2(1/(1 - sqrt(1 - eps^2))) <= log2(2/eps^2) (Nadlinger et al. Suppl. Eq. 66),
    computed without cancellation."""
    return math.log2((1.0 + math.sqrt(1.0 - eps * eps)) / (eps * eps))


def _floor_bits(x: float) -> int:
    if not math.isfinite(x) or x <= 0.0:
        return 0
    return math.floor(x)


# ---------------------------------------------------------------------------------------------
# phase-error (complementarity) method
# ---------------------------------------------------------------------------------------------


def phase_error_relation(relation: PhaseErrorRelation = "chord") -> tuple[float, float]:
    """Affine upper bound e_ph <= a - b S valid round by round; returns (a, b).

    The qubit-block relation of the complementarity analysis (Zhang et al., PRL 131, 140801
    (2023)), e_ph <= (1 - sqrt((S/2)^2 - 1))/2, is convex in S, so it does not survive averaging
    over the Jordan blocks (and over rounds); an affine majorant does.

    * ``"chord"``: the chord through (2, 1/2) and (2 sqrt 2, 0), a = sqrt2/(2(sqrt2-1)),
      b = 1/(4(sqrt2-1)). It majorises the curve on [2, 2 sqrt 2] and 1/2 below S = 2. This needs
      the phase error of a non-violating block to be at most 1/2, i.e. the virtual phase-error
      estimator may use the block labels, which may be handed to Bob and Eve alike (the labels
      commute with every measurement of the round, Pironio et al. 2009).
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


def _softmax(v: tuple[float, ...]) -> tuple[float, ...]:
    m = max(v)
    w = [math.exp(x - m) for x in v]
    tot = sum(w)
    return tuple(x / tot for x in w)


def _maximise_split(
    value: Callable[[tuple[float, ...]], float], n_free: int, start: tuple[float, ...]
) -> tuple[float, ...]:
    """Maximise ``value(fractions)`` over fractions = softmax(v, 0) (Nelder-Mead on v).

    Any split is sound; optimising it is a free choice made before privacy amplification."""

    def neg(v: npt.NDArray[np.float64]) -> float:
        out = value(_softmax((*(float(x) for x in v), 0.0)))
        return -out if math.isfinite(out) else 1e300

    x0 = np.array([math.log(f / start[-1]) for f in start[:-1]], dtype=np.float64)
    res = optimize.minimize(
        neg, x0, method="Nelder-Mead", options={"xatol": 1e-3, "fatol": 1e-3, "maxiter": 400}
    )
    best = res.x if float(res.fun) <= neg(x0) else x0
    if best.size != n_free:
        raise ParameterError("internal error: split dimension mismatch")
    return _softmax((*(float(x) for x in best), 0.0))


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
    if inputs.leak_ec_bits is not None:
        leak = float(inputs.leak_ec_bits)
    else:
        leak = inputs.efficiency * n_key * _h(float(inputs.qber))
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
    """Finite key by phase-error estimation (complementarity), general attacks.

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
    2 sqrt(eps_PE); the split is optimised for the largest key. Asymptotically this gives
    1 - h(a - b S) - f h(Q) per key round, below :func:`asymptotic_rate` (the chord lies above the
    convex phase-error curve): conservative by construction.
    """
    a, b = phase_error_relation(relation)
    eps = float(inputs.eps)

    def unpack(fr: tuple[float, ...]) -> tuple[float, float, float]:
        eps_ec, eps_pa, two_root = (eps * f for f in fr)
        return eps_ec, eps_pa, (two_root / 2.0) ** 2

    def value(fr: tuple[float, ...]) -> float:
        return _phase_error_terms(inputs, a, b, *unpack(fr)).key

    fractions = _maximise_split(value, 2, (0.05, 0.05, 0.9))
    eps_ec, eps_pa, eps_pe = unpack(fractions)
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
    )


# ---------------------------------------------------------------------------------------------
# entropy accumulation (Dupuis-Fawzi second order, Tan et al. / Nadlinger et al. form)
# ---------------------------------------------------------------------------------------------


def _eta_omega(omega: FloatArray, scale: float) -> FloatArray:
    """scale * eta(omega), Nadlinger et al. Suppl. Eq. (62): 0 on [1/4, 3/4], else the CHSH bound
    with S = 8 omega - 4 (or its mirror 4 - 8 omega)."""
    s = np.where(omega >= 0.5, 8.0 * omega - 4.0, 4.0 - 8.0 * omega)
    x = np.sqrt(np.clip(s * s / 4.0 - 1.0, 0.0, 1.0))
    p = (1.0 + x) / 2.0
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


def _maximise_scalar(
    fun: Callable[[float], float], lo: float, hi: float, n_grid: int
) -> tuple[float, float]:
    """Maximise a 1-D function: coarse grid, then bounded Brent around the best grid point."""
    xs = np.linspace(lo, hi, n_grid)
    vals = [fun(float(x)) for x in xs]
    i = int(np.argmax(vals))
    a = float(xs[max(i - 1, 0)])
    b = float(xs[min(i + 1, n_grid - 1)])
    res = optimize.minimize_scalar(
        lambda x: -fun(x), bounds=(a, b), method="bounded", options={"xatol": 1e-10}
    )
    if -float(res.fun) >= vals[i]:
        return float(res.x), -float(res.fun)
    return float(xs[i]), float(vals[i])


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

    @classmethod
    def from_fractions(cls, eps: float, fr: tuple[float, ...]) -> _EatEpsilons:
        """fr = (eps_EC/eps, eps_PA/s, s' share, 2 s'' share, chain share) with s = eps - eps_EC
        the secrecy budget = eps_EA = eps_PA + 2 eps_s (the last three shares split eps_s)."""
        x_ec, y_pa, z1, z2, _ = fr
        eps_ec = eps * x_ec / (x_ec + 1.0)  # keeps eps_EC < eps
        budget = eps - eps_ec
        eps_pa = budget * y_pa / (y_pa + 1.0)
        eps_s = (budget - eps_pa) / 2.0
        return cls(eps_ec, budget, eps_pa, eps_s, eps_s * z1, eps_s * z2 / 2.0)


def _eat_constant_cost(e: _EatEpsilons, alpha: float, rounds: int) -> float:
    """Bits of the EAT key length that depend on the epsilons, at fixed alpha'."""
    log_ea = math.log2(1.0 / e.ea)
    log5 = math.log2(2.0 * _EAT_MAX_ENTROPY_DIM + 1.0)
    theta2 = _theta(e.smooth_max)
    u = min(math.sqrt((theta2 + log_ea) / (rounds * log5 * log5)), (1.0 - 1e-9) / log5)
    chain = e.smooth - e.smooth_min - 2.0 * e.smooth_max
    if chain <= 0.0:
        return math.inf
    return (
        (_theta(e.smooth_min) + alpha * log_ea) / (alpha - 1.0)
        + rounds * u * log5 * log5
        + (theta2 + (1.0 + u) * log_ea) / u
        + 3.0 * _theta(chain)
        + _verification_bits(e.correctness)
        + _privacy_amplification_bits(e.pa)
    )


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
    """Finite key by entropy accumulation for the spot-checking protocol, general attacks.

    Protocol of Arnon-Friedman, Dupuis, Fawzi, Renner & Vidick, Nat. Commun. 9, 459 (2018) as run
    by Nadlinger et al. (2022): test rounds are not announced; Alice's outputs of key *and* test
    rounds form the raw key, reconciliation lets Bob learn all of them and Bob checks the CHSH
    score himself. Key length

        l = H - leak_EC - log2(2/eps_EC) - 2 log2(1/(2 eps_PA)),

    with H from :func:`eat_entropy_bound` (Nadlinger et al. Suppl. Eq. (73) without their
    Trevisan-extractor and authentication terms, here replaced by two-universal hashing) and
    leak_EC given, or f [n h(Q) + t h((4 - S)/8)] (Bob must also learn Alice's test outputs, which
    disagree with his guess with the CHSH losing probability). Soundness eps_EC + max(eps_EA,
    eps_PA + 2 eps_s), eps_s' + 2 eps_s'' < eps_s; the split is optimised (a second pass after the
    tangent point and alpha' are known). The test fraction is t/N: with the paper's 2/3 the test
    rounds' reconciliation and the n gamma max-entropy term exceed the entropy and the key is
    zero; this method needs gamma << 1. Needs equally likely test pairs.
    """
    st = inputs.settings
    if not st.uniform_test_pairs:
        raise ParameterError("the EAT method implements equally likely CHSH test pairs")
    eps = float(inputs.eps)
    start = (1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0)  # eps_EC = eps/4, ...
    first = _EatEpsilons.from_fractions(eps, start)
    alpha = _eat_bound_with(inputs, first).alpha

    def value(fr: tuple[float, ...]) -> float:
        # fr: softmax weights (ec, pa, s', s'', chain, 1); map to the ratios of from_fractions
        w_ec, w_pa, w1, w2, w3, w_ref = fr
        ratios = (w_ec / w_ref, w_pa / w_ref, w1 / (w1 + w2 + w3), w2 / (w1 + w2 + w3), 0.0)
        return -_eat_constant_cost(_EatEpsilons.from_fractions(eps, ratios), alpha, inputs.rounds)

    weights = _maximise_split(value, 5, (0.01, 0.1, 0.5, 0.2, 0.1, 1.0))
    w_ec, w_pa, w1, w2, w3, w_ref = weights
    ratios = (w_ec / w_ref, w_pa / w_ref, w1 / (w1 + w2 + w3), w2 / (w1 + w2 + w3), 0.0)
    chosen = _EatEpsilons.from_fractions(eps, ratios)
    if _eat_constant_cost(chosen, alpha, inputs.rounds) > _eat_constant_cost(
        first, alpha, inputs.rounds
    ):
        chosen = first
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
    )


# ---------------------------------------------------------------------------------------------
# dispatcher
# ---------------------------------------------------------------------------------------------


def finite_key(
    *,
    method: Method,
    rounds: int,
    key_rounds: int,
    test_rounds: int,
    chsh: float,
    qber: float,
    eps: float,
    ec_efficiency: float | None = None,
    leak_ec_bits: float | None = None,
    setting_probabilities: SettingProbabilities | None = None,
    relation: PhaseErrorRelation = "chord",
) -> FiniteKeyResult:
    """Finite secret-key length of a DI-QKD run by ``method`` ("phase-error" or "eat").

    Validates the inputs (:class:`FiniteKeyInputs`; S must lie in (2, 2 sqrt 2]) and dispatches to
    :func:`phase_error_key` (``relation`` selects its CHSH -> phase-error line) or :func:`eat_key`.
    """
    inputs = FiniteKeyInputs(
        rounds=rounds,
        key_rounds=key_rounds,
        test_rounds=test_rounds,
        chsh=chsh,
        qber=qber,
        eps=eps,
        ec_efficiency=ec_efficiency,
        leak_ec_bits=leak_ec_bits,
        setting_probabilities=setting_probabilities,
    )
    if method == "phase-error":
        return phase_error_key(inputs, relation=relation)
    if method == "eat":
        return eat_key(inputs)
    raise ParameterError(f"unknown method {method!r}; use 'phase-error' or 'eat'")
