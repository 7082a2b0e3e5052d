"""The density cold start on huge pools (alwidget.strategies._subsample), with lowered thresholds."""
import numpy as np
import pytest
from strategy_data import check_batch, digits_sample

from alwidget import strategies as S
from alwidget.geometry import Geometry
from alwidget.strategies import _subsample
from alwidget.strategies.auto import neighbour_ratio


@pytest.fixture
def small_threshold(monkeypatch):
    """Pools of 500 rows or more run the cold start on a 300-row subsample."""
    monkeypatch.setattr(_subsample, "SUBSAMPLE_MIN", 500)
    monkeypatch.setattr(_subsample, "SUBSAMPLE_SIZE", 300)


def _rows(X, seed=0):
    return _subsample.subsample_geometry(Geometry.of(X), 300, seed)[0]


def test_subsample_is_seeded_and_the_same_every_round(small_threshold):
    X, y = digits_sample()
    rows = _rows(X)
    assert rows.size == 300 and np.all(np.diff(rows) > 0)
    labels = np.full(len(y), -1)
    seen = []
    for _ in range(3):  # label each batch with its true classes, as a user would
        idx, info = S.select("typiclust", X, labels, 10, seed=0, return_info=True)
        check_batch(idx, labels, 10)
        assert np.isin(idx, rows).all()
        assert info["cold_subsample"] == {"rows": 300, "pool": 600, "outside_labelled": 0}
        assert "fixed random sample of 300 of the 600 images" in info["reason"]
        seen.append(idx)
        labels[idx] = y[idx]
    assert np.unique(np.concatenate(seen)).size == 30
    Geometry.clear_cache()  # a fresh process draws the same sample from the same seed
    assert np.array_equal(_rows(X.copy()), rows)
    assert not np.array_equal(_rows(X, seed=1), rows)


def test_picks_are_never_labelled_or_excluded(small_threshold):
    X, y = digits_sample()
    rows = _rows(X)
    labels = np.full(len(y), -1)
    labels[rows[:60:3]] = y[rows[:60:3]]  # 20 labelled in the sample: auto's cold start
    exclude = rows[1:200:2]  # 100 set aside in it
    for name in ("typiclust", "auto", "margin"):  # margin: one class labelled -> the cold start
        lab = labels.copy() if name != "margin" else np.where(labels == labels[rows[0]], labels, -1)
        kw = {"auto": {"n_classes": 10, "cold_start": "typiclust"}, "margin": {"n_classes": 10}}.get(name, {})
        idx, info = S.select(name, X, lab, 40, seed=3, exclude=exclude, return_info=True, **kw)
        check_batch(idx, lab, 40)
        assert not np.isin(idx, exclude).any()
        assert info["cold_subsample"]["rows"] == 300, name
        assert np.isin(idx, rows).all()


def test_a_short_subsample_is_topped_up_from_the_whole_pool(small_threshold):
    X, y = digits_sample()
    rows = _rows(X)
    labels = np.full(len(y), -1)
    labels[rows[5:]] = y[rows[5:]]  # 5 candidates left in the sample
    idx, info = S.select("typiclust", X, labels, 12, seed=0, return_info=True)
    check_batch(idx, labels, 12)
    assert np.isin(rows[:5], idx).all() and info["filled_random"] == 7


def _blobs():
    """Three far-apart blobs of 500, 400 and 300 rows (1,200 rows, 8-d)."""
    rng = np.random.default_rng(5)
    centres = np.eye(8, dtype=np.float32)[:3] * 10
    X = np.vstack([c + rng.standard_normal((s, 8)).astype(np.float32) for c, s in zip(centres, (500, 400, 300))])
    return X, np.repeat(np.arange(3), (500, 400, 300))


