"""Exact waiting-time distribution and delivered state of nested repeater chains.

The probability-tracking algorithm of Brand, Coopmans & Elkouss, IEEE JSAC 38, 619 (2020)
("Efficient computation of the waiting time and fidelity in quantum repeater chains", Sec. IV,
the deterministic algorithm), with the memory cut-off of Li, Coopmans, Emonts, Goodenough,
Elkouss & Wehner, IEEE TQE 2, 1 (2021) ("Efficient optimization of cut-offs in quantum repeater
chains"), extended from the Werner parameter to the three ``psi+``-frame correlators of
:mod:`.segments`.

For every sub-chain we keep, on integer times ``t = 0 .. M-1`` (attempts), ``P(t) = Pr(T = t)``
and ``W(t) = P(t) E[f | T = t]`` (three rows). Joining two sub-chains at a swap node, with
``T_A, T_B`` independent and the older pair waiting ``d = |T_A - T_B|`` attempts:

* success (``d <= t_cut``) ends at ``t = max``: ``S(t) = P_A(t) sum_{d=0}^{c} P_B(t-d) + P_B(t)
  sum_{d=1}^{c} P_A(t-d)``; the state is the product of both (the older one decayed by
  ``exp(-g d)``), so ``W_S(t) = W_A(t) sum_d W_B(t-d) e^{-gd} + W_B(t) sum_{d>=1} W_A(t-d)
  e^{-gd}`` (a one-pole recursive filter, O(M));
* failure (the older pair reaches ``t_cut`` first) ends at ``t = min + t_cut``: ``F(t) = P_A(t -
  c) Pr(T_B > t) + P_B(t - c) Pr(T_A > t)``; both inputs are regenerated (Li et al. 2021, the
  memory-time cut-off);
* repeating until success is a compound sum, ``G(z) = S(z) / (1 - F(z))`` in generating
  functions, and a probabilistic swap of success ``a`` repeats the whole join:
  ``Out(z) = a G(z) / (1 - (1-a) G(z))`` (BCE Eq. (8)-(10)); the state rows follow the same
  sums with ``W`` in the numerator. Classical communication adds ``D`` attempts to every
  join (the swap outcome reaching the sub-chain's end nodes), during which the pair decays.

The power-series divisions are done with FFTs of length ``>= 2M``, so circular aliasing only
folds back probability mass beyond ``2M``: the error is below the neglected tail mass. Nothing is
ever exponentiated with a positive exponent (no tilting), so long truncations cannot overflow, and
decay factors are formed as ``exp(-g d)`` directly (underflow to 0 is exact to double precision).
The truncation ``M`` is doubled until the neglected mass ``1 - sum P`` is below ``tol``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.signal import fftconvolve, lfilter

from qrepeater.errors import ParameterError
from qrepeater.repeater.purification import purify
from qrepeater.repeater.segments import MemoryModel, Segment, SwapNoise, werner_window

FloatArray = npt.NDArray[np.float64]

#: largest truncation (attempts) the exact engine will allocate
MAX_TRUNCATION = 1 << 23
#: expected waits beyond this many attempts mean no pair in any reasonable time
UNREASONABLE_ATTEMPTS = 1e13


@dataclass(frozen=True)
class Distribution:
    """Truncated distribution of the delivery time and the delivered state.

    ``pmf[t] = Pr(T = t)`` for ``t < len(pmf)`` (attempts); ``weighted[c, t] = Pr(T = t)
    E[f_c | T = t]``.
    """

    pmf: FloatArray
    weighted: FloatArray

    @property
    def coverage(self) -> float:
        """Probability mass inside the truncation."""
        return float(self.pmf.sum())

    @property
    def truncation(self) -> int:
        """Number of time steps kept."""
        return int(self.pmf.size)

    @property
    def mean_wait(self) -> float:
        """``E[T | T < M]`` in attempts (the neglected mass is at most ``1 - coverage``)."""
        t = np.arange(self.pmf.size, dtype=np.float64)
        return float(t @ self.pmf) / self.coverage

    def quantiles(self, qs: npt.ArrayLike) -> FloatArray:
        """Waiting-time quantiles (smallest ``t`` with ``Pr(T <= t) >= q``) in attempts."""
        cdf = np.cumsum(self.pmf)
        q = np.asarray(qs, dtype=np.float64)
        return np.asarray(np.searchsorted(cdf, q * cdf[-1]), dtype=np.float64)

    @property
    def mean_state(self) -> FloatArray:
        """``E[f]`` over the covered mass."""
        return np.asarray(self.weighted.sum(axis=1) / self.coverage)

    def conditional_state(self) -> FloatArray:
        """``E[f | T = t]`` (NaN where ``Pr(T = t)`` vanishes)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(self.weighted / self.pmf)


