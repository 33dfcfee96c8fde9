"""Repeater chains: the public :class:`Chain` API and its results.

A chain of ``N`` segments between two end nodes. Build it from abstract segments in attempt units
(:meth:`Chain.abstract`, the literature's conventions) or from the calibrated elementary link of a
preset (:meth:`Chain.from_preset`: each segment is an
:class:`~qrepeater.link.heralding.ElementaryLink` of length ``L/N``, its memory the preset's),
then evaluate it with the exact engine (:mod:`.exact`, nested doubling) or the Monte-Carlo
engine (:mod:`.montecarlo`, any protocol).

Outputs (:class:`ChainResult`): the end-to-end pair rate ``1/E[T]`` (a new end-to-end pair is
started after each delivery), waiting-time mean and quantiles, mean delivered correlators and
fidelity (linear in the state, so the mean fidelity is the fidelity of the mean state), and
from the mean state the CHSH value, QBER and asymptotic DI-QKD rate (Pironio et al., NJP 11,
045021 (2009), via :func:`qrepeater.diqkd.keyrate.asymptotic_rate`) and the BB84 fraction. For
chains from a preset, two repeaterless references over the same total fibre: direct transmission
of the ion's photon to the far node with the same source, converter and detectors (one
excitation per attempt, attempt period ``T_0 + L/v``), and the PLOB bound ``-log2(1 - eta)``
(Pirandola et al., Nat. Commun. 8, 15043 (2017)) per channel use of the fibre's transmissivity,
at the chain's node attempt rate.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from qrepeater.errors import ParameterError
from qrepeater.repeater.exact import MAX_TRUNCATION, Distribution, NestedPlan, solve
from qrepeater.repeater.montecarlo import AsapPlan, Deliveries, sample_nested, sample_swap_asap
from qrepeater.repeater.purification import METHODS
from qrepeater.repeater.segments import (
    MemoryModel,
    Segment,
    SwapNoise,
    bb84_secret_fraction,
    chsh_qber,
    segment_from_link,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from qrepeater.hardware import LinkHardware
    from qrepeater.link.heralding import ElementaryLink
    from qrepeater.presets import Preset

FloatArray = npt.NDArray[np.float64]
Protocol = Literal["nested", "swap-asap"]
Engine = Literal["exact", "monte-carlo"]
PROTOCOLS: tuple[str, ...] = ("nested", "swap-asap")
ENGINES: tuple[str, ...] = ("exact", "monte-carlo")
QUANTILES: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)
#: a segment whose mean wait exceeds this many attempts never heralds in practice
MAX_MEAN_ATTEMPTS = 1e12
#: ... or this many seconds (about 30 years)
MAX_MEAN_WAIT_S = 1e9
#: the Monte-Carlo engine refuses chains whose joins succeed less often per try
MIN_JOIN_SUCCESS = 1e-4


def _check_segments(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or int(n) < 1:
        raise ParameterError(f"segments must be a positive integer, got {n!r}")
    return int(n)


def _check_cutoff(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    v = float(value)
    if math.isnan(v) or v < 0:
        raise ParameterError(f"{name} must be a non-negative number, got {value!r}")
    return None if math.isinf(v) else v


@dataclass(frozen=True)
class Reference:
    """Repeaterless references over the chain's total fibre (chains from a preset)."""

    total_km: float
    direct_rate_hz: float
    plob_bits_per_s: float