@pytest.mark.parametrize("inside", [False, True])
def test_a_labelled_row_outside_the_subsample_covers_its_cluster(monkeypatch, inside):
    monkeypatch.setattr(_subsample, "SUBSAMPLE_MIN", 1000)
    monkeypatch.setattr(_subsample, "SUBSAMPLE_SIZE", 600)
    X, blob = _blobs()
    rows = _subsample.subsample_geometry(Geometry.of(X), 600, 0)[0]
    big = np.flatnonzero(blob == 0)
    labelled = np.intersect1d(big, rows)[0] if inside else np.setdiff1d(big, rows)[0]
    labels = np.full(len(X), -1)
    labels[labelled] = 0
    idx, info = S.select("typiclust", X, labels, 2, seed=0, return_info=True)
    assert info["n_clusters_wanted"] == 3  # the outside label counts in K = L + B
    assert info["n_clusters"] == 3 and info["cold_subsample"]["outside_labelled"] == int(not inside)
    assert sorted(blob[idx]) == [1, 2]  # the biggest blob holds a label: the other two come first
    labels[:] = -1
    idx = S.select("typiclust", X, labels, 2, seed=0)
    assert sorted(blob[idx]) == [0, 1]  # without it, the two biggest


def test_auto_measures_the_ratio_on_the_subsample_and_says_so(small_threshold):
    X, y = digits_sample()
    labels = np.full(len(y), -1)
    idx, info = S.select("auto", X, labels, 10, seed=0, return_info=True)
    sub = _subsample.subsample_geometry(Geometry.of(X), 300, 0)[1]
    assert info["neighbour_ratio"] == neighbour_ratio(sub, 0)
    assert "measured on a 300-row subsample" in info["detail"]
    if info["strategy"] == "typiclust":
        assert "fixed random sample of 300 of the 600 images" in info["reason"]


def test_below_the_threshold_the_whole_pool_runs(monkeypatch):
    X, y = digits_sample()
    labels = np.full(len(y), -1)
    before = S.select("typiclust", X, labels, 10, seed=0, return_info=True)
    assert before[1]["cold_subsample"] is False and "sample" not in before[1]["reason"]
    monkeypatch.setattr(_subsample, "SUBSAMPLE_MIN", 601)  # one row short of the threshold
    monkeypatch.setattr(_subsample, "SUBSAMPLE_SIZE", 300)
    again = S.select("typiclust", X, labels, 10, seed=0, return_info=True)
    assert np.array_equal(before[0], again[0]) and again[1]["cold_subsample"] is False
    # a sample as big as the pool is the pool
    monkeypatch.setattr(_subsample, "SUBSAMPLE_MIN", 500)
    monkeypatch.setattr(_subsample, "SUBSAMPLE_SIZE", 600)
    assert np.array_equal(S.select("typiclust", X, labels, 10, seed=0), before[0])


def test_bad_settings_are_refused(monkeypatch):
    monkeypatch.setattr(_subsample, "SUBSAMPLE_SIZE", 0)
    with pytest.raises(ValueError, match="size"):
        _subsample.applies(10)


def test_session_cold_start_on_a_subsample(small_threshold):
    from alwidget import Session

    X, y = digits_sample()
    rows = _rows(X)
    s = Session(X, classes=[str(c) for c in range(10)], strategy="typiclust", device="cpu", batch_size=5)
    try:
        s.wait()
        first = s.next_batch()
        assert len(first) == 5 and np.isin(first, rows).all()
        st = s.status
        assert st["strategy_info"]["cold_subsample"]["rows"] == 300 and "fixed random sample" in st["reason"]
        s.label(int(first[0]), str(y[first[0]]))  # one class: still the cold start
        outside = int(np.setdiff1d(np.arange(len(y)), rows)[0])
        s.label(outside, str(y[outside]))  # a label from elsewhere (a search, the map)
        s.wait()
        nxt = s.next_batch()
        assert np.isin(nxt, rows).all() and not np.isin(nxt, [first[0], outside]).any()
        assert s.status["strategy_info"]["cold_subsample"]["outside_labelled"] == 1
    finally:
        s.close()
