"""TypiClust (alwidget.strategies.typiclust): clusters, the K ladder, typicality, the outlier floor."""
import numpy as np
import pytest
from geometry_data import brute_dist
from strategy_data import check_batch, digits_sample, some_labels

from alwidget import strategies as S
from alwidget.geometry import Geometry
from alwidget.strategies.typiclust import K_LADDER, ladder_up


@pytest.fixture(scope="module")
def digits():
    return digits_sample()


def test_typiclust_picks_the_most_typical_point_of_each_cluster():
    rng = np.random.default_rng(4)
    centres = rng.standard_normal((6, 5)) * 4
    sizes = [60, 50, 40, 30, 20, 12]
    X = np.vstack([c + rng.standard_normal((s, 5)) for c, s in zip(centres, sizes)]).astype(np.float32)
    labels = np.full(len(X), -1)
    idx, info = S.select("typiclust", X, labels, 6, seed=0, return_info=True)
    assert info["n_clusters"] == 6  # K = L + B = 6, exactly on the ladder
    geo = Geometry.of(X)
    assign = geo.kmeans(6, 0)[0]
    clusters = [np.flatnonzero(assign == c) for c in range(6)]
    by_size = sorted(range(6), key=lambda c: -clusters[c].size)
    for pick, c in zip(idx, by_size):  # no labels: largest cluster first
        members = clusters[c]
        assert pick in members
        k = min(20, members.size // 2)
        D = brute_dist(geo.X[members])
        np.fill_diagonal(D, np.inf)
        typ = 1.0 / np.sort(D, 1)[:, :k].mean(1)
        assert typ[list(members).index(pick)] == pytest.approx(typ.max(), rel=1e-5)


def test_typiclust_clusters_reduced_dims_deterministically(digits, monkeypatch):
    from alwidget.strategies import typiclust

    X, y = digits
    labels = some_labels(y, 2)
    small = S.select("typiclust", X, labels, 10, seed=0, kmeans_dims=16, return_info=True)
    assert "PCA" not in small[1]["detail"]  # N K D under KMEANS_FULL_WORK: the full features
    monkeypatch.setattr(typiclust, "KMEANS_FULL_WORK", 0)
    idx, info = S.select("typiclust", X, labels, 10, seed=0, kmeans_dims=16, return_info=True)
    assert "on 16 PCA dims" in info["detail"]
    check_batch(idx, labels, 10)
    Geometry.clear_cache()  # a fresh cache (the same pure function of features, labels and seed)
    np.testing.assert_array_equal(S.select("typiclust", X.copy(), labels, 10, seed=0, kmeans_dims=16), idx)
    # digits has 64 features, under the default KMEANS_DIMS: the full features, as kmeans_dims=None
    full = S.select("typiclust", X, labels, 10, seed=0, kmeans_dims=None, return_info=True)
    assert "PCA" not in full[1]["detail"]
    np.testing.assert_array_equal(S.select("typiclust", X, labels, 10, seed=0), full[0])
    np.testing.assert_array_equal(S.select("typiclust", X, labels, 10, seed=0, kmeans_dims=64), full[0])


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "16"])
def test_typiclust_rejects_bad_kmeans_dims(digits, bad):
    X, y = digits
    with pytest.raises(ValueError, match="kmeans_dims"):
        S.select("typiclust", X, some_labels(y, 1), 5, kmeans_dims=bad)


def test_typiclust_visits_clusters_with_fewest_labels_first():
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((4, 5)) * 6
    X = np.vstack([c + rng.standard_normal((30, 5)) for c in centres]).astype(np.float32)
    labels = np.full(len(X), -1)
    # K = ladder(L + B) = 4 with 2 labels and B = 2: label twice in the cluster of row 0.
    assign = Geometry.of(X).kmeans(4, 0)[0]
    full = np.flatnonzero(assign == assign[0])[:2]
    labels[full] = 0
    idx = S.select("typiclust", X, labels, 2, seed=0)
    assert not np.isin(assign[idx], assign[0]).any()  # the labelled cluster comes last
    assert np.unique(assign[idx]).size == 2


def test_typiclust_keeps_small_clusters_when_clusters_are_small_on_average(digits):
    from alwidget.strategies.typiclust import OUTLIER_SHARE, min_size_floor

    X, _ = digits
    n = len(X)
    assert min_size_floor(5, 100_000, 500) == 5  # big pools: the reference code's floor
    K = len(X) // 6  # N / K = 6: a floor of 5 would skip most clusters
    floor = min_size_floor(5, n, K)
    assert floor == pytest.approx(OUTLIER_SHARE * n / K) and floor < 2
    labels = np.full(n, -1)
    idx = S.select("typiclust", X, labels, K, seed=0, ladder=False)
    check_batch(idx, labels, K)
    assign = Geometry.of(X).kmeans(K, 0)[0]
    sizes, held = np.bincount(assign, minlength=K), np.bincount(assign[idx], minlength=K)
    kept = sizes > floor
    assert (held[kept] >= 1).all()  # one pick in every cluster above the floor,
    small = (sizes >= 2) & (sizes <= 5)
    assert small.sum() > K // 4 and (held[small] >= 1).all()  # those of 2-5 points included;
    assert (~kept).sum() > 0 and (held[~kept] == 0).all()  # the singletons are skipped


def test_typiclust_ladder_rounds_up_by_at_most_a_quarter():
    assert K_LADDER == sorted(K_LADDER)
    for k in range(1, 2000):
        v = ladder_up(k)
        assert k <= v <= max(8, int(np.ceil(k * 1.25)))
    X = np.random.default_rng(0).standard_normal((300, 4)).astype(np.float32)
    labels = np.full(300, -1)
    labels[:41] = 0
    _, info = S.select("typiclust", X, labels, 10, return_info=True)
    assert info["n_clusters_wanted"] == 51 and info["n_clusters"] == 56
    _, info = S.select("typiclust", X, labels, 10, return_info=True, ladder=False)
    assert info["n_clusters"] == 51
