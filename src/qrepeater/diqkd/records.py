"""Per-party Parquet round records and sifted-key files.

Round records (DESIGN.md): one Parquet file per party, ``alice.parquet`` and ``bob.parquet``,
so neither party needs the other's raw data. Columns, in this order and exactly these types:

========  =======  ==========================================================
round     uint64   round index, strictly increasing
time_s    float64  herald time from the start of the run (s)
herald    int8     detector of the herald: +1 (psi+) or -1 (psi-)
setting   uint8    Alice's X in {0, 1} or Bob's Y in {0, 1, 2}
outcome   uint8    outcome bit, 0 <-> eigenvalue +1
========  =======  ==========================================================

Run metadata (:meth:`qrepeater.diqkd.rounds.RunMetadata.to_dict`: party, run id, preset label
and digest, seed, qrepeater version, fibre length, alpha, settings distribution, measurement
directions) is stored as JSON under the key ``qrepeater`` of the Arrow schema metadata.

Writers are atomic: data go to a temporary file in the target folder, renamed into place with
:func:`os.replace`, so a failure leaves nothing partial. :func:`write_run` writes both parties'
temporary files before renaming either, and undoes the first rename if the second fails.
Readers check everything and raise a specific :class:`~qrepeater.errors.RecordError` subclass.

Key files and key sets (:func:`read_key_bits`, :func:`write_key_bits`, :func:`write_key_pair`)
live in :mod:`qrepeater.qkdpp.keyfiles` and are re-exported here.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from qrepeater._io import user_path_error
from qrepeater.diqkd.rounds import (
    ALICE_SETTINGS,
    BOB_SETTINGS,
    DIQKDRun,
    Party,
    PartyRounds,
    RunMetadata,
)
from qrepeater.errors import (
    CorruptRecordError,
    ParameterError,
    RecordError,
    RecordNotFoundError,
    RecordSchemaError,
    RecordValueError,
)
from qrepeater.qkdpp.keyfiles import (
    KEY_MAGIC,
    read_key_bits,
    write_key_bits,
    write_key_pair,
)

__all__ = [
    "KEY_MAGIC",
    "METADATA_KEY",
    "RECORD_SCHEMA",
    "CorruptRecordError",
    "DuplicateRoundError",
    "MissingRoundError",
    "PartyRecord",
    "RecordLengthError",
    "RecordMetadataError",
    "RecordMismatchError",
    "RecordNotFoundError",
    "RecordSchemaError",
    "RecordValueError",
    "RoundOrderError",
    "check_alignment",
    "read_key_bits",
    "read_party_record",
    "read_run",
    "write_key_bits",
    "write_key_pair",
    "write_party_record",
    "write_run",
]

PathLike = str | os.PathLike[str]

#: key of the run metadata (JSON) in the Arrow schema metadata
METADATA_KEY = b"qrepeater"
RECORD_SCHEMA = pa.schema(
    [
        ("round", pa.uint64()),
        ("time_s", pa.float64()),
        ("herald", pa.int8()),
        ("setting", pa.uint8()),
        ("outcome", pa.uint8()),
    ]
)


class DuplicateRoundError(RecordError):
    """A round index occurs more than once."""


class RoundOrderError(RecordError):
    """Round indices are unique but not in increasing order."""


class MissingRoundError(RecordError):
    """The parties' round indices differ: a round of one party is missing from the other."""


class RecordLengthError(RecordError):
    """The parties' records have different numbers of rounds."""


class RecordMismatchError(RecordError):
    """The parties disagree on public data of a round (herald sign or herald time)."""


class RecordMetadataError(RecordError):
    """Run metadata missing, unparsable, for the wrong party or inconsistent between parties."""


@dataclass(frozen=True, eq=False)
class PartyRecord:
    """One party's validated rounds and the run metadata stored with them."""

    rounds: PartyRounds
    metadata: RunMetadata

    @property
    def party(self) -> Party:
        """``alice`` or ``bob``."""
        return self.rounds.party


