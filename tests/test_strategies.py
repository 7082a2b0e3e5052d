"""Strategies: the select() contract for every name, and brute-force references on small inputs."""
import numpy as np
import pytest
from embed_data import embed_fashion_test
from geometry_data import brute_dist
from sklearn.datasets import load_digits
from strategy_data import check_batch, digits_sample, some_labels

from alwidget import strategies as S
from alwidget.geometry import Geometry
from alwidget.strategies.badge import gradient_factors, gradient_sq_dist, gradient_sq_norms, kmeanspp_factorised
from alwidget.strategies.uncertainty import entropy_score, least_confidence_score, margin_score

ALL = S.available()
MODEL = ["margin", "entropy", "least_confidence", "power_margin", "dropquery", "badge", "bald", "power_bald",
         "batchbald"]


@pytest.fixture(scope="module")
def digits():
    return digits_sample()


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


# --------------------------------------------------------------------------- backends

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
        if t % 3 == 0:  # rows outside an exact shortlist score -inf: fewer or more than k of the rest
            s[r.random(n) < r.random()] = -np.inf
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
