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
  efficiency range of the blind stage (:func:`plan`). When the estimate comes from a disclosed
  sample of ``k`` bits, the punctured range reaches the Clopper-Pearson *upper* confidence bound
  of the QBER (:func:`qber_upper_bound`), so the mother code is strong enough for the QBER the
  sample cannot exclude, while the first attempt is still made at the point estimate.
* **Punctured symbols cost no syndrome bits.** Punctured symbols are untainted (no check has two
  of them, :mod:`qrepeater.qkdpp.codes`); Alice sets each to the value that zeroes its pivot
  check and does not send that syndrome bit, so the syndrome message is a function of Alice's
  key of exactly ``m - p`` bits and the channel count is the leakage of the rate-adaptive
  protocol, ``(1 - R) L`` with ``R = (R0 n - s)/(n - p - s)``.
* **Blind reconciliation** (J. Martinez-Mateo, D. Elkouss, V. Martin, "Blind reconciliation",
  Quantum Inf. Comput. 12, 791 (2012)): Bob decodes (layered product-sum belief propagation,
  :mod:`qrepeater.qkdpp._bp_kernel`) and reports one bit per pending frame: whether the decoder
  found an error pattern with the received syndrome *and* the frame passed a short check (see
  below). For each failed frame Alice reveals a further block of punctured symbols (they become
  shortened); once none is left, further rounds reveal key bits at public pseudo-random
  positions (E. O. Kiktenko et al., "Symmetric blind information reconciliation for quantum key
  distribution", Phys. Rev. Appl. 8, 044017 (2017), arXiv:1612.03673). Reveal blocks grow
  geometrically (``reveal_growth``), so a QBER misjudged by a large factor costs a logarithmic
  number of rounds. Bob resumes each round from the previous round's messages (warm restart).
  A frame only fails when the next reveal would make its disclosed bits reach its key bits
  (nothing secret could be left) or after ``max_reveals`` rounds: the protocol does not give up
  because the QBER was misjudged.
* **Frame check.** Alice also sends ``check_bits`` parities of each frame's key bits with
  public random vectors (a 2-universal GF(2)-linear hash: two different frames give the same
  parities with probability exactly ``2^-check_bits``). A decoder that converges to a wrong
  codeword is then caught and the frame continues with more reveals instead of failing the
  later verification stage. The parities are counted as leakage; they do not replace the
  verification stage (:mod:`qrepeater.qkdpp.verify`), which bounds ``eps_EC``.

Messages: ``public.ec.seed`` (Alice, ``seed_bits`` drawn independently of the key, so not
leakage), ``ec.syndrome`` (Alice, ``m - p`` bits per frame),
``ec.check`` (Alice, ``check_bits`` per frame), ``ec.feedback`` (Bob, one bit per pending frame
and round), ``ec.reveal`` (Alice, the revealed values). Frame layout, mother code and reveal
order are computed by both parties from public data (key length, QBER estimate, configuration,
seed) and cost nothing.

Efficiency. ``f = leak / (N h(Q))`` with ``leak`` every bit counted on ``ec.*`` messages and
``Q`` the error rate Bob actually corrected (he knows it after a successful run), never the
estimate: an estimate that overshoots would flatter ``f``. ``efficiency_estimate`` gives the
same leak over ``N h(estimate)``. Bits disclosed *before* reconciliation to estimate the QBER
are not part of ``leak``; callers report them beside it (the CLI does).

Parallelism: frames are independent; the compiled decoder releases the GIL, so ``workers``
threads (or an ``executor`` the caller owns) decode frames concurrently. Library code never
forks processes: it runs inside daemonic Dask workers and dies with its parent.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from qrepeater.errors import ProtocolAbort, ReconciliationError
from qrepeater.qkdpp.channel import Channel, pack_bits, unpack_bits
from qrepeater.qkdpp.codes import CodeFamily, LdpcCode, short_degree_cap, short_family
from qrepeater.qkdpp.entropy import binary_entropy

if TYPE_CHECKING:
    from qrepeater.qkdpp._bp_kernel import DecoderState, LayeredDecoder

__all__ = [
    "AliceReconciler",
    "BobReconciler",
    "FramePlan",
    "MapExecutor",
    "QberSample",
    "ReconcileConfig",
    "ReconcileResult",
    "binary_entropy",
    "frame_check",
    "plan",
    "qber_lower_bound",
    "qber_upper_bound",
    "reconcile",
    "sample_bounds",
    "sample_qber",
]

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]
T = TypeVar("T")
R_co = TypeVar("R_co", covariant=True)

#: The public seed is drawn independently of the key: like ``verify.seed`` it discloses nothing
#: about the key and is not counted as leakage (its kind does not start with ``ec.``).
KIND_SEED: Final = "public.ec.seed"
KIND_SYNDROME: Final = "ec.syndrome"
KIND_CHECK: Final = "ec.check"
KIND_FEEDBACK: Final = "ec.feedback"
KIND_REVEAL: Final = "ec.reveal"

#: Prior LLR magnitude of a symbol whose value Bob knows (shortened, revealed).
_KNOWN_LLR: Final = 40.0
#: Error probability the reference decoder (``ldpc``) gets for known symbols: a large but
#: finite LLR (~23), since its product-sum update is not guarded against infinite messages.
_SHORTENED_P: Final = 1e-10
#: Punctured symbols are weighed ``_PUNCTURE_COST`` times a shortened one when the plan picks
#: the mother code: puncturing degrades BP thresholds more than shortening.
_PUNCTURE_COST: Final = 3.0
#: Codes whose check-pair load (:meth:`CodeFamily.pair_load`) exceeds this are not planned:
#: their 4-cycle-free construction fails at that length (measured: <= 0.26 builds, >= 0.33
#: fails), and trying costs seconds.
_MAX_PAIR_LOAD: Final = 0.28
#: Keys shorter than this use the short-block family; longer ones (up to ``min_block_length``)
#: are padded into the default family's shortest code. Measured (8 keys each, QBER given):
#: 8 000-bit keys at Q = 3.6/5/7% gave f = 1.15/1.21/1.16 padded but 1.18/1.40/1.43 with the
#: degree-20 short family; 4 000-bit keys gave 1.22-1.23 with the degree-16 short family.
_SHORT_FAMILY_BELOW: Final = 6_000
#: Lower variable-degree caps of the short family tried when the preferred family cannot start
#: a key near its target efficiency (:func:`_code_for`): at low QBERs short keys need high-rate
#: codes, which only sparse degree profiles build without 4-cycles at these lengths.
_SHORT_FALLBACK_CAPS: Final = (8, 5)
#: A plan is *starved* when its code cannot puncture enough symbols to make the first attempt
#: within this of the target efficiency; the next candidate family is then tried. Sparser
#: families start lower but decode worse (2 000-bit keys at Q = 2%: the degree-12 family starts
#: at f = 1.26 and ends at 1.37, the degree-5 family starts at 1.00 and ends at 1.50), so only a
#: badly starved plan is given up.
_STARVED_MARGIN: Final = 0.3

