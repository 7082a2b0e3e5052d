"""Approximate neighbours (alwidget.ann) against the exact search, on real features."""
import sys

import numpy as np
import pytest

from alwidget import ann
from alwidget.datasets import fashion_mnist
from alwidget.geometry import Geometry, knn, knn_query, normalize

pytest.importorskip("faiss")


@pytest.fixture(autouse=True)
def _fresh_cache():
    Geometry.clear_cache()
    yield
    Geometry.clear_cache()


@pytest.fixture(scope="module")
def fmnist_pixels():
    """5,000 real Fashion-MNIST test images as unit pixel rows (784-d)."""
    ds = fashion_mnist("test", download=False)
    return normalize(ds.images[:5000].reshape(5000, -1).astype(np.float32))


@pytest.mark.parametrize("data", ["digits", "fmnist_pixels"])
def test_hnsw_graph_recall_against_exact_on_real_features(data, request):
    X = normalize(request.getfixturevalue(data)[0] if data == "digits" else request.getfixturevalue(data))
    d_ex, i_ex = knn(X, 10)
    d, i = ann.knn_graph(X, 10)
    assert i.shape == (len(X), 10) and i.dtype == np.int64 and d.dtype == np.float32
    assert ann.recall(i, i_ex) >= 0.97
    assert not (i == np.arange(len(X))[:, None]).any() and (i >= 0).all()
    assert np.all(np.diff(d, axis=1) >= -1e-6)
    # Distances are the true distances of the rows found.
    true = np.sqrt(((X[:, None, :] - X[i]) ** 2).sum(-1))
    np.testing.assert_allclose(d, true, atol=1e-4)
    # Never closer than the exact k-th neighbour allows.
    assert np.all(d[:, -1] >= d_ex[:, -1] - 1e-5)


def test_hnsw_graph_is_deterministic(digits):
    X = normalize(digits[0])
    a, b = ann.knn_graph(X, 5), ann.knn_graph(X, 5)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])


def test_short_rows_are_searched_exactly(digits):
    X = normalize(digits[0])
    d, i = ann.knn_graph(X, 8, ef_search=1)  # efSearch is raised to k + 1: results stay complete
    assert (i >= 0).all()
    sq = np.full((3, 8), np.inf, np.float32)
    idx = np.full((3, 8), -1, np.int64)
    ann._exact_rows(X, np.arange(3), 8, True, sq, idx)
    np.testing.assert_array_equal(idx, knn(X[:], 8)[1][:3])


def test_ivf_index_queries_recall(fmnist_pixels):
    X = fmnist_pixels
    q = X[::50]
    index = ann.IVFIndex(X, metric="inner", seed=0)
    v, i = index.search(q, 20, nprobe=16)
    ve, ie = knn_query(X, q, 20, metric="inner")
    assert ann.recall(i, ie) >= 0.9
    assert np.all(np.diff(v, axis=1) <= 1e-6)  # inner products descending
    with pytest.raises(ValueError, match="metric"):
        ann.IVFIndex(X, metric="cosine")


def test_ivf_index_with_half_precision_rows_finds_the_same_neighbours(fmnist_pixels):
    X = fmnist_pixels
    q = X[::50]
    flat = ann.IVFIndex(X, metric="inner", seed=0).search(q, 20)
    v, i = ann.IVFIndex(X, metric="inner", seed=0, codec="fp16").search(q, 20)
    ve, ie = knn_query(X, q, 20, metric="inner")
    assert ann.recall(i, ie) >= 0.9 and ann.recall(i, flat[1]) >= 0.95
    exact = np.einsum("qd,qkd->qk", q, X[i])  # the values carry only fp16 rounding
    np.testing.assert_allclose(v, exact, atol=5e-3)
    with pytest.raises(ValueError, match="codec"):
        ann.IVFIndex(X, metric="inner", codec="pq")


def _reranked(X, q, idx, k):
    """The best k of each query's candidates by exact inner product (as anchoral._search)."""
    s = np.stack([X[np.maximum(j, 0)] @ v for v, j in zip(q, idx)])
    s[idx < 0] = -np.inf
    o = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(idx, o, 1)


@pytest.mark.parametrize("data", ["digits", "fmnist_pixels"])
def test_pq4_codes_reranked_keep_the_recall_of_fp16(data, request):
    X = normalize(request.getfixturevalue(data)[0] if data == "digits" else request.getfixturevalue(data))
    q, k = X[::25], 20
    ie = knn_query(X, q, k, metric="inner")[1]
    fp16 = ann.IVFIndex(X, metric="inner", seed=0, codec="fp16")
    pq = ann.IVFIndex(X, metric="inner", seed=0, codec="pq4")
    assert (fp16.oversample, pq.oversample) == (1, ann.OVERSAMPLE["pq4"]) and pq.oversample > 1
    r16 = ann.recall(_reranked(X, q, fp16.search(q, k)[1], k), ie)
    v, i = pq.search(q, k * pq.oversample)
    assert i.shape == (len(q), k * pq.oversample) and i.dtype == np.int64 and v.dtype == np.float32
    assert np.all(np.diff(v, axis=1) <= 1e-6)  # approximate inner products, descending
    got = _reranked(X, q, i, k)
    assert ann.recall(got, ie) >= max(0.9, r16 - 0.01)
    # 4-bit codes alone, without the re-rank, lose neighbours: the candidates are what pays
    assert ann.recall(pq.search(q, k)[1], ie) < ann.recall(got, ie)


