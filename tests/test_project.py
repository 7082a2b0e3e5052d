"""alwidget.project: preview, seeded + cached UMAP, background job, file CLI helper.

umap-learn compiles its numba kernels once per process (~15 s), so UMAP is fitted
on small sets (N < 4096, exact kNN path) and only a few tests fit for real; the
rest reuse the module-scoped cache or replace the fit with a spy.
"""
import sys
import threading
import time
import warnings

import numpy as np
import pytest

from alwidget import project
from alwidget import _umap_fit, project_preview
from alwidget.project import ProjectionJob, preview, project_file, to_canvas, umap


def blobs(n=300, d=16, k=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    centres = 3.0 * rng.normal(size=(k, d))
    X = (centres[labels] + rng.normal(size=(n, d))).astype(np.float32)
    return X, labels


@pytest.fixture(scope="module")
def X():
    return blobs()[0]


@pytest.fixture(scope="module")
def cached(tmp_path_factory, X):
    """One real UMAP fit shared by the cache tests: (cache_dir, coords)."""
    folder = tmp_path_factory.mktemp("umap-cache")
    return folder, umap(X, seed=0, cache_dir=folder, progress=False)


def count_fits(monkeypatch):
    calls = []
    real = project._fit_umap

    def spy(*args, **kwargs):
        calls.append(args[1:3])
        return real(*args, **kwargs)

    monkeypatch.setattr(project, "_fit_umap", spy)
    return calls


# --------------------------------------------------------------------------- canvas and preview


def test_to_canvas_centres_and_scales_isotropically():
    pts = np.array([[0.0, 0.0], [4.0, 1.0], [2.0, 3.0]])
    out = to_canvas(pts)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.min(0), [-1.0, -0.75])
    np.testing.assert_allclose(out.max(0), [1.0, 0.75])
    # one scale factor for both axes: distance ratios survive
    ratio = np.linalg.norm(out[1] - out[0]) / np.linalg.norm(out[2] - out[0])
    assert ratio == pytest.approx(np.linalg.norm(pts[1] - pts[0]) / np.linalg.norm(pts[2] - pts[0]), rel=1e-5)
    np.testing.assert_array_equal(to_canvas(np.ones((3, 2))), np.zeros((3, 2), np.float32))


def test_preview_shape_dtype_range_and_determinism(X):
    a = preview(X, seed=0)
    assert a.shape == (len(X), 2) and a.dtype == np.float32
    assert np.abs(a).max() == pytest.approx(1.0) and np.abs(a).max() <= 1.0
    np.testing.assert_array_equal(a, preview(X, seed=0))


def test_preview_finds_the_main_axis():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, 8)).astype(np.float32)
    X[:, 3] *= 20.0  # by far the largest variance
    X[:, 5] *= 5.0  # second largest
    a = preview(X, metric="euclidean")
    assert abs(np.corrcoef(a[:, 0], X[:, 3])[0, 1]) > 0.99
    assert abs(np.corrcoef(a[:, 1], X[:, 5])[0, 1]) > 0.95


def test_preview_cosine_ignores_row_length(X):
    scaled = X * np.linspace(0.5, 3.0, len(X), dtype=np.float32)[:, None]
    np.testing.assert_allclose(preview(scaled), preview(X), atol=1e-5)
    assert not np.allclose(preview(scaled, metric="euclidean"), preview(X, metric="euclidean"), atol=1e-2)


def test_preview_seed_picks_the_fit_rows(monkeypatch, X):
    monkeypatch.setattr(project_preview, "PREVIEW_FIT_ROWS", 50)  # the PCA lives there
    np.testing.assert_array_equal(preview(X, seed=3), preview(X, seed=3))
    assert not np.array_equal(preview(X, seed=3), preview(X, seed=4))


def test_preview_tiny_inputs():
    assert preview(np.ones((1, 5))).tolist() == [[0.0, 0.0]]
    one_feature = preview(np.arange(6, dtype=np.float32)[:, None], metric="euclidean")
    assert one_feature.shape == (6, 2) and np.all(one_feature[:, 1] == 0)


@pytest.mark.parametrize(
    "bad, err, match",
    [
        (np.array([[0.0, np.nan], [1.0, 2.0]]), ValueError, "NaN"),
        (np.zeros(5), ValueError, "n_samples, n_features"),
        (np.zeros((0, 3)), ValueError, "empty"),
        (np.array([["a", "b"]]), TypeError, "numeric"),
    ],
)
def test_bad_features_are_refused_by_every_entry_point(bad, err, match, tmp_path):
    with pytest.raises(err, match=match):
        preview(bad)
    with pytest.raises(err, match=match):
        umap(bad, cache_dir=tmp_path, progress=False)
    with pytest.raises(err, match=match):
        ProjectionJob(bad, cache_dir=tmp_path)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"seed": -1}, "seed"),
        ({"seed": None}, "seed"),
        ({"metric": "manhattan"}, "metric"),
        ({"n_neighbors": 1}, "n_neighbors"),
        ({"min_dist": 2.0}, "min_dist"),
        ({"knn": "annoy"}, "knn"),
        ({"init": "random"}, "init"),
        ({"n_jobs": 0}, "n_jobs"),
    ],
)
def test_bad_parameters_are_refused(kwargs, match, X, tmp_path):
    with pytest.raises((ValueError, TypeError), match=match):
        umap(X, cache_dir=tmp_path, progress=False, **kwargs)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- kNN


