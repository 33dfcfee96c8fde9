"""`qrepeater reconcile` on raw sifted-key files: contract and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from qrepeater.cli import app
from qrepeater.diqkd.records import write_key_bits

runner = CliRunner()


def _keys(
    tmp_path: Path, n: int = 20_000, qber: float = 0.03, suffix: str = ".bin"
) -> tuple[Path, Path]:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 2, n, dtype=np.uint8)
    y = x ^ (rng.random(n) < qber).astype(np.uint8)
    a, b = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
    write_key_bits(a, x)
    write_key_bits(b, y)
    return a, b


@pytest.mark.parametrize("suffix", [".bin", ".parquet"])
def test_reconcile_contract(tmp_path: Path, suffix: str) -> None:
    a, b = _keys(tmp_path, suffix=suffix)
    result = runner.invoke(
        app,
        [
            "reconcile",
            "--alice",
            str(a),
            "--bob",
            str(b),
            "--qber",
            "0.03",
            "--seed",
            "1",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    for key in ("success", "efficiency", "leak_bits", "frames", "seconds"):
        assert key in out
    assert out["success"] is True
    assert 1.0 < out["efficiency"] < 1.4


def test_reconcile_estimates_qber_from_a_sample(tmp_path: Path) -> None:
    a, b = _keys(tmp_path)
    result = runner.invoke(
        app, ["reconcile", "--alice", str(a), "--bob", str(b), "--seed", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["sampled_bits"] > 0
    assert out["key_bits"] == 20_000 - out["sampled_bits"]


def test_reconcile_bad_inputs(tmp_path: Path) -> None:
    a, b = _keys(tmp_path)
    short = tmp_path / "short.bin"
    write_key_bits(short, np.zeros(100, dtype=np.uint8))
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 nonsense")
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00\x01\x02")
    cases = [
        ["--alice", str(a), "--bob", str(short)],
        ["--alice", str(a), "--bob", str(corrupt)],
        ["--alice", str(garbage), "--bob", str(b)],
        ["--alice", str(tmp_path / "missing.bin"), "--bob", str(b)],
        ["--alice", str(a), "--bob", str(b), "--qber", "0.7"],
    ]
    for args in cases:
        result = runner.invoke(app, ["reconcile", *args])
        assert result.exit_code == 2, (args, result.output)
        assert len(result.stderr.strip().splitlines()) == 1


def test_key_files_reject_values_other_than_bits(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"bit": pa.array([0, 1, 2], type=pa.uint8())}), bad)
    a, _ = _keys(tmp_path)
    result = runner.invoke(app, ["reconcile", "--alice", str(a), "--bob", str(bad)])
    assert result.exit_code == 2
    assert "not 0 or 1" in result.stderr
