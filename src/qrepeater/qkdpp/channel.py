"""Public classical channel between Alice and Bob.

Alice and Bob are separate parties: the post-processing stages only ever exchange
:class:`Message` objects through a channel, and the channel counts every bit sent, so that the
leakage of error correction (and everything else that is public) is accounted for from what was
actually transmitted rather than from a formula.

This module defines the interface used by every stage:

* ``send(sender, kind, payload, bits=...)`` puts a message on the wire (FIFO per direction);
* ``receive(receiver, kind)`` takes the next message addressed to ``receiver`` and checks that it
  is of the expected kind (a protocol that receives something unexpected aborts);
* ``bits_sent(prefix=..., sender=...)`` sums the information bits of the messages sent so far.

:class:`PublicChannel` is the unauthenticated reference implementation (useful for tests of one
stage); the authenticated channel used by the pipeline lives beside it and keeps the same API.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from qrepeater.errors import AuthenticationError, ParameterError, ProtocolAbort
from qrepeater.qkdpp.auth import AuthParams, AuthReport, KeyPool, WegmanCarterMAC

Party = Literal["alice", "bob"]
PARTIES: tuple[Party, Party] = ("alice", "bob")


def other(party: Party) -> Party:
    """The party that is not ``party``."""
    return "bob" if party == "alice" else "alice"


@dataclass(frozen=True)
class Message:
    """One public message. ``bits`` is the information content counted as public leakage."""

    sender: Party
    kind: str
    payload: bytes
    bits: int


class Channel(Protocol):
    """What every post-processing stage needs from a classical channel."""

    def send(self, sender: Party, kind: str, payload: bytes, *, bits: int | None = None) -> None:
        """Send ``payload``; ``bits`` (default ``8*len(payload)``) is what is counted."""

    def receive(self, receiver: Party, kind: str) -> bytes:
        """Receive the next message for ``receiver``; abort if it is not of ``kind``."""

    def bits_sent(self, *, prefix: str | None = None, sender: Party | None = None) -> int:
        """Total counted bits of messages sent, optionally filtered by kind prefix and sender."""


class PublicChannel:
    """In-process, unauthenticated, loss-free public channel that counts every bit sent."""

    def __init__(self) -> None:
        self._queues: dict[Party, deque[Message]] = {p: deque() for p in PARTIES}
        self.log: list[Message] = []

    def send(self, sender: Party, kind: str, payload: bytes, *, bits: int | None = None) -> None:
        nbits = 8 * len(payload) if bits is None else int(bits)
        if nbits < 0 or nbits > 8 * len(payload):
            raise ValueError(f"bits={nbits} does not fit a payload of {len(payload)} bytes")
        msg = Message(sender=sender, kind=kind, payload=bytes(payload), bits=nbits)
        self.log.append(msg)
        self._queues[other(sender)].append(msg)

    def receive(self, receiver: Party, kind: str) -> bytes:
        queue = self._queues[receiver]
        if not queue:
            raise ProtocolAbort("channel", f"{receiver} expected a '{kind}' message, none arrived")
        msg = queue.popleft()
        if msg.kind != kind:
            raise ProtocolAbort(
                "channel", f"{receiver} expected a '{kind}' message, got '{msg.kind}'"
            )
        return msg.payload

    def bits_sent(self, *, prefix: str | None = None, sender: Party | None = None) -> int:
        return count_bits(self.log, prefix=prefix, sender=sender)


class Mailbox:
    """One party's end of a sans-IO channel: what the party sends goes to :attr:`outbox`, what the
    caller delivers (:meth:`deliver`) is received in order. Implements :class:`Channel` for that
    one party, so the channel-based halves (``verify_send``, ``AliceReconciler`` ...) run
    unchanged inside a sans-IO party object. ``log`` holds every message sent *and* received,
    so ``bits_sent`` counts the bits of both directions that this party has seen (the public
    transcript, as far as it knows it).
    """

    def __init__(self, party: Party) -> None:
        if party not in PARTIES:
            raise ParameterError(f"unknown party {party!r}")
        self.party: Party = party
        self.inbox: deque[Message] = deque()
        self.outbox: list[Message] = []
        self.log: list[Message] = []

    def send(self, sender: Party, kind: str, payload: bytes, *, bits: int | None = None) -> None:
        if sender != self.party:
            raise ParameterError(f"{self.party}'s mailbox cannot send as {sender}")
        nbits = 8 * len(payload) if bits is None else int(bits)
        if nbits < 0 or nbits > 8 * len(payload):
            raise ValueError(f"bits={nbits} does not fit a payload of {len(payload)} bytes")
        msg = Message(sender=sender, kind=kind, payload=bytes(payload), bits=nbits)
        self.outbox.append(msg)
        self.log.append(msg)

    def deliver(self, msg: Message) -> None:
        """Hand the party a message from its peer."""
        if msg.sender != other(self.party):
            raise ParameterError(f"{self.party} only receives messages from its peer")
        if not 0 <= msg.bits <= 8 * len(msg.payload):
            raise ProtocolAbort("channel", "message declares more bits than its payload holds")
        self.inbox.append(msg)

    def receive(self, receiver: Party, kind: str) -> bytes:
        if receiver != self.party:
            raise ParameterError(f"{self.party}'s mailbox cannot receive for {receiver}")
        if not self.inbox:
            raise ProtocolAbort("channel", f"{receiver} expected a '{kind}' message, none arrived")
        msg = self.inbox.popleft()
        self.log.append(msg)
        if msg.kind != kind:
            raise ProtocolAbort(
                "channel", f"{receiver} expected a '{kind}' message, got '{msg.kind}'"
            )
        return msg.payload

    def drain(self) -> list[Message]:
        """Take the messages sent since the last call."""
        out, self.outbox = self.outbox, []
        return out

    def bits_sent(self, *, prefix: str | None = None, sender: Party | None = None) -> int:
        return count_bits(self.log, prefix=prefix, sender=sender)


def count_bits(
    log: list[Message], *, prefix: str | None = None, sender: Party | None = None
) -> int:
    """Counted bits of the logged messages, optionally filtered by kind prefix and sender."""
    return sum(
        m.bits
        for m in log
        if (prefix is None or m.kind.startswith(prefix)) and (sender is None or m.sender == sender)
    )


def pack_bits(bits: npt.ArrayLike) -> tuple[bytes, int]:
    """Pack a 0/1 array into bytes (``numpy.packbits``, big-endian); returns (payload, n_bits)."""
    arr = np.asarray(bits, dtype=np.uint8).ravel()
    return np.packbits(arr).tobytes(), int(arr.size)


def unpack_bits(payload: bytes, n_bits: int) -> npt.NDArray[np.uint8]:
    """Inverse of :func:`pack_bits`."""
    if 8 * len(payload) < n_bits:
        raise ProtocolAbort("channel", "message shorter than its declared bit length")
    return np.unpackbits(np.frombuffer(payload, dtype=np.uint8), count=n_bits)


# ------------------------------------------------------------------------------------------------
# Authenticated channel (Wegman-Carter, see qrepeater.qkdpp.auth)


@dataclass(frozen=True)
class Frame:
    """A message as it travels on the wire: the message, its direction counter and its tag.

    The receiver rejects a frame whose ``counter`` is not the next one it expects, and in any case
    authenticates against its own counter, so rewriting ``counter`` gains an adversary nothing.
    """

    sender: Party
    kind: str
    payload: bytes
    bits: int
    counter: int
    tag: bytes


Adversary = Callable[[Frame], Iterable[Frame]]
"""Test hook: sees every frame sent and returns what is put on the wire instead (nothing to drop
it, a modified frame to tamper with it, several to replay or to release held-back frames)."""


class _Endpoint:
    """One party's authentication state: a MAC for each direction and an abort flag."""

    def __init__(self, party: Party, pool: KeyPool, params: AuthParams) -> None:
        self.party = party
        self.pool = pool
        w = params.tag_words
        # Both parties draw in the same order: hash keys a->b, b->a, then the two pad pools.
        keys_ab = [pool.take(64, purpose="hash key alice->bob") for _ in range(w)]
        keys_ba = [pool.take(64, purpose="hash key bob->alice") for _ in range(w)]
        ab_slots, ba_slots = params.pad_slots(pool.remaining_bits + 2 * params.hash_key_bits)
        pads_ab = pool.split(ab_slots * params.tag_bits, purpose="pads alice->bob")
        pads_ba = pool.split(ba_slots * params.tag_bits, purpose="pads bob->alice")
        mac_ab = WegmanCarterMAC(keys_ab, pads_ab, params=params)
        mac_ba = WegmanCarterMAC(keys_ba, pads_ba, params=params)
        self.outgoing, self.incoming = (mac_ab, mac_ba) if party == "alice" else (mac_ba, mac_ab)
        self.hash_key_bits = 2 * params.hash_key_bits
        self.aborted: str | None = None


