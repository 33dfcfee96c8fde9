"""Information reconciliation: one-way LDPC syndrome decoding, rate-adaptive and blind.

Bob corrects his sifted key ``y`` to Alice's ``x``; the two parties are separate objects that
only exchange messages (kinds ``ec.*``) over a :class:`~qrepeater.qkdpp.channel.Channel`, and
the leakage is what that channel counted.

Protocol (per frame of ``L`` key bits, mother code ``H`` of length ``n`` and rate ``R0``):

* **Rate adaptation** (D. Elkouss, J. Martinez-Mateo, D. Lancho, V. Martin, "Rate compatible
  protocol for information reconciliation: an application to QKD", IEEE ITW 2010,
  arXiv:1006.2660): ``s`` symbols are *shortened* (positions and values from a public seed that
  Alice sends, so Bob knows them) and ``p`` are *punctured* (unknown to Bob, error probability
  1/2); ``n = L + p + s``. The mother rate and ``(p, s)`` follow from the QBER estimate and the
  efficiency range of the blind stage (:func:`plan`).
* **Punctured symbols cost no syndrome bits.** Punctured symbols are untainted (no check has two
  of them, :mod:`qrepeater.qkdpp.codes`); Alice sets each to the value that zeroes its pivot
  check and does not send that syndrome bit. The factor graph Bob decodes is the usual one for
  puncturing (a symbol of unknown value tied to a check of known parity), and the syndrome
  message is a function of Alice's key of exactly ``m - p`` bits, so the channel count is the
  leakage of the rate-adaptive protocol, ``(1 - R) L`` with ``R = (R0 n - s)/(n - p - s)``,
  without any private randomness.
* **Blind reconciliation** (J. Martinez-Mateo, D. Elkouss, V. Martin, "Blind reconciliation",
  Quantum Inf. Comput. 12, 791 (2012)): Bob decodes with belief propagation (``ldpc``
  ``BpDecoder``, product-sum, flooding schedule) and reports, one bit per pending frame, whether
  the decoder converged to an error pattern with the received syndrome. For each failed frame
  Alice reveals the values of a further block of punctured symbols (they become shortened) and
  Bob retries. Once no punctured symbol is left, further rounds reveal key bits at public
  pseudo-random positions (as in E. O. Kiktenko et al., "Symmetric blind information
  reconciliation for quantum key distribution", arXiv:1612.03673); after ``max_reveals``
  rounds the frame fails and the result has ``success=False``.

Messages: ``ec.seed`` (Alice, ``seed_bits``), ``ec.syndrome`` (Alice, ``m - p`` bits per frame),
``ec.feedback`` (Bob, one bit per pending frame and round), ``ec.reveal`` (Alice, the revealed
values). Frame layout, mother code and reveal order are computed by both parties from public
data (key length, QBER estimate, configuration, seed) and cost nothing. The reconciliation
efficiency is ``f = leak / (N h(Q))`` with ``leak`` the bits counted by the channel on ``ec.*``
messages and ``N`` the key length. ``success`` means that every frame's decoder output matches
its syndrome; a wrong codeword with the right syndrome is not excluded here, which is what the
verification (hash) stage of the pipeline is for.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from ldpc.bp_decoder import BpDecoder

from qrepeater.errors import ProtocolAbort, ReconciliationError
from qrepeater.qkdpp.channel import Channel, pack_bits, unpack_bits
from qrepeater.qkdpp.codes import CodeFamily, LdpcCode
from qrepeater.qkdpp.entropy import binary_entropy

__all__ = [
    "AliceReconciler",
    "BobReconciler",
    "FramePlan",
    "ReconcileConfig",
    "ReconcileResult",
    "binary_entropy",
    "plan",
    "reconcile",
]

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]

KIND_SEED: Final = "ec.seed"
KIND_SYNDROME: Final = "ec.syndrome"
KIND_FEEDBACK: Final = "ec.feedback"
KIND_REVEAL: Final = "ec.reveal"

#: Error probability given to shortened (known) symbols: a large but finite LLR (~23), since
#: the product-sum update of ``ldpc`` is not guarded against infinite messages.
_SHORTENED_P: Final = 1e-10
#: Punctured symbols are weighed ``_PUNCTURE_COST`` times a shortened one when the plan picks
#: the mother code: puncturing degrades BP thresholds more than shortening.
_PUNCTURE_COST: Final = 3.0
#: Codes whose check-pair load (:meth:`CodeFamily.pair_load`) exceeds this are not planned:
#: their 4-cycle-free construction fails at that length (measured: <= 0.26 builds, >= 0.33
#: fails), and trying costs seconds.
_MAX_PAIR_LOAD: Final = 0.28


@dataclass(frozen=True)
class ReconcileConfig:
    """Options of :func:`reconcile`, validated on construction.

    * ``block_length``: longest mother code (frame) used; longer keys are split into frames
      of equal size. ``min_block_length``: shortest code built (short keys are padded with
      shortened symbols up to it; shorter 4-cycle-free codes of the family may not exist).
    * ``target_efficiency``: efficiency of the first decoding attempt of each frame.
    * ``puncture_range``: efficiency range covered by punctured symbols: the plan punctures at
      least ``puncture_range * L h(Q)`` symbols, so reveals up to ``target_efficiency +
      puncture_range`` turn punctured symbols into shortened ones; further reveals disclose
      key bits at public pseudo-random positions (less useful to the decoder per bit, but they
      let hard frames through).
    * ``reveal_step``: efficiency added by each blind reveal; ``max_reveals``: number of reveal
      rounds, so frames are decoded up to :attr:`max_efficiency` or fail
      (``max_reveals=0`` is the one-shot rate-adaptive protocol).
    * ``bp_max_iter``: belief-propagation iterations per attempt.
    * ``workers``: processes that decode frames in parallel (1: in this process). Frames are
      independent, so with several frames and cores the decoding wall time divides.
    * ``seed_bits``: length of the public seed Alice sends (shortened symbols, reveal order).
    """

    block_length: int = 120_000
    min_block_length: int = 15_000
    target_efficiency: float = 1.05
    puncture_range: float = 0.06
    reveal_step: float = 0.02
    max_reveals: int = 12
    bp_max_iter: int = 100
    workers: int = 1
    seed_bits: int = 64
    family: CodeFamily = field(default_factory=CodeFamily)
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        fam_min = 2 * self.family.granularity
        if not fam_min <= self.min_block_length <= self.block_length:
            raise ReconciliationError(
                f"need {fam_min} <= min_block_length <= block_length, got "
                f"{self.min_block_length}, {self.block_length}"
            )
        if not 0.5 < self.target_efficiency < 3.0:
            raise ReconciliationError(f"target_efficiency {self.target_efficiency} not in (0.5, 3)")
        if not 0.0 <= self.puncture_range <= 1.0:
            raise ReconciliationError(f"puncture_range {self.puncture_range} not in [0, 1]")
        if not 0.0 < self.reveal_step <= 1.0:
            raise ReconciliationError(f"reveal_step {self.reveal_step} not in (0, 1]")
        if not 0 <= self.max_reveals <= 1000:
            raise ReconciliationError(f"max_reveals {self.max_reveals} not in [0, 1000]")
        if not 1 <= self.workers <= 64:
            raise ReconciliationError(f"workers must be in [1, 64], got {self.workers}")
        if self.bp_max_iter < 1:
            raise ReconciliationError("bp_max_iter must be >= 1")
        if not 0 <= self.seed_bits <= 256:
            raise ReconciliationError("seed_bits must be in [0, 256]")

    @property
    def max_efficiency(self) -> float:
        """Nominal efficiency once every reveal has been made."""
        return self.target_efficiency + self.max_reveals * self.reveal_step


@dataclass(frozen=True)
class FramePlan:
    """Public parameters both parties derive from ``(key length, QBER estimate, config)``.

    ``key_bits[i]`` key bits of frame ``i`` sit in a mother code of ``rate`` and length
    ``block_length`` with ``punctured`` punctured and ``block_length - key_bits[i] -
    punctured`` shortened symbols; each blind round reveals ``reveal`` values (punctured
    symbols first, then key bits), at most ``max_reveals`` rounds.
    """

    qber: float
    rate: float
    block_length: int
    key_bits: tuple[int, ...]
    punctured: int
    reveal: int
    max_reveals: int

    @property
    def frames(self) -> int:
        return len(self.key_bits)

    def shortened(self, frame: int) -> int:
        return self.block_length - self.key_bits[frame] - self.punctured


@dataclass(frozen=True, eq=False)
class ReconcileResult:
    """Outcome of :func:`reconcile`.

    ``bob_key`` is Bob's corrected key; it equals Alice's key only if ``success`` (frames that
    failed keep Bob's uncorrected bits): never use it when ``success`` is False
    (:meth:`require_success`). ``leak_bits`` are the bits the channel counted on ``ec.*``
    messages, ``efficiency = leak_bits / (N h(qber))``; ``observed_qber`` is the error rate
    Bob corrected (his estimate of the true QBER, meaningful on success).
    """

    bob_key: U8
    success: bool
    frames: int
    frames_failed: int
    leak_bits: int
    efficiency: float
    seconds: float
    qber: float
    observed_qber: float
    rate: float
    block_length: int
    revealed_bits: int
    rounds: int
    decode_attempts: int
    decode_seconds: float
    failed_frames: tuple[int, ...] = ()

    def require_success(self) -> U8:
        """The corrected key, or :class:`ProtocolAbort` if any frame failed."""
        if not self.success:
            raise ProtocolAbort(
                "reconciliation",
                f"{self.frames_failed} of {self.frames} frames could not be reconciled",
            )
        return self.bob_key


def plan(
    key_length: int,
    *,
    qber: float,
    config: ReconcileConfig,
    exclude: frozenset[float] = frozenset(),
) -> FramePlan:
    """Choose the mother code, frame sizes, punctured and shortened counts.

    For a frame of ``L`` key bits, ``f0 = target_efficiency`` and ``f1 = f0 + puncture_range``,
    a mother code of rate ``R0`` with ``m = (1 - R0)(L + p + s)`` checks needs ``p`` punctured
    and ``s`` shortened symbols with ``m - p = f0 L h`` (first attempt) and ``m = f1 L h`` (all
    punctured symbols revealed); a code stronger than that gets ``s = 0`` and more punctured
    symbols. Among the family's rates the one with the least modulation ``3 p + s`` wins (the
    rate-compatible construction of Elkouss et al. 2010; puncturing costs more threshold than
    shortening, hence the weight). Rates in ``exclude`` are skipped.
    """
    _check_qber(qber)
    total = int(key_length)
    if total < 1:
        raise ReconciliationError("empty key")
    h = binary_entropy(qber)
    f0 = config.target_efficiency
    f1 = f0 + config.puncture_range
    best: tuple[float, float, int, tuple[int, ...], int] | None = None
    for r0 in config.family.rates:
        if r0 in exclude:
            continue
        p_frac = max((f1 - f0) * h, (1.0 - r0 - f0 * h) / r0, 0.0)
        s_frac = max(0.0, f1 * h / (1.0 - r0) - 1.0 - p_frac)
        expand = 1.0 + p_frac + s_frac
        l_max = int((config.block_length - 2) / expand)
        if l_max < 1:
            continue
        frames = -(-total // l_max)
        sizes = _split(total, frames)
        big = sizes[0]
        try:
            n = config.family.admissible_length(
                r0, max(config.min_block_length, math.ceil(big * expand) + 1)
            )
        except ReconciliationError:
            continue
        if n > config.family.admissible_length(r0, config.block_length):
            continue
        if config.family.pair_load(r0, n) > _MAX_PAIR_LOAD:
            continue  # too short for a 4-cycle-free code of this rate
        m = (1.0 - r0) * n
        # Puncture enough to start at f0 on the largest frame (more if n was padded up).
        p = max(math.ceil(p_frac * big), math.ceil(m - f0 * big * h))
        if n - big - p < 0:
            continue
        cost = (_PUNCTURE_COST * p + (n - big - p)) / big
        if best is None or cost < best[0] - 1e-12:
            best = (cost, r0, n, tuple(sizes), p)
    if best is None:
        raise ReconciliationError(
            f"no code of the family fits a key of {total} bits at QBER {qber} with "
            f"block_length {config.block_length}"
        )
    _, r0, n, key_bits, p = best
    reveal = max(1, math.ceil(config.reveal_step * key_bits[0] * h))
    return FramePlan(
        qber=float(qber),
        rate=r0,
        block_length=n,
        key_bits=key_bits,
        punctured=p,
        reveal=reveal,
        max_reveals=min(config.max_reveals, -(-(p + key_bits[-1]) // reveal)),
    )


def _split(total: int, frames: int) -> list[int]:
    base, extra = divmod(total, frames)
    return [base + 1] * extra + [base] * (frames - extra)


def _check_qber(qber: float) -> None:
    if not isinstance(qber, (int, float, np.floating)) or not 0.0 < float(qber) < 0.5:
        raise ReconciliationError(f"QBER estimate must be in (0, 0.5), got {qber!r}")


def _as_key(bits: npt.ArrayLike, name: str) -> U8:
    arr = np.asarray(bits)
    if arr.ndim != 1:
        raise ReconciliationError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size and not (arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer)):
        raise ReconciliationError(f"{name} must hold integers 0/1, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() > 1):
        raise ReconciliationError(f"{name} must hold only 0 and 1")
    return arr.astype(np.uint8)


class _Layout:
    """Positions of one frame in the mother code (public, identical for both parties).

    ``reveal_seq`` is the order in which blind rounds disclose values: the punctured symbols
    from the end of the untainted order backwards (the remaining ones stay a prefix, hence
    untainted), then key positions in a pseudo-random order from the public seed.
    """

    def __init__(self, code: LdpcCode, frame_plan: FramePlan, frame: int, public_seed: int) -> None:
        n, p = code.n, frame_plan.punctured
        self.punct = code.puncture_order[:p]
        self.pivots = code.pivots[:p]
        rng = np.random.default_rng([public_seed, frame])
        free = np.ones(n, dtype=bool)
        free[self.punct] = False
        cand = np.flatnonzero(free)
        s = frame_plan.shortened(frame)
        self.short = np.sort(rng.choice(cand, size=s, replace=False)) if s else cand[:0]
        self.short_values = rng.integers(0, 2, size=s, dtype=np.uint8)
        free[self.short] = False
        self.key = np.flatnonzero(free)
        sent = np.ones(code.m, dtype=bool)
        sent[self.pivots] = False
        self.sent_rows = np.flatnonzero(sent)
        budget = frame_plan.max_reveals * frame_plan.reveal
        extra = min(self.key.size, max(0, budget - p))
        key_order = rng.choice(self.key, size=extra, replace=False) if extra else cand[:0]
        self.reveal_seq = np.concatenate([self.punct[::-1], key_order])

    def reveal_block(self, frame_plan: FramePlan, done: int) -> I64:
        """Positions disclosed by reveal round ``done`` (0-based)."""
        k = frame_plan.reveal
        return np.asarray(self.reveal_seq[done * k : (done + 1) * k], dtype=np.int64)

    def can_reveal(self, frame_plan: FramePlan, done: int) -> bool:
        return done < frame_plan.max_reveals and done * frame_plan.reveal < self.reveal_seq.size


def _public_seed_from(payload: bytes) -> int:
    return int.from_bytes(payload, "big") if payload else 0


class AliceReconciler:
    """Alice's side: holds only her key ``x``; sends seed, syndromes and reveals."""

    def __init__(
        self,
        key: npt.ArrayLike,
        *,
        qber: float,
        channel: Channel,
        config: ReconcileConfig,
        rng: np.random.Generator,
    ) -> None:
        self._x = _as_key(key, "alice_key")
        self.plan, self.code = _code_for(self._x.size, qber, config)
        self.config = config
        self._channel = channel
        self._rng = rng
        self._frames: list[U8] = []
        self._layouts: list[_Layout] = []
        self._done: list[int] = []
        self.pending: list[int] = []
        self.failed: list[int] = []

    def send_syndromes(self) -> None:
        """Send the public seed and the syndromes of all frames (one message each)."""
        nbytes = -(-self.config.seed_bits // 8)
        seed_bytes = self._rng.bytes(nbytes)
        if nbytes:
            self._channel.send("alice", KIND_SEED, seed_bytes, bits=self.config.seed_bits)
        public_seed = _public_seed_from(seed_bytes)
        code, fp = self.code, self.plan
        parts: list[U8] = []
        start = 0
        for i, size in enumerate(fp.key_bits):
            lay = _Layout(code, fp, i, public_seed)
            xt = np.zeros(code.n, dtype=np.uint8)
            xt[lay.key] = self._x[start : start + size]
            xt[lay.short] = lay.short_values
            # Each punctured symbol takes the value that zeroes its (private) pivot check.
            xt[lay.punct] = code.syndrome(xt)[lay.pivots]
            syn = code.syndrome(xt)
            parts.append(syn[lay.sent_rows])
            self._frames.append(xt)
            self._layouts.append(lay)
            self._done.append(0)
            start += size
        payload, nbits = pack_bits(np.concatenate(parts))
        self._channel.send("alice", KIND_SYNDROME, payload, bits=nbits)
        self.pending = list(range(fp.frames))

    def handle_feedback(self) -> bool:
        """Read Bob's feedback; reveal for failed frames. True if Bob must decode again."""
        raw = self._channel.receive("alice", KIND_FEEDBACK)
        ok = unpack_bits(raw, len(self.pending)).astype(bool)
        still = [f for f, good in zip(self.pending, ok, strict=True) if not good]
        retry: list[int] = []
        values: list[U8] = []
        for f in still:
            lay = self._layouts[f]
            if not lay.can_reveal(self.plan, self._done[f]):
                self.failed.append(f)
                continue
            values.append(self._frames[f][lay.reveal_block(self.plan, self._done[f])])
            self._done[f] += 1
            retry.append(f)
        self.pending = retry
        if retry:
            payload, nbits = pack_bits(np.concatenate(values))
            self._channel.send("alice", KIND_REVEAL, payload, bits=nbits)
        return bool(retry)


_WORKER: dict[str, Any] = {}


def _make_decoder(H: Any, max_iter: int) -> Any:
    """Product-sum belief propagation (``ldpc``), flooding schedule, syndrome input."""
    return BpDecoder(
        H,
        error_rate=0.1,
        max_iter=max_iter,
        bp_method="product_sum",
        schedule="parallel",
        input_vector_type="syndrome",
    )


def _decode(dec: Any, problem: tuple[U8, npt.NDArray[np.float64]]) -> U8 | None:
    """Decode one frame's error pattern; None if belief propagation did not converge."""
    target, probs = problem
    dec.update_channel_probs(probs)
    err = np.asarray(dec.decode(target), dtype=np.uint8)
    return err if bool(dec.converge) else None


def _init_worker(H: Any, max_iter: int) -> None:
    """Build one decoder per worker process."""
    _WORKER["decoder"] = _make_decoder(H, max_iter)


def _decode_in_worker(problem: tuple[U8, npt.NDArray[np.float64]]) -> U8 | None:
    return _decode(_WORKER["decoder"], problem)


class BobReconciler:
    """Bob's side: holds only his key ``y``; decodes and sends one feedback bit per frame."""

    def __init__(
        self,
        key: npt.ArrayLike,
        *,
        qber: float,
        channel: Channel,
        config: ReconcileConfig,
    ) -> None:
        self._y = _as_key(key, "bob_key")
        self.plan, self.code = _code_for(self._y.size, qber, config)
        self.config = config
        self._channel = channel
        self._decoder: Any = None
        self.corrected = self._y.copy()
        self.pending: list[int] = []
        self.failed: list[int] = []
        self.attempts = 0
        self.rounds = 0
        self.decode_seconds = 0.0
        self.errors_found = 0
        self._yt: list[U8] = []
        self._probs: list[npt.NDArray[np.float64]] = []
        self._syn: list[U8] = []
        self._layouts: list[_Layout] = []
        self._done: list[int] = []
        self._offsets: list[int] = []
        self._still: list[int] = []

    def receive_syndromes(self) -> None:
        """Receive seed and syndromes; set up every frame's decoding problem."""
        seed_bytes = self._channel.receive("bob", KIND_SEED) if self.config.seed_bits else b""
        public_seed = _public_seed_from(seed_bytes)
        code, fp = self.code, self.plan
        layouts = [_Layout(code, fp, i, public_seed) for i in range(fp.frames)]
        total = sum(len(lay.sent_rows) for lay in layouts)
        syn_all = unpack_bits(self._channel.receive("bob", KIND_SYNDROME), total)
        q = fp.qber
        start = row = 0
        for i, size in enumerate(fp.key_bits):
            lay = layouts[i]
            syn = np.zeros(code.m, dtype=np.uint8)
            syn[lay.sent_rows] = syn_all[row : row + len(lay.sent_rows)]
            row += len(lay.sent_rows)
            yt = np.zeros(code.n, dtype=np.uint8)
            yt[lay.key] = self._y[start : start + size]
            yt[lay.short] = lay.short_values
            probs = np.full(code.n, q)
            probs[lay.short] = _SHORTENED_P
            probs[lay.punct] = 0.5
            self._layouts.append(lay)
            self._syn.append(syn)
            self._yt.append(yt)
            self._probs.append(probs)
            self._done.append(0)
            self._offsets.append(start)
            start += size
        self.pending = list(range(fp.frames))

    def _bp(self) -> Any:
        if self._decoder is None:
            self._decoder = _make_decoder(self.code.H, self.config.bp_max_iter)
        return self._decoder

    def _decode_all(self, problems: list[tuple[U8, npt.NDArray[np.float64]]]) -> list[U8 | None]:
        """Decode (target syndrome, channel probabilities) problems; None where BP failed."""
        workers = min(self.config.workers, len(problems))
        if workers <= 1:
            dec = self._bp()
            return [_decode(dec, problem) for problem in problems]
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(self.code.H, self.config.bp_max_iter),
        ) as pool:
            return list(pool.map(_decode_in_worker, problems))

    def decode_round(self) -> None:
        """Decode all pending frames, then send the success bitmap to Alice."""
        self.rounds += 1
        ok: list[bool] = []
        t0 = time.perf_counter()
        targets = {f: self._syn[f] ^ self.code.syndrome(self._yt[f]) for f in self.pending}
        results = self._decode_all([(targets[f], self._probs[f]) for f in self.pending])
        for f, err in zip(self.pending, results, strict=True):
            lay = self._layouts[f]
            target = targets[f]
            self.attempts += 1
            good = err is not None and np.array_equal(self.code.syndrome(err), target)
            ok.append(good)
            if good and err is not None:
                size = self.plan.key_bits[f]
                start = self._offsets[f]
                # Revealed key bits already hold Alice's values in yt (and err is 0 there).
                fixed = self._yt[f][lay.key] ^ err[lay.key]
                self.corrected[start : start + size] = fixed
                self.errors_found += int(np.count_nonzero(fixed != self._y[start : start + size]))
        self.decode_seconds += time.perf_counter() - t0
        payload, nbits = pack_bits(np.array(ok, dtype=np.uint8))
        self._channel.send("bob", KIND_FEEDBACK, payload, bits=nbits)
        self._still = [f for f, good in zip(self.pending, ok, strict=True) if not good]

    def receive_reveals(self) -> bool:
        """After a failed round: take Alice's reveals (if any). True if decoding continues."""
        retry = []
        for f in self._still:
            if self._layouts[f].can_reveal(self.plan, self._done[f]):
                retry.append(f)
            else:
                self.failed.append(f)
        self.pending = retry
        if not retry:
            return False
        blocks = [self._layouts[f].reveal_block(self.plan, self._done[f]) for f in retry]
        values = unpack_bits(self._channel.receive("bob", KIND_REVEAL), sum(b.size for b in blocks))
        pos = 0
        for f, idx in zip(retry, blocks, strict=True):
            self._yt[f][idx] = values[pos : pos + idx.size]
            self._probs[f][idx] = _SHORTENED_P
            self._done[f] += 1
            pos += idx.size
        return True


