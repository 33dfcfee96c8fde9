"""The compiled layered decoder (qrepeater.qkdpp._bp_kernel) against the reference `ldpc`."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from ldpc.bp_decoder import BpDecoder

from qrepeater.qkdpp._bp_kernel import LLR_KNOWN, LayeredDecoder, phi_table
from qrepeater.qkdpp.codes import LdpcCode, short_family

N = 12_000


@pytest.fixture(scope="module")
def code(tmp_path_factory: pytest.TempPathFactory) -> LdpcCode:
    cache: Path = tmp_path_factory.mktemp("codes")
    return short_family(N).code(0.50, N, cache_dir=cache)


def _problem(code: LdpcCode, q: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    err = (rng.random(code.n) < q).astype(np.uint8)
    return err, code.syndrome(err)


def test_phi_table_is_phi() -> None:
    tab = phi_table(64.0, 24.0)
    u = (np.arange(tab.size) + 0.5) / 64.0
    x = u * u
    np.testing.assert_allclose(tab, -np.log(np.tanh(x / 2)), rtol=1e-5)
    assert np.all(np.diff(tab) < 0)  # decreasing


def test_syndrome_matches_sparse_product(code: LdpcCode) -> None:
    dec = LayeredDecoder(code.H)
    bits = np.random.default_rng(1).integers(0, 2, code.n, dtype=np.uint8)
    np.testing.assert_array_equal(dec.syndrome(bits), code.syndrome(bits))
    with pytest.raises(ValueError, match="expected"):
        dec.syndrome(bits[:-1])


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_agrees_with_ldpc_where_both_converge(code: LdpcCode, seed: int) -> None:
    q = 0.07  # below the rate-0.50 code's threshold: both decoders converge
    err, syn = _problem(code, q, seed)
    dec = LayeredDecoder(code.H)
    state = dec.state(np.full(code.n, np.log((1 - q) / q), dtype=np.float32))
    assert dec.decode(state, syn, max_iter=100)
    ours = state.hard_decision()
    ref = BpDecoder(
        code.H,
        error_rate=q,
        max_iter=200,
        bp_method="product_sum",
        schedule="parallel",
        input_vector_type="syndrome",
    )
    theirs = np.asarray(ref.decode(syn), dtype=np.uint8)
    assert ref.converge
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(ours, err)
    # the layered schedule needs fewer iterations than the flooding one
    assert state.iterations < ref.iter


def test_block_row_kernel_is_the_same_schedule(code: LdpcCode) -> None:
    """The quasi-cyclic block-row kernel runs the row kernel's schedule: after one iteration
    the posteriors agree up to rounding (vectorised square roots round differently), and both
    converge to the same error pattern."""
    row = LayeredDecoder(code.H)
    qc = LayeredDecoder.for_code(code)
    assert qc.quasi_cyclic
    assert not row.quasi_cyclic
    for q, iters in ((0.09, 1), (0.07, 100)):
        err, syn = _problem(code, q, 8)
        prior = np.full(code.n, np.log((1 - q) / q), dtype=np.float32)
        prior[:50] = 0.0  # punctured-like symbols
        s_row, s_qc = row.state(prior), qc.state(prior)
        ok_row = row.decode(s_row, syn, max_iter=iters)
        ok_qc = qc.decode(s_qc, syn, max_iter=iters)
        if iters == 1:
            np.testing.assert_allclose(s_qc.L[: code.n], s_row.L, rtol=1e-3, atol=1e-3)
        else:
            assert ok_row
            assert ok_qc
            np.testing.assert_array_equal(s_qc.hard_decision(), err)
            np.testing.assert_array_equal(s_row.hard_decision(), err)
            assert abs(s_row.iterations - s_qc.iterations) <= 2


def test_block_row_kernel_on_a_truncated_lift(tmp_path: Path) -> None:
    """Lengths that are not a multiple of the circulant drop columns: the kernel pads them as
    known zeros and still agrees with the row kernel."""
    code = short_family(11_950).code(0.5, 11_950, cache_dir=tmp_path)
    assert code.n < code.base_shape[1] * code.lift
    qc = LayeredDecoder.for_code(code)
    assert qc.quasi_cyclic
    q = 0.07
    err, syn = _problem(code, q, 9)
    prior = np.full(code.n, np.log((1 - q) / q), dtype=np.float32)
    s_qc = qc.state(prior)
    assert s_qc.L.size > code.n
    assert qc.decode(s_qc, syn, max_iter=100)
    np.testing.assert_array_equal(s_qc.hard_decision(), err)
    row = LayeredDecoder(code.H)
    with pytest.raises(ValueError, match="another code"):
        row.decode(s_qc, syn, max_iter=1)


def test_does_not_claim_convergence_above_threshold(code: LdpcCode) -> None:
    q = 0.2  # far above what a rate-0.50 code corrects
    _, syn = _problem(code, q, 5)
    dec = LayeredDecoder(code.H)
    state = dec.state(np.full(code.n, np.log((1 - q) / q), dtype=np.float32))
    assert not dec.decode(state, syn, max_iter=30, patience=5)
    assert state.unsatisfied > 0
    assert np.any(dec.syndrome(state.hard_decision()) != syn)
    assert state.iterations <= 30


def test_warm_restart_after_revealing(code: LdpcCode) -> None:
    """A stalled frame decodes after some errors are revealed, resuming from its messages."""
    q = 0.115
    err, syn = _problem(code, q, 6)
    dec = LayeredDecoder.for_code(code)
    prior = np.full(code.n, np.log((1 - q) / q), dtype=np.float32)
    state = dec.state(prior)
    ok = dec.decode(state, syn, max_iter=40, patience=8)
    reveal = np.random.default_rng(7).permutation(code.n)
    k = 0
    while not ok:
        idx = reveal[k : k + 300]
        k += 300
        state.set_prior(idx, np.where(err[idx] == 1, -LLR_KNOWN, LLR_KNOWN))
        ok = dec.decode(state, syn, max_iter=40, patience=8)
        assert k < code.n
    np.testing.assert_array_equal(state.hard_decision(), err)
    assert np.array_equal(state.prior[reveal[:k]], np.where(err[reveal[:k]], -40.0, 40.0))
    with pytest.raises(ValueError, match="out of range"):
        state.set_prior([code.n], [1.0])


def test_threads_decode_in_parallel(code: LdpcCode) -> None:
    """States are independent: four frames decoded by threads give the serial results."""
    q = 0.07
    dec = LayeredDecoder.for_code(code)
    problems = [_problem(code, q, s) for s in range(10, 14)]
    llr = np.full(code.n, np.log((1 - q) / q), dtype=np.float32)

    def run(p: tuple[np.ndarray, np.ndarray]) -> tuple[bool, np.ndarray, str]:
        st = dec.state(llr)
        ok = dec.decode(st, p[1], max_iter=100)
        return ok, st.hard_decision(), threading.current_thread().name

    serial = [run(p) for p in problems]
    with ThreadPoolExecutor(max_workers=2) as pool:
        threaded = list(pool.map(run, problems))
    for (ok_s, e_s, _), (ok_t, e_t, name), (err, _) in zip(serial, threaded, problems, strict=True):
        assert ok_s
        assert ok_t
        np.testing.assert_array_equal(e_s, e_t)
        np.testing.assert_array_equal(e_t, err)
        assert name != threading.main_thread().name


def test_bad_shapes(code: LdpcCode) -> None:
    dec = LayeredDecoder(code.H)
    with pytest.raises(ValueError, match="prior"):
        dec.state(np.zeros(code.n - 1, dtype=np.float32))
    st = dec.state(np.zeros(code.n, dtype=np.float32))
    with pytest.raises(ValueError, match="syndrome"):
        dec.decode(st, np.zeros(code.m + 1, dtype=np.uint8), max_iter=1)
    with pytest.raises(ValueError, match="max_iter"):
        dec.decode(st, np.zeros(code.m, dtype=np.uint8), max_iter=0)