class AuthenticatedChannel:
    """Public channel whose every message carries a Wegman-Carter tag (same API as
    :class:`PublicChannel`).

    Alice's and Bob's :class:`~qrepeater.qkdpp.auth.KeyPool` objects must hold the same bits. At
    construction each party draws ``64 w`` bits of hash key per direction and splits the rest of
    its pool into Alice->Bob and Bob->Alice pads (``params.alice_share``). ``receive`` raises
    :class:`~qrepeater.errors.AuthenticationError` on a tampered, reordered, replayed, dropped or
    injected message and the receiving party then refuses all further traffic (abort). Pad
    exhaustion raises the same error.

    ``adversary`` (tests) rewrites frames in flight; ``in_flight`` exposes the queues.
    ``bits_sent`` counts payload bits only, as in :class:`PublicChannel` (tags are one-time padded
    and carry no information about the key); ``tag_bits_sent`` counts the tags.
    """

    def __init__(
        self,
        alice_pool: KeyPool,
        bob_pool: KeyPool,
        *,
        params: AuthParams | None = None,
        adversary: Adversary | None = None,
    ) -> None:
        if alice_pool is bob_pool:
            raise ParameterError("Alice and Bob need separate KeyPool objects (use .copy())")
        self.params = AuthParams() if params is None else params
        self.adversary = adversary
        self.log: list[Message] = []
        self.in_flight: dict[Party, deque[Frame]] = {p: deque() for p in PARTIES}
        self._endpoints: dict[Party, _Endpoint] = {
            "alice": _Endpoint("alice", alice_pool, self.params),
            "bob": _Endpoint("bob", bob_pool, self.params),
        }

    @classmethod
    def with_shared_key(
        cls,
        n_bits: int,
        *,
        params: AuthParams | None = None,
        rng: np.random.Generator | None = None,
        adversary: Adversary | None = None,
    ) -> AuthenticatedChannel:
        """Channel over a fresh pre-shared key of ``n_bits`` (:mod:`secrets`; ``rng`` in tests)."""
        alice, bob = KeyPool.shared_pair(n_bits, rng=rng)
        return cls(alice, bob, params=params, adversary=adversary)

    def __repr__(self) -> str:
        return (
            f"AuthenticatedChannel(messages={len(self.log)}, tag_bits={self.params.tag_bits}, "
            f"eps_auth={self.eps_auth:.3g})"
        )

    def send(self, sender: Party, kind: str, payload: bytes, *, bits: int | None = None) -> None:
        if sender not in PARTIES:
            raise ParameterError(f"unknown party {sender!r}")
        nbits = 8 * len(payload) if bits is None else int(bits)
        if nbits < 0 or nbits > 8 * len(payload):
            raise ValueError(f"bits={nbits} does not fit a payload of {len(payload)} bytes")
        ep = self._endpoints[sender]
        if ep.aborted is not None:
            raise AuthenticationError(f"{sender} has aborted ({ep.aborted}); nothing is sent")
        payload = bytes(payload)
        counter, tag = ep.outgoing.tag(sender=sender, kind=kind, bits=nbits, payload=payload)
        self.log.append(Message(sender=sender, kind=kind, payload=payload, bits=nbits))
        frame = Frame(sender, kind, payload, nbits, counter, tag)
        frames = [frame] if self.adversary is None else list(self.adversary(frame))
        self.in_flight[other(sender)].extend(frames)

    def _fail(self, ep: _Endpoint, reason: str) -> AuthenticationError:
        ep.aborted = reason
        return AuthenticationError(reason)

    def receive(self, receiver: Party, kind: str) -> bytes:
        if receiver not in PARTIES:
            raise ParameterError(f"unknown party {receiver!r}")
        ep = self._endpoints[receiver]
        if ep.aborted is not None:
            raise AuthenticationError(f"{receiver} has aborted ({ep.aborted})")
        sender = other(receiver)
        j = ep.incoming.counter
        queue = self.in_flight[receiver]
        if not queue:
            raise self._fail(ep, f"{receiver} expected message #{j} from {sender}; none arrived")
        frame = queue.popleft()
        if frame.sender != sender or not 0 <= frame.bits <= 8 * len(frame.payload):
            raise self._fail(ep, f"{receiver} received a malformed frame in place of #{j}")
        if frame.counter != j:
            raise self._fail(
                ep,
                f"{receiver} expected message #{j} from {sender}, got #{frame.counter} "
                "(replayed, reordered or dropped)",
            )
        try:
            ep.incoming.verify(
                sender=sender,
                kind=frame.kind,
                bits=frame.bits,
                payload=frame.payload,
                tag=frame.tag,
            )
        except AuthenticationError as exc:
            raise self._fail(ep, str(exc)) from None
        except ParameterError as exc:
            raise self._fail(ep, f"malformed frame #{j}: {exc}") from None
        if frame.kind != kind:
            ep.aborted = f"unexpected '{frame.kind}'"
            raise ProtocolAbort(
                "channel", f"{receiver} expected a '{kind}' message, got '{frame.kind}'"
            )
        return frame.payload

    def bits_sent(self, *, prefix: str | None = None, sender: Party | None = None) -> int:
        return count_bits(self.log, prefix=prefix, sender=sender)

    def tag_bits_sent(self, *, sender: Party | None = None) -> int:
        """Tag bits put on the wire by honest senders."""
        return sum(
            self._endpoints[p].outgoing.counter * self.params.tag_bits
            for p in PARTIES
            if sender is None or p == sender
        )

    @property
    def eps_auth(self) -> float:
        """Bound on the probability that any verification so far accepted a forgery."""
        checks = sum(ep.incoming.counter for ep in self._endpoints.values())
        return self.params.eps_auth(checks)

    def report(self, party: Party) -> AuthReport:
        """Authentication bookkeeping of ``party``'s endpoint."""
        ep = self._endpoints[party]
        tb = self.params.tag_bits
        return AuthReport(
            party=party,
            tags_sent=ep.outgoing.counter,
            tags_verified=ep.incoming.counter,
            tag_bits=tb,
            key_bits_consumed=ep.hash_key_bits + tb * (ep.outgoing.counter + ep.incoming.counter),
            pad_bits_left_send=ep.outgoing.pad_bits_left,
            pad_bits_left_receive=ep.incoming.pad_bits_left,
            forge_probability=self.params.forge_probability,
            eps_auth=self.params.eps_auth(ep.incoming.counter),
        )
