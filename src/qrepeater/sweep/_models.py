"""The models a sweep can run, their parameters, and how one piece of a task is computed.

Each model wraps the public API of a lower layer; nothing here re-implements physics:

* ``link``: :class:`~qrepeater.link.heralding.ElementaryLink` (analytic summary), or with a
  budget the Monte-Carlo sampler :func:`~qrepeater.link.sampler.sample_heralds`;
* ``memory``: :class:`~qrepeater.link.storage.StoredLink` (analytic summary), or with a budget
  the stored-pair fidelity averaged over sampled waits;
* ``keyrate``: :func:`~qrepeater.diqkd.keyrate.asymptotic_rate` and
  :func:`~qrepeater.diqkd.keyrate.finite_key` (CHSH and QBER given, or from the link model);
* ``diqkd``: :func:`~qrepeater.diqkd.rounds.simulate_from_preset` then
  :func:`~qrepeater.diqkd.pipeline.distill`, one run per sample;
* ``reconcile``: :func:`~qrepeater.qkdpp.reconciliation.reconcile` of random keys through a
  binary symmetric channel, one key per sample;
* ``chain``: :class:`~qrepeater.repeater.chain.Chain` of the preset's link, its exact engine
  (``evaluate("exact")``), or with a budget its Monte-Carlo engine (``monte_carlo``), one
  first end-to-end delivery per sample.

Parameters whose name is a preset key (``memory.coherence_time_s``) override the preset's value.
Work inside a sweep worker never starts its own process pool: the sweep owns the parallelism.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np

from qrepeater.diqkd.keyrate.common import METHODS as KEYRATE_METHODS
from qrepeater.errors import QRepeaterError
from qrepeater.presets import Preset
from qrepeater.quantum.bell import TSIRELSON
from qrepeater.repeater.purification import METHODS as PURIFY_METHODS
from qrepeater.sweep._errors import SpecError
from qrepeater.sweep._stats import Moments, Scalar, TaskStats
from qrepeater.sweep._task import ParamValue, SampleBudget, Task

Params = Mapping[str, ParamValue]
Evaluate = Callable[[Preset, Params], dict[str, Scalar]]
Sample = Callable[[Preset, Params, int, np.random.SeedSequence], dict[str, Moments]]
Derive = Callable[[dict[str, Scalar], dict[str, float | None]], dict[str, tuple[Scalar, Any]]]


@dataclass(frozen=True)
class Param:
    """A model parameter: type, allowed range and default.

    ``default``: a value, a function of the preset (its operating point), or None (optional).
    """

    name: str
    kind: Literal["float", "int", "str", "bool"]
    doc: str
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple[str, ...] = ()
    default: ParamValue | Callable[[Preset], ParamValue] | None = None

    def range_text(self) -> str:
        lo = "(" if self.open_low else "["
        hi = ")" if self.open_high else "]"
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{lo}{low}, {high}{hi}"

    def normalise(self, value: object) -> ParamValue:
        """Check ``value`` and convert it to the parameter's type (``SpecError`` if bad)."""
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise SpecError(f"{self.name} must be true or false, got {value!r}")
            return value
        if self.kind == "str":
            if not isinstance(value, str) or (self.choices and value not in self.choices):
                raise SpecError(
                    f"{self.name} must be one of {', '.join(self.choices)}, got {value!r}"
                )
            return value
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise SpecError(f"{self.name} must be a number, got {value!r}")
        x = float(value)
        if not math.isfinite(x):
            raise SpecError(f"{self.name} must be finite, got {value!r}")
        if self.kind == "int" and x != round(x):
            raise SpecError(f"{self.name} must be an integer, got {value!r}")
        bad_low = self.low is not None and (x <= self.low if self.open_low else x < self.low)
        bad_high = self.high is not None and (x >= self.high if self.open_high else x > self.high)
        if bad_low or bad_high:
            raise SpecError(f"{self.name} = {value!r} is out of range {self.range_text()}")
        return round(x) if self.kind == "int" else x


