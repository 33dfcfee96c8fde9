"""Secret-key rates of CHSH-based device-independent QKD: asymptotic and finite-key.

Protocol (Zhang, Zeng, Ye, Lo & Ma, PRL 131, 140801 (2023), as run by the experiment this package
models): Alice's input X is in {0, 1}, Bob's Y in {0, 1, 2}. Rounds with X, Y in {0, 1} are CHSH
test rounds whose inputs and outputs are announced, (X, Y) = (0, 2) are key rounds, (1, 2) rounds
are discarded. Observed: the CHSH value S of the test rounds and the QBER Q of the key rounds.

* :func:`asymptotic_rate` -- r = 1 - h(Q) - h((1 + sqrt((S/2)^2 - 1))/2) per key round
  (Pironio et al., NJP 11, 045021 (2009)).
* :func:`finite_key` -- finite-key length by one of three methods, each sound against general
  (coherent) attacks *given the assumptions it reports* (``result.assumptions``,
  :data:`ASSUMPTIONS`):

  - ``"phase-error"`` (:mod:`.phase_error`): complementarity, protocol as run; the default
    ``"chord"`` relation is conditional on the Jordan-block-label reduction;
  - ``"geat"`` (:mod:`.geat`): generalised entropy accumulation, protocol as run, no label
    assumption; announcing test outputs needs the GEAT non-signalling condition (devices carry
    no information about earlier key-round outputs into later rounds, e.g. no memory);
  - ``"renyi-geat"`` (:mod:`.renyi`): the Renyi form of the GEAT with Renyi privacy
    amplification (Kamin et al., arXiv:2406.10198, Thms. 1 and 3), protocol as run, same
    assumptions as ``"geat"``, no smoothing term;
  - ``"eat"`` (:mod:`.eat`): entropy accumulation for the spot-checking protocol (test outputs
    kept secret), which is not the protocol the experiment ran; devices may have memory.

* :func:`minimum_rounds` -- the smallest N with a positive key at fixed fractions and S, Q.

Epsilon splits are fixed fractions of the soundness budget, set before any data. Key lengths are
evaluated with acceptance thresholds equal to the observed S and Q (what a protocol pre-agreeing
those thresholds certifies); completeness is not bounded here.
"""

from __future__ import annotations

import math

from qrepeater.diqkd.keyrate.asymptotic import asymptotic_rate, chsh_entropy_bound
from qrepeater.diqkd.keyrate.common import (
    ASSUMPTIONS,
    DEFAULT_EC_EFFICIENCY,
    METHODS,
    TSIRELSON,
    EpsilonSplit,
    FiniteKeyInputs,
    FiniteKeyResult,
    Method,
    PhaseErrorRelation,
    SettingProbabilities,
)
from qrepeater.diqkd.keyrate.eat import EatBound, EatDetails, eat_entropy_bound, eat_key
from qrepeater.diqkd.keyrate.geat import GeatBound, GeatDetails, geat_entropy_bound, geat_key
from qrepeater.diqkd.keyrate.phase_error import (
    PhaseErrorDetails,
    phase_error_key,
    phase_error_relation,
)
from qrepeater.diqkd.keyrate.renyi import RenyiBound, RenyiDetails, renyi_entropy_bound, renyi_key
from qrepeater.errors import ParameterError
from qrepeater.qkdpp.entropy import binary_entropy

__all__ = [
    "ASSUMPTIONS",
    "DEFAULT_EC_EFFICIENCY",
    "METHODS",
    "TSIRELSON",
    "EatBound",
    "EatDetails",
    "EpsilonSplit",
    "FiniteKeyInputs",
    "FiniteKeyResult",
    "GeatBound",
    "GeatDetails",
    "Method",
    "PhaseErrorDetails",
    "PhaseErrorRelation",
    "RenyiBound",
    "RenyiDetails",
    "SettingProbabilities",
    "asymptotic_rate",
    "binary_entropy",
    "chsh_entropy_bound",
    "eat_entropy_bound",
    "eat_key",
    "finite_key",
    "geat_entropy_bound",
    "geat_key",
    "minimum_rounds",
    "phase_error_key",
    "phase_error_relation",
    "renyi_entropy_bound",
    "renyi_key",
]


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
    """Finite secret-key length of a DI-QKD run by ``method`` (one of :data:`METHODS`).

    Validates the inputs (:class:`FiniteKeyInputs`; S must lie in (2, 2 sqrt 2]) and dispatches to
    :func:`phase_error_key` (``relation`` selects its CHSH -> phase-error line), :func:`geat_key`,
    :func:`renyi_key` or :func:`eat_key`. Raises :class:`ParameterError` for an unknown method.
    """
    if method not in METHODS:
        raise ParameterError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
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
    if method == "geat":
        return geat_key(inputs)
    if method == "renyi-geat":
        return renyi_key(inputs)
    return eat_key(inputs)


def minimum_rounds(
    *,
    method: Method,
    chsh: float,
    qber: float,
    eps: float,
    key_fraction: float,
    test_fraction: float,
    ec_efficiency: float | None = None,
    setting_probabilities: SettingProbabilities | None = None,
    relation: PhaseErrorRelation = "chord",
    max_rounds: int = 10**10,
) -> int | None:
    """Smallest number of rounds N (to 1%) with a positive finite key at fixed S, Q and fractions.

    Key and test rounds are round(N * fraction). Bisection in log N between 100 and
    ``max_rounds`` (the key is increasing in N for every method; checked by the tests). Returns
    None when even ``max_rounds`` gives no key.
    """
    for name, v in (("key_fraction", key_fraction), ("test_fraction", test_fraction)):
        if not math.isfinite(v) or not 0.0 < v < 1.0:
            raise ParameterError(f"{name} must lie in (0, 1), got {v!r}")
    if key_fraction + test_fraction > 1.0:
        raise ParameterError("key_fraction + test_fraction must not exceed 1")

    def positive(n: int) -> bool:
        k = max(1, round(n * key_fraction))
        t = max(1, round(n * test_fraction))
        if k + t > n:
            return False
        res = finite_key(
            method=method,
            rounds=n,
            key_rounds=k,
            test_rounds=t,
            chsh=chsh,
            qber=qber,
            eps=eps,
            ec_efficiency=ec_efficiency,
            setting_probabilities=setting_probabilities,
            relation=relation,
        )
        return res.finite_key_bits > 0

    if not positive(max_rounds):
        return None
    lo, hi = 100, max_rounds
    if positive(lo):
        return lo
    while hi > lo * 1.01:
        mid = round(math.sqrt(lo * hi))
        if positive(mid):
            hi = mid
        else:
            lo = mid
    return hi
