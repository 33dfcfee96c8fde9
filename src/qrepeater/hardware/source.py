"""Trapped-ion single-photon source and ion qubit (40Ca+).

Photon generation (paper, Fig. 2a): after a pi pulse to ``|up> = D5/2``, a short 854 nm pulse
transfers a fraction ``alpha`` of the population to ``P3/2``, which decays emitting a 393 nm
photon and leaves the ion in ``|down> = S1/2``: the ion-photon state is
``sqrt(1-alpha)|up,0> + sqrt(alpha)|down,1>`` (Cabrillo et al., PRA 59, 1025 (1999)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qrepeater.errors import ParameterError
from qrepeater.hardware._validate import non_negative, positive, probability


@dataclass(frozen=True)
class IonSource:
    """Photon efficiency of each node into single-mode fibre before the converter.

    ``efficiency_a``/``efficiency_b``: probability that an emitted 393 nm photon is in the fibre
    before the QFC module (collection x coupling), Alice and Bob.
    """

    efficiency_a: float
    efficiency_b: float

    def __post_init__(self) -> None:
        probability("IonSource", "efficiency_a", self.efficiency_a, open_low=True)
        probability("IonSource", "efficiency_b", self.efficiency_b, open_low=True)


@dataclass(frozen=True)
class IonQubit:
    """Ion-qubit imperfections that enter the heralded state.

    ``residual_coherence``: coherence factor from the ion's motion, the Debye-Waller factor of the
    recoil kick (Slodicka et al., PRL 110, 083603 (2013)); see :func:`debye_waller`;
    ``spam_error``: per-ion state-preparation-and-measurement error ``e``, a symmetric readout flip
    that shrinks every Pauli expectation by ``1-2e`` (two-body correlators by ``(1-2e)^2``);
    ``d52_lifetime_s``: natural lifetime of D5/2 (``|up>``), 1.16 s.
    """

    residual_coherence: float
    spam_error: float
    d52_lifetime_s: float

    def __post_init__(self) -> None:
        probability("IonQubit", "residual_coherence", self.residual_coherence)
        probability("IonQubit", "spam_error", self.spam_error, open_high=True)
        if self.spam_error >= 0.5:
            raise ParameterError(f"IonQubit.spam_error must lie in [0, 0.5), got {self.spam_error}")
        positive("IonQubit", "d52_lifetime_s", self.d52_lifetime_s)

    @property
    def readout_shrink(self) -> float:
        """Shrink ``1-2e`` of each single-ion Pauli expectation from SPAM error."""
        return 1.0 - 2.0 * self.spam_error

    def d52_decay_probability(self, seconds: float) -> float:
        """Probability that ``|up>`` (D5/2) decays to S1/2 within ``seconds``."""
        non_negative("IonQubit", "seconds", seconds)
        return -math.expm1(-seconds / self.d52_lifetime_s)


def debye_waller(*, lamb_dicke: float, mean_phonons: float) -> float:
    """Coherence factor ``exp(-eta^2 (2 nbar + 1) / 2)`` of one ion's recoil kick.

    For a thermal motional state of mean occupation ``nbar``, the overlap of the motional state
    with its displaced copy after a kick of Lamb-Dicke parameter ``eta`` averages to this
    Debye-Waller factor (Eschner et al., Nature 413, 495 (2001); Slodicka et al. 2013).
    """
    non_negative("debye_waller", "lamb_dicke", lamb_dicke)
    non_negative("debye_waller", "mean_phonons", mean_phonons)
    return math.exp(-(lamb_dicke**2) * (2 * mean_phonons + 1) / 2)
