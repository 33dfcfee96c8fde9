"""DI-QKD rounds: settings, outcomes and per-party arrays for every heralded pair.

Protocol (Zhang et al., PRL 131, 140801 (2023), as run by Liu et al. (USTC, 2025), Fig. 4a):
each heralded pair is one round. Alice picks ``X`` in {0, 1}, Bob ``Y`` in {0, 1, 2},
independently. ``X, Y`` in {0, 1} are CHSH test rounds, ``X = 0, Y = 2`` key rounds and
``X = 1, Y = 2`` are discarded. Alice measures ``A0 = Z`` (key and CHSH) and ``A1 = X``; Bob's
``B0, B1`` are CHSH-optimal and ``B2`` is the key setting for the delivered state
(:func:`qrepeater.quantum.bell.optimal_settings`). The herald sign is public, so Bob uses the
settings optimal for the heralded state, psi+ on detector +1 and psi- on -1 (his ``B0, B1``
flip their X component); both can be overridden. Outcome bit 0 <-> eigenvalue +1.

Sampling. A herald carries a hidden process (single photon, double excitation, noise click,
:mod:`qrepeater.link.sampler`), and the parties see only the detector sign. For i.i.d. rounds
the observed record ``(herald, x, y, a, b)`` has the distribution
``P(d) P(x) P(y) sum_k P(k | d) p_k(a, b | x, y) = P(d) P(x) P(y) p_rho_d(a, b | x, y)``, with
``rho_d = sum_k P(k | d) rho_k`` the herald-averaged state (``link.measured_state(d)``), because
``p_rho(a, b | x, y)`` is linear in ``rho`` and the process is independent of the herald time and
of the settings. Drawing outcomes from ``rho_d`` is therefore exact, not an approximation; only
joint statistics with the hidden process (not recorded) would differ.

Vectorisation: ``p[d, x, y, 2a + b]`` is tabulated once (12 cells of four joint outcomes) and each
round uses one uniform against the three cumulative thresholds of its cell.

Randomness: ``SeedSequence(seed).spawn(5)`` gives independent streams for the link (herald
times and signs), Alice's settings, Bob's settings, the devices' outcomes and the run id, so a
change in one party's settings leaves the others' draws unchanged. Externally supplied settings
(the experiment used pre-generated device-independent random numbers, Liu et al., Nat. Phys. 17,
448 (2021)) replace the simulated ones and are validated.
"""

from __future__ import annotations

import importlib.metadata
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from qrepeater._random import Seed
from qrepeater.errors import ParameterError
from qrepeater.hardware._validate import finite
from qrepeater.link.heralding import ElementaryLink
from qrepeater.link.sampler import sample_heralds
from qrepeater.quantum.bell import DIQKDSettings, optimal_settings, outcome_probabilities

if TYPE_CHECKING:
    from qrepeater.diqkd.keyrate import SettingProbabilities
    from qrepeater.presets import Preset

__all__ = [
    "ALICE_SETTINGS",
    "BOB_SETTINGS",
    "HERALDS",
    "RECORD_FORMAT",
    "DIQKDRun",
    "Party",
    "PartyRounds",
    "RunMetadata",
    "SettingDistribution",
    "draw_settings",
    "herald_directions",
    "outcome_table",
    "sample_outcomes",
    "simulate_from_preset",
    "simulate_rounds",
    "validate_settings",
]

Party = Literal["alice", "bob"]
U8 = npt.NDArray[np.uint8]

#: allowed setting values per party, and herald signs (detector +1 -> psi+, -1 -> psi-)
ALICE_SETTINGS: tuple[int, ...] = (0, 1)
BOB_SETTINGS: tuple[int, ...] = (0, 1, 2)
HERALDS: tuple[int, int] = (1, -1)
#: identifier of the record layout written into the metadata
RECORD_FORMAT = "qrepeater.diqkd.rounds/1"
_TOL = 1e-9


