"""Seeds and random generators: the one place that says what a ``seed`` argument may be.

Every stochastic API takes ``seed``: a non-negative integer, a :class:`numpy.random.SeedSequence`,
a :class:`numpy.random.Generator` (used as it is), or ``None`` for fresh OS entropy. Parallel work
derives its streams with ``SeedSequence.spawn``; key material never comes from here (it uses
:mod:`secrets`).
"""

from __future__ import annotations

import numpy as np

from qrepeater.errors import ParameterError

Seed = int | np.random.SeedSequence | np.random.Generator | None


def check_seed(seed: object) -> None:
    """Raise :class:`ParameterError` unless ``seed`` is a valid :data:`Seed`."""
    if seed is None or isinstance(seed, np.random.Generator | np.random.SeedSequence):
        return
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ParameterError(
            f"seed must be a non-negative integer, a SeedSequence or a Generator, got {seed!r}"
        )


def as_generator(seed: Seed) -> np.random.Generator:
    """A generator for ``seed``: a Generator is returned as it is, anything else seeds a new one
    (validated first)."""
    if isinstance(seed, np.random.Generator):
        return seed
    check_seed(seed)
    return np.random.default_rng(seed)
