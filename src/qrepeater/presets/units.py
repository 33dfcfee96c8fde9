"""Units of preset values: each model field has one canonical unit, fixed by its name.

The hardware dataclasses take SI-style values whose unit is part of the field name
(``coherence_time_s`` in seconds, ``dark_count_cps`` per second, ``pump_mw`` in milliwatts, ...).
A preset states a ``unit`` for every value; :func:`to_canonical` checks it against the field and
converts where the conversion is a pure scale factor (``ms`` -> ``s``: 550 ms is 0.55 s), and
refuses anything else (``W`` on a time, ``furlongs`` anywhere) with a
:class:`~qrepeater.errors.PresetError`.
"""

from __future__ import annotations

from qrepeater.errors import PresetError

__all__ = ["CONVERSIONS", "canonical_unit", "to_canonical"]

#: canonical unit -> {accepted spelling: factor to the canonical unit}
CONVERSIONS: dict[str, dict[str, float]] = {
    "1": {"1": 1.0, "": 1.0, "%": 1e-2},
    "s": {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "ps": 1e-12, "min": 60.0},
    "1/s": {"1/s": 1.0, "Hz": 1.0, "cps": 1.0, "s^-1": 1.0, "kHz": 1e3, "MHz": 1e6, "1/ms": 1e3},
    "mW": {"mW": 1.0, "W": 1e3, "uW": 1e-3, "µW": 1e-3},
    "km": {"km": 1.0, "m": 1e-3},
    "km/s": {"km/s": 1.0, "m/s": 1e-3},
    "dB/km": {"dB/km": 1.0},
    "1/(s mW)": {"1/(s mW)": 1.0, "Hz/mW": 1.0, "cps/mW": 1.0, "1/(s W)": 1e-3},
}

# field-name suffix -> canonical unit, most specific first
_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("_cps_per_mw", "1/(s mW)"),
    ("_db_per_km", "dB/km"),
    ("_km_s", "km/s"),
    ("_per_s", "1/s"),
    ("_cps", "1/s"),
    ("_hz", "1/s"),
    ("_mw", "mW"),
    ("_km", "km"),
    ("_s", "s"),
)


def canonical_unit(field: str) -> str:
    """The unit the model expects for ``field`` (a dataclass field name); ``"1"`` when the name
    carries no unit (probabilities, efficiencies, contrasts)."""
    for suffix, unit in _SUFFIXES:
        if field.endswith(suffix):
            return unit
    return "1"


def to_canonical(key: str, value: float, unit: str) -> float:
    """``value`` given in ``unit`` for the field named in ``key`` (``section.field``), converted
    to the field's canonical unit; a unit of another dimension, or an unknown one, raises."""
    field = key.rsplit(".", 1)[-1]
    want = canonical_unit(field)
    spelled = " ".join(str(unit).split())
    factor = CONVERSIONS[want].get(spelled)
    if factor is None:
        accepted = ", ".join(repr(u) for u in CONVERSIONS[want] if u)
        raise PresetError(
            f"'{key}' has unit {unit!r}, which is not a unit of this quantity "
            f"(expected {want!r}; accepted: {accepted})"
        )
    return value * factor
