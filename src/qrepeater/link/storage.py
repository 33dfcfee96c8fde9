"""Storage of a heralded pair in the ion memories, and what it buys: deterministic delivery and
the first entanglement swap.

Storage channel. After the herald the ``|up> = D5/2`` half of each ion decays for the transfer
time (amplitude damping, lifetime 1.16 s), the transfer to the ground-state storage qubit acts as
a depolarising channel of the given fidelity, then each ion's Bloch components shrink by
``(exp(-t/2tau), exp(-t/2tau), sqrt((1-kappa t)_+))`` (a Pauli channel), so that
``<XX>(t) = <XX>_0 exp(-t/tau)`` and ``<ZZ>(t) = <ZZ>_0 (1-kappa t)_+`` as measured in the
paper's Fig. 3d; the fidelity with psi+ is ``(1 + <XX> + <YY> - <ZZ>)/4`` (measured through the
readout error, like the paper's).

Waiting for the next herald. The number of attempts until the next herald is geometric with
success probability ``P_h``, so the storage time is ``t = k T_cyc``, ``k >= 1``. Averages over a
window ``t <= W`` are conditional on the herald arriving within it (the paper's 450 ms window),
computed in closed form from finite geometric sums; :func:`average_fidelity_mc` draws the same
average from the Monte-Carlo sampler.

Deterministic delivery (Humphreys et al., Nature 558, 268 (2018), Eq. 2): with link efficiency
``eta = rate / decoherence rate``, the best average fidelity delivered at fixed clock times is
``F = 1/4 + (F0 - 1/4) eta^(1/(1-eta))``, which exceeds 1/2 for ``F0 = 1`` once ``eta > 0.826``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt
from scipy.optimize import brentq

from qrepeater.errors import ParameterError
from qrepeater.hardware import Memory
from qrepeater.hardware._validate import finite
from qrepeater.link.heralding import Detector, ElementaryLink
from qrepeater.quantum import (
    amplitude_damping,
    apply_each,
    bell_fidelity,
    depolarizing,
    entanglement_swap,
    pauli_shrink_channel,
)
from qrepeater.quantum.states import ComplexArray, two_qubit_correlators

FloatArray = npt.NDArray[np.float64]


def _check_time(name: str, t: float) -> float:
    v = finite("storage", name, t)
    if v < 0:
        raise ParameterError(f"{name} must be non-negative, got {t}")
    return v


def _check_window(window_s: float | None) -> float:
    if window_s is None:
        return math.inf
    w = float(window_s)
    if not w > 0 or math.isnan(w):
        raise ParameterError(f"window must be positive, got {window_s}")
    return w


def delivery_fidelity(*, link_efficiency: float, initial_fidelity: float = 1.0) -> float:
    """Delivered fidelity ``1/4 + (F0 - 1/4) eta^(1/(1-eta))`` (Humphreys et al. 2018, Eq. 2)."""
    eta = finite("delivery", "link_efficiency", link_efficiency)
    f0 = finite("delivery", "initial_fidelity", initial_fidelity)
    if eta <= 0:
        raise ParameterError(f"link efficiency must be positive, got {eta}")
    if not 0.25 <= f0 <= 1:
        raise ParameterError(f"initial fidelity must lie in [1/4, 1], got {f0}")
    # eta^(1/(1-eta)) -> 1/e as eta -> 1
    factor = math.exp(-1.0) if abs(eta - 1.0) < 1e-12 else eta ** (1.0 / (1.0 - eta))
    return 0.25 + (f0 - 0.25) * factor


def delivery_threshold(*, initial_fidelity: float = 1.0) -> float:
    """Link efficiency above which deterministic delivery beats F = 1/2."""
    if initial_fidelity <= 0.5:
        return math.inf
    return float(
        brentq(
            lambda e: delivery_fidelity(link_efficiency=e, initial_fidelity=initial_fidelity) - 0.5,
            1e-9,
            1e3,
            xtol=1e-14,
        )
    )


def _scale_pauli_components(rho: ComplexArray, scale: FloatArray) -> ComplexArray:
    """Multiply each two-qubit Pauli component ``P_i (x) P_j`` of ``rho`` by ``s_i s_j``."""
    from qrepeater.quantum.states import PAULIS

    names = "IXYZ"
    out = np.zeros((4, 4), dtype=np.complex128)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            op = np.kron(PAULIS[a], PAULIS[b])
            coeff = np.trace(rho @ op) / 4
            out += scale[i] * scale[j] * coeff * op
    return out


@dataclass(frozen=True)
class WaitAverages:
    """Expectations of the memory decay factors over the wait for the next herald."""

    xx: float  # E[exp(-t/tau)]
    zz: float  # E[(1 - kappa t)_+]
    probability: float  # P(t <= W)


class StoredLink:
    """A heralded pair held in the memories while the link makes the next one."""

    def __init__(self, link: ElementaryLink, *, memory: Memory | None = None) -> None:
        self.link = link
        self.memory = memory or link.hardware.memory

    # ---- the stored state --------------------------------------------------------------
    def initial_state(self, detector: Detector = 1) -> ComplexArray:
        """State at the start of storage: heralded state, D5/2 decay during the transfer, and
        the transfer's depolarising error."""
        rho = self.link.state(detector)
        mem = self.memory
        if self.link.mechanisms.spam:
            gamma = self.link.hardware.ion.d52_decay_probability(mem.transfer_time_s)
            rho = apply_each(rho, amplitude_damping(gamma), 2)
        if mem.transfer_fidelity < 1:
            rho = apply_each(rho, depolarizing((4 * mem.transfer_fidelity - 1) / 3), 2)
        return rho

    def state(self, t_s: float, detector: Detector = 1, *, measured: bool = True) -> ComplexArray:
        """Stored two-ion state after ``t_s`` seconds (through the readout if ``measured``)."""
        t = _check_time("storage time", t_s)
        lxy = float(self.memory.xy_shrink(t))
        lz = float(self.memory.z_shrink(t))
        rho = apply_each(self.initial_state(detector), pauli_shrink_channel(lxy, lxy, lz), 2)
        ion = self.link.hardware.ion
        if measured and self.link.mechanisms.spam and ion.spam_error > 0:
            rho = apply_each(rho, depolarizing(ion.readout_shrink), 2)
        return rho

    @cached_property
    def initial_correlators(self) -> dict[str, float]:
        """Measured ``<XX>, <YY>, <ZZ>`` at the start of storage (detector +1)."""
        return two_qubit_correlators(self.state(0.0))

    def correlators(self, t_s: float | npt.ArrayLike) -> dict[str, FloatArray]:
        """Measured correlators after storage time(s) ``t_s`` (vectorised)."""
        c = self.initial_correlators
        xx = self.memory.xx_factor(t_s)
        zz = self.memory.zz_factor(t_s)
        return {"xx": c["xx"] * xx, "yy": c["yy"] * xx, "zz": c["zz"] * zz}

    def fidelity(self, t_s: float | npt.ArrayLike) -> FloatArray:
        """Measured fidelity with psi+ after storage time(s) ``t_s`` (vectorised)."""
        c = self.correlators(t_s)
        return np.asarray((1 + c["xx"] + c["yy"] - c["zz"]) / 4)

    def time_above_half_s(self) -> float:
        """Storage time at which the fidelity falls to 1/2 (0 if it starts below)."""
        if float(self.fidelity(0.0)) <= 0.5:
            return 0.0
        hi = self.memory.coherence_time_s
        while float(self.fidelity(hi)) > 0.5:
            hi *= 2
            if hi > 1e6:
                return math.inf
        return float(brentq(lambda t: float(self.fidelity(t)) - 0.5, 0.0, hi, xtol=1e-12))

    # ---- averages over the wait for the next herald --------------------------------------
    def wait_averages(self, window_s: float | None = None) -> WaitAverages:
        """Exact averages over the geometric wait ``t = k T_cyc`` conditioned on ``t <= W``.

        Closed-form finite geometric sums; when the pulse-error bound shapes ``<XX>``
        (:attr:`Memory.pulse_limited`) the sums are evaluated term by term instead.
        """
        w = _check_window(window_s)
        p = self.link.herald_probability
        q = 1.0 - p
        period = self.link.attempt_period_s
        kmax = math.inf if math.isinf(w) else math.floor(w / period + 1e-12)
        if kmax < 1:
            raise ParameterError(f"window {w} s is shorter than one attempt ({period:.3g} s)")
        log_q = math.log1p(-p)
        if self.memory.pulse_limited:
            return self._wait_averages_numeric(p=p, period=period, kmax=kmax)

        def qpow(k: float) -> float:
            return 0.0 if math.isinf(k) else math.exp(k * log_q)

        norm = 1.0 - qpow(kmax)
        x = math.exp(-period / self.memory.coherence_time_s)
        # sum_{k=1}^{K} p q^(k-1) x^k = p x (1 - (q x)^K) / (1 - q x)
        qx_k = 0.0 if math.isinf(kmax) else math.exp(kmax * (log_q + math.log(x)))
        xx = p * x * (1.0 - qx_k) / (1.0 - q * x)
        kappa = self.memory.zz_decay_per_s
        n = kmax if kappa == 0 else min(kmax, math.floor(1.0 / (kappa * period)))
        # sum_{k=1}^{n} p q^(k-1) (1 - kappa k T)
        head = 1.0 - qpow(n)
        ksum = (1.0 - (n + 1) * qpow(n) + n * qpow(n + 1)) / p if not math.isinf(n) else 1.0 / p
        zz = head - kappa * period * ksum
        return WaitAverages(xx=xx / norm, zz=zz / norm, probability=norm)

    def _wait_averages_numeric(self, *, p: float, period: float, kmax: float) -> WaitAverages:
        """Term-by-term geometric sums (truncated where the tail is below 1e-16)."""
        tail = math.ceil(math.log(1e-16) / math.log1p(-p))
        n = int(min(kmax, tail))
        k = np.arange(1, n + 1, dtype=np.float64)
        weights = p * np.exp((k - 1) * math.log1p(-p))
        norm = float(weights.sum())
        t = k * period
        return WaitAverages(
            xx=float(weights @ self.memory.xx_factor(t)) / norm,
            zz=float(weights @ self.memory.zz_factor(t)) / norm,
            probability=norm,
        )

    def average_fidelity(self, window_s: float | None = None) -> float:
        """Average measured fidelity of the stored pair when the next herald arrives."""
        a = self.wait_averages(window_s)
        c = self.initial_correlators
        return (1 + (c["xx"] + c["yy"]) * a.xx - c["zz"] * a.zz) / 4

    def average_fidelity_mc(
        self,
        *,
        n_pairs: int,
        window_s: float | None = None,
        seed: int | np.random.Generator | None = None,
    ) -> tuple[float, float]:
        """Monte-Carlo estimate ``(mean, standard error)`` of :meth:`average_fidelity` from
        waits drawn by the link sampler."""
        from qrepeater.link.sampler import sample_heralds

        w = _check_window(window_s)
        heralds = sample_heralds(self.link, n_pairs=n_pairs, seed=seed)
        waits = heralds.attempts * self.link.attempt_period_s
        waits = waits[waits <= w + 1e-12]
        if waits.size < 2:
            raise ParameterError("too few heralds inside the window for an estimate")
        f = self.fidelity(waits)
        return float(f.mean()), float(f.std(ddof=1) / math.sqrt(f.size))

    # ---- figures of merit ----------------------------------------------------------------
    @property
    def link_efficiency(self) -> float:
        """Generation rate over decoherence rate, ``rate * tau`` (the paper's 1.2)."""
        return self.link.rate_hz / self.memory.decoherence_rate_hz

    def swap_state(self, t_s: float) -> ComplexArray:
        """(A, D) state after swapping a fresh pair with one stored for ``t_s`` (BSM on B, C).

        Both pairs are psi+ heralds (the frame of a psi- herald is a known Pauli, corrected in
        the same way); the Bell measurement is exact and the result is read out with SPAM.
        """
        stored = self.state(t_s, measured=False)
        fresh = self.initial_state(1)
        out = entanglement_swap(stored, fresh).average_state
        ion = self.link.hardware.ion
        if self.link.mechanisms.spam and ion.spam_error > 0:
            out = apply_each(out, depolarizing(ion.readout_shrink), 2)
        return out

    def swap_fidelity(self, window_s: float | None = None) -> float:
        """Swapped-pair fidelity with psi+, averaged over the wait for the fresh pair.

        The swapped state is linear in the stored state, and the stored state is affine in the
        two decay factors, so averaging the factors first is exact.
        """
        a = self.wait_averages(window_s)
        base = self._swap_fidelity_at(1.0, 1.0)
        no_xy = self._swap_fidelity_at(0.0, 1.0)
        no_z = self._swap_fidelity_at(1.0, 0.0)
        # affine in the two decay factors of the stored pair (see the docstring)
        return no_xy + no_z - base + (base - no_xy) * a.xx + (base - no_z) * a.zz

    def _swap_fidelity_at(self, xx_factor: float, zz_factor: float) -> float:
        """Swapped fidelity for given storage factors of the two-ion correlators.

        The output fidelity depends on the stored pair only through its two-qubit correlators
        ``<XX>, <YY>, <ZZ>`` (the Pauli-frame-corrected swap maps the correlation matrices
        ``T_AD = T_AB M T_CD``; local Bloch vectors do not enter ``<psi+|rho_AD|psi+>``), and is
        linear in them; so it is affine in the factors, and a formal (not necessarily
        completely positive) Pauli map that scales them is enough to read the coefficients.
        """
        rho = self.initial_state(1)
        lxy, lz = math.sqrt(xx_factor), math.sqrt(zz_factor)
        scale = np.array([1.0, lxy, lxy, lz])  # I, X, Y, Z components per ion
        stored = _scale_pauli_components(rho, scale)
        out = entanglement_swap(stored, self.initial_state(1)).average_state
        ion = self.link.hardware.ion
        if self.link.mechanisms.spam and ion.spam_error > 0:
            out = apply_each(out, depolarizing(ion.readout_shrink), 2)
        return bell_fidelity(out, "psi+")

    def summary(self, *, window_s: float | None = None) -> dict[str, float]:
        """Memory figures of merit as a JSON-ready dict (DESIGN.md contract)."""
        w = self.link.mean_wait_s if window_s is None else _check_window(window_s)
        fresh_f = float(self.fidelity(0.0))
        eta = self.link_efficiency
        return {
            "coherence_time_s": self.memory.coherence_time_s,
            "mean_wait_s": self.link.mean_wait_s,
            "initial_fidelity": fresh_f,
            "fidelity_at_mean_wait": float(self.fidelity(self.link.mean_wait_s)),
            "time_above_half_s": self.time_above_half_s(),
            "window_s": w,
            "avg_fidelity_window": self.average_fidelity(w),
            "avg_fidelity_infinite": self.average_fidelity(None),
            "link_efficiency": eta,
            "delivery_threshold": delivery_threshold(initial_fidelity=1.0),
            "delivery_threshold_real": delivery_threshold(initial_fidelity=fresh_f),
            "deterministic_delivery_fidelity": delivery_fidelity(
                link_efficiency=eta, initial_fidelity=fresh_f
            ),
            "deterministic_delivery_fidelity_ideal": delivery_fidelity(link_efficiency=eta),
            "swap_fidelity": self.swap_fidelity(None),
        }


