"""Tests of LDPC information reconciliation (qrepeater.qkdpp.reconciliation)."""

from __future__ import annotations

import dataclasses
import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from qrepeater.errors import ProtocolAbort, ReconciliationError
from qrepeater.qkdpp.channel import PublicChannel
from qrepeater.qkdpp.reconciliation import (
    AliceReconciler,
    BobReconciler,
    ReconcileConfig,
    binary_entropy,
    frame_check,
    plan,
    qber_upper_bound,
    reconcile,
    sample_bounds,
    sample_qber,
)

KEY_BITS = 14_000


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> ReconcileConfig:
    cache = tmp_path_factory.mktemp("codes")
    return ReconcileConfig(block_length=25_000, min_block_length=15_000, cache_dir=str(cache))


def bsc_keys(n: int, qber: float, seed: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, n, dtype=np.uint8)
    flips = np.zeros(n, dtype=np.uint8)
    flips[rng.choice(n, size=round(qber * n), replace=False)] = 1
    return x, x ^ flips


@pytest.mark.parametrize("qber", [0.02, 0.05, 0.09])
def test_corrects_keys(qber: float, config: ReconcileConfig) -> None:
    x, y = bsc_keys(KEY_BITS, qber, seed=round(qber * 1000))
    channel = PublicChannel()
    res = reconcile(x, y, qber=qber, channel=channel, seed=1, config=config)
    assert res.success
    assert res.frames_failed == 0
    assert np.array_equal(res.bob_key, x)
    assert res.observed_qber == pytest.approx(qber, abs=1e-9)
    assert res.leak_bits == channel.bits_sent(prefix="ec.")
    assert res.efficiency == pytest.approx(res.leak_bits / (KEY_BITS * binary_entropy(qber)))
    assert 1.0 < res.efficiency < 1.5
    assert res.seconds > 0.0
    np.testing.assert_array_equal(res.require_success(), x)


def test_leak_is_what_the_channel_counted(config: ReconcileConfig) -> None:
    qber = 0.04
    x, y = bsc_keys(KEY_BITS, qber, seed=5)
    channel = PublicChannel()
    channel.send("alice", "pe.sample", b"\x00" * 10)  # earlier traffic is not EC leakage
    channel.receive("bob", "pe.sample")
    res = reconcile(x, y, qber=qber, channel=channel, seed=2, config=config)
    assert res.success
    ec = [m for m in channel.log if m.kind.startswith("ec.")]
    assert res.leak_bits == sum(m.bits for m in ec)
    kinds = {m.kind: m.sender for m in ec}
    assert kinds["ec.syndrome"] == "alice"
    assert kinds["ec.check"] == "alice"
    assert kinds["ec.feedback"] == "bob"
    # the public seed is drawn independently of the key: sent, but not leakage
    seed_msgs = [m for m in channel.log if m.kind == "public.ec.seed"]
    assert [m.bits for m in seed_msgs] == [config.seed_bits]
    fp, attempts = plan(KEY_BITS, qber=qber, config=config), res.decode_attempts
    feedback = sum(m.bits for m in ec if m.kind == "ec.feedback")
    reveals = sum(m.bits for m in ec if m.kind == "ec.reveal")
    checks = sum(m.bits for m in ec if m.kind == "ec.check")
    assert feedback == attempts  # one bit per frame and attempt
    assert reveals == res.revealed_bits == fp.revealed_after(attempts - 1)
    assert checks == res.check_bits == fp.check_bits * fp.frames
    assert 8 <= fp.check_bits <= config.check_bits
    syndrome = sum(m.bits for m in ec if m.kind == "ec.syndrome")
    # one syndrome bit less per punctured symbol
    assert syndrome < round((1 - fp.rate) * fp.block_length)
    assert res.leak_bits == syndrome + checks + feedback + reveals


def test_several_frames_and_partial_last_frame(config: ReconcileConfig) -> None:
    qber, n = 0.03, 30_001
    fp = plan(n, qber=qber, config=config)
    assert fp.frames >= 2
    assert sum(fp.key_bits) == n
    assert max(fp.key_bits) - min(fp.key_bits) <= 1
    assert fp.block_length <= config.family.admissible_length(fp.rate, config.block_length)
    x, y = bsc_keys(n, qber, seed=9)
    res = reconcile(x, y, qber=qber, channel=PublicChannel(), seed=3, config=config)
    assert res.success
    assert res.frames == fp.frames
    assert np.array_equal(res.bob_key, x)


