"""Segments of a repeater chain and the Pauli-correlator algebra of their pairs.

State of a pair. Every pair is tracked by its three two-qubit correlators written in the frame of
the target Bell state ``psi+``: ``f = (<XX>, <YY>, -<ZZ>)`` (``f = (1, 1, 1)`` for ``psi+``,
``(w, w, w)`` for a Werner state of parameter ``w``). The fidelity with ``psi+`` is
``(1 + fx + fy + fz)/4``, and everything the chain reports (fidelity, CHSH value, QBER, key
fractions) depends on the correlators only, not on the local Bloch vectors.

Swap. A Bell-state measurement with Pauli-frame correction maps the correlation matrices as
``T_AD = T_AB M T_CD`` (Zukowski et al., PRL 71, 4287 (1993); for diagonal ``T`` the corrected
output is diagonal), so in the ``psi+`` frame the correlators multiply, ``f_out = f_1 * f_2``
componentwise; for Werner pairs this is the literature's ``w_out = w_1 w_2`` (Brand, Coopmans &
Elkouss, IEEE JSAC 38, 619 (2020), Sec. II). :mod:`qrepeater.quantum.measurement` checks it on
density matrices (tests). Swap noise: a two-qubit depolarising gate error shrinks every output
correlator by ``gate_shrink``; a readout flip error ``e`` on each of the two Bell-measurement bits
applies the wrong Pauli correction with probability ``e`` per bit, which shrinks ``(fx, fy, fz)``
by ``((1-2e), (1-2e)^2, (1-2e))`` (Briegel, Duer, Cirac & Zoller, PRL 81, 5932 (1998), imperfect
measurement model).

Memory decay. While a pair waits, each stored qubit's Bloch components shrink (the memory's Pauli
channel, :class:`qrepeater.hardware.Memory`): ``<X>, <Y>`` by ``exp(-t / 2 tau)``, ``<Z>`` by
``sqrt((1 - kappa t)_+)``, so a pair with both qubits stored ``t`` has ``<XX>`` times
``exp(-t/tau)`` and ``<ZZ>`` times ``(1 - kappa t)_+`` (:class:`qrepeater.link.storage.StoredLink`).
The numerical engine needs a semigroup, i.e. a per-pair exponential ``exp(-g t)`` per component;
for the calibrated memory it uses ``g_x = g_y = 1/tau`` (exact) and ``g_z = kappa`` (the linear
law's initial slope); the Monte-Carlo engine can apply the calibrated per-qubit channel exactly,
ion by ion (``memory_model="calibrated"``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from qrepeater.errors import ParameterError
from qrepeater.quantum.bell import TSIRELSON

FloatArray = npt.NDArray[np.float64]
MemoryModel = Literal["exponential", "calibrated"]


def _finite(name: str, value: float) -> float:
    v = float(value)
    if not math.isfinite(v):
        raise ParameterError(f"{name} must be finite, got {value!r}")
    return v


def _prob(name: str, value: float, *, open_low: bool = False) -> float:
    v = _finite(name, value)
    if not (0.0 < v <= 1.0 if open_low else 0.0 <= v <= 1.0):
        lo = "(0" if open_low else "[0"
        raise ParameterError(f"{name} must lie in {lo}, 1], got {value!r}")
    return v


def frame_vector(xx: float, yy: float, zz: float) -> FloatArray:
    """``psi+``-frame correlators ``(<XX>, <YY>, -<ZZ>)`` from lab correlators."""
    return np.array([xx, yy, -zz], dtype=np.float64)


def werner_vector(w: float) -> FloatArray:
    """Frame correlators of a Werner state ``w psi+ + (1-w) 1/4``."""
    v = _finite("werner parameter", w)
    if not -1.0 / 3.0 <= v <= 1.0:
        raise ParameterError(f"werner parameter must lie in [-1/3, 1], got {w!r}")
    return np.full(3, v, dtype=np.float64)


def fidelity(f: npt.ArrayLike) -> FloatArray:
    """Fidelity with ``psi+``, ``(1 + fx + fy + fz)/4`` (vectorised over trailing axes)."""
    a = np.asarray(f, dtype=np.float64)
    return np.asarray((1.0 + a[0] + a[1] + a[2]) / 4.0)


def werner_parameter(f: npt.ArrayLike) -> FloatArray:
    """Werner parameter ``(4F - 1)/3`` of the state's twirl, i.e. the mean of ``f``."""
    a = np.asarray(f, dtype=np.float64)
    return np.asarray((a[0] + a[1] + a[2]) / 3.0)


