"""Per-party Parquet records and key files: round trips, every validation error, atomic writes."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qrepeater.diqkd import records
from qrepeater.diqkd.records import (
    KEY_MAGIC,
    METADATA_KEY,
    CorruptRecordError,
    DuplicateRoundError,
    MissingRoundError,
    RecordLengthError,
    RecordMetadataError,
    RecordMismatchError,
    RecordNotFoundError,
    RecordSchemaError,
    RecordValueError,
    RoundOrderError,
    read_key_bits,
    read_party_record,
    read_run,
    write_key_bits,
    write_party_record,
    write_run,
)
from qrepeater.diqkd.rounds import DIQKDRun, PartyRounds, simulate_from_preset
from qrepeater.errors import RecordError
from qrepeater.presets import Preset

N = 2000


@pytest.fixture(scope="module")
def run(preset: Preset) -> DIQKDRun:
    return simulate_from_preset(preset, n_rounds=N, seed=4)


@pytest.fixture
def written(run: DIQKDRun, tmp_path: Path) -> tuple[Path, Path]:
    return write_run(tmp_path / "run", run)


def _columns(p: PartyRounds) -> dict[str, np.ndarray]:
    return {
        "round": p.round.copy(),
        "time_s": p.time_s.copy(),
        "herald": p.herald.copy(),
        "setting": p.setting.copy(),
        "outcome": p.outcome.copy(),
    }


def _write_raw(
    path: Path,
    cols: dict[str, Any],
    meta: dict[str, Any] | bytes | None,
    types: dict[str, pa.DataType] | None = None,
) -> Path:
    """Write a Parquet file bypassing the writer's checks."""
    types = types or {f.name: f.type for f in records.RECORD_SCHEMA}
    arrays = [pa.array(v, type=types.get(k)) for k, v in cols.items()]
    table = pa.Table.from_arrays(arrays, names=list(cols))
    if meta is not None:
        raw = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
        table = table.replace_schema_metadata({METADATA_KEY: raw})
    pq.write_table(table, path)
    return path


def _bad_bob(run: DIQKDRun, tmp_path: Path, **changes: Any) -> tuple[Path, Path]:
    """Alice's valid file and a Bob file with some columns / metadata changed."""
    alice = write_party_record(tmp_path / "alice.parquet", run.alice, run.metadata)
    cols = _columns(run.bob)
    meta = run.metadata.to_dict("bob")
    meta.update(changes.pop("meta", {}))
    cols.update(changes)
    meta["rounds"] = len(cols["round"])
    bob = _write_raw(tmp_path / "bob.parquet", cols, meta)
    return alice, bob


# ---- round trips -------------------------------------------------------------------------------
def test_run_round_trip(run: DIQKDRun, written: tuple[Path, Path]) -> None:
    alice_path, bob_path = written
    assert (alice_path.name, bob_path.name) == ("alice.parquet", "bob.parquet")
    back = read_run(alice_path, bob_path)
    assert back.metadata == run.metadata
    for party in ("alice", "bob"):
        for name, col in _columns(getattr(run, party)).items():
            got = getattr(getattr(back, party), name)
            assert got.dtype == col.dtype, name
            assert np.array_equal(got, col), name
    assert sorted(os.listdir(alice_path.parent)) == ["alice.parquet", "bob.parquet"]


def test_schema_and_metadata_on_disk(written: tuple[Path, Path], preset: Preset) -> None:
    schema = pq.read_schema(written[1])
    assert [(f.name, str(f.type)) for f in schema] == [
        ("round", "uint64"),
        ("time_s", "double"),
        ("herald", "int8"),
        ("setting", "uint8"),
        ("outcome", "uint8"),
    ]
    meta = json.loads(schema.metadata[METADATA_KEY])
    assert meta["party"] == "bob"
    assert meta["preset"] == preset.label
    assert meta["preset_digest"] == preset.digest
    assert meta["seed"] == 4
    assert meta["qrepeater_version"]
    assert set(meta["settings_distribution"]) == {"p_x0", "p_y0", "p_y1", "p_y2"}
    assert set(meta["directions"]) == {"+1", "-1"}
    for key in ("run_id", "fiber_km", "alpha"):
        assert key in meta


def test_single_party_round_trip_and_party_check(run: DIQKDRun, tmp_path: Path) -> None:
    path = write_party_record(tmp_path / "x.parquet", run.bob, run.metadata)
    rec = read_party_record(path)
    assert rec.party == "bob"
    assert np.array_equal(rec.rounds.setting, run.bob.setting)
    with pytest.raises(RecordMetadataError, match="belongs to bob"):
        read_party_record(path, party="alice")


