"""Re-derive a preset's fitted parameters from its measured targets.

Each fitted parameter has one rule: the target it is fitted to and how to solve for it with the
other parameters fixed (closed form or a bracketed root, :func:`scipy.optimize.brentq`). The rules
are applied in dependency order and the sweep is repeated until the values stop changing, so a
preset stays consistent when an assumed value (say the detector efficiency) is edited.

Rules (target -> parameter):

* ``link_efficiency`` -> ``conversion.peak_efficiency`` (closed form);
* ``noise_cps`` -> ``conversion.noise_cps_per_mw`` (closed form, given the dark counts);
* ``snr`` -> ``detector.window_s`` (SNR falls monotonically with the window);
* ``herald_rate_hz`` -> ``timing.attempt_period_base_s`` (closed form ``T_0 = P_h/R - L/v_g``);
* ``diqkd_round_rate_hz`` -> ``operating.alpha_diqkd`` (rate rises with alpha);
* ``qber`` -> ``ion.spam_error``; ``chsh`` -> ``ion.residual_coherence``;
* ``qber_100km`` -> ``detector.dark_count_cps`` (more length-independent noise, more QBER at
  long distance, with the total noise at the noise target held fixed);
* ``chsh`` (its uncertainty) -> ``operating.diqkd_prob_y2``: an equal split of ``t`` test rounds
  over the four CHSH settings gives ``Var(S) = (16 - S^2)/t`` when every ``|E_xy| = S/4``, so
  ``t = (16 - S^2)/sigma_S^2`` and ``P(Y=2) = 1 - t/N``;
* ``diqkd_key_rounds`` -> ``operating.diqkd_prob_x0 = (n_key/N) / P(Y=2)``;
* ``memory_avg_fidelity_infinite`` -> ``memory.zz_decay_per_s`` (see :mod:`qrepeater.link.storage`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from scipy.optimize import brentq

from qrepeater.errors import CalibrationError, ParameterError, PresetError
from qrepeater.link.heralding import ElementaryLink
from qrepeater.presets import Preset

Solver = Callable[[Preset, str], float]


def _link(p: Preset, *, alpha: float, fiber_km: float) -> ElementaryLink:
    return ElementaryLink(p.hardware, alpha=alpha, fiber_km=fiber_km)


def _root(f: Callable[[float], float], lo: float, hi: float, what: str) -> float:
    try:
        flo, fhi = f(lo), f(hi)
    except ParameterError as exc:
        raise CalibrationError(f"cannot fit {what}: {exc}") from None
    if flo * fhi > 0:
        raise CalibrationError(
            f"cannot fit {what}: the target is out of the model's reach in [{lo:g}, {hi:g}]"
        )
    return float(brentq(f, lo, hi, xtol=1e-15, rtol=1e-13, maxiter=200))


def _peak_efficiency(p: Preset, target: str) -> float:
    t = p.target(target)
    hw = p.hardware
    shape = hw.conversion.conversion_efficiency() / hw.conversion.peak_efficiency
    rest = shape * hw.conversion.filter_transmission * hw.detector.efficiency
    value = t.value / (rest * hw.fiber.transmission(t.condition("fiber_km") / 2))
    if not 0 < value <= 1:
        raise CalibrationError(
            f"link efficiency {t.value} needs a conversion efficiency of {value:.3g} (> 1)"
        )
    return value


def _noise_per_mw(p: Preset, target: str) -> float:
    t = p.target(target)
    hw = p.hardware
    remaining = t.value - hw.detector.dark_count_cps
    if remaining < 0:
        raise CalibrationError(
            f"dark counts ({hw.detector.dark_count_cps:g} cps) exceed the total noise "
            f"{t.value:g} cps"
        )
    per_photon = hw.detector.efficiency * hw.fiber.transmission(t.condition("fiber_km") / 2)
    return remaining / (hw.conversion.pump_mw * per_photon)


def _window(p: Preset, target: str) -> float:
    t = p.target(target)

    def f(log_w: float) -> float:
        q = p.replace({"detector.window_s": math.exp(log_w)})
        return math.log(
            _link(q, alpha=t.condition("alpha"), fiber_km=t.condition("fiber_km")).snr
        ) - math.log(t.value)

    return math.exp(_root(f, math.log(1e-12), math.log(1e-3), "the detection window"))


def _attempt_period(p: Preset, target: str) -> float:
    t = p.target(target)
    link = _link(p, alpha=t.condition("alpha"), fiber_km=t.condition("fiber_km"))
    value = link.herald_probability / t.value - p.hardware.fiber.delay_s(link.fiber_km)
    if value <= 0:
        raise CalibrationError(
            f"herald rate {t.value} /s is faster than the fibre round trip allows"
        )
    return value


def _alpha_diqkd(p: Preset, target: str) -> float:
    t = p.target(target)
    km = t.condition("fiber_km")
    return _root(
        lambda a: _link(p, alpha=a, fiber_km=km).rate_hz - t.value,
        1e-6,
        0.999,
        "the DI-QKD excitation probability",
    )


def _diqkd_link(p: Preset, fiber_km: float) -> ElementaryLink:
    return _link(p, alpha=p.operating.alpha_diqkd, fiber_km=fiber_km)


def _fit_diqkd(
    p: Preset, target: str, *, key: str, observable: str, bracket: tuple[float, float], what: str
) -> float:
    """Solve ``key`` so the DI-QKD link's ``observable`` (``chsh`` or ``qber``) hits the target."""
    t = p.target(target)
    km = t.condition("fiber_km")

    def f(v: float) -> float:
        link = _diqkd_link(p.replace({key: v}), km)
        return float(getattr(link, observable)()) - t.value

    return _root(f, *bracket, what)


