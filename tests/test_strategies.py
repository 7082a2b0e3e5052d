"""Strategies: the select() contract for every name, and brute-force references on small inputs."""
import numpy as np
import pytest
from embed_data import embed_fashion_test
from sklearn.datasets import load_digits

from alwidget import strategies as S
from alwidget.cover_geometry import ball_graph
from alwidget.geometry import Geometry, kmeans
from alwidget.strategies import auto as auto_mod
from alwidget.strategies.badge import gradient_factors, gradient_sq_dist, gradient_sq_norms, kmeanspp_factorised
from alwidget.strategies.typiclust import K_LADDER, ladder_up
from alwidget.strategies.uncertainty import entropy_score, least_confidence_score, margin_score

ALL = S.available()
MODEL = ["margin", "entropy", "least_confidence", "power_margin", "dropquery", "badge", "bald", "power_bald",
         "batchbald"]


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    keep = np.sort(rng.choice(len(y), 600, replace=False))
    X = X[keep].astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True), y[keep].astype(np.int64)


def some_labels(y, per_class, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.full(len(y), -1, np.int64)
    for c in np.unique(y):
        idx = rng.choice(np.flatnonzero(y == c), per_class, replace=False)
        labels[idx] = c
    return labels


def check_batch(idx, labels, k):
    assert isinstance(idx, np.ndarray) and idx.dtype == np.int64
    assert idx.shape == (min(k, int((labels < 0).sum())),)
    assert np.unique(idx).size == idx.size
    assert np.all(labels[idx] == -1)


def brute_dist(X):
    X = np.asarray(X, dtype=np.float64)
    return np.sqrt(np.maximum(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1), 0))


def test_available_lists_the_required_strategies():
    need = {"random", "typiclust", "probcover", "dropquery", "margin", "entropy", "least_confidence",
            "coreset", "badge", "power_margin", "auto"}
    assert need <= set(ALL)
    assert set(S.describe()) == set(ALL) and all(S.describe().values())


@pytest.mark.parametrize("name", ALL)
def test_contract_exact_k_unique_unlabelled_deterministic(digits, name):
    X, y = digits
    labels = some_labels(y, 2)
    a, info = S.select(name, X, labels, 12, seed=1, return_info=True)
    check_batch(a, labels, 12)
    assert info["strategy"] in ALL and isinstance(info["reason"], str) and info["reason"]
    assert isinstance(info["detail"], str) and info["detail"] and info["round_seed"] == S.round_seed(1, labels)
    b = S.select(name, X, labels, 12, seed=1)
    np.testing.assert_array_equal(a, b)
    if name == "auto":
        assert info["strategy"] in ("typiclust", "probcover", "dropquery", "margin")
    else:  # batchbald runs PowerBALD for batches over 10 and says so
        assert info.get("requested", info["strategy"]) == name


@pytest.mark.parametrize("name", ALL)
def test_cold_start_no_labels(digits, name):
    X, _ = digits
    labels = np.full(len(X), -1)
    idx, info = S.select(name, X, labels, 10, seed=0, return_info=True)
    check_batch(idx, labels, 10)
    if name in ("random", "typiclust", "probcover", "coreset"):
        assert info["strategy"] == name  # these need no model: no fallback
    elif name == "auto":  # its own cold start, chosen from the pool's shape (digits: tight groups)
        assert info["strategy"] == "probcover"
        assert "look-alikes" in info["reason"] and "two classes" in info["reason"]
    else:
        assert info["strategy"] == "typiclust"
        assert "typical" in info["reason"] and "two classes" in info["reason"]  # what it does, and until when
        assert "cold start" in info["detail"]


@pytest.mark.parametrize("name", MODEL)
def test_model_strategies_with_one_class_fall_back_and_say_so(digits, name):
    X, y = digits
    labels = np.full(len(y), -1)
    labels[np.flatnonzero(y == 3)[:5]] = 3
    idx, info = S.select(name, X, labels, 8, return_info=True, cold_start="probcover")
    check_batch(idx, labels, 8)
    assert info["strategy"] == "probcover" and info["requested"] == name
    assert "two classes" in info["reason"] and "(1 so far)" in info["reason"]
    assert "1 labelled so far" in info["detail"] and "cold start" in info["detail"]


@pytest.mark.parametrize("name", ALL)
def test_k_larger_than_the_unlabelled_pool_returns_all_remaining(digits, name):
    X, y = digits
    labels = y.copy()
    free = np.array([5, 77, 400])
    labels[free] = -1
    idx, info = S.select(name, X, labels, 50, return_info=True)
    assert sorted(idx.tolist()) == free.tolist()
    assert "only 3 images left" in info["reason"] and "only 3 candidates left" in info["detail"]
    assert S.select(name, X, y, 5).shape == (0,)  # nothing left at all


@pytest.mark.parametrize("name", ALL)
def test_duplicates_and_tiny_clusters_survive(name):
    rng = np.random.default_rng(1)
    X = np.vstack([np.tile(rng.standard_normal((1, 6)), (40, 1)),  # 40 identical rows
                   rng.standard_normal((3, 6)) + 20,  # a tiny far cluster
                   rng.standard_normal((17, 6))]).astype(np.float32)
    labels = np.full(len(X), -1)
    labels[[0, 45]] = [0, 1]
    for k in (1, 7, 30, 58):
        idx = S.select(name, X, labels, k, seed=2)
        check_batch(idx, labels, k)


@pytest.mark.parametrize("name", ["random", "typiclust", "probcover", "power_margin", "badge"])
def test_different_seeds_can_differ(digits, name):
    X, y = digits
    labels = some_labels(y, 2)
    picks = {tuple(S.select(name, X, labels, 10, seed=s, geometry_seed=s)) for s in range(4)}
    assert len(picks) > 1


def cache_sizes(geo):
    return (len(geo._kmeans), *(len(v) for v in geo._scratch.values()))


@pytest.mark.parametrize("name", ["typiclust", "probcover"])
def test_per_call_seed_reuses_the_cached_geometry(digits, name):
    X, y = digits
    labels = some_labels(y, 2)
    geo = Geometry.of(X)
    before = len(geo._kmeans)
    S.select(name, X, labels, 10, seed=0)
    after_one = cache_sizes(geo)
    for s in range(1, 5):  # another seed every call: the geometry is still reused
        check_batch(S.select(name, X, labels, 10, seed=s), labels, 10)
    assert cache_sizes(geo) == after_one
    assert after_one[0] <= before + 1


# --------------------------------------------------------------------------- seeds per round

def test_round_seed_depends_on_seed_indices_and_classes():
    labels = np.full(50, -1)
    labels[[3, 7]] = [0, 1]
    s = S.round_seed(5, labels)
    assert isinstance(s, int) and 0 <= s < 2**31
    assert s == S.round_seed(5, labels.copy()) == S.round_seed(np.int64(5), labels.astype(np.int32))
    other = labels.copy()
    other[9] = 0  # one more label
    swapped = labels.copy()
    swapped[[3, 7]] = [1, 0]  # same rows, other classes
    assert len({s, S.round_seed(6, labels), S.round_seed(5, other), S.round_seed(5, swapped)}) == 4


