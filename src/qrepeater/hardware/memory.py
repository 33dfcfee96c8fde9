"""Trapped-ion quantum memory: storage qubit under Knill dynamical decoupling.

After heralding, each ion's entanglement is moved from ``{|down>, |up>=D5/2}`` to the ground-state
pair ``{|down>, |s>}`` (S1/2, m = +1/2 and -1/2) and protected by Knill dynamical-decoupling
pulses (KDD, Souza, Alvarez & Suter, PRL 106, 240501 (2011)) every ``pulse_interval_s``.
The paper measures (Fig. 3d) ``<XX>(t) = <XX>_0 exp(-t/tau)`` with ``tau = 550(36)`` ms (magnetic
field noise left by the decoupling) and a linear decay of ``<ZZ>`` attributed to the accumulated
errors of the decoupling pulses; here ``<ZZ>(t) = <ZZ>_0 (1 - kappa t)_+``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qrepeater.errors import ParameterError
from qrepeater.hardware._validate import non_negative, positive, probability


@dataclass(frozen=True)
class Memory:
    """Storage-qubit parameters.

    ``coherence_time_s``: 1/e time ``tau`` of the two-ion coherence ``<XX>`` (paper: 550 ms);
    ``zz_decay_per_s``: slope ``kappa`` of the linear ``<ZZ>`` decay (calibrated);
    ``pulse_interval_s``: KDD pulse spacing (paper: 0.5 ms);
    ``transfer_time_s``: time between the herald reaching the node and the end of the transfer
    to the storage qubit, during which ``|up> = D5/2`` can decay;
    ``transfer_fidelity``: per-ion fidelity of the storage transfer (Raman + 729 nm pi pulse),
    applied as a depolarising channel.
    """

    coherence_time_s: float
    zz_decay_per_s: float
    pulse_interval_s: float
    transfer_time_s: float
    transfer_fidelity: float

    def __post_init__(self) -> None:
        positive("Memory", "coherence_time_s", self.coherence_time_s)
        non_negative("Memory", "zz_decay_per_s", self.zz_decay_per_s)
        positive("Memory", "pulse_interval_s", self.pulse_interval_s)
        non_negative("Memory", "transfer_time_s", self.transfer_time_s)
        probability("Memory", "transfer_fidelity", self.transfer_fidelity)
        if self.transfer_fidelity < 0.25:
            raise ParameterError(
                f"Memory.transfer_fidelity must be at least 1/4, got {self.transfer_fidelity}"
            )
        self._check_physical()

    def _check_physical(self) -> None:
        """The per-ion storage channel must be completely positive at every storage time.

        With Bloch shrinks ``(d, d, z)``, ``d = exp(-t/2tau)``, ``z = sqrt((1-kappa t)_+)``, a
        Pauli channel needs ``2d <= 1 + z`` (Fujiwara-Algoet); near ``t = 0`` this requires
        ``kappa <= 2/tau``, and it must hold until ``<ZZ>`` has vanished.
        """
        tau, kappa = self.coherence_time_s, self.zz_decay_per_s
        t_end = 1.0 / kappa if kappa > 0 else 0.0
        for i in range(401):
            t = t_end * i / 400
            d = math.exp(-t / (2 * tau))
            z = math.sqrt(max(0.0, 1.0 - kappa * t))
            if 2 * d > 1 + z + 1e-12:
                raise ParameterError(
                    f"Memory: <ZZ> decay {kappa:g}/s is too fast for coherence time {tau:g} s "
                    f"(no physical storage channel at t = {t:.3g} s)"
                )

    @property
    def decoherence_rate_hz(self) -> float:
        """Decoherence rate ``1/tau`` used for the link efficiency (paper: 1.8(1) Hz)."""
        return 1.0 / self.coherence_time_s

    def xx_factor(self, t_s: float) -> float:
        """Factor ``exp(-t/tau)`` multiplying ``<XX>`` and ``<YY>`` after storage time ``t``."""
        non_negative("Memory", "t_s", t_s)
        return math.exp(-t_s / self.coherence_time_s)

    def zz_factor(self, t_s: float) -> float:
        """Factor ``(1 - kappa t)_+`` multiplying ``<ZZ>`` after storage time ``t``."""
        non_negative("Memory", "t_s", t_s)
        return max(0.0, 1.0 - self.zz_decay_per_s * t_s)

    def pulses(self, t_s: float) -> int:
        """Number of decoupling pulses applied in ``t`` seconds."""
        non_negative("Memory", "t_s", t_s)
        return int(t_s // self.pulse_interval_s)


def zz_decay_from_pulse_errors(
    *, gate_errors: tuple[float, ...], pulse_interval_s: float, flip: bool = False
) -> float:
    """Initial slope of ``<ZZ>(t)`` implied by per-pulse errors of the decoupling sequence.

    If each pulse depolarises its ion with probability ``p`` (spontaneous emission during the
    pulse), ``<Z>`` of that ion shrinks by ``1 - p`` per pulse, so ``<ZZ>`` decays at the rate
    ``sum(p_i) / pulse_interval``; if an error is a bit flip instead (``flip=True``), by
    ``1 - 2p`` per pulse and twice as fast.
    """
    positive("zz_decay_from_pulse_errors", "pulse_interval_s", pulse_interval_s)
    for p in gate_errors:
        probability("zz_decay_from_pulse_errors", "gate_error", p)
    factor = 2.0 if flip else 1.0
    return factor * sum(gate_errors) / pulse_interval_s
