"""QKD-grade LDPC parity-check matrices for syndrome-based reconciliation on the BSC.

Construction (deterministic from ``(rate, block length, seed)``):

1. **Degree distribution.** Irregular edge-perspective pairs ``(lambda, rho)`` optimised for the
   binary symmetric channel by discretised density evolution, Table I of D. Elkouss,
   A. Leverrier, R. Alleaume, J. J. Boutros, "Efficient reconciliation protocol for
   discrete-variable quantum key distribution", Proc. IEEE ISIT 2009, pp. 1879-1883
   (arXiv:0901.2140), rates 0.50 ... 0.90 in steps of 0.05 (:data:`ELKOUSS2009`). The
   coefficients are stored as published except one: the printed rate-0.85 coefficient
   ``0.094274 x^4`` makes lambda sum to 1.0515; ``0.04274`` restores sum(lambda) = 1 and the
   design rate 0.849, so we use that value. The default family has rates 0.50 ... 0.90 in steps
   of 0.01: other rates keep the nearest entry's lambda with a check-concentrated rho
   (:func:`rate_shifted`, not re-optimised), and the published rate-0.90 entry is replaced by the
   rate-0.85 lambda (:data:`DEFAULT_DISTRIBUTIONS` says why).
2. **Protograph by progressive edge growth.** A base Tanner graph of at most ``base_max``
   (1 200) variable nodes is grown edge by edge with PEG (X.-Y. Hu, E. Eleftheriou,
   D. M. Arnold, IEEE Trans. Inf. Theory 51, 386 (2005)): variable nodes in order of
   non-decreasing degree, each new edge to a check node at maximal distance in the current graph
   (breadth-first search on bit-packed adjacency), ties broken by the largest remaining check
   degree (the target check degrees follow rho) and then at random.
3. **Quasi-cyclic lifting.** Every base edge becomes a ``Z x Z`` circulant permutation; the
   shifts are drawn at random among the values that close the fewest length-4 cycles, most
   constrained edges first, then repaired by min-conflicts search until no 4-cycle is left (a
   base 4-cycle ``c1 v1 c2 v2`` lifts to 4-cycles iff
   ``s(c1,v1) - s(c2,v1) + s(c2,v2) - s(c1,v2) = 0 mod Z``; M. P. C. Fossorier,
   IEEE Trans. Inf. Theory 50, 1788 (2004)). The lifted code keeps the base degree profile
   exactly, is free of 4-cycles, and is expanded in O(edges) numpy operations, so n = 1e6 takes
   2-3 s. Lengths that are not ``n_base * Z`` drop the last (highest-degree) columns.
4. **Untainted puncturing order.** For rate adaptation, symbols that may be punctured are
   chosen so that no check node has more than one punctured neighbour ("untainted" symbols,
   D. Elkouss, J. Martinez-Mateo, V. Martin, "Untainted puncturing for irregular low-density
   parity-check codes", IEEE Wireless Commun. Lett. 1, 585 (2012)), lowest degrees first.
   Each such symbol owns a *pivot* check (its first neighbour) that no other punctured symbol
   touches, which is what :mod:`qrepeater.qkdpp.reconciliation` uses to send one syndrome bit less
   per punctured symbol.

Codes are cached on disk as ``.npz`` (base graph, circulant shifts and puncturing order; the
sparse matrix is re-expanded on load) in ``$QREPEATER_CACHE`` or ``~/.cache/qrepeater/codes``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from qrepeater.errors import ReconciliationError

__all__ = [
    "DEFAULT_DISTRIBUTIONS",
    "DEFAULT_RATES",
    "ELKOUSS2009",
    "SHORT_DEGREE_CAPS",
    "CodeFamily",
    "DegreeDistribution",
    "LdpcCode",
    "build_code",
    "capped",
    "default_cache_dir",
    "extended",
    "four_cycle_count",
    "node_degrees",
    "rate_shifted",
    "short_degree_cap",
    "short_family",
]

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]

#: Bumped whenever the construction changes, so stale cache files are never reused.
CONSTRUCTION_VERSION: Final = 1
_BIG: Final = 1 << 30


@dataclass(frozen=True)
class DegreeDistribution:
    """Edge-perspective degree distribution ``lambda(x), rho(x)`` of an LDPC ensemble.

    ``lam`` and ``rho`` are ``((degree, fraction of edges), ...)``; ``threshold`` is the
    published BP threshold on the BSC (crossover probability), ``source`` the citation.
    """

    rate: float
    threshold: float
    lam: tuple[tuple[int, float], ...]
    rho: tuple[tuple[int, float], ...]
    source: str = ""

    def __post_init__(self) -> None:
        for name, dist in (("lam", self.lam), ("rho", self.rho)):
            if not dist or any(d < 1 or w < 0 for d, w in dist):
                raise ReconciliationError(f"invalid {name} in degree distribution: {dist}")
        if not 0.0 < self.rate < 1.0:
            raise ReconciliationError(f"design rate must be in (0, 1), got {self.rate}")

    @staticmethod
    def _node_fractions(dist: tuple[tuple[int, float], ...]) -> dict[int, float]:
        total = sum(w / d for d, w in dist)
        return {d: (w / d) / total for d, w in dist}

    def variable_node_fractions(self) -> dict[int, float]:
        """Fraction of variable *nodes* of each degree (node perspective)."""
        return self._node_fractions(self.lam)

    def check_node_fractions(self) -> dict[int, float]:
        """Fraction of check *nodes* of each degree (node perspective)."""
        return self._node_fractions(self.rho)

    @property
    def ensemble_rate(self) -> float:
        """``1 - int(rho)/int(lambda)`` from the normalised coefficients."""
        lam = sum(w for _, w in self.lam)
        rho = sum(w for _, w in self.rho)
        a = sum(w / d for d, w in self.lam) / lam
        b = sum(w / d for d, w in self.rho) / rho
        return 1.0 - b / a

    @property
    def max_variable_degree(self) -> int:
        return max(d for d, _ in self.lam)


def _dd(
    rate: float, thr: float, lam: dict[int, float], rho: dict[int, float]
) -> DegreeDistribution:
    # Table entries are written as polynomials in x; degree = exponent + 1.
    return DegreeDistribution(
        rate=rate,
        threshold=thr,
        lam=tuple(sorted(lam.items())),
        rho=tuple(sorted(rho.items())),
        source="Elkouss, Leverrier, Alleaume, Boutros, ISIT 2009, Table I",
    )


#: Table I of Elkouss et al., ISIT 2009 (arXiv:0901.2140), keyed by design rate.
ELKOUSS2009: Final[Mapping[float, DegreeDistribution]] = {
    0.50: _dd(
        0.50,
        0.1071,
        {
            2: 0.14438, 3: 0.19026, 4: 0.01836, 5: 0.00233, 6: 0.04697, 8: 0.053943,
            9: 0.05590, 10: 0.01290, 11: 0.00162, 14: 0.06159, 15: 0.13115, 17: 0.01481,
            47: 0.00879, 49: 0.00650, 55: 0.00210, 56: 0.00099, 57: 0.11178, 58: 0.06238,
            59: 0.05094, 66: 0.02230,
        },
        {10: 0.47575, 12: 0.46847, 13: 0.02952, 14: 0.02626},
    ),
    0.55: _dd(
        0.55,
        0.0904,
        {2: 0.16880, 3: 0.20994, 6: 0.18095, 15: 0.03846, 16: 0.02635, 18: 0.23454,
         19: 0.05815, 31: 0.08280},
        {10: 0.27631, 11: 0.72369},
    ),
    0.60: _dd(
        0.60,
        0.0766,
        {2: 0.11040, 3: 0.20804, 8: 0.14163, 9: 0.14858, 26: 0.14438, 27: 0.08909,
         46: 0.00748, 71: 0.15038},
        {2: 0.00036, 10: 0.13063, 13: 0.31068, 18: 0.49341, 19: 0.064915},
    ),
    0.65: _dd(
        0.65,
        0.0633,
        {2: 0.10451, 3: 0.15652, 4: 0.08057, 5: 0.00056, 9: 0.12151, 13: 0.10485,
         15: 0.10719, 21: 0.00771, 51: 0.31656},
        {2: 0.000578, 15: 0.06089, 16: 0.47001, 21: 0.46852},
    ),
    0.70: _dd(
        0.70,
        0.0504,
        {2: 0.05343, 3: 0.29406, 6: 0.00896, 9: 0.15571, 12: 0.12189, 25: 0.19872,
         46: 0.09572, 62: 0.02741, 65: 0.04056, 73: 0.00354},
        {20: 0.76922, 21: 0.23077},
    ),
    0.75: _dd(
        0.75,
        0.0392,
        {2: 0.10805, 3: 0.09511, 4: 0.01449, 5: 0.13764, 6: 0.10667, 7: 0.05288,
         28: 0.01107, 31: 0.47408},
        {25: 0.74161, 26: 0.25839},
    ),
    0.80: _dd(
        0.80,
        0.0298,
        {2: 0.09420, 3: 0.18088, 6: 0.11972, 7: 0.08550, 8: 0.09816, 17: 0.07194,
         26: 0.34960},
        {29: 0.58807, 30: 0.41193},
    ),
    0.85: _dd(
        0.85,
        0.0199,
        # 0.04274 x^4: the printed 0.094274 is a typo (see module docstring).
        {2: 0.04528, 3: 0.20537, 4: 0.05878, 5: 0.04274, 6: 0.08454, 7: 0.01176,
         9: 0.05137, 21: 0.50015},
        {41: 0.54204, 42: 0.45795},
    ),
    0.90: _dd(
        0.90,
        0.0109,
        {2: 0.07689, 3: 0.28096, 5: 0.08933, 9: 0.19620, 12: 0.30631, 21: 0.05031},
        {50: 0.95025, 51: 0.04975},
    ),
}  # fmt: skip


def rate_shifted(dist: DegreeDistribution, rate: float) -> DegreeDistribution:
    """``dist`` moved to another design ``rate``: same ``lambda``, check-concentrated ``rho``.

    The check degrees take the two integers around the mean ``d_c = d_v / (1 - rate)``, the
    concentrated form that is close to optimal for a given ``lambda`` (S.-Y. Chung et al., IEEE
    Commun. Lett. 5, 58 (2001)). These intermediate-rate ensembles are *not* re-optimised by
    density evolution; they fill the 0.05 gaps of the published table so that rate adaptation
    needs little puncturing and shortening.
    """
    if not 0.0 < rate < 1.0:
        raise ReconciliationError(f"rate must be in (0, 1), got {rate}")
    a = sum(w / d for d, w in dist.lam) / sum(w for _, w in dist.lam)
    dc = 1.0 / ((1.0 - rate) * a)
    lo = int(np.floor(dc))
    t = dc - lo
    pairs = ((lo, (1.0 - t) * lo / dc), (lo + 1, t * (lo + 1) / dc))
    rho = tuple((d, w) for d, w in pairs if w > 0)
    return DegreeDistribution(
        rate=rate,
        threshold=float("nan"),
        lam=dist.lam,
        rho=rho,
        source=f"lambda of rate {dist.rate} ({dist.source}); concentrated rho for rate {rate}",
    )


def capped(dist: DegreeDistribution, max_degree: int) -> DegreeDistribution:
    """``dist`` with variable degrees above ``max_degree`` merged into ``max_degree``.

    The edge fractions of the higher degrees are given to ``max_degree`` and ``rho`` is
    re-concentrated for the design rate (:func:`rate_shifted`). The result is *not* optimised
    by density evolution: its threshold is worse than the published one, but its graphs are
    sparse enough to be free of 4-cycles at the short block lengths (1k-15k) that a capped
    maximum degree allows, where the published distributions (degrees up to 71) cannot be
    built at all.
    """
    if max_degree < 2:
        raise ReconciliationError(f"max_degree must be >= 2, got {max_degree}")
    lam: dict[int, float] = {}
    for d, w in dist.lam:
        k = min(d, max_degree)
        lam[k] = lam.get(k, 0.0) + w
    merged = DegreeDistribution(
        rate=dist.rate,
        threshold=float("nan"),
        lam=tuple(sorted(lam.items())),
        rho=dist.rho,
        source=f"{dist.source}; variable degrees capped at {max_degree}",
    )
    return rate_shifted(merged, dist.rate)


#: Default family rates: 0.50 ... 0.90 in steps of 0.01 (published entries every 0.05, the
#: others from :func:`rate_shifted`).
DEFAULT_RATES: Final[tuple[float, ...]] = tuple(round(0.50 + 0.01 * k, 2) for k in range(41))

#: Distributions the default family starts from: Table I without its rate-0.90 entry. Codes
#: built from that entry (threshold 0.0109, i.e. 15% above the Shannon limit) showed a high
#: error floor (frame errors at f = 1.35, n = 3e4); rates above 0.85 use the rate-0.85
#: ``lambda`` moved to the rate instead, which decoded every frame down to f = 1.24.
DEFAULT_DISTRIBUTIONS: Final[Mapping[float, DegreeDistribution]] = {
    r: d for r, d in ELKOUSS2009.items() if r != 0.90
}


#: Maximum variable degree of the short-block family by block length: ``(below length, cap)``.
#: Measured at Q = 3.6% (blind protocol, 10 keys each, ``benchmarks/bench_reconcile.py``):
#: lower caps build and decode better at 1k-4k, higher ones at 6k-15k.
SHORT_DEGREE_CAPS: Final[tuple[tuple[int, int], ...]] = ((3_000, 12), (6_000, 16), (1 << 62, 20))


def short_degree_cap(block_length: int) -> int:
    """The short family's default variable-degree cap for a length (:data:`SHORT_DEGREE_CAPS`)."""
    return next(c for limit, c in SHORT_DEGREE_CAPS if int(block_length) < limit)