@dataclass(frozen=True)
class Chain:
    """A repeater chain: segments, protocol, swap model, cut-off, purification, delays.

    ``cutoff``: per-memory cut-off in attempts (``None``: none), or one per nesting level;
    ``run_cutoff`` (attempts) and ``werner_cutoff`` (a Werner threshold): the run-time and
    fidelity cut-offs of Li, Coopmans & Elkouss (IEEE TQE 2, 1 (2021)), one value or one per
    level (nested chains);
    ``delays``: include classical communication (swap outcomes reaching the end nodes of the
    sub-chain, purification outcomes exchanged across the segment) at the fibre group velocity;
    ``readout_shrink``: per-qubit readout shrink at the end nodes (1 for abstract chains);
    ``memory_model``: ``exponential`` (both engines) or ``calibrated`` (Monte Carlo; the exact
    engine for ``N <= 2``).
    """

    segments: tuple[Segment, ...]
    protocol: Protocol = "nested"
    swap_probability: float = 1.0
    noise: SwapNoise = field(default_factory=SwapNoise)
    cutoff: int | tuple[int | None, ...] | None = None
    run_cutoff: int | tuple[int | None, ...] | None = None
    werner_cutoff: float | tuple[float | None, ...] | None = None
    purify: str | None = None
    purify_cutoff: int | None = None
    delays: bool = False
    group_velocity_km_s: float = 2.04e5
    readout_shrink: float = 1.0
    memory_model: MemoryModel = "exponential"
    reference: Reference | None = None

    def __post_init__(self) -> None:
        segs = tuple(self.segments)
        if not segs:
            raise ParameterError("a chain needs at least one segment")
        object.__setattr__(self, "segments", segs)
        n = len(segs)
        if self.protocol not in PROTOCOLS:
            raise ParameterError(f"unknown protocol {self.protocol!r}; use {', '.join(PROTOCOLS)}")
        if self.protocol == "nested" and n & (n - 1):
            raise ParameterError(
                f"nested doubling needs a power-of-two number of segments, got {n}"
            )
        if not 0.0 < float(self.swap_probability) <= 1.0:
            raise ParameterError(
                f"swap probability must lie in (0, 1], got {self.swap_probability!r}"
            )
        cut = self.cutoff
        for c in cut if isinstance(cut, tuple) else (cut,):
            if c is not None and (isinstance(c, bool) or int(c) != c or c < 0):
                raise ParameterError(f"cut-off must be a non-negative whole number, got {c!r}")
        if isinstance(cut, tuple) and (self.protocol != "nested" or len(cut) != self.levels):
            raise ParameterError("per-level cut-offs need a nested chain, one per level")
        for name, cuts in (("run-time", self.run_cutoff), ("Werner", self.werner_cutoff)):
            if cuts is None:
                continue
            if self.protocol != "nested":
                raise ParameterError(f"{name} cut-offs are modelled for nested chains")
            if isinstance(cuts, tuple) and len(cuts) != self.levels:
                raise ParameterError(f"per-level {name} cut-offs need one value per level")
        for r in self._per_level(self.run_cutoff):
            if r is not None and (isinstance(r, bool) or int(r) != r or r < 0):
                raise ParameterError(
                    f"run-time cut-off must be a non-negative whole number, got {r!r}"
                )
        for w in self._per_level(self.werner_cutoff):
            if w is not None and not (isinstance(w, int | float) and 0.0 < w <= 1.0):
                raise ParameterError(f"Werner cut-off must lie in (0, 1], got {w!r}")
        if self.purify is not None:
            if self.purify not in METHODS:
                raise ParameterError(
                    f"unknown purification {self.purify!r}; use one of {', '.join(METHODS)}"
                )
            if any(s.memories < 2 for s in segs):
                raise ParameterError(
                    "purification needs two memories per side and segment (memories >= 2)"
                )
            if self.protocol != "nested":
                raise ParameterError("segment-level purification is modelled for nested chains")
        if self.memory_model not in ("exponential", "calibrated"):
            raise ParameterError(f"unknown memory model {self.memory_model!r}")
        if not 0.0 <= self.readout_shrink <= 1.0:
            raise ParameterError("readout shrink must lie in [0, 1]")
        if self.group_velocity_km_s <= 0:
            raise ParameterError("group velocity must be positive")
        dt = segs[0].dt_s
        for s in segs:
            if s.dt_s != dt or not np.allclose(s.decay, segs[0].decay):
                raise ParameterError("all segments must share the attempt period and memory")
            timed = self.reference is not None  # link-derived: attempts last dt_s seconds
            if 1.0 / s.p_eff > MAX_MEAN_ATTEMPTS or (timed and s.dt_s / s.p_eff > MAX_MEAN_WAIT_S):
                raise ParameterError(
                    f"no heralds in any reasonable time: a segment needs {1 / s.p_eff:.3g} "
                    f"attempts ({s.dt_s / s.p_eff:.3g} s) on average"
                )

    def _per_level(self, value: object) -> tuple[Any, ...]:
        if isinstance(value, tuple):
            return value
        return (value,) * max(self.levels, 1)

    # ---- constructors --------------------------------------------------------------------
    @classmethod
    def abstract(
        cls,
        *,
        segments: int,
        p: float,
        werner: float = 1.0,
        coherence_attempts: float | None = None,
        swap_probability: float = 1.0,
        protocol: Protocol = "nested",
        cutoff_attempts: int | tuple[int | None, ...] | None = None,
        run_cutoff_attempts: int | tuple[int | None, ...] | None = None,
        werner_cutoff: float | tuple[float | None, ...] | None = None,
        purify: str | None = None,
        memories: int = 1,
        per_qubit: bool = False,
    ) -> Chain:
        """Homogeneous chain in the literature's units (attempts; no classical delays)."""
        n = _check_segments(segments)
        seg = Segment.abstract(
            p=p,
            werner=werner,
            coherence_attempts=coherence_attempts,
            per_qubit=per_qubit,
            memories=memories,
        )
        return cls(
            segments=(seg,) * n,
            protocol=protocol,
            swap_probability=swap_probability,
            cutoff=cutoff_attempts,
            run_cutoff=run_cutoff_attempts,
            werner_cutoff=werner_cutoff,
            purify=purify,
            purify_cutoff=cutoff_attempts if isinstance(cutoff_attempts, int) else None,
        )

    @classmethod
    def from_preset(
        cls,
        preset: Preset | str = "ustc2025",
        *,
        total_km: float,
        segments: int,
        alpha: float | None = None,
        protocol: Protocol = "nested",
        cutoff_s: float | None = None,
        run_cutoff_s: float | None = None,
        werner_cutoff: float | None = None,
        purify: str | None = None,
        memories: int | None = None,
        delays: bool = True,
        memory_model: MemoryModel = "exponential",
        coherence_time_s: float | None = None,
        zz_decay_per_s: float | None = None,
    ) -> Chain:
        """Homogeneous chain of the preset's elementary link, ``total_km / segments`` each.

        Swap and repeater parameters come from the preset's ``[repeater]`` table
        (:class:`RepeaterParameters`); ``coherence_time_s`` and ``zz_decay_per_s`` replace the
        memory's ``tau`` and ``<ZZ>`` slope ``kappa``.
        """
        import dataclasses

        from qrepeater.link.heralding import ElementaryLink
        from qrepeater.presets import Preset as _Preset
        from qrepeater.presets import load_preset

        p = preset if isinstance(preset, _Preset) else load_preset(str(preset))
        n = _check_segments(segments)
        km = float(total_km)
        if not math.isfinite(km) or km < 0:
            raise ParameterError(
                f"total length must be a non-negative number of km, got {total_km}"
            )
        cut_s = _check_cutoff("cut-off", cutoff_s)
        rp = RepeaterParameters.from_preset(p)
        hw = p.hardware
        if coherence_time_s is not None:
            tau = float(coherence_time_s)
            if not math.isfinite(tau) or tau <= 0:
                raise ParameterError(f"coherence time must be positive, got {coherence_time_s}")
            hw = dataclasses.replace(
                hw, memory=dataclasses.replace(hw.memory, coherence_time_s=tau)
            )
        if zz_decay_per_s is not None:
            kappa = float(zz_decay_per_s)
            if not math.isfinite(kappa) or kappa < 0:
                raise ParameterError(f"<ZZ> decay must be non-negative, got {zz_decay_per_s}")
            hw = dataclasses.replace(
                hw, memory=dataclasses.replace(hw.memory, zz_decay_per_s=kappa)
            )
        link = ElementaryLink(
            hw, alpha=p.operating.alpha if alpha is None else alpha, fiber_km=km / n
        )
        mem = rp.memories if memories is None else memories
        if purify is not None and memories is None:
            mem = max(mem, 2)
        seg = segment_from_link(link, memories=mem)
        cut = None if cut_s is None else math.floor(cut_s / seg.dt_s + 1e-9)
        run_s = _check_cutoff("run-time cut-off", run_cutoff_s)
        return cls(
            segments=(seg,) * n,
            protocol=protocol,
            swap_probability=rp.swap_probability,
            noise=rp.noise(hw.ion.spam_error),
            cutoff=cut,
            run_cutoff=None if run_s is None else math.floor(run_s / seg.dt_s + 1e-9),
            werner_cutoff=werner_cutoff,
            purify=purify,
            purify_cutoff=cut,
            delays=delays,
            group_velocity_km_s=hw.fiber.group_velocity_km_s,
            readout_shrink=hw.ion.readout_shrink,
            memory_model=memory_model,
            reference=references(hw, total_km=km, attempt_rate_hz=1.0 / seg.dt_s),
        )

    @classmethod
    def from_links(
        cls,
        links: Sequence[ElementaryLink],
        *,
        protocol: Protocol = "nested",
        cutoff_s: float | None = None,
        memories: int = 1,
        delays: bool = True,
        memory_model: MemoryModel = "exponential",
        repeater: RepeaterParameters | None = None,
    ) -> Chain:
        """Chain of possibly different links, in order from one end node to the other.

        Nodes may differ in their hardware and excitation probability; the engines share one
        clock, so the links must have the same attempt period (equal lengths and base
        periods) and the same memory.
        """
        if not links:
            raise ParameterError("a chain needs at least one link")
        rp = repeater or RepeaterParameters()
        segs = tuple(segment_from_link(lk, memories=memories) for lk in links)
        cut_s = _check_cutoff("cut-off", cutoff_s)
        cut = None if cut_s is None else math.floor(cut_s / segs[0].dt_s + 1e-9)
        hw = links[0].hardware
        total = float(sum(lk.fiber_km for lk in links))
        return cls(
            segments=segs,
            protocol=protocol,
            swap_probability=rp.swap_probability,
            noise=rp.noise(hw.ion.spam_error),
            cutoff=cut,
            delays=delays,
            group_velocity_km_s=hw.fiber.group_velocity_km_s,
            readout_shrink=hw.ion.readout_shrink,
            memory_model=memory_model,
            reference=references(hw, total_km=total, attempt_rate_hz=1.0 / segs[0].dt_s),
        )

    # ---- plans ---------------------------------------------------------------------------
    @property
    def n_segments(self) -> int:
        """Number of segments ``N``."""
        return len(self.segments)

    @property
    def levels(self) -> int:
        """Nesting levels ``log2 N`` (nested chains)."""
        return self.n_segments.bit_length() - 1

    @property
    def dt_s(self) -> float:
        """Duration of one attempt (1 for abstract chains)."""
        return self.segments[0].dt_s

    def _delay(self, segments_away: float) -> int:
        if not self.delays:
            return 0
        km = segments_away * self.segments[0].fiber_km
        return math.ceil(km / self.group_velocity_km_s / self.dt_s - 1e-12)

    def nested_plan(self) -> NestedPlan:
        """The plan both engines run for a nested chain."""
        cut = self.cutoff
        cutoffs = cut if isinstance(cut, tuple) else (cut,) * self.levels
        return NestedPlan(
            segments=self.segments,
            swap_probability=self.swap_probability,
            noise=self.noise,
            cutoffs=tuple(None if c is None else int(c) for c in cutoffs),
            delays=tuple(self._delay(2**k) for k in range(self.levels)),
            run_cutoffs=tuple(
                None if r is None else int(r) for r in self._per_level(self.run_cutoff)
            )
            if self.levels
            else (),
            werner_cutoffs=tuple(
                None if w is None else float(w) for w in self._per_level(self.werner_cutoff)
            )
            if self.levels
            else (),
            purify=self.purify,
            purify_cutoff=self.purify_cutoff,
            purify_delay=self._delay(1) if self.purify else 0,
        )

    def asap_plan(self) -> AsapPlan:
        """The plan of the swap-asap Monte-Carlo engine."""
        n = self.n_segments
        cut = self.cutoff
        return AsapPlan(
            segments=self.segments,
            swap_probability=self.swap_probability,
            noise=self.noise,
            cutoff=None if cut is None else int(cut),  # type: ignore[arg-type]
            node_delays=tuple(self._delay(max(k, n - k)) for k in range(n + 1)),
        )

    def _covered_by_exact(self) -> bool:
        if self.protocol != "nested" and self.n_segments > 2:
            return False
        if self.memory_model == "exponential":
            return True
        return (
            self.n_segments <= 2
            and self.purify is None
            and all(w is None for w in self._per_level(self.werner_cutoff))
        )

    # ---- engines -------------------------------------------------------------------------
    def exact(self, *, tol: float = 1e-6) -> Distribution:
        """Exact distribution (nested chains; swap-asap with N <= 2 is the same protocol).

        The calibrated memory channel (not a semigroup) is exact for one swap of elementary
        pairs (``N <= 2``; :func:`~qrepeater.repeater.exact.calibrated_kernel`); longer chains
        need the exponential model here, or the Monte-Carlo engine.
        """
        if not self._covered_by_exact():
            raise ParameterError(
                "the exact engine covers nested chains (and N <= 2) with the exponential memory "
                "model, and the calibrated memory for N <= 2 without purification or fidelity "
                "cut-off; use the monte-carlo engine"
            )
        plan = self.nested_plan() if self.protocol == "nested" else self._asap_as_nested()
        plan = dataclasses.replace(plan, memory_model=self.memory_model)
        return solve(plan, tol=tol, max_truncation=MAX_TRUNCATION)

    def _asap_as_nested(self, *, rough: bool = False) -> NestedPlan:
        cut = self.cutoff
        n = self.n_segments
        if rough:  # a nested stand-in with as many levels, for the feasibility estimate
            n = 1 << (n - 1).bit_length()
        levels = n.bit_length() - 1
        return NestedPlan(
            segments=(self.segments[0],) * n if rough else self.segments,
            swap_probability=self.swap_probability,
            noise=self.noise,
            cutoffs=(None if cut is None else int(cut),) * levels,  # type: ignore[arg-type]
            delays=tuple(self._delay(1) for _ in range(levels)),
        )

    def monte_carlo(
        self,
        *,
        n: int = 100_000,
        seed: int | np.random.Generator | np.random.SeedSequence | None = None,
    ) -> Deliveries:
        """``n`` simulated first deliveries (per-delivery time in attempts and correlators)."""
        rough = (
            self.nested_plan() if self.protocol == "nested" else self._asap_as_nested(rough=True)
        )
        success = rough.worst_join_success()
        if success < MIN_JOIN_SUCCESS:
            raise ParameterError(
                "no end-to-end pair in any reasonable time: a join succeeds with probability "
                f"about {success:.2g} per try (cut-off too short for the segments' waits)"
            )
        if self.protocol == "nested":
            return sample_nested(self.nested_plan(), n=n, seed=seed, memory_model=self.memory_model)
        return sample_swap_asap(self.asap_plan(), n=n, seed=seed, memory_model=self.memory_model)

    def evaluate(
        self,
        engine: Engine = "exact",
        *,
        tol: float = 1e-6,
        n: int = 100_000,
        seed: int | np.random.Generator | np.random.SeedSequence | None = None,
    ) -> ChainResult:
        """Figures of merit from one engine."""
        if engine not in ENGINES:
            raise ParameterError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
        ro = np.array([1.0, 1.0, 1.0]) * self.readout_shrink**2
        if engine == "exact":
            if self.n_segments == 1 and self.purify is None:
                return self._single_segment(ro)
            d = self.exact(tol=tol)
            # E[F | T = t] where the probability is not negligible (the ratio of two
            # vanishing numbers carries no information)
            ok = d.pmf > 1e-15 * float(d.pmf.max())
            cond = d.weighted[:, ok] / d.pmf[ok] * ro[:, None]
            fid = (1.0 + cond.sum(axis=0)) / 4.0
            fq = _weighted_quantiles(fid, d.pmf[ok], QUANTILES)
            return ChainResult(
                engine="exact",
                dt_s=self.dt_s,
                mean_wait_attempts=d.mean_wait,
                wait_quantiles_attempts=dict(zip(QUANTILES, d.quantiles(QUANTILES), strict=True)),
                state=d.mean_state * ro,
                fidelity_quantiles=dict(zip(QUANTILES, fq, strict=True)),
                truncation={"attempts": d.truncation, "coverage": d.coverage, "tolerance": tol},
                reference=self.reference,
            )
        mc = self.monte_carlo(n=n, seed=seed)
        f = mc.f * ro[:, None]
        fid = (1.0 + f.sum(axis=0)) / 4.0
        return ChainResult(
            engine="monte-carlo",
            dt_s=self.dt_s,
            mean_wait_attempts=float(mc.time.mean()),
            wait_quantiles_attempts=dict(
                zip(QUANTILES, np.quantile(mc.time, QUANTILES), strict=True)
            ),
            state=f.mean(axis=1),
            fidelity_quantiles=dict(zip(QUANTILES, np.quantile(fid, QUANTILES), strict=True)),
            truncation={
                "deliveries": len(mc),
                "mean_wait_stderr_attempts": float(mc.time.std(ddof=1) / math.sqrt(len(mc))),
                "fidelity_stderr": float(fid.std(ddof=1) / math.sqrt(len(mc))),
            },
            reference=self.reference,
        )

    def _single_segment(self, ro: FloatArray) -> ChainResult:
        s = self.segments[0]
        p = s.p_eff
        qs = {
            q: float(max(1.0, math.ceil(math.log1p(-q) / math.log1p(-p) - 1e-9))) if p < 1 else 1.0
            for q in QUANTILES
        }
        f = s.f0 * ro
        fid = float((1 + f.sum()) / 4)
        return ChainResult(
            engine="exact",
            dt_s=self.dt_s,
            mean_wait_attempts=1.0 / p,
            wait_quantiles_attempts=qs,
            state=f,
            fidelity_quantiles=dict.fromkeys(QUANTILES, fid),
            truncation={"attempts": None, "coverage": 1.0, "tolerance": 0.0},
            reference=self.reference,
        )


