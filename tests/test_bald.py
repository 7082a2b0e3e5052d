"""BALD, PowerBALD and BatchBALD (alwidget.strategies.bald) on the probe's consistent dropout masks."""
import numpy as np
import pytest
from sklearn.datasets import load_digits
from strategy_data import check_batch, digits_sample, some_labels

from alwidget import strategies as S


@pytest.fixture(scope="module")
def digits():
    return digits_sample()


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
