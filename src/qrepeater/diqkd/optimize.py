"""Protocol optimiser: the excitation probability and setting probabilities that maximise the
finite key for given hardware and a budget of running time or heralded pairs.

For an excitation probability ``alpha`` the link model gives the herald rate and the expected
CHSH value ``S(alpha)`` and QBER ``Q(alpha)`` (:class:`~qrepeater.link.heralding.ElementaryLink`;
the trade-off of the paper's Fig. 3b: more alpha, more rounds, lower fidelity). The settings are
drawn independently as in the paper's protocol: Alice ``X = 0`` with probability ``p_x0``, Bob
``Y = 2`` with ``p_y2`` and ``Y = 0, 1`` equally. With ``N`` rounds the expected numbers of key
and test rounds are ``N p_x0 p_y2`` and ``N (1 - p_y2)``, and the finite key is the bound of the
chosen method at the expected S and Q (a planning figure: the realised key fluctuates around it).

Methods (:mod:`qrepeater.diqkd.keyrate`): ``phase-error`` and ``geat`` bound the protocol as run
(test data announced); ``eat`` bounds the spot-checking variant, which needs equally likely test
pairs, so for it ``p_x0 = 1/2``. Each point carries the method's protocol and assumptions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize

from qrepeater.diqkd.keyrate import Method, finite_key
from qrepeater.diqkd.rounds import SettingDistribution
from qrepeater.errors import ParameterError
from qrepeater.link.heralding import ElementaryLink
from qrepeater.presets import Preset
from qrepeater.quantum.bell import TSIRELSON

__all__ = ["ProtocolPoint", "evaluate_protocol", "optimise_protocol"]


@dataclass(frozen=True)
class ProtocolPoint:
    """One protocol choice and its expected finite key."""

    method: str
    fiber_km: float
    alpha: float
    p_x0: float
    p_y2: float
    rounds: int
    key_rounds: int
    test_rounds: int
    chsh: float
    qber: float
    rate_hz: float
    hours: float
    finite_key_bits: int
    asymptotic_rate: float
    protocol: str = ""
    assumptions: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = asdict(self)
        d["assumptions"] = list(self.assumptions)
        return d


def _budget(*, hours: float | None, heralds: int | None) -> None:
    if (hours is None) == (heralds is None):
        raise ParameterError("give exactly one budget: hours or heralds")
    if hours is not None and not (math.isfinite(hours) and hours > 0):
        raise ParameterError(f"hours must be positive, got {hours}")
    if heralds is not None and heralds < 1:
        raise ParameterError(f"heralds must be a positive integer, got {heralds}")


def evaluate_protocol(
    preset: Preset,
    *,
    fiber_km: float,
    alpha: float,
    p_x0: float,
    p_y2: float,
    method: Method = "phase-error",
    hours: float | None = None,
    heralds: int | None = None,
    eps: float = 1e-5,
    ec_efficiency: float = 1.122,
) -> ProtocolPoint:
    """Expected finite key of one protocol choice under a budget of hours or heralds."""
    _budget(hours=hours, heralds=heralds)
    for name, p in (("p_x0", p_x0), ("p_y2", p_y2)):
        if not 0.0 < p < 1.0:
            raise ParameterError(f"{name} must lie in (0, 1), got {p}")
    link = ElementaryLink(preset.hardware, alpha=alpha, fiber_km=fiber_km)
    rate = link.rate_hz
    n = int(heralds) if heralds is not None else int(rate * float(hours or 0.0) * 3600.0)
    duration_h = n / rate / 3600.0
    s, q = link.chsh(), link.qber()
    n_key = round(n * p_x0 * p_y2)
    n_test = round(n * (1.0 - p_y2))
    bits, asym = 0, 0.0
    protocol: str = ""
    assumptions: tuple[str, ...] = ()
    if s > 2.0 and n_key >= 1 and n_test >= 1 and q < 0.5:
        res = finite_key(
            method=method,
            rounds=n,
            key_rounds=n_key,
            test_rounds=n_test,
            chsh=min(s, TSIRELSON),
            qber=q,
            eps=eps,
            ec_efficiency=ec_efficiency,
            setting_probabilities=SettingDistribution.from_fractions(
                p_x0=p_x0, p_y2=p_y2
            ).probabilities(),
        )
        bits, asym = res.finite_key_bits, res.asymptotic_rate
        protocol, assumptions = res.protocol, res.assumptions
    return ProtocolPoint(
        method=method,
        fiber_km=fiber_km,
        alpha=alpha,
        p_x0=p_x0,
        p_y2=p_y2,
        rounds=n,
        key_rounds=n_key,
        test_rounds=n_test,
        chsh=s,
        qber=q,
        rate_hz=rate,
        hours=duration_h,
        finite_key_bits=bits,
        asymptotic_rate=asym,
        protocol=protocol,
        assumptions=assumptions,
    )


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _expit(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def optimise_protocol(
    preset: Preset,
    *,
    fiber_km: float,
    method: Method = "phase-error",
    hours: float | None = None,
    heralds: int | None = None,
    eps: float = 1e-5,
    ec_efficiency: float = 1.122,
    alpha_range: tuple[float, float] = (0.002, 0.25),
) -> ProtocolPoint:
    """Maximise the expected finite key over alpha and the setting probabilities.

    A coarse grid over alpha and ``p_y2`` seeds a Nelder-Mead search in logit coordinates; if
    no grid point gives a positive key, the best grid point (zero key) is returned.
    """
    _budget(hours=hours, heralds=heralds)
    lo, hi = alpha_range
    if not 0.0 < lo < hi < 1.0:
        raise ParameterError(f"alpha_range must satisfy 0 < lo < hi < 1, got {alpha_range}")
    fixed_x0 = 0.5 if method == "eat" else None

    def point(z: np.ndarray) -> ProtocolPoint:
        alpha = lo + (hi - lo) * _expit(float(z[0]))
        p_y2 = min(max(_expit(float(z[1])), 1e-4), 1 - 1e-4)
        p_x0 = fixed_x0 if fixed_x0 is not None else min(max(_expit(float(z[2])), 1e-4), 1 - 1e-4)
        return evaluate_protocol(
            preset,
            fiber_km=fiber_km,
            alpha=alpha,
            p_x0=p_x0,
            p_y2=p_y2,
            method=method,
            hours=hours,
            heralds=heralds,
            eps=eps,
            ec_efficiency=ec_efficiency,
        )

    def objective(z: np.ndarray) -> float:
        return -float(point(z).finite_key_bits)

    best_z: np.ndarray | None = None
    best_val = math.inf
    grid = np.geomspace(lo, hi, 7 if method == "eat" else 11)[1:-1]
    for a in grid:
        for p_y2 in (0.1, 0.33, 0.6, 0.9, 0.98):
            z = [_logit((a - lo) / (hi - lo)), _logit(p_y2)]
            if fixed_x0 is None:
                z.append(_logit(0.75))
            val = objective(np.array(z))
            if val < best_val:
                best_val, best_z = val, np.array(z)
    assert best_z is not None
    if best_val < 0:  # a positive key exists somewhere: refine it
        res = minimize(
            objective,
            best_z,
            method="Nelder-Mead",
            options={"xatol": 1e-3, "fatol": 0.5, "maxfev": 150 if method == "eat" else 600},
        )
        if res.fun <= best_val:
            best_z = np.asarray(res.x)
    return point(best_z)
