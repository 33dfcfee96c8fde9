"""Small-state algebra: Bell states, channels, partial trace, CHSH, swapping."""

from __future__ import annotations

import numpy as np
import pytest

from qrepeater.errors import ParameterError
from qrepeater.quantum import (
    BELL_NAMES,
    amplitude_damping,
    apply_local,
    bell_density,
    bell_fidelity,
    correlator,
    depolarizing,
    entanglement_swap,
    fidelity,
    is_density_matrix,
    kron,
    partial_trace,
    pauli_channel,
    pauli_shrink_channel,
    two_qubit_correlators,
)
from qrepeater.quantum.bell import chsh_value, key_qber, optimal_settings, outcome_probabilities


def werner(p: float, name: str = "psi+") -> np.ndarray:
    return p * bell_density(name) + (1 - p) * np.eye(4) / 4  # type: ignore[arg-type]


@pytest.mark.parametrize("name", BELL_NAMES)
def test_bell_states_are_orthonormal_pure(name: str) -> None:
    rho = bell_density(name)  # type: ignore[arg-type]
    assert is_density_matrix(rho)
    for other in BELL_NAMES:
        assert bell_fidelity(rho, other) == pytest.approx(1.0 if other == name else 0.0, abs=1e-12)  # type: ignore[arg-type]


def test_psi_plus_correlators() -> None:
    c = two_qubit_correlators(bell_density("psi+"))
    assert c == pytest.approx({"xx": 1.0, "yy": 1.0, "zz": -1.0})
    assert correlator(bell_density("psi-"), "XX") == pytest.approx(-1.0)


def test_mixed_state_fidelity_matches_pure_formula() -> None:
    rho = werner(0.7)
    assert fidelity(rho, bell_density("psi+")) == pytest.approx(0.7 + 0.3 / 4, abs=1e-9)


def test_partial_trace_of_bell_state_is_maximally_mixed() -> None:
    red = partial_trace(bell_density("phi+"), [0], 2)
    assert np.allclose(red, np.eye(2) / 2)
    three = kron(bell_density("psi+"), np.diag([1.0, 0.0]))
    assert np.allclose(partial_trace(three, [0, 1], 3), bell_density("psi+"))
    assert np.allclose(partial_trace(three, [2], 3), np.diag([1.0, 0.0]))


@pytest.mark.parametrize(
    "kraus",
    [
        depolarizing(0.8),
        amplitude_damping(0.3),
        pauli_channel(0.1, 0.05, 0.2),
        pauli_shrink_channel(0.85, 0.85, 0.75),
    ],
)
def test_channels_are_trace_preserving(kraus: list[np.ndarray]) -> None:
    total = sum(k.conj().T @ k for k in kraus)
    assert np.allclose(total, np.eye(2))
    out = apply_local(werner(0.6), kraus, 1, 2)
    assert is_density_matrix(out)


def test_depolarizing_shrinks_every_correlator() -> None:
    rho = apply_local(
        apply_local(bell_density("psi+"), depolarizing(0.9), 0, 2), depolarizing(0.9), 1, 2
    )
    assert two_qubit_correlators(rho) == pytest.approx({"xx": 0.81, "yy": 0.81, "zz": -0.81})


def test_amplitude_damping_moves_up_to_down() -> None:
    up = np.diag([1.0, 0.0]).astype(complex)
    out = apply_local(up, amplitude_damping(0.25), 0, 1)
    assert np.allclose(np.diag(out).real, [0.75, 0.25])


def test_invalid_channel_parameters() -> None:
    with pytest.raises(ParameterError):
        pauli_channel(0.6, 0.6, 0.0)
    with pytest.raises(ParameterError):
        pauli_shrink_channel(1.0, 1.0, 0.0)  # not completely positive
    with pytest.raises(ParameterError):
        apply_local(np.eye(4) / 4, depolarizing(0.5), 3, 2)


def test_chsh_of_bell_state_is_tsirelson() -> None:
    assert chsh_value(bell_density("psi+")) == pytest.approx(2 * np.sqrt(2))
    assert key_qber(bell_density("psi+")) == pytest.approx(0.0, abs=1e-12)


def test_chsh_formula_for_diagonal_correlations() -> None:
    rho = werner(0.8)
    c = two_qubit_correlators(rho)
    assert chsh_value(rho) == pytest.approx(2 * np.hypot(c["xx"], c["zz"]))
    assert key_qber(rho) == pytest.approx((1 - abs(c["zz"])) / 2)


def test_outcome_probabilities_are_normalised_and_reproduce_correlators() -> None:
    rho = werner(0.9, "psi-")
    s = optimal_settings(rho)
    p = outcome_probabilities(rho, s)
    assert np.allclose(p.sum(axis=(2, 3)), 1.0)
    e = p[..., 0, 0] + p[..., 1, 1] - p[..., 0, 1] - p[..., 1, 0]
    assert e[0, 0] + e[0, 1] + e[1, 0] - e[1, 1] == pytest.approx(chsh_value(rho))


def test_swap_of_werner_pairs() -> None:
    # swapping two Werner states of parameter p gives a Werner state of parameter p^2
    out = entanglement_swap(werner(0.8), werner(0.7))
    assert sum(out.probabilities.values()) == pytest.approx(1.0)
    assert bell_fidelity(out.average_state, "psi+") == pytest.approx(0.56 + 0.44 / 4)


def test_swap_frame_correction_for_mixed_bell_targets() -> None:
    out = entanglement_swap(
        bell_density("psi+"), bell_density("phi-"), second="phi-", target="phi+"
    )
    assert bell_fidelity(out.average_state, "phi+") == pytest.approx(1.0)
    for state in out.states.values():
        assert bell_fidelity(state, "phi+") == pytest.approx(1.0)
