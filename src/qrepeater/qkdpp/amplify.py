"""Privacy amplification by Toeplitz hashing, computed exactly with the FFT.

Random binary Toeplitz matrices ``T`` (``l x n``, ``T[i, j] = s[i - j + n - 1]``, seed ``s`` of
``n + l - 1`` uniform bits) form a 2-universal family (Carter & Wegman, JCSS 18, 143 (1979);
Mansour, Nisan & Tiwari, STOC 1990; Krawczyk, CRYPTO 1994), so by the leftover hash lemma with
quantum side information (Renner, PhD thesis 2005; Tomamichel et al., IEEE TIT 57, 5524 (2011))
``y = T x mod 2`` is ``eps``-close to uniform and independent of Eve when ``l`` comes from the
finite-key bound. The output length is an input here, never exceeded.

``T x`` is the middle of the linear convolution ``s * x``; over the integers its entries are at
most ``n``, so it can be computed with a floating-point FFT and rounded, then reduced mod 2
(Hayashi & Tsurumaru, IEEE TIT 62, 2213 (2016) discuss FFT implementations). See
:func:`toeplitz_hash` for the chunking and for the proof that the rounding is exact.

Alice draws the seed (:mod:`secrets`, or a seeded ``numpy.random.Generator`` in tests), sends it
over the (authenticated) channel as kind :data:`PA_SEED_KIND`, and both parties hash.
"""

from __future__ import annotations

import math
import secrets
import struct
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view

from qrepeater.errors import ParameterError, ProtocolAbort
from qrepeater.qkdpp.channel import Channel, Party, pack_bits, unpack_bits

__all__ = [
    "FFT_EXACTNESS_MARGIN",
    "PA_SEED_KIND",
    "AmplifiedKey",
    "amplify_keys",
    "amplify_receive",
    "amplify_send",
    "fft_error_bound",
    "random_bits",
    "toeplitz_hash",
    "toeplitz_hash_dense",
    "toeplitz_matrix",
    "toeplitz_seed_length",
]

PA_SEED_KIND = "pa.seed"
"""Message kind of the Toeplitz seed (public, independent of the key: not leakage)."""

FFT_EXACTNESS_MARGIN = 2.0**-12
"""Largest a-priori FFT error bound accepted (rounding needs < 1/2: a safety factor of 2048)."""

_EPS = 2.0**-53  # unit roundoff of IEEE double
_TWIDDLE_ERR = 2.0**-50  # assumed |computed - exact| of the FFT's twiddle factors (8 ulp)
_HEADER = struct.Struct(">QQ")

BitArray = npt.NDArray[np.uint8]


@dataclass(frozen=True, eq=False)
class AmplifiedKey:
    """Output of privacy amplification for one party (the key bits are hidden from ``repr``)."""

    key: BitArray = field(repr=False)
    n_in: int
    n_out: int
    seed_bits: int

    def __post_init__(self) -> None:
        if self.key.shape != (self.n_out,) or not 1 <= self.n_out <= self.n_in:
            raise ParameterError("inconsistent amplified key")
        if self.seed_bits != toeplitz_seed_length(self.n_in, self.n_out):
            raise ParameterError("seed length does not match n_in + n_out - 1")


def _as_bits(bits: npt.ArrayLike, name: str) -> BitArray:
    arr = np.asarray(bits).ravel()
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if arr.dtype == np.uint8:
        if arr.size and int(arr.max()) > 1:
            raise ParameterError(f"{name} must contain only 0 and 1")
        return arr
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ParameterError(f"{name} must contain only 0 and 1")
    return arr.astype(np.uint8, copy=False)


def toeplitz_seed_length(n_in: int, n_out: int) -> int:
    """Seed bits of an ``n_out x n_in`` Toeplitz matrix: ``n_in + n_out - 1``."""
    _check_sizes(n_in, n_out)
    return n_in + n_out - 1


