"""Authenticated frames for a networked link between two QKD nodes (sans-IO).

A node and its peer share a pre-shared authentication key pool (:func:`write_auth_key_pair`
makes the two identical files, one for each site). :class:`LinkCodec` turns a party's messages
into frames and frames back into messages; it performs no I/O on the network (the asyncio
transport is :mod:`qrepeater.qkdpp.transport`), only the durable update of its pool position.

Wire format of one frame (all integers big-endian)::

    length u32 | version u8 | sender u8 | session 16 B | seq u64 | bits u64 |
    kind_len u8 | kind | payload_len u32 | payload | tag (8 w bytes)

``length`` counts everything after itself and is checked against ``max_frame_bytes`` before
the body is read. The tag is Wegman-Carter (:mod:`qrepeater.qkdpp.auth`; Wegman & Carter,
JCSS 22, 265 (1981)): ``tag = (h_k1(AD) | ... | h_kw(AD)) XOR pad_seq`` with ``AD =
authenticated_data(sender, seq, kind, bits, payload, context=session)``, so sender, sequence
number, session, kind, declared bit count and payload are all authenticated.

Pool layout (both sites derive it from the file alone): ``w`` 64-bit hash keys Alice->Bob,
``w`` Bob->Alice, then the pads, the first ``alice_share`` of them for Alice->Bob. The sequence
number of a frame is the index of its pad in its direction.

Never reusing a pad, also across restarts (:class:`PoolPosition`): the sender makes an index
durable (write, fsync, rename; reserved in aligned blocks of 32) *before* it computes and sends
a tag with it, so no pad ever tags two messages. The receiver makes ``seq + 1`` durable after
the tag checked out and before the message is used, so no frame is accepted twice. A failed
check moves nothing (a forged frame with a far sequence number must not burn the pool); it is
a forgery attempt, and every attempt, passed or failed, is counted for ``eps_auth`` (the union
bound over verification attempts: each succeeds with probability at most
:attr:`~qrepeater.qkdpp.auth.AuthParams.forge_probability`, since a failed check only excludes
one of ``2^(64 w)`` pad values). A frame
whose ``seq`` is below the receiver's durable position (replayed, or reordered) is rejected
without touching the pool; within a session the sequence numbers must be consecutive (a dropped
frame shows as a gap); the first frame of a session may skip ahead (pads the sender reserved
before a crash and never used), which costs pool bits but never reuses one.

Sessions: the connecting side (Bob) opens with a ``link.hello`` frame under a fresh 16-byte
nonce ``n_B``; the listening side answers with its own hello carrying a fresh ``n_A``; every
later frame of the session, in both directions, is bound to ``sid = SHA-256(n_B | n_A)[:16]``.
Frames recorded in an earlier session therefore fail in a new one even where their sequence
numbers would fit. Every failure raises :class:`~qrepeater.errors.AuthenticationError` (or
:class:`~qrepeater.errors.TransportError` for a malformed or oversized frame) and the codec
refuses all further traffic: the caller aborts the block and drops the connection.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from qrepeater._io import atomic_write_bytes
from qrepeater.errors import AuthenticationError, ParameterError, TransportError
from qrepeater.qkdpp.auth import AuthParams, PolyHash64, authenticated_data
from qrepeater.qkdpp.channel import Message, Party

__all__ = [
    "HELLO_KIND",
    "LINK_PARAMS",
    "AuthPool",
    "LinkCodec",
    "PoolPosition",
    "write_auth_key_pair",
]

HELLO_KIND = "link.hello"
LINK_PARAMS = AuthParams(tag_words=2, max_payload_bytes=1 << 24)
"""Default parameters of the networked link: two 64-bit words per tag, so a forgery attempt on
a frame of at most 16 MiB succeeds with probability below ``(2^21 / 2^64)^2 = 2^-86``."""

_VERSION = 1
_SESSION_BYTES = 16
_PREFIX = struct.Struct(">I")
_HEAD = struct.Struct(">BB16sQQB")  # version, sender, session, seq, bits, kind length
_PLEN = struct.Struct(">I")
_SENDERS: dict[Party, int] = {"alice": 0, "bob": 1}
_NAMES: dict[int, Party] = {0: "alice", 1: "bob"}
_MIN_POOL_BYTES = 1024

Direction = Literal["alice->bob", "bob->alice"]


def _other(party: Party) -> Party:
    return "bob" if party == "alice" else "alice"


def write_auth_key_pair(
    bits: int, out: str | os.PathLike[str], peer_out: str | os.PathLike[str]
) -> int:
    """Write a fresh pre-shared authentication pool (:mod:`secrets`) to two identical files.

    The files are raw key bytes, mode 0600, written atomically; existing files are never
    overwritten (:class:`ParameterError`). ``bits`` is rounded up to whole bytes; returns the
    number of bits written. Carry one file to each site by a trusted route.
    """
    if bits < 8 * _MIN_POOL_BYTES:
        raise ParameterError(f"an authentication pool needs at least {8 * _MIN_POOL_BYTES} bits")
    a, b = Path(out), Path(peer_out)
    if a.resolve() == b.resolve():
        raise ParameterError("--out and --peer-out must be different files")
    for p in (a, b):
        if p.exists():
            raise ParameterError(f"{p} exists; refusing to overwrite an authentication key")
        if not p.parent.is_dir():
            raise ParameterError(f"directory of {p} does not exist")
    key = secrets.token_bytes(-(-bits // 8))
    try:
        atomic_write_bytes(a, key, mode=0o600, durable=True)
        atomic_write_bytes(b, key, mode=0o600, durable=True)
    except BaseException:
        a.unlink(missing_ok=True)
        b.unlink(missing_ok=True)
        raise
    return 8 * len(key)


class AuthPool:
    """The pre-shared pool of one site, read-only, with its fixed layout (module docstring).

    Key bits never appear in ``repr``.
    """

    __slots__ = ("_hashes", "_key", "_slots", "params")

    def __init__(self, key: bytes, *, params: AuthParams = LINK_PARAMS) -> None:
        if len(key) < _MIN_POOL_BYTES:
            raise ParameterError(
                f"authentication pool of {len(key)} bytes is too short (need {_MIN_POOL_BYTES})"
            )
        self._key = bytes(key)
        self.params = params
        w = params.tag_words
        words = [int.from_bytes(self._key[8 * i : 8 * i + 8], "big") for i in range(2 * w)]
        self._hashes: dict[Direction, tuple[PolyHash64, ...]] = {
            "alice->bob": tuple(PolyHash64(k) for k in words[:w]),
            "bob->alice": tuple(PolyHash64(k) for k in words[w:]),
        }
        ab, ba = params.pad_slots(8 * len(self._key))
        self._slots: dict[Direction, tuple[int, int]] = {
            "alice->bob": (2 * w, ab),
            "bob->alice": (2 * w + ab * w, ba),
        }

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, params: AuthParams = LINK_PARAMS) -> AuthPool:
        """Read a pool file written by :func:`write_auth_key_pair` (refuses group/other access)."""
        p = Path(path)
        try:
            mode = p.stat().st_mode & 0o077
            data = p.read_bytes()
        except OSError as exc:
            raise ParameterError(f"cannot read authentication key {p}: {exc.strerror}") from None
        if mode:
            raise ParameterError(f"authentication key {p} is readable by others (chmod 600)")
        return cls(data, params=params)

    def __repr__(self) -> str:
        return (
            f"AuthPool(bits={8 * len(self._key)}, slots={self.slots('alice->bob')}+"
            f"{self.slots('bob->alice')}, key=<hidden>)"
        )

    @property
    def bits(self) -> int:
        return 8 * len(self._key)

    def slots(self, direction: Direction) -> int:
        """Number of pads (hence frames) of ``direction``."""
        return self._slots[direction][1]

    def _pad(self, direction: Direction, index: int) -> int:
        first, n = self._slots[direction]
        if not 0 <= index < n:
            raise AuthenticationError(
                f"authentication pool exhausted for {direction} (pad {index} of {n})"
            )
        w = self.params.tag_words
        start = 8 * (first + index * w)
        return int.from_bytes(self._key[start : start + 8 * w], "big")

    def tag(self, direction: Direction, index: int, data: bytes) -> bytes:
        """Wegman-Carter tag of ``data`` with pad ``index`` of ``direction``."""
        pad = self._pad(direction, index)
        value = 0
        for h in self._hashes[direction]:
            value = (value << 64) | h.digest(data)
        return (value ^ pad).to_bytes(8 * self.params.tag_words, "big")


@dataclass
class _Position:
    send_next: int
    recv_next: int


class PoolPosition:
    """Durable per-direction pad positions of one site (a small JSON file, mode 0600).

    ``send_next`` is the next pad index this site may use for a tag it sends, ``recv_next`` the
    least index it still accepts from the peer; both only grow. Durability is reserved in
    aligned blocks of ``grid`` indices: before the sender uses an index at or above its durable
    mark, it writes the end of that index's block (``(i // grid + 1) * grid``) to the file
    (write, fsync, atomic rename, fsync of the directory); the receiver does the same for an
    index whose tag checked out, before the message is used. A restarted site resumes from the
    durable marks, so an index is used at most once for sending and accepted at most once,
    whatever the moment of a crash. Every session
    starts sending from the durable mark (:meth:`start_session`): the receiver's mark is the
    end of the grid block of an index the sender used, so it is never beyond the sender's mark,
    and a receiver that restarted accepts the first frame. A session or a restart costs at most
    ``grid`` pads per direction. ``path=None`` keeps the positions in
    memory (tests, in-process runs).
    """

    def __init__(self, path: str | os.PathLike[str] | None, *, grid: int = 32) -> None:
        if grid < 1:
            raise ParameterError("grid must be positive")
        self.path = None if path is None else Path(path)
        self.grid = grid
        self._pos = _Position(0, 0)
        if self.path is not None and self.path.exists():
            try:
                raw = json.loads(self.path.read_text())
                self._pos = _Position(int(raw["send_next"]), int(raw["recv_next"]))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ParameterError(f"corrupt pool position file {self.path}: {exc}") from None
            if self._pos.send_next < 0 or self._pos.recv_next < 0:
                raise ParameterError(f"corrupt pool position file {self.path}")
        self._mark = _Position(self._pos.send_next, self._pos.recv_next)  # durable marks
        self.writes = 0

    def __repr__(self) -> str:
        return f"PoolPosition(send_next={self.send_next}, recv_next={self.recv_next})"

    @property
    def send_next(self) -> int:
        return self._pos.send_next

    @property
    def recv_next(self) -> int:
        return self._pos.recv_next

    def _save(self, mark: _Position) -> None:
        if self.path is not None:
            data = json.dumps({"send_next": mark.send_next, "recv_next": mark.recv_next})
            atomic_write_bytes(self.path, data.encode(), mode=0o600, durable=True)
            self.writes += 1
        self._mark = mark

    def _block_end(self, index: int) -> int:
        return (index // self.grid + 1) * self.grid

    def start_session(self) -> None:
        """A new session sends from the durable mark on: a peer that restarted since resumes
        receiving at its own durable mark, which is never beyond ours (same grid)."""
        self._pos = _Position(max(self._pos.send_next, self._mark.send_next), self._pos.recv_next)

    def claim_send(self) -> int:
        """Reserve the next send index (durably, see the class docstring) and return it."""
        index = self._pos.send_next
        if index >= self._mark.send_next:
            self._save(_Position(self._block_end(index), self._mark.recv_next))
        self._pos = _Position(index + 1, self._pos.recv_next)
        return index

    def consume_recv(self, index: int) -> None:
        """Record that receive index ``index`` (and all below) is used: durably, after its tag
        checked out and before the message is acted upon."""
        if index < self._pos.recv_next:
            raise AuthenticationError(f"receive index {index} was already used")
        if index >= self._mark.recv_next:
            self._save(_Position(self._mark.send_next, self._block_end(index)))
        self._pos = _Position(self._pos.send_next, index + 1)


def _session_id(nonce_b: bytes, nonce_a: bytes) -> bytes:
    return hashlib.sha256(b"qrepeater-link-session" + nonce_b + nonce_a).digest()[:_SESSION_BYTES]


class LinkCodec:
    """One site's end of the authenticated link (sans-IO); see the module docstring.

    ``seal`` returns a complete frame (length prefix included) and ``open`` takes a frame body
    (without its length prefix), as :mod:`qrepeater.qkdpp.transport` delivers it. After any
    failure the codec is *failed* and raises on every further call. ``tags_sent`` and
    ``tags_checked`` count pads consumed in this session; :attr:`bits_consumed` is their total
    in pool bits.
    """

    def __init__(
        self,
        party: Party,
        pool: AuthPool,
        position: PoolPosition,
        *,
        max_frame_bytes: int | None = None,
    ) -> None:
        if party not in _SENDERS:
            raise ParameterError(f"unknown party {party!r}")
        self.party: Party = party
        self.peer: Party = _other(party)
        self.pool = pool
        self.position = position
        self.max_frame_bytes = (
            pool.params.max_payload_bytes + 512 if max_frame_bytes is None else max_frame_bytes
        )
        self._out: Direction = "alice->bob" if party == "alice" else "bob->alice"
        self._in: Direction = "bob->alice" if party == "alice" else "alice->bob"
        position.start_session()
        self.session: bytes | None = None
        self._nonce: bytes | None = None  # Bob's hello nonce, until the session is set
        self._expect: int | None = None  # next receive seq within this session
        self.failed: str | None = None
        self.tags_sent = 0
        self.tags_checked = 0

    # ---- bookkeeping ----------------------------------------------------------------------------
    @property
    def tag_bits(self) -> int:
        return self.pool.params.tag_bits

    @property
    def bits_consumed(self) -> int:
        """Pool bits used by this codec so far (pads of tags sent and checked)."""
        return self.tag_bits * (self.tags_sent + self.tags_checked)

    def frames_left(self) -> tuple[int, int]:
        """Frames this site can still send and receive with its pool."""
        return (
            max(0, self.pool.slots(self._out) - self.position.send_next),
            max(0, self.pool.slots(self._in) - self.position.recv_next),
        )

    def require_capacity(self, *, send: int, receive: int) -> None:
        """Raise :class:`AuthenticationError` unless ``send`` / ``receive`` more frames fit."""
        s, r = self.frames_left()
        if s < send or r < receive:
            raise AuthenticationError(
                f"authentication pool too small for the next block: it needs {send} frames to "
                f"send and {receive} to receive, {s} and {r} are left (make a new auth key)"
            )

    def _fail(
        self, exc: AuthenticationError | TransportError
    ) -> AuthenticationError | TransportError:
        self.failed = str(exc)
        return exc

    def _check_alive(self) -> None:
        if self.failed is not None:
            raise AuthenticationError(f"link has failed ({self.failed}); nothing more is accepted")

    # ---- sending --------------------------------------------------------------------------------
    def _seal(self, kind: str, payload: bytes, bits: int, session: bytes) -> bytes:
        kind_b = kind.encode()
        if not 0 <= bits <= 8 * len(payload):
            raise ParameterError(f"bits={bits} does not fit a payload of {len(payload)} bytes")
        if len(kind_b) > 255:
            raise ParameterError("message kind longer than 255 bytes")
        if len(payload) > self.pool.params.max_payload_bytes:
            raise ParameterError(f"payload of {len(payload)} bytes exceeds the frame limit")
        seq = self.position.claim_send()  # durable before the pad is used
        data = authenticated_data(
            sender=self.party, counter=seq, kind=kind, bits=bits, payload=payload, context=session
        )
        tag = self.pool.tag(self._out, seq, data)
        self.tags_sent += 1
        body = (
            _HEAD.pack(_VERSION, _SENDERS[self.party], session, seq, bits, len(kind_b))
            + kind_b
            + _PLEN.pack(len(payload))
            + payload
            + tag
        )
        if len(body) > self.max_frame_bytes:
            raise ParameterError(f"frame of {len(body)} bytes exceeds max_frame_bytes")
        return _PREFIX.pack(len(body)) + body

    def hello(self, payload: bytes = b"") -> bytes:
        """The session-opening frame: Bob sends first, Alice answers Bob's hello."""
        self._check_alive()
        if self.session is not None:
            raise ParameterError("session already established")
        if self.party == "bob":
            self._nonce = secrets.token_bytes(_SESSION_BYTES)
            return self._seal(HELLO_KIND, payload, 8 * len(payload), self._nonce)
        if self._nonce is None:
            raise ParameterError("Alice answers Bob's hello; none received")
        nonce_a = secrets.token_bytes(_SESSION_BYTES)
        frame = self._seal(HELLO_KIND, nonce_a + payload, 8 * (len(payload) + 16), self._nonce)
        self.session = _session_id(self._nonce, nonce_a)
        return frame

    def seal(self, kind: str, payload: bytes, *, bits: int | None = None) -> bytes:
        """Frame for one message of this session (``bits`` default ``8 * len(payload)``)."""
        self._check_alive()
        if self.session is None:
            raise ParameterError("no session: exchange hellos first")
        nbits = 8 * len(payload) if bits is None else int(bits)
        return self._seal(kind, bytes(payload), nbits, self.session)

    def seal_message(self, msg: Message) -> bytes:
        """Frame for a party's :class:`~qrepeater.qkdpp.channel.Message`."""
        if msg.sender != self.party:
            raise ParameterError(f"{self.party} cannot send {msg.sender}'s message")
        return self.seal(msg.kind, msg.payload, bits=msg.bits)

    # ---- receiving ------------------------------------------------------------------------------
    def check_length(self, length: int) -> None:
        """Reject an announced frame length before reading its body (oversized frames)."""
        self._check_alive()
        if not _HEAD.size + _PLEN.size <= length <= self.max_frame_bytes:
            raise self._fail(
                TransportError(f"frame of {length} bytes outside 1..{self.max_frame_bytes}")
            )

    def open(self, body: bytes) -> Message:
        """Check one frame body; return its message or raise (and fail the codec)."""
        self.check_length(len(body))
        try:
            return self._open(bytes(body))
        except (AuthenticationError, TransportError) as exc:
            raise self._fail(exc) from None

    def _open(self, body: bytes) -> Message:
        w = self.pool.params.tag_words
        version, sender_id, session, seq, bits, klen = _HEAD.unpack_from(body)
        off = _HEAD.size
        kind_b = body[off : off + klen]
        off += klen
        if version != _VERSION or len(kind_b) != klen or off + _PLEN.size > len(body):
            raise TransportError("malformed frame header")
        (plen,) = _PLEN.unpack_from(body, off)
        off += _PLEN.size
        payload = body[off : off + plen]
        tag = body[off + plen :]
        if len(payload) != plen or len(tag) != 8 * w:
            raise TransportError("malformed frame: truncated or trailing bytes")
        if _NAMES.get(sender_id) != self.peer:
            raise AuthenticationError(f"frame claims sender #{sender_id}, expected {self.peer}")
        try:
            kind = kind_b.decode()
        except UnicodeDecodeError:
            raise TransportError("malformed frame: kind is not UTF-8") from None
        if not 0 <= bits <= 8 * plen:
            raise TransportError("malformed frame: bit count exceeds payload")
        # the session the frame must belong to
        if self.session is None:
            if kind != HELLO_KIND:
                raise AuthenticationError(f"expected a hello from {self.peer}, got '{kind}'")
            if self.party == "alice":
                context = session  # Bob's fresh nonce
            else:
                if self._nonce is None:
                    raise AuthenticationError("hello received before sending one")
                context = self._nonce
                if session != context:
                    raise AuthenticationError("hello answers another session")
        else:
            context = self.session
            if session != context:
                raise AuthenticationError("frame of another session (replayed?)")
        # sequence numbers: never below the durable position, consecutive within a session
        if seq < self.position.recv_next:
            raise AuthenticationError(
                f"frame #{seq} from {self.peer} was already received (replayed or reordered)"
            )
        if self._expect is not None and seq != self._expect:
            raise AuthenticationError(
                f"expected frame #{self._expect} from {self.peer}, got #{seq} "
                "(dropped or reordered)"
            )
        self.tags_checked += 1  # every check is a forgery attempt (eps_auth), passed or not
        data = authenticated_data(
            sender=self.peer, counter=seq, kind=kind, bits=bits, payload=payload, context=context
        )
        if not hmac.compare_digest(self.pool.tag(self._in, seq, data), tag):
            raise AuthenticationError(
                f"frame #{seq} from {self.peer} ('{kind}') failed authentication (tampered, or "
                "the two sites hold different authentication keys)"
            )
        # durable before the message is acted upon; a failed check moves nothing, so a forged
        # frame with a far sequence number cannot burn the pool
        self.position.consume_recv(seq)
        self._expect = seq + 1
        if self.session is None:
            if self.party == "alice":
                self._nonce = session
            else:
                if len(payload) < _SESSION_BYTES:
                    raise TransportError("malformed hello")
                assert self._nonce is not None
                self.session = _session_id(self._nonce, payload[:_SESSION_BYTES])
                payload = payload[_SESSION_BYTES:]
                bits = 8 * len(payload)
        return Message(sender=self.peer, kind=kind, payload=payload, bits=bits)
