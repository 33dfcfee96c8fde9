"""Tests of Toeplitz privacy amplification: the FFT product equals the dense matrix product mod 2
(hypothesis), exact universality on a tiny family, large-size spot checks, and the two-party
exchange over a (possibly authenticated) channel."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrepeater.errors import AuthenticationError, ParameterError, ProtocolAbort
from qrepeater.qkdpp.amplify import (
    FFT_EXACTNESS_MARGIN,
    PA_SEED_KIND,
    _plan,
    _toeplitz_fft,
    amplify_keys,
    amplify_receive,
    amplify_send,
    fft_error_bound,
    random_bits,
    toeplitz_hash,
    toeplitz_hash_dense,
    toeplitz_matrix,
)
from qrepeater.qkdpp.channel import AuthenticatedChannel, Frame, PublicChannel


def explicit_product(key: np.ndarray, seed: np.ndarray, n_out: int) -> np.ndarray:
    n = key.size
    t = np.empty((n_out, n), dtype=np.int64)
    for i in range(n_out):
        for j in range(n):
            t[i, j] = seed[i - j + n - 1]
    return (t @ key.astype(np.int64)) % 2


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 160),
    frac=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
    density=st.sampled_from([0.02, 0.5, 0.98]),
)
def test_fft_equals_dense_product(n: int, frac: float, seed: int, density: float) -> None:
    n_out = max(1, round(frac * n))
    rng = np.random.default_rng(seed)
    key = (rng.random(n) < density).astype(np.uint8)
    s = (rng.random(n + n_out - 1) < density).astype(np.uint8)
    expected = explicit_product(key, s, n_out)
    out = toeplitz_hash(key, s, n_out=n_out)
    assert out.dtype == np.uint8
    assert out.shape == (n_out,)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(toeplitz_hash_dense(key, s, n_out=n_out), expected)
    np.testing.assert_array_equal(
        toeplitz_matrix(s, n_in=n, n_out=n_out).astype(np.int64) @ key % 2, expected
    )


@pytest.mark.parametrize(("n", "n_out"), [(3000, 100), (5000, 700), (4096, 4096), (4097, 1)])
def test_chunked_path_extremes_against_dense(n: int, n_out: int) -> None:
    rng = np.random.default_rng(n)
    for key, s in [
        (np.ones(n, np.uint8), np.ones(n + n_out - 1, np.uint8)),  # largest integer sums
        (random_bits(n, rng=rng), random_bits(n + n_out - 1, rng=rng)),
        (np.zeros(n, np.uint8), random_bits(n + n_out - 1, rng=rng)),
    ]:
        np.testing.assert_array_equal(
            toeplitz_hash(key, s, n_out=n_out), toeplitz_hash_dense(key, s, n_out=n_out)
        )
    assert _plan(3000, 100)[2] > 1  # several chunks are exercised


def test_large_input_spot_checks_and_error_bound() -> None:
    rng = np.random.default_rng(11)
    n, n_out = 1 << 20, 1 << 17
    key, s = random_bits(n, rng=rng), random_bits(n + n_out - 1, rng=rng)
    out, bound, residual = _toeplitz_fft(key, s, n_out)
    assert bound < 1e-6 < FFT_EXACTNESS_MARGIN
    assert residual < 1e-6
    t = toeplitz_matrix(s, n_in=n, n_out=n_out)
    for i in rng.integers(0, n_out, 24):
        assert out[i] == int(np.bitwise_and(t[i], key).sum()) & 1


def test_toeplitz_family_is_exactly_universal() -> None:
    # For every non-zero z, exactly 2^(n-1) of the 2^(n+l-1) seeds give T z = 0 (Pr = 2^-l).
    n, n_out = 5, 3
    seeds = [np.array(b, dtype=np.uint8) for b in itertools.product([0, 1], repeat=n + n_out - 1)]
    for z in itertools.product([0, 1], repeat=n):
        if not any(z):
            continue
        zero = sum(not toeplitz_hash(np.array(z, np.uint8), s, n_out=n_out).any() for s in seeds)
        assert zero == 2 ** (n - 1)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 400), seed=st.integers(0, 2**32 - 1))
def test_hash_is_linear(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_out = int(rng.integers(1, n + 1))
    s = random_bits(n + n_out - 1, rng=rng)
    a, b = random_bits(n, rng=rng), random_bits(n, rng=rng)
    np.testing.assert_array_equal(
        toeplitz_hash(a ^ b, s, n_out=n_out),
        toeplitz_hash(a, s, n_out=n_out) ^ toeplitz_hash(b, s, n_out=n_out),
    )


def test_input_validation() -> None:
    s = np.zeros(12, np.uint8)
    with pytest.raises(ParameterError):
        toeplitz_hash(np.zeros(8, np.uint8), s, n_out=9)  # longer than the input
    with pytest.raises(ParameterError):
        toeplitz_hash(np.zeros(8, np.uint8), s, n_out=4)  # seed must be 11 bits
    with pytest.raises(ParameterError):
        toeplitz_hash(np.full(8, 2, np.uint8), np.zeros(11, np.uint8), n_out=4)
    with pytest.raises(ParameterError):
        toeplitz_hash([], [], n_out=1)
    with pytest.raises(ParameterError):
        toeplitz_hash(np.zeros(8, np.uint8), s[:8], n_out=0)
    assert toeplitz_hash([True, False, True], [1, 0, 1, 1], n_out=2).tolist() == [0, 1]
    with pytest.raises(ParameterError):
        fft_error_bound(fft_size=6, norm_product_sum=1.0)
    assert fft_error_bound(fft_size=2**20, norm_product_sum=1.0) < fft_error_bound(
        fft_size=2**24, norm_product_sum=1.0
    )


def test_random_bits_sources() -> None:
    a = random_bits(1001, rng=np.random.default_rng(5))
    b = random_bits(1001, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    c = random_bits(1001)  # secrets
    assert c.shape == (1001,)
    assert set(np.unique(c)) <= {0, 1}


def test_two_party_amplification() -> None:
    rng = np.random.default_rng(9)
    key = random_bits(20_000, rng=rng)
    ch = PublicChannel()
    alice, bob = amplify_keys(ch, key, key.copy(), output_bits=1234, rng=rng)
    np.testing.assert_array_equal(alice.key, bob.key)
    assert alice.key.shape == (1234,)
    assert alice.seed_bits == 20_000 + 1234 - 1
    assert ch.bits_sent(prefix=PA_SEED_KIND) == 128 + alice.seed_bits
    assert "key=" not in repr(alice)
    # secrets-backed seed over an authenticated channel
    auth = AuthenticatedChannel.with_shared_key(2048, rng=rng)
    a2, b2 = amplify_keys(auth, key, key.copy(), output_bits=99)
    np.testing.assert_array_equal(a2.key, b2.key)


def test_amplification_length_mismatch_and_tampered_seed() -> None:
    rng = np.random.default_rng(10)
    key = random_bits(1000, rng=rng)
    ch = PublicChannel()
    amplify_send(ch, key, output_bits=100, rng=rng)
    with pytest.raises(ProtocolAbort) as err:
        amplify_receive(ch, key, output_bits=101)
    assert err.value.reason == "amplification"

    def flip_seed_bit(frame: Frame) -> Iterable[Frame]:
        body = bytearray(frame.payload)
        body[-1] ^= 0x80
        return [dataclasses.replace(frame, payload=bytes(body))]

    auth = AuthenticatedChannel.with_shared_key(2048, rng=rng, adversary=flip_seed_bit)
    amplify_send(auth, key, output_bits=100, rng=rng)
    with pytest.raises(AuthenticationError):
        amplify_receive(auth, key, output_bits=100)
