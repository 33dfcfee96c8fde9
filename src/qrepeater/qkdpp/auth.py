"""Information-theoretically secure authentication of the public channel (Wegman-Carter).

Every classical message of the DI-QKD post-processing is authenticated with a Wegman-Carter MAC
(Wegman & Carter, J. Comput. Syst. Sci. 22, 265 (1981)):

    tag_j = h_k(AD_j) XOR r_j

* ``h_k`` is the polynomial hash over GF(2^64) (:class:`PolyHash64`), an
  epsilon-almost-XOR-universal family: for a message of ``d`` 64-bit blocks (the length block
  included) and any two distinct messages and any constant ``c``,
  ``Pr_k[h_k(m) XOR h_k(m') = c] <= d / 2^64`` (the difference is a non-zero polynomial of degree
  at most ``d`` in ``k``, which has at most ``d`` roots).
* ``r_j`` is a fresh one-time pad taken from the pre-shared :class:`KeyPool` for every tag; the
  hash key ``k`` is drawn once per direction and reused, which is secure because every tag is
  perfectly masked by its pad (Wegman & Carter 1981; for composable key recycling see
  Portmann, IEEE Trans. Inf. Theory 60, 4383 (2014)).
* ``AD_j`` (:func:`authenticated_data`) encodes sender, the per-direction message counter ``j``,
  kind, declared bit count and payload injectively, so a tampered, reordered, replayed or dropped
  message fails verification.

Forging probability per verified tag, with ``w`` independent 64-bit words per tag and messages of at
most ``d_max`` blocks: ``(d_max / 2^64)^w``; the probability that any of ``N`` verifications is
fooled is at most ``N (d_max / 2^64)^w`` (union bound; the protocol aborts at the first failure).
Key consumption: ``64 w`` bits of pad per message plus ``64 w`` bits of hash key per direction.

The field is GF(2)[x] / (x^64 + x^4 + x^3 + x + 1) (irreducible; checked by Rabin's test in the
tests). Nothing here prints or logs key material; objects holding keys hide them from ``repr``.
"""

from __future__ import annotations

import hmac
import math
import secrets
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qrepeater.errors import AuthenticationError, ParameterError

__all__ = [
    "GF64_MODULUS",
    "AuthParams",
    "AuthReport",
    "KeyPool",
    "PolyHash64",
    "WegmanCarterMAC",
    "authenticated_data",
    "gf64_mul",
    "gf64_pow",
]

GF64_MODULUS = (1 << 64) | 0x1B
"""x^64 + x^4 + x^3 + x + 1 as an integer (bit i = coefficient of x^i)."""

_MASK64 = (1 << 64) - 1
_MAGIC = b"QRA1"
_MAGIC_CTX = b"QRA2"
_MAX_CONTEXT_BYTES = 64
_MAX_KIND_BYTES = 255
_MAX_SENDER_BYTES = 16
# Header of authenticated_data: magic, sender length + sender, counter, kind length + kind, bits.
_MAX_HEADER_BYTES = (
    len(_MAGIC_CTX) + 1 + _MAX_CONTEXT_BYTES + 1 + _MAX_SENDER_BYTES + 8 + 2 + _MAX_KIND_BYTES + 8
)
# Below this many blocks, plain Horner in Python beats the vectorised lane evaluation.
_SHORT_BLOCKS = 128
_LITTLE_ENDIAN = sys.byteorder == "little"

Rows = tuple[list[int], ...]


# ------------------------------------------------------------------------------------------------
# GF(2^64) arithmetic


def _check_element(a: int, name: str) -> None:
    if not 0 <= a <= _MASK64:
        raise ParameterError(f"{name} must be a GF(2^64) element in [0, 2^64), got {a}")


