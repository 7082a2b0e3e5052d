"""Geometry against brute-force references on small inputs, on both backends."""
import time

import numpy as np
import pytest
from geometry_data import brute_dist  # its `blobs` fixture comes through conftest

from alwidget import geometry as G
from alwidget.geometry import Geometry, kmeans, knn, normalize

BACKENDS = ["faiss", "torch"]


@pytest.fixture(autouse=True)
def _fresh_cache():
    Geometry.clear_cache()
    yield
    Geometry.clear_cache()


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
    none, c3 = kmeans(X, 6, seed=3, backend=backend, assign=False)  # the same centroids, no assignment
    assert none is None
    np.testing.assert_array_equal(c3, c1)
    if backend == "faiss":  # numpy's check of the input, in place of faiss's slower one
        bad = X.copy()
        bad[3, 2] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            kmeans(bad, 6, backend=backend)
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


def test_threads_asking_for_a_new_geometry_at_once_share_one(blobs, monkeypatch):
    """A Session's first round and its background index build ask for the pool's Geometry at the
    same moment: one builds it, the other waits and gets the same object (each once cached its own
    and one thread's work, e.g. the search index, was lost)."""
    import threading

    Geometry.clear_cache()
    X = blobs + 1.0  # content no other test caches
    calls, real = [], G._unit_rows
    both = threading.Barrier(2)

    def slow(arr):  # the normalisation takes a while (seconds at 1M): both threads are inside `of`
        calls.append(1)
        time.sleep(0.3)
        return real(arr)

    monkeypatch.setattr(G, "_unit_rows", slow)
    got = []

    def ask():
        both.wait()
        got.append(Geometry.of(X))

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(got) == 2 and got[0] is got[1] and Geometry.of(X) is got[0]
    assert len(calls) == 1 and Geometry._building == {}


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


@pytest.mark.parametrize("backend", BACKENDS)
def test_kmeans_trains_on_at_most_kmeans_train_max_rows(blobs, backend, monkeypatch):
    X = np.vstack([blobs] * 4)  # 1200 rows
    want = kmeans(X, 4, seed=3, backend=backend, max_points_per_centroid=50)
    monkeypatch.setattr(G, "KMEANS_TRAIN_MAX", 200)  # 200 // 4 = 50 per centroid
    got = kmeans(X, 4, seed=3, backend=backend)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], atol=1e-6)
    monkeypatch.setattr(G, "KMEANS_TRAIN_MAX", 1 << 30)  # the cap never raises the faiss default
    np.testing.assert_array_equal(kmeans(X, 4, seed=3, backend=backend)[0],
                                  kmeans(X, 4, seed=3, backend=backend, max_points_per_centroid=256)[0])


def test_pca_project_matches_the_principal_axes_with_fixed_signs(blobs):
    from alwidget._kmeans import pca_project

    X = normalize(blobs)
    Z = pca_project(X, 3)
    assert Z.shape == (len(X), 3) and Z.dtype == np.float32
    Xc = X.astype(np.float64) - X.mean(0)
    vt = np.linalg.svd(Xc, full_matrices=False)[2]
    ref = Xc @ vt[:3].T
    ref *= np.sign(vt[:3][np.arange(3), np.abs(vt[:3]).argmax(1)])  # largest loading positive
    np.testing.assert_allclose(Z, ref, atol=1e-5)
    assert np.all(np.diff(Z.var(0)) <= 0)  # most variance first
    np.testing.assert_array_equal(Z, pca_project(X.copy(), 3))  # deterministic
    assert pca_project(X, 50).shape == (len(X), 8)  # at most D dims


def test_pca_project_fits_large_pools_on_a_seeded_sample(blobs):
    from alwidget._kmeans import pca_project

    X = normalize(blobs)
    a = pca_project(X, 2, fit_max=100)
    np.testing.assert_array_equal(a, pca_project(X, 2, fit_max=100))
    assert not np.array_equal(a, pca_project(X, 2, fit_max=100, seed=1))


def test_kmeans_on_reduced_dims_is_cached_apart_and_deterministic(blobs):
    g = Geometry.of(blobs)
    full = g.kmeans(6, 0)
    red = g.kmeans(6, 0, dims=3)
    assert red[1].shape == (6, 3) and full[1].shape == (6, 8)
    assert g.kmeans(6, 0, dims=8) is full and g.kmeans(6, 0, dims=99) is full  # no reduction: the same clustering
    np.testing.assert_array_equal(red[0], kmeans(g.reduced(3), 6, seed=0)[0])
    Geometry.clear_cache()
    np.testing.assert_array_equal(Geometry.of(blobs.copy()).kmeans(6, 0, dims=3)[0], red[0])


def test_typicality_on_reduced_clusters_is_measured_in_the_full_features(blobs):
    g = Geometry.of(blobs)
    order, starts = g.members(4, 0, dims=2)
    assign = g.kmeans(4, 0, dims=2)[0]
    for c in range(4):
        members = order[starts[c]:starts[c + 1]]
        np.testing.assert_array_equal(np.sort(members), np.flatnonzero(assign == c))
        rows, typ = g.typicality_order(4, 0, c, dims=2)
        k = min(20, members.size // 2)
        D = brute_dist(g.X[members])
        np.fill_diagonal(D, np.inf)
        want = 1.0 / (np.sort(D, 1)[:, :k].mean(1) + 1e-12)
        np.testing.assert_allclose(typ, np.sort(want)[::-1], rtol=1e-4)


def test_geometry_takes_a_validated_pools_fingerprint_and_shares_unit_rows(monkeypatch):
    from alwidget import geometry
    from alwidget._pool import remember_fingerprint

    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 8)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Geometry.clear_cache()
    below = Geometry.of(X)
    assert not np.shares_memory(below.X, X)  # small pools: a normalised copy, as before
    assert np.array_equal(below.X, geometry.normalize(X))
    Geometry.clear_cache()
    monkeypatch.setattr(geometry, "SHARE_UNIT_MIN", 100)
    remember_fingerprint(X, "known-fp")  # what the Session does after validating and hashing
    geo = Geometry.of(X)
    assert geo.fingerprint == "known-fp"  # not hashed again
    assert geo.X is X  # unit rows: no copy
    Y = X * 2.0
    g2 = Geometry.of(Y)
    assert not np.shares_memory(g2.X, Y) and np.allclose(np.linalg.norm(g2.X, axis=1), 1.0)
    Z = X.astype(np.float64)  # not float32: validated (converted) again, never taken as it is
    remember_fingerprint(Z, "other")
    assert Geometry.of(Z).fingerprint != "other"
    Geometry.clear_cache()
