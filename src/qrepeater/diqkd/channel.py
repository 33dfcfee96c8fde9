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
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from qrepeater.errors import ProtocolAbort

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
        return sum(
            m.bits
            for m in self.log
            if (prefix is None or m.kind.startswith(prefix))
            and (sender is None or m.sender == sender)
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
