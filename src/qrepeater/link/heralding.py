"""Heralded entanglement by single-photon interference (SPEP) between two ion nodes.

Each node excites its ion with probability ``alpha`` and sends the photon through its converter
and half of the fibre to a balanced beam splitter at the midpoint, watched by two
non-number-resolving detectors ``D+`` and ``D-``. An attempt heralds when exactly one detector
clicks (Cabrillo et al., PRA 59, 1025 (1999); Slodicka et al., PRL 110, 083603 (2013)).
Per detector and attempt, with ``eta_X`` the node's photon-to-click efficiency and ``q`` the
probability of a noise click in the window, the heralds come from three exclusive processes:

* one excitation, photon detected: ``w_s = alpha(1-alpha)(eta_A+eta_B)/2 (1-q)``, state
  ``psi_± ~ sqrt(eta_A)|down,up> ± sqrt(eta_B)|up,down>`` with coherence reduced by the optical
  phase noise and the motional recoil;
* two excitations (photons bunch, one click): ``w_d = alpha^2 [1-(1-eta_A)(1-eta_B)]/2 (1-q)``,
  state ``|down,down>``;
* no signal photon detected, a noise click: ``w_n = q(1-q)(1-alpha eta_A)(1-alpha eta_B)``,
  state ``rho_A (x) rho_B`` with ``rho_X ~ (1-alpha)|up><up| + alpha(1-eta_X)|down><down|``.

Summed over both detectors, ``P_h = alpha(eta_A+eta_B) - alpha^2 eta_A eta_B + 2q`` to first
order in ``q``, and the mixture reproduces the paper's Eq. (1),
``rho = (1-alpha) psi± + alpha |down,down>``, plus noise. The attempt period is
``T_cyc = T_0 + L/v_g`` (the node waits for the herald), so the herald rate is ``P_h / T_cyc``.
Before the node can act, ``|up> = D5/2`` decays for ``L/v_g``; readout adds a symmetric per-ion
flip error ``e`` (Pauli expectations shrink by ``1-2e``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np

from qrepeater.errors import ParameterError
from qrepeater.hardware import LinkHardware
from qrepeater.hardware._validate import finite
from qrepeater.quantum import amplitude_damping, apply_each, bell_fidelity, depolarizing
from qrepeater.quantum.bell import chsh_value, key_qber
from qrepeater.quantum.states import ComplexArray, two_qubit_correlators

Detector = Literal[1, -1]
MECHANISMS: tuple[str, ...] = (
    "double_excitation",
    "noise",
    "phase",
    "motion",
    "spam",
    "amplitude_imbalance",
)


@dataclass(frozen=True)
class Mechanisms:
    """Which error mechanisms act on the heralded state (all on by default).

    ``spam`` covers the ion's own errors: state preparation and readout, and D5/2 decay while
    the herald travels back (the paper's mechanism 2).
    """

    double_excitation: bool = True
    noise: bool = True
    phase: bool = True
    motion: bool = True
    spam: bool = True
    amplitude_imbalance: bool = True

    @classmethod
    def none(cls) -> Mechanisms:
        """No error mechanism: an ideal Bell state."""
        return cls(**dict.fromkeys(MECHANISMS, False))

    @classmethod
    def only(cls, name: str) -> Mechanisms:
        """Just the mechanism ``name``."""
        if name not in MECHANISMS:
            raise ParameterError(f"unknown mechanism {name!r}; use one of {MECHANISMS}")
        return dataclasses.replace(cls.none(), **{name: True})


@dataclass(frozen=True)
class HeraldComposition:
    """Per-attempt probabilities of the three herald processes (summed over both detectors)."""

    single: float
    double: float
    noise: float

    @property
    def total(self) -> float:
        """Herald probability per attempt ``P_h``."""
        return self.single + self.double + self.noise

    @property
    def snr(self) -> float:
        """Signal (photon) heralds over noise heralds."""
        return (self.single + self.double) / self.noise if self.noise > 0 else math.inf

    def fractions(self) -> tuple[float, float, float]:
        """Shares of single, double and noise heralds among all heralds."""
        t = self.total
        return self.single / t, self.double / t, self.noise / t


def _basis_projector(index: int) -> ComplexArray:
    m = np.zeros((4, 4), dtype=np.complex128)
    m[index, index] = 1.0
    return m


class ElementaryLink:
    """The SPEP elementary link at excitation probability ``alpha`` and fibre length ``fiber_km``.

    All quantities are analytic; :mod:`qrepeater.link.sampler` draws Monte-Carlo heralds from
    the same model. Construct from hardware or with :meth:`from_preset`.
    """

    def __init__(
        self,
        hardware: LinkHardware,
        *,
        alpha: float,
        fiber_km: float,
        mechanisms: Mechanisms | None = None,
    ) -> None:
        a = finite("ElementaryLink", "alpha", alpha)
        if not 0.0 < a < 1.0:
            raise ParameterError(f"alpha must lie in (0, 1), got {alpha}")
        km = finite("ElementaryLink", "fiber_km", fiber_km)
        if km < 0:
            raise ParameterError(f"fiber length must be non-negative, got {fiber_km} km")
        if not isinstance(hardware, LinkHardware):
            raise ParameterError(f"hardware must be a LinkHardware, got {type(hardware).__name__}")
        if mechanisms is not None and not isinstance(mechanisms, Mechanisms):
            raise ParameterError(f"mechanisms must be Mechanisms, got {type(mechanisms).__name__}")
        self.hardware = hardware
        self.alpha = a
        self.fiber_km = km
        self.mechanisms = mechanisms or Mechanisms()
        self._check_heralds()

    def _check_heralds(self) -> None:
        """Refuse a link whose model has no meaning: no photon survives the fibre, every
        detection window holds a noise click, or no attempt can herald."""
        ea, eb = self.node_efficiencies
        if not (ea > 0.0 and eb > 0.0):
            raise ParameterError(
                f"no photon survives {self.fiber_km:g} km of fibre (node efficiency underflows to "
                "0): the link never heralds a photon"
            )
        q = self.noise_click_probability
        if not 0.0 <= q < 1.0:
            raise ParameterError(
                "every detection window holds a noise click (dark_count_cps x window_s too "
                f"large, click probability {q:g}): no herald can be told from noise"
            )
        p_h = self.composition.total
        period = self.attempt_period_s
        if not (math.isfinite(p_h) and p_h > 0.0) or not (math.isfinite(period) and period > 0):
            raise ParameterError(
                f"the link at alpha={self.alpha:g}, {self.fiber_km:g} km has herald probability "
                f"{p_h:g} per attempt and attempt period {period:g} s: no usable heralds"
            )

    @classmethod
    def from_preset(
        cls,
        preset: object = None,
        *,
        alpha: float | None = None,
        fiber_km: float | None = None,
    ) -> ElementaryLink:
        """Link of a preset (name, path or :class:`~qrepeater.presets.Preset`); ``alpha`` and
        ``fiber_km`` default to the preset's operating point."""
        from qrepeater.presets import Preset, load_preset

        p = preset if isinstance(preset, Preset) else load_preset(str(preset or "ustc2025"))
        return cls(
            p.hardware,
            alpha=p.operating.alpha if alpha is None else alpha,
            fiber_km=p.operating.fiber_km if fiber_km is None else fiber_km,
        )

    def with_mechanisms(self, mechanisms: Mechanisms) -> ElementaryLink:
        """The same link with a different set of active error mechanisms."""
        return ElementaryLink(
            self.hardware, alpha=self.alpha, fiber_km=self.fiber_km, mechanisms=mechanisms
        )

    def __repr__(self) -> str:
        return f"ElementaryLink(alpha={self.alpha:g}, fiber_km={self.fiber_km:g})"

    # ---- rates -------------------------------------------------------------------------
    @cached_property
    def node_efficiencies(self) -> tuple[float, float]:
        """``(eta_A, eta_B)``: probability that an emitted photon clicks a station detector."""
        return self.hardware.node_efficiencies(self.fiber_km)

    @cached_property
    def noise_click_probability(self) -> float:
        """``q``: probability of a noise click per detector per detection window."""
        return self.hardware.detector.click_probability(self.hardware.noise_cps(self.fiber_km))

    def _weights(self, *, noise: bool = True, double: bool = True) -> tuple[float, float, float]:
        """Per-detector weights ``(w_s, w_d, w_n)`` of the three herald processes."""
        a = self.alpha
        ea, eb = self.node_efficiencies
        q = self.noise_click_probability if noise else 0.0
        w_s = a * (1 - a) * (ea + eb) / 2 * (1 - q)
        w_d = a * a * (1 - (1 - ea) * (1 - eb)) / 2 * (1 - q) if double else 0.0
        w_n = q * (1 - q) * (1 - a * ea) * (1 - a * eb)
        return w_s, w_d, w_n

    @cached_property
    def composition(self) -> HeraldComposition:
        """Herald probabilities per attempt by process, both detectors together."""
        w_s, w_d, w_n = self._weights()
        return HeraldComposition(single=2 * w_s, double=2 * w_d, noise=2 * w_n)

    @property
    def herald_probability(self) -> float:
        """``P_h``: probability that an attempt heralds (either detector)."""
        return self.composition.total

    @property
    def attempt_period_s(self) -> float:
        """``T_cyc = T_0 + L / v_g``."""
        return self.hardware.attempt_period_s(self.fiber_km)

    @property
    def attempt_rate_hz(self) -> float:
        """Attempts per second ``1 / T_cyc``."""
        return 1.0 / self.attempt_period_s

    @property
    def rate_hz(self) -> float:
        """Herald rate ``P_h / T_cyc``."""
        return self.herald_probability / self.attempt_period_s

    @property
    def mean_wait_s(self) -> float:
        """Mean time between heralds, ``T_cyc / P_h`` (geometric number of attempts)."""
        return self.attempt_period_s / self.herald_probability

    @property
    def snr(self) -> float:
        """Signal-to-noise ratio of heralds (photon heralds over noise heralds)."""
        return self.composition.snr

    # ---- states ------------------------------------------------------------------------
    def _coherence(self) -> float:
        m = self.mechanisms
        v = 1.0
        if m.phase:
            v *= self.hardware.phase.coherence_factor
        if m.motion:
            v *= self.hardware.ion.residual_coherence
        return v

    def process_states(self, detector: Detector = 1) -> dict[str, tuple[float, ComplexArray]]:
        """``{process: (weight, state)}`` of the three herald processes on ``detector``.

        ``single``: ``sqrt(eta_A)|down,up> ± sqrt(eta_B)|up,down>`` with its coherence reduced by
        phase noise and motion; ``double``: ``|down,down>``; ``noise``: ``rho_A (x) rho_B``. The
        weights are per-attempt probabilities for this detector; the D5/2 decay during the
        herald's return trip is applied to each state when the ``spam`` mechanism is on. The
        sampler's process labels (:data:`qrepeater.link.sampler.KIND_NAMES`) index this dict.
        """
        if detector not in (1, -1):
            raise ParameterError(f"detector must be +1 or -1, got {detector}")
        m = self.mechanisms
        a = self.alpha
        ea, eb = self.node_efficiencies
        w_s, w_d, w_n = self._weights(noise=m.noise, double=m.double_excitation)
        # single excitation: sqrt(eta_A)|down,up> + sign sqrt(eta_B)|up,down>  (|10>, |01>)
        pa, pb = (ea, eb) if m.amplitude_imbalance else ((ea + eb) / 2, (ea + eb) / 2)
        psi = np.zeros((4, 4), dtype=np.complex128)
        psi[2, 2] = pa / (pa + pb)
        psi[1, 1] = pb / (pa + pb)
        off = detector * math.sqrt(pa * pb) / (pa + pb) * self._coherence()
        psi[2, 1] = psi[1, 2] = off
        ra = np.diag([1 - a, a * (1 - ea)]).astype(np.complex128) / (1 - a * ea)
        rb = np.diag([1 - a, a * (1 - eb)]).astype(np.complex128) / (1 - a * eb)
        states: dict[str, ComplexArray] = {
            "single": psi,
            "double": _basis_projector(3),
            "noise": np.asarray(np.kron(ra, rb), dtype=np.complex128),
        }
        if m.spam:
            t = self.hardware.fiber.delay_s(self.fiber_km)
            decay = amplitude_damping(self.hardware.ion.d52_decay_probability(t))
            states = {k: apply_each(v, decay, 2) for k, v in states.items()}
        weights = {"single": w_s, "double": w_d, "noise": w_n}
        return {k: (weights[k], states[k]) for k in states}

    def state(self, detector: Detector = 1) -> ComplexArray:
        """Two-ion density matrix when the node learns of a herald on ``detector`` (+1 or -1):
        the weighted mixture of :meth:`process_states`.

        Basis ``|up>=|0>``, ``|down>=|1>``; ordering (Alice, Bob). Includes the D5/2 decay during
        the herald's return trip when the ``spam`` mechanism is on; no readout error.
        """
        parts = self.process_states(detector)
        total = sum(w for w, _ in parts.values())
        return np.asarray(sum(w * rho for w, rho in parts.values()) / total, dtype=np.complex128)

    def measured_state(self, detector: Detector = 1) -> ComplexArray:
        """:meth:`state` as seen through readout with SPAM error (what tomography reports)."""
        rho = self.state(detector)
        if self.mechanisms.spam and self.hardware.ion.spam_error > 0:
            rho = apply_each(rho, depolarizing(self.hardware.ion.readout_shrink), 2)
        return rho

    def fidelity(self, detector: Detector | None = None) -> float:
        """Measured fidelity with psi+ (detector +1) or psi- (-1); the mean of both if None."""
        if detector is None:
            return 0.5 * (self.fidelity(1) + self.fidelity(-1))
        return bell_fidelity(self.measured_state(detector), "psi+" if detector == 1 else "psi-")

    def correlators(self, detector: Detector = 1) -> dict[str, float]:
        """Measured ``<XX>, <YY>, <ZZ>`` of the heralded state."""
        return two_qubit_correlators(self.measured_state(detector))

    def chsh(self) -> float:
        """CHSH value with Alice at Z, X and Bob's optimal settings (measured state)."""
        return chsh_value(self.measured_state(1))

    def qber(self) -> float:
        """Key-round error rate with Alice at Z and Bob at -Z (measured state)."""
        return key_qber(self.measured_state(1))

    def error_budget(self) -> dict[str, float]:
        """Infidelity caused by each mechanism acting alone (the paper's Fig. 3c).

        Contributions add up to the total infidelity to first order; the remainder is their
        (small, second-order) interaction.
        """
        return {
            name: 1.0 - self.with_mechanisms(Mechanisms.only(name)).fidelity()
            for name in MECHANISMS
        }

    def summary(self) -> dict[str, object]:
        """The link's figures of merit as a JSON-ready dict (DESIGN.md contract)."""
        return {
            "alpha": self.alpha,
            "fiber_km": self.fiber_km,
            "herald_probability": self.herald_probability,
            "attempt_rate_hz": self.attempt_rate_hz,
            "rate_hz": self.rate_hz,
            "mean_wait_s": self.mean_wait_s,
            "snr": self.snr,
            "link_efficiency": self.hardware.link_efficiency(self.fiber_km),
            "node_efficiencies": list(self.node_efficiencies),
            "noise_cps": self.hardware.noise_cps(self.fiber_km),
            "fidelity": self.fidelity(),
            "fidelity_plus": self.fidelity(1),
            "fidelity_minus": self.fidelity(-1),
            "correlators": self.correlators(1),
            "chsh": self.chsh(),
            "qber": self.qber(),
            "herald_fractions": dict(
                zip(("single", "double", "noise"), self.composition.fractions(), strict=True)
            ),
            "error_budget": self.error_budget(),
        }
