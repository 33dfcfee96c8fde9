"""Error verification after reconciliation: compare universal hashes of the two keys.

Alice draws ``t`` independent 64-bit keys ``k_1..k_t`` (:mod:`secrets`; a seeded
``numpy.random.Generator`` in tests) and sends them, then the hashes ``h_{k_i}(K_A)`` with the
polynomial hash over GF(2^64) of :class:`~qrepeater.qkdpp.auth.PolyHash64`. Bob hashes his key
with the same seeds, compares (constant time) and returns a one-bit verdict; on a mismatch both
parties raise :class:`~qrepeater.errors.ProtocolAbort` with reason ``"verification"``.

Bound. For ``K_A != K_B`` of ``n`` bits (``d = ceil(n/64) + 1`` blocks) and a uniformly random
key, ``Pr[h_k(K_A) = h_k(K_B)] <= d / 2^64`` (a non-zero polynomial of degree ``<= d`` has at most
``d`` roots; Wegman & Carter, JCSS 22, 265 (1981)). The keys are fixed before the seed is drawn,
so with ``t`` independent seeds the probability that differing keys pass is at most
``(d / 2^64)^t``; ``t`` is the smallest integer with ``(d / 2^64)^t <= eps_EC``. This is the
correctness parameter ``eps_EC`` of the finite-key analysis (e.g. Tomamichel et al.,
Nat. Commun. 3, 634 (2012); Arnon-Friedman et al., Nat. Commun. 9, 459 (2018)).

Leakage. The ``64 t`` hash bits (kind :data:`VERIFY_HASH_KIND`) are public information about the
key and must be subtracted in the key-length bound: ``channel.bits_sent(prefix="verify.hash")``.
The seed (kind :data:`VERIFY_SEED_KIND`) is independent of the key.
"""

from __future__ import annotations

import hmac
import math
import secrets
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qrepeater.errors import ParameterError, ProtocolAbort
from qrepeater.qkdpp.auth import PolyHash64
from qrepeater.qkdpp.channel import Channel, Party, pack_bits

__all__ = [
    "VERIFY_HASH_KIND",
    "VERIFY_SEED_KIND",
    "VERIFY_VERDICT_KIND",
    "VerificationParams",
    "VerificationResult",
    "verification_hash",
    "verify_check",
    "verify_confirm",
    "verify_keys",
    "verify_send",
]

VERIFY_SEED_KIND = "verify.seed"
VERIFY_HASH_KIND = "verify.hash"
VERIFY_VERDICT_KIND = "verify.verdict"
_SEED_HEADER = struct.Struct(">QB")  # n_bits, n_tags
_PASS, _FAIL = b"\x01", b"\x00"
_MAX_TAGS = 16


@dataclass(frozen=True)
class VerificationParams:
    """``eps_ec``: the largest acceptable probability that differing keys pass verification."""

    eps_ec: float = 1e-10

    def __post_init__(self) -> None:
        if not 0.0 < self.eps_ec < 1.0:
            raise ParameterError(f"eps_ec must be in (0, 1), got {self.eps_ec}")

    def n_tags(self, n_bits: int) -> int:
        """Independent 64-bit hashes needed for an ``n_bits`` key: least ``t`` with
        ``(d/2^64)^t <= eps_ec``."""
        p = PolyHash64.collision_bound(n_bits)
        if p >= 1.0:
            raise ParameterError(f"key of {n_bits} bits is too long for 64-bit hashing")
        t = max(1, math.ceil(math.log(self.eps_ec) / math.log(p)))
        while p**t > self.eps_ec:  # guard the floating-point logarithms
            t += 1
        if t > _MAX_TAGS:
            raise ParameterError(f"eps_ec={self.eps_ec} needs more than {_MAX_TAGS} hashes")
        return t

    def collision_bound(self, n_bits: int) -> float:
        """``(d/2^64)^t``: the guaranteed bound, at most ``eps_ec``."""
        return float(PolyHash64.collision_bound(n_bits) ** self.n_tags(n_bits))


@dataclass(frozen=True)
class VerificationResult:
    """Outcome of a passed verification (a failed one raises)."""

    n_bits: int
    n_tags: int
    hash_bits: int
    seed_bits: int
    collision_bound: float
    eps_ec: float

    def __post_init__(self) -> None:
        if self.hash_bits != 64 * self.n_tags or self.collision_bound > self.eps_ec:
            raise ParameterError("inconsistent verification result")