def test_pq4_pads_an_odd_dimension_and_searches_l2(digits):
    X = normalize(digits[0][:, :63])  # 63 columns: one zero column is added inside
    index = ann.IVFIndex(X, metric="l2", seed=0, codec="pq4")
    q = X[::40]
    v, i = index.search(q, 10 * index.oversample)
    assert np.all(np.diff(v, axis=1) >= -1e-6)  # squared distances ascending
    d = ((q[:, None, :] - X[np.maximum(i, 0)]) ** 2).sum(-1)
    got = np.take_along_axis(i, np.argsort(d, axis=1, kind="stable")[:, :10], 1)
    assert ann.recall(got, knn_query(X, q, 10)[1]) >= 0.9
    for a, b in zip(index.search(q[0], 5), index.search(q[:1], 5)):  # a 1-d query row is one query
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("codec", ann.CODECS)
def test_a_query_finds_the_same_rows_alone_or_with_others(fmnist_pixels, codec):
    X = fmnist_pixels
    index = ann.IVFIndex(X, metric="inner", seed=0, codec=codec)
    q = X[7:7 + 16]  # the largest block anchoral searches at once (its _QUERIES)
    k = 60 * index.oversample
    v, i = index.search(q, k)
    for t in (0, 5, 15):
        va, ia = index.search(q[t:t + 1], k)
        np.testing.assert_array_equal(ia[0], i[t])
        np.testing.assert_array_equal(va[0], v[t])
    vb, ib = index.search(q[3:9], k)  # another grouping
    np.testing.assert_array_equal(ib, i[3:9])


def test_inner_products_by_index_are_exact_and_per_row(fmnist_pixels):
    X = fmnist_pixels
    ids = np.arange(3, 4000, 7)
    got = ann.inner_products(X, X[11], ids)
    assert got.dtype == np.float32 and got.shape == ids.shape
    np.testing.assert_allclose(got, X[ids] @ X[11], atol=1e-5)
    np.testing.assert_array_equal(ann.inner_products(X, X[11], ids[5:9]), got[5:9])  # same, asked alone
    np.testing.assert_allclose(ann.inner_products(X[:, ::2], X[11, ::2], ids), X[ids, ::2] @ X[11, ::2], atol=1e-5)
    for bad in ([-1, 2], [0, len(X)]):
        with pytest.raises(ValueError, match="ids must be in"):
            ann.inner_products(X, X[0], bad)
    # a block of queries, each against its own ids: the products of each one asked alone
    q, block = np.array([11, 40, 7]), np.stack([ids[:50], ids[100:150], ids[::-1][:50]])
    got = ann.inner_products(X, X[q], block)
    assert got.shape == (3, 50) and got.dtype == np.float32
    for b in range(3):
        np.testing.assert_array_equal(got[b], ann.inner_products(X, X[q[b]], block[b]))
    np.testing.assert_allclose(ann.inner_products(X[:, ::2], X[q, ::2], block),
                               np.einsum("bmd,bd->bm", X[block, ::2], X[q, ::2]), atol=1e-5)
    with pytest.raises(ValueError, match="ids must be"):
        ann.inner_products(X, X[q], block[:2])


def test_ivf_index_rejects_unknown_codecs(digits):
    X = normalize(digits[0])
    for bad in ("pq", "sq8", "PQ4", "", None):
        with pytest.raises(ValueError, match="codec must be one of 'flat', 'fp16', 'pq4'"):
            ann.IVFIndex(X, metric="inner", codec=bad)
    with pytest.raises(ValueError, match="at least 16 rows"):
        ann.IVFIndex(X[:15], metric="inner", codec="pq4")
    assert ann.IVFIndex(X[:16], metric="inner", codec="pq4").search(X[:2], 3)[1].shape == (2, 3)


def test_geometry_knn_goes_approximate_from_the_threshold(fmnist_pixels, monkeypatch):
    X = fmnist_pixels
    geo = Geometry.of(X, backend="faiss")
    assert not geo.knn_is_approximate()
    exact = geo.knn(10)
    monkeypatch.setattr(ann, "APPROX_KNN_MIN", 1000)
    assert geo.knn_is_approximate()
    approx = geo.knn(10)
    np.testing.assert_array_equal(approx[1], ann.knn_graph(geo.X, 10)[1])
    assert ann.recall(approx[1], exact[1]) >= 0.97
    np.testing.assert_array_equal(geo.knn(10, approx=False)[1], exact[1])  # both kept
    # torch backend (a GPU's path) and a missing faiss stay exact.
    assert not Geometry.of(X, backend="torch").knn_is_approximate()
    monkeypatch.setitem(sys.modules, "faiss", None)
    assert not ann.available() and not Geometry.of(X + 0).knn_is_approximate()