@dataclass(frozen=True)
class SettingDistribution:
    """Probabilities of the measurement settings: ``P(X = 0)`` and ``P(Y = 0, 1, 2)``.

    ``P(X = 1) = 1 - p_x0``; the ``p_y*`` must sum to 1. Key rounds have probability
    ``p_x0 p_y2``, test rounds ``p_y0 + p_y1``, discarded rounds ``(1 - p_x0) p_y2``.
    """

    p_x0: float
    p_y0: float
    p_y1: float
    p_y2: float

    def __post_init__(self) -> None:
        for name in ("p_x0", "p_y0", "p_y1", "p_y2"):
            v = finite("SettingDistribution", name, getattr(self, name))
            if not 0.0 <= v <= 1.0:
                raise ParameterError(f"SettingDistribution.{name} must lie in [0, 1], got {v}")
        total = self.p_y0 + self.p_y1 + self.p_y2
        if abs(total - 1.0) > _TOL:
            raise ParameterError(f"P(Y=0) + P(Y=1) + P(Y=2) must be 1, got {total:.12g}")

    @classmethod
    def from_fractions(cls, *, p_x0: float, p_y2: float) -> SettingDistribution:
        """``P(X=0)`` and ``P(Y=2)``, with the test settings ``Y = 0, 1`` equally likely."""
        rest = (1.0 - finite("SettingDistribution", "p_y2", p_y2)) / 2
        return cls(p_x0=p_x0, p_y0=rest, p_y1=rest, p_y2=p_y2)

    @classmethod
    def from_preset(cls, preset: Preset) -> SettingDistribution:
        """The preset's operating point, ``P(Y=0) = P(Y=1) = (1 - P(Y=2))/2``.

        How the ustc2025 numbers were fitted (:mod:`qrepeater.calibrate`): with ``t`` test
        rounds split equally over the four CHSH settings and every ``|E_xy| = S/4``,
        ``Var(E_xy) = (1 - E_xy^2)/(t/4)`` gives ``Var(S) = (16 - S^2)/t``. The paper's
        ``S = 2.5758 +- 0.0059`` thus implies ``t = (16 - S^2)/sigma^2 ~ 269,040`` of the
        ``N = 405,145`` rounds, i.e. ``P(Y=2) = 1 - t/N ~ 0.3359``; the 105,976 key rounds then
        give ``P(X=0) = (105,976/405,145)/P(Y=2) ~ 0.7786``. Since X is drawn independently of
        Y, the test rounds are *not* split equally (``P(X=0) != 1/2``), so a simulated run has a
        larger ``sigma_S`` (about 0.0071) than the 0.0059 the fit started from; see
        ``docs/diqkd_rounds.md``.
        """
        op = preset.operating
        return cls.from_fractions(p_x0=op.diqkd_prob_x0, p_y2=op.diqkd_prob_y2)

    @property
    def alice(self) -> tuple[float, float]:
        """``(P(X=0), P(X=1))``."""
        return self.p_x0, 1.0 - self.p_x0

    @property
    def bob(self) -> tuple[float, float, float]:
        """``(P(Y=0), P(Y=1), P(Y=2))``."""
        return self.p_y0, self.p_y1, self.p_y2

    @property
    def key_fraction(self) -> float:
        """Probability of a key round, ``P(X=0) P(Y=2)``."""
        return self.p_x0 * self.p_y2

    @property
    def test_fraction(self) -> float:
        """Probability of a CHSH test round, ``P(Y in {0, 1})``."""
        return self.p_y0 + self.p_y1

    @property
    def discard_fraction(self) -> float:
        """Probability of a discarded round, ``P(X=1) P(Y=2)``."""
        return (1.0 - self.p_x0) * self.p_y2

    def chsh_std(self, *, chsh: float, rounds: int) -> float:
        """Expected standard error of S for ``rounds`` rounds if every ``|E_xy| = S/4``.

        ``sigma_S^2 = (1 - S^2/16) sum_xy 1/(N P(x) P(y))`` (delta method, Var(E) = (1-E^2)/n).
        """
        if rounds < 1 or not 0 < self.p_x0 < 1 or self.p_y0 <= 0 or self.p_y1 <= 0:
            return math.inf
        inv = sum(1.0 / (px * py) for px in self.alice for py in (self.p_y0, self.p_y1))
        return math.sqrt(max(0.0, 1.0 - chsh**2 / 16) * inv / rounds)

    def probabilities(self) -> SettingProbabilities:
        """Per-round probabilities of the input pairs, as the finite-key bounds take them."""
        from qrepeater.diqkd.keyrate import SettingProbabilities

        (p_x0, p_x1), (p_y0, p_y1, p_y2) = self.alice, self.bob
        return SettingProbabilities(
            key=p_x0 * p_y2,
            test=(p_x0 * p_y0, p_x0 * p_y1, p_x1 * p_y0, p_x1 * p_y1),
            discard=p_x1 * p_y2,
        )

    def to_dict(self) -> dict[str, float]:
        """JSON-ready dict ``{p_x0, p_y0, p_y1, p_y2}``."""
        return {"p_x0": self.p_x0, "p_y0": self.p_y0, "p_y1": self.p_y1, "p_y2": self.p_y2}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SettingDistribution:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(**{k: float(d[k]) for k in ("p_x0", "p_y0", "p_y1", "p_y2")})
        except (KeyError, TypeError, ValueError) as exc:
            raise ParameterError(f"invalid settings distribution {dict(d)!r}: {exc}") from None


