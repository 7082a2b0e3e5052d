"""Know when you are done: the accuracy estimate, the stop hint and suspect labels (alwidget.trust,
alwidget.monitor, the Session methods), on digits and on Fashion-MNIST EfficientNet features."""
from itertools import pairwise

import numpy as np
import pytest
from embed_data import embed_fashion_test
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from alwidget import trust
from alwidget.monitor import TrustMonitor
from alwidget.probe import LinearProbe
from alwidget.session import Session

M_TESTS = 30
N_PROBES, PER_PROBE = 10, 100  # 1,000 repetitions per sampling scheme


@pytest.fixture(scope="session")
def fashion(tmp_path_factory):
    """800 Fashion-MNIST test images (80 per class, seeded) embedded once with the demo encoder."""
    return embed_fashion_test(tmp_path_factory.mktemp("fashion-embeddings"), 80, seed=0)


def _features(request, name):
    return request.getfixturevalue(name)


# --------------------------------------------------------------------------- LURE

def test_uniform_proposal_gives_unit_weights():
    n, m = 500, 30
    q = 1.0 / (n - np.arange(m))  # uniform among the n - m + 1 items left at draw m
    assert np.allclose(trust.lure_weights(q, n), 1.0)
    # a full census is the exact mean, whatever the proposal was
    rng = np.random.default_rng(0)
    assert np.allclose(trust.lure_weights(rng.uniform(0.01, 1, 40), 40), 1.0)


def test_lure_and_interval_reject_bad_input():
    with pytest.raises(ValueError, match="q"):
        trust.lure_weights([0.1, 0.0], 10)
    with pytest.raises(ValueError, match="population"):
        trust.lure_weights(np.full(11, 0.1), 10)
    with pytest.raises(ValueError, match="interval"):
        trust.risk_estimate([0, 1], [1, 1], interval="normal")
    with pytest.raises(ValueError, match="at least one"):
        trust.proposal([])


def test_interval_hidden_below_ten_tests():
    few = trust.accuracy_estimate(np.ones(9, bool), np.full(9, 0.01), 1000)
    assert few["estimate"] == 1.0 and few["low"] is None and few["high"] is None and few["n_test"] == 9
    ten = trust.accuracy_estimate(np.r_[np.ones(9, bool), False], np.full(10, 0.01), 1000)
    assert 0 <= ten["low"] < ten["estimate"] < ten["high"] <= 1 and ten["method"] == "lure"
    assert trust.accuracy_estimate([], [], 10)["estimate"] is None


def _sequence(g, correct, rng, uniform):
    """One active-testing run as the monitor does it: draw without replacement, keep q, estimate."""
    left = np.ones(g.size, bool)
    qs, picks = [], []
    for _ in range(M_TESTS):
        rest = np.flatnonzero(left)
        q = np.full(rest.size, 1.0 / rest.size) if uniform else trust.proposal(g[rest])
        pos = trust.draw(q, rng)
        qs.append(q[pos])
        picks.append(rest[pos])
        left[rest[pos]] = False
    return trust.accuracy_estimate(correct[picks], qs, g.size)


@pytest.mark.parametrize("data", ["digits", "fashion"])
def test_estimate_unbiased_covers_and_beats_uniform(request, data):
    """1,000 runs at 30 test labels each for 200-label probes: unbiased, 95 % coverage, RMSE < uniform."""
    X, y = _features(request, data)
    rng = np.random.default_rng(1)
    err = {"lure": [], "uniform": []}
    covered = []
    for r in range(N_PROBES):
        labels = np.full(len(y), -1)
        pick = rng.choice(len(y), 200, replace=False)
        labels[pick] = y[pick]
        probe = LinearProbe(device="cpu", seed=r).fit(X, labels, n_classes=10)
        surrogate = LinearProbe(device="cpu", seed=r, **trust.surrogate_params()).fit(X, labels, n_classes=10)
        pool = np.flatnonzero(labels < 0)
        pred = probe.predict_proba()[pool].argmax(1)
        correct = pred == y[pool]
        g = trust.expected_loss(surrogate.predict_proba()[pool], pred)
        for scheme, errors in err.items():
            for _ in range(PER_PROBE):
                res = _sequence(g, correct, rng, uniform=scheme == "uniform")
                errors.append(res["estimate"] - correct.mean())
                if scheme == "lure":
                    covered.append(res["low"] <= correct.mean() <= res["high"])
    e = np.asarray(err["lure"])
    assert abs(e.mean()) < 2 * e.std(ddof=1) / np.sqrt(e.size)
    assert 0.90 <= np.mean(covered) <= 0.98
    rmse = {k: float(np.sqrt(np.mean(np.square(v)))) for k, v in err.items()}
    assert rmse["lure"] < rmse["uniform"], rmse


