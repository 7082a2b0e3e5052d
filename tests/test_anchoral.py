"""AnchorAL subpools (alwidget.anchoral) on real features: contents, determinism, the wrapper."""
import numpy as np
import pytest

from alwidget import anchoral as A
from alwidget import ann
from alwidget import strategies as S
from alwidget.geometry import Geometry, normalize
from alwidget.probe import LinearProbe


@pytest.fixture(autouse=True)
def _fresh_cache():
    Geometry.clear_cache()
    yield
    Geometry.clear_cache()


def labelled(y, per_class, seed=0, classes=None):
    rng = np.random.default_rng(seed)
    labels = np.full(len(y), -1)
    for c in (np.unique(y) if classes is None else classes):
        rows = rng.choice(np.flatnonzero(y == c), per_class, replace=False)
        labels[rows] = c
    return labels


def test_anchors_are_labelled_rows_at_most_per_class(digits):
    X, y = digits
    labels = labelled(y, 8)
    labels[np.flatnonzero(y == 3)[:100]] = 3  # one class with many labels
    a = A.anchors(normalize(X), labels, per_class=5, seed=1)
    assert (labels[a] >= 0).all() and np.unique(a).size == a.size
    counts = np.bincount(labels[a], minlength=10)
    assert (counts == 5).all()
    np.testing.assert_array_equal(a, A.anchors(normalize(X), labels, per_class=5, seed=1))
    few = A.anchors(normalize(X), labelled(y, 3), per_class=5)
    assert few.size == 30  # all of them when a class has fewer


