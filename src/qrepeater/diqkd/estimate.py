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

:func:`bell_test` is the acceptance test of the distillation protocol (the parties run it on
the announced settings and test outcomes): it checks the settings against the distribution
agreed before the run (:func:`check_settings`), computes the importance-weighted CHSH score the
finite-key bounds need and the per-pair estimate (:func:`chsh_statistic`), and aborts
(:class:`~qrepeater.errors.ProtocolAbort`) when any check fails.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from qrepeater.diqkd.rounds import PartyRounds, SettingDistribution
from qrepeater.errors import ParameterError, ProtocolAbort
from qrepeater.quantum.bell import TSIRELSON

__all__ = [
    "PER_PAIR_SIGMAS",
    "TSIRELSON",
    "AccumulatedEstimate",
    "BellEstimate",
    "BellTest",
    "ChshStatistic",
    "SettingsCheck",
    "accumulate",
    "bell_counts",
    "bell_test",
    "check_settings",
    "chsh_statistic",
    "estimate_bell",
]

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
    if not isinstance(alice, PartyRounds) or not isinstance(bob, PartyRounds):
        raise ParameterError("alice and bob must be PartyRounds records")
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
    """CHSH and QBER estimates of a run from Alice's and Bob's aligned records (a run without
    rounds raises :class:`~qrepeater.errors.ParameterError`; empty cells give NaN)."""
    x, y, parity = _arrays(alice, bob)
    if x.size == 0:
        raise ParameterError("cannot estimate from a run without rounds")
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


# ---- the protocol's acceptance test --------------------------------------------------------------
#: the per-pair CHSH estimate must exceed 2 by this many standard errors (a consistency guard on
#: top of the finite-key bound, which is evaluated with the importance-weighted score)
PER_PAIR_SIGMAS = 3.0
_DIST_TOL = 1e-9


def _freedman_radius(*, variance: float, jump: float, n: int, eps: float) -> float:
    """One-sided deviation ``t`` with ``P(sum_i D_i >= t) <= eps`` for ``n`` martingale
    differences with ``|D_i| <= jump`` and conditional variance ``<= variance`` each.

    Freedman's inequality (Ann. Probab. 3, 100 (1975), Thm 1.6) in its Bernstein form,
    ``exp(-t^2 / (2 (n v + jump t / 3)))``, solved for ``t``; for i.i.d. terms it is Bernstein's
    inequality (Boucheron, Lugosi & Massart, Concentration Inequalities (2013), Cor. 2.11).
    """
    log_term = math.log(1.0 / eps)
    third = jump * log_term / 3.0
    return third + math.sqrt(third * third + 2.0 * n * variance * log_term)


def _distribution_matches(a: SettingDistribution, b: SettingDistribution) -> bool:
    return all(
        abs(getattr(a, k) - getattr(b, k)) <= _DIST_TOL for k in ("p_x0", "p_y0", "p_y1", "p_y2")
    )