def test_external_round_indices_need_not_be_contiguous(run: DIQKDRun, tmp_path: Path) -> None:
    cols = _columns(run.alice)
    cols["round"] = cols["round"] * 3 + 10
    meta = run.metadata.to_dict("alice")
    rec = read_party_record(_write_raw(tmp_path / "a.parquet", cols, meta))
    assert rec.rounds.round[0] == 10


# ---- single-record errors ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("party", "column", "value", "match"),
    [
        ("alice", "setting", 2, "setting"),
        ("bob", "setting", 3, "setting"),
        ("alice", "outcome", 2, "outcome"),
        ("bob", "outcome", 255, "outcome"),
        ("alice", "herald", 0, "herald"),
        ("bob", "time_s", float("nan"), "time_s"),
    ],
)
def test_values_out_of_range(
    run: DIQKDRun, tmp_path: Path, party: str, column: str, value: float, match: str
) -> None:
    cols = _columns(getattr(run, party))
    cols[column][5] = value
    path = _write_raw(tmp_path / "r.parquet", cols, run.metadata.to_dict(party))  # type: ignore[arg-type]
    with pytest.raises(RecordValueError, match=match) as info:
        read_party_record(path)
    assert "round 5" in str(info.value)


def test_writer_refuses_invalid_values(run: DIQKDRun, tmp_path: Path) -> None:
    bad = dataclasses.replace(run.alice, setting=np.full(N, 2, dtype=np.uint8))
    with pytest.raises(RecordValueError):
        write_party_record(tmp_path / "a.parquet", bad, run.metadata)
    with pytest.raises(RecordValueError):
        write_run(tmp_path / "out", dataclasses.replace(run, alice=bad))
    assert os.listdir(tmp_path) == []


def test_decreasing_time(run: DIQKDRun, tmp_path: Path) -> None:
    cols = _columns(run.alice)
    cols["time_s"][10] = cols["time_s"][9] - 1.0
    path = _write_raw(tmp_path / "a.parquet", cols, run.metadata.to_dict("alice"))
    with pytest.raises(RecordValueError, match="decreases"):
        read_party_record(path)


def test_duplicate_round(run: DIQKDRun, tmp_path: Path) -> None:
    cols = _columns(run.alice)
    cols["round"][8] = 7
    path = _write_raw(tmp_path / "a.parquet", cols, run.metadata.to_dict("alice"))
    with pytest.raises(DuplicateRoundError, match="round 7"):
        read_party_record(path)


def test_rounds_out_of_order(run: DIQKDRun, tmp_path: Path) -> None:
    cols = _columns(run.alice)
    cols["round"][[3, 4]] = cols["round"][[4, 3]]
    path = _write_raw(tmp_path / "a.parquet", cols, run.metadata.to_dict("alice"))
    with pytest.raises(RoundOrderError, match="round 3 follows round 4"):
        read_party_record(path)


def test_schema_errors(run: DIQKDRun, tmp_path: Path) -> None:
    meta = run.metadata.to_dict("alice")
    cols = _columns(run.alice)
    missing = {k: v for k, v in cols.items() if k != "herald"}
    with pytest.raises(RecordSchemaError, match="columns"):
        read_party_record(_write_raw(tmp_path / "m.parquet", missing, meta))
    extra = {**cols, "eve": np.zeros(N, np.uint8)}
    with pytest.raises(RecordSchemaError, match="columns"):
        read_party_record(_write_raw(tmp_path / "e.parquet", extra, meta, types={}))
    reordered = {k: cols[k] for k in ("time_s", "round", "herald", "setting", "outcome")}
    with pytest.raises(RecordSchemaError):
        read_party_record(_write_raw(tmp_path / "o.parquet", reordered, meta))
    wrong = {**cols, "round": cols["round"].astype(np.int64)}
    types = {f.name: f.type for f in records.RECORD_SCHEMA} | {"round": pa.int64()}
    with pytest.raises(RecordSchemaError, match="'round' is int64"):
        read_party_record(_write_raw(tmp_path / "w.parquet", wrong, meta, types=types))


def test_null_values(run: DIQKDRun, tmp_path: Path) -> None:
    cols: dict[str, Any] = _columns(run.alice)
    cols["outcome"] = [None, *cols["outcome"][1:].tolist()]
    with pytest.raises(RecordValueError, match="missing values"):
        read_party_record(_write_raw(tmp_path / "n.parquet", cols, run.metadata.to_dict("alice")))


