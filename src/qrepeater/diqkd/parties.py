"""Alice and Bob of the DI-QKD post-processing as sans-IO protocol objects.

Each party holds only its own round record, its run metadata and the protocol configuration;
it performs no I/O. :meth:`Party.start` returns the first messages it sends,
:meth:`Party.receive` takes one message from the peer and returns what the party sends in
response (possibly nothing, while it waits for more). When :attr:`Party.done`, its
:attr:`Party.outcome` holds its final key or the abort. The in-process driver
(:func:`qrepeater.diqkd.pipeline.distill`), the networked nodes (:mod:`qrepeater.service.node`)
and the tests pass the very same :class:`~qrepeater.qkdpp.channel.Message` objects between the
very same classes; neither party ever reads the other's record, key or state.

Messages, in order (``A:`` Alice sends, ``B:`` Bob sends; both sides' first messages may cross):

1. **sync**: ``A, B: sync.digest`` - run id, round count, SHA-256 of the public ``(round,
   herald, time)`` columns, the setting distribution the record declares, and a fingerprint of
   the protocol configuration (including the agreed setting distribution). Any difference
   aborts (misaligned records raise :class:`~qrepeater.diqkd.records.RecordMismatchError`).
2. **sifting**: ``A, B: sift.settings`` - every round's setting (public in DI-QKD). Both send
   it together with the sync digest, and Bob also his test outcomes (below): none of these
   depends on the peer, so the opening costs one message delay.
3. **parameter estimation**: ``A, B: pe.test_outcomes``; both run the same acceptance test
   (:func:`qrepeater.diqkd.estimate.bell_test`: settings test against the agreed distribution,
   the importance-weighted CHSH score, the Tsirelson check) on the same public data, so both
   reach the same decision. With ``qber_source="sample"``: ``A: pe.sample_positions,
   pe.sample_bits``, ``B: pe.sample_bits`` (Bob's bits come through the message; the sampled
   positions leave the key and count as leakage). ``A: pe.qber_hint`` - the code-rate QBER
   estimate Alice computed (a function of public data). Both then evaluate the finite-key bound
   with no reconciliation leakage and abort alike if it leaves no key.
4. **reconciliation** (:mod:`qrepeater.qkdpp.reconciliation`): the ``ec.*`` messages of
   :class:`~qrepeater.qkdpp.reconciliation.AliceReconciler` and
   :class:`~qrepeater.qkdpp.reconciliation.BobReconciler`; after each of its steps a party sends
   a one-bit marker (``ctl.step``; Alice's carries whether another round follows), so the peer
   knows that step's messages are complete without knowing how many there are. Markers are
   counted in the public transcript, not as leakage (they are functions of ``ec.feedback``).
5. **verification** (:mod:`qrepeater.qkdpp.verify`): ``A: verify.seed, verify.hash``,
   ``B: verify.verdict``.
6. **key length**: both evaluate the finite-key bound with the leakage each has counted on the
   messages it saw (``ec.*``, ``verify.hash``, the QBER sample: the same on both sides).
7. **privacy amplification** (:mod:`qrepeater.qkdpp.amplify`): ``A: pa.seed``; Bob checks that
   Alice's output length equals his own bound.

Random choices (QBER sample positions, reconciliation seed, verification and PA seeds) are
Alice's, drawn from :mod:`secrets` unless a ``seed`` is given (tests), in named streams.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import time
import zlib
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from qrepeater._random import Seed, check_seed
from qrepeater.diqkd.estimate import BellTest, ChshStatistic, bell_test
from qrepeater.diqkd.keyrate import METHODS, FiniteKeyResult, Method, finite_key
from qrepeater.diqkd.records import RecordMismatchError
from qrepeater.diqkd.rounds import PartyRounds, RunMetadata, SettingDistribution
from qrepeater.errors import ParameterError, ProtocolAbort, QRepeaterError
from qrepeater.qkdpp.amplify import amplify_receive, amplify_send
from qrepeater.qkdpp.channel import Mailbox, Message, Party, pack_bits, unpack_bits
from qrepeater.qkdpp.entropy import binary_entropy
from qrepeater.qkdpp.reconciliation import (
    AliceReconciler,
    BobReconciler,
    ReconcileConfig,
    sample_bounds,
)
from qrepeater.qkdpp.verify import VerificationParams, verify_check, verify_confirm, verify_send

__all__ = [
    "Alice",
    "Bob",
    "DistillConfig",
    "Party",
    "PartyOutcome",
    "ProtocolParty",
    "block_seed",
    "config_fingerprint",
    "max_messages",
    "slice_rounds",
]

U8 = npt.NDArray[np.uint8]

_STEP_KIND = "ctl.step"
_SYNC_HEAD = struct.Struct(">Q32s")


def _default_reconcile_config() -> ReconcileConfig:
    """Frames of about 60,000 symbols decoded on up to two cores: a paper-sized key (about
    100,000 bits) becomes two frames decoded in parallel, at the same efficiency."""
    return ReconcileConfig(block_length=60_000, workers=max(1, min(2, os.cpu_count() or 1)))


@dataclass(frozen=True)
class DistillConfig:
    """Options of :func:`distill`, validated on construction.

    ``method``: finite-key bound (one of :data:`~qrepeater.diqkd.keyrate.METHODS`); ``eps``:
    total soundness error of the key (the authentication error is reported on top);
    ``qber_sample_fraction`` and ``min_qber_sample``: share (and least number) of key rounds
    disclosed to estimate the QBER;
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
            optional = name in ("qber_hint", "eps_settings")
            if (v is None and not optional) or (
                v is not None and (isinstance(v, bool) or not isinstance(v, int | float))
            ):
                raise ParameterError(f"{name} must be a number, got {v!r}")
        for name in ("min_qber_sample", "auth_key_bits"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ParameterError(f"{name} must be an integer, got {v!r}")
        if self.settings is not None and not isinstance(self.settings, SettingDistribution):
            raise ParameterError("settings must be a SettingDistribution or None")
        if not isinstance(self.reconcile, ReconcileConfig):
            raise ParameterError("reconcile must be a ReconcileConfig")
        if self.method not in METHODS:
            raise ParameterError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
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


# ---- helpers ------------------------------------------------------------------------------------


def _stream(seed: Seed, name: str) -> np.random.Generator | None:
    """Named random stream for tests; ``None`` means cryptographic randomness (:mod:`secrets`)."""
    if seed is None:
        return None
    if isinstance(seed, np.random.Generator):
        return seed
    check_seed(seed)
    if isinstance(seed, np.random.SeedSequence):
        raise ParameterError(
            "seed must be a non-negative integer or a Generator, got a SeedSequence"
        )
    key = zlib.crc32(name.encode())
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(key,)))