def gf64_mul(a: int, b: int) -> int:
    """Product of ``a`` and ``b`` in GF(2^64) (bit-serial shift-and-add; the reference)."""
    _check_element(a, "a")
    _check_element(b, "b")
    result = 0
    while b:
        if b & 1:
            result ^= a
        b >>= 1
        a <<= 1
        if a >> 64:
            a ^= GF64_MODULUS
    return result


def gf64_pow(a: int, e: int) -> int:
    """``a**e`` in GF(2^64) by square-and-multiply (``e >= 0``)."""
    _check_element(a, "a")
    if e < 0:
        raise ParameterError(f"exponent must be >= 0, got {e}")
    result, base = 1, a
    while e:
        if e & 1:
            result = gf64_mul(result, base)
        base = gf64_mul(base, base)
        e >>= 1
    return result


def _mul_rows(a: int) -> Rows:
    """Eight 256-entry tables: ``rows[i][b] = a * (b x^(8i))``, so that by linearity
    ``a * v = XOR_i rows[i][byte_i(v)]``."""
    shifted = []
    v = a
    for _ in range(64):
        shifted.append(v)
        v <<= 1
        if v >> 64:
            v ^= GF64_MODULUS
    rows = []
    for i in range(8):
        row = [0]
        for bit in range(8):
            s = shifted[8 * i + bit]
            row.extend([t ^ s for t in row])
        rows.append(row)
    return tuple(rows)


def _horner_py(rows: Rows, blocks: Sequence[int]) -> int:
    """``sum_i blocks[i] k^(d-i)``, ``d = len(blocks)``, i from 0; ``rows`` is the table of k."""
    r0, r1, r2, r3, r4, r5, r6, r7 = rows
    acc = 0
    for b in blocks:
        v = acc ^ b
        acc = (
            r0[v & 255]
            ^ r1[(v >> 8) & 255]
            ^ r2[(v >> 16) & 255]
            ^ r3[(v >> 24) & 255]
            ^ r4[(v >> 32) & 255]
            ^ r5[(v >> 40) & 255]
            ^ r6[(v >> 48) & 255]
            ^ r7[v >> 56]
        )
    return acc


