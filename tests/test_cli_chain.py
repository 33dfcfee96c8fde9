"""CLI: `qrepeater chain` (abstract and preset modes) and `qrepeater chain requirements`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from qrepeater.cli import app

runner = CliRunner()

ABSTRACT = [
    "chain",
    "--segments",
    "8",
    "--protocol",
    "nested",
    "--p",
    "0.1",
    "--swap-probability",
    "0.5",
    "--werner",
    "0.98",
    "--coherence-attempts",
    "400",
]
LINK_KEYS = {
    "rate_hz",
    "mean_wait_s",
    "wait_quantiles_s",
    "fidelity",
    "fidelity_quantiles",
    "correlators",
    "chsh",
    "qber",
    "diqkd_asymptotic_rate",
    "key_rate_bps",
    "direct_rate_hz",
    "plob_bits_per_s",
    "engine",
    "truncation",
}


def run_json(*args: str) -> dict[str, object]:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_abstract_json_contract() -> None:
    out = run_json(*ABSTRACT, "--cutoff-attempts", "16")
    for key in ("mean_wait_attempts", "fidelity", "werner", "coverage", "bb84_key_per_attempt"):
        assert isinstance(out[key], float), key
    assert out["coverage"] > 1 - 1e-6  # type: ignore[operator]
    assert out["log_base"] == 2
    assert 0.25 < out["fidelity"] < 1  # type: ignore[operator]


def test_per_level_and_li_cutoff_kinds_on_the_command_line() -> None:
    # Li et al.'s examples.swap_protocol (memory-time cut-offs 16, 31, 55); reference value in
    # tests/test_repeater_cutoffs.py
    out = run_json(*ABSTRACT, "--cutoff-attempts", "16,31,55", "--tol", "1e-10")
    assert out["cutoffs"]["memory_time_attempts"] == [16, 31, 55]  # type: ignore[index]
    assert abs(out["mean_wait_attempts"] - 471.971333) < 1e-5  # type: ignore[operator]
    fid = run_json(*ABSTRACT, "--werner-cutoff", "0.9,0.8,0.6")
    run = run_json(*ABSTRACT, "--run-cutoff-attempts", "60,200,inf")
    plain = run_json(*ABSTRACT)
    assert fid["werner"] > plain["werner"]  # type: ignore[operator]
    assert fid["mean_wait_attempts"] > plain["mean_wait_attempts"]  # type: ignore[operator]
    assert run["cutoffs"]["run_time_attempts"] == [60, 200, None]  # type: ignore[index]
    preset = run_json(
        "chain",
        "--total-km",
        "40",
        "--segments",
        "2",
        "--werner-cutoff",
        "0.5",
        "--run-cutoff-s",
        "2",
    )
    assert preset["werner_cutoff"] == 0.5
    assert preset["run_cutoff_s"] == 2.0


def test_abstract_engines_agree_on_the_command_line() -> None:
    ex = run_json(*ABSTRACT[:-2], "--cutoff-attempts", "20", "--segments", "4")
    mc = run_json(
        *ABSTRACT[:-2],
        "--cutoff-attempts",
        "20",
        "--segments",
        "4",
        "--engine",
        "monte-carlo",
        "--samples",
        "20000",
        "--seed",
        "3",
    )
    se = mc["truncation"]["mean_wait_stderr_attempts"]  # type: ignore[index]
    assert abs(mc["mean_wait_attempts"] - ex["mean_wait_attempts"]) < 4.5 * se  # type: ignore[operator]


@pytest.mark.parametrize("protocol", ["swap-asap", "nested"])
def test_preset_json_contract(protocol: str) -> None:
    engine = "monte-carlo" if protocol == "swap-asap" else "exact"
    out = run_json(
        "chain",
        "--preset",
        "ustc2025",
        "--total-km",
        "100",
        "--segments",
        "4",
        "--protocol",
        protocol,
        "--cutoff-s",
        "0.2",
        "--engine",
        engine,
        "--samples",
        "2000",
    )
    assert set(out) >= LINK_KEYS
    assert set(out["correlators"]) == {"xx", "yy", "zz"}  # type: ignore[arg-type]
    assert out["engine"] == engine
    assert out["rate_hz"] > 0
    assert out["direct_rate_hz"] > 0


def test_purified_chain() -> None:
    out = run_json(
        "chain", "--total-km", "20", "--segments", "2", "--purify", "dejmps", "--cutoff-s", "0.3"
    )
    assert 0.25 < out["fidelity"] < 1  # type: ignore[operator]


def test_requirements_json() -> None:
    out = run_json(
        "chain",
        "requirements",
        "--total-km",
        "10",
        "--target",
        "f-above-half",
        "--segments",
        "2",
        "--alphas",
        "0.1",
    )
    assert out["reachable"] is True
    assert out["coherence_time_s"] > 0  # type: ignore[operator]
    assert {"today", "single_link", "at_requirement", "segments", "alpha"} <= set(out)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["chain", "--segments", "0", "--p", "0.1"], "positive integer"),
        (["chain", "--segments", "2.5", "--p", "0.1"], "positive integer"),
        (["chain", "--segments", "3", "--p", "0.1"], "power-of-two"),
        (["chain", "--segments", "4", "--p", "0.1", "--cutoff-attempts", "-3"], "cut-off"),
        (["chain", "--segments", "4", "--total-km", "100", "--cutoff-s", "nan"], "cut-off"),
        (["chain", "--segments", "4", "--total-km", "100", "--cutoff-s", "-1"], "cut-off"),
        (
            [
                "chain",
                "--segments",
                "2",
                "--total-km",
                "20",
                "--purify",
                "dejmps",
                "--memories",
                "1",
            ],
            "two memories",
        ),
        (["chain", "--segments", "2", "--p", "1e-14"], "no heralds"),
        (
            ["chain", "--segments", "16", "--total-km", "4000", "--cutoff-s", "0.001"],
            "reasonable time",
        ),
        (["chain", "--segments", "4"], "--total-km"),
        (["chain", "--segments", "8", "--p", "0.1", "--werner-cutoff", "1.2"], "(0, 1]"),
        (["chain", "--segments", "8", "--p", "0.1", "--werner-cutoff", "0.9,x,0.5"], "number"),
        (["chain", "--segments", "8", "--p", "0.1", "--cutoff-attempts", "4,5"], "per level"),
        (
            ["chain", "--segments", "4", "--total-km", "40", "--cutoff-attempts", "5"],
            "abstract",
        ),
        (["chain", "requirements", "--total-km", "100", "--target", "moon"], "target"),
        (["chain", "requirements", "--total-km", "100", "--segments", "2,x"], "segments"),
    ],
)
def test_bad_input_one_line_exit_2(args: list[str], needle: str) -> None:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert needle in lines[0], result.stderr
    assert result.stdout == ""


@pytest.mark.timeout(60)
def test_help_does_not_import_heavy_modules() -> None:
    code = (
        "import sys\nfrom qrepeater.cli import chain\n"
        "assert 'scipy' not in sys.modules, 'scipy imported'\n"
        "assert 'qrepeater.repeater.exact' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
