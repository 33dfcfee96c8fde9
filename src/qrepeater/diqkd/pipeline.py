"""From recorded rounds to identical secret keys: the DI-QKD post-processing pipeline.

Alice and Bob are two objects, each holding only its own round record; every step below is a
public message on the (authenticated) channel, and the channel counts every bit:

1. **Sync.** Each party sends the run id and a SHA-256 digest of its ``(round, herald, time)``
   columns (public anyway); a mismatch is a misaligned record (:class:`RecordMismatchError`).
2. **Sifting.** Both announce their settings (public in DI-QKD); ``X=0, Y=2`` rounds are key
   rounds, ``X, Y in {0, 1}`` test rounds, the rest are discarded.
3. **Parameter estimation.** Both announce their test-round outcomes and run the acceptance
   test :func:`qrepeater.diqkd.estimate.bell_test`: the observed settings are tested against the
   distribution agreed before the run (``DistillConfig.settings``, never the records' metadata,
   which must agree with it), the CHSH score ``S = (1/N) sum (-1)^(xy) a b / p(x, y)``
   (importance-weighted with the agreed distribution, the form the finite-key bounds need) and
   the per-pair estimate are computed; a score above ``2 sqrt 2`` beyond its statistical
   deviation aborts (``tsirelson``), as do failed settings (``settings``). The settings test's
   error ``eps_settings`` is reserved from the soundness budget.
   The QBER that sets the code rate is predicted from the announced correlators (or measured on
   a disclosed sample of key bits, which then leave the key and count as leakage).
4. **Abort rule.** If the Bell violation alone leaves no finite key (even with no leakage at
   all), abort before reconciliation.
5. **Reconciliation** (:mod:`qrepeater.qkdpp.reconciliation`), **verification**
   (:mod:`qrepeater.qkdpp.verify`, ``eps_EC`` from the bound's epsilon split) and the final key
   length from the finite-key bound (:mod:`qrepeater.diqkd.keyrate`) with the leakage counted on
   the channel: every ``ec.*`` bit, the verification hashes and the QBER sample. A non-positive
   length aborts.
6. **Privacy amplification** (:mod:`qrepeater.qkdpp.amplify`) to exactly that length.

Every message is authenticated (Wegman-Carter, :mod:`qrepeater.qkdpp.auth`); the
authentication key consumed and ``eps_auth`` are reported, and ``eps_auth`` is added to the
soundness error. A run that aborts (Bell violation too low, QBER too high, verification or
authentication failed) returns a report with ``aborted=True`` and no key material.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from qrepeater.diqkd.estimate import ChshStatistic, bell_test
from qrepeater.diqkd.keyrate import FiniteKeyResult, Method, binary_entropy, finite_key
from qrepeater.diqkd.records import RecordMismatchError
from qrepeater.diqkd.rounds import PartyRounds, RunMetadata, SettingDistribution
from qrepeater.errors import ParameterError, ProtocolAbort
from qrepeater.qkdpp.amplify import amplify_receive, amplify_send
from qrepeater.qkdpp.channel import AuthenticatedChannel, Channel, Party, pack_bits, unpack_bits
from qrepeater.qkdpp.reconciliation import ReconcileConfig, reconcile
from qrepeater.qkdpp.verify import VerificationParams, verify_check, verify_confirm, verify_send

U8 = npt.NDArray[np.uint8]
Seed = int | np.random.Generator | None

__all__ = ["DistillConfig", "DistillReport", "DistillResult", "Party", "distill"]


def _default_reconcile_config() -> ReconcileConfig:
    """Frames of about 60,000 symbols decoded on up to two cores: a paper-sized key (about
    100,000 bits) becomes two frames decoded in parallel, at the same efficiency."""
    return ReconcileConfig(block_length=60_000, workers=max(1, min(2, os.cpu_count() or 1)))


@dataclass(frozen=True)
class DistillConfig:
    """Options of :func:`distill`, validated on construction.

    ``method``: finite-key bound (``phase-error`` or ``eat``); ``eps``: total soundness error of
    the key (the authentication error is reported on top); ``qber_sample_fraction`` and
    ``min_qber_sample``: share (and least number) of key rounds disclosed to estimate the QBER;
    ``qber_source``: where the code-rate QBER estimate comes from: ``tests`` predicts it from
    the announced CHSH correlators with the devices' nominal directions (no key bits spent),
    ``sample`` discloses a random sample of key bits (charged as leakage);
    ``qber_hint``: a QBER estimate known before the run (overrides both);
    ``auth_key_bits``: size of the pre-shared authentication key pool;
    ``settings``: the setting distribution agreed before the run (protocol configuration; the
    records' declared distributions must equal it); ``None`` means the default preset's
    operating point (:meth:`SettingDistribution.from_preset`), never the records' metadata;
    ``eps_settings``: error of the settings and Tsirelson tests, reserved from ``eps``
    (default ``eps / 100``).
    """

    method: Method = "phase-error"
    eps: float = 1e-5
    qber_source: Literal["tests", "sample"] = "tests"
    qber_sample_fraction: float = 0.02
    min_qber_sample: int = 500
    qber_hint: float | None = None
    auth_key_bits: int = 1 << 16
    reconcile: ReconcileConfig = field(default_factory=lambda: _default_reconcile_config())
    settings: SettingDistribution | None = None
    eps_settings: float | None = None

    def __post_init__(self) -> None:
        for name in ("eps", "qber_sample_fraction", "qber_hint", "eps_settings"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                raise ParameterError(f"{name} must be a number, got {v!r}")
        for name in ("min_qber_sample", "auth_key_bits"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ParameterError(f"{name} must be an integer, got {v!r}")
        if self.settings is not None and not isinstance(self.settings, SettingDistribution):
            raise ParameterError("settings must be a SettingDistribution or None")
        if not isinstance(self.reconcile, ReconcileConfig):
            raise ParameterError("reconcile must be a ReconcileConfig")
        if self.method not in ("phase-error", "eat"):
            raise ParameterError(f"method must be 'phase-error' or 'eat', got {self.method!r}")
        if not 0.0 < self.eps < 1.0:
            raise ParameterError(f"eps must lie in (0, 1), got {self.eps}")
        if self.qber_source not in ("tests", "sample"):
            raise ParameterError(
                f"qber_source must be 'tests' or 'sample', got {self.qber_source!r}"
            )
        if not 0.0 <= self.qber_sample_fraction < 1.0:
            raise ParameterError("qber_sample_fraction must lie in [0, 1)")
        if self.min_qber_sample < 0:
            raise ParameterError("min_qber_sample must be non-negative")
        if self.qber_hint is not None and not 0.0 < self.qber_hint < 0.5:
            raise ParameterError(f"qber_hint must lie in (0, 0.5), got {self.qber_hint}")
        if self.auth_key_bits < 1024:
            raise ParameterError("auth_key_bits must be at least 1024")
        if self.eps_settings is not None and not 0.0 < self.eps_settings < self.eps / 2:
            raise ParameterError(f"eps_settings must lie in (0, eps/2), got {self.eps_settings}")

    @property
    def settings_eps(self) -> float:
        """Error of the settings test, reserved from ``eps``."""
        return self.eps / 100 if self.eps_settings is None else float(self.eps_settings)

    def agreed_settings(self) -> SettingDistribution:
        """The setting distribution fixed before the run (see the class docstring)."""
        if self.settings is not None:
            return self.settings
        from qrepeater.presets import load_preset

        return SettingDistribution.from_preset(load_preset())


@dataclass(frozen=True)
class DistillReport:
    """Everything public about a distillation run (never key bytes)."""

    aborted: bool
    abort_reason: str | None
    abort_message: str | None
    method: str
    rounds: int
    key_rounds: int
    test_rounds: int
    chsh: float | None
    chsh_std: float | None
    chsh_per_pair: float | None
    qber_hint: float | None
    qber: float | None
    sample_bits: int
    leak_bits: int
    ec_efficiency: float | None
    frames: int
    secret_bits: int
    auth_key_bits: int
    eps: dict[str, Any]
    finite_key: dict[str, Any] | None
    public_bits: int
    seconds: dict[str, float]
    chsh_deviation: float | None = None
    settings_test: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report."""
        return dict(self.__dict__)


@dataclass(frozen=True, eq=False)
class DistillResult:
    """Report plus, unless the run aborted, both parties' final keys (hidden from ``repr``)."""

    report: DistillReport
    alice_key: U8 | None = field(default=None, repr=False)
    bob_key: U8 | None = field(default=None, repr=False)

    def require_keys(self) -> tuple[U8, U8]:
        """Both keys, or :class:`ProtocolAbort` if the run aborted."""
        if self.report.aborted or self.alice_key is None or self.bob_key is None:
            raise ProtocolAbort(
                self.report.abort_reason or "aborted",
                self.report.abort_message or "the run aborted",
            )
        return self.alice_key, self.bob_key


# ---- the two parties ---------------------------------------------------------------------------


def _digest(rounds: PartyRounds, run_id: str) -> bytes:
    h = hashlib.sha256(run_id.encode())
    for a in (rounds.round, rounds.herald, rounds.time_s):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.digest()


_SYNC = struct.Struct(">Q32s")


class _Side:
    """What one party knows: its own record and what it has received."""

    def __init__(self, name: Party, rounds: PartyRounds, meta: RunMetadata, channel: Channel):
        if rounds.party != name:
            raise ParameterError(f"record of {rounds.party} given as {name}'s")
        self.name = name
        self.rounds = rounds
        self.meta = meta
        self.channel = channel
        self.peer_setting: U8 | None = None

    # 1. sync ------------------------------------------------------------------------------------
    def send_sync(self) -> None:
        payload = _SYNC.pack(self.rounds.round.size, _digest(self.rounds, self.meta.run_id))
        self.channel.send(self.name, "sync.digest", self.meta.run_id.encode() + b"\0" + payload)

    def check_sync(self) -> None:
        msg = self.channel.receive(self.name, "sync.digest")
        run_id, _, rest = msg.partition(b"\0")
        peer_id = run_id.decode(errors="replace")
        if peer_id != self.meta.run_id:
            raise RecordMismatchError(
                f"records belong to different runs ({peer_id!r} vs {self.meta.run_id!r})"
            )
        if len(rest) != _SYNC.size:
            raise ProtocolAbort("sync", "malformed sync message")
        n, digest = _SYNC.unpack(rest)
        if n != self.rounds.round.size:
            raise RecordMismatchError(f"records differ in length ({n} vs {self.rounds.round.size})")
        if digest != _digest(self.rounds, self.meta.run_id):
            raise RecordMismatchError("records differ in their round, herald or time columns")

    # 2. sifting ---------------------------------------------------------------------------------
    def announce_settings(self) -> None:
        s = self.rounds.setting
        if self.name == "alice":
            payload, n = pack_bits(s)
        else:
            payload, n = pack_bits(np.stack([s >> 1, s & 1], axis=1).ravel())
        self.channel.send(self.name, "sift.settings", payload, bits=n)

    def receive_settings(self) -> None:
        n = self.rounds.round.size
        msg = self.channel.receive(self.name, "sift.settings")
        if self.name == "alice":
            pairs = unpack_bits(msg, 2 * n).reshape(n, 2)
            y = (pairs[:, 0] << 1 | pairs[:, 1]).astype(np.uint8)
            if np.any(y > 2):
                raise ProtocolAbort("sifting", "Bob announced a setting outside {0, 1, 2}")
            self.peer_setting = y
        else:
            self.peer_setting = unpack_bits(msg, n).astype(np.uint8)

    def settings(self) -> tuple[U8, U8]:
        """``(x, y)`` for every round, once the settings have been exchanged."""
        if self.peer_setting is None:
            raise ProtocolAbort("sifting", f"{self.name} has not received the peer's settings")
        own = self.rounds.setting
        return (own, self.peer_setting) if self.name == "alice" else (self.peer_setting, own)

    @property
    def key_mask(self) -> npt.NDArray[np.bool_]:
        x, y = self.settings()
        return np.asarray((x == 0) & (y == 2))

    @property
    def test_mask(self) -> npt.NDArray[np.bool_]:
        return np.asarray(self.settings()[1] < 2)

    # 3. parameter estimation -------------------------------------------------------------------
    def announce_test_outcomes(self) -> None:
        payload, n = pack_bits(self.rounds.outcome[self.test_mask])
        self.channel.send(self.name, "pe.test_outcomes", payload, bits=n)

    def receive_test_outcomes(self) -> U8:
        n = int(self.test_mask.sum())
        return unpack_bits(self.channel.receive(self.name, "pe.test_outcomes"), n)

    @property
    def key_bits(self) -> U8:
        return self.rounds.outcome[self.key_mask].astype(np.uint8)


def _qber_from_tests(est: ChshStatistic, meta: RunMetadata) -> float | None:
    """Predict the key-round QBER from the announced CHSH correlators (a code-rate hint).

    With Bob's CHSH settings at angle ``theta`` on either side of his key setting, in the plane
    of the correlations, ``E(A0, B0) = E(A0, B1) = E(A0, B2) cos(theta)``, so
    ``Q ~ (1 - (E00 + E01) / (b0.b2 + b1.b2)) / 2``. This assumes the devices' nominal
    directions (from the run metadata): fine for a hint, never used for security.
    """
    bob = [np.asarray(v, dtype=float) for v in meta.directions[0].bob]
    cos = float(bob[0] @ bob[2] + bob[1] @ bob[2])
    if cos < 0.2:
        return None
    e02 = (est.correlators[0] + est.correlators[1]) / cos
    return min(max((1.0 - e02) / 2, 0.005), 0.45)


def _disclose_sample(
    channel: Channel, key_a: U8, key_b: U8, *, cfg: DistillConfig, rng: np.random.Generator | None
) -> npt.NDArray[np.bool_]:
    """Alice picks random key positions; both disclose their bits there. Returns the mask."""
    n_key = key_a.size
    k = min(n_key - 1, max(cfg.min_qber_sample, int(cfg.qber_sample_fraction * n_key)))
    # the positions must not depend on the data: fresh randomness
    gen = rng or np.random.default_rng(secrets.randbits(128))
    idx = np.sort(gen.choice(n_key, size=k, replace=False))
    channel.send("alice", "pe.sample_positions", idx.astype(">u4").tobytes())
    pos = np.frombuffer(channel.receive("bob", "pe.sample_positions"), dtype=">u4")
    pa, na = pack_bits(key_a[idx])
    channel.send("alice", "pe.sample_bits", pa, bits=na)
    pb, nb = pack_bits(key_b[pos])
    channel.send("bob", "pe.sample_bits", pb, bits=nb)
    if not np.array_equal(unpack_bits(channel.receive("bob", "pe.sample_bits"), k).shape, (k,)):
        raise ProtocolAbort("parameter_estimation", "malformed QBER sample")  # pragma: no cover
    channel.receive("alice", "pe.sample_bits")
    mask = np.zeros(n_key, dtype=bool)
    mask[idx] = True
    return mask


def _rng(seed: Seed, index: int) -> np.random.Generator | None:
    """Seeded generators for tests; ``None`` means cryptographic randomness (``secrets``)."""
    if seed is None:
        return None
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ParameterError(f"seed must be a non-negative integer or a Generator, got {seed!r}")
    return np.random.default_rng(np.random.SeedSequence(seed).spawn(5)[index])


def distill(
    alice: PartyRounds,
    bob: PartyRounds,
    *,
    alice_meta: RunMetadata,
    bob_meta: RunMetadata,
    config: DistillConfig | None = None,
    channel: Channel | None = None,
    seed: Seed = None,
    progress: Callable[[str], None] | None = None,
) -> DistillResult:
    """Run the whole post-processing of one DI-QKD run; see the module docstring.

    ``seed`` makes the public random choices (QBER sample, reconciliation seed, verification and
    PA seeds, authentication key) reproducible; leave it ``None`` for real keys, which then use
    :mod:`secrets`. ``channel`` defaults to an :class:`AuthenticatedChannel` over a fresh
    pre-shared key of ``config.auth_key_bits``. Bad records raise; protocol failures return an
    aborted report.
    """
    cfg = config or DistillConfig()
    if not isinstance(cfg, DistillConfig):
        raise ParameterError("config must be a DistillConfig")
    for who, record, meta in (("alice", alice, alice_meta), ("bob", bob, bob_meta)):
        if not isinstance(record, PartyRounds) or not isinstance(meta, RunMetadata):
            raise ParameterError(f"{who}'s record must be PartyRounds with RunMetadata")
    if len(alice) == 0:
        raise ParameterError("the records hold no rounds")
    _rng(seed, 0)  # validate the seed before anything runs
    agreed = cfg.agreed_settings()
    eps_settings = cfg.settings_eps
    if channel is None:
        channel = AuthenticatedChannel.with_shared_key(cfg.auth_key_bits, rng=_rng(seed, 0))
    a_side = _Side("alice", alice, alice_meta, channel)
    b_side = _Side("bob", bob, bob_meta, channel)
    timings: dict[str, float] = {}
    state: dict[str, Any] = {"sample_bits": 0, "leak": 0, "frames": 0}
    n_rounds = int(alice.round.size)

    def stage(name: str) -> Callable[[], None]:
        t0 = time.perf_counter()
        if progress:
            progress(name)

        def done() -> None:
            timings[name] = time.perf_counter() - t0

        return done

    def report(**kw: Any) -> DistillReport:
        auth_bits, eps_auth = 0, 0.0
        if isinstance(channel, AuthenticatedChannel):
            # both parties hold the same pool; one endpoint counts its pads in both directions
            auth_bits = channel.report("alice").key_bits_consumed
            eps_auth = channel.eps_auth
        fk: FiniteKeyResult | None = state.get("fk")
        eps = fk.eps.to_dict() if fk is not None else {"soundness": cfg.eps - eps_settings}
        eps = {
            **eps,
            "verification_collision_bound": state.get("verification_collision_bound"),
            "settings_test": eps_settings,
            "authentication": eps_auth,
            "total": eps.get("soundness", cfg.eps - eps_settings) + eps_settings + eps_auth,
        }
        base = {
            "aborted": False,
            "abort_reason": None,
            "abort_message": None,
            "method": cfg.method,
            "rounds": n_rounds,
            "key_rounds": state.get("key_rounds", 0),
            "test_rounds": state.get("test_rounds", 0),
            "chsh": state.get("chsh"),
            "chsh_std": state.get("chsh_std"),
            "chsh_per_pair": state.get("chsh_per_pair"),
            "chsh_deviation": state.get("chsh_deviation"),
            "settings_test": state.get("settings_test"),
            "qber_hint": state.get("qber_hint"),
            "qber": state.get("qber"),
            "sample_bits": state["sample_bits"],
            "leak_bits": state["leak"],
            "ec_efficiency": state.get("ec_efficiency"),
            "frames": state["frames"],
            "secret_bits": 0,
            "auth_key_bits": auth_bits,
            "eps": eps,
            "finite_key": fk.to_dict() if fk is not None else None,
            "public_bits": channel.bits_sent(),
            "seconds": dict(timings),
        }
        base.update(kw)
        return DistillReport(**base)

    try:
        done = stage("sync")
        a_side.send_sync()
        b_side.send_sync()
        b_side.check_sync()
        a_side.check_sync()
        done()

        done = stage("sifting")
        a_side.announce_settings()
        b_side.announce_settings()
        b_side.receive_settings()
        a_side.receive_settings()
        key_mask = a_side.key_mask
        if not np.array_equal(key_mask, b_side.key_mask):
            raise ProtocolAbort("sifting", "parties disagree on the key rounds")
        state["key_rounds"] = int(key_mask.sum())
        state["test_rounds"] = int(a_side.test_mask.sum())
        done()

        done = stage("parameter_estimation")
        a_side.announce_test_outcomes()
        b_side.announce_test_outcomes()
        b_out = a_side.receive_test_outcomes()
        a_out = b_side.receive_test_outcomes()
        x, y = a_side.settings()
        if state["key_rounds"] < 1 or state["test_rounds"] < 1:
            raise ProtocolAbort("parameter_estimation", "no key rounds or no test rounds")
        try:
            bt = bell_test(
                x=x,
                y=y,
                test_a=a_out,
                test_b=b_out,
                agreed=agreed,
                declared=(alice_meta.distribution, bob_meta.distribution),
                eps=eps_settings,
            )
        except ProtocolAbort as exc:
            state.update(exc.details)
            raise
        est = bt.chsh
        state.update(
            chsh=est.score,
            chsh_std=est.per_pair_std,
            chsh_per_pair=est.per_pair,
            chsh_deviation=est.score_deviation,
            settings_test=bt.settings.to_dict(),
        )

        # The QBER estimate only sets the code rate: security rests on S and the leakage the
        # channel counts, so a model-based guess is allowed and costs no key.
        key_a, key_b = a_side.key_bits, b_side.key_bits
        n_key = key_a.size
        sample = np.zeros(n_key, dtype=bool)
        q_hint = cfg.qber_hint
        if q_hint is None and cfg.qber_source == "tests":
            q_hint = _qber_from_tests(est, alice_meta)
        if q_hint is None:
            sample = _disclose_sample(channel, key_a, key_b, cfg=cfg, rng=_rng(seed, 1))
            k = int(sample.sum())
            # a zero-error sample still gets a usable, slightly pessimistic rate
            q_hint = max(int(np.sum(key_a[sample] != key_b[sample])), 1) / k
            state["sample_bits"] = k
        state["qber_hint"] = q_hint
        settings = agreed.probabilities()
        if q_hint >= 0.5:
            raise ProtocolAbort("qber", f"estimated QBER {q_hint:.3f} leaves no key")

        def bound(qber: float, leak_bits: float) -> FiniteKeyResult:
            """The finite-key bound over all key rounds; sampled bits are charged as leakage."""
            return finite_key(
                method=cfg.method,
                rounds=n_rounds,
                key_rounds=n_key,
                test_rounds=state["test_rounds"],
                chsh=bt.bound_chsh,
                qber=min(qber, 0.4999),
                eps=cfg.eps - eps_settings,
                leak_ec_bits=leak_bits,
                setting_probabilities=settings,
            )

        # Early abort when the Bell violation alone leaves no key, even if reconciliation leaked
        # nothing; the QBER decides after reconciliation, with the leakage actually counted.
        fk0 = bound(q_hint, float(state["sample_bits"]))
        state["fk"] = fk0
        done()
        if fk0.finite_key_bits <= 0:
            raise ProtocolAbort(
                "no_key",
                f"S = {est.score:.4f} over {n_rounds:,} rounds gives no finite key "
                f"({cfg.method}, eps = {cfg.eps:g}) even without reconciliation leakage",
            )

        done = stage("reconciliation")
        ka, kb = key_a[~sample], key_b[~sample]
        rec = reconcile(
            ka, kb, qber=q_hint, channel=channel, seed=_rng(seed, 2), config=cfg.reconcile
        )
        state["frames"] = rec.frames
        bob_corrected = rec.require_success()
        done()

        done = stage("verification")
        eps_ec = fk0.eps.correctness
        vparams = VerificationParams(eps_ec=eps_ec)
        verified = verify_send(channel, ka, params=vparams, rng=_rng(seed, 3))
        verify_check(channel, bob_corrected, params=vparams)
        verify_confirm(channel)
        state["verification_collision_bound"] = verified.collision_bound
        done()

        done = stage("key_length")
        errors = int(np.sum(bob_corrected != kb))
        qber = errors / ka.size
        state["qber"] = qber
        leak = (
            channel.bits_sent(prefix="ec.")
            + channel.bits_sent(prefix="verify.hash")
            + state["sample_bits"]
        )
        state["leak"] = leak
        h = binary_entropy(qber)
        state["ec_efficiency"] = rec.leak_bits / (ka.size * h) if h > 0 else None
        fk = bound(qber, leak)
        state["fk"] = fk
        if verified.collision_bound > fk.eps.correctness:
            # the final bound re-optimises its epsilon split: the hash actually used must still
            # be at least as strong as the correctness error that split assumes
            raise ProtocolAbort(
                "verification",
                f"verification collision bound {verified.collision_bound:.2g} exceeds the "
                f"bound's eps_EC {fk.eps.correctness:.2g}",
            )
        length = min(fk.finite_key_bits, int(ka.size))
        done()
        if length <= 0:
            raise ProtocolAbort(
                "no_key",
                f"after reconciliation (leak {leak} bits, QBER {qber:.4f}) the finite key is empty",
            )

        done = stage("privacy_amplification")
        pa_rng = _rng(seed, 4)
        final_a = amplify_send(channel, ka, output_bits=length, rng=pa_rng)
        final_b = amplify_receive(channel, bob_corrected, output_bits=length)
        done()
        if not np.array_equal(final_a.key, final_b.key):  # pragma: no cover - verified above
            raise ProtocolAbort("verification", "final keys differ")
        return DistillResult(
            report=report(secret_bits=length), alice_key=final_a.key, bob_key=final_b.key
        )
    except ProtocolAbort as exc:
        return DistillResult(
            report=report(aborted=True, abort_reason=exc.reason, abort_message=str(exc))
        )
