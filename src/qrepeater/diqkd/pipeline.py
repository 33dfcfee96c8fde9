"""From recorded rounds to identical secret keys: the in-process driver of the two parties.

The protocol itself lives in :mod:`qrepeater.diqkd.parties`: :class:`~qrepeater.diqkd.parties.Alice`
and :class:`~qrepeater.diqkd.parties.Bob` are sans-IO objects, each holding only its own record,
that consume the peer's messages and produce their own (sync, sifting, parameter estimation with
the settings test and the Tsirelson check, reconciliation, verification, key length, privacy
amplification; see that module for the message list). :func:`distill` is a thin driver: it
passes each message through a :class:`~qrepeater.qkdpp.channel.Channel` (by default an
:class:`~qrepeater.qkdpp.channel.AuthenticatedChannel`, Wegman-Carter tags, over a fresh
pre-shared key) to the other party, until both are done. The networked nodes
(:mod:`qrepeater.service.node`) run the same objects over TCP.

The report merges what the parties know: the figures both compute alike come from Alice, the
error rate Bob corrected (``qber``, ``ec_efficiency``, the final bound evaluated with it) from
Bob; ``public_bits`` and the authentication figures come from the channel; ``seconds`` adds up
both parties' busy time per stage. The authentication key consumed and ``eps_auth`` are
reported, and ``eps_auth`` is added to the soundness error. A run that aborts (Bell violation
too low, settings test failed, QBER too high, verification or authentication failed) returns a
report with ``aborted=True`` and no key material; misaligned records raise
:class:`~qrepeater.diqkd.records.RecordMismatchError`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from qrepeater._random import Seed
from qrepeater.diqkd.parties import Alice, Bob, DistillConfig, PartyOutcome, ProtocolParty
from qrepeater.diqkd.parties import _stream as _named_stream
from qrepeater.diqkd.rounds import PartyRounds, RunMetadata
from qrepeater.errors import ParameterError, ProtocolAbort
from qrepeater.qkdpp.channel import AuthenticatedChannel, Channel, Message, Party

U8 = npt.NDArray[np.uint8]

__all__ = ["DistillConfig", "DistillReport", "DistillResult", "Party", "distill", "exchange"]


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


def exchange(
    alice: ProtocolParty,
    bob: ProtocolParty,
    channel: Channel,
    *,
    progress: Callable[[str], None] | None = None,
) -> ProtocolParty | None:
    """Pass messages between two started-or-new parties over ``channel`` until both are done.

    A message the channel rejects (authentication) aborts the receiver; when one party aborts,
    the other is aborted too (a node would learn it from the peer's abort frame or the closed
    connection). Returns the party that aborted first, or ``None``.
    """
    parties: dict[Party, ProtocolParty] = {"alice": alice, "bob": bob}
    queue: deque[Message] = deque()
    first: ProtocolParty | None = None
    reported = 0
    for p in (alice, bob):
        queue.extend(p.start())
    while True:
        for p in (alice, bob):
            if first is None and p.done and p.outcome is not None and p.outcome.aborted:
                first = p
        if first is not None:
            other = bob if first is alice else alice
            other.abort(
                "peer_abort",
                f"{first.name} aborted ({first.outcome.abort_reason if first.outcome else '?'})",
            )
            return first
        if progress is not None:
            for name in alice.stages[reported:]:
                progress(name)
            reported = len(alice.stages)
        if not queue:
            break
        msg = queue.popleft()
        receiver = parties["bob" if msg.sender == "alice" else "alice"]
        channel.send(msg.sender, msg.kind, msg.payload, bits=msg.bits)
        try:
            payload = channel.receive(receiver.name, msg.kind)
        except ProtocolAbort as exc:
            receiver.abort(exc.reason, str(exc))
            continue
        queue.extend(receiver.receive(Message(msg.sender, msg.kind, payload, msg.bits)))
    for p in (alice, bob):
        if not p.done:  # both wait for a message nobody sends: a protocol bug or a lost message
            p.abort("channel", f"{p.name} is waiting for a message that never came")
            first = first or p
    return first


def _merge(
    a: PartyOutcome, b: PartyOutcome, first: ProtocolParty | None, channel: Channel
) -> DistillReport:
    rep: dict[str, Any] = dict(a.public)
    for name in ("qber", "ec_efficiency", "finite_key"):
        if b.public.get(name) is not None:
            rep[name] = b.public[name]
    seconds = dict(a.public["seconds"])
    for k, v in b.public["seconds"].items():
        seconds[k] = seconds.get(k, 0.0) + v
    rep["seconds"] = seconds
    auth_bits, eps_auth = 0, 0.0
    if isinstance(channel, AuthenticatedChannel):
        # both parties hold the same pool; one endpoint counts its pads in both directions
        auth_bits = channel.report("alice").key_bits_consumed
        eps_auth = channel.eps_auth
    eps = dict(rep["eps"])
    soundness = float(eps.get("soundness", 0.0))
    eps["authentication"] = eps_auth
    eps["total"] = soundness + float(eps.get("settings_test") or 0.0) + eps_auth
    rep["eps"] = eps
    rep["auth_key_bits"] = auth_bits
    rep["public_bits"] = channel.bits_sent()
    aborted = first is not None
    if aborted:
        assert first is not None
        assert first.outcome is not None
        rep.update(
            aborted=True,
            abort_reason=first.outcome.abort_reason,
            abort_message=first.outcome.abort_message,
            secret_bits=0,
        )
    else:
        rep.update(aborted=False, abort_reason=None, abort_message=None)
    return DistillReport(**rep)


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
    """Run the post-processing of one DI-QKD run with both parties in this process.

    ``seed`` makes the public random choices (QBER sample, reconciliation seed, verification and
    PA seeds, authentication key) reproducible; leave it ``None`` for real keys, which then use
    :mod:`secrets`. ``channel`` defaults to an :class:`AuthenticatedChannel` over a fresh
    pre-shared key of ``config.auth_key_bits``. ``progress`` is called with each stage name.
    Bad records raise; protocol failures return an aborted report.
    """
    cfg = config or DistillConfig()
    if not isinstance(cfg, DistillConfig):
        raise ParameterError("config must be a DistillConfig")
    a = Alice(alice, alice_meta, config=cfg, seed=seed)
    b = Bob(bob, bob_meta, config=cfg, seed=seed)
    if channel is None:
        channel = AuthenticatedChannel.with_shared_key(
            cfg.auth_key_bits, rng=_named_stream(seed, "authentication")
        )
    first = exchange(a, b, channel, progress=progress)
    assert a.outcome is not None
    assert b.outcome is not None
    for o in (a.outcome, b.outcome):
        if o.error is not None:
            raise o.error
    report = _merge(a.outcome, b.outcome, first, channel)
    if first is not None:
        return DistillResult(report=report)
    ka, kb = a.outcome.key, b.outcome.key
    if ka is None or kb is None or not np.array_equal(ka, kb):  # pragma: no cover - verified
        raise ProtocolAbort("verification", "final keys differ")
    return DistillResult(report=report, alice_key=ka, bob_key=kb)
