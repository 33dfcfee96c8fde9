"""Vectorised Monte-Carlo simulation of repeater chains: per-delivery time and correlators.

Many chain realisations are simulated at once with NumPy. Failed attempts are never simulated:
the attempts to the next herald of a segment are drawn as ``Geom(p_eff)`` (as
:func:`qrepeater.link.sampler.sample_heralds` does), so the cost per delivery does not grow with
``1/p``.

Memory decay is applied qubit by qubit: every memory qubit's storage time ("age") is tracked,
and a qubit's Bloch shrinks ``(xy(a), xy(a), z(a))`` multiply the frame correlators when it is
measured (in a swap) or when the pair is delivered. With ``memory_model="exponential"`` the
shrinks are ``exp(-g a / 2)`` (the numerical engine's semigroup model, so both engines simulate
the same process); with ``"calibrated"`` they are the memory's own channel,
``exp(-t/2 tau)`` and ``sqrt((1 - kappa t)_+)`` (:class:`qrepeater.hardware.Memory`), which is not a
semigroup and only this engine covers.

Protocols:

* ``nested`` (Briegel, Duer, Cirac & Zoller, PRL 81, 5932 (1998), doubling): the same process as
  :mod:`.exact` (both inputs of a join regenerated after a cut-off failure, probabilistic swaps
  repeating the whole join, a classical delay per level), sampled recursively with rejection;
* ``swap-asap``: every node swaps as soon as it holds both pairs; a pair whose unmeasured memory
  has been stored longer than the cut-off is discarded together with the whole link it belongs
  to, whose segments then regenerate (per-memory cut-off); a failed swap discards both links.
  Simulated event by event, every realisation processing its next event in one vectorised step.
  The end nodes learn the result after the swap messages arrive (per-node delays).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qrepeater._random import as_generator
from qrepeater.errors import ParameterError
from qrepeater.repeater.exact import NestedPlan
from qrepeater.repeater.purification import purify
from qrepeater.repeater.segments import MemoryModel, Segment, SwapNoise, werner_window

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Shrink = Callable[[FloatArray], FloatArray]

#: bound on rejection rounds / events before giving up (no delivery in any reasonable time)
MAX_ROUNDS = 200_000
#: bound on the tries of one join drawn by the nested sampler (beyond 2000 per delivery)
MAX_TRIES = 5_000_000
#: bound on the events of the swap-asap sampler
MAX_EVENTS = 50_000
#: deliveries simulated per batch (keeps the working arrays in cache)
CHUNK = 1 << 16


@dataclass(frozen=True)
class Deliveries:
    """Per-delivery records: ``time`` (attempts from the start), ``f`` (frame correlators,
    shape ``(3, n)``) of each realisation's first end-to-end pair."""

    time: FloatArray
    f: FloatArray

    def __len__(self) -> int:
        return int(self.time.size)

    @property
    def fidelity(self) -> FloatArray:
        """Fidelity with ``psi+`` of each delivered pair."""
        return np.asarray((1.0 + self.f.sum(axis=0)) / 4.0)


def _ion(xy: Shrink, z: Shrink, age: FloatArray) -> FloatArray:
    s = xy(age)
    return np.stack([s, s, z(age)])


@dataclass
class _Batch:
    t: FloatArray
    f: FloatArray
    age_l: FloatArray
    age_r: FloatArray


