"""Small-state algebra for qubit pairs: Bell states, Paulis, correlators, fidelity, partial trace.

Conventions (used throughout qrepeater):

* qubit basis ``|0> = |up>`` (the D5/2 level of the paper, Z = +1) and ``|1> = |down>``
  (the S1/2 level, Z = -1); the ion that emitted a photon is left in ``|down>``;
* multi-qubit states are ordered ``A, B, C, ...`` with A the most significant index, so the
  paper's ``psi+ = (|down,up> + |up,down>)/sqrt(2)`` is the standard ``(|01> + |10>)/sqrt(2)``;
* density matrices are complex ``numpy`` arrays of shape ``(2**n, 2**n)``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from qrepeater.errors import ParameterError

ComplexArray = npt.NDArray[np.complex128]
BellName = Literal["phi+", "phi-", "psi+", "psi-"]
BELL_NAMES: tuple[BellName, ...] = ("phi+", "phi-", "psi+", "psi-")

I2: ComplexArray = np.eye(2, dtype=np.complex128)
X: ComplexArray = np.array([[0, 1], [1, 0]], dtype=np.complex128)
Y: ComplexArray = np.array([[0, -1j], [1j, 0]], dtype=np.complex128)
Z: ComplexArray = np.array([[1, 0], [0, -1]], dtype=np.complex128)
PAULIS: dict[str, ComplexArray] = {"I": I2, "X": X, "Y": Y, "Z": Z}

UP: ComplexArray = np.array([1, 0], dtype=np.complex128)
DOWN: ComplexArray = np.array([0, 1], dtype=np.complex128)

_S = 1 / np.sqrt(2)
_BELL_VECTORS: dict[BellName, ComplexArray] = {
    "phi+": np.array([_S, 0, 0, _S], dtype=np.complex128),
    "phi-": np.array([_S, 0, 0, -_S], dtype=np.complex128),
    "psi+": np.array([0, _S, _S, 0], dtype=np.complex128),
    "psi-": np.array([0, _S, -_S, 0], dtype=np.complex128),
}
#: Pauli on the second qubit that maps phi+ to each Bell state (the Pauli frame of a swap).
BELL_FRAME: dict[BellName, str] = {"phi+": "I", "phi-": "Z", "psi+": "X", "psi-": "Y"}


def bell_state(name: BellName) -> ComplexArray:
    """State vector of a Bell state (copy)."""
    try:
        return _BELL_VECTORS[name].copy()
    except KeyError:
        raise ParameterError(f"unknown Bell state {name!r}; use one of {BELL_NAMES}") from None


def density(vector: npt.ArrayLike) -> ComplexArray:
    """Projector ``|v><v|`` of a (normalised) state vector."""
    v = np.asarray(vector, dtype=np.complex128).ravel()
    return np.outer(v, v.conj())


def bell_density(name: BellName) -> ComplexArray:
    """Density matrix of a Bell state."""
    return density(bell_state(name))


def kron(*ops: npt.ArrayLike) -> ComplexArray:
    """Kronecker product of several operators, in order."""
    out = np.array([[1.0 + 0j]])
    for op in ops:
        out = np.kron(out, np.asarray(op, dtype=np.complex128))
    return out


def pauli_string(label: str) -> ComplexArray:
    """Operator of a Pauli string such as ``"XZ"`` or ``"IYI"``."""
    try:
        return kron(*(PAULIS[c] for c in label.upper()))
    except KeyError:
        raise ParameterError(f"invalid Pauli string {label!r}") from None


def expectation(rho: npt.ArrayLike, operator: npt.ArrayLike) -> float:
    """Real part of ``Tr(rho O)`` for a Hermitian observable ``O``."""
    return float(np.real(np.trace(np.asarray(rho) @ np.asarray(operator))))


def correlator(rho: npt.ArrayLike, label: str) -> float:
    """Pauli correlator such as ``<XX>`` = ``Tr(rho X(x)X)``."""
    return expectation(rho, pauli_string(label))


def two_qubit_correlators(rho: npt.ArrayLike) -> dict[str, float]:
    """``{"xx", "yy", "zz"}`` correlators of a two-qubit state."""
    return {k.lower(): correlator(rho, k) for k in ("XX", "YY", "ZZ")}


def fidelity(rho: npt.ArrayLike, target: npt.ArrayLike) -> float:
    """Fidelity ``F(rho, sigma) = (Tr sqrt(sqrt(rho) sigma sqrt(rho)))^2`` (Jozsa convention).

    ``target`` may be a state vector (then ``F = <psi|rho|psi>``) or a density matrix.
    """
    r = np.asarray(rho, dtype=np.complex128)
    t = np.asarray(target, dtype=np.complex128)
    if t.ndim == 1:
        return float(np.real(t.conj() @ r @ t))
    w, v = np.linalg.eigh(r)
    sqrt_r = (v * np.sqrt(np.clip(w, 0, None))) @ v.conj().T
    m = sqrt_r @ t @ sqrt_r
    ev = np.linalg.eigvalsh((m + m.conj().T) / 2)
    return float(np.sum(np.sqrt(np.clip(ev, 0, None))) ** 2)


def bell_fidelity(rho: npt.ArrayLike, name: BellName) -> float:
    """Fidelity of a two-qubit state with a Bell state."""
    return fidelity(rho, bell_state(name))


def partial_trace(
    rho: npt.ArrayLike, keep: tuple[int, ...] | list[int], n_qubits: int
) -> ComplexArray:
    """Reduced density matrix on the qubits ``keep`` (in the order given) of an n-qubit state."""
    r = np.asarray(rho, dtype=np.complex128).reshape([2] * (2 * n_qubits))
    keep = list(keep)
    if len(set(keep)) != len(keep) or any(not 0 <= k < n_qubits for k in keep):
        raise ParameterError(f"invalid qubits to keep: {keep}")
    traced = [q for q in range(n_qubits) if q not in keep]
    letters = "abcdefghijklmnopqrstuvwxyz"
    row = list(letters[:n_qubits])
    col = list(letters[n_qubits : 2 * n_qubits])
    for q in traced:
        col[q] = row[q]
    out = "".join(row[q] for q in keep) + "".join(col[q] for q in keep)
    reduced = np.einsum("".join(row) + "".join(col) + "->" + out, r)
    d = 2 ** len(keep)
    return np.asarray(reduced.reshape(d, d), dtype=np.complex128)


def is_density_matrix(rho: npt.ArrayLike, *, atol: float = 1e-9) -> bool:
    """True when ``rho`` is Hermitian, positive semidefinite and of unit trace."""
    r = np.asarray(rho, dtype=np.complex128)
    if r.ndim != 2 or r.shape[0] != r.shape[1]:
        return False
    if not np.allclose(r, r.conj().T, atol=atol):
        return False
    if abs(np.trace(r) - 1) > atol:
        return False
    return bool(np.linalg.eigvalsh((r + r.conj().T) / 2).min() >= -atol)
