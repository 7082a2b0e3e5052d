"""Strategies: the select() contract for every name, and brute-force references on small inputs."""
import numpy as np
import pytest
from sklearn.datasets import load_digits

from alwidget import strategies as S
from alwidget.geometry import Geometry, kmeans
from alwidget.strategies import auto as auto_mod
from alwidget.strategies.badge import gradient_factors, gradient_sq_dist, gradient_sq_norms, kmeanspp_factorised
from alwidget.strategies.typiclust import K_LADDER, ladder_up
from alwidget.strategies.uncertainty import entropy_score, least_confidence_score, margin_score

ALL = S.available()
MODEL = ["margin", "entropy", "least_confidence", "power_margin", "dropquery", "badge"]


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
    b = S.select(name, X, labels, 12, seed=1)
    np.testing.assert_array_equal(a, b)
    if name == "auto":
        assert info["strategy"] in ("typiclust", "dropquery")
    else:
        assert info["strategy"] == name


@pytest.mark.parametrize("name", ALL)
def test_cold_start_no_labels(digits, name):
    X, _ = digits
    labels = np.full(len(X), -1)
    idx, info = S.select(name, X, labels, 10, seed=0, return_info=True)
    check_batch(idx, labels, 10)
    if name in ("random", "typiclust", "probcover", "coreset"):
        assert info["strategy"] == name  # these need no model: no fallback
    else:
        assert info["strategy"] == "typiclust"
        assert "cold start" in info["reason"]


@pytest.mark.parametrize("name", MODEL)
def test_model_strategies_with_one_class_fall_back_and_say_so(digits, name):
    X, y = digits
    labels = np.full(len(y), -1)
    labels[np.flatnonzero(y == 3)[:5]] = 3
    idx, info = S.select(name, X, labels, 8, return_info=True, cold_start="probcover")
    check_batch(idx, labels, 8)
    assert info["strategy"] == "probcover" and info["requested"] == name
    assert "1 labelled so far" in info["reason"] and "cold start" in info["reason"]


@pytest.mark.parametrize("name", ALL)
def test_k_larger_than_the_unlabelled_pool_returns_all_remaining(digits, name):
    X, y = digits
    labels = y.copy()
    free = np.array([5, 77, 400])
    labels[free] = -1
    idx, info = S.select(name, X, labels, 50, return_info=True)
    assert sorted(idx.tolist()) == free.tolist()
    assert "only 3 unlabelled left" in info["reason"]
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


@pytest.mark.parametrize("name", ["typiclust", "probcover"])
def test_per_call_seed_reuses_the_cached_geometry(digits, name):
    X, y = digits
    labels = some_labels(y, 2)
    geo = Geometry.of(X)
    before = (len(geo._kmeans), len(geo._delta), len(geo._ball))
    S.select(name, X, labels, 10, seed=0)
    after_one = (len(geo._kmeans), len(geo._delta), len(geo._ball))
    for s in range(1, 5):  # a session varying the seed every round
        check_batch(S.select(name, X, labels, 10, seed=s), labels, 10)
    assert (len(geo._kmeans), len(geo._delta), len(geo._ball)) == after_one
    assert after_one[0] <= before[0] + 1


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


@pytest.mark.parametrize("with_labels", [False, True])
def test_probcover_greedy_equals_exhaustive_max_coverage(with_labels):
    rng = np.random.default_rng(6)
    X = np.vstack([c + rng.standard_normal((40, 4)) for c in rng.standard_normal((5, 4)) * 3]).astype(np.float32)
    labels = np.full(len(X), -1)
    if with_labels:
        labels[[3, 50, 120]] = [0, 1, 2]
    idx, info = S.select("probcover", X, labels, 25, seed=3, return_info=True, n_classes=5)
    check_batch(idx, labels, 25)
    indptr, indices = Geometry.of(X).ball_graph(info["delta"])
    covered = exhaustive_greedy_ok(indptr, indices, labels, idx)
    assert info["covered_after"] == pytest.approx(covered.mean())
    assert info["purity"] >= 0.95 and info["n_pseudo_classes"] == 5


def test_probcover_repeated_calls_reuse_the_graph_and_stay_greedy(digits):
    X, y = digits
    labels = np.full(len(y), -1)
    geo = Geometry.of(X)
    for _ in range(3):  # the session's loop: label the first pick, ask again
        idx, info = S.select("probcover", X, labels, 5, return_info=True)
        exhaustive_greedy_ok(*geo.ball_graph(info["delta"]), labels, idx)
        labels[idx[0]] = y[idx[0]]
    assert len(geo._ball) == 1 and len(geo._delta) == 1


def test_probcover_default_pseudo_classes_and_override(digits):
    X, y = digits
    labels = some_labels(y, 1)
    _, info = S.select("probcover", X, labels, 3, return_info=True)
    assert info["n_pseudo_classes"] == 10
    _, info = S.select("probcover", X, labels, 3, return_info=True, delta=0.5)
    assert info["delta"] == 0.5 and "given" in info["reason"]


def test_torch_backend_gives_valid_batches_and_the_same_delta(digits):
    X, y = digits
    labels = some_labels(y, 1)
    fa, i1 = S.select("probcover", X, labels, 10, return_info=True, backend="faiss")
    to, i2 = S.select("probcover", X, labels, 10, return_info=True, backend="torch")
    check_batch(to, labels, 10)
    # Pseudo-labels come from each backend's own k-means, so deltas agree only roughly.
    assert i2["delta"] == pytest.approx(i1["delta"], rel=0.25) and i2["purity"] >= 0.95
    for name in ("typiclust", "coreset", "dropquery"):
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
    _, cent = kmeans(Xc, 3, seed=2)
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

def test_auto_switches_from_cold_start_to_dropquery(digits):
    X, y = digits
    t = auto_mod.MIN_LABELS_PER_CLASS
    _, info = S.select("auto", X, np.full(len(y), -1), 5, return_info=True)
    assert info["strategy"] == "typiclust" and "0 labels" in info["reason"] and "cold start" in info["reason"]
    # Declared classes count before they have labels: 10 * t / 2 labels over 10 classes.
    few = np.full(len(y), -1)
    n_few = max(2, int(10 * t / 2))
    few[:n_few] = np.arange(n_few) % 10
    _, info = S.select("auto", X, few, 5, return_info=True, cold_start="probcover", n_classes=10)
    assert info["strategy"] == "probcover"
    assert info["reason"].startswith(f"probcover: {n_few} labels, {n_few / 10:.1f} per class < {t:g}, cold start")
    many = some_labels(y, int(np.ceil(t)) + 1)
    idx, info = S.select("auto", X, many, 5, return_info=True)
    check_batch(idx, many, 5)
    assert info["strategy"] == "dropquery" and f">= {t:g}" in info["reason"]
    _, info = S.select("auto", X, many, 5, return_info=True, n_classes=200)
    assert info["strategy"] == "typiclust"
    _, info = S.select("auto", X, few, 5, return_info=True, n_classes=10, min_per_class=0.1)
    assert info["strategy"] == "dropquery"
    _, info = S.select("auto", X, many, 5, return_info=True, min_per_class=float("inf"))
    assert info["strategy"] == "typiclust"
