"""Tests of the LDPC code construction (qrepeater.qkdpp.codes)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from qrepeater.errors import ReconciliationError
from qrepeater.qkdpp import codes as codes_module
from qrepeater.qkdpp.codes import (
    ELKOUSS2009,
    CodeFamily,
    LdpcCode,
    build_code,
    capped,
    default_cache_dir,
    four_cycle_count,
    node_degrees,
    short_family,
)

N_SMALL = 15_000


@pytest.fixture(scope="module")
def family() -> CodeFamily:
    return CodeFamily()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("codes")


@pytest.fixture(scope="module")
def code75(family: CodeFamily, cache: Path) -> LdpcCode:
    return family.code(0.75, family.admissible_length(0.75, N_SMALL), cache_dir=cache)


@pytest.fixture(scope="module")
def code50(family: CodeFamily, cache: Path) -> LdpcCode:
    return family.code(0.5, family.admissible_length(0.5, N_SMALL), cache_dir=cache)


def _lifted_four_cycles(code: LdpcCode) -> int:
    """4-cycles of the (untruncated) lift counted from the base graph and the shifts."""
    z = code.lift
    shift: dict[tuple[int, int], int] = {}
    for r, c, s in zip(code.base_rows, code.base_cols, code.shifts, strict=True):
        shift[int(r), int(c)] = int(s)
    by_var: dict[int, list[int]] = {}
    for r, c in shift:
        by_var.setdefault(c, []).append(r)
    bad = 0
    cols = sorted(by_var)
    for i, v1 in enumerate(cols):
        rows1 = set(by_var[v1])
        for v2 in cols[i + 1 :]:
            common = sorted(rows1.intersection(by_var[v2]))
            for a in range(len(common)):
                for b in range(a + 1, len(common)):
                    c1, c2 = common[a], common[b]
                    t = shift[c1, v1] - shift[c2, v1] + shift[c2, v2] - shift[c1, v2]
                    bad += t % z == 0
    return bad


def test_published_table_is_consistent() -> None:
    for rate, dist in ELKOUSS2009.items():
        assert sum(w for _, w in dist.lam) == pytest.approx(1.0, abs=1e-4)
        assert sum(w for _, w in dist.rho) == pytest.approx(1.0, abs=1e-4)
        assert dist.ensemble_rate == pytest.approx(rate, abs=2e-3)


def test_node_degrees_balance_edges() -> None:
    var, chk = node_degrees(ELKOUSS2009[0.75], n=1200, m=300)
    assert var.size == 1200
    assert chk.size == 300
    assert var.sum() == chk.sum()
    fractions = ELKOUSS2009[0.75].variable_node_fractions()
    for d, frac in fractions.items():
        assert np.sum(var == d) == pytest.approx(frac * 1200, abs=1.0)


@pytest.mark.parametrize("name", ["code75", "code50"])
def test_no_four_cycles(name: str, request: pytest.FixtureRequest) -> None:
    code: LdpcCode = request.getfixturevalue(name)
    assert four_cycle_count(code.H) == 0
    assert _lifted_four_cycles(code) == 0


def test_four_cycle_counter_detects_cycles() -> None:
    H = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], dtype=np.uint8))
    # columns (0,1) share rows {0,1}; (1,2) share {1,2}: two 4-cycles
    assert four_cycle_count(H) == 2


@pytest.mark.parametrize("name", ["code75", "code50"])
def test_degree_distribution_respected(name: str, request: pytest.FixtureRequest) -> None:
    code: LdpcCode = request.getfixturevalue(name)
    dist = ELKOUSS2009[code.rate]
    H = code.H
    assert H.dtype == np.uint8
    assert sp.isspmatrix_csr(H)
    assert code.n >= N_SMALL
    assert code.m == round((1 - code.rate) * code.n)
    vdeg = code.variable_degrees()
    edges = vdeg.sum()
    for d, lam in dist.lam:
        assert np.sum(vdeg[vdeg == d]) / edges == pytest.approx(lam, abs=0.02)
    assert set(np.unique(vdeg)) <= {d for d, _ in dist.lam}
    cdeg = code.check_degrees()
    assert cdeg.sum() == edges
    assert cdeg.mean() == pytest.approx(1 / sum(w / d for d, w in dist.rho), rel=0.05)


def test_untainted_puncturing_order(code75: LdpcCode) -> None:
    order = code75.puncture_order
    assert order.size > 0.05 * code75.n
    assert np.unique(order).size == order.size
    per_check = np.asarray(code75.H[:, order].sum(axis=1)).ravel()
    assert per_check.max() == 1  # no check sees two punctured symbols
    assert np.unique(code75.pivots).size == order.size
    assert np.all(code75.variable_degrees()[order] <= 3)
    deg = code75.variable_degrees()[order]
    assert np.all(np.diff(deg) >= 0)  # lowest degrees first


def test_cache_round_trip(family: CodeFamily, tmp_path: Path) -> None:
    t0 = time.perf_counter()
    built = family.code(0.8, N_SMALL, cache_dir=tmp_path)
    path = family.cache_path(0.8, N_SMALL, cache_dir=tmp_path)
    assert path.exists()
    assert path.suffix == ".npz"
    t1 = time.perf_counter()
    loaded = family.code(0.8, N_SMALL, cache_dir=tmp_path)
    t2 = time.perf_counter()
    assert (built.H != loaded.H).nnz == 0
    assert np.array_equal(built.puncture_order, loaded.puncture_order)
    assert loaded.lift == built.lift
    assert loaded.base_shape == built.base_shape
    assert t2 - t1 < t1 - t0  # loading is cheaper than building
    assert len(list(tmp_path.iterdir())) == 1


def test_corrupt_cache_is_rebuilt(family: CodeFamily, tmp_path: Path) -> None:
    path = family.cache_path(0.8, N_SMALL, cache_dir=tmp_path)
    path.write_bytes(b"not an npz file")
    code = family.code(0.8, N_SMALL, cache_dir=tmp_path)
    assert code.n == N_SMALL
    again = family.code(0.8, N_SMALL, cache_dir=tmp_path)
    assert (again.H != code.H).nnz == 0
    # a truncated entry (a process killed while copying the cache) is rebuilt as well
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    codes_module._MEMORY.clear()
    rebuilt = family.code(0.8, N_SMALL, cache_dir=tmp_path)
    assert (rebuilt.H != code.H).nnz == 0
    assert path.stat().st_size == len(data)


def test_codes_are_shared_in_process(family: CodeFamily, tmp_path: Path) -> None:
    a = family.code(0.8, N_SMALL, cache_dir=tmp_path)
    b = family.code(0.8, N_SMALL, cache_dir=tmp_path)
    assert a is b


def test_deterministic(code75: LdpcCode, family: CodeFamily) -> None:
    n = code75.n
    again = build_code(ELKOUSS2009[0.75], block_length=n, seed=family.seed, family=family)
    assert (again.H != code75.H).nnz == 0
    assert np.array_equal(again.puncture_order, code75.puncture_order)
    other = build_code(ELKOUSS2009[0.75], block_length=n, seed=1, family=family)
    assert (other.H != code75.H).nnz > 0


def test_syndrome(code75: LdpcCode) -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 2, code75.n, dtype=np.uint8)
    dense_row = code75.H[:5].toarray().astype(np.int64)
    assert np.array_equal(code75.syndrome(x)[:5], (dense_row @ x) % 2)
    with pytest.raises(ReconciliationError):
        code75.syndrome(x[:-1])


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("QREPEATER_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("QREPEATER_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "qrepeater" / "codes"


def test_invalid_requests(family: CodeFamily, tmp_path: Path) -> None:
    with pytest.raises(ReconciliationError):
        family.code(0.95, N_SMALL, cache_dir=tmp_path)  # not a family rate
    with pytest.raises(ReconciliationError):
        family.code(0.75, 10, cache_dir=tmp_path)  # far too short
    with pytest.raises(ReconciliationError, match="4-cycle"):
        family.code(0.75, 600, cache_dir=tmp_path)  # too short to avoid 4-cycles
    with pytest.raises(ReconciliationError):
        CodeFamily(rates=(0.9, 0.5))
    with pytest.raises(ReconciliationError):
        CodeFamily(rates=(0.42,))
    with pytest.raises(ReconciliationError):
        CodeFamily(rates=(0.501,))  # rate x granularity not an integer


@pytest.mark.slow
def test_million_bit_code_builds_fast(family: CodeFamily, tmp_path: Path) -> None:
    t0 = time.perf_counter()
    code = family.code(0.75, 1_000_000, cache_dir=tmp_path)
    elapsed = time.perf_counter() - t0
    assert elapsed < 30.0
    assert code.H.shape == (code.m, 1_000_000)
    assert _lifted_four_cycles(code) == 0
    edges = code.variable_degrees().sum()
    for d, lam in ELKOUSS2009[0.75].lam:
        vdeg = code.variable_degrees()
        assert np.sum(vdeg[vdeg == d]) / edges == pytest.approx(lam, abs=0.01)


def test_intermediate_rates_shift_the_published_distribution(family: CodeFamily) -> None:
    assert len(family.rates) == 41
    dist = family.distribution(0.77)
    assert dist.lam == ELKOUSS2009[0.75].lam
    assert dist.ensemble_rate == pytest.approx(0.77, abs=1e-9)
    degrees = [d for d, _ in dist.rho]
    assert max(degrees) - min(degrees) <= 1  # check-concentrated
    assert family.distribution(0.8) is ELKOUSS2009[0.8]


def test_capped_distribution() -> None:
    d = capped(ELKOUSS2009[0.75], 12)
    assert max(deg for deg, _ in d.lam) == 12
    assert sum(w for _, w in d.lam) == pytest.approx(sum(w for _, w in ELKOUSS2009[0.75].lam))
    assert d.ensemble_rate == pytest.approx(0.75, abs=2e-3)
    with pytest.raises(ReconciliationError):
        capped(ELKOUSS2009[0.75], 1)


@pytest.mark.parametrize(("n", "rate"), [(2_000, 0.7), (4_000, 0.78)])
def test_short_family_builds_short_codes(n: int, rate: float, tmp_path: Path) -> None:
    """The default family cannot build these lengths; the short-block family can."""
    with pytest.raises(ReconciliationError):
        CodeFamily().code(rate, n, cache_dir=tmp_path)
    fam = short_family(n)
    code = fam.code(rate, n, cache_dir=tmp_path)
    assert code.n == n
    assert four_cycle_count(code.H) == 0
    assert code.variable_degrees().max() <= 16
    assert code.puncture_order.size > 0