class _Nested:
    def __init__(self, plan: NestedPlan, model: MemoryModel, rng: np.random.Generator) -> None:
        self.plan = plan
        self.rng = rng
        self.xy, self.z = plan.segments[0].ion_shrinks(model)
        self.noise = plan.noise.factors[:, None]

    def elementary(self, seg: Segment, n: int) -> _Batch:
        if self.plan.purify is None:
            t = self.rng.geometric(seg.p_eff, n).astype(np.float64)
            zeros = np.zeros(n)
            return _Batch(t, np.repeat(seg.f0[:, None], n, axis=1), zeros, zeros.copy())
        return self._purified(seg, n)

    def _purified(self, seg: Segment, n: int) -> _Batch:
        plan = self.plan
        c = plan.purify_cutoff

        def tries(k: int) -> tuple[npt.NDArray[np.bool_], FloatArray, FloatArray, _Batch]:
            t1 = self.rng.geometric(seg.p, k).astype(np.float64)
            t2 = self.rng.geometric(seg.p, k).astype(np.float64)
            d = np.abs(t1 - t2)
            cut = np.zeros(k, dtype=bool) if c is None else d > c
            aged = _ion(self.xy, self.z, d) ** 2
            prob, fout = purify(seg.f0[:, None], seg.f0[:, None] * aged, str(plan.purify))
            ok = ~cut & (self.rng.random(k) < prob)
            end = np.maximum(t1, t2) + plan.purify_delay
            fail_t = np.where(cut, np.minimum(t1, t2) + (c or 0), end)
            ages = np.full(k, float(plan.purify_delay))
            return ok, end, fail_t, _Batch(end, fout, ages, ages.copy())

        return self._stream(n, tries)

    def _stream(
        self,
        n: int,
        tries: Callable[[int], tuple[npt.NDArray[np.bool_], FloatArray, FloatArray, _Batch]],
    ) -> _Batch:
        """Realisations as consecutive i.i.d. tries: each one's time is the failed tries'
        durations plus its successful try's; tries are drawn in pools (vectorised)."""
        outs: list[_Batch] = []
        need = n
        carry = 0.0
        rate = 0.5
        drawn = 0
        for _ in range(MAX_ROUNDS):
            pool = int(min(max(1.25 * need / rate + 32, 64), 1 << 22))
            drawn += pool
            if drawn > max(MAX_TRIES, 2000 * n):
                raise ParameterError(
                    f"no end-to-end pair in any reasonable time: {drawn:,} tries of a join "
                    f"gave {n - need} of {n} successes"
                )
            ok, t_ok, fail_t, batch = tries(pool)
            succ = np.flatnonzero(ok)
            rate = max(succ.size / pool, 1e-7)
            fails = np.cumsum(np.where(ok, 0.0, fail_t))
            take = succ[:need]
            if take.size:
                offs = np.concatenate([[carry + fails[take[0]]], np.diff(fails[take])])
                outs.append(
                    _Batch(
                        offs + t_ok[take],
                        batch.f[:, take],
                        batch.age_l[take],
                        batch.age_r[take],
                    )
                )
                need -= take.size
                carry = float(fails[-1] - fails[take[-1]])
            else:
                carry += float(fails[-1])
            if need == 0:
                return _Batch(
                    np.concatenate([b.t for b in outs]),
                    np.concatenate([b.f for b in outs], axis=1),
                    np.concatenate([b.age_l for b in outs]),
                    np.concatenate([b.age_r for b in outs]),
                )
        raise ParameterError("no end-to-end pair in any reasonable time (joins keep failing)")

    def _werner_after(self, b: _Batch) -> Callable[[FloatArray], FloatArray]:
        def after(d: FloatArray) -> FloatArray:
            f = b.f * _ion(self.xy, self.z, b.age_l + d) * _ion(self.xy, self.z, b.age_r + d)
            return np.asarray(f.mean(axis=0))

        return after

    def _deadlines(
        self, k: int, left: _Batch, right: _Batch
    ) -> tuple[npt.NDArray[np.bool_], FloatArray]:
        """Which tries of the join at level ``k`` a cut-off ends, and when (Li et al. 2021):
        memory time (the earlier pair waits more than ``c``), fidelity (a pair's own Werner
        parameter, from its history, falls below the threshold: on arrival, or while the
        earlier one waits), run time (an input not ready by ``r``); the earliest deadline
        applies."""
        plan = self.plan
        c = plan.cutoffs[k]
        w_cut = plan.werner_cutoffs[k]
        r = plan.run_cutoffs[k]
        m = left.t.size
        inf = np.full(m, np.inf)
        early = np.minimum(left.t, right.t)
        late = np.maximum(left.t, right.t)
        window = inf.copy() if c is None else np.full(m, float(c))
        fail_at = inf.copy()
        if w_cut is not None:
            big = np.iinfo(np.int64).max // 4 if c is None else int(c)
            wl = werner_window(self._werner_after(left), threshold=w_cut, cap=big, size=m)
            wr = werner_window(self._werner_after(right), threshold=w_cut, cap=big, size=m)
            left_first = left.t <= right.t
            w_early = np.where(left_first, wl, wr).astype(np.float64)
            w_late = np.where(left_first, wr, wl).astype(np.float64)
            same = left.t == right.t
            bad_now = (w_early < 0) | (same & (w_late < 0))
            fail_at = np.where(bad_now, early, fail_at)
            window = np.minimum(window, np.where(w_early < 0, np.inf, w_early))
            late_bad = ~bad_now & (late - early <= window) & (w_late < 0)
            fail_at = np.where(late_bad, late, fail_at)
        expired = late - early > window
        fail_at = np.where(expired, np.minimum(fail_at, early + window), fail_at)
        if r is not None:
            fail_at = np.where(late > r, np.minimum(fail_at, float(r)), fail_at)
        return np.isfinite(fail_at), fail_at

    def level(self, k: int, first: int, n: int) -> _Batch:
        if k == 0:
            return self.elementary(self.plan.segments[first], n)
        plan = self.plan
        half = 1 << (k - 1)
        delay = float(plan.delays[k - 1])
        a = plan.swap_probability

        def tries(m: int) -> tuple[npt.NDArray[np.bool_], FloatArray, FloatArray, _Batch]:
            left = self.level(k - 1, first, m)
            right = self.level(k - 1, first + half, m)
            t = np.maximum(left.t, right.t)
            cut, fail_at = self._deadlines(k - 1, left, right)
            ok = ~cut & (self.rng.random(m) < a) if a < 1 else ~cut
            # the swap (successful or not) is known at t + delay; a cut-off ends the try at
            # its deadline
            fail_t = np.where(cut, fail_at, t + delay)
            wl = t - left.t
            wr = t - right.t
            frozen = _ion(self.xy, self.z, left.age_r + wl) * _ion(
                self.xy, self.z, right.age_l + wr
            )
            f = left.f * right.f * frozen * self.noise
            out = _Batch(t + delay, f, left.age_l + wl + delay, right.age_r + wr + delay)
            return ok, t + delay, fail_t, out

        return self._stream(n, tries)