@dataclass(frozen=True)
class Model:
    """A sweepable model: analytic (``evaluate``), Monte Carlo (``sample``) or both."""

    name: str
    doc: str
    params: tuple[Param, ...]
    evaluate: Evaluate | None = None
    sample: Sample | None = None
    quantities: tuple[str, ...] = ()  # sampled quantities; the first is the default stop target
    default_budget: SampleBudget | None = None
    check: Callable[[Preset, Params], None] | None = None
    derive: Derive | None = None
    analytic_ok: Callable[[Params], str | None] | None = None  # None: the analytic path applies

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


# ---- helpers ---------------------------------------------------------------------------------


def _suggest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _flatten(prefix: str, obj: object, out: dict[str, Scalar]) -> None:
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            _flatten(f"{prefix}.{i}", v, out)
    elif isinstance(obj, bool | int | np.integer):
        out[prefix] = int(obj)
    elif isinstance(obj, float | np.floating):
        out[prefix] = float(obj) if math.isfinite(obj) else None
    elif obj is None or isinstance(obj, str):
        out[prefix] = obj


def _link(preset: Preset, p: Params) -> Any:
    from qrepeater.link.heralding import ElementaryLink

    return ElementaryLink(preset.hardware, alpha=float(p["alpha"]), fiber_km=float(p["fiber_km"]))


def _alpha(preset: Preset) -> float:
    return preset.operating.alpha


def _alpha_diqkd(preset: Preset) -> float:
    return preset.operating.alpha_diqkd


def _fiber(preset: Preset) -> float:
    return preset.operating.fiber_km


ALPHA = Param("alpha", "float", "excitation probability", 0.0, 1.0, True, True, default=_alpha)
FIBER = Param("fiber_km", "float", "node-to-node fibre (km)", 0.0, 5000.0, default=_fiber)