def _h(p: float, base: float = 2.0) -> float:
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -(p * math.log(p) + (1.0 - p) * math.log1p(-p)) / math.log(base)


def chsh_qber(f: npt.ArrayLike) -> tuple[float, float]:
    """CHSH value ``2 sqrt(<XX>^2 + <ZZ>^2)`` and key QBER ``(1 - |<ZZ>|)/2`` (DESIGN.md,
    DI-QKD settings in the X-Z plane; Horodecki criterion restricted to that plane)."""
    a = np.asarray(f, dtype=np.float64)
    s = 2.0 * math.sqrt(float(a[0]) ** 2 + float(a[2]) ** 2)
    q = (1.0 - abs(float(a[2]))) / 2.0
    return min(s, TSIRELSON), q


def bb84_secret_fraction(f: npt.ArrayLike, *, base: float = 2.0) -> float:
    """Asymptotic BB84 secret fraction ``max(0, 1 - h(Q_X) - h(Q_Z))``.

    Shor & Preskill, PRL 85, 441 (2000); for Werner pairs it is ``1 - 2 h((1 - w)/2)``, the
    fraction of Brand et al. (2020) and Li et al. (2021). ``base=2`` is the key in bits; Li et
    al.'s published code takes ``h`` in nats (``base=e``), which only serves to compare with it.
    """
    a = np.asarray(f, dtype=np.float64)
    qx = min(max((1.0 - float(a[0])) / 2.0, 0.0), 1.0)
    qz = min(max((1.0 - float(a[2])) / 2.0, 0.0), 1.0)
    return max(0.0, 1.0 - _h(qx, base) - _h(qz, base))


@dataclass(frozen=True)
class SwapNoise:
    """Noise of the Bell-state measurement at a repeater node.

    ``gate_shrink``: factor ``l`` of a two-qubit depolarising gate error on the output
    correlators (1 = perfect); ``measurement_error``: per-bit readout flip probability ``e``.
    """

    gate_shrink: float = 1.0
    measurement_error: float = 0.0

    def __post_init__(self) -> None:
        _prob("SwapNoise.gate_shrink", self.gate_shrink)
        e = _finite("SwapNoise.measurement_error", self.measurement_error)
        if not 0.0 <= e < 0.5:
            raise ParameterError(f"SwapNoise.measurement_error must lie in [0, 0.5), got {e}")

    @property
    def factors(self) -> FloatArray:
        """Multipliers of ``(fx, fy, fz)`` applied by one swap."""
        m = 1.0 - 2.0 * self.measurement_error
        return self.gate_shrink * np.array([m, m * m, m], dtype=np.float64)


def swap(f1: npt.ArrayLike, f2: npt.ArrayLike, noise: SwapNoise | None = None) -> FloatArray:
    """Frame correlators after swapping two pairs (componentwise product, times the noise)."""
    out = np.asarray(f1, dtype=np.float64) * np.asarray(f2, dtype=np.float64)
    if noise is not None:
        out = out * noise.factors.reshape((3,) + (1,) * (out.ndim - 1))
    return np.asarray(out)


