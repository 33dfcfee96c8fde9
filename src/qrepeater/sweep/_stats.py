"""Addable statistics of one task, in the manner of sinter's ``TaskStats``.

A Monte-Carlo piece returns, for every quantity it samples, the count, sum and sum of squares of
the per-sample values; pieces of the same task add up, so means and standard errors come from
all samples wherever they ran. An analytic task returns its values once. Statistics of
different tasks (different strong ids) refuse to merge.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from qrepeater.sweep._errors import MergeError

Scalar = float | int | str | None


@dataclass(frozen=True)
class Moments:
    """Count, sum and sum of squares of one quantity's samples."""

    n: int
    total: float
    total_sq: float

    @classmethod
    def of(cls, values: npt.ArrayLike) -> Moments:
        """Moments of an array of samples (NaN entries are not counted)."""
        v = np.asarray(values, dtype=np.float64).ravel()
        v = v[~np.isnan(v)]
        # np.sum, not BLAS dot: the result must not depend on the BLAS thread count
        return cls(int(v.size), float(v.sum()), float(np.sum(v * v)))

    def __add__(self, other: Moments) -> Moments:
        return Moments(self.n + other.n, self.total + other.total, self.total_sq + other.total_sq)

    @property
    def mean(self) -> float | None:
        """Sample mean (None without samples)."""
        return self.total / self.n if self.n else None

    @property
    def stderr(self) -> float | None:
        """Standard error of the mean, ``sqrt(s^2 / n)`` with the unbiased variance ``s^2``
        (None with fewer than two samples)."""
        if self.n < 2:
            return None
        mean = self.total / self.n
        var = max(self.total_sq - self.n * mean * mean, 0.0) / (self.n - 1)
        return math.sqrt(var / self.n)

    def to_list(self) -> list[float | int]:
        return [self.n, self.total, self.total_sq]


@dataclass(frozen=True)
class TaskStats:
    """Statistics of (part of) one task.

    ``pieces``: indices of the pieces merged here; ``samples``: samples taken; ``seconds``:
    compute time summed over pieces; ``moments``: per-quantity moments (Monte-Carlo tasks);
    ``values``: the one-off results of an analytic task.
    """

    strong_id: str
    pieces: frozenset[int]
    samples: int
    seconds: float
    moments: Mapping[str, Moments] = field(default_factory=dict)
    values: Mapping[str, Scalar] = field(default_factory=dict)

    def __add__(self, other: TaskStats) -> TaskStats:
        if not isinstance(other, TaskStats):
            return NotImplemented
        if other.strong_id != self.strong_id:
            raise MergeError(
                f"cannot merge statistics of different tasks ({self.strong_id[:12]}... and "
                f"{other.strong_id[:12]}...)"
            )
        overlap = self.pieces & other.pieces
        if overlap:
            raise MergeError(
                f"piece {min(overlap)} of task {self.strong_id[:12]}... would be counted twice"
            )
        if self.values and other.values:
            raise MergeError("an analytic task has one result; it cannot be merged with another")
        moments = dict(self.moments)
        for k, m in other.moments.items():
            moments[k] = moments[k] + m if k in moments else m
        return TaskStats(
            strong_id=self.strong_id,
            pieces=self.pieces | other.pieces,
            samples=self.samples + other.samples,
            seconds=self.seconds + other.seconds,
            moments=moments,
            values={**self.values, **other.values},
        )

    @classmethod
    def merge(cls, stats: Iterable[TaskStats]) -> TaskStats:
        """Sum of several statistics, added in piece order (so floating-point sums do not
        depend on the order the pieces finished in)."""
        items = sorted(stats, key=lambda s: min(s.pieces, default=-1))
        if not items:
            raise MergeError("nothing to merge")
        out = items[0]
        for s in items[1:]:
            out = out + s
        return out

    def payload(self) -> dict[str, Any]:
        """The JSON stored for a piece (moments or values)."""
        if self.moments:
            return {"moments": {k: m.to_list() for k, m in sorted(self.moments.items())}}
        return {"values": dict(sorted(self.values.items()))}

    @classmethod
    def from_payload(
        cls, *, strong_id: str, piece: int, samples: int, seconds: float, payload: Mapping[str, Any]
    ) -> TaskStats:
        """Inverse of :meth:`payload` for one stored piece."""
        moments = {
            str(k): Moments(int(v[0]), float(v[1]), float(v[2]))
            for k, v in payload.get("moments", {}).items()
        }
        values = {str(k): v for k, v in payload.get("values", {}).items()}
        return cls(strong_id, frozenset({piece}), samples, seconds, moments, values)

    def means(self) -> dict[str, Scalar]:
        """Analytic values, or the mean of each sampled quantity."""
        if self.moments:
            return {k: m.mean for k, m in self.moments.items()}
        return dict(self.values)

    def errors(self) -> dict[str, float | None]:
        """Standard error of each sampled quantity (empty for analytic tasks)."""
        return {k: m.stderr for k, m in self.moments.items()}