def test_parallel_workers_give_the_same_result(config: ReconcileConfig) -> None:
    """Frames decoded by two threads, or by an executor the caller owns: same corrected key,
    leakage and attempts, and no process is forked."""
    qber, n = 0.03, 30_001
    x, y = bsc_keys(n, qber, seed=9)
    serial = reconcile(x, y, qber=qber, channel=PublicChannel(), seed=3, config=config)
    par_cfg = dataclasses.replace(config, workers=2)
    parallel = reconcile(x, y, qber=qber, channel=PublicChannel(), seed=3, config=par_cfg)
    assert parallel.success
    assert np.array_equal(parallel.bob_key, serial.bob_key)
    assert parallel.leak_bits == serial.leak_bits
    assert parallel.decode_attempts == serial.decode_attempts
    with ThreadPoolExecutor(max_workers=2) as pool:
        owned = reconcile(
            x, y, qber=qber, channel=PublicChannel(), seed=3, config=config, executor=pool
        )
    assert np.array_equal(owned.bob_key, serial.bob_key)
    assert owned.leak_bits == serial.leak_bits
    assert multiprocessing.active_children() == []
    with pytest.raises(ReconciliationError):
        dataclasses.replace(config, workers=0)


def test_failure_is_detected_not_silent(config: ReconcileConfig) -> None:
    x, y = bsc_keys(KEY_BITS, 0.11, seed=4)  # true QBER far above the estimate
    cfg = ReconcileConfig(
        block_length=config.block_length,
        min_block_length=config.min_block_length,
        max_reveals=2,
        cache_dir=config.cache_dir,
    )
    channel = PublicChannel()
    res = reconcile(x, y, qber=0.02, channel=channel, seed=4, config=cfg)
    assert not res.success
    assert res.frames_failed == res.frames == 1
    assert res.failed_frames == (0,)
    assert res.decode_attempts == 3
    assert res.leak_bits == channel.bits_sent(prefix="ec.")
    with pytest.raises(ProtocolAbort) as info:
        res.require_success()
    assert info.value.reason == "reconciliation"


def test_one_shot_rate_adaptive(config: ReconcileConfig) -> None:
    qber = 0.05
    cfg = ReconcileConfig(
        block_length=config.block_length,
        min_block_length=config.min_block_length,
        target_efficiency=1.3,
        short_target_efficiency=1.3,
        max_reveals=0,
        cache_dir=config.cache_dir,
    )
    x, y = bsc_keys(KEY_BITS, qber, seed=6)
    channel = PublicChannel()
    res = reconcile(x, y, qber=qber, channel=channel, seed=5, config=cfg)
    assert res.success
    assert res.rounds == 1
    assert res.revealed_bits == 0
    assert res.efficiency == pytest.approx(1.3, abs=0.03)


def test_deterministic(config: ReconcileConfig) -> None:
    x, y = bsc_keys(KEY_BITS, 0.03, seed=8)
    a = reconcile(x, y, qber=0.03, channel=PublicChannel(), seed=11, config=config)
    b = reconcile(x, y, qber=0.03, channel=PublicChannel(), seed=11, config=config)
    assert a.leak_bits == b.leak_bits
    assert a.decode_attempts == b.decode_attempts
    assert np.array_equal(a.bob_key, b.bob_key)


def test_parties_only_talk_through_the_channel(config: ReconcileConfig) -> None:
    qber = 0.03
    x, y = bsc_keys(KEY_BITS, qber, seed=12)
    channel = PublicChannel()
    alice = AliceReconciler(
        x, qber=qber, channel=channel, config=config, rng=np.random.default_rng(1)
    )
    bob = BobReconciler(y, qber=qber, channel=channel, config=config)
    assert not hasattr(bob, "_x")
    assert not hasattr(alice, "_y")
    alice.send_syndromes()
    bob.receive_syndromes()
    while True:
        bob.decode_round()
        more = alice.handle_feedback()
        assert bob.receive_reveals() == more
        if not more:
            break
    assert not bob.failed
    assert not alice.failed
    assert np.array_equal(bob.corrected, x)


def test_plan_is_consistent() -> None:
    for qber in (0.01, 0.036, 0.1):
        fp = plan(100_000, qber=qber, config=ReconcileConfig())
        assert fp.frames == 1
        assert fp.punctured > 0
        assert fp.shortened(0) >= 0
        assert fp.block_length == fp.key_bits[0] + fp.punctured + fp.shortened(0)
        h = binary_entropy(qber)
        first = ((1 - fp.rate) * fp.block_length - fp.punctured) / (fp.key_bits[0] * h)
        assert first == pytest.approx(ReconcileConfig().target_efficiency, abs=0.01)
    assert (
        plan(100_000, qber=0.01, config=ReconcileConfig()).rate
        > plan(100_000, qber=0.1, config=ReconcileConfig()).rate
    )


