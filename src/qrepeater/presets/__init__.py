"""Versioned parameter presets (TOML) and their loader.

A preset is a TOML file whose sections map onto the frozen hardware dataclasses. Every value is
an inline table carrying its provenance::

    [source]
    efficiency_a = { value = 0.026, unit = "1", kind = "paper", source = "main text ..." }
    [timing]
    attempt_period_base_s = { value = 3.26e-4, unit = "s", kind = "fitted",
                              fitted_to = "herald_rate_hz", source = "..." }

``kind`` is ``paper`` (a number the paper states), ``assumed`` (a choice this preset makes, with
its reason) or ``fitted`` (re-derived by :func:`qrepeater.calibrate.calibrate` from the target
named in ``fitted_to``). ``[targets]`` holds the measured numbers the fits use, with the
conditions (``alpha``, ``fiber_km``) they were measured at; ``[data]`` holds recorded numbers
that are not model inputs. Loading is strict: a missing, unknown or misspelt key is an error.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, cast

from qrepeater._io import atomic_write_bytes
from qrepeater.errors import ParameterError, PresetError
from qrepeater.hardware import (
    Detector,
    Fiber,
    FrequencyConverter,
    IonQubit,
    IonSource,
    LinkHardware,
    Memory,
    PhaseStabilisation,
    Timing,
)
from qrepeater.hardware._validate import probability
from qrepeater.presets.units import canonical_unit, to_canonical

Kind = Literal["paper", "fitted", "assumed"]
KINDS: tuple[str, ...] = ("paper", "fitted", "assumed")
DEFAULT_PRESET = "ustc2025"


@dataclass(frozen=True)
class OperatingPoint:
    """Default operating settings of the link and the DI-QKD protocol.

    ``alpha``/``fiber_km``: default excitation probability and node-to-node fibre length;
    ``alpha_diqkd``: excitation probability of the DI-QKD runs;
    ``diqkd_prob_x0``: probability of Alice's setting X = 0 (Z, key and CHSH);
    ``diqkd_prob_y2``: probability of Bob's key setting Y = 2 (Y = 0, 1 share the rest equally).
    """

    alpha: float
    fiber_km: float
    alpha_diqkd: float
    diqkd_prob_x0: float
    diqkd_prob_y2: float

    def __post_init__(self) -> None:
        for name in ("alpha", "alpha_diqkd"):
            probability("OperatingPoint", name, getattr(self, name), open_low=True, open_high=True)
        for name in ("diqkd_prob_x0", "diqkd_prob_y2"):
            probability("OperatingPoint", name, getattr(self, name), open_low=True, open_high=True)
        if self.fiber_km < 0:
            raise ParameterError(
                f"OperatingPoint.fiber_km must be non-negative, got {self.fiber_km}"
            )


#: TOML section -> dataclass it builds (hardware sections first, then the operating point).
SECTIONS: dict[str, type[Any]] = {
    "source": IonSource,
    "conversion": FrequencyConverter,
    "fiber": Fiber,
    "detector": Detector,
    "phase": PhaseStabilisation,
    "ion": IonQubit,
    "timing": Timing,
    "memory": Memory,
    "operating": OperatingPoint,
}
#: optional sections of plain quantities read by higher layers (which validate the values)
OPTIONAL_SECTIONS: dict[str, tuple[str, ...]] = {
    "repeater": ("swap_probability", "swap_gate_fidelity", "memories"),
}
_HARDWARE_SECTIONS = (
    "source",
    "conversion",
    "fiber",
    "detector",
    "phase",
    "ion",
    "timing",
    "memory",
)
_QUANTITY_KEYS = {"value", "unit", "kind", "source", "fitted_to"}
_TARGET_KEYS = {
    "value",
    "unit",
    "source",
    "uncertainty",
    "alpha",
    "fiber_km",
    "window_s",
    "time_s",
    "rounds",
}
_DATA_KEYS = {"value", "unit", "source", "uncertainty"}


@dataclass(frozen=True)
class Quantity:
    """A preset value with its unit and provenance."""

    value: float
    unit: str
    kind: Kind
    source: str
    fitted_to: str | None = None


@dataclass(frozen=True)
class Target:
    """A measured number a fit or a reproduction row compares against, with its conditions."""

    name: str
    value: float
    unit: str
    source: str
    uncertainty: float | None = None
    conditions: Mapping[str, float] = field(default_factory=dict)

    def condition(self, key: str) -> float:
        """The condition ``key`` (e.g. ``alpha``), or a :class:`PresetError` if absent."""
        try:
            return float(self.conditions[key])
        except KeyError:
            raise PresetError(f"target '{self.name}' needs a '{key}' condition") from None


@dataclass(frozen=True)
class Preset:
    """A validated, versioned parameter set."""

    name: str
    version: str
    description: str
    reference: str
    hardware: LinkHardware
    operating: OperatingPoint
    quantities: Mapping[str, Quantity]
    targets: Mapping[str, Target]
    data: Mapping[str, Target]
    path: str | None = None

    @property
    def label(self) -> str:
        """``name@version`` for reports and record metadata."""
        return f"{self.name}@{self.version}"

    @property
    def digest(self) -> str:
        """Content hash of every value (first 16 hex digits of SHA-256), for provenance keys."""
        payload = json.dumps(
            {k: q.value for k, q in sorted(self.quantities.items())}, sort_keys=True
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def target(self, name: str) -> Target:
        """The target ``name`` or a :class:`PresetError`."""
        try:
            return self.targets[name]
        except KeyError:
            raise PresetError(f"preset '{self.name}' has no target '{name}'") from None

    def fitted(self) -> dict[str, Quantity]:
        """The fitted quantities, keyed ``section.name``."""
        return {k: q for k, q in self.quantities.items() if q.kind == "fitted"}

    def replace(self, values: Mapping[str, float]) -> Preset:
        """A copy with some values changed (keys ``section.name``), revalidated."""
        quantities = dict(self.quantities)
        for key, value in values.items():
            if key not in quantities:
                raise PresetError(f"unknown parameter '{key}'{_suggest(key, quantities)}")
            quantities[key] = dataclasses.replace(quantities[key], value=float(value))
        hardware, operating = _build(quantities)
        return dataclasses.replace(
            self, hardware=hardware, operating=operating, quantities=quantities
        )

    def to_toml(self) -> str:
        """Serialise back to the preset TOML format (round-trips through :func:`load_preset`)."""
        lines = ["[meta]"]
        for key in ("name", "version", "description", "reference"):
            lines.append(f"{key} = {_toml_str(getattr(self, key))}")
        for section in SECTIONS:
            lines += ["", f"[{section}]"]
            for f in dataclasses.fields(SECTIONS[section]):
                q = self.quantities[f"{section}.{f.name}"]
                items = [("value", q.value), ("unit", q.unit), ("kind", q.kind)]
                if q.fitted_to:
                    items.append(("fitted_to", q.fitted_to))
                items.append(("source", q.source))
                lines.append(f"{f.name} = {_inline(items)}")
        for section, names in OPTIONAL_SECTIONS.items():
            present = [n for n in names if f"{section}.{n}" in self.quantities]
            if present:
                lines += ["", f"[{section}]"]
            for name in present:
                q = self.quantities[f"{section}.{name}"]
                items = [("value", q.value), ("unit", q.unit), ("kind", q.kind)]
                items.append(("source", q.source))
                lines.append(f"{name} = {_inline(items)}")
        for title, table in (("targets", self.targets), ("data", self.data)):
            lines += ["", f"[{title}]"]
            for name, t in table.items():
                items = [("value", t.value), ("unit", t.unit)]
                if t.uncertainty is not None:
                    items.append(("uncertainty", t.uncertainty))
                items += list(t.conditions.items())
                items.append(("source", t.source))
                lines.append(f"{name} = {_inline(items)}")
        return "\n".join(lines) + "\n"


def _toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _toml_value(v: object) -> str:
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(float(v)) if isinstance(v, float) else str(v)


def _inline(items: list[tuple[str, object]]) -> str:
    return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in items) + " }"


def _suggest(key: str, options: Mapping[str, object] | list[str] | set[str]) -> str:
    close = difflib.get_close_matches(key, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _parse_quantity(key: str, raw: object) -> Quantity:
    if not isinstance(raw, dict):
        raise PresetError(
            f"'{key}' must be an inline table "
            "{ value = ..., unit = ..., kind = ..., source = ... }"
        )
    unknown = set(raw) - _QUANTITY_KEYS
    if unknown:
        bad = sorted(unknown)[0]
        raise PresetError(f"unknown field '{key}.{bad}'{_suggest(bad, _QUANTITY_KEYS)}")
    for need in ("value", "unit", "kind", "source"):
        if need not in raw:
            raise PresetError(f"'{key}' is missing its '{need}' field")
    value = raw["value"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PresetError(f"'{key}.value' must be a number, got {value!r}")
    kind = raw["kind"]
    if kind not in KINDS:
        raise PresetError(f"'{key}.kind' must be one of {', '.join(KINDS)}, got {kind!r}")
    fitted_to = raw.get("fitted_to")
    if kind == "fitted" and not fitted_to:
        raise PresetError(f"'{key}' is fitted but does not say what to ('fitted_to')")
    unit = raw["unit"]
    if not isinstance(unit, str):
        raise PresetError(f"'{key}.unit' must be a string, got {unit!r}")
    value = to_canonical(key, float(value), unit)
    return Quantity(
        value=value,
        unit=canonical_unit(key.rsplit(".", 1)[-1]),
        kind=cast(Kind, kind),
        source=str(raw["source"]),
        fitted_to=str(fitted_to) if fitted_to else None,
    )


def _parse_targets(title: str, raw: object, allowed: set[str]) -> dict[str, Target]:
    if not isinstance(raw, dict):
        raise PresetError(f"[{title}] must be a table")
    out: dict[str, Target] = {}
    for name, entry in raw.items():
        key = f"{title}.{name}"
        if not isinstance(entry, dict):
            raise PresetError(f"'{key}' must be an inline table")
        unknown = set(entry) - allowed
        if unknown:
            bad = sorted(unknown)[0]
            raise PresetError(f"unknown field '{key}.{bad}'{_suggest(bad, allowed)}")
        for need in ("value", "unit", "source"):
            if need not in entry:
                raise PresetError(f"'{key}' is missing its '{need}' field")
        try:
            conditions = {
                k: float(v)
                for k, v in entry.items()
                if k not in {"value", "unit", "source", "uncertainty"}
            }
            value, unit = float(entry["value"]), str(entry["unit"])
            if canonical_unit(name) != "1":  # a name with a unit suffix: check and convert
                value, unit = to_canonical(key, value, unit), canonical_unit(name)
            out[name] = Target(
                name=name,
                value=value,
                unit=unit,
                source=str(entry["source"]),
                uncertainty=None
                if entry.get("uncertainty") is None
                else float(entry["uncertainty"]),
                conditions=conditions,
            )
        except (TypeError, ValueError):
            raise PresetError(f"'{key}' has a non-numeric value or condition") from None
    return out


def _build(quantities: Mapping[str, Quantity]) -> tuple[LinkHardware, OperatingPoint]:
    objs: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        kwargs = {f.name: quantities[f"{section}.{f.name}"].value for f in dataclasses.fields(cls)}
        try:
            objs[section] = cls(**kwargs)
        except ParameterError as exc:
            raise PresetError(f"[{section}] {exc}") from None
    hardware = LinkHardware(**{s: objs[s] for s in _HARDWARE_SECTIONS})
    return hardware, objs["operating"]


def parse_preset(text: str, *, path: str | None = None) -> Preset:
    """Parse and validate preset TOML text."""
    where = f" in {path}" if path else ""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PresetError(f"invalid TOML{where}: {exc}") from None
    allowed = {"meta", "targets", "data", *SECTIONS, *OPTIONAL_SECTIONS}
    for top in doc:
        if top not in allowed:
            raise PresetError(f"unknown section [{top}]{where}{_suggest(top, allowed)}")
    meta = doc.get("meta")
    if not isinstance(meta, dict) or "name" not in meta or "version" not in meta:
        raise PresetError(f"[meta] with 'name' and 'version' is required{where}")
    quantities: dict[str, Quantity] = {}
    for section, cls in SECTIONS.items():
        table = doc.get(section)
        if not isinstance(table, dict):
            raise PresetError(f"missing section [{section}]{where}")
        names = [f.name for f in dataclasses.fields(cls)]
        for key in table:
            if key not in names:
                raise PresetError(f"unknown key '{section}.{key}'{where}{_suggest(key, names)}")
        for name in names:
            if name not in table:
                raise PresetError(f"missing key '{section}.{name}'{where}")
            quantities[f"{section}.{name}"] = _parse_quantity(f"{section}.{name}", table[name])
    for section, optional in OPTIONAL_SECTIONS.items():
        table = doc.get(section, {})
        if not isinstance(table, dict):
            raise PresetError(f"[{section}] must be a table{where}")
        for key in table:
            if key not in optional:
                raise PresetError(
                    f"unknown key '{section}.{key}'{where}{_suggest(key, list(optional))}"
                )
            quantities[f"{section}.{key}"] = _parse_quantity(f"{section}.{key}", table[key])
    targets = _parse_targets("targets", doc.get("targets", {}), _TARGET_KEYS)
    data = _parse_targets("data", doc.get("data", {}), _DATA_KEYS)
    for key, q in quantities.items():
        if q.kind == "fitted" and q.fitted_to not in targets:
            raise PresetError(f"'{key}' is fitted to unknown target '{q.fitted_to}'{where}")
    hardware, operating = _build(quantities)
    return Preset(
        name=str(meta["name"]),
        version=str(meta["version"]),
        description=str(meta.get("description", "")),
        reference=str(meta.get("reference", "")),
        hardware=hardware,
        operating=operating,
        quantities=quantities,
        targets=targets,
        data=data,
        path=path,
    )


def available_presets() -> list[str]:
    """Names of the presets shipped with qrepeater."""
    root = resources.files(__name__)
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def load_preset(name_or_path: str | os.PathLike[str] = DEFAULT_PRESET) -> Preset:
    """Load a shipped preset by name, or a user's preset file by path (``*.toml``)."""
    text_path = str(name_or_path)
    if not text_path.strip():
        raise PresetError(
            f"empty preset name; available: {', '.join(available_presets())} (or a .toml path)"
        )
    if text_path.endswith(".toml") or os.sep in text_path or Path(text_path).exists():
        p = Path(text_path)
        if not p.is_file():
            raise PresetError(f"preset file not found: {text_path}")
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PresetError(f"cannot read preset {text_path}: {exc}") from None
        return parse_preset(text, path=str(p))
    names = available_presets()
    if text_path not in names:
        raise PresetError(
            f"unknown preset '{text_path}'{_suggest(text_path, names)}; "
            f"available: {', '.join(names)}"
        )
    resource = resources.files(__name__).joinpath(f"{text_path}.toml")
    return parse_preset(resource.read_text(encoding="utf-8"), path=None)


def write_preset(preset: Preset, path: str | os.PathLike[str]) -> None:
    """Write a preset atomically (temporary file in the same folder, then rename)."""
    text = preset.to_toml()
    parse_preset(text)  # never write something that would not load back
    atomic_write_bytes(path, text.encode("utf-8"))


__all__ = [
    "DEFAULT_PRESET",
    "SECTIONS",
    "OperatingPoint",
    "Preset",
    "Quantity",
    "Target",
    "available_presets",
    "load_preset",
    "parse_preset",
    "write_preset",
]