def _process_fidelities(link: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Measured fidelity of each herald process (rows: single, double, noise) on each detector
    (columns: +1 -> psi+, -1 -> psi-). The heralded state is the weighted mixture of these
    (``ElementaryLink.state``), so the per-herald mean is an unbiased estimate of its
    fidelity."""
    from qrepeater.link.sampler import KIND_NAMES
    from qrepeater.quantum import apply_each, bell_fidelity, depolarizing

    ion = link.hardware.ion
    out = np.empty((len(KIND_NAMES), 2))
    for col, det in enumerate((1, -1)):
        states = link.process_states(det)
        for row, name in enumerate(KIND_NAMES):
            rho = states[name][1]
            if link.mechanisms.spam and ion.spam_error > 0:
                rho = apply_each(rho, depolarizing(ion.readout_shrink), 2)
            out[row, col] = bell_fidelity(rho, "psi+" if det == 1 else "psi-")
    return out


# ---- link ------------------------------------------------------------------------------------


def _link_evaluate(preset: Preset, p: Params) -> dict[str, Scalar]:
    out: dict[str, Scalar] = {}
    summary = dict(_link(preset, p).summary())
    for k in ("alpha", "fiber_km"):
        summary.pop(k, None)
    _flatten("", summary, out)
    return out


def _heralds(link: Any, n: int, seed: np.random.SeedSequence) -> Any:
    from qrepeater.link.sampler import sample_heralds

    return sample_heralds(link, n_pairs=n, seed=np.random.default_rng(seed))


def _link_sample(
    preset: Preset, p: Params, n: int, seed: np.random.SeedSequence
) -> dict[str, Moments]:
    link = _link(preset, p)
    h = _heralds(link, n, seed)
    fid = _process_fidelities(link)[h.kind, (h.detector == -1).astype(np.intp)]
    return {
        "wait_s": Moments.of(h.attempts * link.attempt_period_s),
        "fidelity": Moments.of(fid),
        "double_fraction": Moments.of(h.kind == 1),
        "noise_fraction": Moments.of(h.kind == 2),
    }


def _rate_from_wait(
    means: dict[str, Scalar], errors: dict[str, float | None]
) -> dict[str, tuple[Scalar, Any]]:
    """Herald rate as the inverse mean wait; its error by the delta method, ``se / mean^2``."""
    m, se = means.get("wait_s"), errors.get("wait_s")
    if not isinstance(m, float) or m <= 0:
        return {}
    return {"rate_hz": (1.0 / m, None if se is None else se / (m * m))}


# ---- memory ----------------------------------------------------------------------------------

WINDOW = Param("window_s", "float", "averaging window (s); default: mean wait", 0.0, None, True)


def _memory_evaluate(preset: Preset, p: Params) -> dict[str, Scalar]:
    from qrepeater.link.storage import StoredLink

    w = p.get("window_s")
    out: dict[str, Scalar] = {}
    summary = StoredLink(_link(preset, p)).summary(window_s=None if w is None else float(w))
    _flatten("", summary, out)
    return out


def _memory_sample(
    preset: Preset, p: Params, n: int, seed: np.random.SeedSequence
) -> dict[str, Moments]:
    from qrepeater.link.storage import StoredLink

    link = _link(preset, p)
    waits = _heralds(link, n, seed).attempts * link.attempt_period_s
    fid = StoredLink(link).fidelity(waits)
    out = {"avg_fidelity_infinite": Moments.of(fid), "wait_s": Moments.of(waits)}
    w = p.get("window_s")
    if w is not None:
        inside = waits <= float(w) + 1e-12
        out["avg_fidelity_window"] = Moments.of(np.where(inside, fid, np.nan))
        out["in_window"] = Moments.of(inside)
    return out


# ---- keyrate ---------------------------------------------------------------------------------

KEYRATE_PARAMS = (
    Param("chsh", "float", "CHSH value S (default: from the link model)", 0.0, TSIRELSON),
    Param("qber", "float", "QBER (default: from the link model)", 0.0, 0.5, open_high=True),
    Param(
        "alpha",
        "float",
        "excitation probability (when S, Q come from the link)",
        0.0,
        1.0,
        True,
        True,
    ),
    Param("fiber_km", "float", "fibre (km) (when S, Q come from the link)", 0.0, 5000.0),
    Param("rounds", "int", "total rounds N", 1, None),
    Param("key_rounds", "int", "key rounds n", 1, None),
    Param("test_rounds", "int", "test rounds t", 1, None),
    Param("test_fraction", "float", "t / N", 0.0, 1.0, True, True),
    Param("key_fraction", "float", "n / N (default 1 - test_fraction)", 0.0, 1.0, True),
    Param("eps", "float", "total soundness error", 0.0, 1.0, True, True, default=1e-5),
    Param("ec_efficiency", "float", "reconciliation efficiency f", 1.0, 10.0),
    Param(
        "method",
        "str",
        "finite-key bound",
        choices=KEYRATE_METHODS,
        default="phase-error",
    ),
)


def _keyrate_counts(p: Params) -> tuple[int, int, int] | None:
    if "rounds" not in p:
        if any(k in p for k in ("key_rounds", "test_rounds", "test_fraction", "key_fraction")):
            raise SpecError("round counts need 'rounds'")
        return None
    n = int(p["rounds"])
    if "test_fraction" in p:
        if "key_rounds" in p or "test_rounds" in p:
            raise SpecError("give either test_fraction or key_rounds and test_rounds, not both")
        t = round(float(p["test_fraction"]) * n)
        k = n - t if "key_fraction" not in p else round(float(p["key_fraction"]) * n)
        return n, k, t
    if "key_rounds" not in p or "test_rounds" not in p:
        raise SpecError("'rounds' needs key_rounds and test_rounds, or test_fraction")
    return n, int(p["key_rounds"]), int(p["test_rounds"])


def _keyrate_check(preset: Preset, p: Params) -> None:
    if ("chsh" in p) != ("qber" in p):
        raise SpecError("give both chsh and qber, or neither (then the link model sets them)")
    if "chsh" in p and ("alpha" in p or "fiber_km" in p):
        raise SpecError("alpha and fiber_km only apply when chsh and qber are not given")
    counts = _keyrate_counts(p)
    if counts is not None:
        n, k, t = counts  # the finite-key bounds need these (keyrate's FiniteKeyInputs)
        if k < 1 or t < 1 or k + t > n:
            raise SpecError(
                f"need key_rounds >= 1, test_rounds >= 1 and key_rounds + test_rounds <= "
                f"rounds, got {k}, {t} of {n}"
            )


def _keyrate_resolve(preset: Preset, p: dict[str, ParamValue]) -> None:
    if "chsh" not in p and "qber" not in p:
        p.setdefault("alpha", _alpha_diqkd(preset))
        p.setdefault("fiber_km", _fiber(preset))


def _keyrate_evaluate(preset: Preset, p: Params) -> dict[str, Scalar]:
    from qrepeater.diqkd.keyrate import asymptotic_rate, finite_key

    if "chsh" in p:
        chsh, qber = float(p["chsh"]), float(p["qber"])
    else:
        link = _link(preset, p)
        chsh, qber = float(link.chsh()), float(link.qber())
    out: dict[str, Scalar] = {
        "chsh": chsh,
        "qber": qber,
        "asymptotic_rate": asymptotic_rate(chsh=chsh, qber=qber),
    }
    counts = _keyrate_counts(p)
    if counts is not None:
        n, k, t = counts
        out.update(rounds=n, key_rounds=k, test_rounds=t)
        if chsh <= 2.0:  # no Bell violation: the protocol aborts, no key
            out.update(finite_key_bits=0, finite_key_rate=0.0)
        else:
            ec = p.get("ec_efficiency")
            r = finite_key(
                method=cast(Any, p["method"]),
                rounds=n,
                key_rounds=k,
                test_rounds=t,
                chsh=chsh,
                qber=qber,
                eps=float(p["eps"]),
                ec_efficiency=None if ec is None else float(ec),
            )
            out.update(finite_key_bits=r.finite_key_bits, finite_key_rate=r.finite_key_rate)
    return out


# ---- diqkd -----------------------------------------------------------------------------------


def _serial(config: Any) -> Any:
    """``config`` with its internal parallelism (reconciliation ``workers``) set to 1: the sweep
    owns the parallelism, one piece per core, and daemonic Dask workers may not fork pools."""
    names = {f.name for f in dataclasses.fields(config)}
    if "workers" in names and config.workers != 1:
        return dataclasses.replace(config, workers=1)
    if "reconcile" in names:
        inner = _serial(config.reconcile)
        if inner is not config.reconcile:
            return dataclasses.replace(config, reconcile=inner)
    return config


def _int_seed(ss: np.random.SeedSequence) -> int:
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


def _distill_config(p: Params) -> Any:
    from qrepeater.diqkd.pipeline import DistillConfig

    return _serial(DistillConfig(method=cast(Any, p["method"]), eps=float(p["eps"])))


def _diqkd_check(preset: Preset, p: Params) -> None:
    try:
        _distill_config(p)
    except QRepeaterError as exc:
        raise SpecError(str(exc)) from None


def _diqkd_sample(
    preset: Preset, p: Params, n: int, seed: np.random.SeedSequence
) -> dict[str, Moments]:
    from qrepeater.diqkd.pipeline import distill
    from qrepeater.diqkd.rounds import simulate_from_preset

    config = _distill_config(p)
    rows: dict[str, list[float]] = {
        k: []
        for k in (
            "secret_bits",
            "key_rate",
            "secret_bits_per_s",
            "aborted",
            "chsh",
            "qber",
            "ec_efficiency",
        )
    }
    for run_seed in seed.spawn(n):
        sim_ss, dist_ss = run_seed.spawn(2)
        run = simulate_from_preset(
            preset,
            n_rounds=int(p["rounds"]),
            seed=sim_ss,
            fiber_km=float(p["fiber_km"]),
            alpha=float(p["alpha"]),
        )
        rep = distill(
            run.alice,
            run.bob,
            alice_meta=run.metadata,
            bob_meta=run.metadata,
            config=config,
            seed=_int_seed(dist_ss),
        ).report
        bits = float(rep.secret_bits)
        rows["secret_bits"].append(bits)
        rows["key_rate"].append(bits / len(run))
        rows["secret_bits_per_s"].append(bits / run.duration_s if run.duration_s > 0 else math.nan)
        rows["aborted"].append(float(rep.aborted))
        for k in ("chsh", "qber", "ec_efficiency"):
            v = getattr(rep, k)
            rows[k].append(math.nan if v is None else float(v))
    return {k: Moments.of(v) for k, v in rows.items()}


# ---- reconcile -------------------------------------------------------------------------------


def _reconcile_config(p: Params) -> Any:
    from qrepeater.qkdpp.reconciliation import ReconcileConfig

    block = int(p["block_length"])
    base = ReconcileConfig()
    return _serial(
        dataclasses.replace(
            base, block_length=block, min_block_length=min(base.min_block_length, block)
        )
    )


def _reconcile_check(preset: Preset, p: Params) -> None:
    try:
        _reconcile_config(p)
    except QRepeaterError as exc:
        raise SpecError(str(exc)) from None


def _reconcile_sample(
    preset: Preset, p: Params, n: int, seed: np.random.SeedSequence
) -> dict[str, Moments]:
    from qrepeater.qkdpp.channel import PublicChannel
    from qrepeater.qkdpp.reconciliation import reconcile

    cfg = _reconcile_config(p)
    qber, bits = float(p["qber"]), int(p["key_bits"])
    rows: dict[str, list[float]] = {
        k: [] for k in ("efficiency", "success", "leak_bits", "observed_qber", "frames_failed")
    }
    for run_seed in seed.spawn(n):
        rng = np.random.default_rng(run_seed)
        alice = rng.integers(0, 2, bits, dtype=np.uint8)
        bob = alice ^ (rng.random(bits) < qber).astype(np.uint8)
        r = reconcile(alice, bob, qber=qber, channel=PublicChannel(), seed=rng, config=cfg)
        rows["efficiency"].append(r.efficiency if r.success else math.nan)
        rows["success"].append(float(r.success))
        rows["leak_bits"].append(float(r.leak_bits))
        rows["observed_qber"].append(r.observed_qber if r.success else math.nan)
        rows["frames_failed"].append(float(r.frames_failed))
    return {k: Moments.of(v) for k, v in rows.items()}


# ---- chain ----------------------------------------------------------------------------------

CHAIN_PARAMS = (
    Param("total_km", "float", "end-to-end fibre (km)", 0.0, 20_000.0, default=100.0),
    Param("segments", "int", "elementary links in the chain", 1, 1024, default=4),
    Param("alpha", "float", "excitation probability", 0.0, 1.0, True, True, default=_alpha),
    Param(
        "protocol", "str", "swapping protocol", choices=("nested", "swap-asap"), default="nested"
    ),
    Param("cutoff_s", "float", "memory cut-off (s); none if absent", 0.0, None),
    Param("purify", "str", "segment purification", choices=PURIFY_METHODS),
    Param("memories", "int", "memories per side and segment", 1, 64),
    Param("delays", "bool", "classical communication delays", default=True),
    Param(
        "memory_model",
        "str",
        "memory decay model",
        choices=("exponential", "calibrated"),
        default="exponential",
    ),
    Param(
        "coherence_time_s",
        "float",
        "memory coherence time (s); preset's if absent",
        0.0,
        None,
        True,
    ),
    Param("zz_decay_per_s", "float", "<ZZ> decay slope (1/s); preset's if absent", 0.0, None),
)


def _chain(preset: Preset, p: Params) -> Any:
    from qrepeater.repeater.chain import Chain

    kw: dict[str, Any] = {
        k: p[k]
        for k in ("cutoff_s", "purify", "memories", "coherence_time_s", "zz_decay_per_s")
        if k in p
    }
    return Chain.from_preset(
        preset,
        total_km=float(p["total_km"]),
        segments=int(p["segments"]),
        alpha=float(p["alpha"]),
        protocol=cast(Any, p["protocol"]),
        delays=bool(p["delays"]),
        memory_model=cast(Any, p["memory_model"]),
        **kw,
    )


def _chain_check(preset: Preset, p: Params) -> None:
    try:
        _chain(preset, p)
    except QRepeaterError as exc:
        raise SpecError(str(exc)) from None


def _chain_analytic_ok(p: Params) -> str | None:
    """The exact engine covers nested chains (and N <= 2) with the exponential memory model
    (``Chain.exact``); other chains need the Monte-Carlo engine, i.e. a budget."""
    nested = p["protocol"] == "nested" or int(p["segments"]) <= 2
    if nested and p["memory_model"] == "exponential":
        return None
    return "this chain needs the Monte-Carlo engine: add a [budget] (samples = deliveries)"


def _chain_evaluate(preset: Preset, p: Params) -> dict[str, Scalar]:
    out: dict[str, Scalar] = {}
    _flatten("", _chain(preset, p).evaluate("exact").to_dict(), out)
    return out


def _chain_sample(
    preset: Preset, p: Params, n: int, seed: np.random.SeedSequence
) -> dict[str, Moments]:
    """First end-to-end deliveries of ``n`` independent chain realisations
    (``Chain.monte_carlo``); correlators as measured, with the end nodes' readout shrink
    applied as ``Chain.evaluate`` does."""
    chain = _chain(preset, p)
    d = chain.monte_carlo(n=n, seed=seed)
    f = d.f * chain.readout_shrink**2
    return {
        "wait_s": Moments.of(d.time * chain.dt_s),
        "fidelity": Moments.of((1.0 + f.sum(axis=0)) / 4.0),
        "correlators.xx": Moments.of(f[0]),
        "correlators.yy": Moments.of(f[1]),
        "correlators.zz": Moments.of(-f[2]),
    }


def _chain_derive(
    means: dict[str, Scalar], errors: dict[str, float | None]
) -> dict[str, tuple[Scalar, Any]]:
    """Rate from the mean wait (delta method); CHSH, QBER and the asymptotic DI-QKD rate of the
    mean delivered state (their errors are not propagated: reported as None)."""
    from qrepeater.diqkd.keyrate import asymptotic_rate
    from qrepeater.repeater.segments import chsh_qber

    out = _rate_from_wait(means, errors)
    xx, zz = means.get("correlators.xx"), means.get("correlators.zz")
    if isinstance(xx, float) and isinstance(zz, float):
        s, q = chsh_qber([xx, 0.0, -zz])
        out["chsh"] = (s, None)
        out["qber"] = (q, None)
        out["diqkd_asymptotic_rate"] = (asymptotic_rate(chsh=s, qber=min(q, 0.5 - 1e-12)), None)
    return out


# ---- registry --------------------------------------------------------------------------------

MODELS: dict[str, Model] = {
    m.name: m
    for m in (
        Model(
            "link",
            "elementary link: rate, fidelity, correlators, error budget (analytic); with a "
            "budget, Monte-Carlo heralds (wait, fidelity, process fractions)",
            (ALPHA, FIBER),
            evaluate=_link_evaluate,
            sample=_link_sample,
            quantities=("wait_s", "fidelity", "double_fraction", "noise_fraction"),
            derive=_rate_from_wait,
        ),
        Model(
            "memory",
            "stored pair: fidelity decay, wait averages, deterministic delivery, swap "
            "(analytic); with a budget, the stored-pair fidelity over sampled waits",
            (ALPHA, FIBER, WINDOW),
            evaluate=_memory_evaluate,
            sample=_memory_sample,
            quantities=("avg_fidelity_infinite", "wait_s", "avg_fidelity_window", "in_window"),
        ),
        Model(
            "keyrate",
            "DI-QKD asymptotic rate and finite key (S, Q given or from the link model)",
            KEYRATE_PARAMS,
            evaluate=_keyrate_evaluate,
            check=_keyrate_check,
        ),
        Model(
            "diqkd",
            "simulated DI-QKD runs distilled to keys (one run per sample)",
            (
                Param(
                    "alpha",
                    "float",
                    "excitation probability",
                    0.0,
                    1.0,
                    True,
                    True,
                    default=_alpha_diqkd,
                ),
                FIBER,
                Param("rounds", "int", "rounds per run", 1000, 100_000_000, default=100_000),
                Param("eps", "float", "total soundness error", 0.0, 1.0, True, True, default=1e-5),
                Param(
                    "method",
                    "str",
                    "finite-key bound of the pipeline",
                    choices=KEYRATE_METHODS,
                    default="phase-error",
                ),
            ),
            sample=_diqkd_sample,
            check=_diqkd_check,
            quantities=(
                "secret_bits",
                "key_rate",
                "secret_bits_per_s",
                "aborted",
                "chsh",
                "qber",
                "ec_efficiency",
            ),
            default_budget=SampleBudget(max_samples=4, piece_samples=1),
        ),
        Model(
            "reconcile",
            "LDPC reconciliation of random keys at a QBER (one key per sample)",
            (
                Param("qber", "float", "bit error rate", 0.0, 0.5, True, True, default=0.036),
                Param("key_bits", "int", "key length", 1000, 10_000_000, default=105_976),
                Param("block_length", "int", "longest LDPC frame", 1000, 1_000_000, default=60_000),
            ),
            sample=_reconcile_sample,
            quantities=("efficiency", "success", "leak_bits", "observed_qber", "frames_failed"),
            default_budget=SampleBudget(max_samples=20, piece_samples=5),
            check=_reconcile_check,
        ),
        Model(
            "chain",
            "repeater chain of the preset's link: exact engine (nested doubling), or with a "
            "budget the Monte-Carlo engine (any protocol; samples = deliveries)",
            CHAIN_PARAMS,
            evaluate=_chain_evaluate,
            sample=_chain_sample,
            quantities=("wait_s", "fidelity", "correlators.xx", "correlators.yy", "correlators.zz"),
            check=_chain_check,
            derive=_chain_derive,
            analytic_ok=_chain_analytic_ok,
        ),
    )
}

#: parameter defaults that depend on other parameters
_RESOLVE: dict[str, Callable[[Preset, dict[str, ParamValue]], None]] = {
    "keyrate": _keyrate_resolve,
}


def get_model(name: object) -> Model:
    """The model called ``name`` (``SpecError`` with a suggestion if unknown)."""
    if not isinstance(name, str) or name not in MODELS:
        raise SpecError(
            f"unknown model {name!r}{_suggest(str(name), list(MODELS))}; "
            f"available: {', '.join(MODELS)}"
        )
    return MODELS[name]


def split_overrides(
    preset: Preset, params: Mapping[str, ParamValue]
) -> tuple[Preset, dict[str, ParamValue]]:
    """Apply the preset-key parameters (``section.name``) to the preset; return the rest."""
    overrides = {k: float(v) for k, v in params.items() if "." in k}
    rest = {k: v for k, v in params.items() if "." not in k}
    return (preset.replace(overrides) if overrides else preset), rest


def make_task(
    model: str,
    params: Mapping[str, object],
    *,
    preset: Preset,
    budget: SampleBudget | None = None,
) -> Task:
    """A validated :class:`Task` with the model's defaults filled in.

    Raises :class:`SpecError` for an unknown model or parameter (with a suggestion), a value
    out of range, or a budget on an analytic-only model.
    """
    m = get_model(model)
    names = [p.name for p in m.params]
    clean: dict[str, ParamValue] = {}
    for key, value in params.items():
        if "." in key:
            if key not in preset.quantities:
                raise SpecError(
                    f"unknown preset parameter '{key}'{_suggest(key, list(preset.quantities))}"
                )
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SpecError(f"{key} must be a number, got {value!r}")
            clean[key] = float(value)
            continue
        spec = m.param(key)
        if spec is None:
            raise SpecError(
                f"unknown parameter '{key}' for model '{m.name}'"
                f"{_suggest(key, names + list(preset.quantities))}; "
                f"parameters: {', '.join(names)}"
            )
        clean[key] = spec.normalise(value)
    try:
        base, _ = split_overrides(preset, clean)
    except QRepeaterError as exc:
        raise SpecError(str(exc)) from None
    for spec in m.params:
        if spec.name not in clean and spec.default is not None:
            d = spec.default(base) if callable(spec.default) else spec.default
            clean[spec.name] = spec.normalise(d)
    if m.name in _RESOLVE:
        _RESOLVE[m.name](base, clean)
    if m.check is not None:
        m.check(base, clean)
    if budget is None and m.evaluate is None:
        budget = m.default_budget
    if budget is None and m.analytic_ok is not None:
        problem = m.analytic_ok(clean)
        if problem is not None:
            raise SpecError(problem)
    if budget is not None:
        if m.sample is None:
            raise SpecError(f"model '{m.name}' is analytic: it takes no [budget]")
        if budget.target is not None and budget.target not in m.quantities:
            raise SpecError(
                f"budget.target '{budget.target}' is not a quantity of '{m.name}'"
                f"{_suggest(budget.target, list(m.quantities))}; "
                f"quantities: {', '.join(m.quantities)}"
            )
    if m.name in ("link", "memory", "diqkd"):
        try:
            _link(base, clean)
        except QRepeaterError as exc:
            raise SpecError(str(exc)) from None
    return Task(model=m.name, params=tuple(sorted(clean.items())), preset=preset, budget=budget)


def stop_target(task: Task) -> str:
    """The quantity whose relative error ends a task's sampling early."""
    assert task.budget is not None
    return task.budget.target or get_model(task.model).quantities[0]


def run_piece(task: Task, piece: int) -> TaskStats:
    """Compute piece ``piece`` of ``task`` (runs in a worker process; deterministic)."""
    m = get_model(task.model)
    preset, params = split_overrides(task.preset, task.param_dict)
    t0 = time.perf_counter()
    if task.budget is None:
        if m.evaluate is None:  # pragma: no cover - make_task gives such tasks a budget
            raise SpecError(f"model '{m.name}' needs a budget")
        try:
            values = m.evaluate(preset, params)
        except QRepeaterError as exc:
            # a point outside the model's reach (a chain that never delivers...) is a result of
            # the sweep, recorded with its reason, not the end of the sweep
            values = {"error": " ".join(str(exc).split())}
        return TaskStats(task.strong_id, frozenset({0}), 1, time.perf_counter() - t0, values=values)
    if m.sample is None:  # pragma: no cover - make_task refuses this
        raise SpecError(f"model '{m.name}' is analytic")
    n = task.budget.piece_size(piece)
    moments = m.sample(preset, params, n, task.seed(piece))
    return TaskStats(
        task.strong_id, frozenset({piece}), n, time.perf_counter() - t0, moments=moments
    )


def run_batch(items: list[tuple[Task, int]]) -> list[TaskStats]:
    """:func:`run_piece` on several (task, piece) pairs: one round trip for many small tasks."""
    return [run_piece(t, i) for t, i in items]
