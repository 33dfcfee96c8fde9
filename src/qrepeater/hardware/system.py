"""The complete hardware of one elementary link: two ion nodes, converters, fibre, station."""

from __future__ import annotations

from dataclasses import dataclass

from qrepeater.hardware._validate import positive
from qrepeater.hardware.conversion import FrequencyConverter
from qrepeater.hardware.detector import Detector
from qrepeater.hardware.fiber import Fiber
from qrepeater.hardware.memory import Memory
from qrepeater.hardware.phase import PhaseStabilisation
from qrepeater.hardware.source import IonQubit, IonSource


@dataclass(frozen=True)
class Timing:
    """Attempt timing. ``attempt_period_base_s``: duration of one attempt (cooling, state
    preparation, excitation) excluding the wait for the herald to return from the station."""

    attempt_period_base_s: float

    def __post_init__(self) -> None:
        positive("Timing", "attempt_period_base_s", self.attempt_period_base_s)


@dataclass(frozen=True)
class LinkHardware:
    """Every component of the elementary link, as calibrated parameter dataclasses."""

    source: IonSource
    conversion: FrequencyConverter
    fiber: Fiber
    detector: Detector
    phase: PhaseStabilisation
    ion: IonQubit
    timing: Timing
    memory: Memory

    def node_efficiencies(self, fiber_km: float) -> tuple[float, float]:
        """Probability that a photon emitted at each node clicks a station detector.

        ``eta_X(L) = eta_source,X * eta_QFC(P) * T_filter * eta_det * 10^(-loss (L/2) / 10)``,
        each node reaching the midpoint station through half of the node-to-node fibre.
        """
        chain = (
            self.conversion.efficiency()
            * self.detector.efficiency
            * self.fiber.transmission(fiber_km / 2)
        )
        return self.source.efficiency_a * chain, self.source.efficiency_b * chain

    def link_efficiency(self, fiber_km: float) -> float:
        """Converter-to-detector efficiency (QFC + filters + fibre + detector), the paper's 9.1%."""
        return (
            self.conversion.efficiency()
            * self.detector.efficiency
            * self.fiber.transmission(fiber_km / 2)
        )

    def noise_cps(self, fiber_km: float) -> float:
        """Noise rate at one detector: converter noise attenuated by the arm, plus dark counts."""
        return (
            self.conversion.noise_cps()
            * self.detector.efficiency
            * self.fiber.transmission(fiber_km / 2)
            + self.detector.dark_count_cps
        )

    def attempt_period_s(self, fiber_km: float) -> float:
        """``T_cyc = T_0 + L / v_g``: the herald's return trip from the midpoint station."""
        return self.timing.attempt_period_base_s + self.fiber.delay_s(fiber_km)