def short_family(block_length: int, *, max_degree: int | None = None) -> CodeFamily:
    """The short-block code family for frames of about ``block_length`` symbols (1k-15k).

    The published distributions with variable degrees capped (:func:`capped`, at
    ``max_degree`` or by default the cap of :data:`SHORT_DEGREE_CAPS` for the length),
    protographs of at most 1 200 nodes lifted by circulants as small as 4 (the default family
    needs 20), so that 4-cycle-free codes exist from about 1 000 symbols on. A lower cap lowers
    the check-pair load, so higher rates become buildable at a given length (at a worse
    threshold). Deterministic in its arguments (both parties derive the same family).
    """
    cap = short_degree_cap(block_length) if max_degree is None else int(max_degree)
    if cap < 2:
        raise ReconciliationError(f"max_degree must be >= 2, got {cap}")
    return CodeFamily(
        name=f"short-d{cap}-qc",
        lift_min=4,
        distributions={r: capped(d, cap) for r, d in DEFAULT_DISTRIBUTIONS.items()},
    )


def _round_counts(fractions: Mapping[int, float], total: int) -> dict[int, int]:
    """Largest-remainder rounding of ``fractions * total`` to integers summing to ``total``."""
    degs = sorted(fractions)
    raw = np.array([fractions[d] * total for d in degs])
    counts = np.floor(raw).astype(np.int64)
    short = total - int(counts.sum())
    if short > 0:
        counts[np.argsort(-(raw - counts), kind="stable")[:short]] += 1
    return {d: int(c) for d, c in zip(degs, counts, strict=True) if c > 0}