Decoder = Literal["layered", "ldpc"]


class MapExecutor(Protocol):
    """What :func:`reconcile` needs from a caller-owned executor (e.g. a ThreadPoolExecutor)."""

    def map(self, fn: Callable[[T], R_co], iterable: Iterable[T], /) -> Iterator[R_co]: ...


@dataclass(frozen=True)
class ReconcileConfig:
    """Options of :func:`reconcile`, validated on construction.

    * ``block_length``: longest mother code (frame) used; longer keys are split into frames
      of equal size. ``min_block_length``: shortest code built (short keys are padded with
      shortened symbols up to it; shorter 4-cycle-free codes of the family may not exist).
    * ``target_efficiency``: efficiency of the first decoding attempt of each frame (against
      the QBER estimate).
    * ``puncture_range``: efficiency range covered by punctured symbols (widened up to the
      upper confidence bound of a sampled QBER estimate, see :func:`plan`).
    * ``reveal_step``: efficiency added by the first blind reveal; each further reveal is
      ``reveal_growth`` times larger. ``max_reveals``: cap on reveal rounds (the default never
      binds before the leakage reaches the key length).
    * ``bp_max_iter``: belief-propagation iterations per round (rounds resume from the previous
      messages); ``patience``: a round stops early when the number of unsatisfied checks has not
      improved for that many iterations.
    * ``workers``: threads that decode frames in parallel (the compiled decoder releases the
      GIL; no processes are forked).
    * ``seed_bits``: length of the public seed Alice sends (shortened symbols, reveal order);
      ``check_bits``: per-frame parity check (0 disables it); frames whose estimated
      information ``L h(Q)`` is below 1 600 bits use fewer, down to 8, so the check costs at
      most 1% of the leak (:attr:`FramePlan.check_bits`).
    * ``qber_confidence``: confidence of the upper bound on a sampled QBER estimate (the mother
      code covers it); ``start_confidence`` > 0.5 starts the first attempt at the lower bound
      of that confidence instead of the point estimate (0.5).
    * ``decoder``: ``"layered"`` (compiled kernel) or ``"ldpc"`` (the ``ldpc`` package's
      flooding product-sum decoder, kept as a reference; it restarts every round).
    * ``short_keys``: keys shorter than 6 000 bits (and ``min_block_length``) use the
      short-block family (:func:`~qrepeater.qkdpp.codes.short_family`) at their own length
      instead of being padded, starting at ``short_target_efficiency`` with reveal steps of
      ``short_reveal_step`` (short frames have a wide spread of decodable rates: fine steps
      stop close to each frame's own threshold).
    * ``min_reveal_bits``: the smallest reveal round. Every round costs Bob a feedback bit, so on
      a key whose whole leak is a hundred-odd bits one-bit reveals spend more on feedback than
      they save in overshoot; measured on 1 000-bit keys (10 keys each): f 1.644 -> 1.550 at
      Q = 2% and 1.529 -> 1.452 at 5% with 12-bit rounds, and a third of the rounds.
    * ``extension``: once a frame's punctured symbols are all revealed, further rounds send
      syndrome bits of extra parity checks (:func:`~qrepeater.qkdpp.codes.extended`, whole
      circulant blocks) instead of revealing key bits, which tell the decoder only ``h(Q)``
      per disclosed bit (layered decoder only; the ``ldpc`` reference keeps revealing);
      ``extension_degree`` circulants per extra block row (low: at QBERs of a few percent a
      check of the mother code's degree 20-27 is unsatisfied almost half the time and tells the
      decoder little).
    """

    block_length: int = 120_000
    min_block_length: int = 15_000
    target_efficiency: float = 1.06
    puncture_range: float = 0.06
    reveal_step: float = 0.010
    reveal_growth: float = 1.2
    max_reveals: int = 1000
    bp_max_iter: int = 80
    patience: int = 12
    workers: int = 1
    seed_bits: int = 64
    check_bits: int = 16
    qber_confidence: float = 0.9
    start_confidence: float = 0.84
    decoder: Decoder = "layered"
    short_keys: bool = True
    short_target_efficiency: float = 1.0
    short_reveal_step: float = 0.01
    min_reveal_bits: int = 12
    extension: bool = True
    extension_degree: int = 5
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
        if not 1.0 <= self.reveal_growth <= 4.0:
            raise ReconciliationError(f"reveal_growth {self.reveal_growth} not in [1, 4]")
        if not 0 <= self.max_reveals <= 100_000:
            raise ReconciliationError(f"max_reveals {self.max_reveals} not in [0, 100000]")
        if not 2 <= self.extension_degree <= 64:
            raise ReconciliationError(
                f"extension_degree must be in [2, 64], got {self.extension_degree}"
            )
        if not 1 <= self.workers <= 256:
            raise ReconciliationError(f"workers must be in [1, 256], got {self.workers}")
        if self.bp_max_iter < 1:
            raise ReconciliationError("bp_max_iter must be >= 1")
        if self.patience < 0:
            raise ReconciliationError("patience must be >= 0")
        if not 0 <= self.seed_bits <= 256:
            raise ReconciliationError("seed_bits must be in [0, 256]")
        if not 0 <= self.check_bits <= 64:
            raise ReconciliationError("check_bits must be in [0, 64]")
        if not 0.5 <= self.start_confidence < 1.0:
            raise ReconciliationError(f"start_confidence {self.start_confidence} not in [0.5, 1)")
        if not 0.5 <= self.qber_confidence < 1.0:
            raise ReconciliationError(f"qber_confidence {self.qber_confidence} not in [0.5, 1)")
        if not 0.5 < self.short_target_efficiency < 3.0:
            raise ReconciliationError(
                f"short_target_efficiency {self.short_target_efficiency} not in (0.5, 3)"
            )
        if not 1 <= self.min_reveal_bits <= 4096:
            raise ReconciliationError(f"min_reveal_bits {self.min_reveal_bits} not in [1, 4096]")
        if not 0.0 < self.short_reveal_step <= 1.0:
            raise ReconciliationError(f"short_reveal_step {self.short_reveal_step} not in (0, 1]")
        if self.decoder not in ("layered", "ldpc"):
            raise ReconciliationError(f"decoder must be 'layered' or 'ldpc', got {self.decoder!r}")

    @property
    def max_efficiency(self) -> float:
        """Nominal efficiency after ``max_reveals`` reveal rounds (ignoring the key-length cap)."""
        g = self.reveal_growth
        k = self.max_reveals
        steps = k if g == 1.0 else (g**k - 1.0) / (g - 1.0) if k * math.log(g) < 700 else math.inf
        return self.target_efficiency + self.reveal_step * steps