def _as_bits(bits: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    arr = np.asarray(bits).ravel()
    if arr.dtype == np.uint8:
        ok = arr.size == 0 or int(arr.max()) <= 1
    else:
        ok = arr.dtype == np.bool_ or arr.size == 0 or bool(np.isin(arr, (0, 1)).all())
    if not ok:
        raise ParameterError("key must contain only 0 and 1")
    return arr.astype(np.uint8, copy=False)


def verification_hash(key: npt.ArrayLike, seeds: Sequence[int]) -> tuple[int, ...]:
    """``(h_{k}(key) for k in seeds)`` over GF(2^64); ``key`` is a 0/1 array."""
    packed, n = pack_bits(_as_bits(key))
    return tuple(PolyHash64(k).digest(packed, n_bits=n) for k in seeds)


def _pack_words(words: Sequence[int]) -> bytes:
    return b"".join(w.to_bytes(8, "big") for w in words)


def verify_send(
    channel: Channel,
    key: npt.ArrayLike,
    *,
    params: VerificationParams | None = None,
    party: Party = "alice",
    rng: np.random.Generator | None = None,
) -> VerificationResult:
    """Hashing side (Alice): draw the seeds, send them and the hashes of ``key``.

    Seeds come from :mod:`secrets` unless ``rng`` is given (tests only). Follow with
    :func:`verify_confirm` to learn Bob's verdict.
    """
    params = VerificationParams() if params is None else params
    bits = _as_bits(key)
    n = int(bits.size)
    t = params.n_tags(n)
    if rng is None:
        seeds = [secrets.randbits(64) for _ in range(t)]
    else:
        seeds = [int(v) for v in rng.integers(0, 2**64, size=t, dtype=np.uint64)]
    channel.send(party, VERIFY_SEED_KIND, _SEED_HEADER.pack(n, t) + _pack_words(seeds))
    channel.send(party, VERIFY_HASH_KIND, _pack_words(verification_hash(bits, seeds)))
    return VerificationResult(
        n_bits=n,
        n_tags=t,
        hash_bits=64 * t,
        seed_bits=64 * t,
        collision_bound=params.collision_bound(n),
        eps_ec=params.eps_ec,
    )


def verify_check(
    channel: Channel,
    key: npt.ArrayLike,
    *,
    params: VerificationParams | None = None,
    party: Party = "bob",
) -> VerificationResult:
    """Checking side (Bob): receive seeds and hashes, compare with ``key``, send the verdict.

    Raises :class:`~qrepeater.errors.ProtocolAbort` (``"verification"``) after sending a
    negative verdict if the hashes (or the key lengths) differ, if the peer used fewer hashes
    than ``params`` requires, or if its messages are malformed.
    """
    params = VerificationParams() if params is None else params
    bits = _as_bits(key)
    n = int(bits.size)
    seed_msg = channel.receive(party, VERIFY_SEED_KIND)
    hash_msg = channel.receive(party, VERIFY_HASH_KIND)
    required = params.n_tags(n)
    n_peer, t = _SEED_HEADER.unpack_from(seed_msg) if len(seed_msg) >= _SEED_HEADER.size else (n, 0)
    problem = None
    if len(seed_msg) < _SEED_HEADER.size:
        problem = "verification seed message too short"
    elif n_peer != n:
        problem = f"key lengths differ ({n_peer} vs {n} bits)"
    elif not required <= t <= _MAX_TAGS:
        problem = f"peer used {t} hashes, {required} required for eps_ec={params.eps_ec}"
    elif len(seed_msg) != _SEED_HEADER.size + 8 * t or len(hash_msg) != 8 * t:
        problem = "malformed verification messages"
    else:
        body = seed_msg[_SEED_HEADER.size :]
        seeds = [int.from_bytes(body[8 * i : 8 * i + 8], "big") for i in range(t)]
        mine = _pack_words(verification_hash(bits, seeds))
        if not hmac.compare_digest(mine, hash_msg):
            problem = "hashes of the reconciled keys differ"
    if problem is not None:
        channel.send(party, VERIFY_VERDICT_KIND, _FAIL, bits=1)
        raise ProtocolAbort("verification", problem)
    channel.send(party, VERIFY_VERDICT_KIND, _PASS, bits=1)
    return VerificationResult(
        n_bits=n,
        n_tags=t,
        hash_bits=64 * t,
        seed_bits=64 * t,
        collision_bound=float(PolyHash64.collision_bound(n) ** t),
        eps_ec=params.eps_ec,
    )


def verify_confirm(channel: Channel, *, party: Party = "alice") -> None:
    """Hashing side: receive the verdict; raise ``ProtocolAbort("verification")`` on failure."""
    verdict = channel.receive(party, VERIFY_VERDICT_KIND)
    if verdict != _PASS:
        raise ProtocolAbort("verification", "peer reports that the key hashes differ")


def verify_keys(
    channel: Channel,
    alice_key: npt.ArrayLike,
    bob_key: npt.ArrayLike,
    *,
    params: VerificationParams | None = None,
    rng: np.random.Generator | None = None,
) -> VerificationResult:
    """Run both sides in one process: Alice sends, Bob checks, Alice reads the verdict."""
    verify_send(channel, alice_key, params=params, rng=rng)
    result = verify_check(channel, bob_key, params=params)
    verify_confirm(channel)
    return result