# --------------------------------------------------------------------------- stop hint

def test_kappa_equals_sklearn():
    rng = np.random.default_rng(0)
    for c in (2, 3, 10):
        for n in (5, 50, 500):
            a, b = rng.integers(0, c, n), rng.integers(0, c, n)
            b[: n // 2] = a[: n // 2]  # some agreement
            assert trust.cohen_kappa(a, b, c) == pytest.approx(cohen_kappa_score(a, b, labels=np.arange(c)))
    a = rng.integers(0, 2, 100)  # two of five classes used: the fixed label set changes nothing here
    b = np.where(rng.random(100) < 0.2, 1 - a, a)
    assert trust.cohen_kappa(a, b, 5) == pytest.approx(cohen_kappa_score(a, b, labels=np.arange(5)))
    assert trust.cohen_kappa(a, a, 5) == 1.0
    assert trust.cohen_kappa(np.zeros(7, int), np.zeros(7, int), 3) == 1.0  # sklearn: 0/0
    with pytest.raises(ValueError, match="length"):
        trust.cohen_kappa([0, 1], [0], 2)
    with pytest.raises(ValueError, match="class ids"):
        trust.cohen_kappa([0, 3], [0, 1], 3)


def test_stop_decision_guards():
    assert trust.checkpoint_interval(3) == 10 and trust.checkpoint_interval(25) == 25
    assert trust.mean_kappa([0.99, 1.0]) is None
    assert trust.mean_kappa([0.2, np.nan, 1.0, 1.0]) == pytest.approx(2 / 3)  # NaN counts as 0
    assert trust.stop_decision([1, 1, 1], [5, 5])
    assert not trust.stop_decision([1, 1], [5, 5])  # a full window of kappas first
    assert not trust.stop_decision([1, 1, 1], [5, 1])  # two labels of every class
    assert not trust.stop_decision([1, 1, 1], [5])  # two classes at least


def _oracle_run(X, y, n_rounds, batch=10, seed=0):
    """Margin sampling with an oracle, checkpoints taken by a TrustMonitor as in a Session."""
    from alwidget import strategies

    mon = TrustMonitor(X, seed=seed, device="cpu")
    labels = np.full(len(y), -1)
    probe = LinearProbe(device="cpu", seed=seed)
    names = [str(c) for c in range(10)]
    stops = []
    for r in range(n_rounds):
        fitted = (labels >= 0).any()
        idx = strategies.select("margin", X, labels, batch, seed=r, probe=probe if fitted else None, n_classes=10)
        labels[idx] = y[idx]
        probe.fit(X, labels, n_classes=10)
        mon.update(labels, labels, probe.predict_proba(), [], 10, batch)
        counts = np.bincount(labels[labels >= 0], minlength=10)
        stops.append((int((labels >= 0).sum()), {t: mon.stopping(counts, names, t)["stable"]
                                                 for t in (0.9, 0.95, 0.97, 0.99, 0.995)}))
    return mon, stops


def test_higher_threshold_never_stops_earlier(digits):
    X, y = digits
    mon, stops = _oracle_run(X, y, n_rounds=40)
    first = {t: next((n for n, s in stops if s[t]), np.inf) for t in stops[0][1]}
    ts = sorted(first)
    assert all(first[a] <= first[b] for a, b in pairwise(ts)), first
    assert first[0.9] < np.inf  # the hint does fire on digits within 400 labels
    cps = mon.history()["checkpoints"]
    assert all(b["n_labels"] - a["n_labels"] >= 10 for a, b in pairwise(cps))  # max(10, C) apart


def test_stopping_sentences():
    s = trust.stopping_sentence(True, 0.993, 6, 30)
    assert "stopped changing over the last 30 labels" in s and "0.993" in s
    assert "still changing" in trust.stopping_sentence(False, 0.9, 6, 30)
    assert "Too early" in trust.stopping_sentence(False, None, 2, 0)
    assert "cat" in trust.stopping_sentence(False, None, 0, 0, ["cat"])


# --------------------------------------------------------------------------- suspect labels

def test_folds_and_scores_by_hand():
    assert trust.n_folds([1, 3, 7]) == 3 and trust.n_folds([10, 20]) == 5 and trust.n_folds([1, 1, 9]) == 0
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    given = np.array([0, 1, 0, 0])
    assert np.allclose(trust.self_confidence(p, given), [0.7, 0.8, 0.2, 0.6])
    # t_0 = mean(0.7, 0.2, 0.6) = 0.5, t_1 = 0.8, t_2 = inf: item 2 is confidently 1? 0.7 < 0.8 -> no;
    # item 2 is not confidently 0 either (0.2 < 0.5) -> not flagged; none is off the diagonal
    assert not trust.confident_learning_flags(p, given).any()
    # t_0 = mean(0.7, 0.2) = 0.45, t_1 = mean(0.8, 0.3) = 0.55: item 2 is confidently 1 (labelled 0),
    # item 3 confidently 0 (labelled 1)
    given2 = np.array([0, 1, 0, 1])
    assert trust.confident_learning_flags(p, given2).tolist() == [False, False, True, True]
    a, u = trust.activelab_scores(p[:1], [0], np.array([[0.5, 0.3, 0.2]]), 3)
    assert a[0] == pytest.approx((2 * 0.7 + 1 / 3) / 3) and u[0] == pytest.approx((0.5 + 1 / 3) / 2)
    new = np.array([[0.4, 0.3, 0.3], [0.9, 0.05, 0.05]])  # scores (0.4 + 1/3)/2 = 0.37, 0.62
    df = trust.suspect_table(np.array([10, 11, 12, 13]), p, given2, new, ["a", "b", "c"], batch_size=1)
    assert df["index"].tolist() == [12, 13, 10, 11] and df["label"].tolist() == ["a", "b", "a", "b"]
    assert df["suggested"].tolist() == ["b", "a", "a", "b"] and df["flagged"].tolist() == [True, True, False, False]
    # re-checking item 12 ((2 * 0.2 + 1/3) / 3 = 0.24) beats labelling the best new item (0.37); item 10 does not
    assert df["ahead_of_new"].tolist() == [True, True, False, False]


def test_single_label_classes_are_not_scored(digits):
    X, y = digits
    labels = np.full(len(y), -1)
    for c in range(3):
        labels[np.flatnonzero(y == c)[:6]] = c
    lone = np.flatnonzero(y == 3)[0]
    labels[lone] = 3
    rows, proba = trust.out_of_sample_proba(X, labels, 10)
    assert lone not in rows and len(rows) == 18 and proba.shape == (18, 10)
    assert np.allclose(proba.sum(1), 1, atol=1e-5)


@pytest.mark.parametrize("data", ["digits", "fashion"])
def test_flipped_labels_rank_first(request, data):
    """300 labels, 10 % flipped at random: the cross-validated score finds them, in-sample does not."""
    X, y = _features(request, data)
    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.choice(np.flatnonzero(y == c), 30, replace=False) for c in range(10)])
    given = y[rows].copy()
    flip = rng.choice(rows.size, 30, replace=False)
    given[flip] = (given[flip] + rng.integers(1, 10, flip.size)) % 10
    names = [f"c{c}" for c in range(10)]
    with Session(X, classes=names, n_threads=1, device="cpu") as s:
        for c in range(10):
            s.label_many(rows[given == c], names[c])
        df = s.suspect_labels(300)
        in_sample = trust.self_confidence(s.predict_proba()[rows], given)
    assert list(df.columns[:4]) == ["index", "label", "suggested", "score"] and len(df) == 300
    assert df["score"].is_monotonic_increasing
    is_flip = np.isin(df["index"].to_numpy(), rows[flip])
    auc = roc_auc_score(is_flip, -df["score"].to_numpy())
    auc_in = roc_auc_score(np.isin(rows, rows[flip]), -in_sample)
    assert auc >= 0.85 and auc > auc_in, (auc, auc_in)
    assert df["flagged"].to_numpy()[is_flip].mean() > df["flagged"].to_numpy()[~is_flip].mean()