def test_memoised_plan_is_the_plan() -> None:
    from qrepeater.qkdpp import reconciliation as rec

    cfg = ReconcileConfig(target_efficiency=1.07)  # an entry no other test made
    args: dict[str, Any] = {
        "qber": 0.036,
        "config": cfg,
        "exclude": frozenset(),
        "qber_upper": 0.04,
        "qber_start": 0.033,
    }
    first = rec._plan_memo(90_000, **args)
    assert first == plan(90_000, **args)
    assert rec._plan_memo(90_000, **args) is first  # the same object from the memo
    other = rec._plan_memo(90_000, **{**args, "exclude": frozenset({first.rate})})
    assert other.rate != first.rate  # every argument is part of the key
    assert len(rec._PLANS) <= rec._PLANS_MAX


def test_short_key_uses_the_short_block_family(config: ReconcileConfig) -> None:
    fp = plan(3_000, qber=0.05, config=config)
    assert fp.block_length < config.min_block_length  # not padded into a 15k code
    x, y = bsc_keys(3_000, 0.05, seed=13)
    res = reconcile(x, y, qber=0.05, channel=PublicChannel(), seed=1, config=config)
    assert res.success
    assert np.array_equal(res.bob_key, x)
    assert res.efficiency < 1.45
    padded = dataclasses.replace(config, short_keys=False)
    assert plan(3_000, qber=0.05, config=padded).block_length >= config.min_block_length


def test_short_keys_reveal_whole_rounds(config: ReconcileConfig) -> None:
    """Each reveal round costs a feedback bit: a 1 000-bit key's rounds are never smaller than
    ``min_reveal_bits`` (the QBER-proportional step would be 1-2 bits)."""
    fp = plan(1_000, qber=0.02, config=config)
    assert fp.reveal == config.min_reveal_bits
    one_bit = plan(1_000, qber=0.02, config=dataclasses.replace(config, min_reveal_bits=1))
    assert one_bit.reveal < config.min_reveal_bits
    assert plan(14_000, qber=0.05, config=config).reveal > config.min_reveal_bits


def test_starved_plan_falls_back_to_a_sparser_family(config: ReconcileConfig) -> None:
    """8 000 bits at Q = 1%: padded into the default family's shortest code, the key needs
    more punctured symbols than that code has untainted ones (first attempt at f ~ 1.9); the
    short family at the key's own length starts at the target and ends far lower."""
    from qrepeater.qkdpp.reconciliation import _code_for, _families

    n, q = 8_000, 0.01
    assert len(_families(20_000, config)) == 1  # long keys: the default family only
    names = [fam.name for fam, *_ in _families(n, config)]
    assert names[0] == config.family.name
    assert all(s.startswith("short") for s in names[1:])
    padded = plan(n, qber=q, config=config)
    code0 = config.family.code(padded.rate, padded.block_length, cache_dir=config.cache_dir)
    starved = (code0.m - min(padded.punctured, code0.puncture_order.size)) / (n * binary_entropy(q))
    assert starved > config.target_efficiency + 0.3
    fp, code = _code_for(n, q, config, None, None)
    assert code.family.startswith("short")
    start = (code.m - fp.punctured) / (n * binary_entropy(q))
    assert start < config.short_target_efficiency + 0.1
    x, y = bsc_keys(n, q, seed=5)
    res = reconcile(x, y, qber=q, channel=PublicChannel(), seed=1, config=config)
    assert res.success
    assert np.array_equal(res.bob_key, x)
    assert res.efficiency < 0.8 * starved


@pytest.mark.parametrize(
    ("true_q", "hint"),
    [(0.05, 0.02), pytest.param(0.01, 0.005, marks=pytest.mark.slow), (0.08, 0.03)],
)
def test_misjudged_qber_does_not_fail(true_q: float, hint: float, config: ReconcileConfig) -> None:
    """A hint far below the true QBER costs rounds, not the key."""
    x, y = bsc_keys(20_000, true_q, seed=21)
    channel = PublicChannel()
    res = reconcile(x, y, qber=hint, channel=channel, seed=2, config=config)
    assert res.success
    assert np.array_equal(res.bob_key, x)
    assert res.observed_qber == pytest.approx(true_q, abs=1e-9)
    # f is taken against the QBER found, not the (wrong) hint
    assert res.efficiency == pytest.approx(res.leak_bits / (20_000 * binary_entropy(true_q)))
    assert res.efficiency_estimate > res.efficiency
    assert res.rounds > 2
    assert res.leak_bits == channel.bits_sent(prefix="ec.")