@dataclass(frozen=True)
class FramePlan:
    """Public parameters both parties derive from ``(key length, QBER estimate, config)``.

    ``key_bits[i]`` key bits of frame ``i`` sit in a mother code of ``rate`` and length
    ``block_length`` with ``punctured`` punctured and ``block_length - key_bits[i] -
    punctured`` shortened symbols; reveal rounds disclose ``reveal`` values while punctured
    symbols remain, then geometrically more (:meth:`reveal_size`), at most
    ``max_reveals`` rounds. ``qber_upper`` is the confidence bound the punctured range covers
    (``None`` when the estimate is a hint without sample size).
    """

    qber: float
    rate: float
    block_length: int
    key_bits: tuple[int, ...]
    punctured: int
    reveal: int
    max_reveals: int
    growth: float = 1.0
    qber_upper: float | None = None
    check_bits: int = 0

    @property
    def frames(self) -> int:
        return len(self.key_bits)

    def shortened(self, frame: int) -> int:
        return self.block_length - self.key_bits[frame] - self.punctured

    def reveal_size(self, done: int) -> int:
        """Values disclosed by reveal round ``done`` (0-based): ``reveal`` while punctured
        symbols remain (the range the plan expects), then ``reveal * growth^k`` for the ``k``-th
        round beyond it (a misjudged QBER is reached in a logarithmic number of rounds)."""
        fine = -(-self.punctured // self.reveal)
        k = max(0, done - fine + 1)
        return max(1, math.ceil(self.reveal * self.growth ** min(k, 2000) - 1e-9))

    def revealed_after(self, done: int) -> int:
        """Values disclosed by the first ``done`` reveal rounds."""
        return sum(self.reveal_size(k) for k in range(done))


@dataclass(frozen=True, eq=False)
class ReconcileResult:
    """Outcome of :func:`reconcile`.

    ``bob_key`` is Bob's corrected key; it equals Alice's key only if ``success`` (frames that
    failed keep Bob's uncorrected bits): never use it when ``success`` is False
    (:meth:`require_success`). ``leak_bits`` are the bits the channel counted on ``ec.*``
    messages. ``observed_qber`` is the error rate Bob corrected (the true QBER once ``success``);
    ``efficiency = leak_bits / (N h(observed_qber))`` on success (``nan`` if no error was found),
    else ``efficiency_estimate = leak_bits / (N h(qber))`` with ``qber`` the estimate used.
    ``secret_capacity_left`` is False when the leak reached the key length: the keys may agree
    but nothing secret is left. ``iterations`` counts belief-propagation iterations over all
    frames and rounds.
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
    key_bits: int = 0
    efficiency_estimate: float = math.nan
    secret_capacity_left: bool = True
    check_bits: int = 0
    iterations: int = 0
    qber_upper: float | None = None
    decoder: str = "layered"

    def require_success(self) -> U8:
        """The corrected key, or :class:`ProtocolAbort` if any frame failed."""
        if not self.success:
            raise ProtocolAbort(
                "reconciliation",
                f"{self.frames_failed} of {self.frames} frames could not be reconciled",
            )
        return self.bob_key


def qber_upper_bound(errors: int, sample_bits: int, *, confidence: float = 0.99) -> float:
    """One-sided Clopper-Pearson upper bound on a binomial error rate.

    ``errors`` of ``sample_bits`` disagreed; the true QBER exceeds the result with probability
    at most ``1 - confidence`` (C. J. Clopper, E. S. Pearson, Biometrika 26, 404 (1934)): the
    ``confidence`` quantile of ``Beta(errors + 1, sample_bits - errors)``.
    """
    from scipy.stats import beta

    k, n = int(errors), int(sample_bits)
    if n < 1 or not 0 <= k <= n:
        raise ReconciliationError(f"need 0 <= errors <= sample_bits, got {k}, {n}")
    if not 0.0 < confidence < 1.0:
        raise ReconciliationError(f"confidence must be in (0, 1), got {confidence}")
    if k == n:
        return 1.0
    return float(beta.ppf(confidence, k + 1, n - k))


@dataclass(frozen=True, eq=False)
class QberSample:
    """A disclosed random sample of both keys: ``errors`` of ``bits`` positions disagreed.

    ``keep`` marks the positions that were *not* disclosed (the ones to reconcile);
    ``estimate`` is ``max(errors, 1) / bits`` (a zero-error sample still gets a usable,
    slightly pessimistic rate) and :meth:`upper` its one-sided confidence bound.
    """

    errors: int
    bits: int
    keep: npt.NDArray[np.bool_]

    @property
    def estimate(self) -> float:
        return max(self.errors, 1) / self.bits

    def upper(self, confidence: float = 0.99) -> float:
        return qber_upper_bound(self.errors, self.bits, confidence=confidence)


def sample_qber(
    alice_key: npt.ArrayLike,
    bob_key: npt.ArrayLike,
    *,
    rng: np.random.Generator,
    fraction: float = 0.02,
    max_bits: int = 10_000,
) -> QberSample:
    """Disclose ``fraction`` of the positions (at most ``max_bits``, at least one) of both keys
    at random and count disagreements. The disclosed bits are public: report them and do not
    reconcile them (``keys[sample.keep]``)."""
    x = _as_key(alice_key, "alice_key")
    y = _as_key(bob_key, "bob_key")
    if x.size != y.size or x.size < 2:
        raise ReconciliationError(f"need two keys of equal length >= 2, got {x.size}, {y.size}")
    if not 0.0 < fraction < 1.0:
        raise ReconciliationError(f"sample fraction must be in (0, 1), got {fraction}")
    k = max(1, min(int(x.size * fraction), int(max_bits), x.size - 1))
    idx = rng.choice(x.size, size=k, replace=False)
    keep = np.ones(x.size, dtype=bool)
    keep[idx] = False
    return QberSample(errors=int(np.count_nonzero(x[idx] != y[idx])), bits=k, keep=keep)


def qber_lower_bound(errors: int, sample_bits: int, *, confidence: float) -> float:
    """One-sided Clopper-Pearson lower bound (0 without errors): the ``1 - confidence``
    quantile of ``Beta(errors, sample_bits - errors + 1)``."""
    from scipy.stats import beta

    k, n = int(errors), int(sample_bits)
    if n < 1 or not 0 <= k <= n:
        raise ReconciliationError(f"need 0 <= errors <= sample_bits, got {k}, {n}")
    if not 0.0 < confidence < 1.0:
        raise ReconciliationError(f"confidence must be in (0, 1), got {confidence}")
    return 0.0 if k == 0 else float(beta.ppf(1.0 - confidence, k, n - k + 1))


def sample_bounds(
    qber: float, sample_bits: int, *, config: ReconcileConfig
) -> tuple[float, float | None]:
    """``(qber_upper, qber_start)`` for an estimate measured on ``sample_bits`` disclosed bits,
    as :func:`reconcile` derives them (both parties must pass the same values to
    :class:`AliceReconciler` / :class:`BobReconciler`): the Clopper-Pearson upper bound at
    ``config.qber_confidence`` and, if ``config.start_confidence > 0.5``, the lower bound at
    that confidence (at least half the estimate)."""
    _check_qber(qber)
    k = int(sample_bits)
    if k < 1:
        raise ReconciliationError(f"qber_sample_bits must be >= 1, got {sample_bits}")
    errors = min(k, round(float(qber) * k))
    upper = qber_upper_bound(errors, k, confidence=config.qber_confidence)
    q_up = max(float(qber), min(0.5, upper))
    q_start = None
    if config.start_confidence > 0.5:
        lower = qber_lower_bound(errors, k, confidence=config.start_confidence)
        q_start = min(float(qber), max(lower, float(qber) / 2))
    return q_up, q_start


def plan(
    key_length: int,
    *,
    qber: float,
    config: ReconcileConfig,
    exclude: frozenset[float] = frozenset(),
    qber_upper: float | None = None,
    qber_start: float | None = None,
    variant: int = 0,
) -> FramePlan:
    """Choose the mother code, frame sizes, punctured and shortened counts.

    For a frame of ``L`` key bits, ``f0 = target_efficiency`` and ``f1 = f0 + range``, a mother
    code of rate ``R0`` with ``m = (1 - R0)(L + p + s)`` checks needs ``p`` punctured and ``s``
    shortened symbols with ``m - p = f0 L h`` (first attempt) and ``m = f1 L h`` (all punctured
    symbols revealed); a code stronger than that gets ``s = 0`` and more punctured symbols.
    ``range`` is ``puncture_range``, widened so that ``f1 h(qber) >= f0 h(qber_upper)`` when an
    upper confidence bound is given. Among the family's rates the one with the least modulation
    ``3 p + s`` wins (the rate-compatible construction of Elkouss et al. 2010; puncturing costs
    more threshold than shortening, hence the weight). Rates in ``exclude`` are skipped.
    ``variant`` indexes the candidate code families of the key length (:func:`_families`).
    """
    _check_qber(qber)
    total = int(key_length)
    if total < 1:
        raise ReconciliationError("empty key")
    candidates = _families(total, config)
    if not 0 <= variant < len(candidates):
        raise ReconciliationError(f"variant {variant} not in [0, {len(candidates)})")
    family, min_length, f0, step = candidates[variant]
    if qber_start is not None and not 0.0 < qber_start <= qber:
        raise ReconciliationError(f"qber_start {qber_start} must lie in (0, {qber}]")
    h = binary_entropy(qber if qber_start is None else qber_start)
    span = config.puncture_range
    if qber_upper is not None:
        if not qber <= qber_upper <= 0.5:
            raise ReconciliationError(f"qber_upper {qber_upper} must lie in [{qber}, 0.5]")
        # the mother code (all punctured symbols revealed) covers the upper bound, within reason
        span = min(max(span, f0 * binary_entropy(qber_upper) / h - f0), 1.0)
    f1 = f0 + span
    best: tuple[float, float, int, tuple[int, ...], int] | None = None
    for r0 in family.rates:
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
            n = family.admissible_length(r0, max(min_length, math.ceil(big * expand) + 1))
        except ReconciliationError:
            continue
        if n > family.admissible_length(r0, config.block_length):
            continue
        if family.pair_load(r0, n) > _MAX_PAIR_LOAD:
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
    reveal = max(config.min_reveal_bits, math.ceil(step * key_bits[0] * h))
    checks = min(config.check_bits, max(8, math.ceil(0.01 * key_bits[-1] * h)))
    return FramePlan(
        qber=float(qber),
        rate=r0,
        block_length=n,
        key_bits=key_bits,
        punctured=p,
        reveal=reveal,
        max_reveals=config.max_reveals,
        growth=config.reveal_growth,
        qber_upper=None if qber_upper is None else float(qber_upper),
        check_bits=checks,
    )


_Candidate = tuple[CodeFamily, int, float, float]


def _families(total: int, config: ReconcileConfig) -> tuple[_Candidate, ...]:
    """Candidate ``(code family, shortest code, first-attempt efficiency, reveal step)`` for a
    key of ``total`` bits, in order of preference.

    Keys of ``min_block_length`` and more use the default family. Shorter ones (with
    ``short_keys``) prefer the default family's shortest code (padded by shortened symbols) from
    ``_SHORT_FAMILY_BELOW`` on and the short family at their own length below it; the short
    family at the length's own cap and then at :data:`_SHORT_FALLBACK_CAPS` follow, for keys
    whose preferred plan is starved of punctured symbols (:func:`_code_for`).
    """
    default = (config.family, config.min_block_length, config.target_efficiency, config.reveal_step)
    if not config.short_keys or total >= config.min_block_length:
        return (default,)
    cap = short_degree_cap(total)
    caps = (cap, *(c for c in _SHORT_FALLBACK_CAPS if c < cap))
    short = tuple(
        (fam, 2 * fam.granularity, config.short_target_efficiency, config.short_reveal_step)
        for fam in (short_family(total, max_degree=c) for c in caps)
    )
    return short if total < _SHORT_FAMILY_BELOW else (default, *short)


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


def frame_check(bits: npt.ArrayLike, *, public_seed: int, frame: int, n_bits: int) -> U8:
    """``n_bits`` parities ``<a_i, bits> mod 2`` with public uniformly random vectors ``a_i``.

    A GF(2)-linear 2-universal hash: for ``x != y``, ``Pr[check(x) = check(y)] = 2^-n_bits``
    exactly (each ``<a_i, x xor y>`` is an independent fair bit).
    """
    x = np.asarray(bits, dtype=np.uint8)
    if n_bits == 0:
        return np.zeros(0, dtype=np.uint8)
    packed = np.packbits(x)
    rng = np.random.default_rng([public_seed, frame, 0x636865636B])
    a = rng.integers(0, 256, size=(n_bits, packed.size), dtype=np.uint8)
    counts = np.bitwise_count(a & packed[None, :]).sum(axis=1, dtype=np.int64)
    out: U8 = (counts & 1).astype(np.uint8)
    return out


class _Layout:
    """Positions of one frame in the mother code (public, identical for both parties).

    ``reveal_seq`` is the order in which blind rounds disclose values: the punctured symbols
    from the end of the untainted order backwards (the remaining ones stay a prefix, hence
    untainted), then all key positions in a pseudo-random order from the public seed.
    """

    def __init__(
        self,
        code: LdpcCode,
        frame_plan: FramePlan,
        frame: int,
        public_seed: int,
        *,
        extension_block: int = 0,
    ) -> None:
        n, p = code.n, frame_plan.punctured
        #: bits per extension block (0: reveal key bits once punctured symbols run out)
        self.ext_z = int(extension_block)
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
        # key bits go to code positions in a public pseudo-random order (an interleaver), so
        # error rates that drift along the key spread over all degree classes of the code
        self.key = rng.permutation(np.flatnonzero(free))
        sent = np.ones(code.m, dtype=bool)
        sent[self.pivots] = False
        self.sent_rows = np.flatnonzero(sent)
        self.reveal_seq = np.concatenate([self.punct[::-1], rng.permutation(self.key)])
        self.key_bits = int(self.key.size)
        self.base_leak = int(self.sent_rows.size)

    def round_parts(self, frame_plan: FramePlan, done: int) -> tuple[I64, int]:
        """What reveal round ``done`` (0-based) discloses: symbol positions (punctured ones
        first, then key bits when there is no extension) and a number of extension blocks
        (``ceil(c / ext_z)`` for the ``c`` key bits the schedule would have revealed)."""
        a = frame_plan.revealed_after(done)
        b = a + frame_plan.reveal_size(done)
        p = int(self.punct.size)
        if not self.ext_z or b <= p:
            return np.asarray(self.reveal_seq[a:b], dtype=np.int64), 0
        idx = np.asarray(self.reveal_seq[a:p] if a < p else self.reveal_seq[:0], dtype=np.int64)
        return idx, -(-(b - max(a, p)) // self.ext_z)

    def blocks_after(self, frame_plan: FramePlan, done: int) -> int:
        """Extension blocks sent by the first ``done`` rounds."""
        return sum(self.round_parts(frame_plan, k)[1] for k in range(done))

    def disclosed_after(self, frame_plan: FramePlan, done: int) -> int:
        """Bits disclosed by the first ``done`` reveal rounds (values and extension bits)."""
        if not self.ext_z:
            return frame_plan.revealed_after(done)
        shown = min(frame_plan.revealed_after(done), int(self.punct.size))
        return shown + self.ext_z * self.blocks_after(frame_plan, done)

    def can_reveal(self, frame_plan: FramePlan, done: int, check_bits: int) -> bool:
        """Whether round ``done`` may reveal: within ``max_reveals`` and while the frame's
        disclosed bits (syndrome, check, feedback, reveals) stay below its key bits."""
        if done >= frame_plan.max_reveals:
            return False
        if not self.ext_z and frame_plan.revealed_after(done + 1) > self.reveal_seq.size:
            return False
        leak = self.base_leak + check_bits + (done + 2) + self.disclosed_after(frame_plan, done + 1)
        return leak < self.key_bits


def _public_seed_from(payload: bytes) -> int:
    return int.from_bytes(payload, "big") if payload else 0


def _extension_block(code: LdpcCode, config: ReconcileConfig) -> int:
    return int(code.lift) if config.extension and config.decoder == "layered" else 0


class _Extensions:
    """Extended codes by number of extra blocks (both parties, derived from the public seed)."""

    def __init__(self, code: LdpcCode, degree: int) -> None:
        self.code = code
        self.degree = degree
        self.seed = 0
        self._codes: dict[int, LdpcCode] = {0: code}

    def get(self, blocks: int) -> LdpcCode:
        if blocks not in self._codes:
            from qrepeater.qkdpp.codes import extended

            self._codes[blocks] = extended(self.code, blocks, seed=self.seed, degree=self.degree)
        return self._codes[blocks]

    def parities(self, bits: U8, first: int, blocks: int) -> U8:
        """Syndrome bits of extension blocks ``first .. first + blocks - 1`` of ``bits``."""
        ext = self.get(first + blocks)
        z = self.code.lift
        a = self.code.m + first * z
        rows = ext.H[a : a + blocks * z]
        return np.asarray((rows @ bits.astype(np.int64)) & 1, dtype=np.uint8)


class AliceReconciler:
    """Alice's half: holds only her key ``x``; sends seed, syndromes, checks and reveals.

    Use: ``send_syndromes()`` once, then ``handle_feedback()`` after every round of Bob's until
    it returns False. ``failed`` lists frames given up, ``plan``/``code`` the public choices.
    """

    def __init__(
        self,
        key: npt.ArrayLike,
        *,
        qber: float,
        channel: Channel,
        config: ReconcileConfig,
        rng: np.random.Generator,
        qber_upper: float | None = None,
        qber_start: float | None = None,
    ) -> None:
        self._x = _as_key(key, "alice_key")
        self.plan, self.code = _code_for(self._x.size, qber, config, qber_upper, qber_start)
        self.config = config
        self._channel = channel
        self._rng = rng
        self._frames: list[U8] = []
        self._layouts: list[_Layout] = []
        self._done: list[int] = []
        self.pending: list[int] = []
        self.failed: list[int] = []
        self._ext = _Extensions(self.code, config.extension_degree)

    def send_syndromes(self) -> None:
        """Send the public seed, the syndromes and the checks of all frames."""
        nbytes = -(-self.config.seed_bits // 8)
        seed_bytes = self._rng.bytes(nbytes)
        if nbytes:
            self._channel.send("alice", KIND_SEED, seed_bytes, bits=self.config.seed_bits)
        public_seed = _public_seed_from(seed_bytes)
        self._ext.seed = public_seed
        code, fp = self.code, self.plan
        ext_z = _extension_block(code, self.config)
        parts: list[U8] = []
        checks: list[U8] = []
        start = 0
        for i, size in enumerate(fp.key_bits):
            lay = _Layout(code, fp, i, public_seed, extension_block=ext_z)
            xt = np.zeros(code.n, dtype=np.uint8)
            chunk = self._x[start : start + size]
            xt[lay.key] = chunk
            xt[lay.short] = lay.short_values
            # Each punctured symbol takes the value that zeroes its (private) pivot check.
            xt[lay.punct] = code.syndrome(xt)[lay.pivots]
            syn = code.syndrome(xt)
            parts.append(syn[lay.sent_rows])
            checks.append(
                frame_check(chunk, public_seed=public_seed, frame=i, n_bits=fp.check_bits)
            )
            self._frames.append(xt)
            self._layouts.append(lay)
            self._done.append(0)
            start += size
        payload, nbits = pack_bits(np.concatenate(parts))
        self._channel.send("alice", KIND_SYNDROME, payload, bits=nbits)
        if fp.check_bits:
            payload, nbits = pack_bits(np.concatenate(checks))
            self._channel.send("alice", KIND_CHECK, payload, bits=nbits)
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
            if not lay.can_reveal(self.plan, self._done[f], self.plan.check_bits):
                self.failed.append(f)
                continue
            idx, blocks = lay.round_parts(self.plan, self._done[f])
            values.append(self._frames[f][idx])
            if blocks:
                first = lay.blocks_after(self.plan, self._done[f])
                values.append(self._ext.parities(self._frames[f], first, blocks))
            self._done[f] += 1
            retry.append(f)
        self.pending = retry
        if retry:
            payload, nbits = pack_bits(np.concatenate(values))
            self._channel.send("alice", KIND_REVEAL, payload, bits=nbits)
        return bool(retry)


def syndrome_qber(code: LdpcCode, lay: _Layout, target: U8, *, fallback: float) -> float:
    """Bob's estimate of a frame's error rate from the syndrome mismatch ``t = H e``, which
    costs no disclosure beyond the syndrome itself.

    A check whose support holds ``d`` key bits and no punctured symbol (shortened ones are
    known) is unsatisfied with probability ``(1 - (1 - 2Q)^d)/2`` on the BSC (Gallager, *Low-
    Density Parity-Check Codes*, MIT Press 1963, Lemma 4.1); the moment equation over those
    checks, monotone in ``Q``, is solved by bisection. Returns ``fallback`` when too few checks
    are usable or the mismatch is saturated (then the rows carry no information on ``Q``).
    """
    H = code.H
    rows = lay.sent_rows
    ptr = np.asarray(H.indptr, dtype=np.int64)
    kind = np.zeros(code.n, dtype=np.int8)  # 0 key, 1 shortened, 2 punctured
    kind[lay.short] = 1
    kind[lay.punct] = 2
    cols = kind[np.asarray(H.indices)]
    row_of = np.repeat(np.arange(code.m), np.diff(ptr))
    d = np.bincount(row_of, weights=(cols == 0), minlength=code.m)[rows]
    punct = np.bincount(row_of, weights=(cols == 2), minlength=code.m)[rows]
    use = (punct == 0) & (d > 0)
    if int(use.sum()) < 64:
        return fallback
    d = d[use]
    ones = float(target[rows][use].sum())

    def expected(q: float) -> float:
        return float(((1.0 - (1.0 - 2.0 * q) ** d) / 2.0).sum())

    lo, hi = 1e-5, 0.45
    if ones <= expected(lo):
        return lo
    if ones >= expected(hi):
        return fallback
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if expected(mid) < ones:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


class _Frame:
    """Bob's decoding problem of one frame (private to Bob)."""

    def __init__(self, lay: _Layout, yt: U8, target: U8, prior: F32, offset: int) -> None:
        self.lay = lay
        self.yt = yt
        self.target = target
        self.prior = prior
        self.offset = offset
        self.done = 0
        self.blocks = 0  # extension blocks received
        self.state: DecoderState | None = None
        self.error: U8 | None = None
        self.iterations = 0  # of the last round


class BobReconciler:
    """Bob's half: holds only his key ``y``; decodes and sends one feedback bit per frame.

    Use: ``receive_syndromes()`` once, then ``decode_round()`` and ``receive_reveals()`` until
    the latter returns False. ``corrected`` holds his key with every decoded frame corrected;
    ``failed`` lists frames given up. ``executor`` (any object with ``map``, owned by the
    caller) decodes frames concurrently; otherwise ``config.workers`` threads do.
    """

    def __init__(
        self,
        key: npt.ArrayLike,
        *,
        qber: float,
        channel: Channel,
        config: ReconcileConfig,
        qber_upper: float | None = None,
        qber_start: float | None = None,
        executor: MapExecutor | None = None,
    ) -> None:
        self._y = _as_key(key, "bob_key")
        self.plan, self.code = _code_for(self._y.size, qber, config, qber_upper, qber_start)
        self.config = config
        self._channel = channel
        self._executor = executor
        self._decoders: dict[int, LayeredDecoder] = {}
        self._ext = _Extensions(self.code, config.extension_degree)
        self._ldpc: Any = None
        self.corrected = self._y.copy()
        self.pending: list[int] = []
        self.failed: list[int] = []
        self.attempts = 0
        self.rounds = 0
        self.iterations = 0
        self.decode_seconds = 0.0
        self.errors_found = 0
        self._frames: list[_Frame] = []
        self._checks: U8 = np.zeros(0, dtype=np.uint8)
        self._public_seed = 0
        self._still: list[int] = []
        #: per frame, the QBER Bob reads off the syndrome mismatch (his decoder's prior)
        self.syndrome_qbers: list[float] = []

    def receive_syndromes(self) -> None:
        """Receive seed, syndromes and checks; set up every frame's decoding problem."""
        seed_bytes = self._channel.receive("bob", KIND_SEED) if self.config.seed_bits else b""
        self._public_seed = public_seed = _public_seed_from(seed_bytes)
        self._ext.seed = public_seed
        code, fp = self.code, self.plan
        ext_z = _extension_block(code, self.config)
        layouts = [
            _Layout(code, fp, i, public_seed, extension_block=ext_z) for i in range(fp.frames)
        ]
        total = sum(len(lay.sent_rows) for lay in layouts)
        syn_all = unpack_bits(self._channel.receive("bob", KIND_SYNDROME), total)
        cb = self.plan.check_bits
        if cb:
            self._checks = unpack_bits(
                self._channel.receive("bob", KIND_CHECK), cb * fp.frames
            ).reshape(fp.frames, cb)
        start = row = 0
        for i, size in enumerate(fp.key_bits):
            lay = layouts[i]
            syn = np.zeros(code.m, dtype=np.uint8)
            syn[lay.sent_rows] = syn_all[row : row + len(lay.sent_rows)]
            row += len(lay.sent_rows)
            yt = np.zeros(code.n, dtype=np.uint8)
            yt[lay.key] = self._y[start : start + size]
            yt[lay.short] = lay.short_values
            target = syn ^ code.syndrome(yt)
            q = syndrome_qber(code, lay, target, fallback=fp.qber)
            self.syndrome_qbers.append(q)
            prior = np.full(code.n, math.log((1.0 - q) / q), dtype=np.float32)
            prior[lay.short] = _KNOWN_LLR
            prior[lay.punct] = 0.0
            self._frames.append(_Frame(lay, yt, target, prior, start))
            start += size
        self.pending = list(range(fp.frames))

    # -- decoding ----------------------------------------------------------------------------
    def _layered(self, blocks: int = 0) -> LayeredDecoder:
        """The decoder of the code with ``blocks`` extension blocks (built once each)."""
        if blocks not in self._decoders:
            from qrepeater.qkdpp._bp_kernel import LayeredDecoder

            self._decoders[blocks] = LayeredDecoder.for_code(self._ext.get(blocks))
        return self._decoders[blocks]

    def _syndrome(self, bits: U8, blocks: int = 0) -> U8:
        """``H bits`` of the (extended) code: the compiled kernel once the layered decoder is
        loaded, else scipy."""
        if blocks in self._decoders:
            return self._decoders[blocks].syndrome(bits)
        return self._ext.get(blocks).syndrome(bits)

    def _decode_frame(self, f: int) -> bool:
        """Decode frame ``f`` (runs in a worker thread for the layered decoder)."""
        fr = self._frames[f]
        cfg = self.config
        if cfg.decoder == "ldpc":
            probs = 1.0 / (1.0 + np.exp(fr.prior.astype(np.float64)))
            probs = np.clip(probs, _SHORTENED_P, 1.0 - _SHORTENED_P)
            self._ldpc.update_channel_probs(probs)
            err = np.asarray(self._ldpc.decode(fr.target), dtype=np.uint8)
            fr.error = err if bool(self._ldpc.converge) else None
            fr.iterations = int(self._ldpc.iter)
            return fr.error is not None
        dec = self._layered(fr.blocks)
        if fr.state is None:
            fr.state = dec.state(fr.prior)
        elif fr.state.R.size < dec.messages:  # new extension rows: fresh check messages
            grow = np.zeros(dec.messages - fr.state.R.size, dtype=np.float32)
            fr.state.R = np.concatenate([fr.state.R, grow])
        before = fr.state.iterations
        ok = dec.decode(fr.state, fr.target, max_iter=cfg.bp_max_iter, patience=cfg.patience)
        fr.error = fr.state.hard_decision() if ok else None
        fr.iterations = fr.state.iterations - before
        return ok

    def _decode_all(self, frames: list[int]) -> list[bool]:
        if self.config.decoder == "ldpc":
            if self._ldpc is None:
                self._ldpc = _make_ldpc_decoder(self.code.H, self.config.bp_max_iter)
            return [self._decode_frame(f) for f in frames]
        for b in {self._frames[f].blocks for f in frames}:  # build once, outside the threads
            self._layered(b)
        if self._executor is not None:
            return list(self._executor.map(self._decode_frame, frames))
        workers = min(self.config.workers, len(frames))
        if workers <= 1:
            return [self._decode_frame(f) for f in frames]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="qr-bp") as pool:
            return list(pool.map(self._decode_frame, frames))

    def decode_round(self) -> None:
        """Decode all pending frames, then send the success bitmap to Alice."""
        self.rounds += 1
        t0 = time.perf_counter()
        converged = self._decode_all(self.pending)
        ok: list[bool] = []
        cb = self.plan.check_bits
        for f, conv in zip(self.pending, converged, strict=True):
            fr = self._frames[f]
            self.attempts += 1
            self.iterations += fr.iterations
            err = fr.error
            good = (
                conv
                and err is not None
                and np.array_equal(self._syndrome(err, fr.blocks), fr.target)
            )
            fixed: U8 | None = None
            if good and err is not None:
                fixed = fr.yt[fr.lay.key] ^ err[fr.lay.key]
                if cb:
                    mine = frame_check(fixed, public_seed=self._public_seed, frame=f, n_bits=cb)
                    good = bool(np.array_equal(mine, self._checks[f]))
            ok.append(good)
            if good and fixed is not None:
                size = self.plan.key_bits[f]
                start = fr.offset
                self.corrected[start : start + size] = fixed
                self.errors_found += int(np.count_nonzero(fixed != self._y[start : start + size]))
        self.decode_seconds += time.perf_counter() - t0
        payload, nbits = pack_bits(np.array(ok, dtype=np.uint8))
        self._channel.send("bob", KIND_FEEDBACK, payload, bits=nbits)
        self._still = [f for f, good in zip(self.pending, ok, strict=True) if not good]

    def receive_reveals(self) -> bool:
        """After a failed round: take Alice's reveals (if any). True if decoding continues."""
        retry = []
        cb = self.plan.check_bits
        for f in self._still:
            if self._frames[f].lay.can_reveal(self.plan, self._frames[f].done, cb):
                retry.append(f)
            else:
                self.failed.append(f)
        self.pending = retry
        if not retry:
            return False
        parts = [self._frames[f].lay.round_parts(self.plan, self._frames[f].done) for f in retry]
        z = self.code.lift
        total = sum(idx.size + nb * z for idx, nb in parts)
        values = unpack_bits(self._channel.receive("bob", KIND_REVEAL), total)
        pos = 0
        for f, (idx, nb) in zip(retry, parts, strict=True):
            fr = self._frames[f]
            v = values[pos : pos + idx.size]
            pos += idx.size
            # The error at a revealed position is now known: e = y xor x (y = 0 if punctured).
            llr = np.where(fr.yt[idx] ^ v, -_KNOWN_LLR, _KNOWN_LLR).astype(np.float32)
            fr.prior[idx] = llr
            if fr.state is not None:
                fr.state.set_prior(idx, llr)
            if nb:
                # extension checks: their target is Alice's parities xor Bob's own
                mine = self._ext.parities(fr.yt, fr.blocks, nb)
                fr.target = np.concatenate([fr.target, values[pos : pos + nb * z] ^ mine])
                fr.blocks += nb
                pos += nb * z
            fr.done += 1
        return True