def _code_for(key_length: int, qber: float, config: ReconcileConfig) -> tuple[FramePlan, LdpcCode]:
    """The plan and its mother code, loaded or built.

    If no 4-cycle-free code of the planned rate and length exists (high rates need long
    blocks), the rate is excluded and the plan redone. The built code may have a few more
    checks than ``(1 - R0) n`` when the lift had to be truncated: puncture that many more so
    the first attempt is still at the target efficiency, within the shortened budget and the
    code's untainted symbols. Deterministic, so both parties arrive at the same plan.
    """
    excluded: set[float] = set()
    while True:
        frame_plan = plan(key_length, qber=qber, config=config, exclude=frozenset(excluded))
        try:
            code = config.family.code(
                frame_plan.rate, frame_plan.block_length, cache_dir=config.cache_dir
            )
        except ReconciliationError:
            excluded.add(frame_plan.rate)
            continue
        return _fit_punctured(frame_plan, code), code


def _fit_punctured(frame_plan: FramePlan, code: LdpcCode) -> FramePlan:
    extra = code.m - math.ceil((1.0 - frame_plan.rate) * frame_plan.block_length)
    room = frame_plan.block_length - frame_plan.key_bits[0]
    p = min(frame_plan.punctured + max(extra, 0), room, int(code.puncture_order.size))
    return frame_plan if p == frame_plan.punctured else replace(frame_plan, punctured=p)


