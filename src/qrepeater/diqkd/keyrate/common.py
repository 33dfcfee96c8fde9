"""Shared pieces of the DI-QKD key-rate bounds: inputs, results, epsilon splits, entropy helpers.

Protocol (Zhang, Zeng, Ye, Lo & Ma, PRL 131, 140801 (2023), as run by the experiment this package
models): Alice's input X is in {0, 1}, Bob's Y in {0, 1, 2}. Rounds with X, Y in {0, 1} are CHSH
test rounds, (X, Y) = (0, 2) are key rounds, (1, 2) rounds are discarded.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from qrepeater.errors import ParameterError
from qrepeater.quantum.bell import TSIRELSON as TSIRELSON  # re-exported for the bounds

if TYPE_CHECKING:
    from qrepeater.diqkd.keyrate.eat import EatDetails
    from qrepeater.diqkd.keyrate.geat import GeatDetails
    from qrepeater.diqkd.keyrate.phase_error import PhaseErrorDetails
    from qrepeater.diqkd.keyrate.renyi import RenyiDetails

Method = Literal["phase-error", "eat", "geat", "renyi-geat"]
METHODS: tuple[Method, ...] = ("phase-error", "eat", "geat", "renyi-geat")
PhaseErrorRelation = Literal["chord", "strict"]
FloatArray = npt.NDArray[np.float64]

"""Largest quantum CHSH value, 2*sqrt(2) (Tsirelson bound)."""

DEFAULT_EC_EFFICIENCY = 1.16
"""Reconciliation efficiency f used when neither ``ec_efficiency`` nor ``leak_ec_bits`` is given:
a typical value for practical LDPC reconciliation. It only predicts the leakage; for a security
claim pass the bits actually disclosed (``leak_ec_bits``)."""

PROTOCOL_AS_RUN = (
    "as run: test data (inputs and outputs of CHSH rounds) announced, key from the (X, Y) = (0, 2) "
    "rounds only (Zhang et al., PRL 131, 140801 (2023))"
)
PROTOCOL_SPOT_CHECKING = (
    "spot-checking (Arnon-Friedman et al., Nat. Commun. 9, 459 (2018); Nadlinger et al., Nature "
    "607, 682 (2022)): test outputs never announced, Alice's test outputs reconciled and kept in "
    "the raw key; NOT the protocol the experiment ran"
)

STANDARD_DI = (
    "standard DI-QKD setting: quantum theory; isolated labs (devices cannot send their outputs "
    "out); inputs from trusted local randomness independent of devices and Eve; authenticated "
    "public channel; trusted classical post-processing"
)
CHORD_LABEL = (
    "Jordan-block-label reduction: the virtual phase-error estimator may use Alice's per-round "
    "qubit-block label (CHSH chord e_ph <= 1.7071 - 0.6036 S); proven for devices that measure a "
    "fresh subsystem each round, NOT proven for devices with memory across rounds"
)
STRICT_LINE = (
    "complementarity reduction of Zhang et al. (2023) round by round, label-blind line "
    "e_ph <= 3.4142 - 1.2071 S (no block label)"
)
NO_DEVICE_MEMORY = (
    "GEAT non-signalling condition (Metger, Fawzi, Sutter & Renner, CMP 405, 261 (2024), Thm. "
    "4.3): Eve's systems and the public data after round i must be reproducible from Eve's "
    "systems before it, without the parties' stored outputs. Met when the devices carry no "
    "information about earlier key rounds' outputs (A and B of (0, 2) rounds) into later rounds, "
    "e.g. devices without memory across rounds, each measuring its round's subsystem of a state "
    "that Eve may entangle across rounds and choose adaptively; classical device memory of inputs, "
    "announced data and discarded-round outputs (handed to Eve in the model) is harmless. Not met"
    " in general by devices with memory: test outputs are announced, so a device could encode "
    "earlier key outputs in them (memory attacks, Barrett, Colbeck & Kent, PRL 110, 010503 "
    "(2013)); the EAT's Markov condition fails the same way, which is why the spot-checking "
    "protocol keeps test outputs secret"
)
DEVICE_MEMORY_ALLOWED = (
    "devices may keep memory across rounds (sequential model): the EAT Markov condition holds "
    "because during the rounds only inputs (independent trusted randomness) and test flags are "
    "public, and every output stays with the parties until reconciliation"
)

ASSUMPTIONS: dict[str, tuple[str, ...]] = {
    "phase-error/chord": (STANDARD_DI, CHORD_LABEL),
    "phase-error/strict": (STANDARD_DI, STRICT_LINE),
    "eat": (STANDARD_DI, DEVICE_MEMORY_ALLOWED),
    "geat": (STANDARD_DI, NO_DEVICE_MEMORY),
    "renyi-geat": (STANDARD_DI, NO_DEVICE_MEMORY),
}
"""What each bound rests on, by method (phase-error by relation); reported as ``assumptions``."""

_S_TOL = 1e-12  # tolerance on S <= 2*sqrt(2) for values computed in floating point
_LN2 = math.log(2.0)


# ---------------------------------------------------------------------------------------------
# entropy helpers
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
    ``None``: it depends on thresholds fixed before the run, not on this bound. ``rule`` states how
    the split was fixed: always a priori, as fixed fractions of the soundness budget that are part
    of the pre-agreed protocol (never optimised on the observed statistics).
    """

    soundness: float
    correctness: float
    secrecy: float
    privacy_amplification: float
    smoothing: float | None
    parameter_estimation: float | None
    composition: str
    completeness: float | None = None
    rule: str = ""

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
            if v is None and name in ("smoothing", "parameter_estimation"):
                continue  # not used by the bound (Renyi privacy amplification)
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
            "fixed_in_advance": True,
            "rule": self.rule,
        }


