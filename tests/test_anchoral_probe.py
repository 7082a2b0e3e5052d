"""The subpool's probe (alwidget.anchoral_probe.RowsProbe): DropQuery's one read of the rows gives
what the clean pass and the dropout passes gave apart (the passes bitwise, the clean scores to
rounding: they come from a product of another shape, which BLAS may sum in another order), and the
same picks."""
import numpy as np
import pytest

from alwidget import anchoral as A
from alwidget.geometry import Geometry
from alwidget.probe import LinearProbe
from strategy_data import some_labels as labelled


@pytest.fixture(autouse=True)
def _fresh_cache():
    Geometry.clear_cache()
    yield
    Geometry.clear_cache()


def gathered_dropout(probe, r, n_passes, p, seed):
    """The passes on the rows gathered first (what RowsProbe did before it streamed them)."""
    import torch

    cols = torch.from_numpy(np.flatnonzero(probe.seen_classes))
    w, b = probe._W[:, cols].T.contiguous(), probe._b[cols]
    xs = A._gather(probe.transform(None), r)
    return cols[probe._dropout_blocks(xs, w, b, n_passes, p, seed)].numpy()


def test_one_read_gives_the_clean_scores_and_the_passes(digits):
    X, y = digits
    probe = LinearProbe(seed=0, device="cpu").fit(X, labelled(y, 6, classes=range(7)), n_classes=10)
    rows = np.arange(5, 1700, 2)  # 848 rows: 3 full blocks of 256 and a partial one
    for seed in (0, 7):
        probe._proba = None  # the pool not scored: the wrapper scores its rows
        apart = A.RowsProbe(probe, rows)
        want_p, want_d = apart.predict_proba(), apart.predict_dropout(seed=seed)  # gathered, read twice
        np.testing.assert_array_equal(want_d, gathered_dropout(probe, rows, 3, 0.75, seed))
        one = A.RowsProbe(probe, rows)
        got_p, got_d = one.proba_and_dropout(n_passes=3, p=0.75, seed=seed)
        assert one._xs is None  # nothing gathered
        np.testing.assert_allclose(got_p, want_p, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(got_d, want_d)
        np.testing.assert_array_equal(one.predict_proba(), got_p)  # kept for later reads
        assert got_p[:, 7:].max() == 0  # classes without labels: probability 0, as before
    probe.predict_proba()  # the pool's scores exist: they are read, the passes still stream
    cached = A.RowsProbe(probe, rows)
    got_p, got_d = cached.proba_and_dropout(seed=3)
    np.testing.assert_array_equal(got_p, probe.predict_proba()[rows])
    np.testing.assert_array_equal(got_d, gathered_dropout(probe, rows, 3, 0.75, 3))
    with pytest.raises(ValueError, match="n_passes"):
        cached.proba_and_dropout(n_passes=0)


def test_streamed_passes_on_some_rows_equal_the_gathered_ones(digits):
    X, y = digits
    probe = LinearProbe(seed=1, device="cpu").fit(X, labelled(y, 5))
    rows = np.sort(np.random.default_rng(0).choice(len(y), 700, replace=False))
    rp = A.RowsProbe(probe, rows)
    some = np.arange(3, 700, 3)
    np.testing.assert_array_equal(rp.predict_dropout(seed=4, rows=some), gathered_dropout(probe, rows[some], 3, 0.75, 4))
    blocks = rp.predict_dropout(seed=4, blocks=[0, 2])  # 256 + 188 of our rows, as if gathered
    np.testing.assert_array_equal(blocks, gathered_dropout(probe, rows[np.r_[0:256, 512:700]], 3, 0.75, 4))
    rp.transform()  # gathered now: the passes read the gathered rows, with the same result
    np.testing.assert_array_equal(rp.predict_dropout(seed=4), gathered_dropout(probe, rows, 3, 0.75, 4))


def test_dropquery_picks_are_the_same_with_one_read_as_with_two(digits, monkeypatch):
    """Over rounds whose subpool changes, an undo and a class seen for the first time: the same
    batches with RowsProbe's one read as with the clean pass and the passes apart (the fallback
    DropQuery takes for any other probe)."""
    X, y = digits
    sp = dict(per_class=4, n_neighbors=20, size=600, tail=60)
    labels = labelled(y, 3, classes=range(8))  # classes 8 and 9 arrive later
    probe = LinearProbe(seed=0, device="cpu")
    rounds = []
    for r in range(6):
        probe.fit(X, labels, n_classes=10)
        got = {}
        for arm in ("one read", "apart"):
            probe._proba = None
            with monkeypatch.context() as m:
                if arm == "apart":
                    m.delattr(A.RowsProbe, "proba_and_dropout")
                got[arm], info = A.select("dropquery", X, labels, 10, seed=r, probe=probe, min_pool=0,
                                          subpool_params=sp, return_info=True)
            assert info["anchoral"]["subpool"] > 256 and info["dropout_rows"] > 256  # several blocks
        np.testing.assert_array_equal(got["one read"], got["apart"])
        rounds.append(got["one read"])
        if r == 2:  # undo: the last batch's labels taken back
            labels[rounds[-2]] = -1
        elif r == 3:  # a new class
            labels[np.flatnonzero(y == 8)[:3]] = 8
        else:
            labels[got["one read"]] = y[got["one read"]]
    assert len({tuple(b) for b in rounds}) == len(rounds)  # the rounds differ: the subpool moved