def _spam(p: Preset, target: str) -> float:
    return _fit_diqkd(
        p,
        target,
        key="ion.spam_error",
        observable="qber",
        bracket=(0.0, 0.25),
        what="the SPAM error",
    )


def _residual_coherence(p: Preset, target: str) -> float:
    return _fit_diqkd(
        p,
        target,
        key="ion.residual_coherence",
        observable="chsh",
        bracket=(0.0, 1.0),
        what="the residual coherence",
    )


def _dark_counts(p: Preset, target: str) -> float:
    t = p.target(target)
    km = t.condition("fiber_km")
    noise = p.fitted().get("conversion.noise_cps_per_mw")
    total = p.target(noise.fitted_to).value if noise and noise.fitted_to else None
    hi = total if total is not None else 1e3

    def f(dark: float) -> float:
        q = p.replace({"detector.dark_count_cps": dark})
        if noise is not None and noise.fitted_to:
            q = q.replace({"conversion.noise_cps_per_mw": _noise_per_mw(q, noise.fitted_to)})
        return _diqkd_link(q, km).qber() - t.value

    return _root(f, 0.0, hi, "the length-independent noise")


def _prob_y2(p: Preset, target: str) -> float:
    t = p.target(target)
    if t.uncertainty is None or t.uncertainty <= 0:
        raise CalibrationError(f"target '{target}' needs an uncertainty to infer the test fraction")
    rounds = p.target("diqkd_key_rounds").condition("rounds")
    tests = (16.0 - t.value**2) / t.uncertainty**2
    value = 1.0 - tests / rounds
    if not 0 < value < 1:
        raise CalibrationError(
            f"CHSH error bar implies {tests:.0f} test rounds out of {rounds:.0f}"
        )
    return value


def _prob_x0(p: Preset, target: str) -> float:
    t = p.target(target)
    value = t.value / t.condition("rounds") / p.operating.diqkd_prob_y2
    if not 0 < value < 1:
        raise CalibrationError(
            f"key fraction {t.value / t.condition('rounds'):.4f} needs P(X=0) = {value:.3f}"
        )
    return value


def _zz_decay(p: Preset, target: str) -> float:
    from qrepeater.link.storage import StoredLink

    t = p.target(target)
    link = _link(p, alpha=t.condition("alpha"), fiber_km=t.condition("fiber_km"))

    def f(kappa: float) -> float:
        q = p.replace({"memory.zz_decay_per_s": kappa})
        return (
            StoredLink(
                link.__class__(q.hardware, alpha=link.alpha, fiber_km=link.fiber_km)
            ).average_fidelity()
            - t.value
        )

    return _root(f, 0.0, 10.0 / p.hardware.memory.coherence_time_s, "the <ZZ> decay slope")


#: parameter -> (target it must be fitted to, solver), in dependency order.
RULES: dict[str, tuple[str, Solver]] = {
    "conversion.peak_efficiency": ("link_efficiency", _peak_efficiency),
    "conversion.noise_cps_per_mw": ("noise_cps", _noise_per_mw),
    "detector.window_s": ("snr", _window),
    "timing.attempt_period_base_s": ("herald_rate_hz", _attempt_period),
    "operating.alpha_diqkd": ("diqkd_round_rate_hz", _alpha_diqkd),
    "ion.spam_error": ("qber", _spam),
    "ion.residual_coherence": ("chsh", _residual_coherence),
    "detector.dark_count_cps": ("qber_100km", _dark_counts),
    "operating.diqkd_prob_y2": ("chsh", _prob_y2),
    "operating.diqkd_prob_x0": ("diqkd_key_rounds", _prob_x0),
    "memory.zz_decay_per_s": ("memory_avg_fidelity_infinite", _zz_decay),
}


@dataclass(frozen=True)
class CalibrationResult:
    """Fitted values, the preset carrying them, and the sweeps it took to converge."""

    values: Mapping[str, float]
    preset: Preset
    sweeps: int


def calibrate(preset: Preset, *, rtol: float = 1e-12, max_sweeps: int = 60) -> CalibrationResult:
    """Solve every fitted parameter of ``preset`` for its target; return the consistent preset."""
    fitted = preset.fitted()
    for key, q in fitted.items():
        if key not in RULES:
            raise PresetError(f"no calibration rule for fitted parameter '{key}'")
        if q.fitted_to != RULES[key][0]:
            raise PresetError(
                f"'{key}' can only be fitted to '{RULES[key][0]}', not '{q.fitted_to}'"
            )
    current = preset
    for sweep in range(1, max_sweeps + 1):
        changed = 0.0
        for key, (target, solve) in RULES.items():
            if key not in fitted:
                continue
            old = current.quantities[key].value
            new = solve(current, target)
            current = current.replace({key: new})
            changed = max(changed, abs(new - old) / max(abs(new), 1e-300))
        if changed <= rtol:
            values = {k: current.quantities[k].value for k in fitted}
            return CalibrationResult(values=values, preset=current, sweeps=sweep)
    raise CalibrationError(f"calibration did not converge in {max_sweeps} sweeps")