def _make_ldpc_decoder(H: Any, max_iter: int) -> Any:
    """The reference decoder: ``ldpc``'s product-sum BP, flooding schedule, syndrome input."""
    from ldpc.bp_decoder import BpDecoder

    return BpDecoder(
        H,
        error_rate=0.1,
        max_iter=max_iter,
        bp_method="product_sum",
        schedule="parallel",
        input_vector_type="syndrome",
    )


def _code_for(
    key_length: int,
    qber: float,
    config: ReconcileConfig,
    qber_upper: float | None = None,
    qber_start: float | None = None,
) -> tuple[FramePlan, LdpcCode]:
    """The plan and its mother code, loaded or built.

    If no 4-cycle-free code of the planned rate and length exists (high rates need long
    blocks), the rate is excluded and the plan redone. The built code may have a few more
    checks than ``(1 - R0) n`` when the lift had to be truncated: puncture that many more so
    the first attempt is still at the target efficiency, within the shortened budget and the
    code's untainted symbols. A plan whose code has too few untainted symbols to start within
    ``_STARVED_MARGIN`` of the target (short keys at low QBER: padding into a long code, or a
    rate too high for the length) is *starved*; the key's next candidate family is then tried
    (:func:`_families`): the first that is not starved wins, else the one that starts lowest.
    Deterministic, so both parties arrive at the same plan.
    """
    candidates = _families(key_length, config)
    h = binary_entropy(qber if qber_start is None else qber_start)
    best: tuple[float, FramePlan, LdpcCode] | None = None
    error: ReconciliationError | None = None
    for variant, (family, _, f0, _) in enumerate(candidates):
        excluded: set[float] = set()
        while True:
            try:
                frame_plan = _plan_memo(
                    key_length,
                    qber=qber,
                    config=config,
                    exclude=frozenset(excluded),
                    qber_upper=qber_upper,
                    qber_start=qber_start,
                    variant=variant,
                )
            except ReconciliationError as exc:
                error = error or exc
                break
            try:
                code = family.code(
                    frame_plan.rate, frame_plan.block_length, cache_dir=config.cache_dir
                )
            except ReconciliationError:
                excluded.add(frame_plan.rate)
                continue
            fitted = _fit_punctured(frame_plan, code)
            f_start = (code.m - fitted.punctured) / (fitted.key_bits[0] * h)
            if f_start <= f0 + _STARVED_MARGIN:
                return fitted, code
            if best is None or f_start < best[0]:
                best = (f_start, fitted, code)
            break
    if best is None:
        assert error is not None
        raise error
    return best[1], best[2]