def node_degrees(dist: DegreeDistribution, *, n: int, m: int) -> tuple[I64, I64]:
    """Variable and check node degrees for ``n`` variables and ``m`` checks.

    Variable degrees follow ``lambda`` (node perspective, largest-remainder rounding); check
    degrees follow ``rho`` and are then nudged by one, on as few checks as possible, so that both
    sides carry the same number of edges. Returned sorted ascending.
    """
    if n < 2 or m < 1 or m >= n:
        raise ReconciliationError(f"need 1 <= m < n, got n={n}, m={m}")
    vc = _round_counts(dist.variable_node_fractions(), n)
    var = np.repeat(np.array(list(vc), dtype=np.int64), list(vc.values()))
    if var.max() > m:
        raise ReconciliationError(
            f"variable degree {var.max()} exceeds the {m} checks of a length-{n} base graph"
        )
    cc = _round_counts(dist.check_node_fractions(), m)
    chk = np.repeat(np.array(list(cc), dtype=np.int64), list(cc.values()))
    diff = int(var.sum() - chk.sum())
    # Spread the edge difference over the checks, one edge each, most common degree first.
    order = np.argsort(-chk, kind="stable") if diff < 0 else np.argsort(chk, kind="stable")
    step = 1 if diff > 0 else -1
    k = 0
    while diff != 0:
        i = order[k % m]
        if step > 0 or chk[i] > 2:
            chk[i] += step
            diff -= step
        k += 1
    if chk.max() > n:
        raise ReconciliationError(f"check degree {chk.max()} exceeds n={n}")
    return np.sort(var), np.sort(chk)