def test_random_does_not_replay_its_positions_round_after_round(digits):
    # The old bug: one seed for every round drew the same positions from a shorter list.
    X, y = digits
    labels = np.full(len(y), -1)
    positions = []
    for _ in range(4):
        cand = np.flatnonzero(labels < 0)
        idx = S.select("random", X, labels, 10, seed=0)
        positions.append(set(np.searchsorted(cand, idx).tolist()))
        labels[idx] = y[idx]
    assert all(len(a & b) < 5 for a, b in zip(positions, positions[1:]))


# --------------------------------------------------------------------------- exclude

@pytest.mark.parametrize("name", ALL)
def test_exclude_is_honoured_by_every_strategy(digits, name):
    X, y = digits
    labels = some_labels(y, 2)
    unl = np.flatnonzero(labels < 0)
    excluded = np.random.default_rng(3).choice(unl, unl.size // 2, replace=False)
    for ex in (excluded, np.isin(np.arange(len(y)), excluded)):  # indices or a mask
        idx, info = S.select(name, X, labels, 12, seed=4, exclude=ex, return_info=True)
        check_batch(idx, labels, 12)
        assert not np.isin(idx, excluded).any()
    # Only 3 candidates left: exactly those come back.
    rest = unl[~np.isin(unl, excluded)]
    idx = S.select(name, X, labels, 12, seed=4, exclude=np.setdiff1d(unl, rest[:3]))
    assert sorted(idx.tolist()) == sorted(rest[:3].tolist())
    # Labelled rows in exclude are ignored; excluding everything leaves nothing to propose.
    check_batch(S.select(name, X, labels, 5, exclude=np.flatnonzero(labels >= 0)), labels, 5)
    assert S.select(name, X, labels, 5, exclude=unl).shape == (0,)


def test_excluded_items_still_count_for_the_geometry(digits):
    X, y = digits
    labels = np.full(len(y), -1)
    base, info = S.select("typiclust", X, labels, 10, return_info=True)
    # Excluding the picks keeps the clustering (same K, same clusters): the next most typical
    # members of the same clusters come back instead.
    idx, info2 = S.select("typiclust", X, labels, 10, exclude=base, return_info=True)
    assign = Geometry.of(X).kmeans(info["n_clusters"], 0)[0]
    assert info2["n_clusters"] == info["n_clusters"]
    assert sorted(assign[idx].tolist()) == sorted(assign[base].tolist())


@pytest.mark.parametrize("bad, exc, words", [
    (np.zeros(7, bool), ValueError, "mask must have shape"),
    (np.array([1.5]), TypeError, "indices or an"),
    (np.array([10**6]), ValueError, "outside"),
])
def test_bad_exclude_raises_clear_errors(digits, bad, exc, words):
    X, y = digits
    with pytest.raises(exc, match=words):
        S.select("random", X, some_labels(y, 1), 3, exclude=bad)


# --------------------------------------------------------------------------- errors

@pytest.mark.parametrize("call, exc, words", [
    (lambda X, L: S.select("nope", X, L, 3), ValueError, "unknown strategy 'nope'.*typiclust"),
    (lambda X, L: S.select("random", X, L, 0), ValueError, "k must be a positive integer"),
    (lambda X, L: S.select("random", X, L, -2), ValueError, "k must be a positive integer"),
    (lambda X, L: S.select("random", X, L, 2.5), TypeError, "k must be a positive integer"),
    (lambda X, L: S.select("random", X[:, 0], L, 3), ValueError, r"shape \(n_samples, n_features\)"),
    (lambda X, L: S.select("random", np.where(np.eye(len(X), X.shape[1]) > 0, np.nan, X), L, 3),
     ValueError, "NaN"),
    (lambda X, L: S.select("random", X, L[:-1], 3), ValueError, "labels must have shape"),
    (lambda X, L: S.select("random", X, L - 5, 3), ValueError, ">= -1"),
    (lambda X, L: S.select("typiclust", X, L, 3, purity=0.9), TypeError, "unknown parameter.*purity"),
    (lambda X, L: S.select("auto", X, L, 3, cold_start="margin"), ValueError, "cold_start"),
    (lambda X, L: S.select("margin", X, L, 3, proba=np.ones((4, 2))), ValueError, "proba must be"),
    (lambda X, L: S.select("probcover", X, L, 3, delta=-1.0), ValueError, "delta must be"),
    (lambda X, L: S.select("random", X, L, 3, backend="gpu!"), ValueError, "backend must be"),
    (lambda X, L: S.select("random", X, L, 3, seed=-1), ValueError, "seed must be an integer >= 0"),
    (lambda X, L: S.select("random", X, L, 3, geometry_seed=1.5), TypeError, "geometry_seed must be"),
])
def test_bad_input_raises_clear_errors(digits, call, exc, words):
    X, y = digits
    with pytest.raises(exc, match=words):
        call(X, some_labels(y, 1))


def test_probe_fitted_on_other_features_is_refused(digits):
    from alwidget.probe import LinearProbe

    X, y = digits
    labels = some_labels(y, 2)
    probe = LinearProbe(seed=0).fit(X[:100], labels[:100])
    with pytest.raises(ValueError, match="probe"):
        S.select("margin", X, labels, 3, probe=probe)


# --------------------------------------------------------------------------- TypiClust

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


# --------------------------------------------------------------------------- ProbCover

def exhaustive_greedy_ok(indptr, indices, labels, picks):
    """Every pick must cover the maximum number of uncovered points at its step (brute force)."""
    n = labels.size
    A = np.zeros((n, n), bool)
    A[np.repeat(np.arange(n), np.diff(indptr)), indices] = True
    covered = A[labels >= 0].any(0)
    avail = labels < 0
    for p in picks:
        gains = (A & ~covered[None, :]).sum(1)
        assert avail[p] and gains[p] == gains[avail].max()
        covered |= A[p]
        avail[p] = False
    return covered


@pytest.mark.parametrize("rule", [{}, {"purity": 0.95, "n_classes": 5}])
@pytest.mark.parametrize("with_labels", [False, True])
def test_probcover_greedy_equals_exhaustive_max_coverage(with_labels, rule):
    rng = np.random.default_rng(6)
    X = np.vstack([c + rng.standard_normal((40, 4)) for c in rng.standard_normal((5, 4)) * 3]).astype(np.float32)
    labels = np.full(len(X), -1)
    if with_labels:
        labels[[3, 50, 120]] = [0, 1, 2]
    idx, info = S.select("probcover", X, labels, 25, seed=3, return_info=True, **rule)
    check_batch(idx, labels, 25)
    indptr, indices = ball_graph(Geometry.of(X), info["delta"])
    covered = exhaustive_greedy_ok(indptr, indices, labels, idx)
    assert info["covered_after"] == pytest.approx(covered.mean())
    if rule:
        assert info["delta_rule"] == "purity" and info["purity"] >= 0.95 and info["n_pseudo_classes"] == 5
    else:
        # b = L + B on the ladder, at most sample / 8 (here the 200-row pool is the sample)
        assert info["delta_rule"] == "budget" and info["budget"] == min(ladder_up(int((labels >= 0).sum()) + 25), 25)


def brute_greedy_coverage(X, delta, b):
    A = brute_dist(X) < delta
    covered = np.zeros(len(X), bool)
    for _ in range(b):
        gains = (A & ~covered).sum(1)
        if gains.max() == 0:
            break
        covered |= A[int(gains.argmax())]
    return covered.mean()


def test_budget_delta_is_the_smallest_radius_reaching_the_coverage(digits):
    from alwidget.strategies import _cover

    X, _ = digits
    geo = Geometry.of(X[:400])
    for b, target in ((10, 0.5), (30, 0.6)):
        d = _cover.budget_delta(geo, b, target)["delta"]
        assert brute_greedy_coverage(geo.X, d, b) >= target
        assert brute_greedy_coverage(geo.X, d * 0.97, b) < target
    # More labels, smaller balls: the rule shrinks delta as the budget grows.
    ds = [_cover.budget_delta(geo, b, 0.5)["delta"] for b in (5, 10, 20, 40)]
    assert ds == sorted(ds, reverse=True)


def dense_budget_delta(geo, b, target):
    """The bisection of _cover.budget_delta with the dense greedy at every step (the reference)."""
    from alwidget.strategies import _cover

    rows, d2 = _cover.sample_sq_dists(geo)
    b = max(1, min(b, rows.size // 8))
    lo, hi = 0.0, float(np.sqrt(d2.max())) * 1.001 + 1e-6
    for _ in range(_cover._BISECT_STEPS):
        mid = 0.5 * (lo + hi)
        if _cover.greedy_coverage(d2 < np.float32(mid * mid), b) >= target:
            hi = mid
        else:
            lo = mid
    return hi, float((d2 < np.float32(hi * hi)).mean())


@pytest.mark.parametrize("budgets,kept", [((5, 8, 12, 20, 40, 56), 256), ((56, 20, 5, 40, 8, 12), 256),
                                          ((5, 8, 12, 20, 40, 56), 1)])
def test_budget_delta_equals_the_dense_bisection_whatever_the_order_of_budgets(digits, monkeypatch, budgets, kept):
    # Sorted rows, resumed greedy states (or restarted ones, when dropped) and the per-radius memo
    # give exactly the dense result, whether budgets grow (a session) or come in any order.
    from alwidget.strategies import _cover

    monkeypatch.setattr(_cover, "_RUNS_KEPT", kept)
    X, _ = digits
    geo = Geometry.of(X[:700])
    for target in (0.5, 0.8):
        for b in budgets:
            got = _cover.budget_delta(geo, b, target)
            assert (got["delta"], got["pair_fraction"]) == dense_budget_delta(geo, b, target)


def test_counts_below_is_a_searchsorted_per_row():
    from alwidget.strategies._cover import _counts_below

    rng = np.random.default_rng(0)
    for m in (1, 2, 3, 8, 100):
        srt = np.sort(rng.random((20, m)).astype(np.float32), 1)
        srt[0] = 0.5  # ties
        for t in (0.0, 0.3, 0.5, 2.0):
            want = [np.searchsorted(r, np.float32(t), "left") for r in srt]
            np.testing.assert_array_equal(_counts_below(srt, np.float32(t)), want)
            # Within the counts at a smaller and a larger radius (the bisection's brackets).
            for t_lo, t_hi in ((0.0, t), (t, t), (t * 0.5, t * 2 + 0.1)):
                lo = _counts_below(srt, np.float32(t_lo))
                hi = _counts_below(srt, np.float32(t_hi))
                np.testing.assert_array_equal(_counts_below(srt, np.float32(t), lo, hi), want)


def test_probcover_coverage_target_grows_with_the_budget_from_20_labels(digits):
    from alwidget.strategies import probcover as P

    # 0.5 up to 20 labels, then the uncovered share shrinks as (20 / b) ** growth, at most 95 %.
    assert [P.coverage_target(b, 0.5, P.GROWTH) for b in (1, 10, 20)] == [0.5] * 3
    grown = [P.coverage_target(b, 0.5, P.GROWTH) for b in (40, 56, 112, 224, 10**6)]
    assert grown == sorted(grown) and grown[-1] == P.MAX_TARGET
    assert grown[0] == pytest.approx(1 - 0.5 * 0.5 ** P.GROWTH)
    assert P.coverage_target(224, 0.5, 0.0) == 0.5  # growth 0: the constant target
    with pytest.raises(ValueError, match="growth"):
        P.coverage_target(56, 0.5, -1.0)
    X, y = digits
    labels = some_labels(y, 5)  # 50 labels: b = L + B = 60 -> 64 on the ladder
    a, info = S.select("probcover", X, labels, 10, seed=2, return_info=True)
    b, again = S.select("probcover", X, labels, 10, seed=2, return_info=True)
    np.testing.assert_array_equal(a, b)  # same labels, same target, same batch
    assert info["coverage_target"] == pytest.approx(P.coverage_target(64, 0.5, P.GROWTH))
    assert info["coverage_target"] > 0.75
    _, const = S.select("probcover", X, labels, 10, seed=2, return_info=True, growth=0.0)
    assert const["coverage_target"] == 0.5
    # The grown target keeps larger balls, which cover more of the pool after the batch.
    assert info["delta"] > const["delta"] and info["covered_after"] > const["covered_after"] + 0.15
    assert f"cover {info['coverage_target']:.0%}" in info["detail"]
    _, first = S.select("probcover", X, np.full(len(y), -1), 10, seed=2, return_info=True)
    assert first["coverage_target"] == 0.5  # the first rounds are unchanged


def test_probcover_on_a_universe_sample_of_a_large_pool(digits, monkeypatch):
    from alwidget.strategies import _cover

    monkeypatch.setattr(_cover, "COVER_UNIVERSE", 300)
    X, y = digits
    X = X + 1e-4  # a fresh feature set, so the cached graphs of other tests do not apply
    labels = some_labels(y, 1)
    idx, info = S.select("probcover", X, labels, 10, seed=1, return_info=True)
    check_batch(idx, labels, 10)
    assert info["universe"] == 300 and "300-row sample" in info["detail"]
    geo = Geometry.of(X)
    g = _cover.cover_graph(geo, info["delta"], 300, 0)
    assert np.isin(idx, g.rows).all()
    # Labelled rows outside the universe still cover the universe rows near them.
    Xu = geo.X[g.rows]
    A = brute_dist(Xu) < info["delta"]
    near = (np.sqrt(((geo.X[labels >= 0][:, None] - Xu[None]) ** 2).sum(-1)) < info["delta"]).any(0)
    assert info["covered_before"] == pytest.approx(near.mean())
    covered, avail = near.copy(), labels[g.rows] < 0
    for p in g.local(idx):  # each pick is a best greedy step on the universe
        gains = (A & ~covered[None, :]).sum(1)
        assert avail[p] and gains[p] == gains[avail].max()
        covered |= A[p]
        avail[p] = False


@pytest.mark.parametrize("n_labels", [3, 40, 400])  # few, some, most rows covered
def test_covered_state_is_the_brute_force_coverage_fresh_or_extended(digits, n_labels):
    # Gains counted from the covered side or (when fewer stay uncovered) afresh from the uncovered
    # side; labels outside the universe count too; an extended state equals a fresh one.
    from alwidget.strategies import _cover

    X = digits[0] + 2e-4  # a fresh feature set
    geo = Geometry.of(X)
    g = _cover.cover_graph(geo, 0.5, 600, 0)
    A = brute_dist(geo.X[g.rows]) < 0.5
    lab = np.random.default_rng(n_labels).choice(len(X), n_labels, replace=False)
    for part in (lab[: n_labels // 3], lab):
        covered, gain = _cover.covered_state(geo, g, part)
        near = (np.sqrt(((geo.X[part][:, None] - geo.X[g.rows][None]) ** 2).sum(-1)) < 0.5).any(0)
        np.testing.assert_array_equal(covered, near)
        np.testing.assert_array_equal(gain, (A & ~near[None, :]).sum(1))
    geo.scratch("probcover_state").clear()
    np.testing.assert_array_equal(_cover.covered_state(geo, g, lab)[1], gain)


def test_probcover_repeated_calls_reuse_the_graph_and_stay_greedy(digits):
    X, y = digits
    labels = np.full(len(y), -1)
    geo = Geometry.of(X)
    for memo in ("probcover_pairs", "probcover_graph"):  # other tests searched this pool before
        geo.scratch(memo).clear()
    deltas = []
    for _ in range(3):  # the session's loop: label the first pick, ask again
        idx, info = S.select("probcover", X, labels, 10, return_info=True)
        exhaustive_greedy_ok(*ball_graph(geo, info["delta"]), labels, idx)
        deltas.append(info["delta"])
        labels[idx[0]] = y[idx[0]]
    assert len(set(deltas)) == 2  # L + B = 10, 11, 12 -> ladder steps 10, 12, 12
    assert len(geo.scratch("probcover_graph")) == 2
    # One range search, REACH beyond the widest delta; the smaller one filtered its pairs (checked
    # above against a fresh ball graph).
    from alwidget.strategies import probcover as P

    (radius, *_), = geo.scratch("probcover_pairs").values()
    assert radius == pytest.approx(P.REACH * max(deltas))


def test_probcover_growing_delta_filters_one_wider_search(digits):
    # A grown target widens delta; the first search went REACH further, so a wider delta within
    # that reach filters the same pairs, and each graph is still the exact ball graph.
    from alwidget.strategies import probcover as P

    X, y = digits
    geo = Geometry.of(X[:900])
    for memo in ("probcover_pairs", "probcover_graph"):
        geo.scratch(memo).clear()
    labels = some_labels(y[:900], 2)  # b = 30: past GROW_FROM, the target depends on growth
    deltas, radii = [], []
    for growth in (0.25, 0.5, 0.75):
        idx, info = S.select("probcover", X[:900], labels, 10, return_info=True, growth=growth)
        exhaustive_greedy_ok(*ball_graph(geo, info["delta"]), labels, idx)
        (radius, *_), = geo.scratch("probcover_pairs").values()
        deltas.append(info["delta"])
        radii.append(radius)
    assert deltas == sorted(deltas) and deltas[0] < deltas[-1] < P.REACH * deltas[0]
    assert radii == [pytest.approx(P.REACH * deltas[0])] * 3  # one search for the three calls


def test_probcover_purity_rule_pseudo_classes_and_a_given_delta(digits):
    X, y = digits
    labels = some_labels(y, 1)
    _, info = S.select("probcover", X, labels, 3, return_info=True, purity=0.95)
    assert info["n_pseudo_classes"] == 10 and info["delta_rule"] == "purity"
    _, info = S.select("probcover", X, labels, 3, return_info=True, delta=0.5)
    assert info["delta"] == 0.5 and "given" in info["detail"]
    with pytest.raises(ValueError, match="coverage"):
        S.select("probcover", X, labels, 3, coverage=1.5)


def test_torch_backend_gives_valid_batches_and_the_same_delta(digits):
    X, y = digits
    labels = some_labels(y, 1)
    fa, i1 = S.select("probcover", X, labels, 10, return_info=True, backend="faiss", purity=0.95)
    to, i2 = S.select("probcover", X, labels, 10, return_info=True, backend="torch", purity=0.95)
    check_batch(to, labels, 10)
    # Pseudo-labels come from each backend's own k-means, so deltas agree only roughly.
    assert i2["delta"] == pytest.approx(i1["delta"], rel=0.25) and i2["purity"] >= 0.95
    for name in ("typiclust", "coreset", "dropquery", "probcover"):
        check_batch(S.select(name, X, labels, 10, backend="torch"), labels, 10)


# --------------------------------------------------------------------------- Coreset

def naive_k_centre(X, labels, k, first=None):
    D = brute_dist(X)
    centres = list(np.flatnonzero(labels >= 0)) or [first]
    picks = [] if labels.max() >= 0 else [first]
    mind = D[:, centres].min(1)
    avail = labels < 0
    avail[picks] = False
    while len(picks) < k:
        cand = np.flatnonzero(avail)
        p = int(cand[np.argmax(mind[cand])])
        picks.append(p)
        avail[p] = False
        mind = np.minimum(mind, D[:, p])
    return np.array(picks)


def test_coreset_equals_naive_k_centre():
    X = np.random.default_rng(7).standard_normal((150, 5)).astype(np.float32)
    labels = np.full(150, -1)
    labels[[2, 9, 33]] = 0
    idx = S.select("coreset", X, labels, 20)
    np.testing.assert_array_equal(idx, naive_k_centre(Geometry.of(X).X, labels, 20))
    cold = S.select("coreset", X, np.full(150, -1), 20, seed=4)
    np.testing.assert_array_equal(cold, naive_k_centre(Geometry.of(X).X, np.full(150, -1), 20, first=cold[0]))


def dense_k_centre(geo, min_sq, available, k):
    """Farthest-first with every row's distance to every pick (the lazy version's reference)."""
    picks, score = [], np.where(available, min_sq, -1.0)
    for _ in range(k):
        v = int(score.argmax())
        picks.append(v)
        score[v] = -1.0
        np.minimum(score, geo.sq_dist_to([v])[:, 0], out=score, where=score >= 0)
    return np.array(picks)


@pytest.mark.parametrize("block", [1, 3, 64, 5000])
def test_lazy_k_centre_greedy_equals_the_dense_one(digits, monkeypatch, block):
    from alwidget.strategies import coreset

    monkeypatch.setattr(coreset, "REFRESH_BLOCK", block)
    X, y = digits
    X = np.vstack([X, X[:40]])  # exact duplicates: ties go to the lowest index in both
    geo = Geometry.of(X)
    rng = np.random.default_rng(1)
    lab = rng.choice(len(X), 15, replace=False)
    for _ in range(4):
        avail = np.ones(len(X), bool)
        avail[lab] = False
        ms = geo.min_sq_dist(lab)
        got = coreset.k_center_greedy(geo, ms, avail.copy(), 25)
        np.testing.assert_array_equal(got, dense_k_centre(geo, ms, avail, 25))
        lab = np.concatenate([lab, got])


# --------------------------------------------------------------------------- BADGE

def explicit_embeddings(a, x):
    b = np.hstack([x.astype(np.float64), np.ones((x.shape[0], 1))])
    return np.einsum("ic,id->icd", a, b).reshape(a.shape[0], -1)


def test_badge_factorised_distances_equal_explicit_ones():
    rng = np.random.default_rng(8)
    p = rng.dirichlet(np.ones(4), size=30)
    x = rng.standard_normal((30, 7)).astype(np.float32)
    a, xf = gradient_factors(p, x)
    np.testing.assert_allclose(a.sum(1), 0, atol=1e-12)  # p - onehot sums to zero
    g = explicit_embeddings(a, xf)
    norms = gradient_sq_norms(a, xf)
    np.testing.assert_allclose(norms, (g ** 2).sum(1), rtol=1e-5)
    for j in (0, 11, 29):
        np.testing.assert_allclose(gradient_sq_dist(a, xf, norms, j), ((g - g[j]) ** 2).sum(1),
                                   rtol=1e-4, atol=1e-6)


def test_badge_seeding_equals_kmeanspp_on_explicit_embeddings():
    rng = np.random.default_rng(9)
    p = rng.dirichlet(np.ones(3), size=40)
    x = rng.standard_normal((40, 5)).astype(np.float32)
    a, xf = gradient_factors(p, x)
    got = kmeanspp_factorised(a, xf, 8, np.random.default_rng(1))
    g = explicit_embeddings(a, xf)
    r = np.random.default_rng(1)
    picks = [int(np.argmax((g ** 2).sum(1)))]
    best = ((g - g[picks[0]]) ** 2).sum(1)
    best[picks[0]] = 0
    while len(picks) < 8:
        w = best.copy()
        w[picks] = 0
        picks.append(int(r.choice(len(g), p=w / w.sum())))
        best = np.minimum(best, ((g - g[picks[-1]]) ** 2).sum(1))
    np.testing.assert_array_equal(got, picks)


# --------------------------------------------------------------------------- uncertainty

def test_uncertainty_scores_on_known_probabilities():
    p = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.4, 0.35, 0.25], [1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(least_confidence_score(p), [0, 0.5, 0.6, 2 / 3])
    np.testing.assert_allclose(margin_score(p), [0, 1, 0.95, 1])
    np.testing.assert_allclose(entropy_score(p)[[0, 3]], [0, np.log(3)])
    assert np.isfinite(entropy_score(p)).all()


def test_ranked_strategies_take_the_top_scores(digits):
    X, y = digits
    labels = some_labels(y, 2)
    proba = np.random.default_rng(10).dirichlet(np.ones(10) * 0.3, size=len(y))
    unl = np.flatnonzero(labels < 0)
    for name, score in (("margin", margin_score), ("entropy", entropy_score),
                        ("least_confidence", least_confidence_score)):
        idx = S.select(name, X, labels, 15, proba=proba)
        s = score(proba)
        assert set(idx) == set(unl[np.argsort(-s[unl])[:15]])
    # power_margin with a huge beta is plain margin; with beta = 0 it ignores the scores.
    big = S.select("power_margin", X, labels, 15, proba=proba, beta=1e6)
    assert set(big) == set(S.select("margin", X, labels, 15, proba=proba))
    flat = {tuple(S.select("power_margin", X, labels, 15, proba=proba, beta=0.0, seed=s)) for s in range(3)}
    assert len(flat) == 3


def test_model_strategies_use_a_given_probe(digits):
    from alwidget.probe import LinearProbe

    X, y = digits
    labels = some_labels(y, 3)
    probe = LinearProbe(seed=0).fit(X, labels)
    proba = probe.predict_proba()
    a = S.select("margin", X, labels, 10, probe=probe)
    assert set(a) == set(S.select("margin", X, labels, 10, proba=proba))
    check_batch(S.select("badge", X, labels, 10, probe=probe), labels, 10)


# --------------------------------------------------------------------------- DropQuery

class FlipProbe:
    """A probe double with a fixed prediction and a chosen number of dropout flips per point."""

    def __init__(self, flips, n_classes=3):
        self.flips = np.asarray(flips)
        n = self.flips.size
        self.y = np.arange(n) % n_classes
        self.p = np.eye(n_classes)[self.y] * 0.8 + 0.2 / n_classes

    def predict_proba(self, X=None):
        return self.p

    def predict_dropout(self, X=None, n_passes=3, p=0.75, seed=0):
        out = np.tile(self.y, (n_passes, 1))
        for t in range(n_passes):
            out[t, self.flips > t] = (self.y[self.flips > t] + 1) % 3
        return out


def test_dropquery_candidates_thresholds_and_centroids(digits):
    X, y = digits
    labels = np.full(len(y), -1)
    labels[:6] = [0, 1, 2, 0, 1, 2]
    flips = np.zeros(len(y), int)
    flips[10:40] = 3  # 30 strong flippers
    flips[40:140] = 1  # 100 weak ones
    flips[:6] = 3  # labelled points never count
    probe = FlipProbe(flips)
    # B = 1: 30 > 25 * 1 candidates flip in more than 1 pass, so only those.
    idx, info = S.select("dropquery", X, labels, 1, probe=probe, return_info=True)
    assert 10 <= idx[0] < 40 and info["n_candidates"] == 30 and info["min_flips"] == 2
    # B = 3: 30 < 75, so the bar drops to "flipped at least once": 130 candidates.
    idx, info = S.select("dropquery", X, labels, 3, probe=probe, return_info=True, seed=2)
    assert np.all((idx >= 10) & (idx < 140)) and info["n_candidates"] == 130 and info["min_flips"] == 1
    cand = np.arange(10, 140)
    Xc = Geometry.of(X).X[cand]
    _, cent = kmeans(Xc, 3, seed=S.round_seed(2, labels))  # the round's seed drives DropQuery's k-means
    nearest = cand[((Xc[None] - cent[:, None]) ** 2).sum(-1).argmin(1)]
    assert set(idx) == set(nearest)
    # B = 200 > 130 candidates: all of them plus a random fill.
    idx, info = S.select("dropquery", X, labels, 200, probe=probe, return_info=True)
    check_batch(idx, labels, 200)
    assert set(range(10, 140)) <= set(idx) and info["filled_random"] == 70



def test_dropquery_kmeans_on_a_candidate_sample_still_picks_candidates(digits):
    X, y = digits
    labels = np.full(len(y), -1)
    labels[:6] = [0, 1, 2, 0, 1, 2]
    flips = np.zeros(len(y), int)
    flips[10:410] = 3  # 400 candidates, more than the 50-point sample k-means is fitted on
    probe = FlipProbe(flips)
    a, info = S.select("dropquery", X, labels, 5, probe=probe, return_info=True, kmeans_sample=50)
    b = S.select("dropquery", X, labels, 5, probe=probe, kmeans_sample=50)
    check_batch(a, labels, 5)
    np.testing.assert_array_equal(a, b)
    assert np.all((a >= 10) & (a < 410)) and info["kmeans_fitted_on"] == 50 and info["n_candidates"] == 400
    full, info_full = S.select("dropquery", X, labels, 5, probe=probe, return_info=True)
    assert info_full["kmeans_fitted_on"] == 400


# --------------------------------------------------------------------------- auto

def test_auto_phases_are_deterministic_and_the_reason_names_the_switch(digits):
    X, y = digits
    t1, t2 = 2, 5
    kw = dict(n_classes=10, min_per_class=t1, late_per_class=t2, return_info=True, cold_start="typiclust")
    _, info = S.select("auto", X, np.full(len(y), -1), 5, **kw)
    assert info["strategy"] == "typiclust" and info["phase"] == 0
    assert "typical" in info["reason"] and "two classes" in info["reason"] and "cold start" in info["detail"]
    few = some_labels(y, 1)  # 1 per class < t1: still cold start, and it says until when
    _, info = S.select("auto", X, few, 5, **kw)
    assert info["strategy"] == "typiclust" and "until there are about 2 labels per class" in info["reason"]
    assert "10 so far for 10 classes, 10 of them with labels" in info["reason"]
    mid = some_labels(y, 3)  # t1 <= 3 < t2: DropQuery, and the reason names the switch
    a, info = S.select("auto", X, mid, 5, **kw)
    assert info["strategy"] == "dropquery" and info["phase"] == 1
    assert "unsure" in info["reason"] and "switched from TypiClust to DropQuery at 2 labels per class" in info["reason"]
    assert "hardest cases from 5" in info["reason"]
    b, again = S.select("auto", X, mid, 5, **kw)  # same labels, same phase, same batch
    np.testing.assert_array_equal(a, b)
    assert again["reason"] == info["reason"]
    late = some_labels(y, 6)
    _, info = S.select("auto", X, late, 5, **kw)
    assert info["strategy"] == "margin" and info["phase"] == 2
    assert "switched to margin sampling at 5 labels per class" in info["reason"] and "hardest" in info["reason"]
    # Undeclared classes count as the classes labelled so far; a probcover cold start says so.
    _, info = S.select("auto", X, few, 5, return_info=True, min_per_class=t1, cold_start="probcover")
    assert info["strategy"] == "probcover" and "look-alikes" in info["reason"]
    _, info = S.select("auto", X, mid, 5, return_info=True, min_per_class=float("inf"), cold_start="typiclust")
    assert info["strategy"] == "typiclust"


def test_auto_cold_start_by_the_neighbour_ratio_is_deterministic_and_named(digits):
    X, y = digits
    geo = Geometry.of(X)
    r = auto_mod.neighbour_ratio(geo)
    assert r == auto_mod.neighbour_ratio(geo) and 0.25 < r < 0.4  # digits pixels: tight groups
    kw = dict(cold_start="auto", n_classes=10, return_info=True)
    a, info = S.select("auto", X, np.full(len(y), -1), 10, **kw)
    b, again = S.select("auto", X, np.full(len(y), -1), 10, **kw)
    np.testing.assert_array_equal(a, b)
    assert info["strategy"] == "probcover" and info["neighbour_ratio"] == pytest.approx(r)
    assert "ProbCover: look-alikes are close here" in info["reason"] and f"{r:.2f}" in info["reason"]
    assert f"neighbour ratio {r:.2f} vs {auto_mod.TIGHT_RATIO:g}" in info["detail"]
    _, info = S.select("auto", X, np.full(len(y), -1), 10, tight_ratio=0.2, **kw)
    assert info["strategy"] == "typiclust" and "TypiClust: look-alikes are loose here" in info["reason"]
    mid = some_labels(y, 3)  # past the cold start the reason names the switch from the chosen start
    _, info = S.select("auto", X, mid, 5, min_per_class=2, late_per_class=5, **kw)
    assert info["strategy"] == "dropquery" and "switched from ProbCover to DropQuery" in info["reason"]
    # A pool without structure (Gaussian noise): the nearest neighbour is nearly as far as any image.
    noise = np.random.default_rng(0).standard_normal((600, 64)).astype(np.float32)
    _, info = S.select("auto", noise, np.full(600, -1), 5, **kw)
    assert info["strategy"] == "typiclust" and info["neighbour_ratio"] > 0.6


def test_auto_explores_with_probcover_while_declared_classes_have_no_label(digits):
    # A TypiClust cold start hands over to ProbCover from EXPLORE_FROM labels per class while some
    # declared class is unlabelled (long-tailed pools: coverage reaches the rare classes), and back.
    X, y = digits
    lab = some_labels(y, 3)
    lab[np.isin(y, [8, 9])] = -1  # 24 labels, 2.4 per class of 10 declared; classes 8 and 9 unseen
    kw = dict(cold_start="typiclust", n_classes=10, return_info=True)
    a, info = S.select("auto", X, lab, 5, **kw)
    assert info["strategy"] == "probcover" and info["phase"] == 0 and info["exploring"]
    assert "2 of 10 classes have no label yet" in info["reason"] and "ProbCover in place of typiclust" in info["detail"]
    b, again = S.select("auto", X, lab, 5, **kw)  # deterministic: same labels, same batch and words
    np.testing.assert_array_equal(a, b)
    assert again["reason"] == info["reason"]
    np.testing.assert_array_equal(a, S.select("probcover", X, lab, 5, n_classes=10))  # ProbCover's own picks
    full = some_labels(y, 3)  # every class labelled: TypiClust again
    _, info = S.select("auto", X, full, 5, **kw)
    assert info["strategy"] == "typiclust" and not info["exploring"]
    few = some_labels(y, 1)
    few[y == 9] = -1  # 0.9 per class: below the hand-over, TypiClust
    assert S.select("auto", X, few, 5, **kw)[1]["strategy"] == "typiclust"
    for other in (dict(kw, explore_from=float("inf")), dict(kw, n_classes=None)):  # switched off; classes undeclared
        assert S.select("auto", X, lab, 5, **other)[1]["strategy"] == "typiclust"
    assert auto_mod.EXPLORE_FROM == 2
    with pytest.raises(ValueError, match="explore_from must be"):
        S.select("auto", X, lab, 5, explore_from=-1, n_classes=10)


def dense_neighbour_ratio(X, rows):
    """The ratio from the full (N, m) distance matrix: the reference for the blocked one."""
    d = np.sqrt(np.maximum(((X[:, None, :] - X[None, rows, :]) ** 2).sum(-1), 0))
    d[rows, np.arange(rows.size)] = np.inf
    return np.median(d.min(0)) / np.median(d[np.isfinite(d)])


def test_neighbour_ratio_in_blocks_equals_the_dense_matrix(digits, monkeypatch):
    # Blocks keep memory at block x sample rows (1M pools); below the pair sample the ratio is the
    # dense one exactly, above it the pair median comes from a seeded sample and stays close.
    X, _ = digits
    geo = Geometry.of(X)
    memo = geo.scratch("auto_neighbour_ratio")  # the ratio is cached per pool: recompute it here
    memo.clear()
    monkeypatch.setattr(auto_mod, "_RATIO_BLOCK", 100)
    monkeypatch.setattr(auto_mod, "_RATIO_SAMPLE", 150)
    rows = np.sort(np.random.default_rng([0, 31]).choice(len(X), 150, replace=False))
    want = dense_neighbour_ratio(geo.X, rows)
    assert auto_mod.neighbour_ratio(geo, seed=0) == pytest.approx(want, rel=1e-5)
    monkeypatch.setattr(auto_mod, "_PAIR_SAMPLE", 600)
    memo.clear()
    got = auto_mod.neighbour_ratio(geo, seed=0)
    assert got != want and got == pytest.approx(want, rel=0.03)
    memo.clear()
    assert auto_mod.neighbour_ratio(geo, seed=0) == got  # seeded: the same sample again
    memo.clear()


def test_auto_defaults_follow_the_measured_thresholds(digits):
    X, y = digits
    t1, t2 = auto_mod.MIN_LABELS_PER_CLASS, auto_mod.LATE_LABELS_PER_CLASS
    n = int(np.ceil(t1))
    _, info = S.select("auto", X, some_labels(y, max(n - 1, 0)) if n > 1 else np.full(len(y), -1), 5,
                       return_info=True, n_classes=10)
    assert info["phase"] == 0
    assert info["strategy"] == "probcover"  # digits pixels: tight groups (neighbour ratio 0.32 < 0.45)
    a, info = S.select("auto", X, some_labels(y, n), 5, return_info=True, n_classes=10)
    assert info["phase"] == (1 if n < t2 else 2)
    assert t1 == t2 == 5 and info["strategy"] == "margin"  # no DropQuery phase by default
    assert "switched from ProbCover to margin sampling at 5 labels per class" in info["reason"]
    b, again = S.select("auto", X, some_labels(y, n), 5, return_info=True, n_classes=10)
    np.testing.assert_array_equal(a, b)
    assert again["reason"] == info["reason"]
    with pytest.raises(ValueError, match="late must be"):
        S.select("auto", X, some_labels(y, 1), 5, late="random")


# --------------------------------------------------------------------------- BALD

def repeated_digits(times=3, n=200):
    X, y = load_digits(return_X_y=True)
    X = (X[:n] / np.linalg.norm(X[:n], axis=1, keepdims=True)).astype(np.float32)
    return np.tile(X, (times, 1)), np.tile(y[:n], times)


def test_mc_dropout_proba_is_consistent_and_streams_in_blocks(digits):
    from alwidget.probe import LinearProbe, mc_dropout_proba

    X, y = digits
    labels = some_labels(y, 3)
    probe = LinearProbe(seed=0, input_dropout=0.5).fit(X, labels)
    (_, whole), = mc_dropout_proba(probe, n_masks=6, p=0.5, seed=3, block_bytes=1 << 40)
    blocks = list(mc_dropout_proba(probe, n_masks=6, p=0.5, seed=3, block_bytes=6 * 10 * 4 * 50))
    assert len(blocks) > 5 and all(P.shape[1] <= 50 for _, P in blocks)
    np.testing.assert_allclose(np.concatenate([P.numpy() for _, P in blocks], 1), whole.numpy(), rtol=1e-5, atol=1e-6)
    assert whole.shape == (6, len(y), 10) and np.allclose(whole.sum(-1).numpy(), 1, atol=1e-5)
    # One mask per pass, shared by every row: two copies of a row agree within a pass.
    (_, twin), = mc_dropout_proba(probe, rows=np.array([5, 5, 9]), n_masks=6, p=0.5, seed=3)
    np.testing.assert_allclose(twin[:, 0].numpy(), twin[:, 1].numpy())
    np.testing.assert_allclose(twin[:, 0].numpy(), whole[:, 5].numpy(), rtol=1e-5, atol=1e-6)


def test_bald_is_non_negative_and_vanishes_without_dropout(digits):
    from alwidget.probe import LinearProbe
    from alwidget.strategies._common import Context
    from alwidget.strategies.bald import bald_scores

    X, y = digits
    labels = some_labels(y, 3)
    probe = LinearProbe(seed=0, input_dropout=0.5).fit(X, labels)
    ctx = Context(features=X, labels=labels, seed=0, probe=probe)
    rows = np.flatnonzero(labels < 0)
    s, _, _ = bald_scores(ctx, rows, None, 20, 0.5)
    assert (s >= 0).all() and s.max() > 0.05
    tiny, _, _ = bald_scores(ctx, rows, None, 20, 1e-4)
    assert tiny.max() < 1e-3 * s.max()


def test_batchbald_with_one_pick_is_argmax_bald(digits):
    X, y = digits
    labels = some_labels(y, 3)
    for seed in (0, 1):
        for masks in (20, 50):  # the same masks (seed and count) give the same first pick
            one = S.select("batchbald", X, labels, 1, seed=seed, n_masks=masks)
            np.testing.assert_array_equal(one, S.select("bald", X, labels, 1, seed=seed, n_masks=masks))


def test_batchbald_avoids_the_duplicates_top_bald_picks():
    X, y = repeated_digits(3, n=1797)  # row i, i + 1797 and i + 2 * 1797 are one image
    copies = lambda idx: np.unique(idx % 1797).size  # noqa: E731
    for seed in range(3):
        labels = np.full(len(y), -1)
        rng = np.random.default_rng(seed)
        for c in range(10):
            labels[rng.choice(np.flatnonzero(y[:1797] == c), 2, replace=False)] = c
        top = S.select("bald", X, labels, 10, seed=seed)
        assert copies(top) <= 5  # top-10 BALD takes each top image two or three times
        bb, info = S.select("batchbald", X, labels, 10, seed=seed, return_info=True, n_top=500)
        check_batch(bb, labels, 10)
        assert copies(bb) == 10 and info["strategy"] == "batchbald"  # no image twice


def test_power_bald_and_large_batchbald_batches(digits):
    X, y = digits
    labels = some_labels(y, 2)
    picks = {tuple(S.select("power_bald", X, labels, 10, seed=s)) for s in range(3)}
    assert len(picks) == 3
    idx, info = S.select("batchbald", X, labels, 20, return_info=True)
    check_batch(idx, labels, 20)
    assert info["strategy"] == "power_bald" and info["requested"] == "batchbald" and "at most 10" in info["detail"]
    with pytest.raises(ValueError, match="n_masks"):
        S.select("bald", X, labels, 3, n_masks=1)


# --------------------------------------------------------------------------- in a Session

@pytest.mark.parametrize("name", ALL)
def test_successive_session_rounds_differ_and_replay_with_the_same_seed(digits, name):
    from alwidget.session import Session

    X, y = digits
    X, y = X[:300], y[:300]
    runs = []
    for _ in range(2):
        batches = []
        with Session(X, classes=[str(c) for c in range(10)], strategy=name, seed=3, device="cpu", batch_size=5) as s:
            for _ in range(3):
                s.wait(timeout=120)
                b = s.next_batch()
                info = s.status["strategy_info"]
                batches.append((tuple(b.tolist()), info.get("round_seed")))
                for i in b:  # one retrain per label: the probe's warm starts follow the same path
                    s.label(int(i), str(y[i]))
                    s.wait(timeout=120)
        runs.append(batches)
    assert runs[0] == runs[1]  # same seed, same labels -> same batches
    assert len({bs for bs, _ in runs[0]}) == 3 and len({rs for _, rs in runs[0]}) == 3


def test_random_in_a_session_on_a_class_sorted_pool_sees_the_classes():
    from alwidget.session import Session

    X, y = load_digits(return_X_y=True)
    order = np.argsort(y, kind="stable")  # the ImageFolder layout: rows sorted by class
    X = (X[order] / np.linalg.norm(X[order], axis=1, keepdims=True)).astype(np.float32)
    y = y[order]
    with Session(X, strategy="random", seed=0, device="cpu", batch_size=10) as s:
        for _ in range(5):
            s.wait(timeout=120)
            for i in s.next_batch():
                s.label(int(i), str(y[i]))
        assert len(s.status["counts"]) >= 9


def test_top_k_equals_a_full_sort_with_seeded_ties():
    from alwidget.strategies._common import top_k

    r = np.random.default_rng(0)
    for t in range(200):
        n = int(r.integers(1, 300))
        s = r.integers(0, 5, n).astype(float) if t % 2 else r.random(n)  # many ties / none
        cand = np.sort(r.choice(1000, n, replace=False))
        k = int(r.integers(0, n + 2))
        prio = np.random.default_rng(t).permutation(n)
        want = cand[np.lexsort((prio, -s))[:k]]
        np.testing.assert_array_equal(top_k(s, cand, k, np.random.default_rng(t)), want)


def test_dropquery_samples_pool_blocks_on_big_pools(digits, monkeypatch):
    from alwidget import probe as P
    from alwidget.probe import LinearProbe
    from alwidget.strategies import dropquery as DQ

    X, y = digits
    labels = some_labels(y, 3)
    probe = LinearProbe(seed=0).fit(X, labels)
    full = S.select("dropquery", X, labels, 10, probe=probe, seed=2, return_info=True)
    assert full[1]["dropout_rows"] == len(y)  # below SUBSET_MIN: every row, as before
    np.testing.assert_array_equal(full[0], S.select("dropquery", X, labels, 10, probe=probe, seed=2, subset=None))
    monkeypatch.setattr(P, "DROPOUT_BLOCK", 32)
    idx, info = S.select("dropquery", X, labels, 10, probe=probe, seed=2, subset=400, candidate_factor=2,
                         return_info=True)
    check_batch(idx, labels, 10)
    assert info["dropout_rows"] <= 416  # 13 blocks of 32, labelled rows left out
    Pr = probe.predict_proba()
    unl = np.flatnonzero(labels < 0)
    f, n = DQ._flips(probe, Pr, unl, 3, 0.75, 2, 400, 20)
    sampled = f > 0
    blocks = np.unique(unl[sampled] // 32)
    assert blocks.size <= 13 and n <= 416
    # Candidates are scarce in the sample: the passes run on the whole pool instead.
    f_all, n_all = DQ._flips(probe, Pr, unl, 3, 0.75, 2, 400, 10 ** 6)
    assert n_all == len(y)


def test_batchbald_takes_a_copy_only_when_nothing_else_is_left():
    from alwidget.strategies.bald import greedy_batchbald

    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.ones(3), size=(8, 4))  # (K masks, M candidates, C classes)
    P[:, 1] = P[:, 0]  # candidate 1 is a copy of candidate 0
    picks = greedy_batchbald(P, 3, 1000, rng, first=0, groups=np.array([0, 0, 1, 2]))
    assert 1 not in picks and sorted(picks) == [0, 2, 3]
    picks = greedy_batchbald(P, 2, 1000, rng, first=0, groups=np.zeros(4, int))
    assert len(set(picks)) == 2  # every candidate is a copy: the batch still fills


# --------------------------------------------------------------------------- reduced-precision pool scores (issue 12)

@pytest.fixture(scope="module")
def fashion_features(tmp_path_factory):
    """1,000 Fashion-MNIST test images (100 per class, seeded), embedded once with the demo encoder."""
    return embed_fashion_test(tmp_path_factory.mktemp("fashion-embeddings"), 100, seed=1)


@pytest.mark.parametrize("data", ["digits", "fashion_features"])
def test_low_precision_scores_give_the_float32_picks(data, request):
    """The bf16 pool pass (forced on a small pool) re-scores the shortlist exactly: the same batches
    as float32 for every uncertainty strategy, the same argmax, and probabilities within 0.02 of float32."""
    from alwidget.probe import LinearProbe

    X, y = request.getfixturevalue(data)
    worst, approx_differs = 0.0, 0
    for per_class, seed in ((2, 0), (5, 1), (10, 2)):
        labels = some_labels(y, per_class, seed)
        probes = {lp: LinearProbe(seed=seed, device="cpu", low_precision=lp).fit(X, labels) for lp in (False, True)}
        worst = max(worst, float(np.abs(probes[True].predict_proba() - probes[False].predict_proba()).max()))
        assert not probes[True].proba_exact
        assert np.array_equal(probes[True].predict(), probes[False].predict())  # DropQuery's clean pass, trust
        for name in ("margin", "least_confidence", "entropy", "power_margin"):
            for k in (1, 10, 30):
                got = {lp: S.select(name, X, labels, k, seed=seed, probe=p) for lp, p in probes.items()}
                assert np.array_equal(got[True], got[False]), (name, per_class, k)
                plain = S.select(name, X, labels, k, seed=seed, proba=probes[True].predict_proba())
                approx_differs += not np.array_equal(plain, got[False])
    assert worst < 0.02, worst
    assert approx_differs > 0  # ranking the bf16 scores alone would have changed some batches


def test_margin_top_two_sweep_equals_a_sort_with_ties():
    from alwidget.strategies.uncertainty import top_two

    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.full(7, 0.3), 500).astype(np.float32)
    p[:50, 3] = p[:50, 5] = p[:50].max(1)  # ties for the top
    m1, m2 = top_two(p)
    srt = np.sort(p, axis=1)
    assert np.array_equal(m1, srt[:, -1]) and np.array_equal(m2, srt[:, -2]) and (m1[:50] == m2[:50]).all()
    assert np.array_equal(margin_score(p), 1.0 - (srt[:, -1].astype(np.float64) - srt[:, -2]))