def _geometric(p: float, m: int) -> FloatArray:
    t = np.arange(m, dtype=np.float64)
    out = np.exp(math.log(p) + (t - 1.0) * math.log1p(-p)) if p < 1 else (t == 1).astype(float)
    out[0] = 0.0
    return np.asarray(out)


def _window(x: FloatArray, c: int | None) -> FloatArray:
    """``y[t] = sum_{d=0}^{c} x[t-d]`` (all ``d`` when ``c`` is None)."""
    cs = np.cumsum(x)
    if c is None or c + 1 >= x.size:
        return cs
    out = cs.copy()
    out[c + 1 :] -= cs[: -(c + 1)]
    return out


def _decayed_window(x: FloatArray, g: float, c: int | None) -> FloatArray:
    """``y[t] = sum_{d=0}^{c} x[t-d] exp(-g d)`` by a one-pole recursive filter."""
    r = math.exp(-g)
    y = np.asarray(lfilter([1.0], [1.0, -r], x))
    if c is not None and c + 1 < x.size:
        fall = math.exp(-g * (c + 1))
        if fall > 0:
            y[c + 1 :] -= fall * y[: -(c + 1)]
    return y


def _kernel_window(x: FloatArray, k: FloatArray) -> FloatArray:
    """``y[t] = sum_{d=0}^{len(k)-1} x[t-d] k[d]`` (FFT convolution, truncated to ``len(x)``)."""
    return np.asarray(fftconvolve(x, k)[: x.size])


def calibrated_kernel(segment: Segment, m: int, *, delay: int) -> FloatArray:
    """Join kernel of two fresh pairs under the memory's own per-qubit channel.

    With per-qubit Bloch shrinks ``s_c(a)`` after storage ``a`` (:meth:`Segment.ion_shrinks`,
    ``calibrated``: ``exp(-a/2 tau)`` and ``sqrt((1 - kappa a)_+)``, the channel of
    :class:`qrepeater.link.storage.StoredLink`), the older pair's inner qubit is measured after
    ``d``, its outer qubit is read ``d + D`` after its herald, the younger pair's outer qubit
    ``D`` after its own: ``K_c(d) = s_c(d) s_c(d + D) s_c(D)``. Exact for the first nesting
    level (inputs are elementary pairs, whose qubits are fresh on arrival); beyond it the
    outer qubits' ages depend on the sub-chain's history, which the distribution does not carry.
    """
    xy, z = segment.ion_shrinks("calibrated")
    d = np.arange(m, dtype=np.float64)
    out = np.empty((3, m))
    for c, fn in enumerate((xy, xy, z)):
        out[c] = fn(d) * fn(d + delay) * fn(np.full(1, float(delay)))[0]
    return out


def _shift(x: FloatArray, k: int) -> FloatArray:
    """``y[t] = x[t - k]`` (zeros shifted in), along the last axis."""
    if k == 0:
        return x
    out = np.zeros_like(x)
    if k < x.shape[-1]:
        out[..., k:] = x[..., :-k]
    return out


def _series_divide(nums: FloatArray, den: FloatArray) -> FloatArray:
    """Power series ``nums / (1 - den)`` truncated to ``M`` terms (rows of ``nums``)."""
    m = den.size
    n = 1 << math.ceil(math.log2(2 * m))
    d = 1.0 - np.fft.rfft(den, n)
    out = np.fft.irfft(np.fft.rfft(nums, n, axis=-1) / d, n, axis=-1)[..., :m]
    return np.asarray(out)