def sample_nested(
    plan: NestedPlan,
    *,
    n: int,
    seed: int | np.random.Generator | np.random.SeedSequence | None = None,
    memory_model: MemoryModel = "exponential",
) -> Deliveries:
    """``n`` independent end-to-end deliveries of a nested-doubling chain."""
    n = _check_n(n)
    sim = _Nested(plan, memory_model, as_generator(seed))
    times, states = [], []
    for start in range(0, n, CHUNK):  # cache-sized batches from the same generator
        b = sim.level(plan.levels, 0, min(CHUNK, n - start))
        times.append(b.t)
        states.append(b.f * _ion(sim.xy, sim.z, b.age_l) * _ion(sim.xy, sim.z, b.age_r))
    return Deliveries(time=np.concatenate(times), f=np.concatenate(states, axis=1))


def _check_n(n: int) -> int:
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ParameterError(f"number of deliveries must be a positive integer, got {n!r}")
    return int(n)


@dataclass(frozen=True)
class AsapPlan:
    """Swap-asap chain: segments, swap success and noise, per-memory cut-off (attempts), and
    the classical delay (attempts) from each node to the farther end node."""

    segments: tuple[Segment, ...]
    swap_probability: float
    noise: SwapNoise
    cutoff: int | None
    node_delays: tuple[int, ...]

    def __post_init__(self) -> None:
        n = len(self.segments)
        if n < 1:
            raise ParameterError("a chain needs at least one segment")
        if len(self.node_delays) != n + 1:
            raise ParameterError("need one delay per node")
        if not 0.0 < self.swap_probability <= 1.0:
            raise ParameterError(
                f"swap probability must lie in (0, 1], got {self.swap_probability}"
            )


