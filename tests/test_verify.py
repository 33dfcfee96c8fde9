"""Tests of error verification: tag count from eps_EC, equal keys pass, any single differing bit
aborts both parties, leakage accounting, and malformed exchanges."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrepeater.errors import ParameterError, ProtocolAbort
from qrepeater.qkdpp.auth import PolyHash64
from qrepeater.qkdpp.channel import AuthenticatedChannel, PublicChannel, pack_bits
from qrepeater.qkdpp.verify import (
    VERIFY_HASH_KIND,
    VERIFY_SEED_KIND,
    VerificationParams,
    verification_hash,
    verify_check,
    verify_confirm,
    verify_keys,
    verify_send,
)


def test_number_of_tags_meets_eps_ec() -> None:
    n = 10**6
    p = PolyHash64.collision_bound(n)  # (15625 + 1) / 2^64 ~ 8.5e-16
    assert VerificationParams(eps_ec=1e-10).n_tags(n) == 1
    assert VerificationParams(eps_ec=1e-15).n_tags(n) == 1
    assert VerificationParams(eps_ec=1e-16).n_tags(n) == 2
    assert VerificationParams(eps_ec=1e-40).n_tags(n) == 3
    for eps in (0.5, 1e-3, 1e-10, 1e-15, 1e-16, 1e-30, 1e-45):
        params = VerificationParams(eps_ec=eps)
        t = params.n_tags(n)
        assert params.collision_bound(n) == pytest.approx(p**t)
        assert p**t <= eps < p ** (t - 1) or t == 1
    for bad in (0.0, 1.0, -1e-3):
        with pytest.raises(ParameterError):
            VerificationParams(eps_ec=bad)


def test_verification_hash_is_the_polynomial_hash_of_the_packed_key() -> None:
    rng = np.random.default_rng(0)
    key = rng.integers(0, 2, 1001, dtype=np.uint8)
    packed, n = pack_bits(key)
    assert verification_hash(key, [5, 7]) == (
        PolyHash64(5).digest(packed, n_bits=n),
        PolyHash64(7).digest(packed, n_bits=n),
    )
    with pytest.raises(ParameterError):
        verification_hash([0, 2, 1], [1])


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3000), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_single_differing_bit_aborts_and_equal_keys_pass(
    n: int, seed: int, data: st.DataObject
) -> None:
    rng = np.random.default_rng(seed)
    key = rng.integers(0, 2, n, dtype=np.uint8)
    params = VerificationParams(eps_ec=1e-12)

    ch = PublicChannel()
    result = verify_keys(ch, key, key.copy(), params=params, rng=np.random.default_rng(seed))
    assert result.n_bits == n
    assert result.collision_bound <= 1e-12
    assert ch.bits_sent(prefix=VERIFY_HASH_KIND) == result.hash_bits == 64 * result.n_tags

    flipped = key.copy()
    flipped[data.draw(st.integers(0, n - 1))] ^= 1
    ch = PublicChannel()
    verify_send(ch, key, params=params, rng=np.random.default_rng(seed))
    with pytest.raises(ProtocolAbort) as bob_err:
        verify_check(ch, flipped, params=params)
    assert bob_err.value.reason == "verification"
    with pytest.raises(ProtocolAbort) as alice_err:
        verify_confirm(ch)
    assert alice_err.value.reason == "verification"


def test_over_authenticated_channel_with_secrets_seeds() -> None:
    ch = AuthenticatedChannel.with_shared_key(4096, rng=np.random.default_rng(1))
    key = np.random.default_rng(2).integers(0, 2, 100_000, dtype=np.uint8)
    result = verify_keys(ch, key, key.copy(), params=VerificationParams(eps_ec=1e-20))
    assert result.n_tags == 2
    assert result.hash_bits == 128
    assert ch.bits_sent(prefix=VERIFY_HASH_KIND) == 128
    assert ch.bits_sent(prefix=VERIFY_SEED_KIND) == 8 * (9 + 16)
    assert ch.report("bob").tags_verified == 2
    assert ch.report("alice").tags_verified == 1


def test_length_mismatch_and_too_few_hashes_abort() -> None:
    rng = np.random.default_rng(3)
    key = rng.integers(0, 2, 500, dtype=np.uint8)
    ch = PublicChannel()
    verify_send(ch, key, rng=rng)
    with pytest.raises(ProtocolAbort, match="lengths differ"):
        verify_check(ch, key[:-1])
    with pytest.raises(ProtocolAbort):
        verify_confirm(ch)

    ch = PublicChannel()
    verify_send(ch, key, params=VerificationParams(eps_ec=1e-3), rng=rng)
    with pytest.raises(ProtocolAbort, match="required"):
        verify_check(ch, key, params=VerificationParams(eps_ec=1e-30))

    ch = PublicChannel()  # more hashes than the checker requires is fine
    verify_send(ch, key, params=VerificationParams(eps_ec=1e-30), rng=rng)
    result = verify_check(ch, key, params=VerificationParams(eps_ec=1e-3))
    verify_confirm(ch)
    assert result.n_tags == 2
    assert result.collision_bound <= 1e-30


def test_malformed_messages_abort() -> None:
    ch = PublicChannel()
    ch.send("alice", VERIFY_SEED_KIND, b"\x00")
    ch.send("alice", VERIFY_HASH_KIND, b"")
    with pytest.raises(ProtocolAbort, match="too short"):
        verify_check(ch, [0, 1])
    with pytest.raises(ProtocolAbort):
        verify_confirm(ch)  # the hashing side learns of the abort too
    ch = PublicChannel()
    ch.send("alice", VERIFY_SEED_KIND, (2).to_bytes(8, "big") + b"\x01" + bytes(8))
    ch.send("alice", VERIFY_HASH_KIND, bytes(7))
    with pytest.raises(ProtocolAbort, match="malformed"):
        verify_check(ch, [0, 1])
