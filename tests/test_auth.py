"""Tests of Wegman-Carter authentication: GF(2^64), the polynomial hash, the key pool and the
authenticated channel under an active adversary (tamper, replay, reorder, drop, inject)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrepeater.errors import AuthenticationError, ParameterError, ProtocolAbort
from qrepeater.qkdpp.auth import (
    GF64_MODULUS,
    AuthParams,
    KeyPool,
    PolyHash64,
    WegmanCarterMAC,
    authenticated_data,
    gf64_mul,
    gf64_pow,
)
from qrepeater.qkdpp.channel import (
    AuthenticatedChannel,
    Channel,
    Frame,
    Party,
    PublicChannel,
)

u64 = st.integers(min_value=0, max_value=2**64 - 1)
FAST = settings(max_examples=40, deadline=None)


# --- independent reference arithmetic (plain GF(2)[x] polynomials as Python ints) --------------


def clmul(a: int, b: int) -> int:
    out = 0
    i = 0
    while b >> i:
        if (b >> i) & 1:
            out ^= a << i
        i += 1
    return out


def polymod(a: int, m: int) -> int:
    dm = m.bit_length() - 1
    while a.bit_length() - 1 >= dm:
        a ^= m << (a.bit_length() - 1 - dm)
    return a


def polygcd(a: int, b: int) -> int:
    while b:
        a, b = b, polymod(a, b)
    return a


def x_pow_2k_mod(k: int, m: int) -> int:
    """x^(2^k) mod m by repeated squaring."""
    r = 2  # the polynomial x
    for _ in range(k):
        r = polymod(clmul(r, r), m)
    return r


def reference_hash(key: int, data: bytes, n_bits: int) -> int:
    """Definition: blocks B_1..B_{d-1} (big-endian, zero padded) and B_d = n_bits,
    h = sum_i B_i key^(d-i+1), with the field product computed as clmul + reduction."""
    n_words = -(-n_bits // 64)
    bits = int.from_bytes(data, "big") >> (8 * len(data) - n_bits) if n_bits else 0
    padded = bits << (64 * n_words - n_bits)
    blocks = [(padded >> (64 * (n_words - 1 - i))) & (2**64 - 1) for i in range(n_words)]
    blocks.append(n_bits)
    d = len(blocks)
    h = 0
    for i, b in enumerate(blocks, start=1):
        p = 1
        for _ in range(d - i + 1):
            p = polymod(clmul(p, key), GF64_MODULUS)
        h ^= polymod(clmul(b, p), GF64_MODULUS)
    return h


# --- GF(2^64) ---------------------------------------------------------------------------------


def test_modulus_is_irreducible() -> None:
    # Rabin's test: f of degree 64 is irreducible iff x^(2^64) = x mod f and
    # gcd(x^(2^32) - x, f) = 1 (64 has the single prime factor 2).
    assert x_pow_2k_mod(64, GF64_MODULUS) == 2
    assert polygcd(GF64_MODULUS, x_pow_2k_mod(32, GF64_MODULUS) ^ 2) == 1


@FAST
@given(u64, u64, u64)
def test_field_axioms_and_reference(a: int, b: int, c: int) -> None:
    assert gf64_mul(a, b) == polymod(clmul(a, b), GF64_MODULUS)
    assert gf64_mul(a, b) == gf64_mul(b, a)
    assert gf64_mul(gf64_mul(a, b), c) == gf64_mul(a, gf64_mul(b, c))
    assert gf64_mul(a, b ^ c) == gf64_mul(a, b) ^ gf64_mul(a, c)
    assert gf64_mul(a, 1) == a
    if a:  # Fermat: a^(2^64 - 1) = 1
        assert gf64_pow(a, 2**64 - 1) == 1


def test_field_rejects_out_of_range() -> None:
    with pytest.raises(ParameterError):
        gf64_mul(2**64, 1)
    with pytest.raises(ParameterError):
        gf64_pow(3, -1)
    with pytest.raises(ParameterError):
        PolyHash64(-1)


# --- polynomial hash --------------------------------------------------------------------------


@FAST
@given(u64, st.binary(max_size=1400), st.data())
def test_hash_matches_definition(key: int, data: bytes, draw: st.DataObject) -> None:
    n_bits = draw.draw(st.integers(0, 8 * len(data)))
    assert PolyHash64(key).digest(data, n_bits=n_bits) == reference_hash(key, data, n_bits)


@pytest.mark.parametrize("n_blocks", [127, 128, 129, 130, 1000, 9000])
def test_lane_evaluation_boundaries(n_blocks: int) -> None:
    rng = np.random.default_rng(n_blocks)
    key = int(rng.integers(0, 2**64, dtype=np.uint64))
    data = rng.bytes(8 * (n_blocks - 1))
    h = PolyHash64(key)
    words = [int.from_bytes(data[i : i + 8], "big") for i in range(0, len(data), 8)]
    words.append(8 * len(data))
    acc = 0
    for w in words:  # Horner with the bit-serial reference multiplication
        acc = gf64_mul(acc ^ w, key)
    assert h.digest(data) == acc
    assert h.digest(data) == acc  # cached lane tables give the same result


def test_hash_ignores_padding_and_binds_length() -> None:
    h = PolyHash64(0x0123456789ABCDEF)
    assert h.digest(b"\xf0", n_bits=4) == h.digest(b"\xff", n_bits=4)
    assert h.digest(b"\x00", n_bits=8) != h.digest(b"\x00", n_bits=7)
    assert h.digest(b"\x00" * 8) != h.digest(b"\x00" * 16)
    assert PolyHash64.n_blocks(0) == 1
    assert PolyHash64.n_blocks(64) == 2
    assert PolyHash64.n_blocks(65) == 3
    assert PolyHash64.collision_bound(10**6) == (15625 + 1) / 2.0**64
    with pytest.raises(ParameterError):
        h.digest(b"\x00", n_bits=9)
    assert "hidden" in repr(h)
    assert "0123456789" not in repr(h).upper()


@FAST
@given(u64, st.binary(min_size=1, max_size=300), st.data())
def test_hash_is_linear_in_equal_length_messages(key: int, a: bytes, draw: st.DataObject) -> None:
    b = draw.draw(st.binary(min_size=len(a), max_size=len(a)))
    h = PolyHash64(key)
    xor = bytes(x ^ y for x, y in zip(a, b, strict=True))
    zero = bytes(len(a))
    assert h.digest(xor) == h.digest(a) ^ h.digest(b) ^ h.digest(zero)


# --- key pool ---------------------------------------------------------------------------------


def test_key_pool_takes_bits_in_order_and_accounts() -> None:
    key = bytes([0b10110011, 0b01011100, 0xFF])
    pool = KeyPool(key, n_bits=20)
    assert pool.take(3, purpose="a") == 0b101
    assert pool.take(9, purpose="b") == 0b100110101
    sub = pool.split(6, purpose="c")
    assert sub.capacity_bits == 6
    assert sub.take(6, purpose="x") == 0b110011
    assert pool.consumed_bits == 18
    assert pool.remaining_bits == 2
    assert pool.usage == {"a": 3, "b": 9, "c": 6}
    with pytest.raises(AuthenticationError, match="exhausted"):
        pool.take(3, purpose="d")
    assert pool.take(2, purpose="d") == 0b11
    assert pool.remaining_bits == 0


def test_key_pool_copy_random_and_repr() -> None:
    a1, b1 = KeyPool.shared_pair(256, rng=np.random.default_rng(7))
    a2, _ = KeyPool.shared_pair(256, rng=np.random.default_rng(7))
    assert a1 is not b1
    values = [a1.take(64, purpose="t") for _ in range(4)]
    assert values == [b1.take(64, purpose="t") for _ in range(4)]
    assert values == [a2.take(64, purpose="t") for _ in range(4)]
    secret = KeyPool.random(128)  # secrets-backed
    assert secret.capacity_bits == 128
    pool = KeyPool(bytes.fromhex("deadbeefcafebabe"))
    text = repr(pool)
    assert "hidden" in text
    assert "dead" not in text.lower()
    assert "cafe" not in text.lower()
    with pytest.raises(ParameterError):
        KeyPool(b"\x00", n_bits=9)
    with pytest.raises(ParameterError):
        KeyPool.random(-1)


# --- parameters -------------------------------------------------------------------------------


def test_auth_params_bounds_and_sizing() -> None:
    p = AuthParams()
    assert p.tag_bits == 64
    assert p.hash_key_bits == 64
    assert 2**-44 < p.forge_probability < 2**-42  # about 2^21 blocks of 2^64
    assert p.eps_auth(10) == pytest.approx(10 * p.forge_probability)
    p2 = AuthParams(tag_words=2)
    assert p2.forge_probability == pytest.approx(p.forge_probability**2)
    for a, b, share in [(0, 0, 0.5), (5, 1, 0.5), (3, 40, 0.2), (17, 17, 0.9)]:
        params = AuthParams(alice_share=share)
        bits = params.key_bits_required(alice_messages=a, bob_messages=b)
        ab, ba = params.pad_slots(bits)
        assert ab >= a
        assert ba >= b
    for bad in ({"tag_words": 0}, {"max_payload_bytes": 0}, {"alice_share": 1.0}):
        with pytest.raises(ParameterError):
            AuthParams(**bad)


def test_authenticated_data_is_injective_on_fields() -> None:
    base = {"sender": "alice", "counter": 3, "kind": "ec", "bits": 16, "payload": b"ab"}
    variants = [
        {**base, "sender": "bob"},
        {**base, "counter": 4},
        {**base, "kind": "ec2"},
        {**base, "kind": "e", "payload": b"cab"},
        {**base, "bits": 15},
        {**base, "payload": b"ab\x00"},
    ]
    encodings = {authenticated_data(**v) for v in [base, *variants]}  # type: ignore[arg-type]
    assert len(encodings) == len(variants) + 1


def test_mac_direction_roundtrip() -> None:
    params = AuthParams()
    key = np.random.default_rng(1).bytes(64)
    sender = WegmanCarterMAC([11], KeyPool(key), params=params)
    receiver = WegmanCarterMAC([11], KeyPool(key), params=params)
    counter, tag = sender.tag(sender="alice", kind="k", bits=8, payload=b"x")
    assert counter == 0
    assert len(tag) == 8
    receiver.verify(sender="alice", kind="k", bits=8, payload=b"x", tag=tag)
    assert sender.counter == receiver.counter == 1
    _, tag = sender.tag(sender="alice", kind="k", bits=8, payload=b"x")
    with pytest.raises(AuthenticationError):
        receiver.verify(sender="alice", kind="k", bits=8, payload=b"y", tag=tag)


# --- authenticated channel --------------------------------------------------------------------


def make_channel(
    adversary: object = None, *, n_bits: int = 8192, seed: int = 0, **kw: object
) -> AuthenticatedChannel:
    rng = np.random.default_rng(seed)
    return AuthenticatedChannel.with_shared_key(
        n_bits,
        rng=rng,
        adversary=adversary,  # type: ignore[arg-type]
        params=AuthParams(**kw),  # type: ignore[arg-type]
    )


def test_honest_exchange_matches_public_channel() -> None:
    script: list[tuple[Party, str, bytes, int | None]] = [
        ("alice", "ec.syndrome", b"\x01\x02\x03", 20),
        ("bob", "ec.ack", b"\x01", 1),
        ("alice", "verify.hash", bytes(range(16)), None),
        ("alice", "pa.seed", b"", None),
        ("bob", "done", b"ok", None),
    ]
    channels: list[Channel] = [PublicChannel(), make_channel()]
    for ch in channels:
        for sender, kind, payload, bits in script:
            ch.send(sender, kind, payload, bits=bits)
            receiver: Party = "bob" if sender == "alice" else "alice"
            assert ch.receive(receiver, kind) == payload
    pub, auth = channels
    for prefix in (None, "ec", "verify", "pa"):
        for who in (None, "alice", "bob"):
            assert auth.bits_sent(prefix=prefix, sender=who) == pub.bits_sent(
                prefix=prefix, sender=who
            )
    assert isinstance(auth, AuthenticatedChannel)
    assert auth.tag_bits_sent() == 5 * 64
    assert auth.tag_bits_sent(sender="bob") == 2 * 64
    rep = auth.report("alice")
    assert (rep.tags_sent, rep.tags_verified) == (3, 2)
    assert rep.key_bits_consumed == 2 * 64 + 5 * 64
    assert auth.eps_auth == pytest.approx(5 * auth.params.forge_probability)
    assert "hidden" not in repr(auth)
    assert "eps_auth" in repr(auth)


def test_interleaved_sends_consume_pads_consistently() -> None:
    ch = make_channel()
    ch.send("alice", "a0", b"x")
    ch.send("bob", "b0", b"y")  # both send before either receives
    ch.send("alice", "a1", b"z")
    assert ch.receive("alice", "b0") == b"y"
    assert ch.receive("bob", "a0") == b"x"
    assert ch.receive("bob", "a1") == b"z"


def test_two_tag_words() -> None:
    ch = make_channel(tag_words=2)
    ch.send("alice", "k", b"payload")
    assert ch.in_flight["bob"][0].tag.__len__() == 16
    assert ch.receive("bob", "k") == b"payload"


def _script(n: int) -> list[tuple[Party, bytes]]:
    rng = np.random.default_rng(n)
    return [
        ("alice" if rng.random() < 0.6 else "bob", rng.bytes(int(rng.integers(0, 40))))
        for _ in range(n)
    ]


def _flip(frame: Frame, field: str, bit: int) -> Frame:
    if field == "payload" and frame.payload:
        b = bytearray(frame.payload)
        b[(bit // 8) % len(b)] ^= 1 << (bit % 8)
        return dataclasses.replace(frame, payload=bytes(b))
    if field == "kind":
        chars = list(frame.kind)
        i = (bit // 7) % len(chars)
        chars[i] = chr(ord(chars[i]) ^ (1 << (bit % 7)))
        return dataclasses.replace(frame, kind="".join(chars))
    if field == "bits":
        return dataclasses.replace(frame, bits=frame.bits ^ (1 << (bit % 8)))
    if field == "counter":
        return dataclasses.replace(frame, counter=frame.counter ^ (1 << (bit % 16)))
    if field == "sender":
        return dataclasses.replace(frame, sender="bob" if frame.sender == "alice" else "alice")
    t = bytearray(frame.tag)
    t[(bit // 8) % len(t)] ^= 1 << (bit % 8)
    return dataclasses.replace(frame, tag=bytes(t))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 6),
    data=st.data(),
    field=st.sampled_from(["payload", "tag", "kind", "bits", "counter", "sender"]),
    bit=st.integers(0, 10_000),
)
def test_flipping_any_bit_in_flight_aborts(
    n: int, data: st.DataObject, field: str, bit: int
) -> None:
    script = _script(n)
    target = data.draw(st.integers(0, n - 1))
    sent = 0

    def adversary(frame: Frame) -> Iterable[Frame]:
        nonlocal sent
        sent += 1
        return [_flip(frame, field, bit) if sent - 1 == target else frame]

    ch = make_channel(adversary, seed=n)
    for i, (sender, payload) in enumerate(script):
        ch.send(sender, f"m{i}", payload)
        receiver: Party = "bob" if sender == "alice" else "alice"
        if i < target:
            assert ch.receive(receiver, f"m{i}") == payload
        else:
            with pytest.raises(AuthenticationError):
                ch.receive(receiver, f"m{i}")
            with pytest.raises(AuthenticationError, match="aborted"):
                ch.receive(receiver, f"m{i}")  # the receiver stays aborted
            break


@settings(max_examples=30, deadline=None)
@given(attack=st.sampled_from(["replay", "reorder", "drop", "drop_last", "inject", "reflect"]))
def test_replay_reorder_drop_inject_abort(attack: str) -> None:
    held: list[Frame] = []
    count = 0

    def adversary(frame: Frame) -> Iterable[Frame]:
        nonlocal count
        count += 1
        if attack == "replay" and count == 1:
            return [frame, frame]
        if attack == "reorder" and count == 1:
            held.append(frame)
            return []
        if attack == "reorder" and count == 2:
            return [frame, *held]
        if attack in ("drop", "drop_last") and count == 1:
            return []
        if attack == "inject" and count == 1:
            forged = dataclasses.replace(frame, counter=1, tag=bytes(8))
            return [frame, forged]
        return [frame]

    ch = make_channel(adversary)
    ch.send("alice", "m", b"first")
    if attack != "drop_last":
        ch.send("alice", "m", b"second")
    if attack == "reflect":
        ch.in_flight["alice"].append(ch.in_flight["bob"].popleft())
        with pytest.raises(AuthenticationError):
            ch.receive("alice", "m")
        return
    if attack in ("replay", "inject"):
        assert ch.receive("bob", "m") == b"first"
    with pytest.raises(AuthenticationError):
        ch.receive("bob", "m")


def test_replay_of_old_message_later_aborts() -> None:
    log: list[Frame] = []

    def recorder(frame: Frame) -> Iterable[Frame]:
        log.append(frame)
        return [frame]

    ch = make_channel(recorder)
    ch.send("alice", "m", b"a")
    assert ch.receive("bob", "m") == b"a"
    ch.in_flight["bob"].append(dataclasses.replace(log[0], counter=1))  # old tag, new counter
    with pytest.raises(AuthenticationError):
        ch.receive("bob", "m")


def test_pool_exhaustion_aborts() -> None:
    params = AuthParams()
    bits = params.key_bits_required(alice_messages=3, bob_messages=3)
    ch = AuthenticatedChannel.with_shared_key(bits, rng=np.random.default_rng(3))
    for i in range(3):
        ch.send("alice", "m", bytes([i]))
        assert ch.receive("bob", "m") == bytes([i])
    with pytest.raises(AuthenticationError, match="exhausted"):
        ch.send("alice", "m", b"one too many")
    with pytest.raises(AuthenticationError, match="exhausted"):
        AuthenticatedChannel.with_shared_key(100, rng=np.random.default_rng(3))


def test_mismatched_pools_abort_and_same_pool_object_rejected() -> None:
    a = KeyPool.random(4096, rng=np.random.default_rng(1))
    b = KeyPool.random(4096, rng=np.random.default_rng(2))
    ch = AuthenticatedChannel(a, b)
    ch.send("alice", "m", b"hi")
    with pytest.raises(AuthenticationError):
        ch.receive("bob", "m")
    with pytest.raises(ParameterError):
        AuthenticatedChannel(a, a)


def test_wrong_kind_is_protocol_abort_not_auth_error() -> None:
    ch = make_channel()
    ch.send("alice", "ec", b"x")
    with pytest.raises(ProtocolAbort) as info:
        ch.receive("bob", "pa")
    assert info.value.reason == "channel"
    assert not isinstance(info.value, AuthenticationError)


def test_oversized_payload_rejected() -> None:
    ch = make_channel(max_payload_bytes=16)
    with pytest.raises(ParameterError):
        ch.send("alice", "m", bytes(17))
    ch.send("alice", "m", bytes(16))
    frame = ch.in_flight["bob"].popleft()
    ch.in_flight["bob"].append(dataclasses.replace(frame, payload=bytes(17), bits=8))
    with pytest.raises(AuthenticationError, match="longer"):
        ch.receive("bob", "m")
