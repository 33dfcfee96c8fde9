"""Sweep specifications (TOML): a model, fixed parameters, axes, and a sample budget.

::

    model = "link"             # link, memory, keyrate, diqkd, reconcile
    preset = "ustc2025"        # name or path (relative to this file); its content is hashed
    combine = "product"        # or "zip" (axes of equal length, taken side by side)

    [fixed]
    fiber_km = 10

    [axes]
    alpha = { linspace = [0.01, 0.3, 30] }      # start, stop, number of points
    # other forms: [1, 2, 5]; { logspace = [1, 100, 5] } (log-spaced VALUES 1 ... 100);
    # { range = [0, 100, 10] } (start, stop inclusive, step)

    [budget]                   # Monte-Carlo tasks only
    max_samples = 1_000_000
    piece_samples = 100_000
    rel_error = 0.01           # optional early stop on the main (or `target`) quantity

Everything is checked, and every task built, before anything runs.
"""

from __future__ import annotations

import difflib
import itertools
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qrepeater.errors import QRepeaterError
from qrepeater.presets import DEFAULT_PRESET, Preset, load_preset
from qrepeater.sweep._errors import SpecError
from qrepeater.sweep._models import get_model, make_task
from qrepeater.sweep._task import SampleBudget, Task

_TOP = ("model", "preset", "combine", "fixed", "axes", "budget", "title", "description")
_AXIS_FORMS = ("linspace", "logspace", "range", "values")
_BUDGET = ("max_samples", "piece_samples", "rel_error", "target")
_MAX_TASKS = 1_000_000


