"""The reproduction table says what each number is evidence of (issue 10)."""

from __future__ import annotations

import math

import pytest

from qrepeater.presets import Preset
from qrepeater.report.key_report import ChainSpread, key_rows
from qrepeater.report.rows import ReproductionContext, Row, link_rows, memory_rows


@pytest.fixture(scope="module")
def ctx(preset: Preset) -> ReproductionContext:
    return ReproductionContext(preset)


def _row(rows: list[Row], name: str) -> Row:
    return next(r for r in rows if r.name == name)


def test_fidelity_at_tomography_alpha_is_labelled_a_fit_consequence(
    ctx: ReproductionContext, preset: Preset
) -> None:
    """At the DI-QKD alpha the model's F follows from the fitted S and Q alone; the note's
    closed form must equal the model there (else the label would be wrong)."""
    rows = link_rows(ctx)
    s, q = preset.target("chsh").value, preset.target("qber").value
    zz = 1 - 2 * q
    f_sq = (1 + zz + 2 * math.sqrt(s * s / 4 - zz * zz)) / 4
    diqkd = ctx.link(alpha=preset.operating.alpha_diqkd, fiber_km=10.0)
    assert diqkd.fidelity() == pytest.approx(f_sq, abs=2e-3)
    for name in ("F(rho+), alpha=2.5%, 10 km", "F(rho-), alpha=2.5%, 10 km"):
        row = _row(rows, name)
        assert row.kind == "check"
        assert "consequence of the S/Q fit" in row.note
        assert f"{f_sq:.4f}" in row.note


def test_memory_rows_state_the_slope_range(ctx: ReproductionContext) -> None:
    rows = memory_rows(ctx)
    assert _row(rows, "link efficiency (rate / decoherence rate)").kind == "check"
    for name in ("F > 0.5 up to", "F after 450 ms storage", "average stored F, 450 ms window"):
        row = _row(rows, name)
        assert row.kind == "prediction"
        assert "one fitted slope" in row.note
        lo, hi = (float(x.rstrip(" s")) for x in row.note.rsplit("from ", 1)[1].split(" to "))
        assert lo < hi
        assert lo - 5e-4 <= row.model <= hi + 5e-4  # the central value lies in the range


def test_chain_spread_median_counts_aborts_as_zero() -> None:
    spread = ChainSpread(seeds=(1, 2, 3), secret_bits=(0, 3000, 5000), aborted=1)
    assert spread.median == 3000.0


@pytest.mark.slow
def test_key_rows_name_protocol_assumption_and_evidence(ctx: ReproductionContext) -> None:
    rows = key_rows(ctx)
    names = [r.name for r in rows]
    chord = _row(rows, "finite key, paper statistics, phase-error (chord) bound")
    assert "CONDITIONAL on the Jordan-block-label reduction" in chord.note
    geat = _row(rows, "finite key, paper statistics, GEAT bound (protocol as run)")
    assert geat.model > 0
    assert "without memory" in geat.note
    eat = _row(rows, "finite key, paper statistics, EAT bound (spot-checking variant)")
    assert "NOT the protocol the paper ran" in eat.note
    assert any(n.startswith("restatement:") for n in names)
    what_ifs = [r for r in rows if r.name.startswith("what-if:")]
    assert len(what_ifs) == 2
    assert all("not evidence" in r.note for r in what_ifs)
    chain = next(r for r in rows if r.name.startswith("secret bits, whole chain, median of"))
    assert "range" in chain.note
    assert chain.kind == "prediction"