def brute_subpool(Xu, labels, taken, anchors_, k, size, balanced=True):
    """The retrieved part by brute force: per anchor its k nearest free rows, score = mean
    similarity; each anchor class its size // classes best rows first, then the best others."""
    free = np.flatnonzero(~taken)
    sums, cnt, by_class = {}, {}, {}
    for a in anchors_:
        s = Xu[free] @ Xu[a]
        for j in np.lexsort((free, -s))[:k]:
            sums[free[j]] = sums.get(free[j], 0.0) + s[j]
            cnt[free[j]] = cnt.get(free[j], 0) + 1
            by_class.setdefault(labels[a] if balanced else 0, set()).add(free[j])
    ranked = sorted(sums, key=lambda r: (-sums[r] / cnt[r], r))
    if len(ranked) <= size:
        return np.sort(ranked)
    out = set()
    for c, rows in by_class.items():
        out |= set([r for r in ranked if r in rows][: size // len(by_class)])
    out |= set([r for r in ranked if r not in out][: size - len(out)])
    return np.sort(list(out))


def test_subpool_is_the_best_scored_neighbours_plus_a_random_tail(digits):
    X, y = digits
    labels = labelled(y, 4)
    excl = np.flatnonzero(labels < 0)[::7]
    sub, info = A.subpool(X, labels, exclude=excl, per_class=3, n_neighbors=20, size=300, tail=50, seed=5)
    assert sub.size <= 350 and info["subpool"] == sub.size and info["tail"] == 50
    assert (labels[sub] < 0).all() and not np.isin(sub, excl).any()
    assert np.array_equal(np.unique(sub), sub)
    Xu = normalize(X)
    taken = labels >= 0
    taken[excl] = True
    a = A.anchors(Xu, labels, 3, 5)
    retrieved = {}
    for balanced in (True, False):
        want = brute_subpool(Xu, labels, taken, a, 20, 300, balanced)
        retrieved[balanced], _ = A.subpool(X, labels, exclude=excl, per_class=3, n_neighbors=20, size=300, tail=0,
                                           seed=5, balanced=balanced)
        np.testing.assert_array_equal(retrieved[balanced], want)  # the retrieved part, exactly
    assert not np.array_equal(retrieved[True], retrieved[False])  # the quotas changed something here
    assert np.isin(retrieved[True], sub).all()  # the default: class quotas, plus the tail
    again, _ = A.subpool(X, labels, exclude=excl, per_class=3, n_neighbors=20, size=300, tail=50, seed=5)
    np.testing.assert_array_equal(sub, again)
    other, _ = A.subpool(X, labels, exclude=excl, per_class=3, n_neighbors=20, size=300, tail=50, seed=6)
    assert not np.array_equal(sub, other)
    mask = np.zeros(len(y), bool)
    mask[excl] = True
    np.testing.assert_array_equal(A.subpool(X, labels, exclude=mask, per_class=3, n_neighbors=20, size=300,
                                            tail=50, seed=5)[0], sub)


def test_subpool_with_the_ivf_index_agrees_with_exact(digits, monkeypatch):
    pytest.importorskip("faiss")
    X, y = digits
    labels = labelled(y, 5)
    exact, info = A.subpool(X, labels, per_class=5, n_neighbors=30, size=500, tail=0, seed=2)
    assert not info["approximate"]
    monkeypatch.setattr(A, "IVF_MIN", 100)
    approx, info = A.subpool(X, labels, per_class=5, n_neighbors=30, size=500, tail=0, seed=2)
    assert info["approximate"] and (labels[approx] < 0).all()
    assert np.isin(approx, exact).mean() >= 0.9


def test_select_below_the_size_is_strategies_select(digits):
    X, y = digits
    labels = labelled(y, 6)
    probe = LinearProbe(seed=0).fit(X, labels)
    a = A.select("margin", X, labels, 10, seed=3, probe=probe)
    np.testing.assert_array_equal(a, S.select("margin", X, labels, 10, seed=3, probe=probe))


@pytest.mark.parametrize("name", ["margin", "dropquery", "auto", "badge", "bald"])
def test_select_on_the_subpool_returns_subpool_candidates(digits, name):
    X, y = digits
    labels = labelled(y, 6)
    excl = np.flatnonzero(labels < 0)[:40]
    probe = LinearProbe(seed=0).fit(X, labels)
    sp = dict(per_class=4, n_neighbors=15, size=200, tail=20)
    idx, info = A.select(name, X, labels, 10, seed=1, probe=probe, exclude=excl, return_info=True, min_pool=0,
                         subpool_params=sp)
    sub, _ = A.subpool(X, labels, exclude=excl, seed=S.round_seed(1, labels), **sp)
    assert idx.size == 10 and np.unique(idx).size == 10
    assert np.isin(idx, sub).all() and (labels[idx] < 0).all()
    assert info["anchoral"]["subpool"] == sub.size and "nearest the labelled" in info["reason"]


def test_auto_on_the_subpool_names_the_pools_cold_start_measured_once(digits, monkeypatch):
    from alwidget.strategies import auto as auto_mod

    X, y = digits
    seen = []
    real = auto_mod.neighbour_ratio
    monkeypatch.setattr(auto_mod, "neighbour_ratio", lambda geo, seed=0: seen.append(geo.n_samples) or real(geo, seed))
    start, _ = auto_mod.pool_cold_start(Geometry.of(X))
    sp = dict(per_class=4, n_neighbors=15, size=200, tail=20)
    for per in (6, 7):  # auto's last phase, two rounds on two different subpools
        info = A.select("auto", X, labelled(y, per), 10, seed=1, return_info=True, min_pool=0, subpool_params=sp)[1]
        assert info["anchoral"]["subpool"] < len(y) and info["strategy"] == "margin"
        assert f"from {auto_mod._NAMES[start]} to margin" in info["reason"]
    assert seen == [len(y)] * len(seen) and len(seen) == 3  # only the pool's, its ratio cached
    forced = A.select("auto", X, labelled(y, 6), 10, seed=1, return_info=True, min_pool=0, subpool_params=sp,
                      cold_start="typiclust" if start == "probcover" else "probcover")[1]
    assert f"from {auto_mod._NAMES[start]} to" not in forced["reason"]  # a forced cold start is kept


def test_cold_start_and_geometry_strategies_use_the_whole_pool(digits):
    X, y = digits
    one = labelled(y, 5, classes=[0])
    idx, info = A.select("margin", X, one, 10, return_info=True, min_pool=0)
    assert info["anchoral"] is False and info["strategy"] == "typiclust"
    few = labelled(y, 2)  # auto still in its cold start (2 per class < 5)
    assert A.select("auto", X, few, 10, return_info=True, min_pool=0)[1]["anchoral"] is False
    assert A.select("typiclust", X, labelled(y, 6), 10, return_info=True, min_pool=0)[1]["anchoral"] is False


def test_rows_probe_reads_the_whole_pool_probe_on_its_rows(digits):
    X, y = digits
    labels = labelled(y, 6)
    probe = LinearProbe(seed=0).fit(X, labels)
    rows = np.arange(5, 900, 3)
    rp = A.RowsProbe(probe, rows)
    np.testing.assert_allclose(rp.predict_proba(), probe.predict_proba()[rows], atol=1e-6)
    np.testing.assert_array_equal(rp.predict(), probe.predict()[rows])
    np.testing.assert_allclose(rp.transform().numpy(), probe.transform().numpy()[rows])
    drops = rp.predict_dropout(seed=2)  # masks shared per block of our rows (the probe's big-pool path)
    assert drops.shape == (3, rows.size) and np.isin(drops, np.flatnonzero(probe.seen_classes)).all()
    np.testing.assert_array_equal(drops, rp.predict_dropout(seed=2))
    assert not np.array_equal(drops, rp.predict_dropout(seed=3))
    np.testing.assert_array_equal(rp.predict_dropout(p=0.0, n_passes=2), np.stack([rp.predict()] * 2))
    flips = (drops != rp.predict()).mean()  # as often as the per-point masks flip a prediction
    per_point = (probe.predict_dropout(seed=2, rows=rows) != probe.predict()[rows]).mean()
    assert 0.5 * per_point <= flips <= 2 * per_point
    with pytest.raises(ValueError, match="n_passes"):
        rp.predict_dropout(n_passes=0)
    assert rp.n_classes == probe.n_classes and rp.is_fitted
    blk = rp.predict_dropout(seed=2, blocks=[0, 1])  # DropQuery's block sample, on the wrapped rows
    assert blk.shape == (3, rows.size)  # 299 rows: a full block of 256 and 43
    probe._proba = None  # no pool scores yet: only the rows are scored
    np.testing.assert_allclose(A.RowsProbe(probe, rows).predict_proba(), probe.predict_proba()[rows], atol=1e-6)


def test_a_session_on_a_huge_pool_selects_from_subpools(digits, monkeypatch):
    from alwidget import Session

    X, y = digits
    monkeypatch.setattr(A, "SUBPOOL_MIN", 1000)  # digits (1797 rows) counts as huge here
    with Session(X, strategy="margin", device="cpu", batch_size=5) as s:
        for i in range(30):
            s.label(i, str(y[i]))
        s.wait(timeout=120)
        st = s.status
        assert st["error"] is None and st["active_strategy"] == "margin"
        assert st["strategy_info"]["anchoral"]["subpool"] > 0 and "nearest the labelled" in st["reason"]
        batch = s.next_batch()
        assert len(batch) == 5 and not np.isin(batch, np.arange(30)).any()
    monkeypatch.setattr(A, "SUBPOOL_MIN", 10**9)
    with Session(X, strategy="margin", device="cpu", batch_size=5) as s:
        for i in range(30):
            s.label(i, str(y[i]))
        s.wait(timeout=120)
        assert "anchoral" not in s.status["strategy_info"]


def test_a_reduced_precision_pool_keeps_the_float32_picks_on_the_subpool(digits, monkeypatch):
    """The whole-pool probe's bf16 pass (forced) read through the subpool wrapper: the shortlist is
    re-scored exactly on the wrapped rows, so AnchorAL's margin batches equal the float32 ones
    (ranking the bf16 scores alone changed 18 of these 45 batches when this was written)."""
    X, y = digits
    sp = dict(per_class=4, n_neighbors=15, size=300, tail=30)
    approx_differs = 0
    for per_class in (2, 5, 10):
        for seed in range(3):
            labels = labelled(y, per_class)
            probes = {lp: LinearProbe(seed=seed, device="cpu", low_precision=lp).fit(X, labels) for lp in (False, True)}
            probes[True].predict_proba()  # the pool pass, in bf16
            assert not probes[True].proba_exact
            rows = np.flatnonzero(labels < 0)[:400]
            wrapped = A.RowsProbe(probes[True], rows)
            assert not wrapped.proba_exact
            np.testing.assert_allclose(wrapped.exact_proba([0, 5]), probes[False].predict_proba()[rows[[0, 5]]],
                                       atol=1e-5)
            for k in (10, 30):
                got = {lp: A.select("margin", X, labels, k, seed=seed, probe=p, min_pool=0, subpool_params=sp)
                       for lp, p in probes.items()}
                assert np.array_equal(got[True], got[False]), (per_class, seed, k)
                with monkeypatch.context() as m:  # the wrapper not trusted: bf16 margins ranked alone
                    m.setattr(A.RowsProbe, "exact_rows", False)
                    plain = A.select("margin", X, labels, k, seed=seed, probe=probes[True], min_pool=0,
                                     subpool_params=sp)
                approx_differs += not np.array_equal(plain, got[False])
    assert approx_differs > 0


def test_a_rare_class_anchors_its_labels_and_keeps_its_neighbourhood(digits):
    """Per-class anchors: every labelled row of a class with fewer than per_class labels is an
    anchor; with class quotas its anchors' neighbours all reach the subpool even where the other
    classes' neighbours score higher (the paper's top-S drops some of them here)."""
    X, y = digits
    labels = labelled(y, 12)
    rare = 8
    labels[np.flatnonzero(labels == rare)[1:]] = -1  # one label of class 8, 12 of the others
    Xu = normalize(X)
    a = A.anchors(Xu, labels, per_class=10, seed=0)
    assert np.flatnonzero(labels == rare)[0] in a and np.bincount(labels[a]).max() == 10
    kept = {}
    for balanced in (True, False):
        sub, info = A.subpool(X, labels, per_class=10, n_neighbors=30, size=400, tail=20, seed=0, balanced=balanced)
        assert info["tail"] == 20 and info["retrieved"] > 400  # the quota binds; the random tail stays
        taken = labels >= 0
        s = Xu[~taken] @ Xu[np.flatnonzero(labels == rare)[0]]
        near = np.flatnonzero(~taken)[np.lexsort((np.flatnonzero(~taken), -s))[:30]]  # the rare anchor's 30
        kept[balanced] = np.isin(near, sub).mean()
    assert kept[True] == 1.0 and kept[False] < 1.0


@pytest.mark.parametrize("name", ["margin", "dropquery", "badge"])
def test_the_subpool_geometry_is_the_pools_rows_not_a_new_hash(digits, monkeypatch, name):
    """After the pool's first round, a round neither hashes nor normalises a feature array (the
    subpool's Geometry is the pool's unit rows), and its picks equal strategies.select run on
    the subpool's rows from scratch (a fresh Geometry, validated, hashed and normalised)."""
    from alwidget import geometry

    X, y = digits
    labels = labelled(y, 6)
    probe = LinearProbe(seed=0).fit(X, labels)
    sp = dict(per_class=4, n_neighbors=15, size=200, tail=20)
    A.select(name, X, labels, 10, seed=1, probe=probe, min_pool=0, subpool_params=sp)  # the pool's Geometry

    def forbidden(*_a, **_k):
        raise AssertionError("hashed or normalised a feature array")

    with monkeypatch.context() as m:
        m.setattr(geometry, "fingerprint", forbidden)
        m.setattr(geometry, "normalize", forbidden)
        got = A.select(name, X, labels, 10, seed=2, probe=probe, min_pool=0, subpool_params=sp)
    sub, _ = A.subpool(X, labels, seed=S.round_seed(2, labels), **sp)
    rows = np.union1d(sub, np.flatnonzero(labels >= 0))
    np.testing.assert_array_equal(Geometry.of(A._rows_of(X, rows)).X, normalize(X[rows]))  # bitwise
    Geometry.clear_cache()
    ref = S.select(name, np.array(X[rows]), labels[rows], 10, seed=2, probe=A.RowsProbe(probe, rows))
    np.testing.assert_array_equal(got, rows[ref])


def test_same_seed_and_labels_give_the_same_picks_with_a_new_ivf_index(digits, monkeypatch):
    pytest.importorskip("faiss")
    X, y = digits
    monkeypatch.setattr(A, "IVF_MIN", 100)  # the approximate path on digits
    monkeypatch.setattr(A, "INDEX_CACHE", False)  # rebuilt, not read back from the cache folder
    labels = labelled(y, 6)
    probe = LinearProbe(seed=0).fit(X, labels)
    sp = dict(per_class=4, n_neighbors=15, size=200, tail=20)
    picks = []
    for _ in range(2):
        Geometry.clear_cache()  # a new index, new neighbour lists
        idx, info = A.select("dropquery", X, labels, 10, seed=4, probe=probe, min_pool=0, subpool_params=sp,
                             return_info=True)
        assert info["anchoral"]["approximate"]
        picks.append(idx)
    np.testing.assert_array_equal(*picks)


@pytest.mark.parametrize("ivf", [False, True])
def test_a_rows_list_is_the_same_searched_alone_or_with_others(digits, monkeypatch, ivf):
    """Lists are cached and searched ahead (prefetch), so a row's list must not depend on the rows
    searched with it: the exact path pads to one shape, the IVF path stays below faiss's BLAS switch."""
    if ivf:
        pytest.importorskip("faiss")
        monkeypatch.setattr(A, "IVF_MIN", 100)
    X, _ = digits
    geo = Geometry.of(X)
    rows = np.arange(3, 1700, 31)  # 55 rows: blocks of 16, the last one partial
    sims, idx = A._search(geo, rows, 114)
    for t in (0, 17, 54):
        v, j = A._search(geo, rows[t:t + 1], 114)
        np.testing.assert_array_equal(j[0], idx[t])
        np.testing.assert_array_equal(v[0], sims[t])


def test_rescored_keeps_the_best_k_by_exact_similarity_ties_by_index_missing_last(digits):
    """A block of rows re-scored at once: per row the first k of its candidates ordered by (-exact
    inner product, index), -1 / -inf for missing ones, as a row-by-row sort gives."""
    pytest.importorskip("faiss")
    X = np.ascontiguousarray(Geometry.of(digits[0]).X)
    X[200:206] = X[200]  # identical rows: tied similarities
    rng = np.random.default_rng(4)
    rows = rng.choice(len(X), 7, replace=False)
    cand = np.stack([rng.choice(len(X), 60, replace=False) for _ in rows])
    cand[:, :6] = np.arange(200, 206)[::-1]  # the tied rows, in descending index order
    cand[2, 10:] = -1  # a row with fewer candidates than k
    sims, idx = A._rescored(X, rows, cand, 20)
    for b, r in enumerate(rows):
        ok = cand[b] >= 0
        s, j = ann.inner_products(X, X[r], cand[b][ok]), cand[b][ok]
        order = np.lexsort((j, -s))[:20]
        want_j = np.full(20, -1)
        want_j[:order.size] = j[order]
        np.testing.assert_array_equal(idx[b], want_j)
        np.testing.assert_array_equal(sims[b][:order.size], s[order])
        assert np.all(np.isneginf(sims[b][order.size:]))


def _rounds(X, y, name, n_rounds, sp, prefetch=None):
    """Picks of n_rounds AnchorAL rounds, each labelling the previous picks (an oracle user)."""
    labels = labelled(y, 3)
    out = []
    for r in range(n_rounds):
        probe = LinearProbe(seed=0).fit(X, labels)
        idx = A.select(name, X, labels, 8, seed=r, probe=probe, min_pool=0, subpool_params=sp)
        out.append(idx)
        if prefetch is not None:
            prefetch(idx, labels)
        labels[idx] = y[idx]
    return out


@pytest.mark.parametrize("ivf", [False, True])
@pytest.mark.parametrize("name", ["margin", "dropquery"])
def test_prefetch_fills_the_cache_and_never_changes_the_picks(digits, monkeypatch, name, ivf):
    if ivf:
        pytest.importorskip("faiss")
        monkeypatch.setattr(A, "IVF_MIN", 100)
    X, y = digits
    sp = dict(per_class=20, n_neighbors=15, size=300, tail=20)
    plain = _rounds(X, y, name, 5, sp)
    Geometry.clear_cache()
    searched, in_rounds = [], []
    real = A._search
    monkeypatch.setattr(A, "_search", lambda geo, rows, k: searched.append(np.asarray(rows).copy()) or real(geo, rows, k))

    def ahead(idx, labels):
        in_rounds.append(np.concatenate(searched) if searched else np.zeros(0, np.int64))
        searched.clear()
        assert A.prefetch(X, idx, n_neighbors=15) == idx.size  # new rows: all searched
        assert A.prefetch(X, idx, n_neighbors=15) == 0  # cached now
        cache = A._lists(Geometry.of(X), 15)
        assert all(int(r) in cache for r in idx)
        A.prefetch(X, np.flatnonzero(labels < 0)[:5], n_neighbors=15)  # rows never labelled: harmless
        searched.clear()

    got = _rounds(X, y, name, 5, sp, ahead)
    for a, b in zip(plain, got):
        np.testing.assert_array_equal(a, b)
    # every anchor of the rounds after the first was an initial label (searched in round 1) or a
    # pick prefetched: those rounds searched nothing
    assert in_rounds[0].size == 30 and all(s.size == 0 for s in in_rounds[1:])


def test_prefetch_of_part_of_a_batch_and_changed_labels_keep_the_picks(digits):
    X, y = digits
    sp = dict(per_class=20, n_neighbors=15, size=300, tail=20)
    labels = labelled(y, 3)
    probe = LinearProbe(seed=0).fit(X, labels)
    idx = A.select("margin", X, labels, 8, seed=1, probe=probe, min_pool=0, subpool_params=sp)
    A.prefetch(X, idx[:3], n_neighbors=15)  # the user labels rows that were not prefetched too
    labels[idx] = y[idx]
    labels[idx[0]] = -1  # one label undone, one changed
    labels[idx[1]] = (y[idx[1]] + 1) % 10
    probe = LinearProbe(seed=0).fit(X, labels)
    got = A.select("margin", X, labels, 8, seed=2, probe=probe, min_pool=0, subpool_params=sp)
    Geometry.clear_cache()
    np.testing.assert_array_equal(got, A.select("margin", X, labels, 8, seed=2, probe=probe, min_pool=0,
                                                subpool_params=sp))


def test_prefetch_stops_when_asked_and_rejects_bad_rows(digits, monkeypatch):
    pytest.importorskip("faiss")
    monkeypatch.setattr(A, "IVF_MIN", 100)  # the IVF path searches _PREFETCH_ROWS rows per call
    monkeypatch.setattr(A, "_PREFETCH_ROWS", 2)
    X, _ = digits
    calls = []
    assert A.prefetch(X, [5, 6, 7, 8, 9], should_stop=lambda: calls.append(1) or len(calls) > 2) == 4
    assert len(calls) == 3  # asked before each call of 2 rows
    assert A.prefetch(X, [5, 6, 7, 8, 9]) == 1  # the rest
    assert A.prefetch(X, []) == 0
    with pytest.raises(ValueError, match="rows must be in"):
        A.prefetch(X, [len(X)])
    with pytest.raises(ValueError, match="1-d array of row indices"):
        A.prefetch(X, [[1.5]])


def _wait_prefetch(s, timeout=120):
    """Until the worker's prefetch for the published batch is over (it runs after wait() returns)."""
    import time

    deadline = time.monotonic() + timeout
    with s._cond:
        while (s._prefetched or {}).get("target") != s._done:
            left = deadline - time.monotonic()
            assert left > 0, f"no prefetch for the published batch; status {s.status['error']}"
            s._cond.wait(left)
    return s._prefetched


def _label_batch(s, y, rows):
    """Label rows with their true classes as one snapshot (the worker cannot read the labels half-done)."""
    with s._cond:
        for c in np.unique(y[rows]):
            s.label_many(rows[y[rows] == c], str(c))


def _session_batches(X, y, prefetch: bool, monkeypatch):
    from alwidget import Session
    from alwidget.learner import Learner

    Geometry.clear_cache()
    batches = []
    with monkeypatch.context() as m:
        if not prefetch:
            m.setattr(Learner, "_prefetch", lambda *a: None)
        with Session(X, strategy="margin", device="cpu", batch_size=6) as s:
            _label_batch(s, y, np.arange(30))
            for _ in range(4):
                assert s.wait(timeout=120)
                batch = np.asarray(s.next_batch())
                if prefetch:
                    assert _wait_prefetch(s)["rows"] == batch.size  # all new rows, all searched ahead
                    cache = A._lists(Geometry.of(s.features), A.N_NEIGHBORS)
                    assert all(int(r) in cache for r in batch)
                batches.append(batch)
                _label_batch(s, y, batch)
            assert s.status["error"] is None
    return batches


def test_a_session_prefetches_the_batch_and_its_picks_do_not_depend_on_it(digits, monkeypatch):
    X, y = digits
    monkeypatch.setattr(A, "SUBPOOL_MIN", 1000)  # digits (1797 rows) counts as huge here
    plain = _session_batches(X, y, False, monkeypatch)
    ahead = _session_batches(X, y, True, monkeypatch)
    for a, b in zip(plain, ahead):
        np.testing.assert_array_equal(a, b)


def test_a_session_labels_outside_the_batch_undoes_and_labels_during_a_prefetch(digits, monkeypatch):
    import threading

    from alwidget import Session

    X, y = digits
    monkeypatch.setattr(A, "SUBPOOL_MIN", 1000)
    entered, release = threading.Event(), threading.Event()
    real, searched = A.prefetch, []

    def held(features, rows, **kw):  # the worker waits here until the test has labelled
        entered.set()
        release.wait(60)
        searched.append(real(features, rows, **kw))
        return searched[-1]

    with Session(X, strategy="margin", device="cpu", batch_size=5) as s:
        _label_batch(s, y, np.arange(30))
        assert s.wait(timeout=120)
        assert _wait_prefetch(s)["rows"] == 5
        outside = np.setdiff1d(np.flatnonzero(s.label_array() < 0), s.next_batch())[7]
        s.label(int(outside), str(y[outside]))  # not in the batch: never prefetched, searched by the round
        assert s.wait(timeout=120) and s.status["error"] is None
        s.undo()
        assert s.wait(timeout=120) and s.status["error"] is None and outside not in s.labels
        _wait_prefetch(s)
        monkeypatch.setattr(A, "prefetch", held)
        _label_batch(s, y, np.asarray(s.next_batch()))
        assert entered.wait(60)  # the worker is in its prefetch ...
        assert s._wait_batch(timeout=60)  # ... with the batch published: next_batch() does not wait for it
        stale_target = s._batch_done
        s.label(int(outside), str(y[outside]))  # a label during the prefetch
        release.set()
        assert s.wait(timeout=120) and s.status["error"] is None
        assert s._done != stale_target and len(s.next_batch()) == 5
        info = _wait_prefetch(s)  # the new batch's prefetch ran after the interrupted one
        cache = A._lists(Geometry.of(s.features), A.N_NEIGHBORS)
        assert searched[0] == 0  # the label stopped the stale prefetch before its first search
        assert info["target"] == s._done and all(int(r) in cache for r in s.next_batch())
        assert s.labels[int(outside)] == str(y[outside])


@pytest.mark.parametrize("names", [("margin", "entropy", "badge"), ("dropquery",)])
def test_lazy_strategies_never_gather_the_subpools_features_and_pick_the_same(digits, monkeypatch, names):
    X, y = digits
    labels = labelled(y, 6)
    probe = LinearProbe(seed=0).fit(X, labels)
    sp = dict(per_class=4, n_neighbors=15, size=200, tail=20)
    made = []
    real = A._GatheredOnRead.adopt.__func__
    monkeypatch.setattr(A._GatheredOnRead, "adopt", classmethod(lambda cls, *a, **k: made.append(real(cls, *a, **k))
                                                                 or made[-1]))
    for name in names:
        lazy = A.select(name, X, labels, 10, seed=3, probe=probe, min_pool=0, subpool_params=sp)
        assert made and made[-1]._source is not None  # its unit rows were never gathered as a whole
        with monkeypatch.context() as m:
            m.setattr(A, "LAZY_ROWS", frozenset())
            np.testing.assert_array_equal(lazy, A.select(name, X, labels, 10, seed=3, probe=probe, min_pool=0,
                                                         subpool_params=sp))
    geo, (_, rows) = made[-1], made[-1]._source
    np.testing.assert_array_equal(geo.rows([4, 0, 9]), normalize(X[rows[[4, 0, 9]]]))  # some rows, bitwise
    assert geo._source is not None
    np.testing.assert_array_equal(geo.X, normalize(X[rows]))  # read: the real rows, bitwise
    assert geo._source is None and geo.X.shape == (rows.size, X.shape[1])
    n = len(made)
    A.select("bald", X, labels, 10, seed=3, probe=probe, min_pool=0, subpool_params=sp)
    assert len(made) == n  # BALD reads the feature array itself: gathered


@pytest.mark.parametrize("ivf", [False, True])
def test_searching_no_rows_gives_empty_lists(digits, monkeypatch, ivf):
    if ivf:
        pytest.importorskip("faiss")
        monkeypatch.setattr(A, "IVF_MIN", 100)
    sims, idx = A._search(Geometry.of(digits[0]), np.zeros(0, np.int64), 20)
    assert sims.shape == idx.shape == (0, 20)


def test_the_tail_is_the_draw_from_the_rows_left_without_listing_them():
    """_tail draws the rows np.setdiff1d would list, with the same generator calls (small pools and
    pools over 10,000 rows, where numpy draws another way), so the subpool is what it was."""
    for trial in range(60):
        rng = np.random.default_rng(trial)
        n = int(rng.integers(1, 3000)) if trial % 3 else int(rng.integers(10_001, 300_000))
        gone = np.unique(rng.choice(n, int(rng.integers(0, n + 1)), replace=True)) if trial % 5 else np.zeros(0, int)
        tail, seed = int(rng.integers(0, 1200)), int(rng.integers(2**31))
        rest = np.setdiff1d(np.arange(n), gone)
        t = min(tail, rest.size)
        want = np.random.default_rng([seed, 43]).choice(rest, t, replace=False) if t else np.zeros(0, int)
        np.testing.assert_array_equal(A._tail(n, gone, tail, seed), want)


def test_anchors_lists_are_filtered_together_as_one_by_one():
    """_untaken on lists of two lengths, with taken rows, -1 padding and lists that run short."""
    rng = np.random.default_rng(0)
    n, k = 500, 6
    taken = rng.random(n) < 0.4
    have = {}
    for a in range(40):
        size = 12 if a % 3 else 30
        j = rng.choice(n, size, replace=False)
        if a % 7 == 0:
            j[-4:] = -1  # a list that reached the end of the pool
        have[a] = (rng.random(size).astype(np.float32), j)
    anchors_ = np.arange(40)[::-1].copy()
    sims, idx, short = A._untaken(have, anchors_, taken, k, n)
    want_short = []
    for i, a in enumerate(anchors_.tolist()):
        v, j = have[a]
        ok = (j >= 0) & ~taken[np.maximum(j, 0)]
        m = min(k, int(ok.sum()))
        if m < k and j.size < n and (j >= 0).all():
            want_short.append(a)
            assert (idx[i] == -1).all() and np.isneginf(sims[i]).all()
            continue
        np.testing.assert_array_equal(idx[i, :m], j[ok][:m])
        np.testing.assert_array_equal(sims[i, :m], v[ok][:m])
        assert (idx[i, m:] == -1).all()
    assert short == want_short and len(short) > 0


def test_best_first_is_the_stable_order_of_scores_with_ties():
    rng = np.random.default_rng(3)
    for trial in range(50):
        n = int(rng.integers(1, 400))
        score = rng.integers(0, 1 + trial % 9, n) / 8.0 if trial % 2 else rng.random(n)  # many ties, or none
        np.testing.assert_array_equal(A._best_first(score), np.lexsort((np.arange(n), -score)))


def test_a_restarted_process_reads_the_pools_index_from_an_empty_cache_then_from_its_file(tmp_path):
    # A user's path: the first session on a huge pool builds the index into an empty cache folder;
    # after a kernel restart the same pool reads it back (no build) and the picks are the same.
    pytest.importorskip("faiss")
    import os
    import subprocess
    import sys

    code = ("import json, numpy as np\n"
            "from sklearn.datasets import load_digits\n"
            "from alwidget import anchoral as A, ann\n"
            "A.IVF_MIN = 100\n"
            "X, y = load_digits(return_X_y=True)\n"
            "X = X.astype(np.float32)\n"
            "labels = np.full(len(y), -1)\n"
            "for c in range(10):\n"
            "    rows = np.flatnonzero(y == c)[:6]\n"
            "    labels[rows] = c\n"
            "built, real = [], ann.IVFIndex.__init__\n"
            "ann.IVFIndex.__init__ = lambda self, *a, **k: built.append(1) or real(self, *a, **k)\n"
            "sp = dict(per_class=4, n_neighbors=15, size=200, tail=20)\n"
            "idx, info = A.select('margin', X, labels, 10, seed=1, min_pool=0, subpool_params=sp, return_info=True)\n"
            "print(json.dumps({'built': len(built), 'approximate': info['anchoral']['approximate'], "
            "'picks': idx.tolist()}))\n")
    env = dict(os.environ, ALWIDGET_CACHE_DIR=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
            for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr[-2000:] + runs[1].stderr[-2000:]
    import json

    first, second = (json.loads(r.stdout.strip().splitlines()[-1]) for r in runs)
    assert first["built"] == 1 and second["built"] == 0 and first["approximate"] and second["approximate"]
    assert len(list((tmp_path / "indexes").glob("ivf-*.npz"))) == 1
    assert first["picks"] == second["picks"]
