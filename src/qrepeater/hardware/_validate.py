"""Shared validation helpers for the frozen parameter dataclasses."""

from __future__ import annotations

import math

from qrepeater.errors import ParameterError


def finite(owner: str, name: str, value: float) -> float:
    """Return ``value`` as float, raising :class:`ParameterError` if it is not finite."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{owner}.{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ParameterError(f"{owner}.{name} must be finite, got {value!r}")
    return v


def probability(
    owner: str, name: str, value: float, *, open_low: bool = False, open_high: bool = False
) -> None:
    """Check ``value`` lies in [0, 1] (optionally open at either end)."""
    v = finite(owner, name, value)
    lo_ok = v > 0 if open_low else v >= 0
    hi_ok = v < 1 if open_high else v <= 1
    if not (lo_ok and hi_ok):
        lo = "(" if open_low else "["
        hi = ")" if open_high else "]"
        raise ParameterError(f"{owner}.{name} must lie in {lo}0, 1{hi}, got {v}")


def positive(owner: str, name: str, value: float) -> None:
    """Check ``value`` > 0."""
    if finite(owner, name, value) <= 0:
        raise ParameterError(f"{owner}.{name} must be positive, got {value}")


def non_negative(owner: str, name: str, value: float) -> None:
    """Check ``value`` >= 0."""
    if finite(owner, name, value) < 0:
        raise ParameterError(f"{owner}.{name} must be non-negative, got {value}")