# ---- atomic writing ----------------------------------------------------------------------------
@contextlib.contextmanager
def _temp_path(target: Path) -> Iterator[Path]:
    """A temporary file next to ``target``, removed unless it was renamed away."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _table(rounds: PartyRounds, metadata: RunMetadata) -> pa.Table:
    meta = json.dumps(metadata.to_dict(rounds.party), sort_keys=True).encode()
    schema = RECORD_SCHEMA.with_metadata({METADATA_KEY: meta})
    return pa.Table.from_arrays(
        [
            pa.array(rounds.round, type=pa.uint64()),
            pa.array(rounds.time_s, type=pa.float64()),
            pa.array(rounds.herald, type=pa.int8()),
            pa.array(rounds.setting, type=pa.uint8()),
            pa.array(rounds.outcome, type=pa.uint8()),
        ],
        schema=schema,
    )


def _check_party(rounds: PartyRounds, where: str = "") -> None:
    """Value checks shared by the writer and the reader."""
    allowed = ALICE_SETTINGS if rounds.party == "alice" else BOB_SETTINGS
    bad_setting = rounds.setting > max(allowed)
    checks: list[tuple[str, npt.NDArray[np.bool_], npt.NDArray[Any]]] = [
        (f"setting (allowed {set(allowed)})", bad_setting, rounds.setting),
        ("outcome (allowed {0, 1})", rounds.outcome > 1, rounds.outcome),
        ("herald (allowed {+1, -1})", (rounds.herald != 1) & (rounds.herald != -1), rounds.herald),
        ("time_s (must be finite)", ~np.isfinite(rounds.time_s), rounds.time_s),
    ]
    for what, bad, values in checks:
        if np.any(bad):
            i = int(np.argmax(bad))
            raise RecordValueError(
                f"{rounds.party}{where}: invalid {what}: {values[i]} in round {rounds.round[i]}"
            )
    r = rounds.round
    if r.size > 1:
        step_bad = r[1:] <= r[:-1]
        if np.any(step_bad):
            uniq, counts = np.unique(r, return_counts=True)
            if np.any(counts > 1):
                dup = uniq[np.argmax(counts > 1)]
                raise DuplicateRoundError(f"{rounds.party}{where}: round {dup} occurs twice")
            i = int(np.argmax(step_bad))
            raise RoundOrderError(
                f"{rounds.party}{where}: round {r[i + 1]} follows round {r[i]} (not increasing)"
            )
        if np.any(np.diff(rounds.time_s) < 0):
            i = int(np.argmax(np.diff(rounds.time_s) < 0))
            raise RecordValueError(
                f"{rounds.party}{where}: herald time decreases after round {r[i]}"
            )


def write_party_record(path: PathLike, rounds: PartyRounds, metadata: RunMetadata) -> Path:
    """Write one party's record atomically; returns the path."""
    _check_party(rounds)
    target = Path(path)
    try:
        with _temp_path(target) as tmp:
            pq.write_table(_table(rounds, metadata), tmp)
            os.replace(tmp, target)
    except OSError as exc:
        raise user_path_error(exc, target) from None
    return target


def write_run(out_dir: PathLike, run: DIQKDRun) -> tuple[Path, Path]:
    """Write ``alice.parquet`` and ``bob.parquet`` into ``out_dir`` (created if needed).

    Both files are written to temporary names first and then renamed; if the second rename
    fails the first is rolled back (a previous file of the same name is restored), and a folder
    created here is removed again.
    """
    for rec in (run.alice, run.bob):
        _check_party(rec)
    out = Path(out_dir)
    created = not out.exists()
    targets = (out / "alice.parquet", out / "bob.parquet")
    try:
        with (
            _temp_path(targets[0]) as tmp_a,
            _temp_path(targets[1]) as tmp_b,
            _temp_path(out / ".alice.parquet.bak") as backup,
        ):
            pq.write_table(_table(run.alice, run.metadata), tmp_a)
            pq.write_table(_table(run.bob, run.metadata), tmp_b)
            had_alice = targets[0].exists()
            if had_alice:
                os.replace(targets[0], backup)
            os.replace(tmp_a, targets[0])
            try:
                os.replace(tmp_b, targets[1])
            except BaseException:
                if had_alice:
                    os.replace(backup, targets[0])
                else:
                    targets[0].unlink()
                raise
    except BaseException as exc:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()
        if isinstance(exc, OSError):
            raise user_path_error(exc, out) from None
        raise
    return targets


# ---- reading -----------------------------------------------------------------------------------
def _read_table(path: Path, what: str) -> pa.Table:
    if not path.exists():
        raise RecordNotFoundError(2, f"{what} not found", str(path))
    if path.is_dir():
        raise CorruptRecordError(f"{path}: is a folder, not a {what}")
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise CorruptRecordError(f"{path}: not a readable Parquet {what} ({exc})") from None


