"""Monte-Carlo sampling of heralded pairs, as the experiment sees them.

Event sampling skips failed attempts: the number of attempts to the next herald is geometric with
success probability ``P_h`` (:meth:`numpy.random.Generator.geometric`), so one draw replaces
``1/P_h`` (about 1,200 at alpha = 17%, 10 km) simulated attempts. Each herald then gets its process
(single excitation, double excitation, noise) from a categorical draw with the analytic weights,
and its detector (+1/-1) with probability 1/2 (the heralding model is symmetric in the two
detectors). Everything is vectorised. :func:`sample_attempts` simulates every attempt (emission,
loss, bunching, noise clicks) and exists to cross-check the fast path.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qrepeater._random import as_generator
from qrepeater.errors import ParameterError
from qrepeater.link.heralding import ElementaryLink

#: process codes of :attr:`HeraldSamples.kind`
SINGLE, DOUBLE, NOISE = 0, 1, 2
KIND_NAMES = ("single", "double", "noise")


@dataclass(frozen=True)
class HeraldSamples:
    """Heralded pairs in time order.

    ``attempts``: attempts since the previous herald (>= 1); ``time_s``: herald times (end of
    the successful attempt) from the start of the run; ``detector``: +1 (psi+) or -1 (psi-);
    ``kind``: herald process (:data:`SINGLE`, :data:`DOUBLE`, :data:`NOISE`).
    """

    attempts: npt.NDArray[np.int64]
    time_s: npt.NDArray[np.float64]
    detector: npt.NDArray[np.int8]
    kind: npt.NDArray[np.uint8]
    total_attempts: int

    def __len__(self) -> int:
        return int(self.time_s.size)

    def kind_counts(self) -> dict[str, int]:
        """Number of heralds of each process."""
        counts = np.bincount(self.kind, minlength=3)
        return {name: int(c) for name, c in zip(KIND_NAMES, counts, strict=True)}


#: bytes of memory a herald takes while it is drawn (arrays and temporaries), for the size check
_BYTES_PER_SAMPLE = 64


def _memory_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):  # pragma: no cover - not POSIX
        return None


def _check_count(n: int, what: str, *, per_item: int = _BYTES_PER_SAMPLE) -> int:
    """``n`` as a positive int that fits in this machine's memory, or a ParameterError."""
    ok = isinstance(n, int | np.integer | float) and not isinstance(n, bool)
    if not ok or not math.isfinite(n) or int(n) != n or n < 1:
        raise ParameterError(f"{what} must be a positive integer, got {n!r}")
    count = int(n)
    memory = _memory_bytes()
    if memory is not None and count * per_item > memory:
        raise ParameterError(
            f"{what} = {count:,} needs about {count * per_item / 2**30:,.0f} GiB, more than this "
            f"machine's {memory / 2**30:,.0f} GiB; draw it in batches"
        )
    return count


def sample_heralds(
    link: ElementaryLink,
    *,
    n_pairs: int,
    seed: int | np.random.Generator | np.random.SeedSequence | None = None,
    start_time_s: float = 0.0,
) -> HeraldSamples:
    """Draw ``n_pairs`` consecutive heralds, skipping failed attempts (geometric waits)."""
    n = _check_count(n_pairs, "n_pairs")
    rng = as_generator(seed)
    comp = link.composition
    attempts = rng.geometric(comp.total, size=n).astype(np.int64)
    cum = np.cumsum(attempts)
    time_s = (start_time_s + cum * link.attempt_period_s).astype(np.float64)
    u = rng.random(n)
    f_single, f_double, _ = comp.fractions()
    kind = (u >= f_single).astype(np.uint8) + (u >= f_single + f_double).astype(np.uint8)
    detector = np.where(rng.random(n) < 0.5, 1, -1).astype(np.int8)
    return HeraldSamples(
        attempts=attempts, time_s=time_s, detector=detector, kind=kind, total_attempts=int(cum[-1])
    )


def sample_attempts(
    link: ElementaryLink,
    *,
    n_attempts: int,
    seed: int | np.random.Generator | np.random.SeedSequence | None = None,
    block: int = 1 << 20,
) -> HeraldSamples:
    """Simulate ``n_attempts`` attempts one by one (vectorised in blocks) and keep the heralds.

    Each attempt: each ion emits with probability alpha; each photon clicks a station detector
    with its node efficiency; a lone photon picks a detector at random, two photons bunch into the
    same one (Hong-Ou-Mandel); each detector adds a noise click with probability ``q``; the
    attempt heralds when exactly one detector clicks.
    """
    total = _check_count(n_attempts, "n_attempts")
    rng = as_generator(seed)
    a = link.alpha
    ea, eb = link.node_efficiencies
    q = link.noise_click_probability
    out_idx, out_det, out_kind = [], [], []
    done = 0
    while done < total:
        m = min(block, total - done)
        emit_a = rng.random(m) < a
        emit_b = rng.random(m) < a
        det_a = emit_a & (rng.random(m) < ea)
        det_b = emit_b & (rng.random(m) < eb)
        photon = det_a | det_b
        port_plus = rng.random(m) < 0.5  # bunched photons share one random port
        noise_plus = rng.random(m) < q
        noise_minus = rng.random(m) < q
        click_plus = (photon & port_plus) | noise_plus
        click_minus = (photon & ~port_plus) | noise_minus
        herald = click_plus ^ click_minus
        idx = np.flatnonzero(herald)
        kind = np.where(photon[idx], np.where(emit_a[idx] & emit_b[idx], 1, 0), 2)
        out_idx.append(idx + done)
        out_det.append(np.where(click_plus[idx], 1, -1))
        out_kind.append(kind)
        done += m
    index = np.concatenate(out_idx).astype(np.int64)
    attempts = np.diff(np.concatenate([[-1], index]))
    return HeraldSamples(
        attempts=attempts,
        time_s=((index + 1) * link.attempt_period_s).astype(np.float64),
        detector=np.concatenate(out_det).astype(np.int8),
        kind=np.concatenate(out_kind).astype(np.uint8),
        total_attempts=total,
    )
