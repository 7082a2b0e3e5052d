"""auto (alwidget.strategies.auto): its phases, the cold start by the neighbour ratio, exploring missing classes."""
import numpy as np
import pytest
from strategy_data import digits_sample, some_labels

from alwidget import strategies as S
from alwidget.geometry import Geometry
from alwidget.strategies import auto as auto_mod


@pytest.fixture(scope="module")
def digits():
    return digits_sample()


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
    late = some_labels(y, 6)
    late[y == 9] = -1  # 5.4 per class, a class still missing: margin's phase, and its words
    _, info = S.select("auto", X, late, 5, **kw)
    assert info["strategy"] == "margin" and not info["exploring"] and "hardest" in info["reason"]
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