@dataclass(frozen=True)
class SwapRequirement:
    """Answer of :func:`swap_requirements`: what makes the first swap exceed a fidelity."""

    target_fidelity: float
    swap_fidelity: float  # at the link's own alpha and memory
    coherence_time_needed_s: float  # at the link's alpha, <ZZ> slope unchanged
    best_alpha: float  # alpha maximising the swapped fidelity with today's memory
    best_swap_fidelity: float
    coherence_time_needed_at_best_alpha_s: float


def _with_memory(link: ElementaryLink, memory: Memory) -> StoredLink:
    return StoredLink(link, memory=memory)


def required_coherence_time(
    link: ElementaryLink,
    *,
    target_fidelity: float = 0.5,
    memory: Memory | None = None,
    window_s: float | None = None,
) -> float:
    """Coherence time ``tau`` at which the wait-averaged swapped fidelity reaches the target.

    The ``<ZZ>`` slope (pulse errors) is kept, so the coherence stays bounded by the pulse
    errors (:class:`~qrepeater.hardware.Memory`); returns ``inf`` if even ``tau -> infinity``
    falls short (then the initial fidelity or the pulse errors are the bottleneck).
    """
    import dataclasses

    mem = memory or link.hardware.memory

    def f(log_tau: float) -> float:
        m = dataclasses.replace(mem, coherence_time_s=math.exp(log_tau))
        return _with_memory(link, m).swap_fidelity(window_s) - target_fidelity

    lo, hi = math.log(1e-3), math.log(1e4)
    if f(hi) < 0:
        return math.inf
    if f(lo) >= 0:
        return math.exp(lo)
    return math.exp(float(brentq(f, lo, hi, xtol=1e-10)))


def swap_requirements(link: ElementaryLink, *, target_fidelity: float = 0.5) -> SwapRequirement:
    """Swapped fidelity today, and the coherence time and alpha that would reach the target."""
    from scipy.optimize import minimize_scalar

    def neg_swap(alpha: float) -> float:
        lk = ElementaryLink(link.hardware, alpha=alpha, fiber_km=link.fiber_km)
        return -StoredLink(lk).swap_fidelity(None)

    res = minimize_scalar(neg_swap, bounds=(1e-3, 0.6), method="bounded", options={"xatol": 1e-6})
    best_alpha = float(res.x)
    best_link = ElementaryLink(link.hardware, alpha=best_alpha, fiber_km=link.fiber_km)
    return SwapRequirement(
        target_fidelity=target_fidelity,
        swap_fidelity=StoredLink(link).swap_fidelity(None),
        coherence_time_needed_s=required_coherence_time(link, target_fidelity=target_fidelity),
        best_alpha=best_alpha,
        best_swap_fidelity=-float(res.fun),
        coherence_time_needed_at_best_alpha_s=required_coherence_time(
            best_link, target_fidelity=target_fidelity
        ),
    )
