"""ProbCover's geometry (alwidget.cover_geometry) against brute-force references, both backends."""
import numpy as np
import pytest
from geometry_data import brute_dist  # its `blobs` fixture comes through conftest

from alwidget import cover_geometry as CG
from alwidget.cover_geometry import ball_graph, coverage, probcover_delta, probcover_info, purity_rank
from alwidget.geometry import Geometry

BACKENDS = ["faiss", "torch"]


@pytest.fixture(autouse=True)
def _fresh_cache():
    Geometry.clear_cache()
    yield
    Geometry.clear_cache()


def test_purity_rank_is_the_largest_delta_with_enough_pure_points():
    d = np.array([0.5, 0.1, 0.3, 0.9, 0.7, 0.2, 0.4, 0.8, 0.6, 1.0])
    for purity in (0.5, 0.8, 0.95, 1.0):
        r = purity_rank(len(d), purity)
        delta = np.sort(d)[r - 1]
        assert np.mean(d >= delta) >= purity
        assert np.mean(d >= delta + 1e-9) < purity


def brute_delta(X, pseudo, purity):
    """delta straight from the definition: largest d with share(nearest-other >= d) >= purity."""
    D = brute_dist(X)
    D[pseudo[:, None] == pseudo[None, :]] = np.inf
    near = D.min(1)
    cands = np.sort(near)
    ok = [c for c in cands if np.mean(near >= c) >= purity]
    return max(ok), near


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sample", [10_000, 60])
def test_probcover_delta_equals_purity_definition(blobs, backend, sample, monkeypatch):
    monkeypatch.setattr(CG, "_DELTA_SAMPLE", sample)  # 60: the sampled upper-bound path
    geo = Geometry.of(blobs, backend=backend)
    pseudo = geo.kmeans(4, 0)[0]
    delta = probcover_delta(geo, 4, seed=0)
    want, near = brute_delta(geo.X, pseudo, 0.95)
    assert delta == pytest.approx(want, abs=1e-4)
    info = probcover_info(geo, 4, seed=0)
    assert info["purity"] >= 0.95 and info["n_pseudo"] == 4
    assert info["purity"] == pytest.approx(np.mean(near >= want - 1e-5), abs=1e-9)


def test_probcover_delta_grows_the_radius_when_the_sample_underestimates(blobs, monkeypatch):
    real = CG.nearest_other_sq
    monkeypatch.setattr(CG, "_DELTA_SAMPLE", 50)
    monkeypatch.setattr(CG, "nearest_other_sq", lambda *a, **k: real(*a, **k) * 0.01)
    calls = []
    real_range = CG.range_pairs
    monkeypatch.setattr(CG, "range_pairs", lambda *a, **k: calls.append(a[1]) or real_range(*a, **k))
    geo = Geometry.of(blobs)
    delta = probcover_delta(geo, 4, seed=0)
    want, _ = brute_delta(geo.X, geo.kmeans(4, 0)[0], 0.95)
    assert len(calls) >= 2 and calls[-1] > calls[0]
    assert delta == pytest.approx(want, abs=1e-4)


def test_probcover_delta_one_pseudo_label_everywhere_is_inf():
    X = np.ones((20, 4), np.float32)
    assert probcover_delta(Geometry.of(X), 3) == float("inf")


@pytest.mark.parametrize("backend", BACKENDS)
def test_ball_graph_matches_brute_force(blobs, backend):
    geo = Geometry.of(blobs, backend=backend)
    delta = probcover_delta(geo, 4, seed=0)
    indptr, indices = ball_graph(geo, delta)
    assert indices.dtype == np.int32 and indptr.dtype == np.int32 and indptr.shape == (len(blobs) + 1,)
    n = len(blobs)
    A = np.zeros((n, n), bool)
    A[np.repeat(np.arange(n), np.diff(indptr)), indices] = True
    D = brute_dist(geo.X)
    want = D < delta
    np.fill_diagonal(want, True)
    clear = np.abs(D - delta) > 1e-5  # pairs at delta up to rounding may go either way
    np.testing.assert_array_equal(A[clear], want[clear])
    assert (A == A.T).all() and A.diagonal().all()
    # A delta that was not produced by the purity rule is searched on demand.
    ip2, ind2 = ball_graph(geo, delta * 0.5)
    assert ind2.size < indices.size


