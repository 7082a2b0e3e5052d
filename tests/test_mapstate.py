"""MapState: what the map shows, and the messages each change produces (pure, no widget)."""
import numpy as np
import pytest

from alwidget import _serialize
from alwidget.mapstate import FLAG_SKIPPED, FLAG_UNSURE, MapState, fit_square, merge_batch, model_arrays


def state(n=6):
    return MapState(np.linspace(-1, 1, n, dtype=np.float32), np.zeros(n, np.float32))


def test_fit_square_keeps_the_aspect_ratio_inside_the_margin():
    x, y = fit_square(np.c_[np.arange(11) * 10.0, np.arange(11) * 2.0 + 5])
    assert x.dtype == np.float32 and abs(x.max() - 0.95) < 1e-6 and abs(x.min() + 0.95) < 1e-6
    assert np.isclose(y.max() - y.min(), 0.95 * 2 / 5, atol=1e-6), "y spans a fifth of x, as in the data"
    x, y = fit_square(np.ones((4, 2)))  # one point repeated: no division by zero
    assert np.isfinite(x).all() and (x == 0).all()


def test_model_arrays_quantise_one_minus_margin():
    pred, conf, unc = model_arrays(np.array([[0.9, 0.1, 0.0], [0.4, 0.35, 0.25]], np.float32), 2)
    assert pred.tolist() == [0, 0] and pred.dtype == np.int16
    np.testing.assert_allclose(conf, [0.9, 0.4])
    assert unc.tolist() == [round((1 - 0.8) * 255), round((1 - 0.05) * 255)]
    pred, conf, unc = model_arrays(None, 3)
    assert pred.tolist() == [-1, -1, -1] and unc.tolist() == [0, 0, 0]


def test_merge_keeps_open_cards_in_place_and_fills_freed_slots():
    done = np.zeros(20, bool)
    done[[11, 13]] = True  # answered since the batch was shown
    new = merge_batch([10, 11, 12, 13, 14], [12, 15, 10, 16, 17], done, 5)
    assert new.tolist() == [10, 15, 12, 16, 14]


def test_merge_compacts_only_when_suggestions_run_out_and_never_repeats():
    done = np.zeros(10, bool)
    done[[1, 2]] = True
    assert merge_batch([0, 1, 2, 3], [3, 0, 4], done, 4).tolist() == [0, 4, 3]
    assert merge_batch([], [5, 5, 6], np.zeros(10, bool), 3).tolist() == [5, 6]
    assert merge_batch([0, 1], [7, 8, 9], np.zeros(10, bool), 3).tolist() == [0, 1, 7]


def test_label_changes_are_found_and_sent_as_deltas_with_their_request():
    m = state()
    label = m.label.copy()
    label[[1, 4]] = [2, 0]
    flags = np.zeros(6, np.uint8)
    flags[5] = FLAG_UNSURE
    changed = m.set_labels(label, flags)
    assert changed.tolist() == [1, 4, 5]
    (content, bufs), = m.labels_message(changed, request=3)
    assert content == {"type": "labels", "version": 1, "request": 3}
    assert np.frombuffer(bufs[0], np.int32).tolist() == [1, 4, 5]
    assert np.frombuffer(bufs[1], np.int16).tolist() == [2, 0, -1]
    assert np.frombuffer(bufs[2], np.uint8).tolist() == [0, 0, FLAG_UNSURE]
    assert m.set_labels(label, flags).size == 0 and m.labels_message([]) == []


def test_huge_label_changes_are_chunked_below_the_message_limit():
    n = _serialize.CHUNK_BYTES // 7 * 2 + 5
    m = MapState(np.zeros(n, np.float32), np.zeros(n, np.float32))
    msgs = m.labels_message(m.set_labels(np.zeros(n, np.int16)))
    assert len(msgs) == 3 and len({c["version"] for c, _ in msgs}) == 1
    assert all(sum(len(b) for b in bufs) <= _serialize.CHUNK_BYTES for _, bufs in msgs)


def test_batch_merges_with_the_shown_one_unless_fresh():
    m = state(10)
    assert m.set_batch([1, 2, 3], 3) and m.batch.tolist() == [1, 2, 3]
    label = m.label.copy()
    label[2] = 0
    m.set_labels(label)
    assert m.set_batch([3, 1, 7, 8], 3) and m.batch.tolist() == [1, 7, 3]
    assert not m.set_batch([3, 1, 7], 3), "nothing changed"
    flags = np.zeros(10, np.uint8)
    flags[7] = FLAG_SKIPPED
    m.set_labels(label, flags)
    assert m.set_batch([8, 9], 3) and m.batch.tolist() == [1, 8, 3]
    assert m.set_batch([4, 5, 6], 3, fresh=True) and m.batch.tolist() == [4, 5, 6]


def test_messages_carry_arrays_in_chunks_then_one_commit():
    m = state(4)
    m.set_batch([2], 1)
    msgs = m.full_message()
    commit = msgs[-1][0]
    assert commit["type"] == "commit" and commit["reset"] and commit["n_points"] == 4
    names = [c["name"] for c, _ in msgs[:-1]]
    assert names == ["x", "y", "label", "flags", "pred", "uncert", "batch"]
    batch_msg = msgs[names.index("batch")]
    assert batch_msg[0]["dtype"] == "int32" and np.frombuffer(batch_msg[1][0], np.int32).tolist() == [2]
    again = m.arrays_message(["pred"])
    assert again[-1][0]["version"] == commit["version"] + 1 and not again[-1][0]["reset"]


def test_a_model_update_reports_change_and_no_model_stays_quiet():
    m = state(3)
    assert not m.set_model(None), "no model before and after: nothing to send"
    assert m.set_model(np.array([[0.2, 0.8]] * 3, np.float32)) and m.pred.tolist() == [1, 1, 1]
    assert not m.set_model(np.array([[0.2, 0.8]] * 3, np.float32)), "the same map: nothing to send"
    assert m.set_model(None) and (m.pred == -1).all()


def test_dataframe_names_classes():
    m = state(3)
    m.set_labels(np.array([1, -1, -1], np.int16))
    m.set_model(np.array([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5]], np.float32))
    df = m.dataframe(["a", "b"], ["x0", "x1", "x2"])
    assert df["label"].iloc[0] == "b" and df["label"].isna().tolist() == [False, True, True]
    assert df["prediction"].tolist() == ["a", "b", "a"]
    assert df["confidence"].iloc[1] == pytest.approx(0.7)