def _mul_vec(table: npt.NDArray[np.uint64], v: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Elementwise ``K * v`` over GF(2^64) for the constant ``K`` whose 8x256 table is given."""
    if _LITTLE_ENDIAN:
        by = np.ascontiguousarray(v).view(np.uint8).reshape(-1, 8)
        out: npt.NDArray[np.uint64] = table[0][by[:, 0]]
        for i in range(1, 8):
            out ^= table[i][by[:, i]]
        return out
    res: npt.NDArray[np.uint64] = table[0][(v & np.uint64(255)).astype(np.intp)]  # pragma: no cover
    for i in range(1, 8):  # pragma: no cover - big-endian hosts
        res ^= table[i][((v >> np.uint64(8 * i)) & np.uint64(255)).astype(np.intp)]
    return res  # pragma: no cover


class PolyHash64:
    """Keyed polynomial hash over GF(2^64) (an almost-XOR-universal family).

    The message (``n_bits`` bits, big-endian, zero-padded) is cut into 64-bit blocks
    ``B_1 .. B_{d-1}`` followed by the length block ``B_d = n_bits``, and

        h_k(m) = sum_{i=1}^{d} B_i k^(d-i+1)      (no constant term).

    For distinct messages and any ``c``, ``h_k(m) + h_k(m') + c`` is a non-zero polynomial in
    ``k`` of degree ``<= d`` (messages of different lengths differ in the length block), hence
    ``Pr_k[h_k(m) + h_k(m') = c] <= d / 2^64`` (Wegman & Carter 1981; the polynomial
    construction is the one of GHASH/Poly1305-style MACs, see Bernstein, FSE 2005).

    Long messages are evaluated with ``R`` interleaved Horner lanes in numpy
    (``h = sum_r k^(R-r) sum_q B_{qR+r} (k^R)^(Q-1-q)``), recursively, using byte tables of
    the constant multipliers; short ones with Horner in Python. Both agree bit for bit with the
    bit-serial reference :func:`gf64_mul` (tested).
    """

    __slots__ = ("_key", "_lane_tables", "_rows")

    def __init__(self, key: int) -> None:
        _check_element(key, "hash key")
        self._key = key
        self._rows = _mul_rows(key)
        self._lane_tables: dict[int, npt.NDArray[np.uint64]] = {}

    def __repr__(self) -> str:
        return "PolyHash64(key=<hidden>)"

    @staticmethod
    def n_blocks(n_bits: int) -> int:
        """Number of blocks ``d`` (length block included) of an ``n_bits`` message."""
        if n_bits < 0:
            raise ParameterError(f"n_bits must be >= 0, got {n_bits}")
        return -(-n_bits // 64) + 1

    @staticmethod
    def collision_bound(n_bits: int) -> float:
        """``d / 2^64``: XOR-universality (hence collision) bound for ``n_bits`` messages."""
        return PolyHash64.n_blocks(n_bits) / 2.0**64

    def digest(self, data: bytes, *, n_bits: int | None = None) -> int:
        """Hash of the first ``n_bits`` bits of ``data`` (default: all of it) as an integer.

        Bits of ``data`` beyond ``n_bits`` are ignored, so a bit string packed with
        :func:`numpy.packbits` hashes the same whatever its padding.
        """
        nb = 8 * len(data) if n_bits is None else int(n_bits)
        if not 0 <= nb <= 8 * len(data):
            raise ParameterError(f"n_bits={nb} does not fit {len(data)} bytes")
        n_words = -(-nb // 64)
        n_bytes = -(-nb // 8)
        buf = bytearray(8 * n_words)
        buf[:n_bytes] = data[:n_bytes]
        if nb % 8:
            buf[n_bytes - 1] &= (0xFF << (8 - nb % 8)) & 0xFF
        words = np.frombuffer(bytes(buf), dtype=">u8").astype(np.uint64)
        blocks = np.empty(n_words + 1, dtype=np.uint64)
        blocks[:n_words] = words
        blocks[n_words] = nb
        return self._horner(blocks)

    def _lane_table(self, lanes: int) -> npt.NDArray[np.uint64]:
        table = self._lane_tables.get(lanes)
        if table is None:
            table = np.array(_mul_rows(gf64_pow(self._key, lanes)), dtype=np.uint64)
            self._lane_tables[lanes] = table
        return table

    def _horner(self, blocks: npt.NDArray[np.uint64]) -> int:
        d = int(blocks.size)
        if d <= _SHORT_BLOCKS:
            return _horner_py(self._rows, blocks.tolist())
        lanes = 1 << max(6, min(13, math.ceil(math.log2(math.sqrt(8.0 * d)))))
        q = -(-d // lanes)
        padded = np.zeros(q * lanes, dtype=np.uint64)  # leading zero blocks change nothing
        padded[q * lanes - d :] = blocks
        mat = padded.reshape(q, lanes)
        table = self._lane_table(lanes)
        acc = mat[0].copy()
        for row in mat[1:]:
            acc = _mul_vec(table, acc)
            acc ^= row
        # acc[r] = sum_q B[q, r] K^(Q-1-q); the lanes combine as a polynomial of R blocks.
        return self._horner(acc)


# ------------------------------------------------------------------------------------------------
# Key pool


class KeyPool:
    """Pre-shared secret bits, consumed strictly front to back and never reused.

    Alice and Bob each hold their own pool object with the same bits
    (:meth:`shared_pair`, or construct both from the same bytes). Every :meth:`take` is
    accounted under a purpose; asking for more than is left raises
    :class:`~qrepeater.errors.AuthenticationError`. The key bits never appear in ``repr``.
    (Python cannot reliably erase memory; used bits are only made unreachable through the API.)
    """

    __slots__ = ("_capacity", "_cursor", "_key", "_usage")

    def __init__(self, key: bytes, *, n_bits: int | None = None) -> None:
        if not isinstance(key, bytes | bytearray):
            raise ParameterError("key must be bytes")
        cap = 8 * len(key) if n_bits is None else int(n_bits)
        if not 0 <= cap <= 8 * len(key):
            raise ParameterError(f"n_bits={cap} does not fit a key of {len(key)} bytes")
        self._key = bytes(key)
        self._capacity = cap
        self._cursor = 0
        self._usage: dict[str, int] = {}

    @classmethod
    def random(cls, n_bits: int, *, rng: np.random.Generator | None = None) -> KeyPool:
        """Fresh pool of ``n_bits`` from :mod:`secrets` (or ``rng``, for tests only)."""
        if n_bits < 0:
            raise ParameterError(f"n_bits must be >= 0, got {n_bits}")
        n_bytes = -(-n_bits // 8)
        key = secrets.token_bytes(n_bytes) if rng is None else rng.bytes(n_bytes)
        return cls(key, n_bits=n_bits)

    @classmethod
    def shared_pair(
        cls, n_bits: int, *, rng: np.random.Generator | None = None
    ) -> tuple[KeyPool, KeyPool]:
        """Alice's and Bob's pools: two independent objects holding the same fresh bits."""
        alice = cls.random(n_bits, rng=rng)
        return alice, alice.copy()

    def copy(self) -> KeyPool:
        """An independent pool with the same unconsumed bits (what the other party holds)."""
        other = KeyPool(self._key, n_bits=self._capacity)
        other._cursor = self._cursor
        other._usage = dict(self._usage)
        return other

    def __repr__(self) -> str:
        return (
            f"KeyPool(capacity_bits={self._capacity}, consumed_bits={self._cursor}, key=<hidden>)"
        )

    @property
    def capacity_bits(self) -> int:
        return self._capacity

    @property
    def consumed_bits(self) -> int:
        return self._cursor

    @property
    def remaining_bits(self) -> int:
        return self._capacity - self._cursor

    @property
    def usage(self) -> dict[str, int]:
        """Bits consumed so far, by purpose (a copy)."""
        return dict(self._usage)

    def _read(self, n_bits: int, purpose: str) -> int:
        if n_bits < 0:
            raise ParameterError(f"n_bits must be >= 0, got {n_bits}")
        if n_bits > self.remaining_bits:
            raise AuthenticationError(
                f"key pool exhausted: {purpose} needs {n_bits} bits, "
                f"{self.remaining_bits} of {self._capacity} left"
            )
        start, stop = self._cursor, self._cursor + n_bits
        b0, b1 = start // 8, -(-stop // 8)
        value = int.from_bytes(self._key[b0:b1], "big") >> (8 * b1 - stop)
        self._cursor = stop
        self._usage[purpose] = self._usage.get(purpose, 0) + n_bits
        return value & ((1 << n_bits) - 1)

    def take(self, n_bits: int, *, purpose: str) -> int:
        """Consume the next ``n_bits`` bits and return them as an integer (first bit = MSB)."""
        return self._read(n_bits, purpose)

    def split(self, n_bits: int, *, purpose: str) -> KeyPool:
        """Carve the next ``n_bits`` into a separate pool (accounted here under ``purpose``)."""
        value = self._read(n_bits, purpose)
        n_bytes = -(-n_bits // 8)
        return KeyPool((value << (8 * n_bytes - n_bits)).to_bytes(n_bytes, "big"), n_bits=n_bits)


# ------------------------------------------------------------------------------------------------
# Wegman-Carter MAC


@dataclass(frozen=True)
class AuthParams:
    """Parameters of the authenticated channel.

    ``tag_words`` independent 64-bit (hash key, pad) pairs per tag; ``max_payload_bytes`` bounds
    the message length that a receiver accepts (and so the forging probability);
    ``alice_share`` is the fraction of the pad pool reserved for Alice->Bob tags (each direction
    has its own pads so that both parties consume the pool identically whatever the interleaving).
    """

    tag_words: int = 1
    max_payload_bytes: int = 1 << 24
    alice_share: float = 0.5

    def __post_init__(self) -> None:
        if not 1 <= self.tag_words <= 8:
            raise ParameterError(f"tag_words must be in 1..8, got {self.tag_words}")
        if not 1 <= self.max_payload_bytes <= 1 << 40:
            raise ParameterError(f"max_payload_bytes out of range: {self.max_payload_bytes}")
        if not 0.0 < self.alice_share < 1.0:
            raise ParameterError(f"alice_share must be in (0, 1), got {self.alice_share}")

    @property
    def tag_bits(self) -> int:
        """Tag length, which is also the pad consumed per message."""
        return 64 * self.tag_words

    @property
    def hash_key_bits(self) -> int:
        """Hash-key bits drawn once per direction."""
        return 64 * self.tag_words

    @property
    def max_blocks(self) -> int:
        """``d_max``: 64-bit blocks of the longest authenticated data a receiver accepts."""
        return PolyHash64.n_blocks(8 * (_MAX_HEADER_BYTES + self.max_payload_bytes))

    @property
    def forge_probability(self) -> float:
        """Upper bound on the success probability of one forgery attempt: ``(d_max/2^64)^w``."""
        return float((self.max_blocks / 2.0**64) ** self.tag_words)

    def eps_auth(self, n_messages: int) -> float:
        """Bound on the probability that any of ``n_messages`` verifications is fooled."""
        if n_messages < 0:
            raise ParameterError(f"n_messages must be >= 0, got {n_messages}")
        return min(1.0, n_messages * self.forge_probability)

    def pad_slots(self, pool_bits: int) -> tuple[int, int]:
        """Tags available (Alice->Bob, Bob->Alice) for a pool of ``pool_bits`` bits."""
        total = max(0, pool_bits - 2 * self.hash_key_bits) // self.tag_bits
        ab = math.floor(total * self.alice_share)
        return ab, total - ab

    def key_bits_required(self, *, alice_messages: int, bob_messages: int) -> int:
        """Smallest pool size that authenticates the given number of messages per direction."""
        if alice_messages < 0 or bob_messages < 0:
            raise ParameterError("message counts must be >= 0")
        total = max(
            alice_messages + bob_messages,
            math.ceil(alice_messages / self.alice_share),
            math.ceil(bob_messages / (1.0 - self.alice_share)),
        )
        while True:  # guard against floating-point rounding of the shares
            bits = 2 * self.hash_key_bits + total * self.tag_bits
            ab, ba = self.pad_slots(bits)
            if ab >= alice_messages and ba >= bob_messages:
                return bits
            total += 1


@dataclass(frozen=True)
class AuthReport:
    """Authentication bookkeeping of one party's endpoint."""

    party: str
    tags_sent: int
    tags_verified: int
    tag_bits: int
    key_bits_consumed: int
    pad_bits_left_send: int
    pad_bits_left_receive: int
    forge_probability: float
    eps_auth: float


def authenticated_data(
    *, sender: str, counter: int, kind: str, bits: int, payload: bytes, context: bytes = b""
) -> bytes:
    """Injective encoding of everything a tag authenticates.

    ``MAGIC | len(sender) | sender | counter (u64) | len(kind) (u16) | kind | bits (u64) |
    payload``: every field is fixed-size or length-prefixed and the payload is last (its
    length is bound by the hash's length block), so distinct tuples give distinct strings.
    A non-empty ``context`` (at most 64 bytes: a session id, for the networked link) is bound
    as ``MAGIC2 | len(context) (u8) | context`` in front of the same fields; the two magics
    differ, so encodings with and without a context never coincide.
    """
    if len(context) > _MAX_CONTEXT_BYTES:
        raise ParameterError(f"context longer than {_MAX_CONTEXT_BYTES} bytes")
    sender_b = sender.encode("utf-8")
    kind_b = kind.encode("utf-8")
    if not 0 < len(sender_b) <= _MAX_SENDER_BYTES:
        raise ParameterError(f"sender name must be 1..{_MAX_SENDER_BYTES} bytes")
    if len(kind_b) > _MAX_KIND_BYTES:
        raise ParameterError(f"message kind longer than {_MAX_KIND_BYTES} bytes")
    if not 0 <= counter <= _MASK64 or not 0 <= bits <= _MASK64:
        raise ParameterError("counter and bits must fit 64 bits")
    prefix = _MAGIC_CTX + struct.pack(">B", len(context)) + bytes(context) if context else _MAGIC
    header = (
        prefix
        + struct.pack(">B", len(sender_b))
        + sender_b
        + struct.pack(">QH", counter, len(kind_b))
        + kind_b
        + struct.pack(">Q", bits)
    )
    return header + bytes(payload)


class WegmanCarterMAC:
    """One direction of Wegman-Carter authentication as seen by one endpoint.

    Holds the direction's hash keys (reused) and its pad pool (one fresh ``64 w``-bit pad per
    message, taken in counter order). The sender calls :meth:`tag`, the receiver :meth:`verify`;
    both advance the counter, so the j-th message of the direction is bound to counter ``j`` and
    pad ``j``.
    """

    __slots__ = ("_counter", "_hashes", "_pads", "_params")

    def __init__(self, hash_keys: Sequence[int], pads: KeyPool, *, params: AuthParams) -> None:
        if len(hash_keys) != params.tag_words:
            raise ParameterError(f"expected {params.tag_words} hash keys, got {len(hash_keys)}")
        self._hashes = tuple(PolyHash64(k) for k in hash_keys)
        self._pads = pads
        self._params = params
        self._counter = 0

    def __repr__(self) -> str:
        return f"WegmanCarterMAC(counter={self._counter}, pads={self._pads!r})"

    @property
    def counter(self) -> int:
        """Number of tags produced (sender) or checked (receiver) so far."""
        return self._counter

    @property
    def pad_bits_left(self) -> int:
        return self._pads.remaining_bits

    def _compute(self, *, sender: str, kind: str, bits: int, payload: bytes) -> bytes:
        data = authenticated_data(
            sender=sender, counter=self._counter, kind=kind, bits=bits, payload=payload
        )
        pad = self._pads.take(self._params.tag_bits, purpose="tag pads")
        self._counter += 1
        words = [h.digest(data) for h in self._hashes]
        tag = 0
        for w in words:
            tag = (tag << 64) | w
        return (tag ^ pad).to_bytes(8 * len(words), "big")

    def tag(self, *, sender: str, kind: str, bits: int, payload: bytes) -> tuple[int, bytes]:
        """Tag the next outgoing message; returns ``(counter, tag)``."""
        if len(payload) > self._params.max_payload_bytes:
            raise ParameterError(
                f"payload of {len(payload)} bytes exceeds max_payload_bytes="
                f"{self._params.max_payload_bytes}"
            )
        counter = self._counter
        return counter, self._compute(sender=sender, kind=kind, bits=bits, payload=payload)

    def verify(self, *, sender: str, kind: str, bits: int, payload: bytes, tag: bytes) -> None:
        """Check the next incoming message (bound to this side's own counter); raise on failure."""
        j = self._counter
        if len(payload) > self._params.max_payload_bytes:
            self._pads.take(self._params.tag_bits, purpose="tag pads")
            self._counter += 1
            raise AuthenticationError(f"message #{j} from {sender} is longer than allowed")
        expected = self._compute(sender=sender, kind=kind, bits=bits, payload=payload)
        if not hmac.compare_digest(expected, bytes(tag)):
            raise AuthenticationError(
                f"message #{j} from {sender} ('{kind}') failed authentication "
                "(tampered, reordered, replayed or a message was dropped)"
            )