# --------------------------------------------------------------------------- in a Session

def _oracle_rounds(s, y, names, rounds, per_round=5):
    for _ in range(rounds):
        for i in s.next_batch()[:per_round]:
            s.label(int(i), names[y[i]])
        s.wait()


def test_session_test_labels_never_reach_training(digits):
    X, y = digits
    names = [str(c) for c in range(10)]
    with Session(X, classes=names, n_threads=1, device="cpu") as s:
        fits, batches = [], []
        fit = s.probe.fit
        s.probe.fit = lambda X_, labels, n_classes=None: (fits.append(labels.copy()), fit(X_, labels, n_classes))[1]
        s.check_model(on=True)
        E = s.trust.eval_rows()
        assert E.size == round(0.25 * len(y))
        for _ in range(16):
            batches.append(s.next_batch())
            _oracle_rounds(s, y, names, 1)
        tests = s.trust.test_rows()
        answered = tests[s.store.current_ids()[tests] >= 0]
        assert answered.size >= 10 and s.status["error"] is None
        assert all((f[E] == -1).all() for f in fits)  # no row of E ever trained the probe
        assert (s.label_array()[tests] == -1).all() and (s.store.current_ids()[answered] >= 0).all()
        assert s.store.state().test[answered].all() and s.status["n_test"] == answered.size
        assert all((~np.isin(b, E) | np.isin(b, tests)).all() for b in batches)
        est = s.accuracy_estimate()
        assert est["n_test"] == answered.size and 0 <= est["low"] <= est["estimate"] <= est["high"] <= 1
        assert "Estimated accuracy on new images like yours" in est["sentence"]


