"""Small-state algebra: Bell states, density matrices, Pauli correlators, channels, swaps."""

from qrepeater.quantum.bell import TSIRELSON
from qrepeater.quantum.channels import (
    amplitude_damping,
    apply_each,
    apply_local,
    dephasing,
    depolarizing,
    pauli_channel,
    pauli_shrink_channel,
)
from qrepeater.quantum.measurement import SwapResult, entanglement_swap
from qrepeater.quantum.states import (
    BELL_NAMES,
    PAULIS,
    BellName,
    bell_density,
    bell_fidelity,
    bell_state,
    correlator,
    density,
    expectation,
    fidelity,
    is_density_matrix,
    kron,
    partial_trace,
    pauli_string,
    two_qubit_correlators,
)

__all__ = [
    "BELL_NAMES",
    "PAULIS",
    "TSIRELSON",
    "BellName",
    "SwapResult",
    "amplitude_damping",
    "apply_each",
    "apply_local",
    "bell_density",
    "bell_fidelity",
    "bell_state",
    "correlator",
    "density",
    "dephasing",
    "depolarizing",
    "entanglement_swap",
    "expectation",
    "fidelity",
    "is_density_matrix",
    "kron",
    "partial_trace",
    "pauli_channel",
    "pauli_shrink_channel",
    "pauli_string",
    "two_qubit_correlators",
]