def test_metadata_errors(run: DIQKDRun, tmp_path: Path) -> None:
    cols = _columns(run.alice)
    with pytest.raises(RecordMetadataError, match="no qrepeater run metadata"):
        read_party_record(_write_raw(tmp_path / "a.parquet", cols, None))
    with pytest.raises(RecordMetadataError, match="JSON"):
        read_party_record(_write_raw(tmp_path / "b.parquet", cols, b"{not json"))
    with pytest.raises(RecordMetadataError):
        read_party_record(_write_raw(tmp_path / "c.parquet", cols, [1, 2]))  # type: ignore[arg-type]
    meta = run.metadata.to_dict("alice")
    del meta["directions"]
    with pytest.raises(RecordMetadataError, match="directions"):
        read_party_record(_write_raw(tmp_path / "d.parquet", cols, meta))
    meta = run.metadata.to_dict("alice") | {"rounds": N + 1}
    with pytest.raises(RecordLengthError, match="announces"):
        read_party_record(_write_raw(tmp_path / "e.parquet", cols, meta))


def test_corrupt_and_missing_files(written: tuple[Path, Path], tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"this is not parquet at all")
    with pytest.raises(CorruptRecordError):
        read_party_record(garbage)
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(written[0].read_bytes()[:-100])
    with pytest.raises(CorruptRecordError):
        read_party_record(truncated)
    with pytest.raises(CorruptRecordError, match="folder"):
        read_party_record(tmp_path)
    with pytest.raises(RecordNotFoundError) as info:
        read_party_record(tmp_path / "nope.parquet")
    assert isinstance(info.value, FileNotFoundError)


def test_all_errors_are_record_errors() -> None:
    for cls in (
        CorruptRecordError,
        DuplicateRoundError,
        MissingRoundError,
        RecordLengthError,
        RecordMetadataError,
        RecordMismatchError,
        RecordNotFoundError,
        RecordSchemaError,
        RecordValueError,
        RoundOrderError,
    ):
        assert issubclass(cls, RecordError)


# ---- pair alignment ----------------------------------------------------------------------------
def test_missing_round_same_length(run: DIQKDRun, tmp_path: Path) -> None:
    cols = _columns(run.bob)
    cols["round"][100:] += 1  # bob lacks round 100 and has an extra round N
    alice, bob = _bad_bob(run, tmp_path, round=cols["round"])
    with pytest.raises(MissingRoundError, match="first round missing from bob: 100"):
        read_run(alice, bob)


def test_extra_round_reported(run: DIQKDRun, tmp_path: Path) -> None:
    cols = _columns(run.bob)
    cols["round"][-1] = N + 5  # bob has an extra round N + 5 and lacks N - 1
    alice, bob = _bad_bob(run, tmp_path, round=cols["round"])
    with pytest.raises(MissingRoundError) as info:
        read_run(alice, bob)
    assert f"missing from bob: {N - 1}" in str(info.value)
    assert f"missing from alice: {N + 5}" in str(info.value)


def test_different_lengths(run: DIQKDRun, tmp_path: Path) -> None:
    cols = {k: np.delete(v, 17) for k, v in _columns(run.bob).items()}
    alice, bob = _bad_bob(run, tmp_path, **cols)
    with pytest.raises(RecordLengthError, match=f"alice has {N} rounds and bob {N - 1}") as info:
        read_run(alice, bob)
    assert "first round missing from bob: 17" in str(info.value)
    cols = {k: np.delete(v, 17) for k, v in _columns(run.alice).items()}
    bob2 = write_party_record(tmp_path / "bob2.parquet", run.bob, run.metadata)
    meta = run.metadata.to_dict("alice") | {"rounds": N - 1}
    alice2 = _write_raw(tmp_path / "alice2.parquet", cols, meta)
    with pytest.raises(RecordLengthError, match="missing from alice: 17"):
        read_run(alice2, bob2)


@pytest.mark.parametrize("column", ["herald", "time_s"])
def test_public_columns_must_agree(run: DIQKDRun, tmp_path: Path, column: str) -> None:
    cols = _columns(run.bob)
    cols[column][33] = -cols[column][33] if column == "herald" else cols[column][33] + 1e-9
    alice, bob = _bad_bob(run, tmp_path, **{column: cols[column]})
    with pytest.raises(RecordMismatchError, match=f"{column} differs in round 33"):
        read_run(alice, bob)


@pytest.mark.parametrize(
    ("key", "value"),
    [("run_id", "00000000-0000-4000-8000-000000000000"), ("seed", 99), ("alpha", 0.5)],
)
def test_metadata_must_agree(run: DIQKDRun, tmp_path: Path, key: str, value: object) -> None:
    alice, bob = _bad_bob(run, tmp_path, meta={key: value})
    with pytest.raises(RecordMetadataError, match="different runs" if key == "run_id" else key):
        read_run(alice, bob)


