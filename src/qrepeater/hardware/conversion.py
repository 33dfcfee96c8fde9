"""Quantum frequency conversion 393 nm -> 1550 nm (difference-frequency generation in PPLN).

Efficiency against pump power follows the coupled-mode solution of a three-wave mixing process
with an undepleted pump, ``eta(P) = eta_peak * sin^2((pi/2) sqrt(P / P_sat))`` (Kumar, Opt. Lett.
15, 1476 (1990); Roussev et al., Opt. Lett. 29, 1518 (2004)); broadband pump-induced noise
(spontaneous Raman scattering and parametric fluorescence of the 527 nm pump) grows linearly
with pump power (Pelc et al., Opt. Express 19, 21445 (2011)). Together they give the shape of
the paper's Fig. 2c: efficiency saturating, noise rising steadily.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qrepeater.hardware._validate import non_negative, positive, probability


@dataclass(frozen=True)
class FrequencyConverter:
    """QFC module with its spectral filtering (100 GHz filter, 10 GHz VBG, 40 MHz etalon).

    ``peak_efficiency``: internal conversion efficiency (incl. coupling) at ``P = P_sat``;
    ``saturation_pump_mw``: pump power of full conversion; ``pump_mw``: operating pump power;
    ``filter_transmission``: combined transmission of the filter stack;
    ``noise_cps_per_mw``: pump-induced noise photon rate per mW of pump in the signal mode
    after the filters (before fibre loss and detector efficiency), per detector.
    """

    peak_efficiency: float
    saturation_pump_mw: float
    pump_mw: float
    filter_transmission: float
    noise_cps_per_mw: float

    def __post_init__(self) -> None:
        probability("FrequencyConverter", "peak_efficiency", self.peak_efficiency, open_low=True)
        positive("FrequencyConverter", "saturation_pump_mw", self.saturation_pump_mw)
        non_negative("FrequencyConverter", "pump_mw", self.pump_mw)
        probability(
            "FrequencyConverter", "filter_transmission", self.filter_transmission, open_low=True
        )
        non_negative("FrequencyConverter", "noise_cps_per_mw", self.noise_cps_per_mw)

    def conversion_efficiency(self, pump_mw: float | None = None) -> float:
        """Internal efficiency ``eta_peak sin^2(pi/2 sqrt(P/P_sat))`` (no filters)."""
        p = self.pump_mw if pump_mw is None else pump_mw
        non_negative("FrequencyConverter", "pump_mw", p)
        return (
            self.peak_efficiency
            * math.sin(0.5 * math.pi * math.sqrt(p / self.saturation_pump_mw)) ** 2
        )

    def efficiency(self, pump_mw: float | None = None) -> float:
        """End-to-end device efficiency: conversion times filter transmission."""
        return self.conversion_efficiency(pump_mw) * self.filter_transmission

    def noise_cps(self, pump_mw: float | None = None) -> float:
        """Pump-induced noise photon rate after the filters, linear in pump power."""
        p = self.pump_mw if pump_mw is None else pump_mw
        non_negative("FrequencyConverter", "pump_mw", p)
        return self.noise_cps_per_mw * p
