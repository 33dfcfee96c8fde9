"""Key sets written as one unit (issue 8, items 2-4) and key-file reading (item 11)."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from qrepeater.diqkd import records
from qrepeater.errors import CorruptRecordError, OutputError, ParameterError, RecordNotFoundError
from qrepeater.qkdpp import keyfiles
from qrepeater.qkdpp.keyfiles import (
    read_key_bits,
    read_key_set,
    recover_key_set,
    write_key_bits,
    write_key_pair,
    write_key_set,
)

KEY = np.random.default_rng(1).integers(0, 2, 1001).astype(np.uint8)


def _report(run_id: str, aborted: bool = False) -> bytes:
    return json.dumps({"run_id": run_id, "aborted": aborted}).encode()


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def test_reexports_from_records_are_the_same_objects() -> None:
    assert records.read_key_bits is keyfiles.read_key_bits
    assert records.write_key_bits is keyfiles.write_key_bits
    assert records.write_key_pair is keyfiles.write_key_pair
    assert records.KEY_MAGIC == keyfiles.KEY_MAGIC


@pytest.mark.parametrize("suffix", [".bin", ".parquet"])
def test_key_set_is_complete_private_and_described_by_its_manifest(
    tmp_path: Path, suffix: str
) -> None:
    out = tmp_path / "keys"
    ks = write_key_set(
        out, report=_report("r1"), run_id="r1", alice_key=KEY, bob_key=KEY, suffix=suffix
    )
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [f"alice.key{suffix}", f"bob.key{suffix}", "manifest.json", "report.json"]
    )
    assert ks.files == tuple(names)
    for who in ("alice", "bob"):
        assert stat.S_IMODE((out / f"{who}.key{suffix}").stat().st_mode) == 0o600
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["run_id"] == "r1"
    assert manifest["files"][f"alice.key{suffix}"]["bits"] == KEY.size
    back = read_key_set(out)
    assert back.run_id == "r1"
    assert back.alice_key is not None
    assert np.array_equal(back.alice_key, KEY)
    assert _leftovers(out) == []


def test_aborted_set_holds_only_the_report(tmp_path: Path) -> None:
    out = tmp_path / "keys"
    write_key_set(out, report=_report("r2", aborted=True), run_id="r2")
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]
    assert read_key_set(out).aborted


def test_non_empty_output_is_refused_and_untouched(tmp_path: Path) -> None:
    out = tmp_path / "keys"
    write_key_set(out, report=_report("old"), run_id="old", alice_key=KEY, bob_key=KEY)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(OutputError, match="not empty"):
        write_key_set(
            out, report=_report("new"), run_id="new", alice_key=KEY[:10], bob_key=KEY[:10]
        )
    with pytest.raises(OutputError, match="not empty"):  # an abort never lands beside old keys
        write_key_set(out, report=_report("new", aborted=True), run_id="new")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _leftovers(out) == []


def test_force_replaces_the_whole_set(tmp_path: Path) -> None:
    out = tmp_path / "keys"
    write_key_set(out, report=_report("old"), run_id="old", alice_key=KEY, bob_key=KEY)
    write_key_set(out, report=_report("new", aborted=True), run_id="new", force=True)
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]
    write_key_set(
        out, report=_report("n2"), run_id="n2", alice_key=KEY[:8], bob_key=KEY[:8], force=True
    )
    assert read_key_set(out).run_id == "n2"
    assert _leftovers(out) == []


@pytest.mark.parametrize("blocker", ["bob.key.bin", "report.json"])
def test_a_folder_in_the_way_leaves_nothing_new(tmp_path: Path, blocker: str) -> None:
    out = tmp_path / "keys"
    (out / blocker).mkdir(parents=True)
    with pytest.raises(OutputError):
        write_key_set(out, report=_report("r"), run_id="r", alice_key=KEY, bob_key=KEY)
    assert sorted(p.name for p in out.iterdir()) == [blocker]
    # with --force the folder is replaced by a complete set
    write_key_set(out, report=_report("r"), run_id="r", alice_key=KEY, bob_key=KEY, force=True)
    assert read_key_set(out).run_id == "r"


def test_output_that_is_a_file_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "keys"
    out.write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        write_key_set(out, report=_report("r"), run_id="r", alice_key=KEY, bob_key=KEY, force=True)
    assert out.read_text() == "x"


def test_failure_at_the_rename_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "keys"
    write_key_set(out, report=_report("old"), run_id="old", alice_key=KEY, bob_key=KEY)
    real = os.rename

    def refuse_staging(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if ".staging-" in str(src):
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(os, "rename", refuse_staging)
    with pytest.raises(OutputError, match=str(out)):
        write_key_set(
            out, report=_report("new"), run_id="new", alice_key=KEY, bob_key=KEY, force=True
        )
    monkeypatch.undo()
    assert read_key_set(out).run_id == "old"  # the old set is back, whole
    assert _leftovers(out) == []


def test_stale_staging_of_a_killed_writer_is_removed(tmp_path: Path) -> None:
    out = tmp_path / "keys"
    stale = tmp_path / ".keys.staging-abc"
    stale.mkdir()
    (stale / "alice.key.bin").write_bytes(b"complete key of a killed run")
    (tmp_path / ".keys.old-def").mkdir()
    (tmp_path / ".other.staging-x").mkdir()  # another target's staging is not ours
    assert sorted(p.name for p in recover_key_set(out)) == [".keys.old-def", ".keys.staging-abc"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.staging-x"]
    stale.mkdir()
    write_key_set(out, report=_report("r"), run_id="r", alice_key=KEY, bob_key=KEY)
    assert not stale.exists()


def test_keys_of_different_lengths_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="bits"):
        write_key_set(tmp_path / "k", report=b"{}", run_id="r", alice_key=KEY, bob_key=KEY[:-1])
    with pytest.raises(ParameterError):
        write_key_pair(tmp_path / "k", KEY, KEY[:-1])
    with pytest.raises(ParameterError):
        write_key_set(tmp_path / "k", report=b"{}", run_id="r", alice_key=KEY)
    assert not (tmp_path / "k").exists()


def test_tampered_or_mixed_sets_are_detected(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_key_set(a, report=_report("ra"), run_id="ra", alice_key=KEY, bob_key=KEY)
    write_key_set(b, report=_report("rb"), run_id="rb", alice_key=1 - KEY, bob_key=1 - KEY)
    os.chmod(a / "bob.key.bin", 0o600)
    (a / "bob.key.bin").write_bytes((b / "bob.key.bin").read_bytes())  # pair files of two runs
    with pytest.raises(CorruptRecordError, match="SHA-256"):
        read_key_set(a)
    (b / "extra.txt").write_text("x")
    with pytest.raises(CorruptRecordError, match="manifest"):
        read_key_set(b)


def test_write_key_pair_is_a_key_set(tmp_path: Path) -> None:
    pa, pb = write_key_pair(tmp_path / "p", KEY, KEY, extra={"report.json": _report("x")})
    assert np.array_equal(read_key_bits(pa), read_key_bits(pb))
    with pytest.raises(OutputError):
        write_key_pair(tmp_path / "p", KEY, KEY)
    with pytest.raises(ParameterError):
        write_key_pair(tmp_path / "q", KEY, KEY, extra={"notes.txt": b"x"})


def test_read_key_bits_on_a_folder_or_absent_file(tmp_path: Path) -> None:
    (tmp_path / "dir.bin").mkdir()
    with pytest.raises(CorruptRecordError, match="folder"):
        read_key_bits(tmp_path / "dir.bin")
    with pytest.raises(RecordNotFoundError):
        read_key_bits(tmp_path / "absent.bin")
    (tmp_path / "junk.parquet").write_bytes(b"junk")
    with pytest.raises(CorruptRecordError):
        read_key_bits(tmp_path / "junk.parquet")


def test_write_key_bits_errors_name_the_users_path(tmp_path: Path) -> None:
    target = tmp_path / "k.bin"
    target.mkdir()
    with pytest.raises(OutputError) as exc:
        write_key_bits(target, KEY)
    assert str(target) in str(exc.value)
    assert ".tmp" not in str(exc.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.bin"]


def _writer(out: str, run_id: str, seed: int, q: mp.Queue[str]) -> None:
    key = np.random.default_rng(seed).integers(0, 2, 4096).astype(np.uint8)
    try:
        write_key_set(out, report=_report(run_id), run_id=run_id, alice_key=key, bob_key=key)
        q.put(f"ok {run_id}")
    except OutputError:
        q.put(f"refused {run_id}")


@pytest.mark.timeout(60)
def test_concurrent_writers_never_mix(tmp_path: Path) -> None:
    out = tmp_path / "keys"
    ctx = mp.get_context("fork")  # the writers only need numpy, already imported
    for rep in range(3):
        target = out / str(rep)
        q: mp.Queue[str] = ctx.Queue()
        procs = [ctx.Process(target=_writer, args=(str(target), f"run{i}", i, q)) for i in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        assert all(p.exitcode == 0 for p in procs)
        results = sorted(q.get(timeout=5) for _ in procs)
        winners = [r for r in results if r.startswith("ok")]
        assert len(winners) == 1, results
        ks = read_key_set(target)
        assert winners[0] == f"ok {ks.run_id}"
        assert ks.alice_key is not None
        assert ks.bob_key is not None
        assert np.array_equal(ks.alice_key, ks.bob_key)
        assert _leftovers(target) == []
