"""CLI: link, memory, calibrate, presets, reproduce; JSON contracts and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qrepeater.cli import app
from qrepeater.presets import load_preset

runner = CliRunner()


def run_json(*args: str) -> dict[str, object]:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_link_json_contract() -> None:
    out = run_json("link", "--preset", "ustc2025", "--fiber-km", "10", "--alpha", "0.17")
    for key in (
        "herald_probability",
        "attempt_rate_hz",
        "rate_hz",
        "mean_wait_s",
        "snr",
        "fidelity",
    ):
        assert isinstance(out[key], float), key
    assert set(out["correlators"]) == {"xx", "yy", "zz"}  # type: ignore[arg-type]
    assert {"double_excitation", "noise", "phase", "motion", "spam"} <= set(out["error_budget"])  # type: ignore[arg-type]
    assert out["rate_hz"] == pytest.approx(2.226, rel=0.01)


def test_memory_json_contract() -> None:
    out = run_json("memory", "--preset", "ustc2025", "--fiber-km", "10", "--alpha", "0.17")
    for key in (
        "coherence_time_s",
        "fidelity_at_mean_wait",
        "time_above_half_s",
        "avg_fidelity_window",
        "avg_fidelity_infinite",
        "link_efficiency",
        "delivery_threshold",
        "deterministic_delivery_fidelity",
        "swap_fidelity",
    ):
        assert isinstance(out[key], float), key


def test_link_table_without_json() -> None:
    result = runner.invoke(app, ["link"])
    assert result.exit_code == 0
    assert "rate_hz" in result.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["link", "--alpha", "1.5"], "alpha must lie in (0, 1)"),
        (["link", "--alpha", "0"], "alpha must lie in (0, 1)"),
        (["link", "--fiber-km", "-3"], "non-negative"),
        (["link", "--preset", "nosuch"], "unknown preset 'nosuch'"),
        (["memory", "--window-s", "-1"], "window must be positive"),
        (["memory", "--window-s", "0"], "window must be positive"),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], needle: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_misspelt_preset_file_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "lab.toml"
    bad.write_text(load_preset().to_toml().replace("\ncontrast =", "\ncontrast_ =", 1))
    out = tmp_path / "out"
    result = runner.invoke(app, ["reproduce", "--preset", str(bad), "--out", str(out)])
    assert result.exit_code == 2
    assert "unknown key 'phase.contrast_'" in result.stderr
    assert not out.exists()


def test_calibrate_writes_a_loadable_consistent_preset(tmp_path: Path) -> None:
    target = tmp_path / "cal.toml"
    out = run_json("calibrate", "--out", str(target))
    assert out["written"] == str(target)
    reloaded = load_preset(str(target))
    assert reloaded.quantities == load_preset().quantities or all(
        reloaded.quantities[k].value == pytest.approx(v.value, rel=1e-9)
        for k, v in load_preset().quantities.items()
    )


def test_reproduce_rows_and_figures(tmp_path: Path) -> None:
    out = run_json("reproduce", "--out", str(tmp_path / "rep"))
    rows = out["rows"]
    assert isinstance(rows, list)
    assert rows
    for row in rows:
        assert {"name", "paper", "model", "unit", "rel_diff", "kind"} <= set(row)
        assert row["kind"] in {"fit", "prediction", "check"}
    names = {r["name"] for r in rows}
    assert "herald rate, alpha=17%, 10 km" in names
    pngs = sorted(p.name for p in (tmp_path / "rep").glob("*.png"))
    assert "fig3b_fidelity_rate.png" in pngs
    assert "fig3c_error_budget.png" in pngs
    assert (tmp_path / "rep" / "fig3d_memory.pdf").exists()


def test_console_script_exit_status() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "qrepeater", "link", "--alpha", "2"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:")
    assert "Traceback" not in proc.stderr


def test_bracketed_user_text_is_printed_literally(tmp_path: Path) -> None:
    """Paths and names with rich-markup look-alikes neither crash nor vanish (issue 8, item 6)."""
    folder = tmp_path / "[bold]" / "[/x]"
    folder.mkdir(parents=True)
    path = folder / "p.toml"
    path.write_text(load_preset().to_toml())
    ok = runner.invoke(app, ["link", "--preset", str(path)])
    assert ok.exit_code == 0, ok.output
    assert f"Elementary link ({path})" in ok.stdout
    bad = folder / "bad.toml"
    bad.write_text(load_preset().to_toml() + "\n[bogus]\nx = 1\n")
    res = runner.invoke(app, ["link", "--preset", str(bad)])
    assert res.exit_code == 2
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert "[bogus]" in res.stderr
    assert str(bad) in " ".join(res.stderr.split())