#: Plans computed in this process: :func:`plan` is a pure function of public inputs that both
#: parties (and consecutive keys of one length) evaluate; it scans every rate of the family.
_PLANS: OrderedDict[tuple[Any, ...], FramePlan] = OrderedDict()
_PLANS_LOCK = threading.Lock()
_PLANS_MAX: Final = 64


def _plan_memo(
    key_length: int,
    *,
    qber: float,
    config: ReconcileConfig,
    exclude: frozenset[float],
    qber_upper: float | None,
    qber_start: float | None,
    variant: int = 0,
) -> FramePlan:
    """:func:`plan`, remembered per arguments (plans are frozen, so sharing them is safe)."""
    key = (int(key_length), float(qber), config, exclude, qber_upper, qber_start, variant)
    make = partial(
        plan,
        key_length,
        qber=qber,
        config=config,
        exclude=exclude,
        qber_upper=qber_upper,
        qber_start=qber_start,
        variant=variant,
    )
    try:
        hash(key)
    except TypeError:  # an unhashable custom family: no memo
        return make()
    with _PLANS_LOCK:
        hit = _PLANS.get(key)
        if hit is not None:
            _PLANS.move_to_end(key)
            return hit
    frame_plan = make()
    with _PLANS_LOCK:
        _PLANS[key] = frame_plan
        while len(_PLANS) > _PLANS_MAX:
            _PLANS.popitem(last=False)
    return frame_plan


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
    qber_sample_bits: int | None = None,
    executor: MapExecutor | None = None,
) -> ReconcileResult:
    """Reconcile Bob's key to Alice's over ``channel`` (driver of the two parties).

    ``qber`` is the public QBER estimate both parties use. If it was measured on a disclosed
    sample of ``qber_sample_bits`` bits, the plan covers its upper confidence bound
    (``config.qber_confidence``). ``seed`` drives Alice's choice of the public seed;
    ``executor`` (caller-owned, e.g. a ``ThreadPoolExecutor``) decodes frames concurrently.
    Raises :class:`ReconciliationError` on bad inputs; a frame that cannot be decoded before
    its leak reaches its length gives ``success=False`` (never a silently wrong key).
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
    q_up: float | None = None
    q_start: float | None = None
    if qber_sample_bits is not None:
        q_up, q_start = sample_bounds(qber, int(qber_sample_bits), config=cfg)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    before = channel.bits_sent(prefix="ec.")
    before_reveal = channel.bits_sent(prefix=KIND_REVEAL)
    before_check = channel.bits_sent(prefix=KIND_CHECK)
    alice = AliceReconciler(
        x, qber=qber, channel=channel, config=cfg, rng=rng, qber_upper=q_up, qber_start=q_start
    )
    bob = BobReconciler(
        y,
        qber=qber,
        channel=channel,
        config=cfg,
        qber_upper=q_up,
        qber_start=q_start,
        executor=executor,
    )
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
    n = int(x.size)
    observed = bob.errors_found / n
    eff_est = leak / (n * binary_entropy(qber))
    h_true = binary_entropy(observed)
    efficiency = eff_est
    if success:
        efficiency = leak / (n * h_true) if h_true > 0 else math.nan
    return ReconcileResult(
        bob_key=bob.corrected,
        success=success,
        frames=fp.frames,
        frames_failed=len(failed),
        leak_bits=leak,
        efficiency=efficiency,
        seconds=time.perf_counter() - t0,
        qber=float(qber),
        observed_qber=observed,
        rate=fp.rate,
        block_length=fp.block_length,
        revealed_bits=channel.bits_sent(prefix=KIND_REVEAL) - before_reveal,
        rounds=bob.rounds,
        decode_attempts=bob.attempts,
        decode_seconds=bob.decode_seconds,
        failed_frames=failed,
        key_bits=n,
        efficiency_estimate=eff_est,
        secret_capacity_left=leak < n,
        check_bits=channel.bits_sent(prefix=KIND_CHECK) - before_check,
        iterations=bob.iterations,
        qber_upper=q_up,
        decoder=cfg.decoder,
    )