def test_drifting_qber(config: ReconcileConfig) -> None:
    """Error rate rising from 1% to 7% across the key, hint at the mean."""
    n = 30_000
    rng = np.random.default_rng(22)
    x = rng.integers(0, 2, n, dtype=np.uint8)
    y = x ^ (rng.random(n) < np.linspace(0.01, 0.07, n)).astype(np.uint8)
    res = reconcile(x, y, qber=0.04, channel=PublicChannel(), seed=3, config=config)
    assert res.success
    assert np.array_equal(res.bob_key, x)


def test_uncorrelated_keys_fail_cleanly(config: ReconcileConfig) -> None:
    """Q = 0.5: no frame decodes before the leak reaches the key; no capacity is left."""
    rng = np.random.default_rng(23)
    x = rng.integers(0, 2, 20_000, dtype=np.uint8)
    y = rng.integers(0, 2, 20_000, dtype=np.uint8)
    res = reconcile(x, y, qber=0.2, channel=PublicChannel(), seed=4, config=config)
    assert not res.success
    assert res.frames_failed == res.frames
    assert res.secret_capacity_left == (res.leak_bits < 20_000)
    with pytest.raises(ProtocolAbort):
        res.require_success()


def test_sampled_estimate_plans_for_its_upper_bound(config: ReconcileConfig) -> None:
    x, y = bsc_keys(20_000, 0.03, seed=24)
    sample = sample_qber(x, y, rng=np.random.default_rng(5))
    assert sample.bits == 400
    assert sample.keep.sum() == 20_000 - 400
    xs, ys = x[sample.keep], y[sample.keep]
    res = reconcile(
        xs,
        ys,
        qber=sample.estimate,
        channel=PublicChannel(),
        seed=5,
        config=config,
        qber_sample_bits=sample.bits,
    )
    assert res.success
    assert res.qber_upper is not None
    assert res.qber_upper == pytest.approx(sample.upper(config.qber_confidence), rel=0.05)
    up, start = sample_bounds(sample.estimate, sample.bits, config=config)
    assert res.qber_upper == up
    assert start is not None
    assert start < sample.estimate < up
    wide = plan(xs.size, qber=sample.estimate, config=config, qber_upper=res.qber_upper)
    narrow = plan(xs.size, qber=sample.estimate, config=config)
    assert wide.punctured >= narrow.punctured


def test_qber_upper_bound() -> None:
    # zero errors: the Clopper-Pearson bound is 1 - (1 - c)^(1/n)
    assert qber_upper_bound(0, 1000, confidence=0.95) == pytest.approx(1 - 0.05 ** (1 / 1000))
    assert qber_upper_bound(36, 1000) > 0.036
    assert qber_upper_bound(36, 1000, confidence=0.999) > qber_upper_bound(36, 1000)
    assert qber_upper_bound(5, 5) == 1.0
    for bad in ((-1, 10), (11, 10), (0, 0)):
        with pytest.raises(ReconciliationError):
            qber_upper_bound(*bad)


def test_frame_check_is_linear_and_seeded() -> None:
    rng = np.random.default_rng(6)
    a, b = rng.integers(0, 2, (2, 5_000), dtype=np.uint8)
    ca = frame_check(a, public_seed=1, frame=0, n_bits=16)
    cb = frame_check(b, public_seed=1, frame=0, n_bits=16)
    cab = frame_check(a ^ b, public_seed=1, frame=0, n_bits=16)
    np.testing.assert_array_equal(ca ^ cb, cab)  # GF(2)-linear
    assert not np.array_equal(ca, frame_check(a, public_seed=2, frame=0, n_bits=16))
    assert frame_check(a, public_seed=1, frame=0, n_bits=0).size == 0