def block_seed(seed: int, block: int) -> int:
    """The seed of block ``block`` of a run distilled with ``seed`` (nodes and driver agree)."""
    ss = np.random.SeedSequence(int(seed), spawn_key=(int(block),))
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


def slice_rounds(rounds: PartyRounds, start: int, stop: int) -> PartyRounds:
    """Rounds ``start:stop`` of a record (a block)."""
    s = slice(start, stop)
    return PartyRounds(
        party=rounds.party,
        round=rounds.round[s],
        time_s=rounds.time_s[s],
        herald=rounds.herald[s],
        setting=rounds.setting[s],
        outcome=rounds.outcome[s],
    )


def _digest(rounds: PartyRounds, run_id: str) -> bytes:
    h = hashlib.sha256(run_id.encode())
    for a in (rounds.round, rounds.herald, rounds.time_s):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.digest()


def _dist_dict(d: SettingDistribution | None) -> dict[str, Any] | None:
    return None if d is None else d.to_dict()


def config_fingerprint(config: DistillConfig) -> str:
    """SHA-256 of everything in the configuration both parties must agree on."""
    rc = config.reconcile
    rc_public = {
        k: v
        for k, v in sorted(vars(rc).items())
        if k not in ("workers", "cache_dir", "executor", "decoder")
    }
    body = {
        "method": config.method,
        "eps": config.eps,
        "eps_settings": config.settings_eps,
        "qber_source": config.qber_source,
        "qber_sample_fraction": config.qber_sample_fraction,
        "min_qber_sample": config.min_qber_sample,
        "qber_hint": config.qber_hint,
        "settings": _dist_dict(config.agreed_settings()),
        "reconcile": repr(rc_public),
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def max_messages(config: DistillConfig) -> tuple[int, int]:
    """Upper bounds on the messages Alice and Bob send in one run (authentication budget).

    Sync, settings, outcomes: one each; QBER sample: Alice 2, Bob 1; hint: Alice 1;
    reconciliation: Alice at most 4 before the first round and 2 per round, Bob 2 per round,
    at most ``max_reveals + 1`` rounds; verification: Alice 2, Bob 1; PA: Alice 1.
    """
    rounds = config.reconcile.max_reveals + 1
    alice = 3 + 2 + 1 + (4 + 1) + 2 * rounds + 2 + 1
    bob = 3 + 1 + 2 * rounds + 1
    return alice, bob


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


# ---- outcome ------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PartyOutcome:
    """What one party ends with: its key (hidden from ``repr``) or the abort, and its public
    figures (``public``: the :class:`~qrepeater.diqkd.pipeline.DistillReport` fields it knows).

    ``error`` is a non-abort failure (misaligned records) that the driver re-raises.
    """

    party: Party
    aborted: bool
    abort_reason: str | None
    abort_message: str | None
    public: dict[str, Any]
    key: U8 | None = field(default=None, repr=False)
    error: QRepeaterError | None = field(default=None, repr=False)


# ---- the parties --------------------------------------------------------------------------------


class ProtocolParty:
    """Common machinery of :class:`Alice` and :class:`Bob` (see the module docstring)."""

    name: Party

    def __init__(
        self,
        rounds: PartyRounds,
        meta: RunMetadata,
        *,
        config: DistillConfig | None = None,
        seed: Seed = None,
    ) -> None:
        cfg = DistillConfig() if config is None else config
        if not isinstance(cfg, DistillConfig):
            raise ParameterError("config must be a DistillConfig")
        if not isinstance(rounds, PartyRounds) or not isinstance(meta, RunMetadata):
            raise ParameterError(f"{self.name}'s record must be PartyRounds with RunMetadata")
        if rounds.party != self.name:
            raise ParameterError(f"record of {rounds.party} given as {self.name}'s")
        if len(rounds) == 0:
            raise ParameterError("the records hold no rounds")
        _stream(seed, "validate")
        self.rounds = rounds
        self.meta = meta
        self.config = cfg
        self.seed = seed
        self.agreed = cfg.agreed_settings()
        self.eps_settings = cfg.settings_eps
        self._box = Mailbox(self.name)
        self._state: dict[str, Any] = {"sample_bits": 0, "leak": 0, "frames": 0}
        self._timings: dict[str, float] = {}
        self._stage_name: str | None = None
        self.stages: list[str] = []  # stages entered so far, in order (progress reports)
        self._mark = time.perf_counter()
        self._peer_declared: SettingDistribution | None = None
        self._config_fp = ""
        self._gen: Generator[None, None, None] | None = None
        self.outcome: PartyOutcome | None = None

    # ---- sans-IO interface ----------------------------------------------------------------------
    def __repr__(self) -> str:
        state = "done" if self.done else ("running" if self._gen else "new")
        return f"{type(self).__name__}(rounds={len(self.rounds)}, {state})"

    @property
    def done(self) -> bool:
        return self.outcome is not None

    @property
    def stage(self) -> str | None:
        """The stage the party is in (for progress reports)."""
        return self._stage_name

    def start(self) -> list[Message]:
        """Begin; returns the first messages to send."""
        if self._gen is not None:
            raise ParameterError(f"{self.name} has already started")
        self._gen = self._main()
        return self._advance()

    def receive(self, msg: Message) -> list[Message]:
        """Take one message from the peer; returns the messages to send in response."""
        if self._gen is None:
            raise ParameterError(f"{self.name} has not started")
        if self.done:
            return []
        try:
            self._box.deliver(msg)
        except ProtocolAbort as exc:
            self._finish_abort(exc)
            return self._box.drain()
        return self._advance()

    def abort(self, reason: str, message: str) -> None:
        """End the run from outside (the peer aborted, the link failed). No key results."""
        if not self.done:
            self._finish_abort(ProtocolAbort(reason, message))
            if self._gen is not None:
                self._gen.close()

    @property
    def public_bits(self) -> int:
        """Bits of every message this party has sent or received so far."""
        return self._box.bits_sent()

    def _advance(self) -> list[Message]:
        assert self._gen is not None
        self._mark = time.perf_counter()
        try:
            next(self._gen)
        except StopIteration:
            pass
        finally:
            self._charge()
        return self._box.drain()

    # ---- plumbing used by the protocol ----------------------------------------------------------
    def _main(self) -> Generator[None, None, None]:
        try:
            key = yield from self._protocol()
        except ProtocolAbort as exc:
            self._finish_abort(exc)
        except RecordMismatchError as exc:
            self._finish_abort(ProtocolAbort("sync", str(exc)), error=exc)
        except (ValueError, QRepeaterError) as exc:
            # malformed peer data that a stage rejects: never a key
            self._finish_abort(ProtocolAbort("protocol", f"{type(exc).__name__}: {exc}"))
        else:
            self._end_stage()
            self.outcome = PartyOutcome(
                party=self.name,
                aborted=False,
                abort_reason=None,
                abort_message=None,
                public=self._public(secret_bits=int(key.size)),
                key=key,
            )

    def _finish_abort(self, exc: ProtocolAbort, *, error: QRepeaterError | None = None) -> None:
        self._end_stage()
        self._state.update(getattr(exc, "details", None) or {})
        self.outcome = PartyOutcome(
            party=self.name,
            aborted=True,
            abort_reason=exc.reason,
            abort_message=str(exc),
            public=self._public(secret_bits=0),
            error=error,
        )

    def _charge(self) -> None:
        """Add the time since the last mark to the current stage (busy time, not waiting)."""
        now = time.perf_counter()
        if self._stage_name is not None:
            self._timings[self._stage_name] = (
                self._timings.get(self._stage_name, 0.0) + now - self._mark
            )
        self._mark = now

    def _begin(self, name: str) -> None:
        self._charge()
        self._stage_name = name
        self.stages.append(name)

    def _end_stage(self) -> None:
        self._charge()
        self._stage_name = None

    def _send(self, kind: str, payload: bytes, *, bits: int | None = None) -> None:
        self._box.send(self.name, kind, payload, bits=bits)

    def _need(self, n: int) -> Generator[None, None, None]:
        """Wait until ``n`` messages are in the inbox."""
        while len(self._box.inbox) < n:
            yield

    def _recv(self, kind: str) -> Generator[None, None, bytes]:
        yield from self._need(1)
        return self._box.receive(self.name, kind)

    def _until_step(self) -> Generator[None, None, None]:
        """Wait until the peer's next step marker has arrived."""
        while not any(m.kind == _STEP_KIND for m in self._box.inbox):
            yield

    def _take_step(self) -> bool:
        """Consume the peer's step marker (it must be next); returns its flag bit."""
        payload = self._box.receive(self.name, _STEP_KIND)
        return bool(unpack_bits(payload, 1)[0] == 1)

    def _step(self, flag: bool = False) -> None:
        payload, n = pack_bits([int(flag)])
        self._send(_STEP_KIND, payload, bits=n)

    # ---- protocol stages shared by both parties -------------------------------------------------
    def _open(self) -> None:
        """The opening messages, sent before anything is received (none depends on the peer):
        the sync digest, the settings and, for Bob, the test outcomes (his test rounds are
        those with ``Y < 2``, known from his own settings). All of it is public in the
        protocol anyway; sending it at once saves two message delays per block."""
        self._begin("sync")
        self._config_fp = config_fingerprint(self.config)
        info = {
            "run_id": self.meta.run_id,
            "declared": _dist_dict(self.meta.distribution),
            "config": self._config_fp,
        }
        head = _SYNC_HEAD.pack(len(self.rounds), _digest(self.rounds, self.meta.run_id))
        self._send("sync.digest", head + json.dumps(info, sort_keys=True).encode())
        s = self.rounds.setting
        if self.name == "alice":
            payload, nb = pack_bits(s)
        else:
            payload, nb = pack_bits(np.stack([s >> 1, s & 1], axis=1).ravel())
        self._send("sift.settings", payload, bits=nb)
        if self.name == "bob":
            payload, nb = pack_bits(self.rounds.outcome[s < 2])
            self._send("pe.test_outcomes", payload, bits=nb)

    def _sync(self) -> Generator[None, None, None]:
        self._open()
        msg = yield from self._recv("sync.digest")
        if len(msg) < _SYNC_HEAD.size:
            raise ProtocolAbort("sync", "malformed sync message")
        n, digest = _SYNC_HEAD.unpack_from(msg)
        try:
            peer = json.loads(msg[_SYNC_HEAD.size :])
            peer_run = str(peer["run_id"])
        except (ValueError, KeyError, TypeError):
            raise ProtocolAbort("sync", "malformed sync message") from None
        if peer_run != self.meta.run_id:
            raise RecordMismatchError(
                f"records belong to different runs ({peer_run!r} vs {self.meta.run_id!r})"
            )
        if n != len(self.rounds):
            raise RecordMismatchError(f"records differ in length ({n} vs {len(self.rounds)})")
        if digest != _digest(self.rounds, self.meta.run_id):
            raise RecordMismatchError("records differ in their round, herald or time columns")
        if peer.get("config") != self._config_fp:
            raise ProtocolAbort("config", "the parties run with different protocol configurations")
        declared = peer.get("declared")
        self._peer_declared = None if declared is None else SettingDistribution(**declared)

    def _sift(self) -> Generator[None, None, None]:
        self._begin("sifting")
        s = self.rounds.setting
        n = len(self.rounds)
        msg = yield from self._recv("sift.settings")
        if self.name == "alice":
            pairs = unpack_bits(msg, 2 * n).reshape(n, 2)
            y = (pairs[:, 0] << 1 | pairs[:, 1]).astype(np.uint8)
            x = s
        else:
            x = unpack_bits(msg, n).astype(np.uint8)
            y = s
        if np.any(y > 2) or np.any(x > 1):
            raise ProtocolAbort("sifting", "a setting lies outside X in {0, 1}, Y in {0, 1, 2}")
        self.x, self.y = x, y
        self.key_mask = np.asarray((x == 0) & (y == 2))
        self.test_mask = np.asarray(y < 2)
        self._state["key_rounds"] = int(self.key_mask.sum())
        self._state["test_rounds"] = int(self.test_mask.sum())

    def _estimate(self) -> Generator[None, None, BellTest]:
        self._begin("parameter_estimation")
        own = self.rounds.outcome[self.test_mask]
        if self.name == "alice":  # Bob sent his with the opening messages
            payload, nb = pack_bits(own)
            self._send("pe.test_outcomes", payload, bits=nb)
        msg = yield from self._recv("pe.test_outcomes")
        peer = unpack_bits(msg, int(self.test_mask.sum()))
        a_out, b_out = (own, peer) if self.name == "alice" else (peer, own)
        if self._state["key_rounds"] < 1 or self._state["test_rounds"] < 1:
            raise ProtocolAbort("parameter_estimation", "no key rounds or no test rounds")
        declared = (
            (self.meta.distribution, self._peer_declared)
            if self.name == "alice"
            else (self._peer_declared, self.meta.distribution)
        )
        bt = bell_test(
            x=self.x,
            y=self.y,
            test_a=a_out,
            test_b=b_out,
            agreed=self.agreed,
            declared=declared,
            eps=self.eps_settings,
        )
        est = bt.chsh
        self._state.update(
            chsh=est.score,
            chsh_std=est.per_pair_std,
            chsh_per_pair=est.per_pair,
            chsh_deviation=est.score_deviation,
            settings_test=bt.settings.to_dict(),
        )
        return bt

    def _bound(self, bt: BellTest, qber: float, leak_bits: float) -> FiniteKeyResult:
        """The finite-key bound over all key rounds; sampled bits are charged as leakage."""
        return finite_key(
            method=self.config.method,
            rounds=len(self.rounds),
            key_rounds=int(self._state["key_rounds"]),
            test_rounds=int(self._state["test_rounds"]),
            chsh=bt.bound_chsh,
            qber=min(qber, 0.4999),
            eps=self.config.eps - self.eps_settings,
            leak_ec_bits=leak_bits,
            setting_probabilities=self.agreed.probabilities(),
        )

    def _code_rate_bounds(self, q_hint: float) -> tuple[float | None, float | None]:
        """Confidence bounds the blind code rate plans for: a QBER from a disclosed sample is
        noisy, so both parties plan for its Clopper-Pearson upper bound and start from its lower
        bound (:func:`~qrepeater.qkdpp.reconciliation.sample_bounds`); both compute them from
        shared values only (the announced estimate and the sample size)."""
        k = int(self._state.get("sample_bits", 0))
        if k <= 0:
            return None, None
        return sample_bounds(q_hint, k, config=self.config.reconcile)

    def _early_bound(self, bt: BellTest, q_hint: float) -> FiniteKeyResult:
        if q_hint >= 0.5:
            raise ProtocolAbort("qber", f"estimated QBER {q_hint:.3f} leaves no key")
        fk0 = self._bound(bt, q_hint, float(self._state["sample_bits"]))
        self._state["fk"] = fk0
        if fk0.finite_key_bits <= 0:
            raise ProtocolAbort(
                "no_key",
                f"S = {bt.chsh.score:.4f} over {len(self.rounds):,} rounds gives no finite key "
                f"({self.config.method}, eps = {self.config.eps:g}) even without "
                "reconciliation leakage",
            )
        return fk0

    def _sample_size(self, n_key: int) -> int:
        cfg = self.config
        return min(n_key - 1, max(cfg.min_qber_sample, int(cfg.qber_sample_fraction * n_key)))

    def _leak(self) -> int:
        box = self._box
        return (
            box.bits_sent(prefix="ec.")
            + box.bits_sent(prefix="verify.hash")
            + int(self._state["sample_bits"])
        )

    def _final_length(self, bt: BellTest, qber: float, collision_bound: float) -> int:
        self._begin("key_length")
        leak = self._leak()
        self._state["leak"] = leak
        fk = self._bound(bt, qber, leak)
        self._state["fk"] = fk
        if collision_bound > fk.eps.correctness:
            # the final bound re-optimises its epsilon split: the hash actually used must still
            # be at least as strong as the correctness error that split assumes
            raise ProtocolAbort(
                "verification",
                f"verification collision bound {collision_bound:.2g} exceeds the "
                f"bound's eps_EC {fk.eps.correctness:.2g}",
            )
        n_key = int(self._state["key_rounds"]) - int(self._state["sample_bits"])
        length = min(fk.finite_key_bits, n_key)
        if length <= 0:
            raise ProtocolAbort(
                "no_key",
                f"after reconciliation (leak {leak} bits, QBER {qber:.4f}) the finite key is empty",
            )
        return length

    def _public(self, *, secret_bits: int) -> dict[str, Any]:
        st = self._state
        fk: FiniteKeyResult | None = st.get("fk")
        soundness = self.config.eps - self.eps_settings
        eps = fk.eps.to_dict() if fk is not None else {"soundness": soundness}
        eps = {
            **eps,
            "verification_collision_bound": st.get("verification_collision_bound"),
            "settings_test": self.eps_settings,
        }
        return {
            "method": self.config.method,
            "rounds": len(self.rounds),
            "key_rounds": st.get("key_rounds", 0),
            "test_rounds": st.get("test_rounds", 0),
            "chsh": st.get("chsh"),
            "chsh_std": st.get("chsh_std"),
            "chsh_per_pair": st.get("chsh_per_pair"),
            "chsh_deviation": st.get("chsh_deviation"),
            "settings_test": st.get("settings_test"),
            "qber_hint": st.get("qber_hint"),
            "qber": st.get("qber"),
            "sample_bits": st["sample_bits"],
            "leak_bits": st["leak"],
            "ec_efficiency": st.get("ec_efficiency"),
            "frames": st["frames"],
            "secret_bits": secret_bits,
            "eps": eps,
            "finite_key": fk.to_dict() if fk is not None else None,
            "public_bits": self._box.bits_sent(),
            "seconds": dict(self._timings),
        }

    def _sifted_key(self) -> Generator[None, None, tuple[BellTest, U8, float | None]]:
        """Sync, sift and the Bell test; then this party's sifted key and the QBER known
        without disclosing key bits (the configured hint, or the prediction from the announced
        test correlators), ``None`` when a sample must be disclosed."""
        yield from self._sync()
        yield from self._sift()
        bt = yield from self._estimate()
        key = self.rounds.outcome[self.key_mask].astype(np.uint8)
        q_hint = self.config.qber_hint
        if q_hint is None and self.config.qber_source == "tests":
            q_hint = _qber_from_tests(bt.chsh, self.meta)
        return bt, key, q_hint

    def _protocol(self) -> Generator[None, None, U8]:  # pragma: no cover - abstract
        raise NotImplementedError
        yield


class Alice(ProtocolParty):
    """Alice: the side that draws the public random choices and whose key Bob corrects to."""

    name: Party = "alice"

    def _protocol(self) -> Generator[None, None, U8]:
        cfg = self.config
        bt, key, q_hint = yield from self._sifted_key()
        n_key = key.size
        sample = np.zeros(n_key, dtype=bool)
        if q_hint is None:
            k = self._sample_size(n_key)
            gen = _stream(self.seed, "qber_sample") or np.random.default_rng(
                np.random.SeedSequence()  # fresh OS entropy: positions independent of the data
            )
            idx = np.sort(gen.choice(n_key, size=k, replace=False))
            self._send("pe.sample_positions", idx.astype(">u4").tobytes())
            pa, na = pack_bits(key[idx])
            self._send("pe.sample_bits", pa, bits=na)
            msg = yield from self._recv("pe.sample_bits")
            peer_bits = unpack_bits(msg, k)
            sample[idx] = True
            # a zero-error sample still gets a usable, slightly pessimistic rate
            q_hint = max(int(np.sum(key[idx] != peer_bits)), 1) / k
            self._state["sample_bits"] = k
        self._state["qber_hint"] = q_hint
        self._send("pe.qber_hint", struct.pack(">d", q_hint))
        self._early_bound(bt, q_hint)

        self._begin("reconciliation")
        ka = key[~sample]
        q_upper, q_start = self._code_rate_bounds(q_hint)
        rec = AliceReconciler(
            ka,
            qber=q_hint,
            channel=self._box,
            config=cfg.reconcile,
            rng=_stream(self.seed, "reconciliation") or np.random.default_rng(),
            qber_upper=q_upper,
            qber_start=q_start,
        )
        self._state["frames"] = rec.plan.frames
        rec.send_syndromes()
        self._step()
        while True:
            yield from self._until_step()
            more = rec.handle_feedback()
            if self._take_step():
                raise ProtocolAbort("reconciliation", "Bob's step marker is malformed")
            self._step(more)
            if not more:
                break
        if rec.failed:
            raise ProtocolAbort(
                "reconciliation",
                f"{len(rec.failed)} of {rec.plan.frames} frames could not be reconciled",
            )

        fk0: FiniteKeyResult = self._state["fk"]
        self._begin("verification")
        vparams = VerificationParams(eps_ec=fk0.eps.correctness)
        verified = verify_send(self._box, ka, params=vparams, rng=_stream(self.seed, "verify"))
        yield from self._need(1)
        verify_confirm(self._box)
        self._state["verification_collision_bound"] = verified.collision_bound

        length = self._final_length(bt, q_hint, verified.collision_bound)
        self._begin("privacy_amplification")
        final = amplify_send(self._box, ka, output_bits=length, rng=_stream(self.seed, "pa"))
        return final.key


class Bob(ProtocolParty):
    """Bob: corrects his key to Alice's; knows the error rate he corrected."""

    name: Party = "bob"

    def _protocol(self) -> Generator[None, None, U8]:
        cfg = self.config
        bt, key, explicit = yield from self._sifted_key()
        n_key = key.size
        sample = np.zeros(n_key, dtype=bool)
        if explicit is None:
            k = self._sample_size(n_key)
            msg = yield from self._recv("pe.sample_positions")
            if len(msg) != 4 * k:
                raise ProtocolAbort("parameter_estimation", "malformed QBER sample positions")
            idx = np.frombuffer(msg, dtype=">u4").astype(np.int64)
            if np.any(idx >= n_key) or np.any(np.diff(idx) <= 0):
                raise ProtocolAbort("parameter_estimation", "invalid QBER sample positions")
            alice_bits = unpack_bits((yield from self._recv("pe.sample_bits")), k)
            pb, nb = pack_bits(key[idx])
            self._send("pe.sample_bits", pb, bits=nb)
            sample[idx] = True
            self._state["sample_bits"] = k
            explicit = max(int(np.sum(key[idx] != alice_bits)), 1) / k
        msg = yield from self._recv("pe.qber_hint")
        if len(msg) != 8:
            raise ProtocolAbort("parameter_estimation", "malformed QBER hint")
        (q_hint,) = struct.unpack(">d", msg)
        if not (math.isfinite(q_hint) and 0.0 < q_hint < 1.0):
            raise ProtocolAbort("parameter_estimation", "QBER hint out of range")
        if abs(q_hint - explicit) > 1e-12:
            raise ProtocolAbort("parameter_estimation", "Alice's QBER hint differs from Bob's")
        self._state["qber_hint"] = q_hint
        self._early_bound(bt, q_hint)

        self._begin("reconciliation")
        kb = key[~sample]
        q_upper, q_start = self._code_rate_bounds(q_hint)
        rec = BobReconciler(
            kb,
            qber=q_hint,
            channel=self._box,
            config=cfg.reconcile,
            qber_upper=q_upper,
            qber_start=q_start,
        )
        self._state["frames"] = rec.plan.frames
        yield from self._until_step()
        rec.receive_syndromes()
        self._take_step()
        while True:
            rec.decode_round()
            self._step()
            yield from self._until_step()
            more = rec.receive_reveals()
            if self._take_step() != more:
                raise ProtocolAbort("reconciliation", "parties disagree on the protocol state")
            if not more:
                break
        if rec.failed:
            raise ProtocolAbort(
                "reconciliation",
                f"{len(rec.failed)} of {rec.plan.frames} frames could not be reconciled",
            )
        corrected = rec.corrected
        errors = int(np.sum(corrected != kb))
        qber = errors / kb.size
        self._state["qber"] = qber
        h = binary_entropy(qber)
        ec_leak = self._box.bits_sent(prefix="ec.")
        self._state["ec_efficiency"] = ec_leak / (kb.size * h) if h > 0 else None

        fk0: FiniteKeyResult = self._state["fk"]
        self._begin("verification")
        vparams = VerificationParams(eps_ec=fk0.eps.correctness)
        yield from self._need(2)
        verified = verify_check(self._box, corrected, params=vparams)
        self._state["verification_collision_bound"] = verified.collision_bound

        length = self._final_length(bt, qber, verified.collision_bound)
        self._begin("privacy_amplification")
        yield from self._need(1)
        final = amplify_receive(self._box, corrected, output_bits=length)
        return final.key
