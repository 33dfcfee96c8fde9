"""CLI `diqkd simulate` / `diqkd estimate`: JSON contract, round trip, bad input (exit 2, one
line, no files) and no partial output."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from qrepeater.cli import diqkd

app = typer.Typer()
app.add_typer(diqkd.app, name="diqkd")
runner = CliRunner()


def invoke(*args: str) -> Any:
    return runner.invoke(app, ["diqkd", *args])


def simulate(out: Path, *extra: str) -> dict[str, Any]:
    result = invoke("simulate", "--out", str(out), "--rounds", "5000", "--json", *extra)
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_simulate_then_estimate(tmp_path: Path) -> None:
    out = tmp_path / "run"
    sim = simulate(out, "--seed", "3", "--fiber-km", "10")
    assert sorted(os.listdir(out)) == ["alice.parquet", "bob.parquet"]
    for key in ("chsh", "chsh_std", "qber", "qber_std", "rounds", "key_rounds", "test_rounds"):
        assert key in sim
    assert sim["rounds"] == 5000
    assert sim["seed"] == 3
    result = invoke(
        "estimate",
        "--alice",
        str(out / "alice.parquet"),
        "--bob",
        str(out / "bob.parquet"),
        "--json",
    )
    assert result.exit_code == 0, result.output
    est = json.loads(result.stdout)
    for key in ("chsh", "chsh_std", "qber", "qber_std", "rounds", "key_rounds", "test_rounds"):
        assert est[key] == sim[key], key
    assert est["run_id"] == sim["run_id"]


def test_human_output(tmp_path: Path) -> None:
    result = invoke("simulate", "--out", str(tmp_path / "r"), "--rounds", "2000")
    assert result.exit_code == 0, result.output
    assert "chsh" in result.stdout
    result = invoke(
        "estimate",
        "--alice",
        str(tmp_path / "r" / "alice.parquet"),
        "--bob",
        str(tmp_path / "r" / "bob.parquet"),
    )
    assert result.exit_code == 0
    assert "qber" in result.stdout


def test_alpha_option_is_recorded(tmp_path: Path) -> None:
    simulate(tmp_path / "r", "--alpha", "0.05")
    meta = json.loads(pq.read_schema(tmp_path / "r" / "bob.parquet").metadata[b"qrepeater"])
    assert meta["alpha"] == 0.05
    assert meta["party"] == "bob"


@pytest.mark.parametrize(
    "bad",
    [
        ["--alpha", "1.5"],
        ["--alpha", "0"],
        ["--fiber-km", "-1"],
        ["--rounds", "0"],
        ["--seed", "-2"],
        ["--preset", "nosuchpreset"],
    ],
)
def test_simulate_bad_input_exit_2_no_files(tmp_path: Path, bad: list[str]) -> None:
    out = tmp_path / "out"
    result = invoke("simulate", "--out", str(out), "--rounds", "100", *bad)
    assert result.exit_code == 2, result.output
    assert "error:" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()
    assert os.listdir(tmp_path) == []


def test_simulate_write_failure_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.replace

    def fail_bob(src: Any, dst: Any) -> None:
        if Path(dst).name == "bob.parquet":
            raise PermissionError(13, "Permission denied", str(dst))
        real(src, dst)

    monkeypatch.setattr(os, "replace", fail_bob)
    result = invoke("simulate", "--out", str(tmp_path / "out"), "--rounds", "100")
    assert result.exit_code == 2
    assert "Permission denied" in result.stderr
    assert os.listdir(tmp_path) == []


def test_simulate_out_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    result = invoke("simulate", "--out", str(target), "--rounds", "100")
    assert result.exit_code == 2
    assert os.listdir(tmp_path) == ["file"]


def test_estimate_bad_input_exit_2(tmp_path: Path) -> None:
    a_run, b_run = tmp_path / "a", tmp_path / "b"
    simulate(a_run, "--seed", "1")
    simulate(b_run, "--seed", "2")
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"junk")
    cases = [
        (a_run / "alice.parquet", tmp_path / "missing.parquet", "not found"),
        (a_run / "alice.parquet", junk, "not a readable Parquet"),
        (a_run / "alice.parquet", b_run / "bob.parquet", "different runs"),
        (a_run / "bob.parquet", a_run / "alice.parquet", "expected alice"),
    ]
    for alice, bob, message in cases:
        result = invoke("estimate", "--alice", str(alice), "--bob", str(bob), "--json")
        assert result.exit_code == 2, (alice, bob, result.output)
        assert message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert result.stdout == ""


def test_distill_key_set_is_one_unit_and_never_overwritten(tmp_path: Path) -> None:
    """An aborted run writes a report-only set; a second run into the same folder is refused
    (exit 2, one line) unless --force, which replaces the set whole."""
    simulate(tmp_path / "run", "--seed", "2")
    rec = [
        "--alice",
        str(tmp_path / "run/alice.parquet"),
        "--bob",
        str(tmp_path / "run/bob.parquet"),
    ]
    out = tmp_path / "keys"
    first = invoke("distill", *rec, "--out", str(out), "--seed", "1", "--json")
    assert first.exit_code == 3  # 5,000 rounds give no finite key
    assert len(first.stderr.strip().splitlines()) == 1
    report = json.loads((out / "report.json").read_text())
    assert report["aborted"] is True
    assert report["run_id"] == json.loads(first.stdout)["run_id"]
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]
    again = invoke("distill", *rec, "--out", str(out), "--seed", "1")
    assert again.exit_code == 2
    assert "not empty" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    forced = invoke("distill", *rec, "--out", str(out), "--seed", "1", "--force")
    assert forced.exit_code == 3
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".keys.")]


def test_distill_preset_fixes_the_setting_distribution(tmp_path: Path) -> None:
    simulate(tmp_path / "run", "--seed", "2")
    rec = [
        "--alice",
        str(tmp_path / "run/alice.parquet"),
        "--bob",
        str(tmp_path / "run/bob.parquet"),
    ]
    from qrepeater.presets import load_preset

    p = load_preset().replace({"operating.diqkd_prob_y2": 0.5})
    other = tmp_path / "other.toml"
    other.write_text(p.to_toml())
    res = invoke("distill", *rec, "--out", str(tmp_path / "k"), "--preset", str(other), "--json")
    assert res.exit_code == 3
    assert json.loads(res.stdout)["abort_reason"] == "settings"
    assert "declares the setting distribution" in res.stderr
