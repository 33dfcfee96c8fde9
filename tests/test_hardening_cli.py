"""Issue 8, items 2-4 and 6-10 through the real command line (subprocesses).

Every case checks the exit status, exactly one line on stderr for statuses 2 and 3, no traceback,
and that nothing was written where nothing may be. The subprocesses of all cases run
concurrently (a module fixture), the tests then check one case each.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from qrepeater.diqkd.records import write_run
from qrepeater.diqkd.rounds import DIQKDRun, PartyRounds, simulate_from_preset
from qrepeater.presets import Preset, load_preset
from qrepeater.qkdpp.keyfiles import read_key_set, write_key_set

pytestmark = pytest.mark.slow  # about 25 interpreter starts; the fuzz test covers the same fast

KEY = np.random.default_rng(3).integers(0, 2, 512).astype(np.uint8)


def _preset_text(edit: Callable[[str], str]) -> str:
    text = load_preset().to_toml()
    out = edit(text)
    assert out != text
    return out


def _set_field(field: str, value: str, unit: str | None = None) -> Callable[[str], str]:
    """Edit ``field = { value = ..., unit = "..." }`` of a preset's TOML text."""
    pattern = re.compile(rf'^({field} = {{ value = )([^,]+)(, unit = ")([^"]*)(")', re.M)

    def edit(text: str) -> str:
        def sub(m: re.Match[str]) -> str:
            return m.group(1) + value + m.group(3) + (m.group(4) if unit is None else unit) + '"'

        return pattern.sub(sub, text, count=1)

    return edit


@dataclass
class Case:
    args: list[str]
    code: int
    message: str = ""  # must appear on the stderr line
    untouched: Path | None = None  # a folder whose listing must not change
    absent: Path | None = None  # must not exist afterwards
    proc: subprocess.Popen[str] | None = None
    before: list[str] | None = None


def _listing(p: Path) -> list[str]:
    return sorted(str(q.relative_to(p)) for q in p.rglob("*")) if p.exists() else []


def _head(rounds: PartyRounds, n: int) -> PartyRounds:
    fields = ("round", "time_s", "herald", "setting", "outcome")
    return dataclasses.replace(rounds, **{f: getattr(rounds, f)[:n] for f in fields})


