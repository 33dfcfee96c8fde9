"""Local quantum channels on single qubits of a multi-qubit density matrix (Kraus form).

Standard textbook channels (Nielsen & Chuang, *Quantum Computation and Quantum Information*,
Sec. 8.3): depolarising, dephasing, amplitude damping and general Pauli channels. A channel is a
list of Kraus operators; :func:`apply_local` applies it to one qubit of an n-qubit state.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from qrepeater.errors import ParameterError
from qrepeater.quantum.states import I2, ComplexArray, X, Y, Z

Kraus = list[ComplexArray]


def _check_probability(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0 or not np.isfinite(p):
        raise ParameterError(f"{name} must lie in [0, 1], got {p}")


def pauli_channel(px: float, py: float, pz: float) -> Kraus:
    """Pauli channel: X, Y, Z applied with probabilities px, py, pz."""
    for n, p in (("px", px), ("py", py), ("pz", pz)):
        _check_probability(n, p)
    p0 = 1.0 - px - py - pz
    if p0 < -1e-15:
        raise ParameterError(f"Pauli probabilities sum to {px + py + pz} > 1")
    p0 = max(p0, 0.0)
    return [np.sqrt(p0) * I2, np.sqrt(px) * X, np.sqrt(py) * Y, np.sqrt(pz) * Z]


def pauli_shrink_channel(lx: float, ly: float, lz: float) -> Kraus:
    """Pauli channel specified by how it shrinks <X>, <Y>, <Z> (Pauli-diagonal, unital).

    A Pauli channel multiplies the Bloch components by ``lx = 1-2(py+pz)``, ``ly = 1-2(px+pz)``,
    ``lz = 1-2(px+py)``; this inverts those relations. Requires the Fujiwara-Algoet conditions
    ``|l_i ± l_j| <= 1 ± l_k`` (complete positivity).
    """
    px = (1 + lx - ly - lz) / 4
    py = (1 - lx + ly - lz) / 4
    pz = (1 - lx - ly + lz) / 4
    if min(px, py, pz, 1 - px - py - pz) < -1e-12:
        raise ParameterError(f"shrink factors ({lx}, {ly}, {lz}) are not a CPTP Pauli channel")
    return pauli_channel(max(px, 0.0), max(py, 0.0), max(pz, 0.0))


def depolarizing(shrink: float) -> Kraus:
    """Depolarising channel ``rho -> l rho + (1-l) I/2`` (all Bloch components times ``l``)."""
    if not -1 / 3 <= shrink <= 1:
        raise ParameterError(f"depolarising shrink must lie in [-1/3, 1], got {shrink}")
    return pauli_shrink_channel(shrink, shrink, shrink)


def dephasing(shrink: float) -> Kraus:
    """Phase damping: <X>, <Y> times ``shrink``, <Z> kept."""
    if not -1 <= shrink <= 1:
        raise ParameterError(f"dephasing shrink must lie in [-1, 1], got {shrink}")
    return pauli_shrink_channel(shrink, shrink, 1.0)


def amplitude_damping(gamma: float, *, towards: int = 1) -> Kraus:
    """Amplitude damping with decay probability ``gamma`` into basis state ``towards``.

    For the 40Ca+ qubit, spontaneous decay of D5/2 (``|0> = |up>``) to S1/2 (``|1> = |down>``)
    is damping towards ``|1>`` (the default).
    """
    _check_probability("gamma", gamma)
    if towards not in (0, 1):
        raise ParameterError("towards must be 0 or 1")
    src = 1 - towards
    k0 = np.zeros((2, 2), dtype=np.complex128)
    k0[towards, towards] = 1.0
    k0[src, src] = np.sqrt(1 - gamma)
    k1 = np.zeros((2, 2), dtype=np.complex128)
    k1[towards, src] = np.sqrt(gamma)
    return [k0, k1]


def apply_local(
    rho: npt.ArrayLike, kraus: Sequence[npt.ArrayLike], qubit: int, n_qubits: int
) -> ComplexArray:
    """Apply a single-qubit channel (Kraus operators) to ``qubit`` of an n-qubit state."""
    if not 0 <= qubit < n_qubits:
        raise ParameterError(f"qubit {qubit} out of range for {n_qubits} qubits")
    r = np.asarray(rho, dtype=np.complex128).reshape([2] * (2 * n_qubits))
    out = np.zeros_like(r)
    for k in kraus:
        kk = np.asarray(k, dtype=np.complex128)
        # left multiply on the row index of `qubit`, right multiply by K^dagger on its column index
        t = np.moveaxis(np.tensordot(kk, r, axes=([1], [qubit])), 0, qubit)
        t = np.moveaxis(
            np.tensordot(t, kk.conj().T, axes=([n_qubits + qubit], [0])), -1, n_qubits + qubit
        )
        out += t
    d = 2**n_qubits
    return np.asarray(out.reshape(d, d), dtype=np.complex128)


def apply_each(rho: npt.ArrayLike, kraus: Sequence[npt.ArrayLike], n_qubits: int) -> ComplexArray:
    """Apply the same single-qubit channel to every qubit."""
    out = np.asarray(rho, dtype=np.complex128)
    for q in range(n_qubits):
        out = apply_local(out, kraus, q, n_qubits)
    return out