def test_schedule_one_test_per_five_labels(digits):
    X, y = digits
    names = [str(c) for c in range(10)]
    with Session(X, classes=names, n_threads=1, device="cpu") as s:
        s.check_model(on=True)
        while (s.label_array() >= 0).sum() < 50:
            i = int(s.next_batch()[0])
            s.label(i, names[y[i]])
        tests = s.trust.test_rows()
        answered = (s.store.current_ids()[tests] >= 0).sum()
        assert 10 <= answered <= 11  # due at 0, 5, ..., 50 training labels
        s.check_model(on=False)
        assert not np.isin(s.next_batch(), s.trust.eval_rows()).any()  # no more requests; E stays reserved


def test_browsing_an_evaluation_item_restarts_the_estimate(digits):
    X, y = digits
    names = [str(c) for c in range(10)]
    with Session(X, classes=names, n_threads=1, device="cpu") as s:
        s.check_model(on=True)
        E_size = s.trust.population_size
        _oracle_rounds(s, y, names, 6)
        drawn = s.trust.test_rows()
        old = drawn[s.store.current_ids()[drawn] >= 0]
        assert s.accuracy_estimate()["n_test"] == old.size > 0
        browsed = int(np.setdiff1d(s.trust.eval_rows(), s.trust.test_rows())[0])
        s.label(browsed, names[y[browsed]])
        est = s.accuracy_estimate()
        assert est["n_test"] == 0 and est["restarts"] == 1 and est["estimate"] is None
        assert browsed not in s.trust.eval_rows() and not np.isin(old, s.trust.eval_rows()).any()
        assert s.label_array()[browsed] == y[browsed]  # the browsed item trains
        assert s.store.state().test[old].all() and (s.label_array()[old] == -1).all()  # old tests stay tests
        _oracle_rounds(s, y, names, 3)
        assert s.accuracy_estimate()["n_test"] > 0 and s.trust.population_size == E_size - drawn.size - 1