def _write_records(run: DIQKDRun, folder: Path) -> tuple[Path, Path]:
    return write_run(folder, run)


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory, preset: Preset) -> dict[str, Case]:
    tmp = tmp_path_factory.mktemp("hardening_cli")
    run = simulate_from_preset(preset, n_rounds=5_000, seed=9)
    a, b = _write_records(run, tmp / "rec")
    rec = ["--alice", str(a), "--bob", str(b)]

    # 0-row records
    empty = DIQKDRun(
        alice=_head(run.alice, 0),
        bob=_head(run.bob, 0),
        metadata=dataclasses.replace(run.metadata, rounds=0),
    )
    ea, eb = _write_records(empty, tmp / "empty")

    # metadata with fiber_km = NaN in both records
    nan_dir = tmp / "nanmeta"
    na, nb = _write_records(run, nan_dir)
    for path in (na, nb):
        table = pq.read_table(path)
        meta = json.loads(table.schema.metadata[b"qrepeater"])
        meta["fiber_km"] = float("nan")
        table = table.replace_schema_metadata({b"qrepeater": json.dumps(meta).encode()})
        pq.write_table(table, path)

    presets = tmp / "presets"
    presets.mkdir()
    bracket = presets / "[x]"
    bracket.mkdir()
    (bracket / "p.toml").write_text("[meta]\nname = 'x'\nversion = '1'\n[bogus]\n")
    edits = {
        "dark": _set_field("dark_count_cps", "1e12"),
        "window": _set_field("window_s", "1e300"),
        "watts": _set_field("coherence_time_s", "0.55", "W"),
        "furlongs": _set_field("group_velocity_km_s", "1.0", "furlongs"),
    }
    paths = {}
    for name, edit in edits.items():
        paths[name] = presets / f"{name}.toml"
        paths[name].write_text(_preset_text(edit))

    # output folders in various states
    blocked_bob = tmp / "blocked_bob"
    (blocked_bob / "bob.key.bin").mkdir(parents=True)
    blocked_report = tmp / "blocked_report"
    (blocked_report / "report.json").mkdir(parents=True)
    old_keys = tmp / "old_keys"
    write_key_set(old_keys, report=b'{"run_id": "old"}', run_id="old", alice_key=KEY, bob_key=KEY)
    forced = tmp / "forced"
    write_key_set(forced, report=b'{"run_id": "old"}', run_id="old", alice_key=KEY, bob_key=KEY)
    a_file = tmp / "a_file"
    a_file.write_text("not a folder")
    sim_blocked = tmp / "sim_blocked"
    (sim_blocked / "alice.parquet").mkdir(parents=True)

    d = ["diqkd", "distill", *rec]
    all_cases = {
        "bracket_path": Case(["link", "--preset", str(bracket / "p.toml")], 2, "[bogus]"),
        "bracket_missing": Case(["link", "--preset", "[/nowhere].toml"], 2, "[/nowhere].toml"),
        "empty_preset": Case(["link", "--preset", ""], 2, "empty preset name"),
        "fiber_50000": Case(["link", "--fiber-km", "50000", "--json"], 2, "50000 km"),
        "memory_50000": Case(["memory", "--fiber-km", "50000", "--json"], 2, "50000 km"),
        "dark_counts": Case(["link", "--preset", str(paths["dark"])], 2, "noise click"),
        "window": Case(["link", "--preset", str(paths["window"])], 2, "noise click"),
        "unit_watts": Case(["link", "--preset", str(paths["watts"])], 2, "'W'"),
        "unit_furlongs": Case(["link", "--preset", str(paths["furlongs"])], 2, "furlongs"),
        "usage_option": Case(["link", "--bogus"], 2, "--bogus"),
        "usage_missing": Case(["diqkd", "distill"], 2, "--alice"),
        "usage_type": Case(["link", "--fiber-km", "abc"], 2, "--fiber-km"),
        "distill_seed": Case(
            [*d, "--out", str(tmp / "o_seed"), "--seed", "-1"], 2, "--seed", absent=tmp / "o_seed"
        ),
        "simulate_huge": Case(
            ["diqkd", "simulate", "--out", str(tmp / "o_huge"), "--rounds", "1000000000000"],
            2,
            "GiB",
            absent=tmp / "o_huge",
        ),
        "simulate_seed": Case(
            ["diqkd", "simulate", "--out", str(tmp / "o_sseed"), "--seed", "-1"],
            2,
            "--seed",
            absent=tmp / "o_sseed",
        ),
        "simulate_blocked": Case(
            ["diqkd", "simulate", "--out", str(sim_blocked), "--rounds", "100"],
            2,
            str(sim_blocked),
            untouched=sim_blocked,
        ),
        "estimate_empty": Case(
            ["diqkd", "estimate", "--alice", str(ea), "--bob", str(eb)], 2, "no rounds"
        ),
        "distill_empty": Case(
            ["diqkd", "distill", "--alice", str(ea), "--bob", str(eb), "--out", str(tmp / "o_e")],
            2,
            "no rounds",
            absent=tmp / "o_e",
        ),
        "nan_metadata": Case(
            ["diqkd", "estimate", "--alice", str(na), "--bob", str(nb)], 2, "finite number"
        ),
        "blocked_bob": Case([*d, "--out", str(blocked_bob)], 2, "not empty", untouched=blocked_bob),
        "blocked_report": Case(
            [*d, "--out", str(blocked_report)], 2, "not empty", untouched=blocked_report
        ),
        "abort_beside_old_keys": Case(
            [*d, "--out", str(old_keys)], 2, "not empty", untouched=old_keys
        ),
        "abort_forced": Case([*d, "--out", str(forced), "--force", "--json"], 3, "aborted"),
        "out_is_file": Case([*d, "--out", str(a_file), "--force"], 2, "not a folder"),
    }
    env = {**os.environ, "COLUMNS": "80"}
    for case in all_cases.values():
        watched = case.untouched
        case.before = _listing(watched) if watched is not None else None
        case.proc = subprocess.Popen(
            [sys.executable, "-m", "qrepeater", *case.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
    return all_cases


NAMES = [
    "bracket_path",
    "bracket_missing",
    "empty_preset",
    "fiber_50000",
    "memory_50000",
    "dark_counts",
    "window",
    "unit_watts",
    "unit_furlongs",
    "usage_option",
    "usage_missing",
    "usage_type",
    "distill_seed",
    "simulate_huge",
    "simulate_seed",
    "simulate_blocked",
    "estimate_empty",
    "distill_empty",
    "nan_metadata",
    "blocked_bob",
    "blocked_report",
    "abort_beside_old_keys",
    "abort_forced",
    "out_is_file",
]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", NAMES)
def test_cli_case(cases: dict[str, Case], name: str) -> None:
    case = cases[name]
    assert case.proc is not None
    stdout, stderr = case.proc.communicate(timeout=240)
    assert case.proc.returncode == case.code, (stdout, stderr)
    assert "Traceback" not in stderr
    assert "Warning" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    assert case.message in lines[0]
    assert ".tmp" not in lines[0]
    assert ".staging-" not in lines[0]
    if case.untouched is not None:
        assert _listing(case.untouched) == case.before
    if case.absent is not None:
        assert not case.absent.exists()


def test_forced_abort_replaced_the_old_keys_by_a_report(cases: dict[str, Case]) -> None:
    case = cases["abort_forced"]
    assert case.proc is not None
    case.proc.wait(timeout=240)
    out = Path(case.args[case.args.index("--out") + 1])
    ks = read_key_set(out)
    assert ks.aborted
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]
    # the old keys never sit beside an aborted report
    assert not list(out.glob("*.key.*"))
