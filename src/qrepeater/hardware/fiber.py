"""Telecom fibre: exponential loss and propagation delay."""

from __future__ import annotations

from dataclasses import dataclass

from qrepeater.hardware._validate import non_negative, positive


@dataclass(frozen=True)
class Fiber:
    """Single-mode fibre at 1550 nm.

    ``loss_db_per_km``: attenuation (0.2 dB/km for standard fibre at 1550 nm);
    ``group_velocity_km_s``: group velocity c/n_g (about 2.04e5 km/s).
    """

    loss_db_per_km: float = 0.2
    group_velocity_km_s: float = 2.04e5

    def __post_init__(self) -> None:
        non_negative("Fiber", "loss_db_per_km", self.loss_db_per_km)
        positive("Fiber", "group_velocity_km_s", self.group_velocity_km_s)

    def transmission(self, km: float) -> float:
        """Power transmission ``10**(-loss*km/10)`` of ``km`` kilometres (Beer-Lambert)."""
        non_negative("Fiber", "km", km)
        return float(10.0 ** (-self.loss_db_per_km * km / 10.0))

    def delay_s(self, km: float) -> float:
        """One-way propagation time ``km / v_g`` in seconds."""
        non_negative("Fiber", "km", km)
        return km / self.group_velocity_km_s
