"""Binary Shannon entropy: the one function every post-processing and key-rate formula uses."""

from __future__ import annotations

from typing import overload

import numpy as np
import numpy.typing as npt

from qrepeater.errors import ParameterError

__all__ = ["binary_entropy"]

FloatArray = npt.NDArray[np.float64]


@overload
def binary_entropy(p: float) -> float: ...


@overload
def binary_entropy(p: npt.ArrayLike) -> float | FloatArray: ...


def binary_entropy(p: npt.ArrayLike) -> float | FloatArray:
    """Binary Shannon entropy h(p) = -p log2 p - (1-p) log2(1-p), with h(0) = h(1) = 0.

    Vectorised: a scalar gives a float, an array an array of the same shape. Raises
    :class:`ParameterError` for values outside [0, 1] or not finite.
    """
    arr = np.asarray(p, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any((arr < 0.0) | (arr > 1.0)):
        raise ParameterError(f"binary entropy needs probabilities in [0, 1], got {p!r}")
    q = 1.0 - arr
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 log 0 = 0, taken by the where
        h = np.asarray(
            np.where(arr > 0.0, -arr * np.log2(arr), 0.0) + np.where(q > 0.0, -q * np.log2(q), 0.0),
            dtype=np.float64,
        )
    if h.ndim == 0:
        return float(h)
    return h
