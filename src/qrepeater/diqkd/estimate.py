"""Bell-test and key-round estimates from the two parties' aligned round records.

With outcome bit 0 <-> eigenvalue +1, a round contributes ``(-1)^(a XOR b)`` to the correlator
of its settings; ``E_xy = (n_same - n_diff) / n_xy`` and the CHSH value (Clauser et al.,
PRL 23, 880 (1969)) is ``S = E00 + E01 + E10 - E11``. Each ``E_xy`` is the mean of ``n_xy``
+-1 variables, so ``Var(E_xy) = (1 - E_xy^2) / n_xy`` and, the four being independent,
``sigma_S^2 = sum_xy (1 - E_xy^2) / n_xy``. The QBER is the fraction of key rounds
(``X = 0, Y = 2``) with ``a != b``, ``sigma_Q^2 = Q (1 - Q) / n_key`` (binomial). These are the
one-standard-deviation error bars the paper quotes (Liu et al. 2025, Fig. 4c: S = 2.5758(59),
Q = 0.0360(6) at 10 km).

:func:`accumulate` gives the same estimates on every prefix of the run at chosen checkpoints
(cumulative sums of per-cell counts), against rounds and against herald time: the data of the
paper's Fig. 4c. Inputs are assumed aligned (:func:`qrepeater.diqkd.records.read_run` checks
that); here only lengths are checked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from qrepeater.diqkd.rounds import PartyRounds
from qrepeater.errors import ParameterError

__all__ = ["AccumulatedEstimate", "BellEstimate", "accumulate", "bell_counts", "estimate_bell"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
_CHSH_SIGN = np.array([[1.0, 1.0], [1.0, -1.0]])


def _ratio(num: F64 | float, den: F64 | float) -> F64:
    n = np.asarray(num, dtype=np.float64)
    d = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(n, d).shape, np.nan)
    np.divide(n, d, out=out, where=d > 0)
    return out


def _arrays(
    alice: PartyRounds, bob: PartyRounds
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    if len(alice) != len(bob):
        raise ParameterError(f"Alice has {len(alice)} rounds and Bob {len(bob)}")
    if alice.party != "alice" or bob.party != "bob":
        raise ParameterError("pass Alice's record first and Bob's second")
    return alice.setting, bob.setting, alice.outcome ^ bob.outcome


def bell_counts(
    *, x: npt.ArrayLike, y: npt.ArrayLike, a: npt.ArrayLike, b: npt.ArrayLike
) -> npt.NDArray[np.int64]:
    """Counts ``n[x, y, a XOR b]`` (shape (2, 3, 2)) of settings and outcome parity."""
    xs, ys = np.asarray(x, dtype=np.intp), np.asarray(y, dtype=np.intp)
    parity = np.asarray(a, dtype=np.intp) ^ np.asarray(b, dtype=np.intp)
    if not xs.shape == ys.shape == parity.shape:
        raise ParameterError("settings and outcome arrays differ in shape")
    code = (xs * 3 + ys) * 2 + parity
    return np.bincount(code.ravel(), minlength=12)[:12].reshape(2, 3, 2).astype(np.int64)


@dataclass(frozen=True)
class BellEstimate:
    """CHSH value and QBER with standard errors, correlators and round counts.

    ``correlators[x][y]`` and ``counts[x][y]`` for x in {0, 1}, y in {0, 1} (CHSH) and
    ``counts[x][2]`` for the key / discarded rounds; undefined estimates are NaN.
    """

    rounds: int
    key_rounds: int
    test_rounds: int
    discarded_rounds: int
    key_errors: int
    chsh: float
    chsh_std: float
    qber: float
    qber_std: float
    correlators: tuple[tuple[float, float], tuple[float, float]]
    correlator_std: tuple[tuple[float, float], tuple[float, float]]
    counts: tuple[tuple[int, int, int], tuple[int, int, int]]

    @classmethod
    def from_counts(cls, n: npt.NDArray[np.int64]) -> BellEstimate:
        """Estimate from :func:`bell_counts`."""
        cnt = np.asarray(n, dtype=np.int64).reshape(2, 3, 2)
        tot = cnt.sum(axis=2)
        e = _ratio((cnt[:, :2, 0] - cnt[:, :2, 1]).astype(float), tot[:, :2].astype(float))
        var_e = _ratio(1.0 - e**2, tot[:, :2].astype(float))
        n_key = int(tot[0, 2])
        q = float(_ratio(float(cnt[0, 2, 1]), float(n_key)))
        return cls(
            rounds=int(tot.sum()),
            key_rounds=n_key,
            test_rounds=int(tot[:, :2].sum()),
            discarded_rounds=int(tot[1, 2]),
            key_errors=int(cnt[0, 2, 1]),
            chsh=float((_CHSH_SIGN * e).sum()),
            chsh_std=float(math.sqrt(var_e.sum())) if np.all(np.isfinite(var_e)) else math.nan,
            qber=q,
            qber_std=math.sqrt(q * (1 - q) / n_key) if n_key else math.nan,
            correlators=((float(e[0, 0]), float(e[0, 1])), (float(e[1, 0]), float(e[1, 1]))),
            correlator_std=(
                (math.sqrt(var_e[0, 0]), math.sqrt(var_e[0, 1])),
                (math.sqrt(var_e[1, 0]), math.sqrt(var_e[1, 1])),
            ),
            counts=(
                (int(tot[0, 0]), int(tot[0, 1]), int(tot[0, 2])),
                (int(tot[1, 0]), int(tot[1, 1]), int(tot[1, 2])),
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``rounds, key_rounds, test_rounds, discarded_rounds, key_errors,
        chsh, chsh_std, qber, qber_std, correlators{E00..E11}, correlator_std{...},
        counts{n00..n12}``."""
        return {
            "rounds": self.rounds,
            "key_rounds": self.key_rounds,
            "test_rounds": self.test_rounds,
            "discarded_rounds": self.discarded_rounds,
            "key_errors": self.key_errors,
            "chsh": self.chsh,
            "chsh_std": self.chsh_std,
            "qber": self.qber,
            "qber_std": self.qber_std,
            "correlators": {f"E{x}{y}": self.correlators[x][y] for x in range(2) for y in range(2)},
            "correlator_std": {
                f"E{x}{y}": self.correlator_std[x][y] for x in range(2) for y in range(2)
            },
            "counts": {f"n{x}{y}": self.counts[x][y] for x in range(2) for y in range(3)},
        }