def _setbit(arr: U8, row: int, col: int) -> None:
    arr[row, col >> 3] |= np.uint8(0x80 >> (col & 7))


def _peg(var_deg: I64, chk_deg: I64, rng: np.random.Generator) -> tuple[I64, I64]:
    """Progressive edge growth (Hu, Eleftheriou, Arnold 2005) with target check degrees.

    Returns edge lists ``(check, variable)``. Variables are processed in the given order
    (ascending degree); each edge goes to a check with remaining capacity at maximal BFS distance
    from the variable (unreachable counts as infinite), then largest remaining capacity, then
    uniformly at random.
    """
    n, m = len(var_deg), len(chk_deg)
    cv = np.zeros((m, (n + 7) // 8), dtype=np.uint8)  # check -> variables bitset
    vc = np.zeros((n, (m + 7) // 8), dtype=np.uint8)  # variable -> checks bitset
    cap = chk_deg.astype(np.int64).copy()
    rows: list[int] = []
    cols: list[int] = []
    for v in range(n):
        mine: list[int] = []
        for k in range(int(var_deg[v])):
            depth = np.full(m, _BIG, dtype=np.int64)
            if k > 0:
                frontier = np.array(mine, dtype=np.int64)
                depth[frontier] = 0
                seen_c = vc[v].copy()
                seen_v = np.zeros((n + 7) // 8, dtype=np.uint8)
                level = 0
                while frontier.size:
                    vmask = np.bitwise_or.reduce(cv[frontier], axis=0) & ~seen_v
                    seen_v |= vmask
                    vidx = np.flatnonzero(np.unpackbits(vmask, count=n))
                    if vidx.size == 0:
                        break
                    cmask = np.bitwise_or.reduce(vc[vidx], axis=0) & ~seen_c
                    seen_c |= cmask
                    frontier = np.flatnonzero(np.unpackbits(cmask, count=m))
                    level += 1
                    depth[frontier] = level
            ok = cap > 0
            ok[mine] = False
            if not ok.any():
                raise ReconciliationError("PEG ran out of check capacity (degree mismatch)")
            cand = np.flatnonzero(ok)
            dsel = depth[cand]
            cand = cand[dsel == dsel.max()]
            csel = cap[cand]
            cand = cand[csel == csel.max()]
            c = int(cand[rng.integers(cand.size)])
            mine.append(c)
            cap[c] -= 1
            _setbit(cv, c, v)
            _setbit(vc, v, c)
            rows.append(c)
            cols.append(v)
    return np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64)


def _lift_shifts(
    rows: I64,
    cols: I64,
    *,
    m: int,
    n: int,
    z: int,
    rng: np.random.Generator,
    max_moves: int,
) -> I64 | None:
    """Circulant shifts for the base edges such that the Z-lift has no 4-cycles.

    Greedy over the edges of the highest-degree variables first (the most constrained), each
    shift drawn uniformly among the values closing the fewest 4-cycles with already assigned
    edges; then min-conflicts local search on the edges still in a 4-cycle. Returns ``None`` if
    4-cycles remain after ``max_moves`` reassignments.
    """
    shift = np.full((m, n), -1, dtype=np.int64)
    by_var: list[list[int]] = [[] for _ in range(n)]
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        by_var[c].append(r)
    adj = [np.array(a, dtype=np.int64) for a in by_var]
    edge_id = {(int(r), int(c)): e for e, (r, c) in enumerate(zip(rows, cols, strict=True))}

    def conflicts(c: int, v: int) -> tuple[I64, I64, I64, I64]:
        """Per shift value, the number of 4-cycles edge (c, v) would close; and the cycles."""
        others = adj[v][adj[v] != c]
        others = others[shift[others, v] >= 0]
        if others.size == 0:
            empty = np.zeros(0, dtype=np.int64)
            return np.zeros(z, dtype=np.int64), empty, empty, empty
        sub = shift[others]
        valid = (sub >= 0) & (shift[c] >= 0)[None, :]
        valid[:, v] = False
        vals = (shift[c][None, :] - sub + shift[others, v][:, None]) % z
        i, j = np.nonzero(valid)
        closing = vals[i, j]
        return np.bincount(closing, minlength=z), closing, others[i], j.astype(np.int64)

    deg = np.bincount(cols, minlength=n)
    order = rng.permutation(rows.size)
    order = order[np.argsort(-deg[cols[order]], kind="stable")]
    for e in order.tolist():
        c, v = int(rows[e]), int(cols[e])
        cnt = conflicts(c, v)[0]
        best = np.flatnonzero(cnt == cnt.min())
        shift[c, v] = best[rng.integers(best.size)]
    bad = [
        e
        for e in range(rows.size)
        if conflicts(int(rows[e]), int(cols[e]))[0][shift[rows[e], cols[e]]] > 0
    ]
    pending = set(bad)
    moves = 0
    while pending:
        if moves >= max_moves:
            return None
        e = sorted(pending)[int(rng.integers(len(pending)))]
        pending.discard(e)
        c, v = int(rows[e]), int(cols[e])
        shift[c, v] = -1
        cnt, closing, c2, v2 = conflicts(c, v)
        best = np.flatnonzero(cnt == cnt.min())
        s = int(best[rng.integers(best.size)])
        shift[c, v] = s
        moves += 1
        if cnt[s] > 0:
            pending.add(e)
            for a, b in zip(c2[closing == s].tolist(), v2[closing == s].tolist(), strict=True):
                pending.update((edge_id[(c, b)], edge_id[(a, b)], edge_id[(a, v)]))
    return shift[rows, cols]


def _expand(
    rows: I64, cols: I64, shifts: I64, *, m: int, n: int, z: int, n_out: int
) -> sp.csr_matrix:
    """Lifted ``(m z) x n_out`` matrix; columns beyond ``n_out`` (the tail of the last base
    columns, i.e. the highest-degree ones) are dropped so any block length is reachable."""
    i = np.arange(z, dtype=np.int64)
    r = (rows[:, None] * z + i[None, :]).ravel()
    c = (cols[:, None] * z + (i[None, :] + shifts[:, None]) % z).ravel()
    keep = c < n_out
    H = sp.csr_matrix(
        (np.ones(int(keep.sum()), dtype=np.uint8), (r[keep], c[keep])),
        shape=(m * z, n_out),
        dtype=np.uint8,
    )
    H.sort_indices()
    return H


def _untainted_order(H: sp.csr_matrix, rng: np.random.Generator, max_degree: int) -> I64:
    """Greedy maximal set of untainted symbols, lowest degree first, in selection order.

    A symbol is untainted when none of its checks already has a punctured neighbour (Elkouss,
    Martinez-Mateo, Martin 2012). Within a degree class the selection is a randomised maximal
    independent set (Luby rounds), which any prefix of the returned order preserves.
    """
    Hc = H.tocsc()
    m = int(H.shape[0])
    deg = np.diff(Hc.indptr)
    tainted = np.zeros(m, dtype=bool)
    order: list[I64] = []
    for d in range(1, max_degree + 1):
        cand = np.flatnonzero(deg == d)
        while cand.size:
            edges_c = Hc.indices[(Hc.indptr[cand][:, None] + np.arange(d)[None, :])]
            keep = ~tainted[edges_c].any(axis=1)
            cand, edges_c = cand[keep], edges_c[keep]
            if cand.size == 0:
                break
            pri = rng.random(cand.size)
            best = np.full(m, -1.0)
            np.maximum.at(best, edges_c.ravel(), np.repeat(pri, d))
            win = np.all(best[edges_c] == pri[:, None], axis=1)
            chosen = cand[win]
            order.append(chosen[np.argsort(-pri[win], kind="stable")])
            tainted[edges_c[win].ravel()] = True
            cand, edges_c = cand[~win], edges_c[~win]
    return np.concatenate(order) if order else np.zeros(0, dtype=np.int64)


def four_cycle_count(H: sp.spmatrix) -> int:
    """Number of length-4 cycles of the Tanner graph of ``H`` (pairs of columns sharing two
    or more rows, counted with multiplicity ``C(k, 2)``)."""
    A = sp.csc_matrix(H, dtype=np.int64)
    A.data[:] = 1
    G = (A.T @ A).tocoo()
    off = G.row < G.col
    k = G.data[off]
    return int((k * (k - 1) // 2).sum())


@dataclass(frozen=True, eq=False)
class LdpcCode:
    """A parity-check matrix with the metadata needed to use and reproduce it.

    ``H`` is ``m x n`` CSR ``uint8``, the ``lift``-fold circulant lift of the base graph
    ``(base_rows, base_cols)`` of shape ``base_shape`` with ``shifts``, truncated to ``n``
    columns. ``puncture_order`` lists untainted symbols (any prefix may be punctured);
    :attr:`pivots` gives the check reserved for each of them.
    """

    H: sp.csr_matrix
    rate: float
    seed: int
    lift: int
    base_shape: tuple[int, int]
    base_rows: I64
    base_cols: I64
    shifts: I64
    puncture_order: I64
    family: str = ""

    @property
    def n(self) -> int:
        return int(self.H.shape[1])

    @property
    def m(self) -> int:
        return int(self.H.shape[0])

    @cached_property
    def csc(self) -> sp.csc_matrix:
        return self.H.tocsc()

    @cached_property
    def pivots(self) -> I64:
        """First check of each symbol in :attr:`puncture_order`."""
        Hc = self.csc
        return np.asarray(Hc.indices[Hc.indptr[self.puncture_order]], dtype=np.int64)

    def variable_degrees(self) -> I64:
        ptr = np.asarray(self.csc.indptr, dtype=np.int64)
        return ptr[1:] - ptr[:-1]

    def check_degrees(self) -> I64:
        ptr = np.asarray(self.H.indptr, dtype=np.int64)
        return ptr[1:] - ptr[:-1]

    def syndrome(self, bits: npt.ArrayLike) -> U8:
        """``H @ bits mod 2`` for a 0/1 vector of length ``n``."""
        x = np.asarray(bits, dtype=np.uint8)
        if x.shape != (self.n,):
            raise ReconciliationError(f"expected {self.n} bits, got shape {x.shape}")
        return np.asarray((self.H @ x.astype(np.int64)) & 1, dtype=np.uint8)


def extended(code: LdpcCode, blocks: int, *, seed: int, degree: int | None = None) -> LdpcCode:
    """``code`` with ``blocks`` more block rows of parity checks (incremental redundancy).

    Each extra block row has the code's mean base-row degree, at distinct base columns drawn
    uniformly with random circulant shifts, block ``j`` from ``seed`` and ``j`` alone, so every
    extension is a prefix of the next and both parties derive the same rows from the public
    seed. Sending the ``lift`` syndrome bits of a new block discloses one bit per bit of leak
    about a parity of many key bits, where revealing a key bit tells the decoder only ``h(Q)``
    (rate-compatible extension of a mother code: M. R. Yazdani, A. H. Banihashemi, IEEE Trans.
    Commun. 52, 1781 (2004), applied to blind reconciliation once punctured symbols run out).
    The original rows keep their order, so decoder messages carry over.
    """
    if blocks <= 0:
        return code
    mb, nb = code.base_shape
    z = code.lift
    rows = np.asarray(code.base_rows, dtype=np.int64)
    deg = max(2, min(nb, round(rows.size / mb) if degree is None else int(degree)))
    new_r, new_c, new_s = [], [], []
    for j in range(blocks):
        rng = np.random.default_rng([code.seed, seed, 0x657874, j])
        cols = np.sort(rng.choice(nb, size=deg, replace=False))
        new_r.append(np.full(deg, mb + j, dtype=np.int64))
        new_c.append(cols.astype(np.int64))
        new_s.append(rng.integers(0, z, size=deg, dtype=np.int64))
    base_rows = np.concatenate([rows, *new_r])
    base_cols = np.concatenate([np.asarray(code.base_cols, dtype=np.int64), *new_c])
    shifts = np.concatenate([np.asarray(code.shifts, dtype=np.int64), *new_s])
    H = _expand(base_rows, base_cols, shifts, m=mb + blocks, n=nb, z=z, n_out=code.n)
    return dataclasses.replace(
        code,
        H=H,
        base_shape=(mb + blocks, nb),
        base_rows=base_rows,
        base_cols=base_cols,
        shifts=shifts,
        family=f"{code.family}+ext{blocks}",
    )


#: Constructions known to fail in this process (cache file name -> message).
_INFEASIBLE: dict[str, str] = {}
#: Codes used recently in this process (cache path -> code): both parties of an in-process
#: run, and consecutive keys, share one expanded matrix instead of loading it again.
_MEMORY: OrderedDict[str, LdpcCode] = OrderedDict()
_MEMORY_SIZE: Final = 8


def _remember(key: str, code: LdpcCode) -> LdpcCode:
    _MEMORY[key] = code
    _MEMORY.move_to_end(key)
    while len(_MEMORY) > _MEMORY_SIZE:
        _MEMORY.popitem(last=False)
    return code


def default_cache_dir() -> Path:
    """``$QREPEATER_CACHE`` or ``~/.cache/qrepeater/codes``."""
    env = os.environ.get("QREPEATER_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "qrepeater" / "codes"


@dataclass(frozen=True)
class CodeFamily:
    """The rates and construction parameters of a family of codes.

    ``code(rate, n)`` builds (or loads from the cache) the code of that rate and exact block
    length ``n``; rates missing from ``distributions`` (at most ``max_shift`` away from one
    of them) use the nearest distribution moved to the rate (:func:`rate_shifted`).
    ``base_max`` bounds the PEG protograph size; ``lift_min`` is the smallest circulant size
    used for ``n > base_max``; base sizes are multiples of ``granularity`` (so ``rate *
    n_base`` checks is an integer); ``puncture_max_degree`` limits which symbols may be
    punctured; ``max_moves`` bounds the 4-cycle repair of each lifting attempt.
    """

    name: str = "elkouss2009-qc"
    rates: tuple[float, ...] = DEFAULT_RATES
    seed: int = 20_090_114
    base_max: int = 1200
    lift_min: int = 20
    granularity: int = 100
    puncture_max_degree: int = 3
    max_moves: int = 4000
    max_shift: float = 0.05
    distributions: Mapping[float, DegreeDistribution] = field(
        default_factory=lambda: dict(DEFAULT_DISTRIBUTIONS), compare=False, hash=False, repr=False
    )

    def __post_init__(self) -> None:
        if not self.rates or not self.distributions:
            raise ReconciliationError("a code family needs rates and distributions")
        table = sorted(self.distributions)
        for r in self.rates:
            if min(abs(r - t) for t in table) > self.max_shift + 1e-9:
                raise ReconciliationError(
                    f"rate {r} is more than {self.max_shift} from the distribution table {table}"
                )
        if tuple(sorted(self.rates)) != self.rates:
            raise ReconciliationError("rates must be sorted ascending")
        if self.granularity < 1 or self.base_max < 2 * self.granularity or self.lift_min < 2:
            raise ReconciliationError("invalid base_max / lift_min / granularity")
        for r in self.rates:
            if abs(r * self.granularity - round(r * self.granularity)) > 1e-9:
                raise ReconciliationError(f"rate {r} x granularity must be an integer")

    def distribution(self, rate: float) -> DegreeDistribution:
        """The published distribution of ``rate``, or the nearest one moved to ``rate``."""
        if rate in self.distributions:
            return self.distributions[rate]
        nearest = min(sorted(self.distributions), key=lambda r: (abs(r - rate), r))
        return rate_shifted(self.distributions[nearest], rate)

    def splits(self, rate: float, block_length: int) -> list[tuple[int, int]]:
        """Candidate ``(n_base, Z)`` splits tried in order for a block length.

        The largest protograph first (best approximation of the ensemble); smaller bases with
        larger circulants make 4-cycle-free lifting easier for short blocks.
        """
        n = int(block_length)
        g = self.granularity
        dmax = self.distribution(rate).max_variable_degree
        nb_min = g * -(-int(np.ceil((dmax + 2) / (1.0 - rate))) // g)
        out: list[tuple[int, int]] = []
        if n <= self.base_max:
            nb = g * -(-n // g)
            if nb >= nb_min:
                out.append((nb, 1))
        nb = g * (min(self.base_max, n // self.lift_min) // g)
        while nb >= nb_min:
            if nb < n:
                split = (nb, -(-n // nb))
                if split not in out:
                    out.append(split)
            nb = g * (int(nb * 0.7) // g)
        return out

    def pair_load(self, rate: float, block_length: int) -> float:
        """Share of check-node pairs that the variable nodes would cover, ``sum_v C(d_v, 2) /
        C(m, 2)``. A 4-cycle-free graph needs it <= 1 (every pair of checks shares at most one
        variable); in practice the construction fails above about 0.3, which callers use as a
        cheap feasibility test before building."""
        dist = self.distribution(rate)
        n = int(block_length)
        m = max(2, round((1.0 - rate) * n))
        pairs = sum(f * d * (d - 1) / 2 for d, f in dist.variable_node_fractions().items()) * n
        return float(pairs / (m * (m - 1) / 2))

    def admissible_length(self, rate: float, block_length: int) -> int:
        """Smallest length ``>= block_length`` that the first split builds without truncation.

        Other lengths are built by dropping the last columns of the lift, which keeps all its
        checks (a slightly lower rate than designed); callers that can choose the length (the
        reconciliation plan) use this one.
        """
        splits = self.splits(rate, block_length)
        if not splits:
            raise ReconciliationError(f"block length {block_length} too short for rate {rate}")
        nb, z = splits[0]
        return nb * z

    def cache_path(
        self, rate: float, block_length: int, *, cache_dir: Path | str | None = None
    ) -> Path:
        """Cache file of a code; the name hashes everything that determines its content."""
        tag = hashlib.sha256(
            repr(
                (
                    self.name,
                    self.distribution(rate),
                    self.seed,
                    self.base_max,
                    self.lift_min,
                    self.granularity,
                    self.puncture_max_degree,
                    self.max_moves,
                    CONSTRUCTION_VERSION,
                )
            ).encode()
        ).hexdigest()[:12]
        root = default_cache_dir() if cache_dir is None else Path(cache_dir)
        return root / f"{self.name}-r{round(rate * 100):03d}-n{int(block_length)}-{tag}.npz"

    def code(
        self,
        rate: float,
        block_length: int,
        *,
        cache_dir: Path | str | None = None,
        use_cache: bool = True,
    ) -> LdpcCode:
        """The code of ``rate`` and ``block_length``, loaded from the cache when present."""
        if rate not in self.rates:
            raise ReconciliationError(f"rate {rate} not in family rates {self.rates}")
        path = self.cache_path(rate, block_length, cache_dir=cache_dir)
        key = str(path)
        if use_cache and key in _MEMORY:
            _MEMORY.move_to_end(key)
            return _MEMORY[key]
        if use_cache and path.exists():
            try:
                return _remember(key, _load(path, family=self.name))
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                path.unlink(missing_ok=True)  # corrupt or truncated entry: rebuild it
        if path.name in _INFEASIBLE:
            raise ReconciliationError(_INFEASIBLE[path.name])
        try:
            code = build_code(
                self.distribution(rate), block_length=block_length, seed=self.seed, family=self
            )
        except ReconciliationError as exc:
            _INFEASIBLE[path.name] = str(exc)  # deterministic: do not retry in this process
            raise
        if use_cache:
            _save(code, path)
            _remember(key, code)
        return code


def build_code(
    dist: DegreeDistribution,
    *,
    block_length: int,
    seed: int,
    family: CodeFamily | None = None,
    attempts: int = 2,
) -> LdpcCode:
    """Construct (without cache) a 4-cycle-free code of ``dist`` and exact ``block_length``.

    Tries the splits of :meth:`CodeFamily.splits` in order, ``attempts`` random seeds each,
    all derived from ``(seed, rate, block_length)``. Raises :class:`ReconciliationError` when no
    4-cycle-free code is found (block too short for the degree distribution).
    """
    fam = CodeFamily() if family is None else family
    n = int(block_length)
    if n < 2 * fam.granularity:
        raise ReconciliationError(f"block length {n} too short")
    ss = np.random.SeedSequence([int(seed), round(dist.rate * 1000), n])
    tried: list[str] = []
    for (nb, z), child in zip(fam.splits(dist.rate, n), ss.spawn(64), strict=False):
        mb = round(nb * (1.0 - dist.rate))
        var, chk = node_degrees(dist, n=nb, m=mb)
        for sub in child.spawn(attempts):
            rng = np.random.default_rng(sub)
            rows, cols = _peg(var, rng.permutation(chk), rng)
            shifts = _lift_shifts(
                rows, cols, m=mb, n=nb, z=z, rng=rng, max_moves=0 if z == 1 else fam.max_moves
            )
            if shifts is None:
                continue
            H = _expand(rows, cols, shifts, m=mb, n=nb, z=z, n_out=n)
            order = _untainted_order(H, rng, fam.puncture_max_degree)
            return LdpcCode(
                H=H,
                rate=dist.rate,
                seed=int(seed),
                lift=z,
                base_shape=(mb, nb),
                base_rows=rows,
                base_cols=cols,
                shifts=shifts,
                puncture_order=order,
                family=fam.name,
            )
        tried.append(f"{nb}x{z}")
    raise ReconciliationError(
        f"no 4-cycle-free code of rate {dist.rate} and length {n} found "
        f"(tried base x lift {', '.join(tried) or 'none'}); use a longer block"
    )


def _save(code: LdpcCode, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(
            tmp,
            version=np.int64(CONSTRUCTION_VERSION),
            rate=np.float64(code.rate),
            seed=np.int64(code.seed),
            lift=np.int64(code.lift),
            n=np.int64(code.n),
            base_shape=np.array(code.base_shape, dtype=np.int64),
            base_rows=code.base_rows,
            base_cols=code.base_cols,
            shifts=code.shifts,
            puncture_order=code.puncture_order,
        )
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache may be shared
        os.replace(tmp, path)  # atomic: a concurrent reader never sees a partial file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load(path: Path, *, family: str) -> LdpcCode:
    with np.load(path) as f:
        if int(f["version"]) != CONSTRUCTION_VERSION:
            raise ValueError("stale cache version")
        z = int(f["lift"])
        mb, nb = (int(v) for v in f["base_shape"])
        rows = f["base_rows"].astype(np.int64)
        cols = f["base_cols"].astype(np.int64)
        shifts = f["shifts"].astype(np.int64)
        H = _expand(rows, cols, shifts, m=mb, n=nb, z=z, n_out=int(f["n"]))
        return LdpcCode(
            H=H,
            rate=float(f["rate"]),
            seed=int(f["seed"]),
            lift=z,
            base_shape=(mb, nb),
            base_rows=rows,
            base_cols=cols,
            shifts=shifts,
            puncture_order=f["puncture_order"].astype(np.int64),
            family=family,
        )
