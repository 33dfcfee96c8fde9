"""Trapped-ion quantum memory: storage qubit under Knill dynamical decoupling.

After heralding, each ion's entanglement is moved from ``{|down>, |up>=D5/2}`` to the ground-state
pair ``{|down>, |s>}`` (S1/2, m = +1/2 and -1/2) and protected by Knill dynamical-decoupling
pulses (KDD, Souza, Alvarez & Suter, PRL 106, 240501 (2011)) every ``pulse_interval_s``.
The paper measures (Fig. 3d) ``<XX>(t) = <XX>_0 exp(-t/tau)`` with ``tau = 550(36)`` ms (magnetic
field noise left by the decoupling) and a linear decay of ``<ZZ>`` attributed to the accumulated
errors of the decoupling pulses; here ``<ZZ>(t) = <ZZ>_0 (1 - kappa t)_+``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qrepeater.errors import ParameterError
from qrepeater.hardware._validate import non_negative, positive, probability

FloatArray = npt.NDArray[np.float64]
FloatLike = float | npt.ArrayLike


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

    Per ion the storage channel is a Pauli channel with Bloch shrinks ``(d, d, z)``:
    ``z(t) = sqrt((1 - kappa t)_+)`` from the pulse errors, and ``d(t) = exp(-t / 2 tau)`` as
    measured, but never above ``(1 + z)/2``: pulse errors are rotation errors about in-plane axes
    (random X/Y flips), which shrink ``<X>`` and ``<Y>`` by ``(1 + z)/2`` themselves, so no
    dephasing improvement can make the coherence outlive them (this bound is also the complete
    positivity condition of the channel). For the calibrated presets the bound never binds and
    ``<XX>(t) = <XX>_0 exp(-t/tau)`` exactly.
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

    @property
    def decoherence_rate_hz(self) -> float:
        """Decoherence rate ``1/tau`` used for the link efficiency (paper: 1.8(1) Hz)."""
        return 1.0 / self.coherence_time_s

    def z_shrink(self, t_s: FloatLike) -> FloatArray:
        """Per-ion shrink of ``<Z>``, ``sqrt((1 - kappa t)_+)`` (vectorised)."""
        t = _times(t_s)
        return np.sqrt(np.clip(1.0 - self.zz_decay_per_s * t, 0.0, None))

    def xy_shrink(self, t_s: FloatLike) -> FloatArray:
        """Per-ion shrink of ``<X>``, ``<Y>``: ``min(exp(-t/2tau), (1 + z)/2)`` (vectorised)."""
        t = _times(t_s)
        return np.minimum(np.exp(-t / (2 * self.coherence_time_s)), (1 + self.z_shrink(t)) / 2)

    def xx_factor(self, t_s: FloatLike) -> FloatArray:
        """Factor multiplying the two-ion ``<XX>`` and ``<YY>`` after storage time ``t``."""
        return np.asarray(self.xy_shrink(t_s) ** 2)

    def zz_factor(self, t_s: FloatLike) -> FloatArray:
        """Factor ``(1 - kappa t)_+`` multiplying ``<ZZ>`` after storage time ``t``."""
        return np.asarray(self.z_shrink(t_s) ** 2)

    @property
    def pulse_limited(self) -> bool:
        """True when the pulse-error bound on the coherence binds at some storage time (then
        ``<XX>`` is not a pure exponential and averages are computed numerically)."""
        kappa = self.zz_decay_per_s
        if kappa == 0:
            return False
        t = np.linspace(0.0, 1.0 / kappa, 2001)
        return bool(
            np.any(np.exp(-t / (2 * self.coherence_time_s)) > (1 + self.z_shrink(t)) / 2 + 1e-15)
        )

    def pulses(self, t_s: float) -> int:
        """Number of decoupling pulses applied in ``t`` seconds."""
        non_negative("Memory", "t_s", t_s)
        return int(t_s // self.pulse_interval_s)


def _times(t_s: FloatLike) -> FloatArray:
    t = np.asarray(t_s, dtype=np.float64)
    if np.any(~np.isfinite(t)) or np.any(t < 0):
        raise ParameterError("storage times must be finite and non-negative")
    return t


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
