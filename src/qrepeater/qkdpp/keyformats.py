"""Sifted-key input formats: the project's key files and the forms experiments publish.

================ ===================================================================== ========
format           content                                                               detected
================ ===================================================================== ========
``qrkey``        the project's packed key file (magic ``QRKEYv1\\n``, bit count,        yes
                 ``numpy.packbits``; :mod:`qrepeater.qkdpp.keyfiles`)
``parquet``      the project's Parquet key file (one uint8 column ``bit``)              yes
``npy``          a NumPy ``.npy`` array: 1-D, bool or integers 0/1 (no pickles)         yes
``text``         characters ``0``/``1``; whitespace (spaces, line breaks) is ignored    yes
``packed``       raw bits, eight to a byte, most significant bit first (as              no
                 ``numpy.packbits``), no header; ``8 x bytes`` bits or ``bits=N``
================ ===================================================================== ========

Detection (``format="auto"``) reads the file's first bytes: the project's magic, Parquet's
``PAR1``, NumPy's ``\\x93NUMPY``, or a file made only of ``0``, ``1`` and whitespace (text;
a ``.txt`` suffix also means text). Raw packed bits have no signature (any byte string is
valid), so they are never guessed: a file that matches nothing is refused with a message that
names ``packed``. Every reader returns a ``uint8`` array of 0/1 and raises a
:class:`~qrepeater.errors.RecordError` subclass on bad input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, get_args

import numpy as np
import numpy.typing as npt

from qrepeater.errors import CorruptRecordError, ParameterError, RecordNotFoundError
from qrepeater.qkdpp.keyfiles import KEY_MAGIC, read_key_bits

__all__ = ["KEY_FORMATS", "KeyFormat", "LoadedKey", "detect_key_format", "read_key"]

U8 = npt.NDArray[np.uint8]
KeyFormat = Literal["auto", "qrkey", "parquet", "npy", "text", "packed"]
#: Format names accepted by :func:`read_key` (``auto`` detects).
KEY_FORMATS: Final[tuple[str, ...]] = get_args(KeyFormat)

_NPY_MAGIC: Final = b"\x93NUMPY"
_PARQUET_MAGIC: Final = b"PAR1"
_TEXT_BYTES: Final = frozenset(b"01 \t\r\n")
_MAX_TEXT_SNIFF: Final = 1 << 16


@dataclass(frozen=True, eq=False)
class LoadedKey:
    """Key bits read from ``path`` in ``format`` (the detected one when asked to detect)."""

    bits: U8
    format: str
    path: Path
    detected: bool


def _read(path: Path) -> bytes:
    if not path.exists():
        raise RecordNotFoundError(2, "key file not found", str(path))
    if path.is_dir():
        raise CorruptRecordError(f"{path}: is a folder, not a key file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CorruptRecordError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def detect_key_format(path: str | Path) -> str:
    """The format of a key file, from its first bytes (see the module docstring)."""
    p = Path(path)
    data = _read(p)
    fmt = _sniff(p, data)
    if fmt is None:
        raise CorruptRecordError(
            f"{p}: format not recognised (not a qrepeater key file, Parquet, .npy or 0/1 text); "
            "for raw packed bits use format 'packed' (--format packed, optionally --bits N)"
        )
    return fmt


def _sniff(p: Path, data: bytes) -> str | None:
    if data.startswith(KEY_MAGIC):
        return "qrkey"
    if data.startswith(_PARQUET_MAGIC):
        return "parquet"
    if data.startswith(_NPY_MAGIC):
        return "npy"
    if p.suffix.lower() == ".txt":
        return "text"
    head = data[:_MAX_TEXT_SNIFF]
    if head.strip() and set(head) <= _TEXT_BYTES:
        return "text"
    return None


def read_key(
    path: str | Path, *, format: KeyFormat | str = "auto", bits: int | None = None
) -> LoadedKey:
    """Read sifted-key bits from ``path`` in ``format`` (``auto``: detect).

    ``bits`` is the bit count of a ``packed`` file (default: 8 per byte); the file must then
    hold exactly ``ceil(bits / 8)`` bytes and zero padding bits. Raises
    :class:`~qrepeater.errors.ParameterError` for an unknown format or a ``bits`` given for
    another format, and a :class:`~qrepeater.errors.RecordError` for unreadable content.
    """
    p = Path(path)
    if format not in KEY_FORMATS:
        raise ParameterError(f"unknown key format {format!r}; use one of {', '.join(KEY_FORMATS)}")
    data = _read(p)
    detected = format == "auto"
    fmt = _sniff(p, data) if detected else str(format)
    if fmt is None:
        detect_key_format(p)  # raises with the explanation
        raise AssertionError("unreachable")  # pragma: no cover
    if bits is not None and fmt != "packed":
        raise ParameterError(f"a bit count (--bits) only applies to packed files, not {fmt}")
    if fmt in ("qrkey", "parquet"):
        if fmt == "qrkey" and not data.startswith(KEY_MAGIC):
            raise CorruptRecordError(f"{p}: not a qrepeater key file (bad header)")
        out = _project_file(p, fmt)
    elif fmt == "npy":
        out = _npy(p, data)
    elif fmt == "text":
        out = _text(p, data)
    else:
        out = _packed(p, data, bits)
    return LoadedKey(bits=out, format=fmt, path=p, detected=detected)


def _project_file(p: Path, fmt: str) -> U8:
    """The project's reader (it chooses by suffix, so a project file must keep its suffix)."""
    want = ".parquet" if fmt == "parquet" else ".bin"
    if p.suffix.lower() != want:
        raise CorruptRecordError(f"{p}: a {fmt} key file must end in {want}")
    return read_key_bits(p)


