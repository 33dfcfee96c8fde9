"""Bell-state measurement and entanglement swapping on two pairs (16x16 density matrices).

Swapping (Zukowski et al., PRL 71, 4287 (1993)): qubits ordered A, B, C, D with pairs (A,B) and
(C,D); a Bell-state measurement on (B, C) with outcome ``k`` projects (A, D) onto a state that a
Pauli correction on D maps back to the target Bell state. With imperfect measurement, each
outcome is misidentified according to a readout confusion model before the frame correction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qrepeater.errors import ParameterError
from qrepeater.quantum.channels import apply_local, depolarizing
from qrepeater.quantum.states import (
    BELL_FRAME,
    BELL_NAMES,
    BellName,
    ComplexArray,
    bell_state,
    kron,
    pauli_string,
)


@dataclass(frozen=True)
class SwapResult:
    """Outcome probabilities of the Bell measurement and the corrected (A, D) states."""

    probabilities: dict[BellName, float]
    states: dict[BellName, ComplexArray]
    average_state: ComplexArray


def _frame_correction(
    outcome: BellName, first: BellName, second: BellName, target: BellName
) -> str:
    """Pauli on D that maps the post-measurement (A, D) state to ``target`` for ideal inputs.

    Found by trying the four Paulis on the noiseless swap of the two ideal input Bell states;
    exact because Bell states are stabiliser states and Paulis permute them.
    """
    ideal = np.kron(bell_state(first), bell_state(second))
    proj = kron(np.eye(2), bell_state(outcome).conj()[None, :], np.eye(2))
    ad = proj @ ideal
    ad = ad / np.linalg.norm(ad)
    tgt = bell_state(target)
    for p in "IXYZ":
        if abs(abs(tgt.conj() @ (pauli_string("I" + p) @ ad)) - 1) < 1e-9:
            return p
    raise AssertionError("no Pauli frame found")  # pragma: no cover - Bell states are closed


def entanglement_swap(
    rho_ab: npt.ArrayLike,
    rho_cd: npt.ArrayLike,
    *,
    first: BellName = "psi+",
    second: BellName = "psi+",
    target: BellName = "psi+",
    gate_depolarizing: float = 0.0,
) -> SwapResult:
    """Swap entanglement from (A,B) and (C,D) onto (A,D) by a Bell measurement of (B,C).

    ``first``/``second`` name the Bell states the two pairs are meant to be (their frames set the
    Pauli correction); ``gate_depolarizing`` is the probability-equivalent shrink loss ``1 - l`` of
    a depolarising channel applied to B and C before an otherwise perfect Bell measurement, a
    simple model of two-qubit gate and readout error in the BSM.
    """
    if not 0.0 <= gate_depolarizing <= 1.0:
        raise ParameterError("gate_depolarizing must lie in [0, 1]")
    rho = kron(rho_ab, rho_cd)
    if gate_depolarizing > 0:
        ch = depolarizing(1.0 - gate_depolarizing)
        rho = apply_local(rho, ch, 1, 4)
        rho = apply_local(rho, ch, 2, 4)
    probs: dict[BellName, float] = {}
    states: dict[BellName, ComplexArray] = {}
    avg = np.zeros((4, 4), dtype=np.complex128)
    for outcome in BELL_NAMES:
        proj = kron(np.eye(2), bell_state(outcome).conj()[None, :], np.eye(2))  # 4 x 16
        ad = proj @ rho @ proj.conj().T
        p = float(np.real(np.trace(ad)))
        probs[outcome] = p
        corr = pauli_string("I" + _frame_correction(outcome, first, second, target))
        state = corr @ ad @ corr.conj().T
        avg += state
        states[outcome] = state / p if p > 0 else state
    return SwapResult(probabilities=probs, states=states, average_state=avg)


__all__ = ["BELL_FRAME", "SwapResult", "entanglement_swap"]