@dataclass(frozen=True)
class Segment:
    """One elementary segment, in time units of its attempt (``dt_s`` seconds each).

    ``p``: herald probability per attempt (one memory pair); ``f0``: frame correlators of the
    pair when the node learns of the herald; ``decay``: per-pair exponential rates ``(g_x, g_y,
    g_z)`` per attempt of the stored pair's frame correlators (``1/T_coh`` each for the
    literature's Werner pairs, "pair coherence time": both qubits stored, the pair's parameter
    decays as ``exp(-t/T_coh)``; two qubits that each dephase with ``T2`` give ``T_coh = T2/2``);
    ``ion_xy``, ``ion_z``: per-qubit Bloch shrinks after a storage time in attempts, used by the
    Monte-Carlo engine with ``memory_model="calibrated"``; ``fiber_km``: its length (for delays);
    ``memories``: ``m`` memories per side, ``m`` parallel attempts (multiplexing).
    """

    p: float
    f0: FloatArray
    decay: FloatArray
    dt_s: float = 1.0
    fiber_km: float = 0.0
    memories: int = 1
    ion_xy: Callable[[FloatArray], FloatArray] | None = field(default=None, compare=False)
    ion_z: Callable[[FloatArray], FloatArray] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _prob("Segment.p", self.p, open_low=True)
        f0 = np.asarray(self.f0, dtype=np.float64)
        if f0.shape != (3,) or not np.all(np.isfinite(f0)) or np.any(np.abs(f0) > 1 + 1e-12):
            raise ParameterError("Segment.f0 must be three correlators in [-1, 1]")
        lam = (
            np.array(
                [
                    1 + f0[0] + f0[1] + f0[2],
                    1 + f0[0] - f0[1] - f0[2],
                    1 - f0[0] + f0[1] - f0[2],
                    1 - f0[0] - f0[1] + f0[2],
                ]
            )
            / 4
        )
        if np.any(lam < -1e-9):
            raise ParameterError(f"Segment.f0 {f0.tolist()} is not a physical Bell-diagonal state")
        g = np.asarray(self.decay, dtype=np.float64)
        if g.shape != (3,) or not np.all(np.isfinite(g)) or np.any(g < 0):
            raise ParameterError("Segment.decay must be three non-negative finite rates")
        dt = _finite("Segment.dt_s", self.dt_s)
        if dt <= 0:
            raise ParameterError(f"Segment.dt_s must be positive, got {self.dt_s}")
        if _finite("Segment.fiber_km", self.fiber_km) < 0:
            raise ParameterError("Segment.fiber_km must be non-negative")
        m = self.memories
        if isinstance(m, bool) or int(m) != m or m < 1:
            raise ParameterError(f"memories per side must be a positive integer, got {m!r}")
        object.__setattr__(self, "f0", f0)
        object.__setattr__(self, "decay", g)

    @property
    def p_eff(self) -> float:
        """Success probability per attempt with ``m`` parallel attempts, ``1 - (1-p)^m``."""
        return -math.expm1(self.memories * math.log1p(-self.p)) if self.p < 1 else 1.0

    @classmethod
    def abstract(
        cls,
        *,
        p: float,
        werner: float | None = None,
        f0: npt.ArrayLike | None = None,
        coherence_attempts: float | None = None,
        per_qubit: bool = False,
        memories: int = 1,
    ) -> Segment:
        """Literature segment in attempt units: ``Geom(p)`` on ``{1, 2, ...}``, initial Werner
        parameter (or frame vector ``f0``), coherence time in attempts (``None``: no decay).

        ``per_qubit=False`` (default, the literature's convention): the pair's parameter decays
        as ``exp(-t/T_coh)``; ``per_qubit=True``: ``coherence_attempts`` is each qubit's ``T2``,
        and the pair decays at ``2/T2``.
        """
        if (werner is None) == (f0 is None):
            raise ParameterError("give exactly one of werner and f0")
        vec = werner_vector(werner) if werner is not None else np.asarray(f0, dtype=np.float64)
        if coherence_attempts is None or math.isinf(float(coherence_attempts)):
            rate = 0.0
        else:
            t = _finite("coherence_attempts", coherence_attempts)
            if t <= 0:
                raise ParameterError(f"coherence time must be positive, got {coherence_attempts}")
            rate = (2.0 if per_qubit else 1.0) / t
        return cls(p=p, f0=vec, decay=np.full(3, rate), memories=memories)

    def ion_shrinks(
        self, model: MemoryModel
    ) -> tuple[Callable[[FloatArray], FloatArray], Callable[[FloatArray], FloatArray]]:
        """Per-qubit ``(xy, z)`` shrink functions of the storage time in attempts."""
        if model == "calibrated" and self.ion_xy is not None and self.ion_z is not None:
            return self.ion_xy, self.ion_z
        gx, _, gz = (float(v) for v in self.decay)
        if gx != float(self.decay[1]):
            raise ParameterError("per-qubit tracking needs equal X and Y decay rates")
        return (lambda t: np.exp(-0.5 * gx * t)), (lambda t: np.exp(-0.5 * gz * t))


