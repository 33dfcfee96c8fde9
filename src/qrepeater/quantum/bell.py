"""CHSH value and QBER of a two-qubit state for the DI-QKD measurement settings.

Alice measures ``A0 = Z`` (key and CHSH) and ``A1 = X``; Bob measures in the plane spanned by
the correlations. For observables ``A = a.sigma``, ``B = b.sigma`` the correlator is
``E = a^T T b`` with ``T_ij = Tr(rho sigma_i (x) sigma_j)``; for fixed Alice vectors the CHSH
expression ``E00 + E01 + E10 - E11`` is maximised by ``b0 ~ T^T(a0 + a1)`` and
``b1 ~ T^T(a0 - a1)``, giving ``S = |T^T(a0 + a1)| + |T^T(a0 - a1)|`` (Horodecki et al.,
Phys. Lett. A 200, 340 (1995), with Alice's settings fixed). For the heralded states here
``T`` is diagonal and ``S = 2 sqrt(T_xx^2 + T_zz^2)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qrepeater.errors import ParameterError
from qrepeater.quantum.states import PAULIS

FloatArray = npt.NDArray[np.float64]
#: Tsirelson's bound, the largest CHSH value quantum mechanics allows (Cirel'son, Lett. Math.
#: Phys. 4, 93 (1980)): every estimate, bound and check in the package uses this one constant.
TSIRELSON = 2.0 * math.sqrt(2.0)

_AXES = ("X", "Y", "Z")
AXIS_VECTORS: dict[str, FloatArray] = {
    "X": np.array([1.0, 0.0, 0.0]),
    "Y": np.array([0.0, 1.0, 0.0]),
    "Z": np.array([0.0, 0.0, 1.0]),
}


def correlation_matrix(rho: npt.ArrayLike) -> FloatArray:
    """``T_ij = Tr(rho sigma_i (x) sigma_j)`` for i, j in (X, Y, Z)."""
    r = np.asarray(rho, dtype=np.complex128)
    t = np.empty((3, 3))
    for i, a in enumerate(_AXES):
        for j, b in enumerate(_AXES):
            t[i, j] = float(np.real(np.trace(r @ np.kron(PAULIS[a], PAULIS[b]))))
    return t


def local_bloch(rho: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Bloch vectors of Alice's and Bob's reduced states."""
    r = np.asarray(rho, dtype=np.complex128)
    a = np.array([np.real(np.trace(r @ np.kron(PAULIS[k], PAULIS["I"]))) for k in _AXES])
    b = np.array([np.real(np.trace(r @ np.kron(PAULIS["I"], PAULIS[k]))) for k in _AXES])
    return a, b


Vec3 = tuple[float, float, float]


def _vec3(v: npt.ArrayLike) -> Vec3:
    a = np.asarray(v, dtype=float).ravel()
    return (float(a[0]), float(a[1]), float(a[2]))


@dataclass(frozen=True)
class DIQKDSettings:
    """Measurement directions (Bloch unit vectors) of the DI-QKD protocol.

    ``alice[x]`` for x in {0, 1}; ``bob[y]`` for y in {0, 1, 2} (y = 2 is the key setting).
    """

    alice: tuple[Vec3, Vec3]
    bob: tuple[Vec3, Vec3, Vec3]

    def __post_init__(self) -> None:
        for v in (*self.alice, *self.bob):
            if abs(np.linalg.norm(v) - 1.0) > 1e-9:
                raise ParameterError(f"measurement direction {v} is not a unit vector")


def optimal_settings(rho: npt.ArrayLike) -> DIQKDSettings:
    """Bob's CHSH-optimal settings for Alice's ``A0 = Z``, ``A1 = X``, and ``B2`` maximising
    the key-round correlation with ``A0`` (``B2 ~ T^T z``, i.e. ``-Z`` for psi states)."""
    t = correlation_matrix(rho)
    a0, a1 = AXIS_VECTORS["Z"], AXIS_VECTORS["X"]
    vecs: list[Vec3] = []
    for v in (t.T @ (a0 + a1), t.T @ (a0 - a1), t.T @ a0):
        n = np.linalg.norm(v)
        if n < 1e-12:
            raise ParameterError("state has no correlations to optimise Bob's settings on")
        vecs.append(_vec3(v / n))
    return DIQKDSettings(alice=(_vec3(a0), _vec3(a1)), bob=(vecs[0], vecs[1], vecs[2]))


def outcome_probabilities(rho: npt.ArrayLike, settings: DIQKDSettings) -> FloatArray:
    """``p[x, y, a, b]`` for outcomes a, b in {0, 1} (bit 0 <-> eigenvalue +1).

    ``p(a, b | x, y) = [1 + A <A_x> + B <B_y> + A B E_xy] / 4`` with ``A = (-1)^a``,
    ``B = (-1)^b`` (valid for projective qubit measurements along Bloch vectors).
    """
    t = correlation_matrix(rho)
    la, lb = local_bloch(rho)
    p = np.empty((2, 3, 2, 2))
    for x, av in enumerate(settings.alice):
        for y, bv in enumerate(settings.bob):
            a_vec, b_vec = np.asarray(av), np.asarray(bv)
            ea, eb, e = la @ a_vec, lb @ b_vec, a_vec @ t @ b_vec
            for a in (0, 1):
                for b in (0, 1):
                    sa, sb = 1 - 2 * a, 1 - 2 * b
                    p[x, y, a, b] = (1 + sa * ea + sb * eb + sa * sb * e) / 4
    return np.clip(p, 0.0, 1.0)


def chsh_value(rho: npt.ArrayLike, settings: DIQKDSettings | None = None) -> float:
    """CHSH value ``E00 + E01 + E10 - E11`` (optimal Bob settings when none are given)."""
    s = optimal_settings(rho) if settings is None else settings
    t = correlation_matrix(rho)
    e = [[np.asarray(s.alice[x]) @ t @ np.asarray(s.bob[y]) for y in range(2)] for x in range(2)]
    return float(e[0][0] + e[0][1] + e[1][0] - e[1][1])


def key_qber(rho: npt.ArrayLike, settings: DIQKDSettings | None = None) -> float:
    """Probability that Alice's ``A0`` and Bob's ``B2`` outcomes differ, ``(1 - E_02)/2``."""
    s = optimal_settings(rho) if settings is None else settings
    t = correlation_matrix(rho)
    return float((1 - np.asarray(s.alice[0]) @ t @ np.asarray(s.bob[2])) / 2)
