"""Tasks: frozen descriptions of one computation, identified by a strong id.

A task names a model, the content of a preset (its values, not its file name), the parameters
and, for Monte-Carlo tasks, a sample budget. Its strong id is the SHA-256 of a canonical JSON of
all of that plus the package version, as sinter's ``Task.strong_id`` is (quantumlib/Stim,
``glue/sample``): a stored result can never be attributed to other inputs.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from qrepeater.presets import Preset
from qrepeater.sweep._errors import SpecError

ParamValue = float | int | str

#: bump when the meaning of stored lines changes
STORE_FORMAT = 1


def package_version() -> str:
    """The installed qrepeater version (part of every strong id)."""
    try:
        return importlib.metadata.version("qrepeater")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - bare source tree
        return "0+unknown"


def canonical_json(obj: Any) -> str:
    """Deterministic compact JSON (sorted keys, no whitespace, finite numbers only)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


#: id(preset) -> (preset, content, digest); a sweep's tasks share a few preset objects
_CONTENT_CACHE: dict[int, tuple[Preset, dict[str, float], str]] = {}


def _content(preset: Preset) -> tuple[dict[str, float], str]:
    hit = _CONTENT_CACHE.get(id(preset))
    if hit is not None and hit[0] is preset:
        return hit[1], hit[2]
    content = {k: float(q.value) for k, q in sorted(preset.quantities.items())}
    digest = hashlib.sha256(canonical_json(content).encode()).hexdigest()[:16]
    if len(_CONTENT_CACHE) >= 64:
        _CONTENT_CACHE.clear()
    _CONTENT_CACHE[id(preset)] = (preset, content, digest)
    return content, digest


def preset_content(preset: Preset) -> dict[str, float]:
    """Every value of the preset, keyed ``section.name``: what a model can depend on."""
    return dict(_content(preset)[0])


def preset_digest(preset: Preset) -> str:
    """First 16 hex digits of the SHA-256 of :func:`preset_content`."""
    return _content(preset)[1]


@dataclass(frozen=True)
class SampleBudget:
    """How many samples a Monte-Carlo task may take, in pieces, and when it may stop early.

    The task runs in pieces of ``piece_samples`` samples (the last piece takes what is left of
    ``max_samples``). With ``rel_error`` set, it stops after the first piece ``k`` at which the
    merged pieces ``0..k`` give ``target`` (default: the model's main quantity) a standard
    error of at most ``rel_error`` times its mean. Because the rule looks at a prefix of
    pieces whose seeds are fixed, the pieces that count do not depend on scheduling.
    """

    max_samples: int
    piece_samples: int
    rel_error: float | None = None
    target: str | None = None

    def __post_init__(self) -> None:
        for name in ("max_samples", "piece_samples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
                raise SpecError(f"budget.{name} must be a positive integer, got {v!r}")
        if self.piece_samples > self.max_samples:
            raise SpecError(
                f"budget.piece_samples ({self.piece_samples}) exceeds budget.max_samples "
                f"({self.max_samples})"
            )
        if self.rel_error is not None and not (
            isinstance(self.rel_error, int | float)
            and math.isfinite(self.rel_error)
            and 0.0 < self.rel_error < 1.0
        ):
            raise SpecError(f"budget.rel_error must lie in (0, 1), got {self.rel_error!r}")

    @property
    def max_pieces(self) -> int:
        """Number of pieces when no early stop happens."""
        return -(-self.max_samples // self.piece_samples)

    def piece_size(self, piece: int) -> int:
        """Samples of piece ``piece``."""
        if not 0 <= piece < self.max_pieces:
            raise SpecError(f"piece {piece} outside 0..{self.max_pieces - 1}")
        return min(self.piece_samples, self.max_samples - piece * self.piece_samples)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (used in the strong id and the store)."""
        return {
            "max_samples": int(self.max_samples),
            "piece_samples": int(self.piece_samples),
            "rel_error": None if self.rel_error is None else float(self.rel_error),
            "target": self.target,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SampleBudget:
        """Inverse of :meth:`to_dict`."""
        return cls(
            max_samples=int(d["max_samples"]),
            piece_samples=int(d["piece_samples"]),
            rel_error=None if d.get("rel_error") is None else float(d["rel_error"]),
            target=d.get("target"),
        )


@dataclass(frozen=True)
class Task:
    """One computation: ``model`` at ``params`` on ``preset``, with an optional sample budget.

    Build tasks with :func:`make_task` (or :func:`qrepeater.sweep.load_spec`), which checks the
    parameters against the model and fills in defaults, so that equal computations get equal
    strong ids. ``preset`` is carried to the workers; only its content enters the id.
    """

    model: str
    params: tuple[tuple[str, ParamValue], ...]
    preset: Preset = field(repr=False, compare=False)
    budget: SampleBudget | None = None
    version: str = field(default_factory=package_version)

    @property
    def param_dict(self) -> dict[str, ParamValue]:
        """The parameters as a dict."""
        return dict(self.params)

    @property
    def monte_carlo(self) -> bool:
        """Whether the task samples (it has a budget) rather than evaluates once."""
        return self.budget is not None

    @property
    def max_pieces(self) -> int:
        """Pieces the task runs at most (1 for analytic tasks)."""
        return 1 if self.budget is None else self.budget.max_pieces

    @cached_property
    def preset_digest(self) -> str:
        """Content digest of the preset (see :func:`preset_digest`)."""
        return preset_digest(self.preset)

    def identity(self) -> dict[str, Any]:
        """Everything that determines the result, as a JSON-ready dict."""
        return {
            "format": STORE_FORMAT,
            "model": self.model,
            "params": dict(self.params),
            "preset": _content(self.preset)[0],
            "budget": None if self.budget is None else self.budget.to_dict(),
            "version": self.version,
        }

    @cached_property
    def strong_id(self) -> str:
        """SHA-256 (hex) of the canonical JSON of :meth:`identity`."""
        return hashlib.sha256(canonical_json(self.identity()).encode()).hexdigest()

    def seed(self, piece: int) -> np.random.SeedSequence:
        """Seed of piece ``piece``: the strong id's entropy with the piece as spawn key, so a
        piece draws the same samples wherever and whenever it runs."""
        return np.random.SeedSequence(int(self.strong_id, 16), spawn_key=(int(piece),))

    def label(self) -> str:
        """Short human description, e.g. ``link alpha=0.17 fiber_km=10``."""
        parts = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.params]
        return " ".join([self.model, *parts])