@dataclass(frozen=True)
class FiniteKeyResult:
    """A finite-key length with everything needed to audit it.

    ``finite_key_bits`` is the floor of the bound, never negative; ``asymptotic_rate`` the
    per-key-round rate of :func:`asymptotic_rate` at the same S and Q; ``leak_ec_bits`` the
    reconciliation leakage charged; ``eps`` the epsilon split; ``details`` the method's
    intermediate quantities; ``protocol`` the protocol variant the bound is for and
    ``assumptions`` what it rests on beyond quantum theory and the DI setting
    (:data:`ASSUMPTIONS`).
    """

    method: Method
    finite_key_bits: int
    asymptotic_rate: float
    inputs: FiniteKeyInputs
    leak_ec_bits: float
    eps: EpsilonSplit
    details: PhaseErrorDetails | EatDetails | GeatDetails | RenyiDetails
    protocol: str = ""
    assumptions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.method not in METHODS:
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
            "protocol": self.protocol,
            "assumptions": list(self.assumptions),
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


def _key_round_leak(inputs: FiniteKeyInputs) -> float:
    """Reconciliation leakage charged against the key rounds: the bits actually disclosed when
    known, else f n h(Q) (Shannon limit times the efficiency f)."""
    if inputs.leak_ec_bits is not None:
        return float(inputs.leak_ec_bits)
    return inputs.efficiency * inputs.key_rounds * _h(float(inputs.qber))


def _check_bound_args(
    rounds: int, settings: SettingProbabilities, chsh_threshold: float
) -> tuple[int, float]:
    """Validated ``(rounds, CHSH threshold)`` of an entropy bound (threshold capped at
    Tsirelson's bound within rounding)."""
    n = _check_int("rounds", rounds)
    if n < 1:
        raise ParameterError(f"rounds must be >= 1, got {rounds}")
    if not isinstance(settings, SettingProbabilities):
        raise ParameterError("settings must be a SettingProbabilities")
    s_thr = float(chsh_threshold)
    if not math.isfinite(s_thr) or not 2.0 < s_thr <= TSIRELSON + 1e-12:
        raise ParameterError(f"CHSH threshold must lie in (2, 2*sqrt(2)], got {chsh_threshold!r}")
    return n, min(s_thr, TSIRELSON)


#: tangent points of the CHSH min-tradeoff function searched in (2, 2 sqrt 2)
_TANGENT_LO = 2.0 + 1e-6
_TANGENT_HI = TSIRELSON - 1e-6


def _maximise_tangent_and_order(
    value: Callable[[float, float], float],
    *,
    grid_points: int,
    xatol_order: float,
    xatol_tangent: float,
) -> tuple[float, float]:
    """Maximise ``value(s_t, z)`` over the tangent point s_t in (2, 2 sqrt 2) and an unbounded
    order parameter z (the bounds map it into their Renyi-order range): a coarse grid over s_t,
    bounded Brent over z at each point, then Brent over s_t around the best grid point. Any
    choice is a valid bound, so imperfect optimisation only costs key. Returns ``(s_t, z)``."""
    from scipy import optimize  # imported here: keeps CLI start-up fast

    def best_order(s_t: float) -> tuple[float, float]:
        res = optimize.minimize_scalar(
            lambda z: -value(s_t, z),
            bounds=(-25.0, 6.0),
            method="bounded",
            options={"xatol": xatol_order},
        )
        return float(res.x), -float(res.fun)

    span = _TANGENT_HI - _TANGENT_LO
    grid = [_TANGENT_LO + span * k / (grid_points - 1) for k in range(grid_points)]
    vals = [best_order(s)[1] for s in grid]
    i = max(range(len(grid)), key=lambda k: vals[k])
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    res = optimize.minimize_scalar(
        lambda s: -best_order(s)[1],
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": xatol_tangent},
    )
    s_best = float(res.x) if -float(res.fun) >= vals[i] else grid[i]
    return s_best, best_order(s_best)[0]


def _floor_bits(x: float) -> int:
    if not math.isfinite(x) or x <= 0.0:
        return 0
    return math.floor(x)


def _maximise_scalar(
    fun: Callable[[float], float], lo: float, hi: float, n_grid: int
) -> tuple[float, float]:
    """Maximise a 1-D function: coarse grid, then bounded Brent around the best grid point."""
    xs = np.linspace(lo, hi, n_grid)
    vals = [fun(float(x)) for x in xs]
    i = int(np.argmax(vals))
    a = float(xs[max(i - 1, 0)])
    b = float(xs[min(i + 1, n_grid - 1)])
    from scipy import optimize  # imported here: keeps CLI start-up fast

    res = optimize.minimize_scalar(
        lambda x: -fun(x), bounds=(a, b), method="bounded", options={"xatol": 1e-10}
    )
    if -float(res.fun) >= vals[i]:
        return float(res.x), -float(res.fun)
    return float(xs[i]), float(vals[i])