def _metadata(table: pa.Table, path: Path) -> tuple[Party, RunMetadata]:
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise RecordMetadataError(f"{path}: no qrepeater run metadata in the Parquet schema")
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordMetadataError(f"{path}: run metadata is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise RecordMetadataError(f"{path}: run metadata must be a JSON object")
    try:
        who, meta = RunMetadata.from_dict(doc)
    except (ParameterError, TypeError, ValueError, KeyError) as exc:
        raise RecordMetadataError(f"{path}: {exc}") from None
    for name in ("fiber_km", "alpha"):
        value = getattr(meta, name)
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise RecordMetadataError(f"{path}: metadata '{name}' must be a finite number")
    return who, meta


def read_party_record(path: PathLike, *, party: Party | None = None) -> PartyRecord:
    """Read and validate one party's record (schema, dtypes, values, round order, metadata).

    ``party``, if given, must match the party named in the metadata.
    """
    p = Path(path)
    table = _read_table(p, "round record")
    names = [f.name for f in table.schema]
    want = [f.name for f in RECORD_SCHEMA]
    if names != want:
        raise RecordSchemaError(f"{p}: columns {names}, expected {want}")
    for field in RECORD_SCHEMA:
        got = table.schema.field(field.name).type
        if got != field.type:
            raise RecordSchemaError(f"{p}: column {field.name!r} is {got}, expected {field.type}")
    for name in want:
        if table.column(name).null_count:
            raise RecordValueError(f"{p}: column {name!r} has missing values")
    who, meta = _metadata(table, p)
    if party is not None and who != party:
        raise RecordMetadataError(f"{p}: record belongs to {who}, expected {party}")
    cols = {name: table.column(name).to_numpy() for name in want}
    rounds = PartyRounds(
        who,
        np.ascontiguousarray(cols["round"], dtype=np.uint64),
        np.ascontiguousarray(cols["time_s"], dtype=np.float64),
        np.ascontiguousarray(cols["herald"], dtype=np.int8),
        np.ascontiguousarray(cols["setting"], dtype=np.uint8),
        np.ascontiguousarray(cols["outcome"], dtype=np.uint8),
    )
    _check_party(rounds, f" ({p})")
    if meta.rounds != len(rounds):
        raise RecordLengthError(
            f"{p}: metadata announces {meta.rounds} rounds, the file holds {len(rounds)}"
        )
    return PartyRecord(rounds=rounds, metadata=meta)


def check_alignment(alice: PartyRecord, bob: PartyRecord) -> None:
    """Check two party records belong to one run and line up round by round."""
    if alice.party != "alice" or bob.party != "bob":
        raise RecordMetadataError(
            f"expected Alice's and Bob's records, got {alice.party} and {bob.party}"
        )
    ma, mb = alice.metadata.to_dict("alice"), bob.metadata.to_dict("alice")
    if ma["run_id"] != mb["run_id"]:
        raise RecordMetadataError(
            f"records are from different runs: {ma['run_id']} (alice) vs {mb['run_id']} (bob)"
        )
    for key in ma:
        if key != "rounds" and ma[key] != mb[key]:  # lengths are compared round by round
            raise RecordMetadataError(
                f"metadata '{key}' differs between parties: {ma[key]!r} (alice) "
                f"vs {mb[key]!r} (bob)"
            )
    ra, rb = alice.rounds.round, bob.rounds.round
    if ra.size != rb.size or not np.array_equal(ra, rb):
        only_a = np.setdiff1d(ra, rb, assume_unique=True)
        only_b = np.setdiff1d(rb, ra, assume_unique=True)
        parts = [f"first round missing from bob: {only_a[0]}"] if only_a.size else []
        if only_b.size:
            parts.append(f"first round missing from alice: {only_b[0]}")
        detail = "; ".join(parts)
        if ra.size != rb.size:
            raise RecordLengthError(f"alice has {ra.size} rounds and bob {rb.size}; {detail}")
        raise MissingRoundError(f"parties' rounds differ; {detail}")
    for name in ("herald", "time_s"):
        va, vb = getattr(alice.rounds, name), getattr(bob.rounds, name)
        if not np.array_equal(va, vb):
            i = int(np.argmax(va != vb))
            raise RecordMismatchError(
                f"{name} differs in round {ra[i]}: {va[i]} (alice) vs {vb[i]} (bob)"
            )


def read_run(alice_path: PathLike, bob_path: PathLike) -> DIQKDRun:
    """Read both parties' records and check their alignment (:func:`check_alignment`); records
    without rounds raise :class:`RecordLengthError`."""
    alice = read_party_record(alice_path, party="alice")
    bob = read_party_record(bob_path, party="bob")
    check_alignment(alice, bob)
    if len(alice.rounds) == 0:
        raise RecordLengthError(f"{alice_path} and {bob_path} hold no rounds: nothing to estimate")
    return DIQKDRun(alice=alice.rounds, bob=bob.rounds, metadata=alice.metadata)
