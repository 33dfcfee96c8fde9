"""Superconducting nanowire single-photon detectors at the heralding station."""

from __future__ import annotations

import math
from dataclasses import dataclass

from qrepeater.hardware._validate import non_negative, positive, probability


@dataclass(frozen=True)
class Detector:
    """SNSPD with efficiency, length-independent noise and a detection window.

    ``dark_count_cps`` is every noise source that does not pass through the fibre span (intrinsic
    dark counts and stray light at the station), per detector.
    """

    efficiency: float
    dark_count_cps: float
    window_s: float

    def __post_init__(self) -> None:
        probability("Detector", "efficiency", self.efficiency, open_low=True)
        non_negative("Detector", "dark_count_cps", self.dark_count_cps)
        positive("Detector", "window_s", self.window_s)

    def click_probability(self, rate_cps: float) -> float:
        """Probability of at least one click in the window for Poissonian noise at ``rate_cps``."""
        non_negative("Detector", "rate_cps", rate_cps)
        return -math.expm1(-rate_cps * self.window_s)
