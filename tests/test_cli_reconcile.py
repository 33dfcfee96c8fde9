"""`qrepeater reconcile` on sifted-key files (all input formats): contract and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from typer.testing import CliRunner

from qrepeater.cli import app
from qrepeater.errors import CorruptRecordError, ParameterError, RecordNotFoundError
from qrepeater.qkdpp.keyfiles import write_key_bits
from qrepeater.qkdpp.keyformats import detect_key_format, read_key

runner = CliRunner()
U8 = npt.NDArray[np.uint8]


def _bits(n: int = 20_000, qber: float = 0.03, seed: int = 1) -> tuple[U8, U8]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, n, dtype=np.uint8)
    y = x ^ (rng.random(n) < qber).astype(np.uint8)
    return x, y


def _keys(
    tmp_path: Path, n: int = 20_000, qber: float = 0.03, suffix: str = ".bin"
) -> tuple[Path, Path]:
    x, y = _bits(n, qber)
    a, b = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
    write_key_bits(a, x)
    write_key_bits(b, y)
    return a, b


def _write(path: Path, bits: U8, fmt: str) -> Path:
    if fmt == "packed":
        path.write_bytes(np.packbits(bits).tobytes())
    elif fmt == "text":
        s = "".join("01"[int(b)] for b in bits)
        path.write_text("\n".join(s[i : i + 64] for i in range(0, len(s), 64)) + "\n")
    elif fmt == "npy":
        np.save(path, bits.astype(bool))
    else:
        write_key_bits(path, bits)
    return path


def _run(*args: str) -> tuple[int, dict[str, object] | None, str]:
    result = runner.invoke(app, ["reconcile", *args, "--json"])
    out = json.loads(result.stdout) if result.stdout.strip() else None
    return result.exit_code, out, result.stderr


@pytest.mark.parametrize("suffix", [".bin", ".parquet"])
def test_reconcile_contract(tmp_path: Path, suffix: str) -> None:
    a, b = _keys(tmp_path, suffix=suffix)
    code, out, _ = _run("--alice", str(a), "--bob", str(b), "--qber", "0.03", "--seed", "1")
    assert code == 0
    assert out is not None
    for key in ("success", "efficiency", "leak_bits", "frames", "seconds", "key_bits"):
        assert key in out
    assert out["success"] is True
    assert out["secret_capacity_left"] is True
    assert out["format"] == {"alice": "qrkey" if suffix == ".bin" else "parquet"} | {
        "bob": "qrkey" if suffix == ".bin" else "parquet"
    }
    assert 1.0 < float(out["efficiency"]) < 1.4  # type: ignore[arg-type]
    # the efficiency is taken against the QBER found after correction, not the hint
    x, y = _bits()
    q_true = float(np.mean(x != y))
    assert out["qber_observed"] == pytest.approx(q_true)


def test_reconcile_estimates_qber_from_a_sample(tmp_path: Path) -> None:
    a, b = _keys(tmp_path)
    code, out, _ = _run("--alice", str(a), "--bob", str(b), "--seed", "2")
    assert code == 0
    assert out is not None
    sampled = int(out["sampled_bits"])  # type: ignore[call-overload]
    assert sampled > 0
    assert out["key_bits"] == 20_000 - sampled
    assert out["disclosed_bits"] == int(out["leak_bits"]) + sampled  # type: ignore[call-overload]
    assert float(out["qber_upper"]) > float(out["qber_estimate"])  # type: ignore[arg-type]
    assert float(out["efficiency_with_sample"]) > float(out["efficiency"])  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["packed", "text", "npy"])
def test_reconcile_reads_published_formats(tmp_path: Path, fmt: str) -> None:
    x, y = _bits(16_000)
    suffix = {"packed": ".raw", "text": ".txt", "npy": ".npy"}[fmt]
    a = _write(tmp_path / f"a{suffix}", x, fmt)
    b = _write(tmp_path / f"b{suffix}", y, fmt)
    args = ["--alice", str(a), "--bob", str(b), "--qber", "0.03", "--seed", "3"]
    if fmt == "packed":
        args += ["--format", "packed"]
    code, out, _ = _run(*args)
    assert code == 0
    assert out is not None
    assert out["format"] == {"alice": fmt, "bob": fmt}
    assert out["key_bits"] == 16_000
    assert out["success"] is True


def test_packed_with_bit_count(tmp_path: Path) -> None:
    x, y = _bits(16_003)
    a = _write(tmp_path / "a.raw", x, "packed")
    b = _write(tmp_path / "b.raw", y, "packed")
    base = ["--alice", str(a), "--bob", str(b), "--qber", "0.03", "--format", "packed"]
    code, out, _ = _run(*base, "--bits", "16003")
    assert code == 0
    assert out is not None
    assert out["key_bits"] == 16_003
    code, _, err = _run(*base, "--bits", "16100")  # more bits than the files hold
    assert code == 2
    assert "bytes" in err


def test_uncorrelated_keys_leave_no_secret(tmp_path: Path) -> None:
    """Independent keys (Q = 0.5): exit 3, never 'success', and no secret capacity."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 2, 20_000, dtype=np.uint8)
    y = rng.integers(0, 2, 20_000, dtype=np.uint8)
    a = _write(tmp_path / "a.bin", x, "qrkey")
    b = _write(tmp_path / "b.bin", y, "qrkey")
    code, out, err = _run("--alice", str(a), "--bob", str(b), "--seed", "1")
    assert code == 3
    assert out is not None
    assert out["secret_capacity_left"] is False
    assert len(err.strip().splitlines()) == 1


