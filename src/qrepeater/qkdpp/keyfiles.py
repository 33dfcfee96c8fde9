"""Key files and key sets: the on-disk form of distilled keys.

**Key files** hold key bits, either packed (``.bin``: the 8-byte magic ``b"QRKEYv1\\n"``, the bit
count as a little-endian uint64, then ``numpy.packbits`` of the bits, big-endian bit order, last
byte zero-padded) or as Parquet (``.parquet``, one uint8 column ``bit``). They are written with
owner-only permissions (0600) via a temporary file and a rename.

**Key sets** (:func:`write_key_set`) are the unit a distillation run produces: one folder holding

============== ==================================================================================
alice.key.bin  Alice's key (0600)
bob.key.bin    Bob's key (0600)
report.json    the run's public report
manifest.json  format, run id, and for each key file its bit count and SHA-256
============== ==================================================================================

(an aborted run's set holds ``report.json`` only: no key can ever sit beside an aborted report).
The folder appears in one step: every file is written and ``fsync``-ed in a staging folder next
to the target (``.<name>.staging-*``, same parent, hence same file system), the staging folder
is ``fsync``-ed and renamed onto the target with one :func:`os.rename`, and the parent folder is
``fsync``-ed. A reader therefore sees the whole set or no set, never files of two runs: a set
is never modified after it appears, and the manifest ties both key files to one run id and to
their hashes (:func:`read_key_set` checks them).

The target must be absent or empty; with ``force`` an existing set is replaced (moved aside to
``.<name>.old-*``, the new set renamed in, the old one deleted: a reader sees the old set, no
set, or the new set). Writers of the same target are serialised by an exclusive
:func:`fcntl.flock` on the parent folder, so two concurrent runs can never interleave: the
second finds the first's set and refuses (or, with ``force``, replaces it whole). On start-up,
under the lock, staging and moved-aside folders left by a killed writer of the same target are
removed (no live writer can own them while the lock is held).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from qrepeater._io import fsync_dir, write_new_durable
from qrepeater.errors import (
    CorruptRecordError,
    OutputError,
    ParameterError,
    RecordNotFoundError,
    RecordSchemaError,
    RecordValueError,
)

__all__ = [
    "KEY_MAGIC",
    "KEY_SET_FORMAT",
    "KeySet",
    "check_output_folder",
    "read_key_bits",
    "read_key_set",
    "recover_key_set",
    "write_key_bits",
    "write_key_pair",
    "write_key_set",
]

PathLike = str | os.PathLike[str]
U8 = npt.NDArray[np.uint8]

KEY_MAGIC = b"QRKEYv1\n"
KEY_SET_FORMAT = "qrepeater.keyset/1"
MANIFEST = "manifest.json"
REPORT = "report.json"
_RESERVED = (MANIFEST, REPORT)


# ---- key bits ------------------------------------------------------------------------------------
def _key_bits(bits: npt.ArrayLike) -> U8:
    try:
        a = np.asarray(bits)
    except (TypeError, ValueError) as exc:
        raise RecordValueError(f"key bits must be an array of 0 and 1 ({exc})") from None
    if a.ndim != 1:
        raise RecordValueError(f"key bits must be a 1-D array, got shape {a.shape}")
    if a.dtype.kind not in "iubf":
        raise RecordValueError(f"key bits must be numbers, got dtype {a.dtype}")
    bad = (a != 0) & (a != 1)
    if np.any(bad):
        i = int(np.argmax(bad))
        raise RecordValueError(f"key bit {a[i]!r} at position {i} is not 0 or 1")
    return a.astype(np.uint8)


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".bin", ".parquet"):
        raise RecordValueError(f"key file must end in .bin or .parquet, got {path.name!r}")
    return suffix


def _encode(bits: U8, suffix: str) -> bytes:
    if suffix == ".bin":
        header = KEY_MAGIC + int(bits.size).to_bytes(8, "little")
        return header + bytes(np.packbits(bits).tobytes())
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    table = pa.Table.from_arrays([pa.array(bits, type=pa.uint8())], names=["bit"])
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


def write_key_bits(path: PathLike, bits: npt.ArrayLike) -> Path:
    """Write key bits atomically with owner-only permissions (0600): packed ``.bin`` (header +
    packbits) or ``.parquet``, chosen by the suffix. Errors name ``path``, never a temporary
    file."""
    arr = _key_bits(bits)
    target = Path(path)
    data = _encode(arr, _suffix(target))
    tmp: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
        write_new_durable(tmp, data, 0o600)
        os.replace(tmp, target)
    except OSError as exc:
        raise OutputError(f"cannot write key file {target}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return target


def read_key_bits(path: PathLike) -> U8:
    """Read key bits written by :func:`write_key_bits` (format chosen by the suffix).

    Raises :class:`~qrepeater.errors.RecordNotFoundError` (absent),
    :class:`~qrepeater.errors.CorruptRecordError` (a folder, bad header, wrong length, non-zero
    padding, unreadable Parquet) or :class:`~qrepeater.errors.RecordSchemaError`.
    """
    p = Path(path)
    suffix = _suffix(p)
    if not p.exists():
        raise RecordNotFoundError(2, "key file not found", str(p))
    if p.is_dir():
        raise CorruptRecordError(f"{p}: is a folder, not a key file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise CorruptRecordError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    if suffix == ".parquet":
        return _decode_parquet(p, data)
    head = len(KEY_MAGIC) + 8
    if len(data) < head or not data.startswith(KEY_MAGIC):
        raise CorruptRecordError(f"{p}: not a qrepeater key file (bad header)")
    n = int(np.frombuffer(data[len(KEY_MAGIC) : head], dtype="<u8")[0])
    body = np.frombuffer(data[head:], dtype=np.uint8)
    if body.size != (n + 7) // 8:
        raise CorruptRecordError(f"{p}: header announces {n} bits, body holds {body.size} bytes")
    bits = np.unpackbits(body)
    if np.any(bits[n:]):
        raise CorruptRecordError(f"{p}: padding bits after bit {n} are not zero")
    return bits[:n].copy()


def _decode_parquet(p: Path, data: bytes) -> U8:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise CorruptRecordError(f"{p}: not a readable Parquet key file ({exc})") from None
    if table.schema.names != ["bit"] or table.schema.field("bit").type != pa.uint8():
        raise RecordSchemaError(f"{p}: key file must have one uint8 column 'bit'")
    col = table.column("bit")
    if col.null_count:
        raise RecordValueError(f"{p}: column 'bit' has missing values")
    return _key_bits(col.to_numpy())


# ---- key sets ------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class KeySet:
    """A key set as read back (:func:`read_key_set`) or as written (keys then ``None``)."""

    path: Path
    run_id: str
    aborted: bool
    files: tuple[str, ...]
    report: dict[str, Any] = field(repr=False)
    alice_key: U8 | None = field(default=None, repr=False)
    bob_key: U8 | None = field(default=None, repr=False)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``folder`` (held until the block ends or the process dies)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _leftovers(out: Path) -> list[Path]:
    prefixes = (f".{out.name}.staging-", f".{out.name}.old-")
    try:
        return [p for p in out.parent.iterdir() if p.name.startswith(prefixes)]
    except FileNotFoundError:
        return []


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def recover_key_set(out_dir: PathLike) -> list[Path]:
    """Remove staging and moved-aside folders that a killed writer of ``out_dir`` left behind;
    returns what was removed. :func:`write_key_set` calls this itself, under its lock."""
    out = Path(out_dir).absolute()
    if not out.parent.is_dir():
        return []
    with _locked(out.parent):
        return _recover(out)


def _recover(out: Path) -> list[Path]:
    stale = _leftovers(out)
    for p in stale:
        _remove(p)
    return stale


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_key_set(
    out_dir: PathLike,
    *,
    report: bytes,
    run_id: str,
    alice_key: npt.ArrayLike | None = None,
    bob_key: npt.ArrayLike | None = None,
    suffix: str = ".bin",
    force: bool = False,
) -> KeySet:
    """Write a key set (both keys, ``report.json``, ``manifest.json``) as one unit; see the module
    docstring. Without keys (an aborted run) the set holds ``report.json`` only.

    Raises :class:`~qrepeater.errors.OutputError` if ``out_dir`` exists and is not an empty
    folder (unless ``force``) or cannot be written; nothing new remains then.
    """
    if suffix not in (".bin", ".parquet"):
        raise ParameterError(f"key suffix must be .bin or .parquet, got {suffix!r}")
    if not isinstance(report, bytes | bytearray):
        raise ParameterError("report must be bytes")
    if not isinstance(run_id, str) or not run_id:
        raise ParameterError("run_id must be a non-empty string")
    if (alice_key is None) != (bob_key is None):
        raise ParameterError("give both keys or neither")
    files: dict[str, bytes] = {}
    manifest: dict[str, Any] = {
        "format": KEY_SET_FORMAT,
        "run_id": run_id,
        "aborted": alice_key is None,
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "files": {},
    }
    if alice_key is not None and bob_key is not None:
        ka, kb = _key_bits(alice_key), _key_bits(bob_key)
        if ka.size != kb.size:
            raise ParameterError(f"Alice's key has {ka.size} bits and Bob's {kb.size}")
        for who, bits in (("alice", ka), ("bob", kb)):
            name = f"{who}.key{suffix}"
            files[name] = _encode(bits, suffix)
            manifest["files"][name] = {"bits": int(bits.size), "sha256": _sha256(files[name])}
    files[REPORT] = bytes(report)
    if alice_key is not None:
        manifest["files"][REPORT] = {"sha256": _sha256(files[REPORT])}
        files[MANIFEST] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    out = Path(out_dir).absolute()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out.parent}: {exc.strerror or exc}") from None
    if not out.parent.is_dir():
        raise OutputError(f"{out.parent} is not a folder")
    with _locked(out.parent):
        _recover(out)
        _check_target(out, force=force)
        staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.staging-"))
        aside: Path | None = None
        try:
            for name, data in files.items():
                mode = 0o600 if name not in _RESERVED else 0o644
                write_new_durable(staging / name, data, mode)
            os.chmod(staging, 0o700)
            fsync_dir(staging)
            if out.exists() or out.is_symlink():
                aside = out.parent / f".{out.name}.old-{uuid.uuid4().hex}"
                os.rename(out, aside)
            try:
                os.rename(staging, out)
            except BaseException:
                if aside is not None:
                    os.rename(aside, out)
                    aside = None
                raise
            fsync_dir(out.parent)
        except OSError as exc:
            raise OutputError(f"cannot write the key set {out}: {exc.strerror or exc}") from None
        finally:
            if staging.exists():
                _remove(staging)
            if aside is not None:
                _remove(aside)
    return KeySet(
        path=out,
        run_id=run_id,
        aborted=alice_key is None,
        files=tuple(sorted(files)),
        report=json.loads(report) if _is_json(report) else {},
    )


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def _check_target(out: Path, *, force: bool) -> None:
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise OutputError(f"{out} exists and is not a folder")
    if out.is_dir() and not force:
        try:
            entries = sorted(p.name for p in out.iterdir())
        except OSError as exc:
            raise OutputError(f"cannot read {out}: {exc.strerror or exc}") from None
        if entries:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise OutputError(
                f"{out} is not empty ({shown}); choose a new folder or pass --force to replace it"
            )


def check_output_folder(out_dir: PathLike, *, force: bool = False) -> None:
    """Fail early (before any work) if :func:`write_key_set` would refuse ``out_dir``."""
    _check_target(Path(out_dir).absolute(), force=force)


def read_key_set(out_dir: PathLike) -> KeySet:
    """Read a key set and check it: the manifest's format, both key files' hashes and equal
    lengths, the report's hash and run id. Raises
    :class:`~qrepeater.errors.CorruptRecordError` on any mismatch."""
    out = Path(out_dir)
    if not out.is_dir():
        raise RecordNotFoundError(2, "key set not found", str(out))
    report_path = out / REPORT
    if not report_path.is_file():
        raise CorruptRecordError(f"{out}: key set without {REPORT}")
    report_bytes = report_path.read_bytes()
    try:
        report = json.loads(report_bytes)
    except (ValueError, UnicodeDecodeError):
        raise CorruptRecordError(f"{report_path}: not JSON") from None
    names = sorted(p.name for p in out.iterdir())
    if not (out / MANIFEST).exists():
        if names != [REPORT] or not report.get("aborted"):
            raise CorruptRecordError(f"{out}: files {names} without {MANIFEST}")
        return KeySet(out, str(report.get("run_id", "")), True, (REPORT,), report)
    try:
        manifest = json.loads((out / MANIFEST).read_bytes())
        entries = manifest["files"] if isinstance(manifest, dict) else None
        run_id = str(manifest["run_id"])
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        raise CorruptRecordError(f"{out / MANIFEST}: not a key-set manifest") from None
    if not isinstance(entries, dict) or not all(isinstance(e, dict) for e in entries.values()):
        raise CorruptRecordError(f"{out / MANIFEST}: 'files' must map names to entries")
    if manifest.get("format") != KEY_SET_FORMAT:
        raise CorruptRecordError(f"{out / MANIFEST}: unknown format {manifest.get('format')!r}")
    if sorted([*entries, MANIFEST]) != names:
        raise CorruptRecordError(f"{out}: files {names} differ from the manifest")
    for name, entry in entries.items():
        if _sha256((out / name).read_bytes()) != entry.get("sha256"):
            raise CorruptRecordError(f"{out / name}: SHA-256 differs from the manifest")
    if report.get("run_id") not in (None, run_id):
        raise CorruptRecordError(f"{out}: report and manifest name different runs")
    keys = sorted(n for n in entries if n != REPORT)
    if len(keys) != 2 or not keys[0].startswith("alice.key") or not keys[1].startswith("bob.key"):
        raise CorruptRecordError(f"{out}: manifest must name alice's and bob's key files")
    ka, kb = read_key_bits(out / keys[0]), read_key_bits(out / keys[1])
    if ka.size != kb.size:
        raise CorruptRecordError(f"{out}: keys of different lengths")
    return KeySet(out, run_id, False, tuple(names), report, ka, kb)


def write_key_pair(
    out_dir: PathLike,
    alice_key: npt.ArrayLike,
    bob_key: npt.ArrayLike,
    *,
    suffix: str = ".bin",
    extra: Mapping[str, bytes] | None = None,
    run_id: str | None = None,
    force: bool = False,
) -> tuple[Path, Path]:
    """Write ``alice.key<suffix>`` and ``bob.key<suffix>`` into ``out_dir`` as one key set
    (:func:`write_key_set`; ``extra`` may carry ``report.json``, the only extra file allowed).
    ``out_dir`` must be absent or empty unless ``force``; if anything fails, nothing new
    remains."""
    extra = dict(extra or {})
    report = extra.pop(REPORT, b"{}\n")
    if extra:
        raise ParameterError(f"only {REPORT} may accompany a key pair, got {sorted(extra)}")
    ks = write_key_set(
        out_dir,
        report=report,
        run_id=run_id or uuid.uuid4().hex,
        alice_key=alice_key,
        bob_key=bob_key,
        suffix=suffix,
        force=force,
    )
    return ks.path / f"alice.key{suffix}", ks.path / f"bob.key{suffix}"
