"""Compiled layered belief-propagation decoder for syndrome decoding on the BSC.

Bob looks for the error pattern ``e`` with ``H e = t`` (``t`` = Alice's syndrome XOR his own)
that is most likely under independent priors ``P(e_v = 1) = p_v``. The decoder is
sum-product (product-sum) belief propagation in the log-likelihood domain with a *layered*
(row-serial, "serial-C") schedule: every check row is processed in turn and immediately updates
the posteriors of its variables, which roughly halves the iterations a flooding schedule needs
(E. Sharon, S. Litsyn, J. Goldberger, "Efficient serial message-passing schedules for LDPC
decoding", IEEE Trans. Inf. Theory 53, 4076 (2007); D. E. Hocevar, "A reduced complexity
decoder architecture via layered decoding of LDPC codes", IEEE SiPS 2004).

Check update (Gallager's form of the product-sum rule): with ``q_k = L_v - r_k`` the
variable-to-check messages of a row and ``phi(x) = -log tanh(x/2)`` (its own inverse),

    ``|r_k| = phi( sum_{j != k} phi(|q_j|) )``,
    ``sign r_k = (-1)^{t_c} prod_{j != k} sign q_j``,

and ``L_v <- q_k + r_k``. ``phi`` is read from a table indexed by ``sqrt(x)`` (fine near 0
where ``phi`` is steep, coarse in its exponential tail; relative error of the magnitudes below
1% over the range that matters), so one check update costs two table reads per edge and no
transcendental function (a finer table, ``scale``, trades cache for accuracy). Messages are
float32. After each iteration the syndrome of the hard decision is checked
and decoding stops at the first match (early termination); the check stops at the first
unsatisfied row, so it is cheap while decoding has not converged.

The decoder state (posteriors ``L``, check messages ``r``) survives a call: a blind
reconciliation round that reveals some values updates their priors in place
(:meth:`DecoderState.set_prior`) and resumes from the previous messages (warm restart) instead of
starting from scratch.

Kernels are compiled with numba (``nogil=True``: threads decode frames in parallel without
forking; ``cache=True``: compiled once per machine). Import this module lazily: importing numba
costs a few tenths of a second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Protocol

import numba
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

__all__ = [
    "PHI_SCALE",
    "DecoderState",
    "LayeredDecoder",
    "phi_table",
]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
U8 = npt.NDArray[np.uint8]


class QcCode(Protocol):
    """What :meth:`LayeredDecoder.for_code` reads from a lifted code (``codes.LdpcCode``)."""

    @property
    def H(self) -> sp.csr_matrix: ...
    @property
    def lift(self) -> int: ...
    @property
    def base_shape(self) -> tuple[int, int]: ...
    @property
    def base_rows(self) -> I64: ...
    @property
    def base_cols(self) -> I64: ...
    @property
    def shifts(self) -> I64: ...


#: Table resolution: ``phi`` is tabulated at ``x = ((i + 1/2) / PHI_SCALE)^2``.
PHI_SCALE: Final = 512.0
#: Table range: ``x < PHI_XMAX`` (``phi(24) = 7.6e-11``; beyond it the message is 0).
PHI_XMAX: Final = 24.0
#: Largest prior magnitude used for known (shortened, revealed) symbols.
LLR_KNOWN: Final = 40.0


def phi_table(scale: float = PHI_SCALE, xmax: float = PHI_XMAX) -> F32:
    """``phi(x) = log((e^x + 1)/(e^x - 1))`` at the midpoints of ``sqrt(x)`` buckets."""
    u = (np.arange(math.ceil(math.sqrt(xmax) * scale), dtype=np.float64) + 0.5) / scale
    x = u * u
    return np.log1p(2.0 / np.expm1(x)).astype(np.float32)


@numba.njit(cache=True, nogil=True, fastmath=True)
def _layered(
    row_ptr: I32,
    cols: I32,
    target: U8,
    L: F32,
    R: F32,
    max_iter: int,
    patience: int,
    table: F32,
    scale: float,
) -> tuple[int, int]:  # pragma: no cover - compiled
    """Up to ``max_iter`` layered iterations; returns ``(iterations, unsatisfied checks)``.

    Stops when the syndrome matches (0 unsatisfied) or when the number of unsatisfied checks
    has not reached a new minimum for ``patience`` iterations (a stalled decoder).
    """
    m = row_ptr.size - 1
    nt = table.size - 1
    sc = np.float32(scale)
    dmax = 1
    for c in range(m):
        dmax = max(dmax, row_ptr[c + 1] - row_ptr[c])
    qb = np.empty(dmax, dtype=np.float32)
    pb = np.empty(dmax, dtype=np.float32)
    vb = np.empty(dmax, dtype=np.uint32)
    one = np.float32(1.0)
    zero = np.float32(0.0)
    best = m + 1
    best_it = 0
    unsat = m
    for it in range(max_iter):
        for c in range(m):
            p0 = row_ptr[c]
            d = row_ptr[c + 1] - p0
            # Separate short loops (gather, phi, sign, update, scatter) let LLVM vectorise the
            # arithmetic ones; slices and unsigned column indices spare numba's negative-index
            # wraparound.
            cr = cols[p0 : p0 + d]
            Rr = R[p0 : p0 + d]
            for j in range(d):
                vb[j] = np.uint32(cr[j])
            for j in range(d):
                qb[j] = L[vb[j]] - Rr[j]
            s = zero
            for j in range(d):
                ph = table[min(int(np.sqrt(abs(qb[j])) * sc), nt)]
                pb[j] = ph
                s += ph
            sgn = one - np.float32(2.0) * np.float32(target[c])
            for j in range(d):
                sgn = sgn * (one if qb[j] >= zero else -one)
            for j in range(d):
                x = max(s - pb[j], zero)
                r = table[min(int(np.sqrt(x) * sc), nt)] * sgn
                r = r * (one if qb[j] >= zero else -one)
                Rr[j] = r
                qb[j] += r
            for j in range(d):
                L[vb[j]] = qb[j]
        unsat = 0
        for c in range(m):
            par = target[c]
            for k in range(row_ptr[c], row_ptr[c + 1]):
                par ^= np.uint8(L[cols[k]] < zero)
            unsat += par
        if unsat == 0:
            return it + 1, 0
        if unsat < best:
            best = unsat
            best_it = it
        elif it - best_it >= patience:
            return it + 1, unsat
    return max_iter, unsat


@numba.njit(cache=True, nogil=True, fastmath=True)
def _qc_layered(
    brow_ptr: I32,
    bcol: I32,
    bshift: I32,
    Z: int,
    target: U8,
    L: F32,
    R: F32,
    max_iter: int,
    patience: int,
    table: F32,
    scale: float,
) -> tuple[int, int]:  # pragma: no cover - compiled
    """:func:`_layered` for a quasi-cyclic code, one block row (``Z`` checks) at a time.

    The ``Z`` checks of a block row share no variable (each circulant is a permutation), so
    updating them together is the same layered schedule; their variables are ``Z`` contiguous
    posteriors rotated by the circulant shift, so every inner loop runs over contiguous memory
    and vectorises (the row-parallel layered architecture of QC-LDPC decoders, e.g. M. M.
    Mansour, N. R. Shanbhag, IEEE J. Solid-State Circuits 41, 684 (2006)). ``R`` holds
    ``Z`` messages per base edge; ``L`` has ``n_base * Z`` entries (columns the code dropped
    are known zeros). The syndrome is checked on the fly: each block row's parity after its own
    update is counted, and the full syndrome pass runs only when that count is zero (or at the
    last iteration), so a non-converged iteration costs no extra pass.
    """
    mb = brow_ptr.size - 1
    nt = np.int32(table.size - 1)
    sc = np.float32(scale)
    dmax = 1
    for b in range(mb):
        dmax = max(dmax, brow_ptr[b + 1] - brow_ptr[b])
    qb = np.empty(dmax * Z, dtype=np.float32)
    pb = np.empty(dmax * Z, dtype=np.float32)
    S = np.empty(Z, dtype=np.float32)
    sg = np.empty(Z, dtype=np.float32)
    ix = np.empty(Z, dtype=np.int32)
    par = np.empty(Z, dtype=np.uint8)
    one = np.float32(1.0)
    two = np.float32(2.0)
    zero = np.float32(0.0)
    best = mb * Z + 1
    best_it = 0
    unsat = mb * Z
    for it in range(max_iter):
        # checks left unsatisfied by their own update (a full syndrome pass only when zero)
        unsat = 0
        for b in range(mb):
            k0 = brow_ptr[b]
            d = brow_ptr[b + 1] - k0
            tb = target[b * Z : b * Z + Z]
            for i in range(Z):
                S[i] = zero
                sg[i] = one - two * np.float32(tb[i])
                par[i] = tb[i]
            for j in range(d):
                k = k0 + j
                base = bcol[k] * Z
                h = Z - bshift[k]
                # slices: every loop below indexes from 0 with a range variable, so numba emits
                # no negative-index wraparound and the loops vectorise (2x faster than offsets)
                q = qb[j * Z : j * Z + Z]
                p = pb[j * Z : j * Z + Z]
                Rk = R[k * Z : k * Z + Z]
                La = L[base + Z - h : base + Z]
                Lb = L[base : base + Z - h]
                q2 = q[h:]
                R2 = Rk[h:]
                ix2 = ix[h:]
                for i in range(h):
                    qq = La[i] - Rk[i]
                    q[i] = qq
                    ix[i] = min(np.int32(np.sqrt(abs(qq)) * sc), nt)
                for i in range(Z - h):
                    qq = Lb[i] - R2[i]
                    q2[i] = qq
                    ix2[i] = min(np.int32(np.sqrt(abs(qq)) * sc), nt)
                for i in range(Z):
                    p[i] = table[ix[i]]
                for i in range(Z):
                    S[i] += p[i]
                    sg[i] *= one - two * np.float32(q[i] < zero)
            for j in range(d):
                k = k0 + j
                base = bcol[k] * Z
                h = Z - bshift[k]
                q = qb[j * Z : j * Z + Z]
                p = pb[j * Z : j * Z + Z]
                Rk = R[k * Z : k * Z + Z]
                La = L[base + Z - h : base + Z]
                Lb = L[base : base + Z - h]
                q2 = q[h:]
                for i in range(Z):
                    ix[i] = min(np.int32(np.sqrt(max(S[i] - p[i], zero)) * sc), nt)
                for i in range(Z):
                    p[i] = table[ix[i]]
                for i in range(Z):
                    qq = q[i]
                    r = p[i] * sg[i] * (one - two * np.float32(qq < zero))
                    Rk[i] = r
                    qn = qq + r
                    q[i] = qn
                    par[i] ^= np.uint8(qn < zero)
                for i in range(h):
                    La[i] = q[i]
                for i in range(Z - h):
                    Lb[i] = q2[i]
            for i in range(Z):
                unsat += par[i]
        if unsat > 0 and it + 1 < max_iter:
            if unsat < best:
                best = unsat
                best_it = it
            elif it - best_it >= patience:
                return it + 1, unsat
            continue
        unsat = 0
        for b in range(mb):
            for i in range(Z):
                par[i] = target[b * Z + i]
            for k in range(brow_ptr[b], brow_ptr[b + 1]):
                base = bcol[k] * Z
                h = Z - bshift[k]
                La = L[base + Z - h : base + Z]
                Lb = L[base : base + Z - h]
                p2 = par[h:]
                for i in range(h):
                    par[i] ^= np.uint8(La[i] < zero)
                for i in range(Z - h):
                    p2[i] ^= np.uint8(Lb[i] < zero)
            for i in range(Z):
                unsat += par[i]
        if unsat == 0:
            return it + 1, 0
        if unsat < best:
            best = unsat
            best_it = it
        elif it - best_it >= patience:
            return it + 1, unsat
    return max_iter, unsat


@numba.njit(cache=True, nogil=True, fastmath=True)
def _syndrome(row_ptr: I32, cols: I32, bits: U8) -> U8:  # pragma: no cover - compiled
    m = row_ptr.size - 1
    out = np.zeros(m, dtype=np.uint8)
    for c in range(m):
        cr = cols[row_ptr[c] : row_ptr[c + 1]]  # slice + unsigned index: no wraparound
        par = np.uint8(0)
        for k in range(cr.size):
            par ^= bits[np.uint32(cr[k])]
        out[c] = par
    return out


@dataclass(eq=False)
class DecoderState:
    """Messages of one frame: priors, posteriors ``L`` and check messages ``R`` (float32).

    ``prior`` and ``L`` may be longer than the code's ``n`` symbols (a quasi-cyclic layout pads
    dropped columns as known zeros); only the first ``n`` are the frame's symbols.
    """

    prior: F32
    L: F32
    R: F32
    n: int
    iterations: int = 0
    unsatisfied: int = -1

    def set_prior(self, index: npt.ArrayLike, llr: npt.ArrayLike) -> None:
        """Change the priors of ``index`` (e.g. revealed symbols) keeping the messages."""
        idx = np.asarray(index, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            raise ValueError(f"symbol index out of range [0, {self.n})")
        new = np.broadcast_to(np.asarray(llr, dtype=np.float32), idx.shape)
        self.L[idx] += new - self.prior[idx]
        self.prior[idx] = new

    def hard_decision(self) -> U8:
        """The current error estimate ``L < 0`` of the ``n`` symbols."""
        return (self.L[: self.n] < 0).astype(np.uint8)


class LayeredDecoder:
    """Layered product-sum decoder bound to one parity-check matrix (CSR, any 0/1 dtype).

    :meth:`for_code` binds a quasi-cyclic code to the block-row kernel (same schedule and
    results, vectorised); the plain constructor uses the row-by-row kernel for any ``H``.
    """

    #: Smallest circulant for which the block-row kernel is used.
    QC_MIN_LIFT: Final = 8

    def __init__(self, H: sp.csr_matrix | sp.csr_array, *, scale: float = PHI_SCALE) -> None:
        Hc = sp.csr_matrix(H)
        Hc.sort_indices()
        self.m, self.n = (int(v) for v in Hc.shape)
        self.row_ptr: I32 = np.ascontiguousarray(Hc.indptr, dtype=np.int32)
        self.cols: I32 = np.ascontiguousarray(Hc.indices, dtype=np.int32)
        self.edges = int(self.cols.size)
        self.scale = float(scale)
        self._table = phi_table(self.scale)
        self._qc: tuple[I32, I32, I32, int, int] | None = None
        self._messages = self.edges  # check messages stored (QC: including padded columns)

    @classmethod
    def for_code(cls, code: QcCode, *, scale: float = PHI_SCALE) -> LayeredDecoder:
        """A decoder for a lifted code (``codes.LdpcCode``): block-row kernel if its circulants
        have at least :attr:`QC_MIN_LIFT` rows, else the row kernel."""
        dec = cls(code.H, scale=scale)
        z = int(code.lift)
        mb, nb = (int(v) for v in code.base_shape)
        if z >= cls.QC_MIN_LIFT and mb * z == dec.m and nb * z >= dec.n:
            order = np.lexsort((code.base_cols, code.base_rows))
            rows = np.asarray(code.base_rows)[order]
            ptr = np.searchsorted(rows, np.arange(mb + 1)).astype(np.int32)
            bcol = np.ascontiguousarray(np.asarray(code.base_cols)[order], dtype=np.int32)
            shift = np.ascontiguousarray(np.asarray(code.shifts)[order] % z, dtype=np.int32)
            # columns the code dropped are padded as known zeros (they satisfy every check)
            kept = np.minimum(np.maximum(dec.n - bcol.astype(np.int64) * z, 0), z)
            if int(kept.sum()) == dec.edges:
                dec._qc = (ptr, bcol, shift, z, nb * z)
                dec._messages = int(bcol.size) * z
        return dec

    @property
    def messages(self) -> int:
        """Check messages a state holds (rows appended to ``H`` append theirs at the end)."""
        return self._messages

    @property
    def quasi_cyclic(self) -> bool:
        """Whether the block-row kernel is used."""
        return self._qc is not None

    @staticmethod
    def llr(probabilities: npt.ArrayLike) -> F32:
        """Prior LLRs ``log((1-p)/p)``, clipped to ``+-LLR_KNOWN``."""
        p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-300, 1.0)
        out = np.log1p(-np.minimum(p, 1.0 - 1e-16)) - np.log(p)
        llr: F32 = np.clip(out, -LLR_KNOWN, LLR_KNOWN).astype(np.float32)
        return llr

    def state(self, prior: npt.ArrayLike) -> DecoderState:
        """A fresh state (no check messages yet) for prior LLRs of length ``n``."""
        pr = np.ascontiguousarray(prior, dtype=np.float32)
        if pr.shape != (self.n,):
            raise ValueError(f"expected {self.n} prior LLRs, got shape {pr.shape}")
        width = self.n if self._qc is None else self._qc[4]
        full = np.full(width, LLR_KNOWN, dtype=np.float32)
        full[: self.n] = pr
        return DecoderState(
            prior=full, L=full.copy(), R=np.zeros(self._messages, dtype=np.float32), n=self.n
        )

    def decode(
        self, state: DecoderState, target: npt.ArrayLike, *, max_iter: int, patience: int = 0
    ) -> bool:
        """Continue decoding ``state`` towards syndrome ``target``; True once it matches.

        ``patience`` > 0 stops early when the count of unsatisfied checks has not improved for
        that many iterations. Releases the GIL: frames may be decoded by several threads at
        once (one state each).
        """
        t = np.ascontiguousarray(target, dtype=np.uint8)
        if t.shape != (self.m,):
            raise ValueError(f"expected a syndrome of {self.m} bits, got shape {t.shape}")
        if max_iter < 1:
            raise ValueError("max_iter must be >= 1")
        if state.n != self.n or state.R.size != self._messages:
            raise ValueError("state belongs to another code")
        wait = int(patience) if patience > 0 else int(max_iter)
        if self._qc is not None:
            ptr, bcol, shift, z, _ = self._qc
            used, unsat = _qc_layered(
                ptr,
                bcol,
                shift,
                z,
                t,
                state.L,
                state.R,
                int(max_iter),
                wait,
                self._table,
                self.scale,
            )
        else:
            used, unsat = _layered(
                self.row_ptr,
                self.cols,
                t,
                state.L,
                state.R,
                int(max_iter),
                wait,
                self._table,
                self.scale,
            )
        state.iterations += int(used)
        state.unsatisfied = int(unsat)
        return unsat == 0

    def syndrome(self, bits: npt.ArrayLike) -> U8:
        """``H bits mod 2`` (compiled; releases the GIL)."""
        b = np.ascontiguousarray(bits, dtype=np.uint8)
        if b.shape != (self.n,):
            raise ValueError(f"expected {self.n} bits, got shape {b.shape}")
        out: U8 = _syndrome(self.row_ptr, self.cols, b)
        return out