def test_exact_knn_faiss_and_torch_agree(monkeypatch, X):
    seen = []
    idx, dist = _umap_fit.knn_graph(X, 5, lambda f, m: seen.append(f))
    assert idx.shape == dist.shape == (len(X), 5) and idx.dtype == np.int64
    assert np.array_equal(idx[:, 0], np.arange(len(X)))  # self first (distance 0)
    assert np.all(np.diff(dist, axis=1) >= 0) and seen[-1] == 1.0
    brute = np.sqrt(((X[:20, None, :] - X[None, :, :]) ** 2).sum(-1))
    np.testing.assert_array_equal(idx[:20], np.argsort(brute, axis=1)[:, :5])
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now fails
    idx_t, dist_t = _umap_fit.knn_graph(X, 5, lambda f, m: None)
    np.testing.assert_array_equal(idx_t, idx)
    np.testing.assert_allclose(dist_t, dist, atol=1e-3)


# --------------------------------------------------------------------------- UMAP and its cache


def test_umap_is_deterministic_per_seed_and_separates_blobs(cached, X, tmp_path):
    folder, coords = cached
    assert coords.shape == (len(X), 2) and coords.dtype == np.float32
    assert np.abs(coords).max() == pytest.approx(1.0)
    # a fresh cache: a second real fit, on one thread this time (n_jobs changes speed, not the map)
    again = umap(X, seed=0, cache_dir=tmp_path, progress=False, n_jobs=1)
    np.testing.assert_array_equal(again, coords)
    # the map keeps the blobs apart: each point's nearest 2-D neighbour shares its blob
    labels = blobs()[1]
    d = ((coords[:, None] - coords[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (labels[d.argmin(1)] == labels).mean() > 0.95


def test_second_call_loads_from_cache(cached, X, monkeypatch):
    folder, coords = cached
    calls = count_fits(monkeypatch)
    seen = []
    np.testing.assert_array_equal(umap(X, seed=0, cache_dir=folder, progress=False, callback=lambda f, m: seen.append(m)), coords)
    assert calls == [] and "cache" in seen[-1]
    assert len(list(folder.glob("umap-*.npy"))) == 1


def test_a_pool_a_session_hashed_is_not_hashed_again(cached, X, monkeypatch):
    from alwidget._pool import remember_fingerprint
    from alwidget._util import fingerprint

    folder, coords = cached
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    remember_fingerprint(X32, fingerprint(X32))  # as Session() does for its features
    monkeypatch.setattr(project, "fingerprint", lambda a: pytest.fail("hashed the pool again"))
    calls = count_fits(monkeypatch)
    np.testing.assert_array_equal(umap(X32, seed=0, cache_dir=folder, progress=False), coords)
    assert calls == []  # the same cache entry as the hashed key


def test_parameter_change_makes_a_new_cache_entry(cached, X, monkeypatch):
    folder, coords = cached
    before = set(folder.glob("umap-*.npy"))
    calls = count_fits(monkeypatch)
    other = umap(X, seed=1, cache_dir=folder, progress=False)
    assert len(calls) == 1 and not np.array_equal(other, coords)
    assert len(set(folder.glob("umap-*.npy")) - before) == 1
    key = project._cache_file(folder, "fp", 0, project._umap_params(15, 0.1, "cosine", "auto", "preview"), 300)
    for change in [dict(n_neighbors=10), dict(min_dist=0.5), dict(metric="euclidean"), dict(init="spectral")]:
        params = project._umap_params(**{**dict(n_neighbors=15, min_dist=0.1, metric="cosine", knn="auto", init="preview"), **change})
        assert project._cache_file(folder, "fp", 0, params, 300) != key, change
    assert project._cache_file(folder, "other-features", 0, project._umap_params(15, 0.1, "cosine", "auto", "preview"), 300) != key


def test_corrupt_cache_file_is_recomputed(cached, X, monkeypatch, tmp_path):
    folder, coords = cached
    for f in folder.glob("umap-*.npy"):
        (tmp_path / f.name).write_bytes(f.read_bytes()[:50])  # truncated copy
    calls = count_fits(monkeypatch)
    with pytest.warns(RuntimeWarning, match="recomputing"):
        again = umap(X, seed=0, cache_dir=tmp_path, progress=False)
    assert len(calls) == 1
    np.testing.assert_array_equal(again, coords)
    # the repaired file is used next time, and no temp files are left behind
    np.testing.assert_array_equal(umap(X, seed=0, cache_dir=tmp_path, progress=False), coords)
    assert len(calls) == 1 and not list(tmp_path.glob("*.tmp"))


def test_few_points_get_the_pca_map(tmp_path):
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
    np.testing.assert_array_equal(umap(X, cache_dir=tmp_path, progress=False), preview(X))


# --------------------------------------------------------------------------- background job


def test_job_gives_preview_now_then_umap_with_progress(X, tmp_path):
    events, done = [], threading.Event()
    results = []

    def on_done(coords):
        results.append(coords)
        done.set()

    job = ProjectionJob(X, seed=0, cache_dir=tmp_path, on_done=on_done, on_progress=lambda f, m: events.append((f, m)))
    np.testing.assert_array_equal(job.preview, preview(X, seed=0))
    coords = job.result(timeout=600)
    assert done.wait(10) and job.done and job.error is None
    np.testing.assert_array_equal(results[0], coords)
    np.testing.assert_array_equal(job.coords, coords)
    np.testing.assert_array_equal(coords, umap(X, seed=0, cache_dir=tmp_path, progress=False))
    fractions = [f for f, _ in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and job.progress[0] == 1.0
    assert any("epoch" in m for _, m in events) and any("kNN" in m for _, m in events)


def test_job_errors_are_delivered_not_lost(X, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise MemoryError("simulated")

    monkeypatch.setattr(project, "_fit_umap", broken)
    errors = []
    job = ProjectionJob(X, cache_dir=tmp_path, on_error=errors.append)
    with pytest.raises(MemoryError, match="simulated"):
        job.result(timeout=60)
    assert job.done and isinstance(job.error, MemoryError) and errors == [job.error]
    np.testing.assert_array_equal(job.coords, job.preview)  # the map stays usable

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet = ProjectionJob(X, cache_dir=tmp_path)  # no on_error: warn instead
        quiet.wait(60)
        deadline = time.monotonic() + 10
        while not caught and time.monotonic() < deadline:
            time.sleep(0.01)
    assert any("simulated" in str(w.message) for w in caught)


def test_job_cancel_stops_the_fit(X, tmp_path, monkeypatch):
    steps = []

    def slow(X, seed, params, n_jobs, report, preview_coords=None):
        for i in range(1000):
            report(i / 1000, "working")
            steps.append(i)
            time.sleep(0.01)
        return preview_coords

    monkeypatch.setattr(project, "_fit_umap", slow)
    job = ProjectionJob(X, cache_dir=tmp_path)
    job.cancel()
    assert job.wait(30)
    assert isinstance(job.error, RuntimeError) and "cancelled" in str(job.error)
    assert len(steps) < 1000 and not list(tmp_path.glob("umap-*.npy"))


# --------------------------------------------------------------------------- files


def test_project_file_round_trip(cached, X, tmp_path):
    folder, coords = cached
    names = np.array([f"img{i}.png" for i in range(len(X))])
    src = tmp_path / "emb.npz"
    np.savez(src, features=X, names=names, encoder_id=np.asarray("test"))

    out = project_file(src, tmp_path / "map.npz", cache_dir=folder, progress=False)
    np.testing.assert_array_equal(out, coords)
    with np.load(tmp_path / "map.npz") as z:
        assert set(z.files) == {"coords", "names", "encoder_id", "method", "seed"}
        np.testing.assert_array_equal(z["coords"], coords)
        np.testing.assert_array_equal(z["names"], names)
        assert str(z["method"]) == "umap"

    np.save(tmp_path / "feat.npy", X)
    project_file(tmp_path / "feat.npy", tmp_path / "prev.npy", method="preview")
    np.testing.assert_array_equal(np.load(tmp_path / "prev.npy"), preview(X))


def test_project_file_errors_name_the_fix(tmp_path, X):
    np.savez(tmp_path / "wrong.npz", embeddings=X)
    with pytest.raises(ValueError, match="features_key"):
        project_file(tmp_path / "wrong.npz", tmp_path / "out.npy")
    with pytest.raises(ValueError, match=r"\.npy or \.npz"):
        project_file(tmp_path / "wrong.npz", tmp_path / "out.csv")
    with pytest.raises(FileNotFoundError):
        project_file(tmp_path / "missing.npz", tmp_path / "out.npy")
    with pytest.raises(ValueError, match="method"):
        project_file(tmp_path / "wrong.npz", tmp_path / "out.npy", method="tsne")
    assert not (tmp_path / "out.npy").exists()
