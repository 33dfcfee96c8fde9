"""End-to-end DI-QKD post-processing: identical keys or a clean abort, never both."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from qrepeater.cli import app
from qrepeater.diqkd.pipeline import DistillConfig, DistillResult, distill
from qrepeater.diqkd.records import RecordMismatchError, read_key_bits, write_run
from qrepeater.diqkd.rounds import DIQKDRun, simulate_from_preset
from qrepeater.errors import ParameterError, ProtocolAbort
from qrepeater.presets import Preset
from qrepeater.qkdpp.channel import AuthenticatedChannel, Frame

# A link better than the paper's (ideal phase, motion and readout, 2 km, alpha = 1%): S ~ 2.69,
# enough for a finite key from about 1e5 rounds, so the whole chain runs in seconds.
GOOD = {"ion.residual_coherence": 1.0, "ion.spam_error": 0.0, "phase.contrast": 1.0}


@pytest.fixture(scope="module")
def good_run(preset: Preset) -> DIQKDRun:
    p = preset.replace(GOOD)
    return simulate_from_preset(p, n_rounds=120_000, seed=3, fiber_km=2.0, alpha=0.01)


@pytest.fixture(scope="module")
def good_result(good_run: DIQKDRun) -> DistillResult:
    return distill(
        good_run.alice,
        good_run.bob,
        alice_meta=good_run.metadata,
        bob_meta=good_run.metadata,
        seed=5,
    )


def test_keys_are_identical_and_of_the_promised_length(good_result: DistillResult) -> None:
    r = good_result.report
    assert not r.aborted
    a, b = good_result.require_keys()
    assert np.array_equal(a, b)
    assert a.size == r.secret_bits > 0
    assert set(np.unique(a)) <= {0, 1}
    # the key is no longer than the bound with the leakage the channel counted
    assert r.finite_key is not None
    assert r.secret_bits <= r.finite_key["finite_key_bits"]
    assert r.leak_bits >= r.sample_bits
    assert r.ec_efficiency is not None
    assert 1.0 < r.ec_efficiency < 1.5
    assert r.eps["total"] > r.eps["soundness"]  # authentication error added on top
    assert r.auth_key_bits > 0


def test_report_never_contains_key_material(good_result: DistillResult) -> None:
    text = json.dumps(good_result.report.to_dict(), default=str)
    key = good_result.require_keys()[0]
    packed = np.packbits(key).tobytes()
    assert packed.hex() not in text
    assert "alice_key=" not in repr(good_result)
    assert "bob_key=" not in repr(good_result)


def test_same_seed_same_public_choices(good_run: DIQKDRun, good_result: DistillResult) -> None:
    again = distill(
        good_run.alice,
        good_run.bob,
        alice_meta=good_run.metadata,
        bob_meta=good_run.metadata,
        seed=5,
    )
    assert again.report.secret_bits == good_result.report.secret_bits
    assert np.array_equal(again.require_keys()[0], good_result.require_keys()[0])


def test_no_bell_violation_aborts_without_key(preset: Preset) -> None:
    bad = preset.replace({"ion.residual_coherence": 0.1})  # S ~ 1.9
    run = simulate_from_preset(bad, n_rounds=20_000, seed=1, fiber_km=10.0)
    res = distill(run.alice, run.bob, alice_meta=run.metadata, bob_meta=run.metadata, seed=1)
    assert res.report.aborted
    assert res.report.abort_reason == "bell_violation"
    assert res.alice_key is None
    assert res.bob_key is None
    with pytest.raises(ProtocolAbort):
        res.require_keys()


def test_too_few_rounds_give_no_finite_key(preset: Preset) -> None:
    run = simulate_from_preset(preset, n_rounds=20_000, seed=2, fiber_km=10.0)
    res = distill(run.alice, run.bob, alice_meta=run.metadata, bob_meta=run.metadata, seed=2)
    assert res.report.aborted
    assert res.report.abort_reason == "no_key"
    assert res.report.chsh is not None
    assert res.report.chsh > 2.0


def test_misaligned_records_raise(good_run: DIQKDRun) -> None:
    bob = good_run.bob
    herald = bob.herald.copy()
    herald[17] = -herald[17]
    shifted = dataclasses.replace(bob, herald=herald)
    with pytest.raises(RecordMismatchError):
        distill(
            good_run.alice,
            shifted,
            alice_meta=good_run.metadata,
            bob_meta=good_run.metadata,
            seed=1,
        )


def test_records_given_to_the_wrong_party_raise(good_run: DIQKDRun) -> None:
    with pytest.raises(ParameterError):
        distill(
            good_run.bob, good_run.alice, alice_meta=good_run.metadata, bob_meta=good_run.metadata
        )


def _flip_adversary(target: int, bit: int) -> object:
    seen = {"n": 0}

    def adversary(frame: Frame) -> Iterable[Frame]:
        i = seen["n"]
        seen["n"] += 1
        if i != target:
            return [frame]
        payload = bytearray(frame.payload or b"\0")
        payload[(bit // 8) % len(payload)] ^= 1 << (bit % 8)
        return [dataclasses.replace(frame, payload=bytes(payload))]

    return adversary


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    target=st.integers(min_value=0, max_value=1000), bit=st.integers(min_value=0, max_value=4095)
)
def test_a_flipped_bit_in_any_early_message_aborts(target: int, bit: int) -> None:
    """Any message the small run sends before it aborts for lack of key, tampered anywhere."""
    run = _small_run()
    clean = AuthenticatedChannel.with_shared_key(1 << 16, rng=np.random.default_rng(0))
    distill(
        run.alice, run.bob, alice_meta=run.metadata, bob_meta=run.metadata, channel=clean, seed=4
    )
    target %= len(clean.log)
    channel = AuthenticatedChannel.with_shared_key(
        1 << 16,
        rng=np.random.default_rng(0),
        adversary=_flip_adversary(target, bit),  # type: ignore[arg-type]
    )
    res = distill(
        run.alice, run.bob, alice_meta=run.metadata, bob_meta=run.metadata, channel=channel, seed=4
    )
    assert res.report.aborted
    assert res.report.abort_reason == "authentication"
    assert res.alice_key is None


@pytest.mark.slow
def test_a_flipped_bit_in_late_messages_aborts(good_run: DIQKDRun) -> None:
    clean = AuthenticatedChannel.with_shared_key(1 << 16, rng=np.random.default_rng(0))
    distill(
        good_run.alice,
        good_run.bob,
        alice_meta=good_run.metadata,
        bob_meta=good_run.metadata,
        channel=clean,
        seed=5,
    )
    kinds = [m.kind for m in clean.log]
    for kind in ("ec.syndrome", "ec.feedback", "verify.hash", "pa.seed"):
        target = kinds.index(kind)
        channel = AuthenticatedChannel.with_shared_key(
            1 << 16,
            rng=np.random.default_rng(0),
            adversary=_flip_adversary(target, 3),  # type: ignore[arg-type]
        )
        res = distill(
            good_run.alice,
            good_run.bob,
            alice_meta=good_run.metadata,
            bob_meta=good_run.metadata,
            channel=channel,
            seed=5,
        )
        assert res.report.aborted, kind
        assert res.report.abort_reason == "authentication"
        assert res.alice_key is None


_SMALL: dict[str, DIQKDRun] = {}


def _small_run() -> DIQKDRun:
    if "run" not in _SMALL:
        from qrepeater.presets import load_preset

        _SMALL["run"] = simulate_from_preset(load_preset(), n_rounds=5_000, seed=9, fiber_km=10.0)
    return _SMALL["run"]


def test_config_validation() -> None:
    with pytest.raises(ParameterError):
        DistillConfig(method="magic")  # type: ignore[arg-type]
    with pytest.raises(ParameterError):
        DistillConfig(eps=0.0)
    with pytest.raises(ParameterError):
        DistillConfig(qber_hint=0.7)


# ---- CLI ---------------------------------------------------------------------------------------

runner = CliRunner()


def _distill_cli(alice: Path, bob: Path, out: Path, *, seed: int) -> Result:
    args = ["diqkd", "distill", "--alice", str(alice), "--bob", str(bob), "--out", str(out)]
    return runner.invoke(app, [*args, "--seed", str(seed), "--json"])


def test_cli_distill_writes_private_identical_keys(good_run: DIQKDRun, tmp_path: Path) -> None:
    a_path, b_path = write_run(tmp_path / "rec", good_run)
    out = tmp_path / "keys"
    result = _distill_cli(a_path, b_path, out, seed=5)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for key in ("secret_bits", "ec_efficiency", "leak_bits", "chsh", "qber", "aborted"):
        assert key in report
    ka, kb = read_key_bits(out / "alice.key.bin"), read_key_bits(out / "bob.key.bin")
    assert np.array_equal(ka, kb)
    assert ka.size == report["secret_bits"]
    for f in ("alice.key.bin", "bob.key.bin"):
        assert stat.S_IMODE(os.stat(out / f).st_mode) == 0o600
    assert json.loads((out / "report.json").read_text())["secret_bits"] == ka.size


def test_cli_distill_abort_writes_report_only(tmp_path: Path) -> None:
    a_path, b_path = write_run(tmp_path / "rec", _small_run())
    out = tmp_path / "keys"
    result = _distill_cli(a_path, b_path, out, seed=1)
    assert result.exit_code == 3
    assert json.loads(result.stdout)["aborted"] is True
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]


def test_cli_distill_bad_input_writes_nothing(tmp_path: Path) -> None:
    a_path, b_path = write_run(tmp_path / "rec", _small_run())
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    out = tmp_path / "keys"
    for args in (
        ["--alice", str(tmp_path / "junk.parquet"), "--bob", str(b_path)],
        ["--alice", str(b_path), "--bob", str(a_path)],
        ["--alice", str(a_path), "--bob", str(b_path), "--method", "guess"],
        ["--alice", str(a_path), "--bob", str(b_path), "--eps", "2"],
    ):
        result = runner.invoke(app, ["diqkd", "distill", *args, "--out", str(out)])
        assert result.exit_code == 2, args
        assert len(result.stderr.strip().splitlines()) == 1
        assert not out.exists()


def test_cli_keyrate_contract() -> None:
    result = runner.invoke(
        app,
        [
            "keyrate",
            "--chsh",
            "2.5758",
            "--qber",
            "0.036",
            "--rounds",
            "405145",
            "--key-rounds",
            "105976",
            "--test-rounds",
            "270097",
            "--eps",
            "1e-5",
            "--ec-efficiency",
            "1.122",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["method"] == "phase-error"
    assert out["asymptotic_rate"] == pytest.approx(0.326, abs=5e-4)
    assert 0 < out["finite_key_bits"] < out["asymptotic_rate"] * 105976


@pytest.mark.parametrize(
    "args",
    [
        ["--chsh", "1.9", "--qber", "0.03"],
        ["--chsh", "2.9", "--qber", "0.03"],
        ["--chsh", "2.5", "--qber", "0.5"],
        ["--chsh", "2.5", "--qber", "0.03", "--eps", "1"],
        [
            "--chsh",
            "2.5",
            "--qber",
            "0.03",
            "--rounds",
            "0",
            "--key-rounds",
            "1",
            "--test-rounds",
            "1",
        ],
        ["--chsh", "2.5", "--qber", "0.03", "--rounds", "100"],
    ],
)
def test_cli_keyrate_bad_input(args: list[str]) -> None:
    result = runner.invoke(app, ["keyrate", *args])
    assert result.exit_code == 2
    assert "error:" in result.stderr


def test_driver_reports_stages_and_matches_the_parties(good_run: DIQKDRun) -> None:
    """``distill`` only moves messages: the parties pumped by hand give the same key."""
    from qrepeater.diqkd.parties import Alice, Bob

    stages: list[str] = []
    res = distill(
        good_run.alice,
        good_run.bob,
        alice_meta=good_run.metadata,
        bob_meta=good_run.metadata,
        seed=5,
        progress=stages.append,
    )
    assert stages[:3] == ["sync", "sifting", "parameter_estimation"]
    assert stages[-1] == "privacy_amplification"
    assert set(res.report.seconds) >= set(stages)
    a = Alice(good_run.alice, good_run.metadata, seed=5)
    b = Bob(good_run.bob, good_run.metadata, seed=5)
    queue = [*a.start(), *b.start()]
    while queue:
        msg = queue.pop(0)
        queue.extend((b if msg.sender == "alice" else a).receive(msg))
    assert a.outcome is not None
    assert a.outcome.key is not None
    assert np.array_equal(a.outcome.key, res.require_keys()[0])
    assert a.outcome.public["secret_bits"] == res.report.secret_bits
