"""Phase stabilisation of the two optical paths (WDM 1548 nm + TDM 393 nm reference)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from qrepeater.hardware._validate import probability


@dataclass(frozen=True)
class PhaseStabilisation:
    """Residual optical phase noise between the two arms, measured as interference contrast.

    For a residual phase ``delta`` between the arms, the two-path fringe contrast is
    ``C = |E[exp(i delta)]|`` and the heralded state's coherence is multiplied by the same factor;
    for Gaussian noise ``C = exp(-sigma^2/2)`` (paper: C = 0.986(5) over 10 km, Fig. 2d).
    """

    contrast: float

    def __post_init__(self) -> None:
        probability("PhaseStabilisation", "contrast", self.contrast)

    @property
    def coherence_factor(self) -> float:
        """Multiplier of the heralded state's off-diagonal element."""
        return self.contrast

    @property
    def phase_rms_rad(self) -> float:
        """Equivalent Gaussian phase noise ``sigma = sqrt(-2 ln C)``."""
        return math.sqrt(-2.0 * math.log(self.contrast)) if self.contrast > 0 else math.inf