def werner_window(
    werner_after: Callable[[FloatArray], FloatArray],
    *,
    threshold: float,
    cap: npt.ArrayLike,
    size: int,
) -> npt.NDArray[np.int64]:
    """Fidelity cut-off window of stored pairs (Li, Coopmans & Elkouss, IEEE TQE 2, 1 (2021),
    the FID cut-off): ``-1`` where a pair's Werner parameter is already below ``threshold`` on
    arrival, else the longest further wait ``d <= cap`` (whole attempts) after which it is still
    ``>= threshold``.

    ``werner_after(d)`` is the Werner parameter of each of ``size`` pairs after waiting ``d``
    more attempts (non-increasing in ``d``); solved by a vectorised bisection on integers, so
    any memory law works (for one exponential rate ``g`` it is ``floor(ln(w/threshold)/g)``).
    """
    cap_arr = np.broadcast_to(np.asarray(cap, dtype=np.int64), (size,))
    lo = np.where(werner_after(np.zeros(size)) >= threshold, 0, -1).astype(np.int64)
    # galloping search: probe lo + 1, 2, 4, ... (capped) until a probe fails, then bisect
    hi = np.where((lo < 0) | (cap_arr <= 0), lo, -2)  # -2: no failing probe found yet
    step = np.ones(size, dtype=np.int64)
    while np.any(hi == -2):
        open_ = hi == -2
        probe = np.minimum(lo + step, cap_arr)
        good = werner_after(probe.astype(np.float64)) >= threshold
        lo = np.where(open_ & good, probe, lo)
        hi = np.where(open_ & good & (probe >= cap_arr), probe, hi)
        hi = np.where(open_ & ~good, probe, hi)
        step = step * 2
    while True:
        live = hi - lo > 1
        if not np.any(live):
            return lo
        mid = (lo + hi) // 2
        good = werner_after(mid.astype(np.float64)) >= threshold
        lo = np.where(live & good, mid, lo)
        hi = np.where(live & ~good, mid, hi)


def segment_from_link(
    link: object,
    *,
    memories: int = 1,
) -> Segment:
    """Segment of an :class:`~qrepeater.link.heralding.ElementaryLink`: its herald probability,
    attempt period, the stored pair's initial correlators (heralded state after the transfer to
    the memory, :meth:`StoredLink.initial_state`, no readout) and the calibrated memory channel.
    """
    from qrepeater.link.heralding import ElementaryLink
    from qrepeater.link.storage import StoredLink
    from qrepeater.quantum.states import two_qubit_correlators

    if not isinstance(link, ElementaryLink):
        raise ParameterError("segment_from_link needs an ElementaryLink")
    stored = StoredLink(link)
    c = two_qubit_correlators(stored.initial_state(1))
    mem = stored.memory
    dt = link.attempt_period_s
    tau = mem.coherence_time_s
    kappa = mem.zz_decay_per_s
    return Segment(
        p=link.herald_probability,
        f0=frame_vector(c["xx"], c["yy"], c["zz"]),
        decay=np.array([dt / tau, dt / tau, dt * kappa]),
        dt_s=dt,
        fiber_km=link.fiber_km,
        memories=memories,
        ion_xy=lambda t: np.asarray(mem.xy_shrink(np.asarray(t, dtype=np.float64) * dt)),
        ion_z=lambda t: np.asarray(mem.z_shrink(np.asarray(t, dtype=np.float64) * dt)),
    )


__all__ = [
    "MemoryModel",
    "Segment",
    "SwapNoise",
    "bb84_secret_fraction",
    "chsh_qber",
    "fidelity",
    "frame_vector",
    "segment_from_link",
    "swap",
    "werner_parameter",
    "werner_vector",
    "werner_window",
]