def estimate_bell(alice: PartyRounds, bob: PartyRounds) -> BellEstimate:
    """CHSH and QBER estimates of a run from Alice's and Bob's aligned records."""
    x, y, parity = _arrays(alice, bob)
    return BellEstimate.from_counts(bell_counts(x=x, y=y, a=parity, b=np.zeros_like(parity)))


@dataclass(frozen=True, eq=False)
class AccumulatedEstimate:
    """S and QBER with one-sigma errors on the first ``rounds[i]`` rounds (herald time
    ``time_s[i]`` of the last of them), for each checkpoint ``i``; NaN where undefined."""

    rounds: I64
    time_s: F64
    chsh: F64
    chsh_std: F64
    qber: F64
    qber_std: F64
    key_rounds: I64
    test_rounds: I64

    def to_dict(self) -> dict[str, list[float] | list[int]]:
        """JSON-ready dict of lists, one entry per checkpoint."""
        return {
            name: getattr(self, name).tolist()
            for name in (
                "rounds",
                "time_s",
                "chsh",
                "chsh_std",
                "qber",
                "qber_std",
                "key_rounds",
                "test_rounds",
            )
        }


def accumulate(
    alice: PartyRounds,
    bob: PartyRounds,
    *,
    points: int = 200,
    axis: Literal["rounds", "time"] = "rounds",
) -> AccumulatedEstimate:
    """Cumulative S and QBER at ``points`` checkpoints evenly spaced in rounds or in time.

    ``axis="rounds"``: after ``ceil(k N / points)`` rounds, ``k = 1..points``; ``axis="time"``:
    after every herald up to ``k T / points`` with ``T`` the last herald time (checkpoints that
    add no round are dropped).
    """
    if isinstance(points, bool) or not isinstance(points, int) or points < 1:
        raise ParameterError(f"points must be a positive integer, got {points!r}")
    x, y, parity = _arrays(alice, bob)
    n = x.size
    if n == 0:
        raise ParameterError("cannot accumulate an empty run")
    if axis == "rounds":
        ends = np.unique(np.ceil(np.arange(1, points + 1) * (n / points)).astype(np.int64))
    elif axis == "time":
        t = alice.time_s
        grid = t[0] + (t[-1] - t[0]) * np.arange(1, points + 1) / points
        grid[-1] = t[-1]
        ends = np.unique(np.searchsorted(t, grid, side="right").astype(np.int64))
        ends = ends[ends > 0]
    else:
        raise ParameterError(f"axis must be 'rounds' or 'time', got {axis!r}")
    idx = ends - 1
    cell = x.astype(np.intp) * 3 + y
    sign = 1 - 2 * parity.astype(np.int64)
    e_num = np.empty((2, 2, idx.size))
    n_xy = np.empty((2, 2, idx.size))
    for xs in range(2):
        for ys in range(2):
            hit = cell == xs * 3 + ys
            n_xy[xs, ys] = np.cumsum(hit, dtype=np.int64)[idx]
            e_num[xs, ys] = np.cumsum(np.where(hit, sign, 0))[idx]
    key = cell == 2
    n_key = np.cumsum(key, dtype=np.int64)[idx]
    n_err = np.cumsum(key & (parity == 1), dtype=np.int64)[idx]
    e = _ratio(e_num, n_xy)
    var = _ratio(1.0 - e**2, n_xy).sum(axis=(0, 1))
    q = _ratio(n_err.astype(float), n_key.astype(float))
    return AccumulatedEstimate(
        rounds=ends,
        time_s=alice.time_s[idx].astype(np.float64),
        chsh=(_CHSH_SIGN[:, :, None] * e).sum(axis=(0, 1)),
        chsh_std=np.sqrt(var),
        qber=q,
        qber_std=np.sqrt(_ratio(q * (1 - q), n_key.astype(float))),
        key_rounds=n_key,
        test_rounds=n_xy.sum(axis=(0, 1)).astype(np.int64),
    )
