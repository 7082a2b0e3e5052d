"""DropQuery (alwidget.strategies.dropquery): dropout flips, candidates, k-means on a sample."""
import numpy as np
import pytest
from strategy_data import check_batch, digits_sample

from alwidget import strategies as S
from alwidget.geometry import Geometry, kmeans


@pytest.fixture(scope="module")
def digits():
    return digits_sample()


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
