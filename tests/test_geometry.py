"""Geometry against brute-force references on small inputs, on both backends."""
import numpy as np
import pytest

from alwidget import geometry as G
from alwidget.geometry import Geometry, kmeans, knn, normalize, purity_rank

BACKENDS = ["faiss", "torch"]


@pytest.fixture(autouse=True)
def _fresh_cache():
    Geometry.clear_cache()
    yield
    Geometry.clear_cache()


@pytest.fixture
def blobs():
    """300 points in 8-D: 6 Gaussian blobs plus 5 exact duplicates of row 0."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((6, 8)) * 3
    X = centres[rng.integers(0, 6, 295)] + rng.standard_normal((295, 8))
    X = np.vstack([X, np.repeat(X[:1], 5, axis=0)])
    return X.astype(np.float32)


def brute_dist(X):
    X = np.asarray(X, dtype=np.float64)
    return np.sqrt(np.maximum(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1), 0))


def test_normalize_unit_rows_and_zero_rows_stay_zero():
    X = np.array([[3.0, 4.0], [0.0, 0.0], [1e-30, 0.0]], dtype=np.float32)
    out = normalize(X)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(out[1], [0.0, 0.0])
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("small", [True, False])
def test_knn_matches_brute_force_and_excludes_self(blobs, backend, small, monkeypatch):
    monkeypatch.setattr(G, "SMALL_N", 10_000 if small else 0)
    X = normalize(blobs)
    dist, idx = knn(X, 7, backend=backend)
    assert dist.shape == idx.shape == (len(X), 7) and idx.dtype == np.int64
    D = brute_dist(X)
    np.fill_diagonal(D, np.inf)
    np.testing.assert_allclose(dist, np.sort(D, 1)[:, :7], atol=2e-4)
    assert not np.any(idx == np.arange(len(X))[:, None])
    # The returned neighbours really are at the returned distances.
    np.testing.assert_allclose(np.take_along_axis(D, idx, 1), dist, atol=2e-4)
    # Duplicates of row 0 see each other at distance 0.
    dup = np.arange(295, 300)
    assert np.allclose(dist[dup, :5], 0, atol=1e-3)


def test_knn_caps_k_and_handles_single_row():
    d, i = knn(np.ones((1, 3), np.float32), 5)
    assert d.shape == (1, 0) and i.shape == (1, 0)
    d, i = knn(np.eye(3, dtype=np.float32), 10)
    assert d.shape == (3, 2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_kmeans_seeded_assigns_to_nearest_centroid(blobs, backend):
    X = normalize(blobs)
    a1, c1 = kmeans(X, 6, seed=3, backend=backend)
    a2, c2 = kmeans(X, 6, seed=3, backend=backend)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(c1, c2)
    assert a1.dtype == np.int64 and c1.shape == (6, 8)
    d = ((X[:, None, :] - c1[None]) ** 2).sum(-1)
    np.testing.assert_allclose(d[np.arange(len(X)), a1], d.min(1), atol=1e-5)
    # Well-separated blobs: every blob ends up in (mostly) one cluster.
    assert len(np.unique(a1)) == 6


@pytest.mark.parametrize("backend", BACKENDS)
def test_kmeans_more_clusters_than_distinct_rows(backend):
    X = np.repeat(np.eye(3, dtype=np.float32), 4, axis=0)  # 12 rows, 3 distinct
    assign, cent = kmeans(X, 8, seed=0, backend=backend)
    assert assign.shape == (12,) and cent.shape == (8, 3) and np.isfinite(cent).all()
    # Identical rows always share a cluster.
    for r in range(3):
        assert len(np.unique(assign[r * 4:(r + 1) * 4])) == 1
    assert kmeans(X, 50, seed=0, backend=backend)[1].shape[0] == 12  # K capped at N


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
    monkeypatch.setattr(G, "_DELTA_SAMPLE", sample)  # 60: the sampled upper-bound path
    geo = Geometry.of(blobs, backend=backend)
    pseudo = geo.kmeans(4, 0)[0]
    delta = geo.probcover_delta(4, seed=0)
    want, near = brute_delta(geo.X, pseudo, 0.95)
    assert delta == pytest.approx(want, abs=1e-4)
    info = geo.probcover_info(4, seed=0)
    assert info["purity"] >= 0.95 and info["n_pseudo"] == 4
    assert info["purity"] == pytest.approx(np.mean(near >= want - 1e-5), abs=1e-9)


def test_probcover_delta_grows_the_radius_when_the_sample_underestimates(blobs, monkeypatch):
    real = G._nearest_other_sq
    monkeypatch.setattr(G, "_DELTA_SAMPLE", 50)
    monkeypatch.setattr(G, "_nearest_other_sq", lambda *a, **k: real(*a, **k) * 0.01)
    calls = []
    real_range = G._range_csr
    monkeypatch.setattr(G, "_range_csr", lambda *a, **k: calls.append(a[1]) or real_range(*a, **k))
    geo = Geometry.of(blobs)
    delta = geo.probcover_delta(4, seed=0)
    want, _ = brute_delta(geo.X, geo.kmeans(4, 0)[0], 0.95)
    assert len(calls) >= 2 and calls[-1] > calls[0]
    assert delta == pytest.approx(want, abs=1e-4)


def test_probcover_delta_one_pseudo_label_everywhere_is_inf():
    X = np.ones((20, 4), np.float32)
    assert Geometry.of(X).probcover_delta(3) == float("inf")


@pytest.mark.parametrize("backend", BACKENDS)
def test_ball_graph_matches_brute_force(blobs, backend):
    geo = Geometry.of(blobs, backend=backend)
    delta = geo.probcover_delta(4, seed=0)
    indptr, indices = geo.ball_graph(delta)
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
    ip2, ind2 = geo.ball_graph(delta * 0.5)
    assert ind2.size < indices.size


def test_backends_agree_on_delta_and_graph(blobs):
    g1 = Geometry.of(blobs, backend="faiss")
    g2 = Geometry.of(blobs, backend="torch")
    assert g1 is not g2
    # Same pseudo-labels for both, so that only the neighbour search differs.
    g2._kmeans[(4, 0)] = g1.kmeans(4, 0)
    d1, d2 = g1.probcover_delta(4), g2.probcover_delta(4)
    assert d1 == pytest.approx(d2, abs=1e-5)
    a, b = g1.ball_graph(d1), g2.ball_graph(d2)
    assert abs(a[1].size - b[1].size) <= 4


def test_geometry_of_is_cached_by_identity_and_content(blobs):
    g = Geometry.of(blobs)
    assert Geometry.of(blobs) is g
    assert Geometry.of(blobs.copy()) is g  # same content, other object
    assert Geometry.of(blobs.astype(np.float64)) is g  # geometry works on the float32 values
    other = blobs.copy()
    other[5, 0] += 1
    assert Geometry.of(other) is not g
    assert g.kmeans(5, 1)[0] is g.kmeans(5, 1)[0]
    assert g.typicality_order(5, 1, 0)[0] is g.typicality_order(5, 1, 0)[0]


def test_geometry_of_validates_features():
    with pytest.raises(ValueError, match="NaN"):
        Geometry.of(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="shape"):
        Geometry.of(np.ones(4))


def test_typicality_is_inverse_mean_knn_distance_inside_the_cluster(blobs):
    g = Geometry.of(blobs)
    order, starts = g.members(6, 0)
    for c in range(6):
        rows, typ = g.typicality_order(6, 0, c)
        members = np.sort(order[starts[c]:starts[c + 1]])
        assert np.array_equal(np.sort(rows), members)
        k = min(20, members.size // 2)
        D = brute_dist(g.X[members])
        np.fill_diagonal(D, np.inf)
        want = 1.0 / (np.sort(D, 1)[:, :k].mean(1) + 1e-12)
        got = dict(zip(rows.tolist(), typ.tolist()))
        np.testing.assert_allclose([got[m] for m in members], want, rtol=1e-3)
        assert np.all(np.diff(typ) <= 0)  # most typical first


def test_typicality_of_tiny_clusters_is_finite():
    X = np.array([[0, 0], [10, 10], [10, 10.1], [-10, 5]], np.float32)
    g = Geometry.of(X)
    for c in range(4):
        rows, typ = g.typicality_order(4, 0, c)
        assert np.all(np.isfinite(typ))


def test_min_sq_dist_incremental_equals_direct(blobs):
    g = Geometry.of(blobs)
    D2 = brute_dist(g.X) ** 2
    np.testing.assert_allclose(g.min_sq_dist([3, 7]), D2[:, [3, 7]].min(1), atol=1e-4)
    np.testing.assert_allclose(g.min_sq_dist([3, 7, 50, 60]), D2[:, [3, 7, 50, 60]].min(1), atol=1e-4)
    np.testing.assert_allclose(g.min_sq_dist([9]), D2[:, 9], atol=1e-4)  # not a superset
    assert np.isinf(g.min_sq_dist([])).all()


def test_coverage_incremental_equals_from_scratch(blobs):
    g = Geometry.of(blobs)
    delta = g.probcover_delta(4)
    indptr, indices = g.ball_graph(delta)
    c1, g1 = g.coverage(delta, [0, 10])
    c2, g2 = g.coverage(delta, [0, 10, 99, 150])  # incremental
    g._cover = None
    c3, g3 = g.coverage(delta, [0, 10, 99, 150])  # from scratch
    np.testing.assert_array_equal(c2, c3)
    np.testing.assert_array_equal(g2, g3)
    # Definitions: covered = union of balls; gain = uncovered points in the ball.
    n = len(blobs)
    balls = [set(indices[indptr[i]:indptr[i + 1]].tolist()) for i in range(n)]
    cov = set().union(*(balls[i] for i in (0, 10, 99, 150)))
    assert set(np.flatnonzero(c3).tolist()) == cov
    assert all(g3[v] == len(balls[v] - cov) for v in range(n))


def test_edge_guard_refuses_huge_graphs(blobs, monkeypatch):
    monkeypatch.setattr(G, "MAX_EDGES", 10)
    with pytest.raises(ValueError, match="edges"):
        Geometry.of(blobs).probcover_delta(4)


def test_big_clusters_get_a_shortlist_with_exact_typicality(blobs, monkeypatch):
    monkeypatch.setattr(G, "TYPICALITY_EXACT_MAX", 40)
    monkeypatch.setattr(G, "TYPICALITY_SAMPLE", 30)
    monkeypatch.setattr(G, "TYPICALITY_SHORTLIST", 12)
    g = Geometry.of(blobs)
    order, starts = g.members(2, 0)
    for c in range(2):
        members = order[starts[c]:starts[c + 1]]
        assert members.size > 40
        rows, typ = g.typicality_order(2, 0, c)
        assert rows.size == 12 and np.isin(rows, members).all()
        k = min(20, members.size // 2)
        D = brute_dist(g.X[members])
        np.fill_diagonal(D, np.inf)
        exact = 1.0 / (np.sort(D, 1)[:, :k].mean(1) + 1e-12)
        pos = {m: i for i, m in enumerate(members.tolist())}
        np.testing.assert_allclose(typ, exact[[pos[r] for r in rows.tolist()]], rtol=1e-4)
        assert typ[0] == pytest.approx(exact.max(), rel=1e-4)  # the best point made the shortlist
        full, ftyp = g.typicality_order(2, 0, c, exact_max=members.size)
        assert full.size == members.size and ftyp[0] == pytest.approx(exact.max(), rel=1e-4)


def test_cluster_sums_blocked_one_hot_path_equals_index_add():
    import torch

    x = torch.from_numpy(np.random.default_rng(2).standard_normal((1000, 6)).astype(np.float32))
    ids = torch.from_numpy(np.random.default_rng(3).integers(0, 7, 1000))
    a = G._cluster_sums(x, ids, 9, blocked=False)
    b = G._cluster_sums(x, ids, 9, blocked=True)  # the CUDA path, run on the CPU
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)
    assert torch.all(a[7:] == 0)