def test_backends_agree_on_delta_and_graph(blobs):
    g1 = Geometry.of(blobs, backend="faiss")
    g2 = Geometry.of(blobs, backend="torch")
    assert g1 is not g2
    # Same pseudo-labels for both, so that only the neighbour search differs.
    g2._kmeans[(4, 0)] = g1.kmeans(4, 0)
    d1, d2 = probcover_delta(g1, 4), probcover_delta(g2, 4)
    assert d1 == pytest.approx(d2, abs=1e-5)
    a, b = ball_graph(g1, d1), ball_graph(g2, d2)
    assert abs(a[1].size - b[1].size) <= 4


def test_coverage_incremental_equals_from_scratch(blobs):
    g = Geometry.of(blobs)
    delta = probcover_delta(g, 4)
    indptr, indices = ball_graph(g, delta)
    c1, g1 = coverage(g, delta, [0, 10])
    c2, g2 = coverage(g, delta, [0, 10, 99, 150])  # incremental
    g.scratch("cover_coverage").clear()
    c3, g3 = coverage(g, delta, [0, 10, 99, 150])  # from scratch
    np.testing.assert_array_equal(c2, c3)
    np.testing.assert_array_equal(g2, g3)
    # Definitions: covered = union of balls; gain = uncovered points in the ball.
    n = len(blobs)
    balls = [set(indices[indptr[i]:indptr[i + 1]].tolist()) for i in range(n)]
    cov = set().union(*(balls[i] for i in (0, 10, 99, 150)))
    assert set(np.flatnonzero(c3).tolist()) == cov
    assert all(g3[v] == len(balls[v] - cov) for v in range(n))


def test_edge_guard_refuses_huge_graphs(blobs, monkeypatch):
    monkeypatch.setattr(CG, "MAX_EDGES", 10)
    with pytest.raises(ValueError, match="edges"):
        probcover_delta(Geometry.of(blobs), 4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ball_at_is_ball_from_pairs_at_every_smaller_radius(blobs, backend):
    # The symmetric pairs of one wide search, filtered per radius: the same rows (as sets) as building
    # them anew; each row comes in distance order.
    X = Geometry.of(blobs).X
    ip, ind, sq = CG.range_pairs(X, 0.6, backend=backend)
    rows = np.repeat(np.arange(len(X), dtype=np.int32), np.diff(ip))
    sym = CG.symmetric_pairs(len(X), ip, ind, sq, rows)
    for d in (0.6, 0.45, 0.3, 0.1, 1e-4):
        d2 = np.float32(d) ** 2
        want = CG.ball_from_pairs(len(X), ip, ind, sq, d2, rows)
        got = CG.ball_at(sym, d2)
        assert [a.dtype for a in want] == [b.dtype for b in got]
        np.testing.assert_array_equal(want[0], got[0])
        np.testing.assert_array_equal(want[1], sorted_rows(*got))
        dist = ((X[np.repeat(np.arange(len(X)), np.diff(got[0]))] - X[got[1]]) ** 2).sum(1)
        assert all(np.all(np.diff(dist[a:b]) >= -1e-6) for a, b in zip(got[0][:-1], got[0][1:]))


def sorted_rows(indptr, indices):
    """indices with each CSR row sorted (to compare rows as sets)."""
    r = np.repeat(np.arange(indptr.size - 1), np.diff(indptr))
    return indices[np.lexsort((indices, r))]


def test_symmetric_pairs_keeps_the_nearer_of_two_asymmetric_distances():
    # (0, 1) listed at 0.5, (1, 0) at 0.2, (1, 2) only one way: min distances, both directions, self-loops.
    ip = np.array([0, 1, 3, 3])
    ind = np.array([1, 0, 2], np.int32)
    sq = np.array([0.5, 0.2, 0.3], np.float32)
    rows = np.repeat(np.arange(3, dtype=np.int32), np.diff(ip))
    sym_ip, sym_ind, w = CG.symmetric_pairs(3, ip, ind, sq, rows)
    np.testing.assert_array_equal(sym_ip, [0, 2, 5, 7])
    np.testing.assert_array_equal(sym_ind, [0, 1, 1, 0, 2, 2, 1])  # each row by distance, self first
    np.testing.assert_array_equal(w, np.array([-np.inf, 0.2, -np.inf, 0.2, 0.3, -np.inf, 0.3], np.float32))
    ball_ip, ball_ind = CG.ball_at((sym_ip, sym_ind, w), np.float32(0.25))
    np.testing.assert_array_equal(ball_ip, [0, 2, 4, 5])
    np.testing.assert_array_equal(ball_ind, [0, 1, 1, 0, 2])
    for d2, want in ((0.2, [0, 1, 2, 3]), (0.3, [0, 2, 4, 5]), (np.inf, [0, 2, 5, 7])):  # strict: w < d2
        np.testing.assert_array_equal(CG.ball_at((sym_ip, sym_ind, w), np.float32(d2))[0], want)