@dataclass(frozen=True)
class SettingsCheck:
    """Observed setting pairs against the agreed distribution.

    ``counts[x][y]`` observed and ``expected[x][y] = N p(x) p(y)`` rounds for X in {0, 1},
    Y in {0, 1, 2}; ``radius[x][y]`` the allowed two-sided deviation; ``eps`` the probability
    that settings drawn i.i.d. from the agreed distribution fail the test.
    """

    rounds: int
    eps: float
    counts: tuple[tuple[int, int, int], tuple[int, int, int]]
    expected: tuple[tuple[float, float, float], tuple[float, float, float]]
    radius: tuple[tuple[float, float, float], tuple[float, float, float]]
    passed: bool

    def worst(self) -> tuple[int, int, float]:
        """``(x, y, deviation / radius)`` of the cell farthest outside (or closest to) its
        radius."""
        best = (0, 0, -1.0)
        for x in range(2):
            for y in range(3):
                r = abs(self.counts[x][y] - self.expected[x][y]) / self.radius[x][y]
                if r > best[2]:
                    best = (x, y, r)
        return best

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict ``rounds, eps, passed, counts{n00..n12}, expected{...},
        radius{...}``."""
        cells = [(x, y) for x in range(2) for y in range(3)]
        return {
            "rounds": self.rounds,
            "eps": self.eps,
            "passed": self.passed,
            "test": "two-sided Bernstein bound per (x, y) cell, union bound over 6 cells",
            "counts": {f"n{x}{y}": self.counts[x][y] for x, y in cells},
            "expected": {f"n{x}{y}": self.expected[x][y] for x, y in cells},
            "radius": {f"n{x}{y}": self.radius[x][y] for x, y in cells},
        }


def check_settings(
    x: npt.ArrayLike, y: npt.ArrayLike, dist: SettingDistribution, *, eps: float
) -> SettingsCheck:
    """Test the observed setting pairs of all ``N`` rounds against the agreed distribution.

    Under the protocol's assumption (each party draws its setting i.i.d. from the agreed
    distribution, Zhang et al., PRL 131, 140801 (2023)), the count ``n_xy`` of every cell is
    binomial ``(N, p_xy)``, ``p_xy = p(x) p(y)``. The test accepts when, for all six cells,
    ``|n_xy - N p_xy| <= t_xy`` with ``t_xy`` Bernstein's two-sided radius at ``eps / 6`` for
    each cell (``2 exp(-t^2 / (2 (N p(1-p) + t/3)))`` per cell): an honest run fails with
    probability at most ``eps`` (union bound). A record whose settings were not drawn from the
    agreed distribution (a tampered or misconfigured run) is rejected unless its frequencies
    happen to lie within the radii; the importance weights of the CHSH score are those of the
    agreed distribution in any case, never the observed or declared ones.
    """
    if not 0.0 < eps < 1.0:
        raise ParameterError(f"eps of the settings test must lie in (0, 1), got {eps!r}")
    xs = np.asarray(x, dtype=np.intp)
    ys = np.asarray(y, dtype=np.intp)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ParameterError("settings arrays must be 1-D and of equal length")
    n = int(xs.size)
    if n == 0:
        raise ParameterError("no rounds to test the settings of")
    if np.any((xs < 0) | (xs > 1)) or np.any((ys < 0) | (ys > 2)):
        raise ProtocolAbort("settings", "a setting lies outside X in {0, 1}, Y in {0, 1, 2}")
    counts = np.bincount(xs * 3 + ys, minlength=6)[:6].reshape(2, 3)
    p = np.outer(np.array(dist.alice), np.array(dist.bob))
    log_term = math.log(2.0 * 6.0 / eps)
    expected = n * p
    var = n * p * (1.0 - p)
    third = log_term / 3.0
    radius = third + np.sqrt(third * third + 2.0 * var * log_term)
    passed = bool(np.all(np.abs(counts - expected) <= radius))

    def t3(a: npt.NDArray[Any], kind: type) -> Any:
        return tuple(tuple(kind(v) for v in row) for row in a)

    return SettingsCheck(
        rounds=n,
        eps=float(eps),
        counts=t3(counts, int),
        expected=t3(expected, float),
        radius=t3(radius, float),
        passed=passed,
    )


@dataclass(frozen=True)
class ChshStatistic:
    """The two CHSH estimates of the test rounds of a run.

    ``score``: the importance-weighted score ``(1/N) sum_i J_i`` over all ``N`` rounds,
    ``J_i = (-1)^(x y) a b / p(x, y)`` on test rounds and 0 otherwise, with the agreed ``p``:
    the statistic whose martingale concentration the finite-key bounds use
    (:func:`qrepeater.diqkd.keyrate.phase_error_key`). ``score_deviation``: Freedman's one-sided
    radius of that sum at ``eps`` (per-round variance ``<= sum_xy 1/p(x, y)``, jump
    ``<= 1/p_min + 2 sqrt 2``). ``per_pair``: ``E00 + E01 + E10 - E11`` from the per-cell
    means, with its standard error ``per_pair_std``.
    """

    rounds: int
    score: float
    score_deviation: float
    per_pair: float
    per_pair_std: float
    correlators: tuple[float, float, float, float]  # E00, E01, E10, E11
    cell_counts: tuple[int, int, int, int]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "rounds": self.rounds,
            "score": self.score,
            "score_deviation": self.score_deviation,
            "per_pair": self.per_pair,
            "per_pair_std": self.per_pair_std,
            "correlators": dict(zip(("E00", "E01", "E10", "E11"), self.correlators, strict=True)),
            "cell_counts": dict(zip(("n00", "n01", "n10", "n11"), self.cell_counts, strict=True)),
        }


def chsh_statistic(
    *,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    rounds: int,
    dist: SettingDistribution,
    eps: float,
) -> ChshStatistic:
    """Importance-weighted CHSH score and per-pair estimate of the test rounds.

    ``x, y, a, b``: settings and outcome bits of the test rounds only (``Y`` in {0, 1});
    ``rounds``: all rounds of the run (the score is normalised by it); ``dist``: the agreed
    setting distribution. A test cell without rounds aborts (``parameter_estimation``).
    """
    xs, ys = np.asarray(x, dtype=np.intp), np.asarray(y, dtype=np.intp)
    sa = 1 - 2 * np.asarray(a, dtype=np.int64)
    sb = 1 - 2 * np.asarray(b, dtype=np.int64)
    if not xs.shape == ys.shape == sa.shape == sb.shape:
        raise ParameterError("test-round settings and outcomes differ in length")
    if rounds < max(1, xs.size):
        raise ParameterError(f"rounds ({rounds}) must be >= the test rounds ({xs.size}) and > 0")
    if np.any(ys > 1) or np.any(xs > 1):
        raise ParameterError("test rounds must have X, Y in {0, 1}")
    p = np.outer(np.array(dist.alice), np.array(dist.bob)[:2])
    if np.any(p <= 0.0):
        raise ProtocolAbort("settings", "the agreed distribution gives a CHSH test pair p = 0")
    sign = np.where((xs == 1) & (ys == 1), -1, 1)
    score = float(np.sum(sign * sa * sb / p[xs, ys]) / rounds)
    p_min = float(p.min())
    deviation = _freedman_radius(
        variance=float(np.sum(1.0 / p)), jump=1.0 / p_min + TSIRELSON, n=rounds, eps=eps
    )
    per_pair, var = 0.0, 0.0
    corr: list[float] = []
    cells: list[int] = []
    for xi in (0, 1):
        for yi in (0, 1):
            m = (xs == xi) & (ys == yi)
            n = int(m.sum())
            if n == 0:
                raise ProtocolAbort("parameter_estimation", f"no test round with X={xi}, Y={yi}")
            e = float(np.mean(sa[m] * sb[m]))
            corr.append(e)
            cells.append(n)
            per_pair += (-1 if xi == yi == 1 else 1) * e
            var += (1 - e * e) / n
    return ChshStatistic(
        rounds=int(rounds),
        score=score,
        score_deviation=deviation / rounds,
        per_pair=per_pair,
        per_pair_std=math.sqrt(var),
        correlators=(corr[0], corr[1], corr[2], corr[3]),
        cell_counts=(cells[0], cells[1], cells[2], cells[3]),
    )


@dataclass(frozen=True)
class BellTest:
    """A passed acceptance test: the CHSH statistic, the settings check, and the score to give
    the finite-key bound (``bound_chsh``: the weighted score, or ``2 sqrt 2`` when the score
    lies above it by less than its statistical deviation, which can only lower the key)."""

    chsh: ChshStatistic
    settings: SettingsCheck
    bound_chsh: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "chsh": self.chsh.to_dict(),
            "settings": self.settings.to_dict(),
            "bound_chsh": self.bound_chsh,
        }


def bell_test(
    *,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    test_a: npt.ArrayLike,
    test_b: npt.ArrayLike,
    agreed: SettingDistribution,
    declared: tuple[SettingDistribution | None, SettingDistribution | None] = (None, None),
    eps: float,
) -> BellTest:
    """The protocol's acceptance test on the public settings and test outcomes; aborts on failure.

    ``x, y``: both parties' settings in every round; ``test_a, test_b``: the outcome bits of the
    test rounds (``Y`` in {0, 1}), in round order; ``agreed``: the setting distribution fixed
    before the run (protocol configuration, never taken from the records); ``declared``: the
    distributions the two records state (``None`` when they state none, e.g. external settings);
    ``eps``: error of the settings test and of the Tsirelson check.

    Aborts (:class:`~qrepeater.errors.ProtocolAbort`), in this order:

    * ``settings``: a record declares a distribution other than the agreed one, or the observed
      setting pairs fail :func:`check_settings` (probability <= ``eps`` for an honest run; the
      pipeline reserves ``eps`` from the soundness budget);
    * ``tsirelson``: the weighted score exceeds ``2 sqrt 2`` by more than its Freedman deviation
      at ``eps`` (no quantum device does this except with probability <= ``eps``: the data or
      the weights are wrong); the score is never clipped silently;
    * ``bell_violation``: the weighted score is <= 2, or the per-pair estimate is not above 2 by
      :data:`PER_PAIR_SIGMAS` standard errors (the two estimate the same S under the protocol's
      assumptions, so disagreement means the records cannot be trusted).
    """
    if not isinstance(agreed, SettingDistribution):
        raise ParameterError("the agreed setting distribution must be a SettingDistribution")
    for who, d in zip(("alice", "bob"), declared, strict=True):
        if d is not None and not _distribution_matches(d, agreed):
            raise ProtocolAbort(
                "settings",
                f"{who}'s record declares the setting distribution {d.to_dict()}, the protocol "
                f"agreed {agreed.to_dict()}",
            )
    xs, ys = np.asarray(x, dtype=np.uint8), np.asarray(y, dtype=np.uint8)
    check = check_settings(xs, ys, agreed, eps=eps)
    if not check.passed:
        cx, cy, ratio = check.worst()
        raise ProtocolAbort(
            "settings",
            f"observed settings do not follow the agreed distribution: {check.counts[cx][cy]} "
            f"rounds with X={cx}, Y={cy}, expected {check.expected[cx][cy]:.0f} +- "
            f"{check.radius[cx][cy]:.0f} (test error {eps:.2g}; {ratio:.1f}x the radius)",
        )
    tm = ys < 2
    stat = chsh_statistic(
        x=xs[tm], y=ys[tm], a=test_a, b=test_b, rounds=int(xs.size), dist=agreed, eps=eps
    )
    details = {
        "chsh": stat.score,
        "chsh_std": stat.per_pair_std,
        "chsh_per_pair": stat.per_pair,
        "chsh_deviation": stat.score_deviation,
        "settings_test": check.to_dict(),
    }
    if not math.isfinite(stat.score) or stat.score > TSIRELSON + stat.score_deviation:
        raise ProtocolAbort(
            "tsirelson",
            f"weighted CHSH score {stat.score:.4f} exceeds Tsirelson's bound 2*sqrt(2) by more "
            f"than its statistical deviation {stat.score_deviation:.4f}",
            details=details,
        )
    if stat.score <= 2.0:
        raise ProtocolAbort(
            "bell_violation",
            f"CHSH score {stat.score:.4f} does not violate the bound 2",
            details=details,
        )
    if stat.per_pair <= 2.0 + PER_PAIR_SIGMAS * stat.per_pair_std:
        raise ProtocolAbort(
            "bell_violation",
            f"per-pair CHSH estimate {stat.per_pair:.4f} +- {stat.per_pair_std:.4f} is not above "
            f"2 by {PER_PAIR_SIGMAS:g} standard errors (weighted score {stat.score:.4f})",
            details=details,
        )
    return BellTest(chsh=stat, settings=check, bound_chsh=min(stat.score, TSIRELSON))
