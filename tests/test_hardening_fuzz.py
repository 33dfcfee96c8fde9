"""Issue 8: fuzz the command line with hypothesis-generated arguments and preset edits.

Whatever the input, a command exits 0, 2 (bad input) or 3 (protocol abort), prints at most one
line on stderr for 2 and 3, and never a traceback. Runs in-process (typer's CliRunner), so an
escaped exception shows up as ``result.exception``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from qrepeater.cli import app
from qrepeater.diqkd.records import write_run
from qrepeater.diqkd.rounds import simulate_from_preset
from qrepeater.presets import load_preset

runner = CliRunner()
_STATE: dict[str, Any] = {}

NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -1.0, 1e-300, 1e300, 5e4, 0.5, 10.0, 1.0, 0.02, 100.0, 1e3, 3.0]),
    st.floats(0.0, 1.0),
    st.integers(-(10**15), 10**15),
).map(lambda v: repr(v) if isinstance(v, float) and math.isfinite(v) else str(v))
TEXT = st.one_of(
    st.sampled_from(["", "[/x]", "[bold]", "ustc2025", "nope", "a b", "../..", "x.toml"]),
    st.text(min_size=0, max_size=12),
)
VALUE = st.one_of(NUMBERS, TEXT)


def _setup(tmp: Path) -> dict[str, Any]:
    if "rec" not in _STATE:
        run = simulate_from_preset(load_preset(), n_rounds=3_000, seed=4)
        a, b = write_run(tmp / "rec", run)
        _STATE.update(rec=(a, b), base=load_preset().to_toml(), tmp=tmp)
    return _STATE


@st.composite
def preset_file(draw: st.DrawFn, base: str, tmp: Path) -> str:
    """A preset with one field's value or unit changed, a section renamed, or a junk line."""
    fields = re.findall(r"^(\w+) = \{ value = ", base, re.M)
    kind = draw(st.sampled_from(["value", "unit", "section", "junk", "name"]))
    text = base
    if kind == "value":
        f = draw(st.sampled_from(fields))
        v = draw(NUMBERS)
        text = re.sub(
            rf"^({f} = {{ value = )[^,]+", lambda m: m.group(1) + v, base, count=1, flags=re.M
        )
    elif kind == "unit":
        f = draw(st.sampled_from(fields))
        u = draw(st.sampled_from(["ms", "W", "furlongs", "", "%", "Hz", "km", "m", "us", "[/u]"]))
        text = re.sub(
            rf'^({f} = {{ value = [^,]+, unit = ")[^"]*',
            lambda m: m.group(1) + u,
            base,
            count=1,
            flags=re.M,
        )
    elif kind == "section":
        text = base.replace("[fiber]", draw(st.sampled_from(["[fibre]", "[/fiber]", "[x y]"])))
    elif kind == "junk":
        text = base + draw(st.sampled_from(["\nx = 1\n", "\n[[\n", "\u0000", "\n[meta]\n"]))
    else:
        text = base.replace('name = "ustc2025"', f'name = "{draw(TEXT)}"'[:60].replace("\\", ""))
    path = tmp / f"p{draw(st.integers(0, 10**9))}.toml"
    path.write_text(text, encoding="utf-8", errors="replace")
    return str(path)


@st.composite
def command(draw: st.DrawFn) -> list[str]:
    state = _STATE
    tmp: Path = state["tmp"]
    a, b = state["rec"]
    preset = draw(
        st.one_of(st.just("ustc2025"), st.just("ustc2025"), TEXT, preset_file(state["base"], tmp))
    )
    which = draw(st.sampled_from(["link", "memory", "simulate", "estimate", "distill", "presets"]))
    args: list[str]
    if which in ("link", "memory"):
        args = [which, "--preset", preset]
        for opt in ("--fiber-km", "--alpha") + (("--window-s",) if which == "memory" else ()):
            if draw(st.booleans()):
                args += [opt, draw(VALUE)]
    elif which == "simulate":
        out = tmp / f"sim{draw(st.integers(0, 10**9))}"
        args = ["diqkd", "simulate", "--out", str(out), "--preset", preset]
        args += ["--rounds", draw(st.sampled_from(["0", "-5", "200", "1500", "x", "1e3"]))]
        for opt in ("--seed", "--fiber-km", "--alpha"):
            if draw(st.booleans()):
                args += [opt, draw(VALUE)]
    elif which == "estimate":
        args = [
            "diqkd",
            "estimate",
            "--alice",
            str(a),
            "--bob",
            draw(st.sampled_from([str(b), str(a), "nope.parquet", str(tmp)])),
        ]
    elif which == "distill":
        target = draw(
            st.sampled_from([str(tmp / f"keys{draw(st.integers(0, 10**9))}"), str(a), str(tmp)])
        )
        args = ["diqkd", "distill", "--alice", str(a), "--bob", str(b), "--out", target]
        for opt, values in (
            ("--seed", VALUE),
            ("--eps", VALUE),
            ("--method", st.sampled_from(["eat", "phase-error", "magic"])),
            ("--format", st.sampled_from(["bin", "parquet", "txt"])),
            ("--preset", st.just(preset)),
        ):
            if draw(st.booleans()):
                args += [opt, draw(values)]
        if draw(st.booleans()):
            args.append("--force")
    else:
        args = ["presets"]
    if draw(st.booleans()):
        args.append("--json")
    if draw(st.integers(0, 9)) == 0:
        args.append(draw(st.sampled_from(["--bogus", "extra", "--json=1"])))
    return args


@pytest.mark.timeout(600)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_cli_fuzz(tmp_path_factory: pytest.TempPathFactory, data: Any) -> None:
    if "tmp" not in _STATE:
        _setup(tmp_path_factory.mktemp("fuzz"))
    args = data.draw(command(), label="args")
    result = runner.invoke(app, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{args}: escaped {result.exception!r}") from result.exception
    assert result.exit_code in (0, 2, 3), (args, result.exit_code, result.output)
    stderr = result.stderr
    assert "Traceback" not in stderr, (args, stderr)
    if result.exit_code in (2, 3):
        assert len(stderr.strip().splitlines()) <= 1, (args, stderr)
