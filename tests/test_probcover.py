"""ProbCover (alwidget.strategies.probcover): greedy coverage, the budget's delta, the covered state, large pools."""
import numpy as np
import pytest
from geometry_data import brute_dist
from strategy_data import check_batch, digits_sample, some_labels

from alwidget import strategies as S
from alwidget.cover_geometry import ball_graph
from alwidget.geometry import Geometry
from alwidget.strategies.typiclust import ladder_up


@pytest.fixture(scope="module")
def digits():
    return digits_sample()


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