@pytest.mark.parametrize(
    ("alice", "bob", "qber"),
    [
        (np.zeros(100, np.uint8), np.zeros(99, np.uint8), 0.05),  # lengths differ
        (np.full(100, 2, np.uint8), np.zeros(100, np.uint8), 0.05),  # not 0/1
        (np.zeros(100), np.zeros(100), 0.05),  # floats
        (np.zeros((10, 10), np.uint8), np.zeros((10, 10), np.uint8), 0.05),  # 2-D
        (np.zeros(0, np.uint8), np.zeros(0, np.uint8), 0.05),  # empty
        (np.zeros(100, np.uint8), np.zeros(100, np.uint8), 0.0),
        (np.zeros(100, np.uint8), np.zeros(100, np.uint8), 0.5),
        (np.zeros(100, np.uint8), np.zeros(100, np.uint8), -0.1),
        (np.zeros(100, np.uint8), np.zeros(100, np.uint8), float("nan")),
    ],
)
def test_bad_inputs(
    alice: npt.NDArray[np.generic],
    bob: npt.NDArray[np.generic],
    qber: float,
    config: ReconcileConfig,
) -> None:
    with pytest.raises(ReconciliationError):
        reconcile(alice, bob, qber=qber, channel=PublicChannel(), seed=0, config=config)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"block_length": 10_000, "min_block_length": 20_000},
        {"min_block_length": 10},
        {"target_efficiency": 0.4},
        {"reveal_step": 0.0},
        {"min_reveal_bits": 0},
        {"max_reveals": -1},
        {"bp_max_iter": 0},
        {"puncture_range": -0.1},
        {"seed_bits": 1000},
        {"reveal_growth": 0.5},
        {"check_bits": 65},
        {"qber_confidence": 1.0},
        {"decoder": "minsum"},
        {"patience": -1},
        {"short_reveal_step": 0.0},
    ],
)
def test_bad_config(kwargs: dict[str, float]) -> None:
    with pytest.raises(ReconciliationError):
        ReconcileConfig(**kwargs)  # type: ignore[arg-type]


def test_impossible_block_length(tmp_path: Path) -> None:
    cfg = ReconcileConfig(block_length=2_000, min_block_length=600, cache_dir=str(tmp_path))
    x, y = bsc_keys(1_500, 0.03, seed=1)
    with pytest.raises(ReconciliationError):
        reconcile(x, y, qber=0.03, channel=PublicChannel(), seed=0, config=cfg)