def _settings_to_dict(s: DIQKDSettings) -> dict[str, list[list[float]]]:
    return {"alice": [list(v) for v in s.alice], "bob": [list(v) for v in s.bob]}


def _settings_from_dict(d: Mapping[str, Any]) -> DIQKDSettings:
    try:
        alice = tuple(tuple(float(c) for c in v) for v in d["alice"])
        bob = tuple(tuple(float(c) for c in v) for v in d["bob"])
        if len(alice) != 2 or len(bob) != 3 or any(len(v) != 3 for v in (*alice, *bob)):
            raise ValueError("need 2 Alice and 3 Bob three-vectors")
        return DIQKDSettings(alice=alice, bob=bob)  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError) as exc:
        raise ParameterError(f"invalid measurement directions: {exc}") from None


@dataclass(frozen=True)
class RunMetadata:
    """Provenance of a DI-QKD run, stored with each party's record.

    ``directions`` are the measurement directions used after a herald on detector +1 and -1
    (in that order); ``settings_source`` says per party whether settings were ``simulated``
    or ``external``; ``distribution`` is the nominal settings distribution (None when external
    settings came without one); ``seed`` the root entropy of the run's ``SeedSequence`` (None
    when a ``Generator`` was passed).
    """

    run_id: str
    preset: str | None
    preset_digest: str | None
    seed: int | None
    version: str
    fiber_km: float
    alpha: float
    rounds: int
    distribution: SettingDistribution | None
    directions: tuple[DIQKDSettings, DIQKDSettings]
    alice_source: Literal["simulated", "external"] = "simulated"
    bob_source: Literal["simulated", "external"] = "simulated"

    def __post_init__(self) -> None:
        if not self.run_id:
            raise ParameterError("run_id must be a non-empty string")
        if self.rounds < 0:
            raise ParameterError(f"rounds must be non-negative, got {self.rounds}")
        for src in (self.alice_source, self.bob_source):
            if src not in ("simulated", "external"):
                raise ParameterError(f"settings source must be simulated or external, got {src}")

    def to_dict(self, party: Party) -> dict[str, Any]:
        """JSON-ready metadata of ``party``'s record."""
        return {
            "format": RECORD_FORMAT,
            "party": party,
            "run_id": self.run_id,
            "preset": self.preset,
            "preset_digest": self.preset_digest,
            "seed": self.seed,
            "qrepeater_version": self.version,
            "fiber_km": self.fiber_km,
            "alpha": self.alpha,
            "rounds": self.rounds,
            "settings_distribution": None
            if self.distribution is None
            else self.distribution.to_dict(),
            "settings_source": {"alice": self.alice_source, "bob": self.bob_source},
            "directions": {
                "+1": _settings_to_dict(self.directions[0]),
                "-1": _settings_to_dict(self.directions[1]),
            },
            "outcome_convention": "bit 0 <-> eigenvalue +1",
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> tuple[Party, RunMetadata]:
        """Inverse of :meth:`to_dict`: ``(party, metadata)``; :class:`ParameterError` if bad."""
        try:
            if d["format"] != RECORD_FORMAT:
                raise ValueError(f"unknown format {d['format']!r} (expected {RECORD_FORMAT})")
            party = d["party"]
            if party not in ("alice", "bob"):
                raise ValueError(f"party must be alice or bob, got {party!r}")
            dist = d["settings_distribution"]
            src = d["settings_source"]
            dirs = d["directions"]
            seed = d["seed"]
            meta = cls(
                run_id=str(d["run_id"]),
                preset=None if d["preset"] is None else str(d["preset"]),
                preset_digest=None if d["preset_digest"] is None else str(d["preset_digest"]),
                seed=None if seed is None else int(seed),
                version=str(d["qrepeater_version"]),
                fiber_km=float(d["fiber_km"]),
                alpha=float(d["alpha"]),
                rounds=int(d["rounds"]),
                distribution=None if dist is None else SettingDistribution.from_dict(dist),
                directions=(_settings_from_dict(dirs["+1"]), _settings_from_dict(dirs["-1"])),
                alice_source=src["alice"],
                bob_source=src["bob"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ParameterError(f"invalid run metadata: {exc}") from None
        return party, meta


@dataclass(frozen=True, eq=False)
class PartyRounds:
    """One party's record: ``round`` (uint64), ``time_s`` (float64, herald time), ``herald``
    (int8, +1/-1), ``setting`` (uint8) and ``outcome`` (uint8, bit 0 <-> eigenvalue +1).

    Construction checks shapes and dtypes only; value ranges are checked by
    :func:`validate_settings` and by the record reader (:mod:`qrepeater.diqkd.records`).
    """

    party: Party
    round: npt.NDArray[np.uint64]
    time_s: npt.NDArray[np.float64]
    herald: npt.NDArray[np.int8]
    setting: U8
    outcome: U8

    def __post_init__(self) -> None:
        if self.party not in ("alice", "bob"):
            raise ParameterError(f"party must be 'alice' or 'bob', got {self.party!r}")
        want = {
            "round": np.uint64,
            "time_s": np.float64,
            "herald": np.int8,
            "setting": np.uint8,
            "outcome": np.uint8,
        }
        n = None
        for name, dtype in want.items():
            a = getattr(self, name)
            if not isinstance(a, np.ndarray) or a.ndim != 1 or a.dtype != dtype:
                raise ParameterError(f"{name} must be a 1-D {np.dtype(dtype)} array")
            if n is not None and a.size != n:
                raise ParameterError(f"{name} has {a.size} entries, round has {n}")
            n = a.size

    def __len__(self) -> int:
        return int(self.round.size)


@dataclass(frozen=True, eq=False)
class DIQKDRun:
    """Both parties' records of one run and its metadata."""

    alice: PartyRounds
    bob: PartyRounds
    metadata: RunMetadata

    def __len__(self) -> int:
        return len(self.alice)

    @property
    def duration_s(self) -> float:
        """Herald time of the last round (0 for an empty run)."""
        return float(self.alice.time_s[-1]) if len(self.alice) else 0.0


def _seed_sequence(seed: Seed) -> tuple[list[np.random.Generator], int | None]:
    """Five independent generators (link, Alice, Bob, devices, run id) and the root entropy."""
    if isinstance(seed, np.random.Generator):
        return list(seed.spawn(5)), None
    if isinstance(seed, np.random.SeedSequence):
        ss = seed
    elif seed is None or (isinstance(seed, int | np.integer) and not isinstance(seed, bool)):
        if seed is not None and int(seed) < 0:
            raise ParameterError(f"seed must be non-negative, got {seed}")
        ss = np.random.SeedSequence(None if seed is None else int(seed))
    else:
        raise ParameterError(f"seed must be an int, SeedSequence or Generator, got {seed!r}")
    entropy = ss.entropy if isinstance(ss.entropy, int) and not ss.spawn_key else None
    return [np.random.default_rng(s) for s in ss.spawn(5)], entropy


def herald_directions(
    link: ElementaryLink,
    directions: DIQKDSettings | Mapping[int, DIQKDSettings] | None = None,
) -> tuple[DIQKDSettings, DIQKDSettings]:
    """Measurement directions after a herald on detector +1 and -1.

    ``None``: optimal for ``link.measured_state(d)`` (Bob knows the public herald sign);
    one :class:`DIQKDSettings`: the same for both signs; a mapping ``{+1: s, -1: s}``: per sign.
    """
    if directions is None:
        return optimal_settings(link.measured_state(1)), optimal_settings(link.measured_state(-1))
    if isinstance(directions, DIQKDSettings):
        return directions, directions
    try:
        plus, minus = directions[1], directions[-1]
    except (KeyError, TypeError):
        raise ParameterError("directions mapping needs entries for heralds +1 and -1") from None
    for s in (plus, minus):
        if not isinstance(s, DIQKDSettings):
            raise ParameterError(f"directions must be DIQKDSettings, got {type(s).__name__}")
    return plus, minus


def outcome_table(
    link: ElementaryLink, directions: tuple[DIQKDSettings, DIQKDSettings]
) -> npt.NDArray[np.float64]:
    """``p[h, x, y, 2a + b]`` with ``h = 0`` for herald +1 and ``1`` for -1 (rows sum to 1)."""
    p = np.empty((2, 2, 3, 4))
    p[0] = outcome_probabilities(link.measured_state(1), directions[0]).reshape(2, 3, 4)
    p[1] = outcome_probabilities(link.measured_state(-1), directions[1]).reshape(2, 3, 4)
    out: npt.NDArray[np.float64] = p / p.sum(axis=-1, keepdims=True)
    return out


def sample_outcomes(
    table: npt.NDArray[np.float64],
    *,
    herald: npt.NDArray[np.int8],
    alice_setting: U8,
    bob_setting: U8,
    rng: np.random.Generator,
) -> tuple[U8, U8]:
    """Outcome bits ``(a, b)`` for each round: one uniform against its cell's cumulative row.

    ``table`` is :func:`outcome_table`'s ``p[h, x, y, k]``; settings must already be valid.
    """
    cum = np.cumsum(np.asarray(table, dtype=np.float64).reshape(12, 4), axis=1)
    t0, t1, t2 = (np.ascontiguousarray(cum[:, i]) for i in range(3))
    cell = (herald < 0).astype(np.intp)
    cell *= 6
    cell += alice_setting.astype(np.intp) * 3
    cell += bob_setting
    u = rng.random(cell.size)
    k = (u >= t0[cell]).view(np.uint8)
    k = k + (u >= t1[cell]).view(np.uint8)
    k += (u >= t2[cell]).view(np.uint8)
    a: U8 = k >> np.uint8(1)
    b: U8 = k & np.uint8(1)
    return a, b


def draw_settings(
    dist: SettingDistribution,
    n: int,
    *,
    alice_rng: np.random.Generator,
    bob_rng: np.random.Generator,
) -> tuple[U8, U8]:
    """Independent settings ``(x, y)`` of ``n`` rounds from each party's own generator."""
    return _draw_alice(dist, n, alice_rng), _draw_bob(dist, n, bob_rng)


def _draw_alice(dist: SettingDistribution | None, n: int, rng: np.random.Generator) -> U8:
    if dist is None:
        raise ParameterError("a settings distribution is needed to simulate Alice's settings")
    x: U8 = (rng.random(n) >= dist.p_x0).view(np.uint8)
    return x


def _draw_bob(dist: SettingDistribution | None, n: int, rng: np.random.Generator) -> U8:
    if dist is None:
        raise ParameterError("a settings distribution is needed to simulate Bob's settings")
    u = rng.random(n)
    y: U8 = (u >= dist.p_y0).view(np.uint8)
    y += (u >= dist.p_y0 + dist.p_y1).view(np.uint8)
    return y


def validate_settings(values: npt.ArrayLike, *, party: Party, n: int | None = None) -> U8:
    """Externally supplied settings as a uint8 array; :class:`ParameterError` if invalid.

    Must be 1-D, integer-valued (integer, bool or integral float dtype), of length ``n`` when
    given, and in {0, 1} for Alice or {0, 1, 2} for Bob.
    """
    allowed = ALICE_SETTINGS if party == "alice" else BOB_SETTINGS
    a = np.asarray(values)
    if a.ndim != 1:
        raise ParameterError(f"{party}'s settings must be a 1-D array, got shape {a.shape}")
    if n is not None and a.size != n:
        raise ParameterError(f"{party}'s settings have {a.size} entries, expected {n}")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ParameterError(f"{party}'s settings must be integers")
    elif a.dtype.kind not in "iub":
        raise ParameterError(f"{party}'s settings must be integers, got dtype {a.dtype}")
    bad = (a < 0) | (a > max(allowed))
    if np.any(bad):
        i = int(np.argmax(bad))
        raise ParameterError(f"{party}'s setting {a[i]} at index {i} is not one of {set(allowed)}")
    return a.astype(np.uint8)


def simulate_rounds(
    link: ElementaryLink,
    *,
    n_rounds: int | None,
    seed: Seed = None,
    distribution: SettingDistribution | None = None,
    directions: DIQKDSettings | Mapping[int, DIQKDSettings] | None = None,
    alice_settings: npt.ArrayLike | None = None,
    bob_settings: npt.ArrayLike | None = None,
    preset: Preset | None = None,
) -> DIQKDRun:
    """Simulate ``n_rounds`` DI-QKD rounds on ``link`` (one round per herald).

    ``distribution`` defaults to the preset's (``preset`` or, if None, the default preset);
    ``alice_settings``/``bob_settings`` replace the simulated settings of that party (then
    ``n_rounds`` may be None and is taken from their length). ``preset`` only adds provenance
    (label, digest) and the default distribution; the physics comes from ``link``.
    """
    n = _round_count(n_rounds, alice_settings, bob_settings)
    if distribution is None and (alice_settings is None or bob_settings is None):
        from qrepeater.presets import load_preset

        distribution = SettingDistribution.from_preset(preset or load_preset())
    dirs = herald_directions(link, directions)
    table = outcome_table(link, dirs)
    (link_rng, alice_rng, bob_rng, device_rng, id_rng), entropy = _seed_sequence(seed)
    heralds = sample_heralds(link, n_pairs=n, seed=link_rng) if n else None
    time_s = heralds.time_s if heralds else np.empty(0, np.float64)
    herald = heralds.detector if heralds else np.empty(0, np.int8)
    if alice_settings is None:
        x = _draw_alice(distribution, n, alice_rng)
    else:
        x = validate_settings(alice_settings, party="alice", n=n)
    if bob_settings is None:
        y = _draw_bob(distribution, n, bob_rng)
    else:
        y = validate_settings(bob_settings, party="bob", n=n)
    a, b = sample_outcomes(table, herald=herald, alice_setting=x, bob_setting=y, rng=device_rng)
    rounds = np.arange(n, dtype=np.uint64)
    meta = RunMetadata(
        run_id=str(uuid.UUID(bytes=id_rng.bytes(16), version=4)),
        preset=preset.label if preset else None,
        preset_digest=preset.digest if preset else None,
        seed=entropy,
        version=_version(),
        fiber_km=link.fiber_km,
        alpha=link.alpha,
        rounds=n,
        distribution=distribution,
        directions=dirs,
        alice_source="simulated" if alice_settings is None else "external",
        bob_source="simulated" if bob_settings is None else "external",
    )
    return DIQKDRun(
        alice=PartyRounds("alice", rounds, time_s, herald, x, a),
        bob=PartyRounds("bob", rounds.copy(), time_s.copy(), herald.copy(), y, b),
        metadata=meta,
    )


def simulate_from_preset(
    preset: Preset,
    *,
    n_rounds: int,
    seed: Seed = None,
    fiber_km: float | None = None,
    alpha: float | None = None,
    distribution: SettingDistribution | None = None,
) -> DIQKDRun:
    """:func:`simulate_rounds` on the preset's DI-QKD link (``alpha_diqkd`` unless given)."""
    link = ElementaryLink.from_preset(
        preset,
        alpha=preset.operating.alpha_diqkd if alpha is None else alpha,
        fiber_km=fiber_km,
    )
    return simulate_rounds(
        link, n_rounds=n_rounds, seed=seed, distribution=distribution, preset=preset
    )


def _round_count(n: int | None, *arrays: npt.ArrayLike | None) -> int:
    if n is None:
        sizes = {np.asarray(a).size for a in arrays if a is not None}
        if not sizes:
            raise ParameterError("n_rounds is required when no settings are supplied")
        if len(sizes) > 1:
            raise ParameterError(f"supplied settings differ in length: {sorted(sizes)}")
        n = sizes.pop()
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ParameterError(f"n_rounds must be a non-negative integer, got {n!r}")
    return int(n)


def _version() -> str:
    try:
        return importlib.metadata.version("qrepeater")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