def _finish(
    s: FloatArray,
    sw: FloatArray,
    f: FloatArray,
    *,
    decay: FloatArray,
    delay: int,
    swap_probability: float,
    noise: FloatArray | None,
) -> tuple[FloatArray, FloatArray]:
    """Compound over cut-off failures, add the delay, the noise and the swap success."""
    both = _series_divide(np.vstack([s[None, :], sw]), f) if np.any(f) else np.vstack([s, sw])
    g, gw = both[0], both[1:]
    if noise is not None:
        gw = gw * noise[:, None]
    if delay:
        g = _shift(g, delay)
        gw = _shift(gw, delay) * np.exp(-decay * delay)[:, None]
    a = swap_probability
    if a < 1.0:
        out = a * _series_divide(np.vstack([g[None, :], gw]), (1.0 - a) * g)
        g, gw = out[0], out[1:]
    return np.clip(g, 0.0, None), gw


def join_swap(
    a: Distribution,
    b: Distribution,
    *,
    decay: FloatArray,
    cutoff: int | None,
    swap_probability: float = 1.0,
    noise: SwapNoise | None = None,
    delay: int = 0,
    run_cutoff: int | None = None,
    werner_cutoff: float | None = None,
    kernel: FloatArray | None = None,
) -> Distribution:
    """Distribution of the pair made by swapping the outputs of two sub-chains.

    ``kernel[c, d]`` (optional): the factor on correlator ``c`` of the delivered pair when the
    older input waited ``d`` attempts, everything up to delivery included (the classical delay
    too); it replaces the per-pair exponential ``exp(-g d)`` and the delay's ``exp(-g D)``, so
    a memory law that is not a semigroup is exact for one swap of fresh pairs
    (:func:`calibrated_kernel`).

    Cut-offs of Li, Coopmans & Elkouss (IEEE TQE 2, 1 (2021), Sec. III): ``cutoff`` on the
    waiting-time difference (memory time), ``run_cutoff`` on the inputs' completion times (run
    time: an input not ready ``r`` attempts after the join started restarts the join at ``r``),
    ``werner_cutoff`` on the inputs' Werner parameter (fidelity: a stored pair is discarded when
    its decayed ``E[w | T]`` would fall below the threshold). Any combination applies; the join
    then fails at the earliest of their deadlines.
    """
    pa, pb = a.pmf, b.pmf
    if kernel is not None and werner_cutoff is not None:
        raise ParameterError("the fidelity cut-off needs the exponential memory model")
    if werner_cutoff is None:
        s = pa * _window(pb, cutoff) + pb * (_window(pa, cutoff) - pa)
        sw = np.empty_like(a.weighted)
        for c in range(3):
            wa, wb = a.weighted[c], b.weighted[c]
            if kernel is None:
                sw[c] = wa * _decayed_window(wb, float(decay[c]), cutoff) + wb * (
                    _decayed_window(wa, float(decay[c]), cutoff) - wa
                )
            else:
                k = kernel[c] if cutoff is None else kernel[c, : cutoff + 1]
                sw[c] = wa * _kernel_window(wb, k) + wb * (_kernel_window(wa, k) - wa * k[0])
        f = np.zeros_like(pa)
        if cutoff is not None and cutoff + 1 < pa.size:
            surv_a = np.clip(1.0 - np.cumsum(pa), 0.0, None)
            surv_b = np.clip(1.0 - np.cumsum(pb), 0.0, None)
            f = _shift(pa, cutoff) * surv_b + _shift(pb, cutoff) * surv_a
    else:
        s, sw, f = _join_windows(a, b, decay=decay, cutoff=cutoff, threshold=werner_cutoff)
    if run_cutoff is not None and run_cutoff < pa.size:
        r = int(run_cutoff)
        s = s.copy()
        sw = sw.copy()
        s[r + 1 :] = 0.0
        sw[:, r + 1 :] = 0.0
        f = f.copy()
        f[r + 1 :] = 0.0
        # every try whose inputs are not both ready by r (including mass beyond the
        # truncation) and that no earlier deadline ended fails at r
        f[r] = max(0.0, 1.0 - float(s[: r + 1].sum()) - float(f[:r].sum()))
    g, gw = _finish(
        s,
        sw,
        f,
        decay=decay if kernel is None else np.zeros(3),
        delay=delay,
        swap_probability=swap_probability,
        noise=None if noise is None else noise.factors,
    )
    return Distribution(pmf=g, weighted=gw)