def _suggest(name: str, options: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


@dataclass(frozen=True)
class SweepSpec:
    """A parsed specification: its model, preset, axes and the tasks they make."""

    model: str
    preset: Preset
    axes: Mapping[str, tuple[Any, ...]]
    fixed: Mapping[str, Any]
    budget: SampleBudget | None
    tasks: tuple[Task, ...]
    title: str = ""


def _number(axis: str, v: object) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise SpecError(f"axis '{axis}': {v!r} is not a finite number")
    return float(v)


def _axis_values(name: str, raw: object) -> tuple[Any, ...]:
    if isinstance(raw, list):
        values = tuple(raw)
    elif isinstance(raw, dict):
        if len(raw) != 1 or next(iter(raw)) not in _AXIS_FORMS:
            key = next(iter(raw), "")
            raise SpecError(
                f"axis '{name}' must be a list or one of {{{', '.join(_AXIS_FORMS)} = [...]}}"
                f"{_suggest(str(key), _AXIS_FORMS)}"
            )
        form, args = next(iter(raw.items()))
        if form == "values":
            if not isinstance(args, list):
                raise SpecError(f"axis '{name}': values must be a list")
            values = tuple(args)
        else:
            if not isinstance(args, list) or len(args) != 3:
                raise SpecError(f"axis '{name}': {form} takes [start, stop, n-or-step]")
            a, b, c = (_number(name, x) for x in args)
            if form == "range":
                if c <= 0 or b < a:
                    raise SpecError(f"axis '{name}': range needs stop >= start and step > 0")
                n = math.floor((b - a) / c + 1e-9) + 1
                values = tuple(float(a + i * c) for i in range(n))
            else:
                if c != int(c) or c < 0:
                    raise SpecError(f"axis '{name}': the number of points must be an integer")
                if form == "logspace":
                    if a <= 0 or b <= 0:
                        raise SpecError(f"axis '{name}': logspace needs positive start and stop")
                    values = tuple(float(x) for x in np.geomspace(a, b, int(c)))
                else:
                    values = tuple(float(x) for x in np.linspace(a, b, int(c)))
    else:
        raise SpecError(f"axis '{name}' must be a list or a table, got {raw!r}")
    if not values:
        raise SpecError(f"axis '{name}' is empty")
    return values


def parse_spec(
    text: str, *, base_dir: str | os.PathLike[str] | None = None, where: str = "spec"
) -> SweepSpec:
    """Parse and fully validate a sweep specification; build its tasks."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{where}: invalid TOML: {exc}") from None
    for key in doc:
        if key not in _TOP:
            raise SpecError(f"{where}: unknown key '{key}'{_suggest(key, _TOP)}")
    if "model" not in doc:
        raise SpecError(f"{where}: 'model' is required")
    model = get_model(doc["model"])
    preset_name = doc.get("preset", DEFAULT_PRESET)
    if not isinstance(preset_name, str):
        raise SpecError(f"{where}: preset must be a name or a path")
    if preset_name.endswith(".toml") and base_dir is not None:
        candidate = Path(base_dir) / preset_name
        if not Path(preset_name).is_absolute() and candidate.exists():
            preset_name = str(candidate)
    try:
        preset = load_preset(preset_name)
    except QRepeaterError as exc:
        raise SpecError(f"{where}: {exc}") from None
    fixed = doc.get("fixed", {})
    axes_raw = doc.get("axes", {})
    if not isinstance(fixed, dict) or not isinstance(axes_raw, dict):
        raise SpecError(f"{where}: [fixed] and [axes] must be tables")
    both = sorted(set(fixed) & set(axes_raw))
    if both:
        raise SpecError(f"{where}: '{both[0]}' is both fixed and an axis")
    axes = {name: _axis_values(name, raw) for name, raw in axes_raw.items()}
    for name, raw in axes_raw.items():
        spec = model.param(name)
        if isinstance(raw, dict) and spec is not None and spec.kind == "int":
            # generated points of an integer parameter (rounds...) are rounded, repeats dropped
            axes[name] = tuple(dict.fromkeys(round(v) for v in axes[name]))
    combine = doc.get("combine", "product")
    if combine not in ("product", "zip"):
        raise SpecError(f"{where}: combine must be 'product' or 'zip', got {combine!r}")
    budget = None
    if "budget" in doc:
        raw = doc["budget"]
        if not isinstance(raw, dict):
            raise SpecError(f"{where}: [budget] must be a table")
        for key in raw:
            if key not in _BUDGET:
                raise SpecError(f"{where}: unknown budget key '{key}'{_suggest(key, _BUDGET)}")
        if "max_samples" not in raw:
            raise SpecError(f"{where}: budget.max_samples is required")
        budget = SampleBudget(
            max_samples=raw["max_samples"],
            piece_samples=raw.get("piece_samples") or raw["max_samples"],
            rel_error=raw.get("rel_error"),
            target=raw.get("target"),
        )
    names = list(axes)
    if combine == "zip":
        lengths = {len(v) for v in axes.values()}
        if len(lengths) > 1:
            raise SpecError(f"{where}: zipped axes differ in length: {sorted(lengths)}")
        points = list(zip(*axes.values(), strict=True)) if axes else [()]
    else:
        count = math.prod(len(v) for v in axes.values())
        if count > _MAX_TASKS:
            raise SpecError(f"{where}: {count:,} tasks is more than {_MAX_TASKS:,}")
        points = list(itertools.product(*axes.values()))
    tasks = []
    for point in points:
        params = {**fixed, **dict(zip(names, point, strict=True))}
        try:
            tasks.append(make_task(model.name, params, preset=preset, budget=budget))
        except SpecError as exc:
            raise SpecError(f"{where}: {exc}") from None
    return SweepSpec(
        model=model.name,
        preset=preset,
        axes=axes,
        fixed=dict(fixed),
        budget=budget,
        tasks=tuple(tasks),
        title=str(doc.get("title", "")),
    )


def load_spec(path: str | os.PathLike[str]) -> SweepSpec:
    """Read and validate a sweep specification file (:class:`SpecError` if anything is
    wrong; nothing runs)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"sweep spec not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read {p}: {exc}") from None
    return parse_spec(text, base_dir=p.parent, where=p.name)