def _check_sizes(n_in: int, n_out: int) -> None:
    if n_in < 1:
        raise ParameterError(f"input length must be >= 1, got {n_in}")
    if not 1 <= n_out <= n_in:
        raise ParameterError(f"output length must be in 1..{n_in}, got {n_out}")


def random_bits(n_bits: int, *, rng: np.random.Generator | None = None) -> BitArray:
    """``n_bits`` uniform bits from :mod:`secrets` (real keys) or from ``rng`` (tests)."""
    if n_bits < 0:
        raise ParameterError(f"n_bits must be >= 0, got {n_bits}")
    n_bytes = -(-n_bits // 8)
    raw = secrets.token_bytes(n_bytes) if rng is None else rng.bytes(n_bytes)
    return np.unpackbits(np.frombuffer(raw, dtype=np.uint8), count=n_bits)


def toeplitz_matrix(seed: npt.ArrayLike, *, n_in: int, n_out: int) -> BitArray:
    """Explicit ``n_out x n_in`` matrix ``T[i, j] = seed[i - j + n_in - 1]`` (read-only view)."""
    s = _as_bits(seed, "seed")
    if s.size != toeplitz_seed_length(n_in, n_out):
        raise ParameterError(f"seed must have n_in + n_out - 1 = {n_in + n_out - 1} bits")
    # Row i is reversed(s)[n_out-1-i : n_out-1-i+n_in].
    windows: BitArray = sliding_window_view(s[::-1], n_in)
    return windows[::-1]


def toeplitz_hash_dense(key: npt.ArrayLike, seed: npt.ArrayLike, *, n_out: int) -> BitArray:
    """Reference ``T x mod 2`` by the explicit matrix (``O(n l)`` time; tests and benchmarks)."""
    x = _as_bits(key, "key")
    t = toeplitz_matrix(seed, n_in=x.size, n_out=n_out)
    counts: npt.NDArray[np.int64] = np.bitwise_and(t, x).sum(axis=1, dtype=np.int64)
    parity: BitArray = (counts & 1).astype(np.uint8)
    return parity


def fft_error_bound(*, fft_size: int, norm_product_sum: float, n_terms: int = 1) -> float:
    """A-priori bound on ``max |computed - exact|`` of an FFT convolution sum.

    Percival (Math. Comp. 72, 387 (2003), Thm. 5.1; also Brent & Zimmermann, *Modern Computer
    Arithmetic*, Thm. 3.3.2): a length-``2^m`` FFT convolution of ``x`` and ``y`` in binary64
    with twiddles accurate to ``beta`` errs by less than
    ``|x| |y| ((1+eps)^(3m) (1+eps sqrt5)^(3m+1) (1+beta)^(3m) - 1)`` in every entry
    (Euclidean norms). Summing ``n_terms`` products in the frequency domain adds at most
    ``(1+eps)^n_terms`` to the factor and the norms add by the triangle inequality, so
    ``norm_product_sum = sum_q |x_q| |y_q|``.
    """
    m = math.log2(fft_size)
    if fft_size < 2 or m != int(m):
        raise ParameterError(f"fft_size must be a power of two >= 2, got {fft_size}")
    log_factor = (
        (3 * m + n_terms) * math.log1p(_EPS)
        + (3 * m + 1) * math.log1p(_EPS * math.sqrt(5.0))
        + 3 * m * math.log1p(_TWIDDLE_ERR)
    )
    return norm_product_sum * math.expm1(log_factor)


def _plan(n: int, n_out: int) -> tuple[int, int, int]:
    """FFT size ``M`` (power of two), chunk length ``c`` and chunk count ``Q`` of least work."""
    best: tuple[float, int, int, int] | None = None
    m = max(1, math.ceil(math.log2(n_out + 1)))
    while True:
        size = 1 << m
        chunk = min(size - n_out + 1, n)
        chunks = -(-n // chunk)
        cost = (2 * chunks + 1) * size * m
        if best is None or cost < best[0]:
            best = (cost, size, chunk, chunks)
        if chunks == 1:
            break
        m += 1
    return best[1], best[2], best[3]


def toeplitz_hash(key: npt.ArrayLike, seed: npt.ArrayLike, *, n_out: int) -> BitArray:
    """``T x mod 2`` for the Toeplitz matrix of ``seed``, by chunked real FFTs, exactly.

    Method. With ``y_i = sum_j s[i - j + n - 1] x_j``, cut ``x`` (front-padded with zeros to
    ``Q c`` bits, ``s`` back-padded alike, which leaves every ``y_i`` unchanged) into ``Q``
    chunks of ``c`` bits. Chunk ``q`` only meets the seed window ``w_q`` of ``c + l - 1`` bits
    starting at ``(Q - q - 1) c``, and ``y_i = sum_q (x_q * w_q)[i + c - 1]``. A cyclic
    convolution of size ``M >= c + l - 1`` has no wrap-around at those indices (they satisfy
    ``0 <= i + c - 1 - u <= c + l - 2 < M`` for every chunk offset ``u``), so
    ``y = irfft(sum_q rfft(x_q) rfft(w_q))[c-1 : c-1+l]`` over the integers.

    Exactness. The exact values are integers in ``[0, n]``, all exactly representable. By
    :func:`fft_error_bound` the computed values differ from them by less than
    ``B = sum_q |x_q| |w_q| * (about 9 log2(M) eps)``; with 0/1 entries ``|x_q| |w_q| <=
    sqrt(c (c + l))``, so for ``n = 10^7`` ``B ~ 10^-6``. Whenever ``B < 1/2`` rounding to the
    nearest integer returns the exact integer, and its parity is ``T x mod 2``. We require
    ``B <= FFT_EXACTNESS_MARGIN = 2^-12`` (checked on every call, from the actual Hamming weights),
    which also absorbs any constant lost by pocketfft's radix-4 real transforms relative to the
    radix-2 model of the theorem; as a second line of defence every output must lie within 1/4 of
    an integer, else ``ArithmeticError`` is raised instead of returning a key.
    """
    x = _as_bits(key, "key")
    s = _as_bits(seed, "seed")
    return _toeplitz_fft(x, s, int(n_out))[0]


def _toeplitz_fft(x: BitArray, s: BitArray, n_out: int) -> tuple[BitArray, float, float]:
    """Core of :func:`toeplitz_hash`: returns (bits, a-priori error bound, max residual)."""
    n = int(x.size)
    _check_sizes(n, n_out)
    if s.size != n + n_out - 1:
        raise ParameterError(
            f"seed must have {n + n_out - 1} bits (n_in + n_out - 1), got {s.size}"
        )
    size, chunk, chunks = _plan(n, n_out)
    pad = chunks * chunk - n
    spectrum = np.zeros(size // 2 + 1, dtype=np.complex128)
    seg_len = chunk + n_out - 1
    norm_sum = 0.0
    for q in range(chunks):
        x_lo, x_hi = max(q * chunk - pad, 0), (q + 1) * chunk - pad
        xq = x[x_lo:x_hi]
        wx = int(np.count_nonzero(xq))
        if wx == 0:
            continue
        s_lo = (chunks - q - 1) * chunk
        sq = s[s_lo : min(s_lo + seg_len, s.size)]
        norm_sum += math.sqrt(wx * int(np.count_nonzero(sq)))
        if xq.size < chunk:  # first chunk: the zero front padding keeps its place
            xq = np.concatenate([np.zeros(chunk - xq.size, dtype=np.uint8), xq])
        # rfft zero-pads to ``size`` itself (exactly: 0/1 values convert to binary64 exactly).
        fx = scipy.fft.rfft(xq, n=size, workers=1)
        fx *= scipy.fft.rfft(sq, n=size, workers=1)
        spectrum += fx
    if norm_sum == 0.0:
        return np.zeros(n_out, dtype=np.uint8), 0.0, 0.0
    bound = fft_error_bound(fft_size=size, norm_product_sum=norm_sum, n_terms=chunks)
    if bound > FFT_EXACTNESS_MARGIN:
        raise ParameterError(f"input too long for exact FFT hashing (error bound {bound:.2g})")
    z = scipy.fft.irfft(spectrum, n=size, workers=1)[chunk - 1 : chunk - 1 + n_out]
    rounded = np.rint(z)
    residual = float(np.max(np.abs(z - rounded)))
    if residual > 0.25:
        raise ArithmeticError(f"FFT rounding residual {residual:.3g} > 1/4; refusing the output")
    return (rounded.astype(np.int64) & 1).astype(np.uint8), bound, residual


def _header(n_in: int, n_out: int) -> bytes:
    return _HEADER.pack(n_in, n_out)


def amplify_send(
    channel: Channel,
    key: npt.ArrayLike,
    *,
    output_bits: int,
    party: Party = "alice",
    rng: np.random.Generator | None = None,
) -> AmplifiedKey:
    """Seed-choosing side: draw the seed, send it (kind ``pa.seed``), hash ``key``.

    ``output_bits`` comes from the finite-key bound; exactly that many bits are returned.
    The seed is drawn with :mod:`secrets` unless ``rng`` is given (tests only).
    """
    x = _as_bits(key, "key")
    _check_sizes(x.size, output_bits)
    seed = random_bits(toeplitz_seed_length(x.size, output_bits), rng=rng)
    packed, n_seed = pack_bits(seed)
    channel.send(
        party, PA_SEED_KIND, _header(x.size, output_bits) + packed, bits=8 * _HEADER.size + n_seed
    )
    out = toeplitz_hash(x, seed, n_out=output_bits)
    return AmplifiedKey(key=out, n_in=x.size, n_out=output_bits, seed_bits=n_seed)


def amplify_receive(
    channel: Channel, key: npt.ArrayLike, *, output_bits: int, party: Party = "bob"
) -> AmplifiedKey:
    """Other side: receive the seed, check the agreed lengths, hash ``key``.

    Raises :class:`~qrepeater.errors.ProtocolAbort` (reason ``"amplification"``) if the sender's
    input or output length differs from this party's.
    """
    x = _as_bits(key, "key")
    _check_sizes(x.size, output_bits)
    payload = channel.receive(party, PA_SEED_KIND)
    if len(payload) < _HEADER.size:
        raise ProtocolAbort("amplification", "privacy-amplification seed message too short")
    n_in, n_out = _HEADER.unpack_from(payload)
    if (n_in, n_out) != (x.size, output_bits):
        raise ProtocolAbort(
            "amplification",
            f"length mismatch: peer hashes {n_in} -> {n_out} bits, we {x.size} -> {output_bits}",
        )
    n_seed = toeplitz_seed_length(n_in, n_out)
    body = payload[_HEADER.size :]
    if len(body) != -(-n_seed // 8):
        raise ProtocolAbort("amplification", "privacy-amplification seed has the wrong length")
    seed = unpack_bits(body, n_seed)
    out = toeplitz_hash(x, seed, n_out=output_bits)
    return AmplifiedKey(key=out, n_in=n_in, n_out=n_out, seed_bits=n_seed)


def amplify_keys(
    channel: Channel,
    alice_key: npt.ArrayLike,
    bob_key: npt.ArrayLike,
    *,
    output_bits: int,
    rng: np.random.Generator | None = None,
) -> tuple[AmplifiedKey, AmplifiedKey]:
    """Run both sides in one process (Alice sends the seed, Bob receives it)."""
    alice = amplify_send(channel, alice_key, output_bits=output_bits, rng=rng)
    bob = amplify_receive(channel, bob_key, output_bits=output_bits)
    return alice, bob