def _npy(p: Path, data: bytes) -> U8:
    import io

    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise CorruptRecordError(f"{p}: not a readable .npy array ({exc})") from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 1:
        shape = getattr(arr, "shape", None)
        raise CorruptRecordError(f"{p}: a key array must be one-dimensional, got shape {shape}")
    if arr.dtype != np.bool_ and not np.issubdtype(arr.dtype, np.integer):
        raise CorruptRecordError(f"{p}: key bits must be bool or integers, got dtype {arr.dtype}")
    bad = (arr != 0) & (arr != 1)
    if np.any(bad):
        i = int(np.argmax(bad))
        raise CorruptRecordError(f"{p}: key bit {arr[i]!r} at position {i} is not 0 or 1")
    return arr.astype(np.uint8)


def _text(p: Path, data: bytes) -> U8:
    raw = np.frombuffer(data, dtype=np.uint8)
    keep = ~np.isin(raw, np.frombuffer(b" \t\r\n", dtype=np.uint8))
    chars = raw[keep]
    bad = (chars != ord("0")) & (chars != ord("1"))
    if np.any(bad):
        i = int(np.flatnonzero(keep)[int(np.argmax(bad))])
        raise CorruptRecordError(
            f"{p}: byte {i} ({bytes(raw[i : i + 1])!r}) is not '0', '1' or whitespace"
        )
    return (chars - ord("0")).astype(np.uint8)


def _packed(p: Path, data: bytes, bits: int | None) -> U8:
    body = np.frombuffer(data, dtype=np.uint8)
    if bits is None:
        return np.unpackbits(body)
    n = int(bits)
    if n < 0:
        raise ParameterError(f"bit count must be >= 0, got {n}")
    if body.size != (n + 7) // 8:
        raise CorruptRecordError(
            f"{p}: {n} bits need {(n + 7) // 8} bytes, the file holds {body.size}"
        )
    out = np.unpackbits(body)
    if np.any(out[n:]):
        raise CorruptRecordError(f"{p}: padding bits after bit {n} are not zero")
    return out[:n].copy()