def _join_windows(
    a: Distribution,
    b: Distribution,
    *,
    decay: FloatArray,
    cutoff: int | None,
    threshold: float,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Success, weighted success and failure-time arrays of a join in which each input, once
    ready at ``t``, may wait its own window ``c(t)`` (fidelity cut-off, capped by the memory
    cut-off; ``c = -1``: discarded on arrival). All O(M): windows are range additions done with
    difference arrays, and decayed ones with a one-pole filter whose start and stop impulses
    are both bounded by 1 (no tilting).

    With the earlier input ``A`` at ``t1`` and the later ``B`` at ``t2``: ``A`` bad -> fail at
    ``t1``; ``t2 > t1 + c_A(t1)`` -> fail at ``t1 + c_A``; ``B`` bad -> fail at ``t2``; else
    success at ``t2`` with ``W_A(t1) e^{-g (t2 - t1)} W_B(t2)``. Equal times succeed when both
    are good (Li et al. 2021, Table 1, FID).
    """
    m = a.pmf.size
    cap = m if cutoff is None else min(int(cutoff), m)
    idx = np.arange(m)

    def windows(d: Distribution) -> npt.NDArray[np.int64]:
        with np.errstate(invalid="ignore", divide="ignore"):
            cond = np.where(d.pmf > 0, d.weighted / np.where(d.pmf > 0, d.pmf, 1.0), 1.0)

        def after(x: FloatArray) -> FloatArray:
            return np.asarray((cond * np.exp(-decay[:, None] * x[None, :])).mean(axis=0))

        return werner_window(after, threshold=threshold, cap=cap, size=m)

    def spans(p: FloatArray, c: npt.NDArray[np.int64]) -> FloatArray:
        # sum over earlier t1 < t with t - t1 <= c(t1) of p(t1)
        good = c >= 0
        diff = np.zeros(m + 1)
        np.add.at(diff, (idx + 1)[good], p[good])
        stop = idx + c + 1
        np.add.at(diff, np.minimum(stop, m)[good], -p[good])
        return np.asarray(np.cumsum(diff)[:m])

    def decayed_spans(w: FloatArray, c: npt.NDArray[np.int64], g: float) -> FloatArray:
        r = math.exp(-g)
        good = c >= 0
        x = np.zeros(m + 1)
        np.add.at(x, (idx + 1)[good], w[good] * r)
        stop = (idx + c + 1)[good]
        inside = stop < m
        fall = w[good] * np.exp(-g * (c[good] + 1.0))
        np.add.at(x, stop[inside], -fall[inside])
        return np.asarray(lfilter([1.0], [1.0, -r], x[:m]))

    ca, cb = windows(a), windows(b)
    ga, gb = (ca >= 0).astype(float), (cb >= 0).astype(float)
    pa, pb = a.pmf, b.pmf
    win_a, win_b = spans(pa, ca), spans(pb, cb)
    s = pa * ga * pb * gb + pb * gb * win_a + pa * ga * win_b
    sw = np.empty_like(a.weighted)
    for k in range(3):
        wa, wb = a.weighted[k], b.weighted[k]
        g = float(decay[k])
        sw[k] = (
            wa * ga * wb * gb
            + wb * gb * decayed_spans(wa, ca, g)
            + (wa * ga * decayed_spans(wb, cb, g))
        )
    surv_a = np.clip(1.0 - np.cumsum(pa), 0.0, None)
    surv_b = np.clip(1.0 - np.cumsum(pb), 0.0, None)
    # discarded on arrival (the other later or at the same time)
    f = pa * (1 - ga) * surv_b + pb * (1 - gb) * surv_a + pa * pb * (1.0 - ga * gb)
    # a window runs out before the other input arrives
    for p, c, surv in ((pa, ca, surv_b), (pb, cb, surv_a)):
        end = idx + c
        ok = (c >= 0) & (end < m)
        np.add.at(f, end[ok], p[ok] * surv[end[ok]])
    # the later input is bad on arrival, the earlier one still within its window
    f = f + pb * (1 - gb) * win_a + pa * (1 - ga) * win_b
    return np.clip(s, 0.0, None), sw, f


def elementary(segment: Segment, m: int) -> Distribution:
    """Generation of one segment: ``Geom(p_eff)`` on ``{1, 2, ...}``, state ``f0``."""
    pmf = _geometric(segment.p_eff, m)
    return Distribution(pmf=pmf, weighted=segment.f0[:, None] * pmf[None, :])


def purified_elementary(
    segment: Segment, m: int, *, method: str, cutoff: int | None, delay: int = 0
) -> Distribution:
    """Two pairs generated in parallel on one segment (two memories per side), the older one
    stored until the younger arrives, then purified; failure regenerates both.

    The kernels ``n(d)`` and ``n(d) f_out(d)`` (success probability and output of
    :func:`~qrepeater.repeater.purification.purify` when the older pair waited ``d``) are
    exact because both inputs are fresh pairs with a known state.
    """
    p = _geometric(segment.p, m)
    dmax = m - 1 if cutoff is None else min(cutoff, m - 1)
    d = np.arange(dmax + 1, dtype=np.float64)
    older = segment.f0[:, None] * np.exp(-segment.decay[:, None] * d[None, :])
    fresh = np.broadcast_to(segment.f0[:, None], older.shape)
    n, fout = purify(fresh, older, method)
    k_state = n[None, :] * fout

    def pair_sum(kernel: FloatArray) -> FloatArray:
        # sum over (t1, t2) with max = t and |t1 - t2| = d <= cutoff of P(t1) P(t2) kernel(d)
        conv = fftconvolve(p, kernel)[:m]
        return np.asarray(2.0 * p * conv - p * p * kernel[0])

    s = np.clip(pair_sum(n), 0.0, None)
    sw = np.vstack([pair_sum(k_state[c]) for c in range(3)])
    # purification failed at max, known to both nodes after the outcome exchange
    f = _shift(np.clip(pair_sum(np.ones_like(n)) - s, 0.0, None), delay)
    if cutoff is not None and cutoff + 1 < m:
        surv = np.clip(1.0 - np.cumsum(p), 0.0, None)
        f = f + 2.0 * _shift(p, cutoff) * surv
    g, gw = _finish(s, sw, f, decay=segment.decay, delay=delay, swap_probability=1.0, noise=None)
    return Distribution(pmf=g, weighted=gw)


@dataclass(frozen=True)
class NestedPlan:
    """Everything the exact and Monte-Carlo engines need for a nested-doubling chain.

    ``cutoffs[k]``/``delays[k]``: memory-time cut-off (attempts, None for none) and classical
    delay of the joins at level ``k`` (level 0 joins elementary pairs); ``run_cutoffs[k]``
    (attempts) and ``werner_cutoffs[k]`` (Werner threshold): Li et al.'s run-time and fidelity
    cut-offs of that level (empty: none); ``purify``/``purify_cutoff``/``purify_delay``:
    optional segment-level purification.
    """

    segments: tuple[Segment, ...]
    swap_probability: float
    noise: SwapNoise
    cutoffs: tuple[int | None, ...]
    delays: tuple[int, ...]
    purify: str | None = None
    purify_cutoff: int | None = None
    purify_delay: int = 0
    run_cutoffs: tuple[int | None, ...] = ()
    werner_cutoffs: tuple[float | None, ...] = ()
    memory_model: MemoryModel = "exponential"

    def __post_init__(self) -> None:
        n = len(self.segments)
        if n < 1 or n & (n - 1):
            raise ParameterError(
                f"nested doubling needs a power-of-two number of segments, got {n}"
            )
        levels = n.bit_length() - 1
        if len(self.cutoffs) != levels or len(self.delays) != levels:
            raise ParameterError(f"need {levels} cut-offs and delays, one per nesting level")
        for name in ("run_cutoffs", "werner_cutoffs"):
            cuts = getattr(self, name)
            if not cuts:
                object.__setattr__(self, name, (None,) * levels)
            elif len(cuts) != levels:
                raise ParameterError(f"need {levels} {name.replace('_', ' ')}, one per level")
        for r in self.run_cutoffs:
            if r is not None and (int(r) != r or r < 0):
                raise ParameterError(f"run-time cut-off must be a whole number >= 0, got {r!r}")
        for w in self.werner_cutoffs:
            if w is not None and not 0.0 < w <= 1.0:
                raise ParameterError(f"Werner cut-off must lie in (0, 1], got {w!r}")
        if self.memory_model == "calibrated" and not self.exact_with_calibrated_memory:
            raise ParameterError(
                "the exact engine follows the calibrated memory channel for one swap of "
                "elementary pairs (N <= 2, no purification, no fidelity cut-off); use the "
                "monte-carlo engine"
            )
        if not 0.0 < self.swap_probability <= 1.0:
            raise ParameterError(
                f"swap probability must lie in (0, 1], got {self.swap_probability}"
            )
        g = self.segments[0].decay
        for s in self.segments:
            if not np.allclose(s.decay, g) or s.dt_s != self.segments[0].dt_s:
                raise ParameterError("all segments must share the attempt period and memory")

    @property
    def exact_with_calibrated_memory(self) -> bool:
        """Whether the calibrated (non-semigroup) memory law is exact here: one nesting level,
        elementary inputs, no fidelity cut-off."""
        return (
            self.levels <= 1
            and not self.purify
            and all(w is None for w in self.werner_cutoffs)
            and all(s.ion_xy is not None and s.ion_z is not None for s in self.segments)
        )

    @property
    def levels(self) -> int:
        """Number of nesting levels, ``log2 N``."""
        return len(self.segments).bit_length() - 1

    def rough_mean(self, *, with_cutoffs: bool = False) -> float:
        """A rough mean waiting time (attempts): sizes the first truncation and, with the
        cut-offs, detects chains that deliver nothing in any reasonable time.

        A join of inputs with mean ``m`` and cut-off ``c`` succeeds per try with probability
        about ``P = 1 - exp(-(c + 1)/m)`` (exact for geometric inputs as ``p -> 0``); failed
        tries last about ``m/2 + c``; the estimate errs on the long side.
        """
        m = max(1.0 / s.p_eff for s in self.segments)
        if self.purify:
            m *= 3.0
            if with_cutoffs and self.purify_cutoff is not None:
                m = _with_cutoff(m / 3.0, self.purify_cutoff) * 3.0
        w_cut = self.werner_cutoffs[0] if self.levels else None
        if with_cutoffs and w_cut is not None and not self.purify:
            f0 = np.stack([s.f0 for s in self.segments])
            if np.all(f0 >= 0) and w_cut > float(f0.mean(axis=1).max()):
                return math.inf  # storage only lowers non-negative correlators
        for k in range(self.levels):
            c = self.cutoffs[k]
            joined = 1.5 * m
            if with_cutoffs and c is not None:
                joined = _with_cutoff(m, c)
            r = self.run_cutoffs[k]
            if with_cutoffs and r is not None:
                ready = (-math.expm1(-r / m)) ** 2
                joined = math.inf if ready <= 0 else joined + (1.0 / ready - 1.0) * r
            m = (joined + self.delays[k]) / self.swap_probability
        return m

    def worst_join_success(self) -> float:
        """Rough smallest per-try success probability of a join (cut-off and swap)."""
        m = max(1.0 / s.p_eff for s in self.segments)
        worst = 1.0
        for k in range(self.levels):
            c = self.cutoffs[k]
            success = 1.0 if c is None else -math.expm1(-(c + 1.0) / m)
            r = self.run_cutoffs[k]
            if r is not None:
                success *= (-math.expm1(-r / m)) ** 2
            worst = min(worst, success * self.swap_probability)
            joined = 1.5 * m if c is None else _with_cutoff(m, c)
            m = (joined + self.delays[k]) / self.swap_probability
            if not math.isfinite(m):
                return 0.0
        return worst


def _with_cutoff(m: float, c: int) -> float:
    success = -math.expm1(-(c + 1.0) / m)
    if success <= 0.0:
        return math.inf
    return (1.0 / success - 1.0) * (0.5 * m + c) + 1.5 * m


def nested_distribution(plan: NestedPlan, m: int) -> Distribution:
    """The end-to-end distribution at truncation ``m`` (no tolerance loop)."""
    decay = plan.segments[0].decay
    if all(s is plan.segments[0] for s in plan.segments):
        return _homogeneous(plan, m)
    layer: list[Distribution] = []
    for seg in plan.segments:
        if plan.purify:
            layer.append(
                purified_elementary(
                    seg, m, method=plan.purify, cutoff=plan.purify_cutoff, delay=plan.purify_delay
                )
            )
        else:
            layer.append(elementary(seg, m))
    kernel = _kernel_for(plan, m)
    for k in range(plan.levels):
        layer = [
            join_swap(
                layer[i],
                layer[i + 1],
                decay=decay,
                cutoff=plan.cutoffs[k],
                swap_probability=plan.swap_probability,
                noise=plan.noise,
                delay=plan.delays[k],
                run_cutoff=plan.run_cutoffs[k],
                werner_cutoff=plan.werner_cutoffs[k],
                kernel=kernel,
            )
            for i in range(0, len(layer), 2)
        ]
    return layer[0]


def _homogeneous(plan: NestedPlan, m: int) -> Distribution:
    """Identical segments: every join of a level has the same inputs, so one per level."""
    seg = plan.segments[0]
    if plan.purify:
        d = purified_elementary(
            seg, m, method=plan.purify, cutoff=plan.purify_cutoff, delay=plan.purify_delay
        )
    else:
        d = elementary(seg, m)
    kernel = _kernel_for(plan, m)
    for k in range(plan.levels):
        d = join_swap(
            d,
            d,
            decay=seg.decay,
            cutoff=plan.cutoffs[k],
            swap_probability=plan.swap_probability,
            noise=plan.noise,
            delay=plan.delays[k],
            run_cutoff=plan.run_cutoffs[k],
            werner_cutoff=plan.werner_cutoffs[k],
            kernel=kernel,
        )
    return d


def _kernel_for(plan: NestedPlan, m: int) -> FloatArray | None:
    if plan.memory_model != "calibrated" or plan.levels == 0:
        return None
    return calibrated_kernel(plan.segments[0], m, delay=plan.delays[0])


def solve(
    plan: NestedPlan, *, tol: float = 1e-6, max_truncation: int = MAX_TRUNCATION
) -> Distribution:
    """End-to-end distribution with neglected probability mass below ``tol``.

    Raises :class:`ParameterError` when even ``max_truncation`` attempts leave more than ``tol``
    uncovered (no end-to-end pair in any reasonable time).
    """
    if not 0.0 < tol < 1.0:
        raise ParameterError(f"tolerance must lie in (0, 1), got {tol}")
    mean = plan.rough_mean()
    worst = plan.rough_mean(with_cutoffs=True)
    if not math.isfinite(worst) or worst > UNREASONABLE_ATTEMPTS:
        raise ParameterError(
            f"no end-to-end pair in any reasonable time: about {max(mean, worst):.3g} attempts "
            "expected"
        )
    if mean * 4 > max_truncation or worst > 16 * max_truncation:
        raise ParameterError(
            f"the exact engine would need more than its {max_truncation:,}-attempt truncation "
            f"(about {max(mean, worst):.3g} attempts expected); use the monte-carlo engine"
        )
    m = 1 << max(6, math.ceil(math.log2(8 * mean + 16)))
    while True:
        dist = nested_distribution(plan, m)
        if 1.0 - dist.coverage <= tol:
            return dist
        if m >= max_truncation:
            raise ParameterError(
                f"{1 - dist.coverage:.2g} of the probability lies beyond the exact engine's "
                f"{m:,}-attempt truncation (tolerance {tol:g}); use the monte-carlo engine"
            )
        m = min(2 * m, max_truncation)


__all__ = [
    "MAX_TRUNCATION",
    "Distribution",
    "NestedPlan",
    "calibrated_kernel",
    "elementary",
    "join_swap",
    "nested_distribution",
    "purified_elementary",
    "solve",
]
