"""Sweep layer: strong ids, addable statistics, the append-only store, models, specs and CLI."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from qrepeater.link.heralding import ElementaryLink
from qrepeater.link.storage import StoredLink
from qrepeater.presets import Preset, write_preset
from qrepeater.sweep import (
    MergeError,
    Moments,
    SampleBudget,
    SpecError,
    StoreError,
    TaskStats,
    collect,
    load_spec,
    make_task,
    parse_spec,
    read_results,
    run_piece,
    sweep,
)
from qrepeater.sweep._results import select_pieces
from qrepeater.sweep._store import read_store
from sweep_support import cli, payloads

LINK_SPEC = """
model = "link"
[fixed]
fiber_km = 10
[axes]
alpha = [0.025, 0.17]
"""

MC_SPEC = """
model = "link"
[fixed]
fiber_km = 10
[axes]
alpha = [0.05, 0.17]
[budget]
max_samples = 300_000
piece_samples = 100_000
"""


# ---- tasks and strong ids ----------------------------------------------------------------------


def test_strong_id_covers_every_input(preset: Preset) -> None:
    t = make_task("link", {"alpha": 0.17, "fiber_km": 10}, preset=preset)
    assert (
        t.strong_id == make_task("link", {"alpha": 0.17, "fiber_km": 10.0}, preset=preset).strong_id
    )
    assert len(t.strong_id) == 64
    others = [
        make_task("link", {"alpha": 0.18, "fiber_km": 10}, preset=preset),
        make_task("memory", {"alpha": 0.17, "fiber_km": 10}, preset=preset),
        make_task(
            "link",
            {"alpha": 0.17, "fiber_km": 10},
            preset=preset,
            budget=SampleBudget(max_samples=10, piece_samples=5),
        ),
        make_task(
            "link",
            {"alpha": 0.17, "fiber_km": 10},
            preset=preset.replace({"detector.efficiency": 0.5}),
        ),
        dataclasses.replace(t, version="0.0.0"),
    ]
    ids = {o.strong_id for o in others}
    assert t.strong_id not in ids
    assert len(ids) == len(others)
    # the preset's name is not part of the id, its content is
    renamed = dataclasses.replace(preset, name="elsewhere")
    assert (
        make_task("link", {"alpha": 0.17, "fiber_km": 10}, preset=renamed).strong_id == t.strong_id
    )


def test_defaults_come_from_the_preset(preset: Preset) -> None:
    t = make_task("link", {}, preset=preset)
    assert t.param_dict == {"alpha": preset.operating.alpha, "fiber_km": preset.operating.fiber_km}


def test_seeds_depend_on_id_and_piece_only(preset: Preset) -> None:
    b = SampleBudget(max_samples=2000, piece_samples=1000)
    t = make_task("link", {"alpha": 0.1}, preset=preset, budget=b)
    a0, a1 = run_piece(t, 0), run_piece(t, 1)
    assert a0.payload() == run_piece(t, 0).payload()
    assert a0.payload() != a1.payload()


# ---- statistics --------------------------------------------------------------------------------


def test_moments_match_numpy() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(2.0, 0.5, 1000)
    m = Moments.of(x[:400]) + Moments.of(x[400:])
    assert m.n == 1000
    assert m.mean == pytest.approx(x.mean(), rel=1e-12)
    assert m.stderr == pytest.approx(x.std(ddof=1) / math.sqrt(1000), rel=1e-9)
    assert Moments.of([1.0, np.nan, 3.0]).n == 2


def test_stats_refuse_to_merge_other_tasks() -> None:
    a = TaskStats("a" * 64, frozenset({0}), 10, 0.1, moments={"x": Moments(10, 5.0, 3.0)})
    b = TaskStats("b" * 64, frozenset({1}), 10, 0.1, moments={"x": Moments(10, 5.0, 3.0)})
    with pytest.raises(MergeError, match="different tasks"):
        _ = a + b
    with pytest.raises(MergeError, match="twice"):
        _ = a + a
    c = dataclasses.replace(b, strong_id=a.strong_id)
    s = a + c
    assert s.samples == 20
    assert s.moments["x"] == Moments(20, 10.0, 6.0)
    assert s.pieces == {0, 1}


def test_stop_rule_takes_the_first_prefix_that_meets_it() -> None:
    sid = "c" * 64
    budget = SampleBudget(max_samples=10_000, piece_samples=1000, rel_error=0.05)
    rng = np.random.default_rng(0)
    pieces = {
        k: TaskStats(
            sid, frozenset({k}), 1000, 0.0, moments={"x": Moments.of(rng.normal(1, 1, 1000))}
        )
        for k in range(6)
    }
    sel = select_pieces(pieces, budget, "x")
    # one piece: se ~ 1/sqrt(1000) = 0.032 < 0.05
    assert sel.complete
    assert sel.stats is not None
    assert sel.stats.pieces == {0}
    assert sel.surplus == (1, 2, 3, 4, 5)
    gap = select_pieces({k: v for k, v in pieces.items() if k != 0}, budget, "x")
    assert not gap.complete
    assert gap.next_missing == 0


# ---- models against the library ----------------------------------------------------------------


def test_analytic_link_and_memory_rows_equal_the_library(preset: Preset) -> None:
    link = ElementaryLink(preset.hardware, alpha=0.17, fiber_km=25.0)
    row = run_piece(make_task("link", {"alpha": 0.17, "fiber_km": 25}, preset=preset), 0).values
    assert row["rate_hz"] == link.rate_hz
    assert row["fidelity"] == link.fidelity()
    assert row["error_budget.noise"] == link.error_budget()["noise"]
    mem = run_piece(make_task("memory", {"alpha": 0.17, "fiber_km": 25}, preset=preset), 0).values
    assert mem["avg_fidelity_infinite"] == StoredLink(link).average_fidelity(None)


def test_preset_override_parameter(preset: Preset) -> None:
    t = make_task("memory", {"memory.coherence_time_s": 1.1}, preset=preset)
    row = run_piece(t, 0).values
    assert row["coherence_time_s"] == pytest.approx(1.1)
    with pytest.raises(SpecError, match=r"did you mean .memory\.coherence_time_s."):
        make_task("memory", {"memory.coherence_time": 1.1}, preset=preset)


def test_monte_carlo_link_agrees_with_the_analytic_model(preset: Preset) -> None:
    budget = SampleBudget(max_samples=400_000, piece_samples=200_000)
    t = make_task("link", {"alpha": 0.17, "fiber_km": 10}, preset=preset, budget=budget)
    stats = TaskStats.merge(run_piece(t, k) for k in range(2))
    link = ElementaryLink(preset.hardware, alpha=0.17, fiber_km=10.0)
    f = stats.moments["fidelity"]
    w = stats.moments["wait_s"]
    assert f.mean is not None
    assert f.stderr is not None
    assert w.mean is not None
    assert w.stderr
    assert abs(f.mean - link.fidelity()) < 4 * f.stderr
    assert abs(w.mean - link.mean_wait_s) < 4 * w.stderr


def test_keyrate_model_matches_finite_key(preset: Preset) -> None:
    from qrepeater.diqkd.keyrate import asymptotic_rate, finite_key

    t = make_task(
        "keyrate",
        {
            "chsh": 2.5758,
            "qber": 0.036,
            "rounds": 405_145,
            "key_rounds": 105_976,
            "test_rounds": 270_097,
            "ec_efficiency": 1.122,
        },
        preset=preset,
    )
    row = run_piece(t, 0).values
    ref = finite_key(
        method="phase-error",
        rounds=405_145,
        key_rounds=105_976,
        test_rounds=270_097,
        chsh=2.5758,
        qber=0.036,
        eps=1e-5,
        ec_efficiency=1.122,
    )
    assert row["finite_key_bits"] == ref.finite_key_bits
    assert row["asymptotic_rate"] == asymptotic_rate(chsh=2.5758, qber=0.036)
    # S and Q from the link model when not given; test fraction splits the rounds
    t2 = make_task(
        "keyrate", {"fiber_km": 10, "rounds": 400_000, "test_fraction": 0.6}, preset=preset
    )
    row2 = run_piece(t2, 0).values
    link = ElementaryLink(preset.hardware, alpha=preset.operating.alpha_diqkd, fiber_km=10.0)
    assert row2["chsh"] == link.chsh()
    assert (row2["key_rounds"], row2["test_rounds"]) == (160_000, 240_000)
    with pytest.raises(SpecError, match="rounds"):
        make_task("keyrate", {"rounds": 100, "key_rounds": 80, "test_rounds": 30}, preset=preset)


# ---- sweeps and the store ----------------------------------------------------------------------


def test_sweep_resumes_and_ignores_a_torn_line(tmp_path: Path) -> None:
    spec = parse_spec(MC_SPEC)
    store = tmp_path / "r.csv"
    events = list(sweep(spec.tasks, store=store, executor="serial"))
    assert next(e.kind for e in events) == "start"
    assert events[-1].kind == "finish"
    assert events[-1].pieces_done == 6
    assert events[-1].tasks_done == 2
    full = payloads(store)
    text = store.read_bytes()
    # a sweep killed mid-write: the last line is cut in the middle
    store.write_bytes(text[: len(text) - 40])
    contents = read_store(store)
    assert contents.torn_tail
    assert len(contents.pieces) == 5
    assert read_results(store).torn_tail
    again = list(sweep(spec.tasks, store=store, executor="serial"))
    assert again[-1].pieces_done == 1
    assert again[-1].pieces_reused == 5
    assert payloads(store) == full
    assert store.read_bytes().count(b"\n") == 7  # header + six pieces, nothing twice
    # nothing left to do: the store is not touched
    before = store.read_bytes()
    assert list(sweep(spec.tasks, store=store, executor="serial"))[-1].pieces_done == 0
    assert store.read_bytes() == before


def test_damaged_lines(tmp_path: Path) -> None:
    spec = parse_spec(MC_SPEC)
    store = tmp_path / "r.csv"
    collect(spec.tasks, store=store, executor="serial")
    lines = store.read_bytes().split(b"\n")
    flipped = bytearray(lines[-2])
    flipped[70] ^= 0x01  # a complete last line with a bad checksum is a torn write
    store.write_bytes(b"\n".join([*lines[:-2], bytes(flipped), b""]))
    assert read_store(store).torn_tail
    assert len(read_results(store)[0].stats.pieces) + len(read_results(store)[1].stats.pieces) == 5
    bad = bytearray(lines[2])
    bad[70] ^= 0x01  # damage in the middle is corruption
    store.write_bytes(b"\n".join([lines[0], lines[1], bytes(bad), *lines[3:]]))
    with pytest.raises(StoreError, match="line 3 is corrupt"):
        read_results(store)
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(StoreError, match="not a qrepeater sweep store"):
        read_results(tmp_path / "x.csv")


@pytest.mark.timeout(120)
def test_local_processes_equal_serial(tmp_path: Path) -> None:
    spec = parse_spec(MC_SPEC + "\n")
    analytic = parse_spec(LINK_SPEC)
    tasks = [*spec.tasks, *analytic.tasks]
    collect(tasks, store=tmp_path / "a.csv", executor="serial")
    collect(tasks, store=tmp_path / "b.csv", executor="processes:2")
    assert payloads(tmp_path / "a.csv") == payloads(tmp_path / "b.csv")
    ra = read_results(tmp_path / "a.csv")
    rb = read_results(tmp_path / "b.csv")
    key = {r.strong_id: r.values for r in ra}
    assert all(key[r.strong_id] == r.values for r in rb)


def test_store_of_another_version_or_preset_is_refused(tmp_path: Path, preset: Preset) -> None:
    store = tmp_path / "r.csv"
    old = [dataclasses.replace(t, version="0.0.1") for t in parse_spec(LINK_SPEC).tasks]
    collect(old, store=store, executor="serial")
    before = store.read_bytes()
    with pytest.raises(StoreError, match=r"0\.0\.1"):
        list(sweep(parse_spec(LINK_SPEC).tasks, store=store, executor="serial"))
    assert store.read_bytes() == before
    # same parameters, other preset content
    other = tmp_path / "lab.toml"
    write_preset(preset.replace({"detector.efficiency": 0.5}), other)
    store2 = tmp_path / "r2.csv"
    collect(parse_spec(LINK_SPEC).tasks, store=store2, executor="serial")
    before = store2.read_bytes()
    spec2 = parse_spec(f'preset = "{other}"\n' + LINK_SPEC)
    with pytest.raises(StoreError, match="preset"):
        list(sweep(spec2.tasks, store=store2, executor="serial"))
    assert store2.read_bytes() == before
    # two such stores concatenated are read apart, with a warning, never merged
    store3 = tmp_path / "r3.csv"
    collect(spec2.tasks, store=store3, executor="serial")
    mixed = tmp_path / "mixed.csv"
    mixed.write_bytes(before + b"".join(store3.read_bytes().split(b"\n", 1)[1:]))
    table = read_results(mixed)
    assert len(table) == 4
    assert len(table.conflicts) == 2
    assert len({r.preset_digest for r in table}) == 2


# ---- specifications ------------------------------------------------------------------------------


def test_spec_axes_and_combinations() -> None:
    spec = parse_spec(
        'model = "link"\n[axes]\nalpha = { linspace = [0.1, 0.3, 3] }\n'
        "fiber_km = { logspace = [1, 100, 3] }\n"
    )
    assert len(spec.tasks) == 9
    assert sorted({t.param_dict["fiber_km"] for t in spec.tasks}) == pytest.approx([1, 10, 100])
    zipped = parse_spec(
        'model = "link"\ncombine = "zip"\n[axes]\nalpha = [0.1, 0.2]\nfiber_km = [5, 50]\n'
    )
    assert [t.param_dict["fiber_km"] for t in zipped.tasks] == [5.0, 50.0]
    ranged = parse_spec(
        'model = "keyrate"\n[fixed]\nchsh=2.5\nqber=0.04\n'
        "[axes]\nrounds = { range = [1e5, 3e5, 1e5] }\ntest_fraction=[0.5]\n"
    )
    assert [t.param_dict["rounds"] for t in ranged.tasks] == [100_000, 200_000, 300_000]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('model = "lnk"\n', "did you mean 'link'"),
        ('model = "link"\n[axes]\nfibre_km = [1, 2]\n', "did you mean 'fiber_km'"),
        ('model = "link"\n[axes]\nalpha = []\n', "axis 'alpha' is empty"),
        ('model = "link"\n[axes]\nalpha = { linspace = [0.1, 0.2, 0] }\n', "empty"),
        ('model = "link"\n[axes]\nalpha = [0.1, 1.5]\n', "alpha = 1.5 is out of range"),
        ('model = "link"\n[fixed]\nfiber_km = -3\n', "out of range"),
        ('model = "keyrate"\n[budget]\nmax_samples = 10\n', "analytic"),
        ('model = "link"\n[budget]\nmax_samples = 10\ntarget = "fidelty"\n', "did you mean"),
        ('model = "link"\naxis = 1\n', "did you mean 'axes'"),
        ('model = "diqkd"\n[fixed]\nmethod = "bogus"\n', "method must be one of"),
        ('model = "chain"\n[fixed]\nsegments = 3\n', "power-of-two"),
        ('model = "link"\ncombine = "zip"\n[axes]\nalpha = [0.1]\nfiber_km = [1, 2]\n', "length"),
    ],
)
def test_bad_specs(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(text)


@pytest.mark.timeout(120)
def test_cli_bad_spec_fails_before_anything_runs(tmp_path: Path) -> None:
    spec = tmp_path / "bad.toml"
    spec.write_text('model = "link"\n[axes]\nalpah = [0.1, 0.2]\n')
    out = tmp_path / "r.csv"
    r = cli("sweep", spec, "--out", out)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0
    assert "did you mean 'alpha'" in r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout == ""
    assert not out.exists()
    # an existing store is left exactly as it was
    good = tmp_path / "good.toml"
    good.write_text(LINK_SPEC)
    assert cli("sweep", good, "--out", out, "--scheduler", "serial").returncode == 0
    before = out.read_bytes()
    spec.write_text('model = "link"\n[axes]\nalpha = [0.1, 2.0]\n')
    r = cli("sweep", spec, "--out", out)
    assert r.returncode == 2
    assert "out of range" in r.stderr
    assert out.read_bytes() == before
    r = cli("sweep", good, "--out", out, "--scheduler", "bogus")
    assert r.returncode == 2
    assert "unknown scheduler" in r.stderr


@pytest.mark.timeout(120)
def test_cli_sweep_results_plot(tmp_path: Path) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text(MC_SPEC)
    out = tmp_path / "r.csv"
    r = cli("sweep", spec, "--out", out, "--scheduler", "serial", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["tasks_done"] == 2
    assert summary["pieces_run"] == 6
    assert summary["complete"]
    r = cli("results", out, "--json")
    rows = json.loads(r.stdout)["rows"]
    assert {row["alpha"] for row in rows} == {0.05, 0.17}
    assert all(row["samples"] == 300_000 and row["rate_hz_err"] > 0 for row in rows)
    fig = tmp_path / "f.png"
    r = cli("plot", out, "--x", "alpha", "--y", "rate_hz", "--out", fig, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["points"] == 2
    assert fig.read_bytes()[:4] == b"\x89PNG"
    r = cli("plot", out, "--x", "alpha", "--y", "rate", "--out", fig)
    assert r.returncode == 2
    assert "did you mean 'rate_hz'" in r.stderr


def test_read_results_converts_to_arrow(tmp_path: Path) -> None:
    collect(parse_spec(LINK_SPEC).tasks, store=tmp_path / "r.csv", executor="serial")
    table = read_results(tmp_path / "r.csv").to_arrow()
    assert table.num_rows == 2
    assert table.column("alpha").to_pylist() == [0.025, 0.17]
    assert all(v > 0 for v in table.column("rate_hz").to_pylist())


def test_example_specs_are_valid() -> None:
    root = Path(__file__).resolve().parents[1] / "examples" / "sweeps"
    specs = sorted(root.glob("*.toml"))
    assert len(specs) >= 4
    for path in specs:
        assert load_spec(path).tasks


@pytest.mark.slow
def test_reconcile_and_diqkd_models_run_serially(preset: Preset) -> None:
    t = make_task(
        "reconcile",
        {"qber": 0.02, "key_bits": 30_000, "block_length": 30_000},
        preset=preset,
        budget=SampleBudget(max_samples=1, piece_samples=1),
    )
    s = run_piece(t, 0)
    assert s.moments["success"].n == 1
    eff = s.moments["efficiency"].mean
    assert eff is None or 1.0 < eff < 1.5
    d = make_task(
        "diqkd",
        {"fiber_km": 10, "rounds": 200_000},
        preset=preset,
        budget=SampleBudget(max_samples=1, piece_samples=1),
    )
    ds = run_piece(d, 0)
    assert ds.moments["aborted"].n == 1
    chsh = ds.moments["chsh"].mean
    assert chsh is None or 2.0 < chsh < 2.83
    assert ds.moments["secret_bits"].mean is not None


def test_qr_sweep_is_callable_after_the_package_is_imported(tmp_path: Path) -> None:
    import qrepeater as qr
    import qrepeater.sweep  # binds the package to the attribute qrepeater.sweep

    events = list(
        qr.sweep(parse_spec(LINK_SPEC).tasks, store=tmp_path / "r.csv", executor="serial")
    )
    assert events[-1].tasks_done == 2
    assert len(qr.read_results(tmp_path / "r.csv")) == 2


def test_chain_model_uses_the_repeater_engines(preset: Preset) -> None:
    from qrepeater.repeater.chain import Chain

    params = {"total_km": 50, "segments": 4, "alpha": 0.1, "cutoff_s": 2.0}
    row = run_piece(make_task("chain", params, preset=preset), 0).values
    chain = Chain.from_preset(preset, total_km=50, segments=4, alpha=0.1, cutoff_s=2.0)
    exact = chain.evaluate("exact")
    assert row["rate_hz"] == exact.rate_hz
    assert row["fidelity"] == exact.fidelity
    budget = SampleBudget(max_samples=40_000, piece_samples=20_000)
    mc_task = make_task("chain", params, preset=preset, budget=budget)
    stats = TaskStats.merge(run_piece(mc_task, k) for k in range(2))
    for name, ref in (
        ("wait_s", exact.mean_wait_attempts * exact.dt_s),
        ("fidelity", exact.fidelity),
    ):
        m = stats.moments[name]
        assert m.mean is not None
        assert m.stderr is not None
        assert abs(m.mean - ref) < 4 * m.stderr, name
    with pytest.raises(SpecError, match="Monte-Carlo engine"):
        make_task("chain", {**params, "protocol": "swap-asap"}, preset=preset)
    with pytest.raises(SpecError, match="purify"):
        make_task("chain", {**params, "purify": "dejmp"}, preset=preset)


def test_a_point_outside_the_model_is_recorded_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qrepeater.errors import ParameterError
    from qrepeater.sweep import _models

    original = _models.MODELS["link"]

    def evaluate(preset: Preset, p: dict[str, object]) -> dict[str, object]:
        if p["alpha"] == 0.17:
            raise ParameterError("no heralds in any reasonable time")
        assert original.evaluate is not None
        return original.evaluate(preset, p)  # type: ignore[arg-type,return-value]

    monkeypatch.setitem(_models.MODELS, "link", dataclasses.replace(original, evaluate=evaluate))
    table = collect(parse_spec(LINK_SPEC).tasks, store=tmp_path / "r.csv", executor="serial")
    by_alpha = {r.params["alpha"]: r.values for r in table}
    assert by_alpha[0.17] == {"error": "no heralds in any reasonable time"}
    assert isinstance(by_alpha[0.025]["rate_hz"], float)


def test_two_sweeps_never_append_to_one_store(tmp_path: Path) -> None:
    from qrepeater.sweep._store import StoreWriter

    store = tmp_path / "r.csv"
    collect(parse_spec(LINK_SPEC).tasks, store=store, executor="serial")
    before = store.read_bytes()
    holder = StoreWriter(store, create=False)  # another sweep holds the store
    try:
        with pytest.raises(StoreError, match="another sweep"):
            list(sweep(parse_spec(MC_SPEC).tasks, store=store, executor="serial"))
    finally:
        holder.close()
    assert store.read_bytes() == before
    assert (
        list(sweep(parse_spec(MC_SPEC).tasks, store=store, executor="serial"))[-1].pieces_done == 6
    )


@pytest.mark.timeout(120)
def test_early_stop_gives_the_same_result_on_any_executor(tmp_path: Path) -> None:
    spec = parse_spec(
        'model = "link"\n[axes]\nalpha = [0.05, 0.17]\n'
        "[budget]\nmax_samples = 200_000\npiece_samples = 10_000\nrel_error = 0.004\n"
    )
    a = collect(spec.tasks, store=tmp_path / "a.csv", executor="serial")
    b = collect(spec.tasks, store=tmp_path / "b.csv", executor="processes:2")
    for ra, rb in zip(a, b, strict=True):
        assert ra.complete
        assert 1 < ra.pieces < ra.max_pieces  # stopped early, after more than one piece
        assert (ra.strong_id, ra.pieces, ra.samples) == (rb.strong_id, rb.pieces, rb.samples)
        assert ra.values == rb.values
        assert ra.errors == rb.errors
        se, mean = ra.errors["wait_s"], ra.values["wait_s"]
        assert isinstance(se, float)
        assert isinstance(mean, float)
        assert se <= 0.004 * mean
    # the serial run stores exactly the pieces that count; parallel runs may store a few more
    assert len(read_store(tmp_path / "a.csv").pieces) == sum(r.pieces for r in a)