@pytest.mark.parametrize("codec", ["pq4", "flat"])
def test_ivf_index_saved_then_loaded_searches_the_same(digits, tmp_path, codec):
    X = normalize(digits[0][:, 1:])  # 63 columns: "pq4" pads one
    index = ann.IVFIndex(X, metric="inner", nlist=20, seed=0, codec=codec)
    index.save(tmp_path / "ivf.npz")
    got = ann.IVFIndex.load(tmp_path / "ivf.npz", n_samples=len(X), n_features=63, metric="inner", codec=codec,
                            nlist=20)
    for a, b in zip(index.search(X[:30], 12, nprobe=4), got.search(X[:30], 12, nprobe=4)):
        np.testing.assert_array_equal(a, b)
    assert got.oversample == index.oversample and got.nlist == 20
    with pytest.raises(ValueError, match="another setting .*nlist"):
        ann.IVFIndex.load(tmp_path / "ivf.npz", n_samples=len(X), n_features=63, metric="inner", codec=codec,
                          nlist=21)
    with pytest.raises(ValueError, match="another setting .*n_samples"):
        ann.IVFIndex.load(tmp_path / "ivf.npz", n_samples=len(X) + 1, n_features=63, metric="inner",
                          codec=codec, nlist=20)
    (tmp_path / "bad.npz").write_bytes((tmp_path / "ivf.npz").read_bytes()[:1000])  # a write cut short
    with pytest.raises(ValueError, match="unreadable"):
        ann.IVFIndex.load(tmp_path / "bad.npz", n_samples=len(X), n_features=63, metric="inner", codec=codec,
                          nlist=20)


def test_cached_ivf_builds_once_then_reads_the_file_and_rebuilds_a_broken_one(digits, tmp_path, monkeypatch):
    X = normalize(digits[0])
    built = []
    real = ann.IVFIndex.__init__
    monkeypatch.setattr(ann.IVFIndex, "__init__", lambda self, *a, **kw: built.append(1) or real(self, *a, **kw))
    kw = dict(metric="inner", nlist=20, codec="pq4", folder=tmp_path)
    first = ann.cached_ivf(X, "content-a", **kw)
    files = list(tmp_path.glob("ivf-*.npz"))
    assert len(built) == 1 and len(files) == 1
    again = ann.cached_ivf(X, "content-a", **kw)
    assert len(built) == 1  # read from the file
    np.testing.assert_array_equal(first.search(X[:20], 10)[1], again.search(X[:20], 10)[1])
    ann.cached_ivf(X, "content-b", **kw)  # other features: their own file
    assert len(built) == 2 and len(list(tmp_path.glob("ivf-*.npz"))) == 2
    files[0].write_bytes(b"not an index")
    with pytest.warns(RuntimeWarning, match="ignoring the search index file .*rebuilding"):
        fixed = ann.cached_ivf(X, "content-a", **kw)
    assert len(built) == 3
    np.testing.assert_array_equal(first.search(X[:20], 10)[1], fixed.search(X[:20], 10)[1])
    ann.cached_ivf(X, "content-a", **kw)
    assert len(built) == 3  # the rebuilt file was written back
    with pytest.warns(RuntimeWarning, match="could not keep the search index"):
        kept = ann.cached_ivf(X, "content-a", **dict(kw, folder=tmp_path / "missing" / "folder"))
    assert kept.search(X[:2], 3)[1].shape == (2, 3)


def test_cached_ivf_keeps_the_most_recently_used_files(digits, tmp_path, monkeypatch):
    import os

    X = normalize(digits[0])
    monkeypatch.setattr(ann, "INDEX_FILES_KEPT", 2)
    kw = dict(metric="inner", nlist=10, codec="flat", folder=tmp_path)
    files = []
    for i, key in enumerate(("a", "b")):
        ann.cached_ivf(X, key, **kw)
        new = next(f for f in tmp_path.glob("ivf-*.npz") if f.name not in files)
        os.utime(new, (1000 + i, 1000 + i))  # "a" older than "b", whatever the clock's grain
        files.append(new.name)
    a_file, b_file = files
    ann.cached_ivf(X, "a", **kw)  # read: "a" becomes the most recently used
    ann.cached_ivf(X, "c", **kw)  # a third pool: the least recently used ("b") goes
    left = {f.name for f in tmp_path.glob("ivf-*.npz")}
    assert len(left) == 2 and a_file in left and b_file not in left
    built = []
    real = ann.IVFIndex.__init__
    monkeypatch.setattr(ann.IVFIndex, "__init__", lambda self, *a, **k: built.append(1) or real(self, *a, **k))
    ann.cached_ivf(X, "a", **kw)
    ann.cached_ivf(X, "c", **kw)
    assert built == []  # both kept files still read