def test_reopened_session_keeps_its_evaluation_population(digits, tmp_path):
    """E and the draws follow the items: reopening with the rows in another order keeps them."""
    X, y = digits
    names = [str(c) for c in range(10)]
    path = tmp_path / "labels.sqlite"
    keys = np.asarray([f"digit-{i}" for i in range(len(y))])
    with Session(X, classes=names, store=path, n_threads=1, device="cpu", keys=keys) as s:
        s.check_model(on=True)
        _oracle_rounds(s, y, names, 4)
        E, tests, est = keys[s.trust.eval_rows()], keys[s.trust.test_rows()], s.accuracy_estimate()
    perm = np.random.default_rng(0).permutation(len(y))
    with Session(X[perm], store=path, n_threads=1, device="cpu", keys=keys[perm]) as s:
        assert set(keys[perm][s.trust.eval_rows()]) == set(E)
        assert list(keys[perm][s.trust.test_rows()]) == list(tests)
        again = s.accuracy_estimate()
        assert again["n_test"] == est["n_test"] > 0 and again["on"] and again["estimate"] == est["estimate"]
        assert (s.label_array()[s.trust.test_rows()] == -1).all()
    with pytest.warns(UserWarning, match="no longer in this set"), \
            Session(X[:1500], store=path, n_threads=1, device="cpu", keys=keys[:1500]) as s:
        assert s.accuracy_estimate()["restarts"] == 1  # items of E left: the population changed


def test_unsure_or_skipped_test_requests(digits):
    X, y = digits
    names = [str(c) for c in range(10)]
    with Session(X, classes=names, n_threads=1, device="cpu") as s:
        s.check_model(on=True)
        _oracle_rounds(s, y, names, 3)
        n, size = s.accuracy_estimate()["n_test"], s.trust.population_size
        def pending():
            return [int(r) for r in s.trust.test_rows() if s.store.current_ids()[r] < 0 and r not in s.unsure]

        first = pending()[0]
        assert first in s.next_batch()  # a pending test request is in the batch
        s.mark_unsure([first])
        s.wait()
        assert first not in s.trust.test_rows() and first not in s.trust.eval_rows()
        assert s.trust.population_size == size - 1 and s.accuracy_estimate()["n_test"] == n
        s.wait()
        waiting = pending()[0]
        s.skip([waiting])
        s.wait()
        assert waiting in s.trust.test_rows() and waiting not in s.next_batch()  # it waits, it is not lost


def test_session_rejects_bad_settings(digits):
    X, _ = digits
    with Session(X, n_threads=1, device="cpu") as s:
        with pytest.raises(ValueError, match="every"):
            s.check_model(every=-1)
        with pytest.raises(ValueError, match="threshold"):
            s.stopping(threshold=1.5)
        assert "Turn on" in s.accuracy_estimate()["sentence"]
        assert s.suspect_labels(5).empty
        st = s.stopping()
        assert st["stable"] is False and st["n_checkpoints"] == 0 and st["threshold"] == 0.99


def test_trust_figure():
    est = [{"n_labels": n, "estimate": 0.8, "low": 0.7 if n > 10 else None, "high": 0.9 if n > 10 else None,
            "true_accuracy": 0.82} for n in (10, 20, 30)]
    fig = trust.trust_figure(est, kappas=[{"n_labels": 20, "kappa": 0.9}, {"n_labels": 30, "kappa": 0.95}])
    assert [t.name for t in fig.data] == ["95 % interval", "estimate", "true accuracy", "κ between checkpoints"]
    with pytest.raises(ValueError, match="lacks"):
        trust.trust_figure([{"n_labels": 1}])
