"""What a Session's seed controls beyond the probe and each round: the clusterings kept for the
whole session (``geometry_seed``), as in the benchmarked runs (alwidget.simulate)."""
import numpy as np

from alwidget import Session


def _partition(assign):
    """A clustering as a set of row sets (cluster ids do not matter)."""
    return {frozenset(np.flatnonzero(assign == c).tolist()) for c in np.unique(assign)}


def test_the_session_seed_seeds_the_clusterings_and_rounds_reuse_them(digits, monkeypatch):
    """Session(seed=s) clusters with geometry_seed=s, as alwidget.simulate does: another seed, another
    TypiClust clustering and batch; the same seed, the same ones; and a later round whose K is on the
    same ladder step finds the clustering in the cache instead of running k-means again."""
    from alwidget import geometry

    X, y = digits
    real, runs = geometry.kmeans, []
    monkeypatch.setattr(geometry, "kmeans", lambda *a, **kw: runs.append((a[1], kw["seed"])) or real(*a, **kw))
    geometry.Geometry.clear_cache()
    picks, parts = {}, {}
    for seed in (3, 4, 3):
        with Session(X, strategy="typiclust", device="cpu", batch_size=10, seed=seed) as s:
            assert s.wait(timeout=60)
            picks.setdefault(seed, []).append(tuple(s.next_batch().tolist()))
            parts.setdefault(seed, []).append(_partition(geometry.Geometry.of(X).kmeans(10, seed)[0]))
        geometry.Geometry.clear_cache()  # the third session clusters again from scratch
    assert runs == [(10, 3), (10, 4), (10, 3)] and picks[3][0] == picks[3][1] and parts[3][0] == parts[3][1]
    assert picks[3][0] != picks[4][0] and parts[3][0] != parts[4][0]
    runs.clear()
    with Session(X, strategy="typiclust", device="cpu", batch_size=10, seed=3) as s:
        first = s.next_batch()
        s.label(int(first[0]), str(y[first[0]]))  # 1 + 10 -> K = 12 (typiclust.K_LADDER)
        assert s.wait(timeout=60)
        s.label(int(first[1]), str(y[first[1]]))  # 2 + 10 -> K = 12 again: a cache hit
        assert s.wait(timeout=60) and s.status["strategy_info"]["n_clusters"] == 12
        assert len(s.next_batch(12)) == 12  # selected on the spot (k > batch size): K = 14
    assert runs == [(10, 3), (12, 3), (14, 3)]


def test_the_session_seed_draws_the_cold_start_subsample_of_huge_pools(digits, monkeypatch):
    """On huge pools (here: from 500 rows) the cold start's fixed subsample, TypiClust's k-means and
    auto's neighbour ratio on it are the Session seed's, drawn once and reused by the next round."""
    from alwidget import geometry
    from alwidget.strategies import _subsample

    X, y = digits
    monkeypatch.setattr(_subsample, "SUBSAMPLE_MIN", 500)
    monkeypatch.setattr(_subsample, "SUBSAMPLE_SIZE", 300)
    geometry.Geometry.clear_cache()
    for strategy in ("typiclust", "auto"):
        with Session(X, strategy=strategy, device="cpu", batch_size=5, seed=3) as s:
            first = s.next_batch()
            s.label(int(first[0]), str(y[first[0]]))
            assert s.wait(timeout=60)
    memo = geometry.Geometry.of(X).scratch("cold_subsample")
    assert list(memo) == [(300, 3)]  # one subsample for both sessions and all their rounds
    sub = memo[(300, 3)][1]
    assert {key[1] for key in sub._kmeans} == {3} and list(sub.scratch("auto_neighbour_ratio")) == [3]