def _weighted_quantiles(x: FloatArray, w: FloatArray, qs: tuple[float, ...]) -> list[float]:
    order = np.argsort(x)
    cw = np.cumsum(w[order])
    cw /= cw[-1]
    xs = x[order]
    return [float(xs[min(int(np.searchsorted(cw, q)), x.size - 1)]) for q in qs]


@dataclass(frozen=True)
class ChainResult:
    """What an engine says about a chain (times in attempts of ``dt_s`` seconds).

    ``state``: mean delivered frame correlators ``(<XX>, <YY>, -<ZZ>)`` as measured (end-node
    readout included); ``fidelity_quantiles``: of delivered pairs (Monte Carlo) or of
    ``E[F | T]`` over the waiting-time distribution (exact engine).
    """

    engine: str
    dt_s: float
    mean_wait_attempts: float
    wait_quantiles_attempts: dict[float, float]
    state: FloatArray
    fidelity_quantiles: dict[float, float]
    truncation: dict[str, object]
    reference: Reference | None = None

    @property
    def fidelity(self) -> float:
        """Mean delivered fidelity with ``psi+``."""
        return float((1.0 + self.state.sum()) / 4.0)

    @property
    def werner(self) -> float:
        """Werner parameter of the twirled mean state, ``(4F - 1)/3``."""
        return float(self.state.mean())

    @property
    def correlators(self) -> dict[str, float]:
        """Mean lab correlators ``<XX>, <YY>, <ZZ>``."""
        fx, fy, fz = (float(v) for v in self.state)
        return {"xx": fx, "yy": fy, "zz": -fz}

    @property
    def chsh(self) -> float:
        """CHSH value of the mean delivered state (settings in the X-Z plane)."""
        return chsh_qber(self.state)[0]

    @property
    def qber(self) -> float:
        """Key-round QBER of the mean delivered state."""
        return chsh_qber(self.state)[1]

    @property
    def diqkd_asymptotic_rate(self) -> float:
        """Asymptotic DI-QKD key per delivered pair (Pironio et al. 2009)."""
        from qrepeater.diqkd.keyrate import asymptotic_rate

        s, q = chsh_qber(self.state)
        return asymptotic_rate(chsh=s, qber=min(q, 0.5 - 1e-12))

    @property
    def bb84_secret_fraction(self) -> float:
        """``1 - h(Q_X) - h(Q_Z)`` with log2 (0 when negative)."""
        return bb84_secret_fraction(self.state)

    @property
    def rate_hz(self) -> float:
        """End-to-end pairs per second, ``1 / E[T]``."""
        return 1.0 / (self.mean_wait_attempts * self.dt_s)

    def abstract_dict(self) -> dict[str, object]:
        """JSON-ready dict of an abstract chain (attempt units; issue #11 contract)."""
        return {
            "mean_wait_attempts": self.mean_wait_attempts,
            "wait_quantiles_attempts": {str(k): v for k, v in self.wait_quantiles_attempts.items()},
            "fidelity": self.fidelity,
            "werner": self.werner,
            "coverage": self.truncation.get("coverage", 1.0),
            "correlators": self.correlators,
            "bb84_secret_fraction": self.bb84_secret_fraction,
            "bb84_key_per_attempt": self.bb84_secret_fraction / self.mean_wait_attempts,
            # h in nats, as Li et al.'s published code computes it (comparison only)
            "bb84_key_per_attempt_nats_entropy": bb84_secret_fraction(self.state, base=math.e)
            / self.mean_wait_attempts,
            "log_base": 2,
            "engine": self.engine,
            "truncation": self.truncation,
        }

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict of a chain in seconds (issue #11 contract)."""
        ref = self.reference
        r = self.diqkd_asymptotic_rate
        return {
            "rate_hz": self.rate_hz,
            "mean_wait_s": self.mean_wait_attempts * self.dt_s,
            "wait_quantiles_s": {
                str(k): v * self.dt_s for k, v in self.wait_quantiles_attempts.items()
            },
            "fidelity": self.fidelity,
            "fidelity_quantiles": {str(k): v for k, v in self.fidelity_quantiles.items()},
            "correlators": self.correlators,
            "chsh": self.chsh,
            "qber": self.qber,
            "diqkd_asymptotic_rate": r,
            "key_rate_bps": r * self.rate_hz,
            "direct_rate_hz": None if ref is None else ref.direct_rate_hz,
            "plob_bits_per_s": None if ref is None else ref.plob_bits_per_s,
            "engine": self.engine,
            "truncation": self.truncation,
            "attempt_period_s": self.dt_s,
        }


def references(hardware: LinkHardware, *, total_km: float, attempt_rate_hz: float) -> Reference:
    """Direct transmission and PLOB over ``total_km`` (see the module docstring)."""
    eta_direct = hardware.node_efficiencies(2.0 * total_km)[0]  # arm of length total_km
    direct = eta_direct / hardware.attempt_period_s(total_km)
    eta = hardware.fiber.transmission(total_km)
    plob = -math.log1p(-eta) / math.log(2.0) * attempt_rate_hz if eta < 1 else math.inf
    return Reference(total_km=total_km, direct_rate_hz=direct, plob_bits_per_s=plob)


@dataclass(frozen=True)
class RepeaterParameters:
    """Repeater-node parameters of a preset's ``[repeater]`` table (defaults when absent).

    ``swap_probability``: success of the Bell measurement (1: a deterministic gate-based BSM
    in one trap); ``swap_gate_fidelity``: process fidelity ``F_e`` of the two-qubit gate,
    modelled as two-qubit depolarising noise shrinking the correlators by ``1 - 16(1 -
    F_e)/15``; ``memories``: memories per side and segment. The Bell measurement's readout
    error is the ion's calibrated SPAM error.
    """

    swap_probability: float = 1.0
    swap_gate_fidelity: float = 0.99
    memories: int = 1

    def __post_init__(self) -> None:
        if not 0.0 < self.swap_probability <= 1.0:
            raise ParameterError("repeater.swap_probability must lie in (0, 1]")
        if not 0.25 <= self.swap_gate_fidelity <= 1.0:
            raise ParameterError("repeater.swap_gate_fidelity must lie in [1/4, 1]")
        if int(self.memories) != self.memories or self.memories < 1:
            raise ParameterError("repeater.memories must be a positive integer")

    def noise(self, measurement_error: float) -> SwapNoise:
        """Swap noise with the given per-bit readout error."""
        shrink = 1.0 - 16.0 * (1.0 - self.swap_gate_fidelity) / 15.0
        return SwapNoise(gate_shrink=max(shrink, 0.0), measurement_error=measurement_error)

    @classmethod
    def from_preset(cls, preset: Preset) -> RepeaterParameters:
        """Read ``repeater.*`` quantities when the preset has them."""
        q = preset.quantities
        kw: dict[str, float | int] = {}
        for name in ("swap_probability", "swap_gate_fidelity", "memories"):
            key = f"repeater.{name}"
            if key in q:
                kw[name] = q[key].value if name != "memories" else int(q[key].value)
        return cls(**kw)  # type: ignore[arg-type]


__all__ = [
    "ENGINES",
    "PROTOCOLS",
    "QUANTILES",
    "Chain",
    "ChainResult",
    "Reference",
    "RepeaterParameters",
    "references",
]
