"""Presets: strict loading, provenance, round trip, and consistency with calibrate()."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from qrepeater.calibrate import calibrate
from qrepeater.errors import CalibrationError, ParameterError, PresetError
from qrepeater.hardware import Fiber, IonQubit
from qrepeater.link.heralding import ElementaryLink
from qrepeater.presets import Preset, available_presets, load_preset, parse_preset, write_preset


def test_default_preset_loads_with_provenance(preset: Preset) -> None:
    assert "ustc2025" in available_presets()
    assert preset.label == "ustc2025@1.0"
    kinds = {q.kind for q in preset.quantities.values()}
    assert kinds == {"paper", "fitted", "assumed"}
    for key, q in preset.quantities.items():
        assert q.source, key
        assert (q.kind == "fitted") == (q.fitted_to is not None), key


def test_fitted_values_equal_what_calibrate_returns(preset: Preset) -> None:
    result = calibrate(preset)
    assert result.values.keys() == preset.fitted().keys()
    for key, value in result.values.items():
        assert preset.quantities[key].value == pytest.approx(value, rel=1e-6), key


def test_changing_an_assumed_value_recalibrates_to_the_same_targets(preset: Preset) -> None:
    edited = preset.replace({"detector.efficiency": 0.7, "conversion.saturation_pump_mw": 120.0})
    new = calibrate(edited).preset
    assert new.quantities["conversion.peak_efficiency"].value != pytest.approx(
        preset.quantities["conversion.peak_efficiency"].value, rel=1e-3
    )
    t = new.target("herald_rate_hz")
    link = ElementaryLink(
        new.hardware, alpha=t.condition("alpha"), fiber_km=t.condition("fiber_km")
    )
    assert link.rate_hz == pytest.approx(t.value, rel=1e-9)
    assert new.hardware.link_efficiency(10.0) == pytest.approx(0.091, rel=1e-9)


def test_impossible_targets_raise_calibration_error(preset: Preset) -> None:
    with pytest.raises(CalibrationError):
        calibrate(preset.replace({"detector.efficiency": 0.01}))  # would need QFC efficiency > 1


def test_round_trip_through_toml(preset: Preset, tmp_path: Path) -> None:
    path = tmp_path / "copy.toml"
    write_preset(preset, path)
    again = load_preset(str(path))
    assert again.quantities == preset.quantities
    assert again.targets == preset.targets
    assert again.hardware == preset.hardware


def _text() -> str:
    return load_preset().to_toml()


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "\npump_mw = {",
            "\npump_mv = {",
            "unknown key 'conversion.pump_mv' (did you mean 'pump_mw'?)",
        ),
        (
            'kind = "paper", source = "interference',
            'kind = "guess", source = "interference',
            "kind",
        ),
        ("[phase]", "[phases]", "unknown section [phases]"),
    ],
)
def test_misspelt_keys_are_named(old: str, new: str, message: str) -> None:
    text = _text()
    assert old in text
    with pytest.raises(PresetError, match=re.escape(message)):
        parse_preset(text.replace(old, new, 1))


def test_missing_key_is_named() -> None:
    lines = [ln for ln in _text().splitlines() if not ln.startswith("window_s")]
    with pytest.raises(PresetError, match=re.escape("missing key 'detector.window_s'")):
        parse_preset("\n".join(lines))


def test_invalid_value_is_rejected() -> None:
    text = _text().replace("contrast = { value = 0.986", "contrast = { value = 1.5")
    with pytest.raises(PresetError, match="contrast"):
        parse_preset(text)


def test_unknown_preset_and_missing_file() -> None:
    with pytest.raises(PresetError, match=r"unknown preset 'ustc2052'.*did you mean 'ustc2025'"):
        load_preset("ustc2052")
    with pytest.raises(PresetError, match="not found"):
        load_preset("/nonexistent/lab.toml")


def test_invalid_toml() -> None:
    with pytest.raises(PresetError, match="invalid TOML"):
        parse_preset("[meta\nname=")


def test_dataclasses_validate_on_construction() -> None:
    with pytest.raises(ParameterError):
        Fiber(loss_db_per_km=-0.1)
    with pytest.raises(ParameterError):
        IonQubit(residual_coherence=0.9, spam_error=0.6, d52_lifetime_s=1.16)
    f = Fiber()
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.loss_db_per_km = 0.3  # type: ignore[misc]


def test_replace_rejects_unknown_parameter(preset: Preset) -> None:
    with pytest.raises(PresetError, match=re.escape("did you mean 'detector.efficiency'")):
        preset.replace({"detector.eficiency": 0.5})