def sample_swap_asap(
    plan: AsapPlan,
    *,
    n: int,
    seed: int | np.random.Generator | np.random.SeedSequence | None = None,
    memory_model: MemoryModel = "exponential",
) -> Deliveries:
    """``n`` independent first end-to-end deliveries of a swap-asap chain."""
    n = _check_n(n)
    rng = as_generator(seed)
    segs = plan.segments
    ns = len(segs)
    xy, zf = segs[0].ion_shrinks(memory_model)
    p = np.array([s.p_eff for s in segs])
    f0 = np.prod(np.stack([s.f0 for s in segs]), axis=0) * plan.noise.factors ** (ns - 1)
    c = plan.cutoff
    big = np.iinfo(np.int64).max // 4
    node_delay = np.asarray(plan.node_delays, dtype=np.int64)
    out_t = np.empty(n)
    out_f = np.empty((3, n))
    rows = np.arange(n)
    herald = rng.geometric(p, size=(n, ns)).astype(np.int64)
    exists = np.zeros((n, ns), dtype=bool)
    swapped = np.zeros((n, ns + 1), dtype=bool)
    swap_time = np.zeros((n, ns + 1), dtype=np.int64)
    nodes = np.arange(ns + 1)
    segidx = np.arange(ns)

    def discard(sel: IntArray, lo_from: IntArray, hi_from: IntArray, t: IntArray) -> None:
        # link bounds: last unswapped node <= lo_from, first unswapped node >= hi_from
        sw = swapped[sel]
        a = np.where(~sw & (nodes <= lo_from[:, None]), nodes, -1).max(axis=1)
        b = np.where(~sw & (nodes >= hi_from[:, None]), nodes, ns + 1).min(axis=1)
        segs_in = (segidx >= a[:, None]) & (segidx < b[:, None])
        fresh = t[:, None] + rng.geometric(p, size=(sel.size, ns))
        herald[sel] = np.where(segs_in, fresh, herald[sel])
        exists[sel] = exists[sel] & ~segs_in
        inner = (nodes > a[:, None]) & (nodes < b[:, None])
        swapped[sel] = swapped[sel] & ~inner

    def try_swap(sel: IntArray, node: IntArray, t: IntArray) -> None:
        ok_node = (node >= 1) & (node <= ns - 1)
        sel, node, t = sel[ok_node], node[ok_node], t[ok_node]
        both = exists[sel, node - 1] & exists[sel, np.minimum(node, ns - 1)]
        sel, node, t = sel[both], node[both], t[both]
        if sel.size == 0:
            return
        good = rng.random(sel.size) < plan.swap_probability
        swapped[sel[good], node[good]] = True
        swap_time[sel[good], node[good]] = t[good]
        bad = ~good
        if np.any(bad):
            discard(sel[bad], node[bad] - 1, node[bad] + 1, t[bad])

    for _ in range(MAX_EVENTS):
        r = np.arange(rows.size)
        hn = np.where(exists, big, herald)
        jh = hn.argmin(axis=1)
        th = hn[r, jh]
        if c is not None:
            free = ~(swapped[:, :-1] & swapped[:, 1:])
            ex = np.where(exists & free, herald + c, big)
            jc = ex.argmin(axis=1)
            tc = ex[r, jc]
            is_cut = tc < th
        else:
            is_cut = np.zeros(rows.size, dtype=bool)
        hsel = np.flatnonzero(~is_cut)
        j = jh[hsel]
        exists[hsel, j] = True
        try_swap(hsel, j, th[hsel])
        try_swap(hsel, j + 1, th[hsel])
        if c is not None and np.any(is_cut):
            csel = np.flatnonzero(is_cut)
            discard(csel, jc[csel], jc[csel] + 1, tc[csel])
        done = exists.all(axis=1) & swapped[:, 1:ns].all(axis=1)
        if np.any(done):
            d = np.flatnonzero(done)
            h = herald[d].astype(np.float64)
            st = swap_time[d].astype(np.float64)
            last = np.maximum(h.max(axis=1), st.max(axis=1) if ns > 1 else 0.0)
            inner_delay = np.where(swapped[d], st + node_delay, 0.0).max(axis=1)
            deliver = np.maximum(last, inner_delay)
            left_age = np.where(nodes[None, :ns] == 0, deliver[:, None], st[:, :ns]) - h
            right_age = np.where(nodes[None, 1:] == ns, deliver[:, None], st[:, 1:]) - h
            f = f0[:, None] * np.ones(d.size)
            for i in range(ns):
                f = f * _ion(xy, zf, left_age[:, i]) * _ion(xy, zf, right_age[:, i])
            out_t[rows[d]] = deliver
            out_f[:, rows[d]] = f
            keep = ~done
            rows = rows[keep]
            herald, exists, swapped, swap_time = (
                herald[keep],
                exists[keep],
                swapped[keep],
                swap_time[keep],
            )
            if rows.size == 0:
                return Deliveries(time=out_t, f=out_f)
    raise ParameterError("no end-to-end pair in any reasonable time (swap-asap events)")


def mean_with_error(x: FloatArray) -> tuple[float, float]:
    """Sample mean and its standard error."""
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else math.inf


__all__ = [
    "MAX_ROUNDS",
    "AsapPlan",
    "Deliveries",
    "mean_with_error",
    "sample_nested",
    "sample_swap_asap",
]