def test_reconcile_bad_inputs(tmp_path: Path) -> None:
    a, b = _keys(tmp_path)
    short = tmp_path / "short.bin"
    write_key_bits(short, np.zeros(100, dtype=np.uint8))
    empty_a, empty_b = tmp_path / "e1.bin", tmp_path / "e2.bin"
    write_key_bits(empty_a, np.zeros(0, dtype=np.uint8))
    write_key_bits(empty_b, np.zeros(0, dtype=np.uint8))
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 nonsense")
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00\x01\x02")
    text_bad = tmp_path / "bad.txt"
    text_bad.write_text("0101x\n")
    cases = [
        ["--alice", str(a), "--bob", str(short)],
        ["--alice", str(a), "--bob", str(corrupt)],
        ["--alice", str(garbage), "--bob", str(b)],
        ["--alice", str(tmp_path / "missing.bin"), "--bob", str(b)],
        ["--alice", str(a), "--bob", str(b), "--qber", "0.7"],
        ["--alice", str(a), "--bob", str(b), "--seed", "-1"],
        ["--alice", str(empty_a), "--bob", str(empty_b)],
        ["--alice", str(a), "--bob", str(b), "--format", "zip"],
        ["--alice", str(a), "--bob", str(b), "--bits", "10"],
        ["--alice", str(text_bad), "--bob", str(text_bad)],
        ["--alice", str(tmp_path), "--bob", str(b)],
    ]
    for args in cases:
        result = runner.invoke(app, ["reconcile", *args])
        assert result.exit_code == 2, (args, result.output)
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
        assert "Traceback" not in result.output


def test_raw_bytes_are_not_guessed(tmp_path: Path) -> None:
    """Raw packed bits have no signature: without --format packed the file is refused."""
    raw = tmp_path / "key.raw"
    raw.write_bytes(np.packbits(_bits(800)[0]).tobytes())
    result = runner.invoke(app, ["reconcile", "--alice", str(raw), "--bob", str(raw)])
    assert result.exit_code == 2
    assert "packed" in result.stderr


def test_key_files_reject_values_other_than_bits(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"bit": pa.array([0, 1, 2], type=pa.uint8())}), bad)
    a, _ = _keys(tmp_path)
    result = runner.invoke(app, ["reconcile", "--alice", str(a), "--bob", str(bad)])
    assert result.exit_code == 2
    assert "not 0 or 1" in result.stderr


# ---- key formats (API) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "name"),
    [("qrkey", "k.bin"), ("parquet", "k.parquet"), ("npy", "k.npy"), ("text", "k.dat")],
)
def test_formats_round_trip_and_are_detected(tmp_path: Path, fmt: str, name: str) -> None:
    bits = _bits(1_001)[0]
    path = _write(tmp_path / name, bits, fmt)
    assert detect_key_format(path) == fmt
    loaded = read_key(path)
    assert loaded.format == fmt
    assert loaded.detected
    np.testing.assert_array_equal(loaded.bits, bits)
    assert loaded.bits.dtype == np.uint8


def test_packed_is_msb_first(tmp_path: Path) -> None:
    path = tmp_path / "k.raw"
    path.write_bytes(bytes([0b10110000, 0b00000001]))
    got = read_key(path, format="packed")
    assert got.bits.tolist() == [1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert read_key(path, format="packed", bits=16).bits.size == 16
    with pytest.raises(CorruptRecordError, match="padding"):
        read_key(path, format="packed", bits=9)
    with pytest.raises(CorruptRecordError, match="bytes"):
        read_key(path, format="packed", bits=3)


def test_format_errors(tmp_path: Path) -> None:
    npy2d = tmp_path / "k.npy"
    np.save(npy2d, np.zeros((3, 3), dtype=np.uint8))
    floats = tmp_path / "f.npy"
    np.save(floats, np.zeros(4))
    twos = tmp_path / "t.npy"
    np.save(twos, np.array([0, 1, 2]))
    obj = tmp_path / "o.npy"
    np.save(obj, np.array([object()]), allow_pickle=True)
    for path in (npy2d, floats, twos, obj):
        with pytest.raises(CorruptRecordError):
            read_key(path)
    with pytest.raises(RecordNotFoundError):
        read_key(tmp_path / "absent.bin")
    with pytest.raises(ParameterError):
        read_key(npy2d, format="csv")
    with pytest.raises(ParameterError):
        read_key(npy2d, format="npy", bits=3)
    misnamed = _write(tmp_path / "k2.bin", _bits(64)[0], "qrkey")
    misnamed.rename(tmp_path / "k.dat")
    with pytest.raises(CorruptRecordError, match=r"\.bin"):
        read_key(tmp_path / "k.dat")


@pytest.mark.timeout(120)
def test_reconcile_help_is_fast_to_import() -> None:
    """The CLI module must not import numba, ldpc or scipy at import time."""
    code = (
        "import sys, qrepeater.cli.keys; "
        "print(','.join(m for m in ('numba', 'ldpc', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=100
    )
    assert out.stdout.strip() == ""
