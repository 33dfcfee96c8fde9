"""Issue 8, items 7-11 through the Python API: bad calls raise a ``qrepeater.errors`` class."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import qrepeater
from qrepeater.diqkd.estimate import estimate_bell
from qrepeater.diqkd.pipeline import DistillConfig, distill
from qrepeater.diqkd.records import read_run, write_run
from qrepeater.diqkd.rounds import DIQKDRun, simulate_from_preset
from qrepeater.errors import (
    CorruptRecordError,
    ParameterError,
    PresetError,
    QRepeaterError,
    RecordError,
)
from qrepeater.link.heralding import ElementaryLink
from qrepeater.link.sampler import sample_attempts, sample_heralds
from qrepeater.presets import Preset, load_preset, parse_preset
from qrepeater.presets.units import canonical_unit, to_canonical
from qrepeater.qkdpp.keyfiles import read_key_bits, write_key_pair


@pytest.fixture(scope="module")
def link(preset: Preset) -> ElementaryLink:
    return ElementaryLink.from_preset(preset)


@pytest.fixture(scope="module")
def small_run(preset: Preset) -> DIQKDRun:
    return simulate_from_preset(preset, n_rounds=2_000, seed=5)


# ---- item 7 / 11: link and sampler ---------------------------------------------------------------
@pytest.mark.parametrize("km", [5e4, 1e6])
def test_link_too_long_to_herald(km: float) -> None:
    with pytest.raises(ParameterError, match="never heralds"):
        ElementaryLink.from_preset(fiber_km=km).fidelity()


@pytest.mark.parametrize(
    ("key", "value"), [("detector.dark_count_cps", 1e12), ("detector.window_s", 1e300)]
)
def test_noise_in_every_window(preset: Preset, key: str, value: float) -> None:
    with pytest.raises(ParameterError, match="noise click"):
        ElementaryLink.from_preset(preset.replace({key: value}))


@pytest.mark.parametrize("hardware", [None, "x", 3])
def test_link_needs_hardware(hardware: Any) -> None:
    with pytest.raises(ParameterError, match="LinkHardware"):
        ElementaryLink(hardware, alpha=0.1, fiber_km=1.0)


@pytest.mark.parametrize("seed", [-1, "x", 1.5, True])
def test_sampler_seed(link: ElementaryLink, seed: Any) -> None:
    with pytest.raises(ParameterError, match="seed"):
        sample_heralds(link, n_pairs=10, seed=seed)
    with pytest.raises(ParameterError, match="seed"):
        sample_attempts(link, n_attempts=10, seed=seed)


@pytest.mark.parametrize("n", [1e13, 10**13, "x", None, -3, 0, 2.5, float("nan")])
def test_sampler_size(link: ElementaryLink, n: Any) -> None:
    with pytest.raises(ParameterError, match="n_pairs"):
        sample_heralds(link, n_pairs=n, seed=1)


def test_sampler_still_accepts_generators_and_sequences(link: ElementaryLink) -> None:
    a = sample_heralds(link, n_pairs=50, seed=np.random.SeedSequence(3))
    b = sample_heralds(link, n_pairs=50, seed=np.random.default_rng(np.random.SeedSequence(3)))
    assert np.array_equal(a.time_s, b.time_s)
    assert len(sample_heralds(link, n_pairs=5, seed=np.int64(2))) == 5  # type: ignore[arg-type]


# ---- item 8: preset units ------------------------------------------------------------------------
def _with_unit(field: str, value: str, unit: str) -> str:
    import re

    text = load_preset().to_toml()
    return re.sub(
        rf'^({field} = {{ value = )[^,]+(, unit = ")[^"]*',
        lambda m: m.group(1) + value + m.group(2) + unit,
        text,
        count=1,
        flags=re.M,
    )


def test_units_are_converted_when_unambiguous() -> None:
    p = parse_preset(_with_unit("coherence_time_s", "550", "ms"))
    assert p.hardware.memory.coherence_time_s == pytest.approx(0.55)
    assert p.quantities["memory.coherence_time_s"].unit == "s"
    q = parse_preset(_with_unit("pump_mw", "0.06", "W"))
    assert q.quantities["conversion.pump_mw"].value == pytest.approx(60.0)
    # converted presets describe the same link as the original
    assert parse_preset(p.to_toml()).hardware == load_preset().hardware


@pytest.mark.parametrize(
    ("field", "unit"),
    [
        ("coherence_time_s", "W"),
        ("dark_count_cps", "furlongs"),
        ("efficiency_a", "s"),
        ("loss_db_per_km", "dB"),
    ],
)
def test_units_of_another_dimension_are_refused(field: str, unit: str) -> None:
    with pytest.raises(PresetError, match=field):
        parse_preset(_with_unit(field, "1.0", unit))


def test_canonical_units_follow_the_field_names() -> None:
    assert canonical_unit("group_velocity_km_s") == "km/s"
    assert canonical_unit("zz_decay_per_s") == "1/s"
    assert canonical_unit("noise_cps_per_mw") == "1/(s mW)"
    assert canonical_unit("contrast") == "1"
    assert to_canonical("x.window_s", 64.0, "ns") == pytest.approx(64e-9)
    # every shipped field states its canonical unit already
    for key, q in load_preset().quantities.items():
        assert q.unit == canonical_unit(key.rsplit(".", 1)[-1]), key


def test_empty_preset_name() -> None:
    with pytest.raises(PresetError, match="empty preset name"):
        load_preset("")


# ---- item 9 / 11: records, estimation, distillation -------------------------------------------
def test_zero_row_records_are_refused(small_run: DIQKDRun, tmp_path: Path) -> None:
    fields = ("round", "time_s", "herald", "setting", "outcome")
    empty = DIQKDRun(
        alice=dataclasses.replace(
            small_run.alice, **{f: getattr(small_run.alice, f)[:0] for f in fields}
        ),
        bob=dataclasses.replace(
            small_run.bob, **{f: getattr(small_run.bob, f)[:0] for f in fields}
        ),
        metadata=dataclasses.replace(small_run.metadata, rounds=0),
    )
    a, b = write_run(tmp_path, empty)
    with pytest.raises(RecordError, match="no rounds"):
        read_run(a, b)
    with pytest.raises(ParameterError, match="without rounds"):
        estimate_bell(empty.alice, empty.bob)
    with pytest.raises(ParameterError, match="no rounds"):
        distill(empty.alice, empty.bob, alice_meta=empty.metadata, bob_meta=empty.metadata)


@pytest.mark.parametrize("seed", [-1, "x", 2.5])
def test_distill_seed(small_run: DIQKDRun, seed: Any) -> None:
    with pytest.raises(ParameterError, match="seed"):
        distill(
            small_run.alice,
            small_run.bob,
            alice_meta=small_run.metadata,
            bob_meta=small_run.metadata,
            seed=seed,
        )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"eps": "x"},
        {"eps": None},
        {"qber_sample_fraction": None},
        {"eps": 2.0},
        {"auth_key_bits": 1.5},
        {"min_qber_sample": "1"},
        {"settings": "uniform"},
        {"eps_settings": 1e-3},  # must be below eps / 2
        {"reconcile": None},
    ],
)
def test_distill_config_checks_types(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ParameterError):
        DistillConfig(**kwargs)


@pytest.mark.parametrize("bad", [None, "alice", 3])
def test_none_where_an_object_is_expected(small_run: DIQKDRun, bad: Any) -> None:
    with pytest.raises(ParameterError):
        distill(bad, small_run.bob, alice_meta=small_run.metadata, bob_meta=small_run.metadata)
    with pytest.raises(ParameterError):
        distill(small_run.alice, small_run.bob, alice_meta=bad, bob_meta=small_run.metadata)
    with pytest.raises(ParameterError):
        estimate_bell(bad, small_run.bob)
    if bad is None:  # config=None means the default configuration
        return
    with pytest.raises(ParameterError):
        distill(
            small_run.alice,
            small_run.bob,
            alice_meta=small_run.metadata,
            bob_meta=small_run.metadata,
            config=bad,
        )


def test_key_files(tmp_path: Path) -> None:
    (tmp_path / "k.bin").mkdir()
    with pytest.raises(CorruptRecordError):
        read_key_bits(tmp_path / "k.bin")
    with pytest.raises(ParameterError):
        write_key_pair(tmp_path / "pair", [0, 1, 1], [0, 1])


# ---- the lazy package API ----------------------------------------------------------------------
def test_lazy_api_table_matches_all() -> None:
    errors = {n for n in qrepeater.__all__ if n.endswith(("Error", "Abort"))}
    assert set(qrepeater.__all__) == errors | set(qrepeater._LAZY) | {"__version__"}
    for name, module in qrepeater._LAZY.items():
        assert getattr(importlib.import_module(module), name) is getattr(qrepeater, name), name
    assert isinstance(qrepeater.__version__, str)
    assert issubclass(qrepeater.ParameterError, QRepeaterError)
    with pytest.raises(AttributeError):
        _ = qrepeater.no_such_name


def test_cli_default_preset_names_agree() -> None:
    from qrepeater.cli import diqkd as cli_diqkd
    from qrepeater.cli import link as cli_link
    from qrepeater.presets import DEFAULT_PRESET

    assert cli_diqkd.DEFAULT_PRESET == cli_link.DEFAULT_PRESET == DEFAULT_PRESET
