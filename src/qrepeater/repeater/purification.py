"""Entanglement purification of two Bell-diagonal pairs: BBPSSW and DEJMPS.

States are the ``psi+``-frame correlators ``f = (fx, fy, fz)`` of :mod:`.segments`; a
Bell-diagonal state is written as the probabilities of the Pauli error ``E`` on one qubit of
``psi+``: ``(p_I, p_X, p_Y, p_Z)`` with ``p_I = (1 + fx + fy + fz)/4``, ``p_X = (1 + fx - fy -
fz)/4``, ``p_Y = (1 - fx + fy - fz)/4``, ``p_Z = (1 - fx - fy + fz)/4``.

Core step (bilateral CNOT from pair 1 to pair 2, pair 2 measured in Z and the outcomes compared):
bit flips propagate 1 -> 2 and phase flips 2 -> 1, so the step succeeds when both pairs carry a
bit flip or neither does, with probability ``N = (p_I1 + p_Z1)(p_I2 + p_Z2) + (p_X1 + p_Y1)(p_X2 +
p_Y2)``, leaving pair 1 with ``p_I' = (p_I1 p_I2 + p_Z1 p_Z2)/N``, ``p_Z' = (p_I1 p_Z2 + p_Z1
p_I2)/N``, ``p_X' = (p_X1 p_X2 + p_Y1 p_Y2)/N``, ``p_Y' = (p_X1 p_Y2 + p_Y1 p_X2)/N``.

* DEJMPS (Deutsch et al., PRL 77, 2818 (1996)): the local ``pi/2`` rotations exchange the
  ``Y`` and ``Z`` errors of both inputs before the core step; for identical inputs this is their
  ``A' = (A^2 + B^2)/N``, ``B' = 2CD/N``, ``C' = (C^2 + D^2)/N``, ``D' = 2AB/N`` with ``N = (A +
  B)^2 + (C + D)^2``.
* BBPSSW (Bennett et al., PRL 76, 722 (1996)): both inputs twirled to Werner form first and the
  output twirled again, ``F' = (F^2 + ((1-F)/3)^2) / (F^2 + 2F(1-F)/3 + 5((1-F)/3)^2)``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from qrepeater.errors import ParameterError

FloatArray = npt.NDArray[np.float64]
Method = Literal["dejmps", "bbpssw"]
METHODS: tuple[str, ...] = ("dejmps", "bbpssw")


def error_probabilities(f: npt.ArrayLike) -> FloatArray:
    """``(p_I, p_X, p_Y, p_Z)`` of the Bell-diagonal part of a state with frame correlators f."""
    a = np.asarray(f, dtype=np.float64)
    fx, fy, fz = a[0], a[1], a[2]
    return np.stack(
        [
            (1 + fx + fy + fz) / 4,
            (1 + fx - fy - fz) / 4,
            (1 - fx + fy - fz) / 4,
            (1 - fx - fy + fz) / 4,
        ]
    )


def frame_from_errors(p: npt.ArrayLike) -> FloatArray:
    """Inverse of :func:`error_probabilities`."""
    a = np.asarray(p, dtype=np.float64)
    pi, px, py, pz = a[0], a[1], a[2], a[3]
    return np.stack([pi + px - py - pz, pi - px + py - pz, pi - px - py + pz])


def _core(p1: FloatArray, p2: FloatArray) -> tuple[FloatArray, FloatArray]:
    i1, x1, y1, z1 = p1
    i2, x2, y2, z2 = p2
    n = (i1 + z1) * (i2 + z2) + (x1 + y1) * (x2 + y2)
    safe = np.where(n > 0, n, 1.0)
    out = np.stack([i1 * i2 + z1 * z2, x1 * x2 + y1 * y2, x1 * y2 + y1 * x2, i1 * z2 + z1 * i2])
    return np.asarray(n), np.asarray(out / safe)


def _twirl(p: FloatArray) -> FloatArray:
    e = (1.0 - p[0]) / 3.0
    return np.stack([p[0], e, e, e])


def purify(
    f1: npt.ArrayLike, f2: npt.ArrayLike, method: str = "dejmps"
) -> tuple[FloatArray, FloatArray]:
    """``(success probability, output frame correlators)`` of one purification round.

    Vectorised over trailing axes of ``f1`` and ``f2`` (shape ``(3, ...)``).
    """
    if method not in METHODS:
        raise ParameterError(f"unknown purification {method!r}; use one of {', '.join(METHODS)}")
    p1 = error_probabilities(f1)
    p2 = error_probabilities(f2)
    if method == "dejmps":
        p1 = p1[[0, 1, 3, 2]]  # the rotations exchange the Y and Z errors
        p2 = p2[[0, 1, 3, 2]]
        n, out = _core(p1, p2)
    else:
        n, out = _core(_twirl(p1), _twirl(p2))
        out = _twirl(out)
    return n, frame_from_errors(out)


__all__ = ["METHODS", "Method", "error_probabilities", "frame_from_errors", "purify"]