def test_swapped_parties(written: tuple[Path, Path]) -> None:
    with pytest.raises(RecordMetadataError, match="expected alice"):
        read_run(written[1], written[0])


# ---- atomic writes -----------------------------------------------------------------------------
def test_failure_writing_bob_leaves_nothing(
    run: DIQKDRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = pq.write_table
    calls: list[int] = []

    def fail_second(table: pa.Table, where: Any, **kw: Any) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(table, where, **kw)

    monkeypatch.setattr(pq, "write_table", fail_second)
    with pytest.raises(OSError, match="No space"):
        write_run(tmp_path / "out", run)
    assert os.listdir(tmp_path) == []


def test_failure_renaming_bob_rolls_back_alice(
    run: DIQKDRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    real = os.replace

    def fail_bob(src: Any, dst: Any) -> None:
        if Path(dst).name == "bob.parquet":
            raise PermissionError(13, "Permission denied", str(dst))
        real(src, dst)

    monkeypatch.setattr(os, "replace", fail_bob)
    with pytest.raises(PermissionError):
        write_run(out, run)
    assert not out.exists()
    # with a previous run in place, the previous Alice file is restored untouched
    monkeypatch.setattr(os, "replace", real)
    write_run(out, run)
    before = (out / "alice.parquet").read_bytes()
    other = dataclasses.replace(run, metadata=dataclasses.replace(run.metadata, run_id="other"))
    monkeypatch.setattr(os, "replace", fail_bob)
    with pytest.raises(PermissionError):
        write_run(out, other)
    assert sorted(os.listdir(out)) == ["alice.parquet", "bob.parquet"]
    assert (out / "alice.parquet").read_bytes() == before
    monkeypatch.setattr(os, "replace", real)
    assert read_run(out / "alice.parquet", out / "bob.parquet").metadata.run_id != "other"


def test_overwrite_existing_run(run: DIQKDRun, tmp_path: Path) -> None:
    write_run(tmp_path, run)
    write_run(tmp_path, run)
    assert sorted(os.listdir(tmp_path)) == ["alice.parquet", "bob.parquet"]


# ---- key files ---------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 1001])
@pytest.mark.parametrize("suffix", [".bin", ".parquet"])
def test_key_round_trip(tmp_path: Path, n: int, suffix: str) -> None:
    bits = np.random.default_rng(n).integers(0, 2, n)
    path = write_key_bits(tmp_path / f"key{suffix}", bits)
    back = read_key_bits(path)
    assert back.dtype == np.uint8
    assert np.array_equal(back, bits)
    if suffix == ".bin":
        assert path.stat().st_size == len(KEY_MAGIC) + 8 + (n + 7) // 8
    assert os.listdir(tmp_path) == [path.name]


@pytest.mark.parametrize("bad", [[0, 2], [0, -1], [0.5, 1.0], [[0, 1]], ["0", "1"]])
def test_key_rejects_non_bits(tmp_path: Path, bad: object) -> None:
    with pytest.raises(RecordValueError):
        write_key_bits(tmp_path / "k.bin", bad)  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == []


def test_key_file_errors(tmp_path: Path) -> None:
    with pytest.raises(RecordValueError, match=r"\.bin or \.parquet"):
        write_key_bits(tmp_path / "k.txt", [0, 1])
    good = write_key_bits(tmp_path / "k.bin", [1, 0, 1])
    data = good.read_bytes()
    (tmp_path / "magic.bin").write_bytes(b"XXXXXXXX" + data[8:])
    with pytest.raises(CorruptRecordError, match="header"):
        read_key_bits(tmp_path / "magic.bin")
    (tmp_path / "long.bin").write_bytes(data + b"\x00")
    with pytest.raises(CorruptRecordError, match="announces 3 bits"):
        read_key_bits(tmp_path / "long.bin")
    (tmp_path / "pad.bin").write_bytes(data[:-1] + bytes([data[-1] | 1]))
    with pytest.raises(CorruptRecordError, match="padding"):
        read_key_bits(tmp_path / "pad.bin")
    with pytest.raises(RecordNotFoundError):
        read_key_bits(tmp_path / "absent.bin")
    _write_raw(tmp_path / "two.parquet", {"bit": [0, 1], "x": [1, 1]}, None, types={})
    with pytest.raises(RecordSchemaError):
        read_key_bits(tmp_path / "two.parquet")
    _write_raw(tmp_path / "three.parquet", {"bit": [0, 3]}, None, types={"bit": pa.uint8()})
    with pytest.raises(RecordValueError):
        read_key_bits(tmp_path / "three.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"junk")
    with pytest.raises(CorruptRecordError):
        read_key_bits(tmp_path / "junk.parquet")