def reconcile(
    alice_key: npt.ArrayLike,
    bob_key: npt.ArrayLike,
    *,
    qber: float,
    channel: Channel,
    seed: int | np.random.Generator | None = None,
    config: ReconcileConfig | None = None,
) -> ReconcileResult:
    """Reconcile Bob's key to Alice's over ``channel`` (driver of the two parties).

    ``qber`` is the public QBER estimate both parties use. ``seed`` drives Alice's choice of
    the public seed. Raises :class:`ReconciliationError` on bad inputs; a frame that cannot be
    decoded gives ``success=False`` (never a silently wrong key).
    """
    t0 = time.perf_counter()
    cfg = ReconcileConfig() if config is None else config
    _check_qber(qber)
    x = _as_key(alice_key, "alice_key")
    y = _as_key(bob_key, "bob_key")
    if x.size != y.size:
        raise ReconciliationError(f"key lengths differ: {x.size} vs {y.size}")
    if x.size == 0:
        raise ReconciliationError("empty key")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    before = channel.bits_sent(prefix="ec.")
    before_reveal = channel.bits_sent(prefix=KIND_REVEAL)
    alice = AliceReconciler(x, qber=qber, channel=channel, config=cfg, rng=rng)
    bob = BobReconciler(y, qber=qber, channel=channel, config=cfg)
    fp = bob.plan
    alice.send_syndromes()
    bob.receive_syndromes()
    while True:
        bob.decode_round()
        more_alice = alice.handle_feedback()
        more_bob = bob.receive_reveals()
        if more_alice != more_bob:
            raise ProtocolAbort("reconciliation", "parties disagree on the protocol state")
        if not more_bob:
            break
    leak = channel.bits_sent(prefix="ec.") - before
    failed = tuple(sorted(bob.failed))
    success = not failed and sorted(alice.failed) == list(failed)
    h = binary_entropy(qber)
    return ReconcileResult(
        bob_key=bob.corrected,
        success=success,
        frames=fp.frames,
        frames_failed=len(failed),
        leak_bits=leak,
        efficiency=leak / (x.size * h),
        seconds=time.perf_counter() - t0,
        qber=float(qber),
        observed_qber=bob.errors_found / x.size,
        rate=fp.rate,
        block_length=fp.block_length,
        revealed_bits=channel.bits_sent(prefix=KIND_REVEAL) - before_reveal,
        rounds=bob.rounds,
        decode_attempts=bob.attempts,
        decode_seconds=bob.decode_seconds,
        failed_frames=failed,
    )