@pytest.mark.slow
def test_paper_operating_point(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Q = 3.6% on the experiment's 105,976-bit sifted key (paper: f = 1.122)."""
    monkeypatch.setenv("QREPEATER_CACHE", str(tmp_path))
    qber = 0.036
    x, y = bsc_keys(105_976, qber, seed=2025)
    channel = PublicChannel()
    res = reconcile(x, y, qber=qber, channel=channel, seed=7)
    assert res.success
    assert np.array_equal(res.bob_key, x)
    assert res.efficiency < 1.122


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("mode", ["hint", "sample", "misjudged", "drift"])
def test_frame_success_sweep(mode: str, config: ReconcileConfig) -> None:
    """Every frame decodes, QBER 1-10%: given, sampled, misjudged (0.6 Q) or drifting
    (0.5 Q to 1.5 Q across the key). The 1,000-frame version is benchmarks/bench_reconcile.py
    (section robustness); this one runs 12 frames of 16,000 bits per QBER."""
    n, frames = 16_000, 12
    for q in (0.01, 0.03, 0.05, 0.07, 0.1):
        for t in range(frames):
            rng = np.random.default_rng([31, t, round(q * 1000)])
            x = rng.integers(0, 2, n, dtype=np.uint8)
            rate = np.linspace(0.5 * q, 1.5 * q, n) if mode == "drift" else q
            y = x ^ (rng.random(n) < rate).astype(np.uint8)
            kwargs: dict[str, Any] = {"qber": 0.6 * q if mode == "misjudged" else q}
            if mode == "sample":
                s = sample_qber(x, y, rng=rng)
                x, y = x[s.keep], y[s.keep]
                kwargs = {"qber": s.estimate, "qber_sample_bits": s.bits}
            res = reconcile(x, y, channel=PublicChannel(), seed=t, config=config, **kwargs)
            assert res.success, (mode, q, t)
            assert np.array_equal(res.bob_key, x)


@pytest.mark.parametrize("q", [0.01, 0.036, 0.08])
def test_bob_reads_the_qber_off_the_syndrome(q: float) -> None:
    """Bob's decoder prior comes from the syndrome mismatch (no extra disclosure): a hint of
    0.6 Q does not mislead it, and the estimate is within a few standard errors of the truth."""
    rng = np.random.default_rng(int(q * 1e4))
    n = 40_000
    x = rng.integers(0, 2, n, dtype=np.uint8)
    y = x ^ (rng.random(n) < q).astype(np.uint8)
    true_q = float(np.mean(x != y))
    ch = PublicChannel()
    cfg = ReconcileConfig()
    alice = AliceReconciler(x, qber=0.6 * q, channel=ch, config=cfg, rng=np.random.default_rng(1))
    bob = BobReconciler(y, qber=0.6 * q, channel=ch, config=cfg)
    alice.send_syndromes()
    bob.receive_syndromes()
    assert len(bob.syndrome_qbers) == bob.plan.frames
    for est in bob.syndrome_qbers:
        assert abs(est - true_q) < 0.15 * true_q + 0.002


def test_extension_rows_are_a_public_prefix_family(config: ReconcileConfig) -> None:
    from qrepeater.qkdpp.codes import extended
    from qrepeater.qkdpp.reconciliation import _code_for

    _, code = _code_for(20_000, 0.03, config, None, None)
    three = extended(code, 3, seed=7, degree=5)
    five = extended(code, 5, seed=7, degree=5)
    z = code.lift
    assert three.m == code.m + 3 * z
    assert five.m == code.m + 5 * z
    assert (five.H[: three.m] != three.H).nnz == 0  # each extension is a prefix of the next
    assert (three.H[: code.m] != code.H).nnz == 0  # the mother code's rows are untouched
    np.testing.assert_array_equal(three.pivots, code.pivots)
    rows = five.H[code.m :]
    assert set(np.diff(rows.indptr).tolist()) <= {5}  # degree-5 rows (no dropped columns here)
    other = extended(code, 3, seed=8, degree=5)
    assert (other.H[code.m :] != three.H[code.m :]).nnz > 0  # the public seed picks the rows


def test_extension_beats_revealing_key_bits_on_a_low_hint(config: ReconcileConfig) -> None:
    """Hint 0.6 Q: once punctured symbols are spent, extension parities (each a parity of
    five blocks of key bits) lower the leak against revealing key bits, and never cost a key."""
    fs = {}
    for ext in (True, False):
        cfg = dataclasses.replace(config, extension=ext)
        effs = []
        for seed in range(3):
            x, y = bsc_keys(20_000, 0.036, 100 + seed)
            res = reconcile(x, y, qber=0.6 * 0.036, channel=PublicChannel(), seed=seed, config=cfg)
            assert res.success
            np.testing.assert_array_equal(res.bob_key, x)
            effs.append(res.efficiency)
        fs[ext] = float(np.mean(effs))
    assert fs[True] < 0.85 * fs[False]


class _FlippingChannel(PublicChannel):
    """A public channel whose every reveal message reaches Bob with all bits flipped (an
    active attacker on an unauthenticated channel, or a corrupted link)."""

    def receive(self, receiver: Any, kind: str) -> bytes:
        payload = super().receive(receiver, kind)
        if kind == "ec.reveal":
            return bytes(b ^ 0xFF for b in payload)
        return payload


def test_corrupted_extension_parities_never_yield_a_wrong_key(config: ReconcileConfig) -> None:
    """Reveal rounds (punctured values and extension parities) corrupted in transit: Bob's
    decoder may converge to a wrong word that satisfies the corrupted checks, but the frame
    check catches it; the run ends without success or with Alice's key, never a wrong one."""
    for seed in range(3):
        x, y = bsc_keys(20_000, 0.036, 200 + seed)
        res = reconcile(
            x, y, qber=0.6 * 0.036, channel=_FlippingChannel(), seed=seed, config=config
        )
        assert not res.success or np.array_equal(res.bob_key, x)


@pytest.mark.parametrize(("n", "q"), [(8_000, 0.01), (1_000, 0.02)])
def test_corrupted_reveals_on_short_fallback_keys_never_pass_verification(
    n: int, q: float, config: ReconcileConfig
) -> None:
    """Short keys on a fallback family (starved plan, 12-bit reveal rounds, 8 check bits) with
    every reveal corrupted in transit: a run ends without success, with Alice's key, or with a
    key that verification rejects; a differing key never passes both stages."""
    from qrepeater.qkdpp.verify import verify_keys

    for seed in range(3):
        x, y = bsc_keys(n, q, 300 + seed)
        res = reconcile(x, y, qber=q, channel=_FlippingChannel(), seed=seed, config=config)
        if not res.success or np.array_equal(res.bob_key, x):
            continue
        with pytest.raises(ProtocolAbort):
            verify_keys(PublicChannel(), x, res.bob_key, rng=np.random.default_rng(seed))
