import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pandas as pd
import pytest

import torch

from alwidget import LabelStore, Session
from alwidget.store import StoreMismatchError

# The GPU path runs the same tests wherever CUDA is present.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture
def session(digits):
    X, _ = digits
    s = Session(X, strategy="random", device="cpu", batch_size=5)
    yield s
    s.close()


def test_label_label_many_undo(session):
    s = session
    assert s.labels == {} and s.classes == []
    s.label(3, "cat")
    s.label_many([10, 11, 12], "dog")
    s.label(4, 1)  # a class id: "dog"
    assert s.labels == {3: "cat", 4: "dog", 10: "dog", 11: "dog", 12: "dog"}
    assert s.classes == ["cat", "dog"]
    assert s.label_array()[[3, 4, 10, 5]].tolist() == [0, 1, 1, -1]
    assert s.undo() == {4: None}
    assert s.undo() == {10: None, 11: None, 12: None}  # label_many is one action
    s.unlabel([3])
    assert s.labels == {}
    assert s.undo() == {3: "cat"}
    assert s.labels == {3: "cat"}
    assert s.undo() == {3: None}
    assert s.undo() is None
    assert s.status["can_undo"] is False


def test_predictions_and_batches_follow_labels(digits):
    X, y = digits
    with Session(X, strategy="random", device="cpu", batch_size=8) as s:
        assert s.wait(timeout=60)
        assert s.predict_proba() is None  # no model before labels
        first = s.next_batch()
        assert first.dtype == np.int64 and len(first) == 8 and len(set(first.tolist())) == 8
        for i in first:
            s.label(int(i), f"digit {y[i]}")
        assert s.wait(timeout=60)
        proba = s.predict_proba()
        assert proba.shape == (len(y), len(s.classes)) and proba.dtype == np.float32
        np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
        batch = s.next_batch()
        assert len(batch) == 8 and not set(batch.tolist()) & set(first.tolist())
        assert (s.label_array()[batch] < 0).all()
        # A larger k than the background batch is selected on the spot.
        big = s.next_batch(30)
        assert len(big) == 30 and (s.label_array()[big] < 0).all()
        # Same seed, same labels -> same batch.
        with Session(X, strategy="random", device="cpu", batch_size=8) as twin:
            assert np.array_equal(twin.next_batch(), first)
        # Refresh passes over the current suggestions.
        other = s.next_batch(refresh=True)
        assert len(other) == 8 and not set(other.tolist()) & set(batch.tolist())
        st = s.status
        assert st["n_labels"] == 8 and sum(st["counts"].values()) == 8
        assert st["active_strategy"] == "random" and st["reason"]
        assert st["error"] is None and st["busy"] is False
        assert st["last_retrain_ms"] >= 0 and st["last_select_ms"] >= 0


@pytest.mark.parametrize("strategy", ["random", "auto"])
@pytest.mark.parametrize("device", DEVICES)
def test_probe_learns_through_the_session(digits, device, strategy):
    X, y = digits
    with Session(X, classes=[str(d) for d in range(10)], strategy=strategy, device=device, batch_size=100) as s:
        batch = s.next_batch()
        for c in range(10):
            s.label_many(batch[y[batch] == c], str(c))
        s.wait(timeout=60)
        rest = s.label_array() < 0
        acc = (s.predict_proba().argmax(1)[rest] == y[rest]).mean()
        assert acc > 0.8
        assert s.status["device"].startswith(device) and s.status["error"] is None
        # The next batch comes from the model-based phase when the strategy is auto (10 per class).
        assert len(s.next_batch()) == 100
        if strategy == "auto":  # a model-based phase (10 per class: margin; see strategies.auto)
            assert s.status["active_strategy"] in ("dropquery", "margin") and s.status["strategy_info"]["phase"] >= 1


def test_new_classes_can_appear_any_time(session, digits):
    X, y = digits
    s = session
    zeros, ones = np.flatnonzero(y == 0)[:3], np.flatnonzero(y == 1)[:3]
    s.label_many(zeros, "zero")
    s.label_many(ones, "one")
    s.wait(timeout=60)
    assert s.predict_proba().shape == (len(y), 2)
    s.label(int(np.flatnonzero(y == 2)[0]), "two")
    # Before the retrain the old predictions are padded with a zero column for the new class.
    assert s.predict_proba().shape == (len(y), 3)
    s.wait(timeout=60)
    proba = s.predict_proba()
    assert proba.shape == (len(y), 3) and proba[:, 2].max() > 0.5
    assert s.add_class("three") == 3
    assert s.classes == ["zero", "one", "two", "three"]
    assert s.status["counts"] == {"zero": 3, "one": 3, "two": 1, "three": 0}


def test_predict_proba_hands_out_copies_of_the_probes_scores(session, digits):
    X, y = digits
    s = session
    s.label_many(np.flatnonzero(y == 0)[:3], "zero")
    s.label_many(np.flatnonzero(y == 1)[:3], "one")
    s.wait(timeout=60)
    first = s.predict_proba()
    assert first.flags.writeable  # the published scores are the probe's read-only cache, never the caller's
    np.testing.assert_array_equal(first, s.probe.pool_proba())
    first[:] = 0
    assert s.predict_proba().sum() > 0 and s.probe.pool_proba().sum() > 0


def test_declared_classes_keep_their_ids(digits):
    X, _ = digits
    with Session(X, classes=["a", "b", "c"], strategy="random", device="cpu") as s:
        s.label(0, 2)
        assert s.labels == {0: "c"}
        with pytest.raises(ValueError, match="class id 3 is unknown"):
            s.label(1, 3)


def test_bursts_coalesce_into_one_background_run(digits):
    X, y = digits
    with Session(X, strategy="random", device="cpu") as s:
        s.wait(timeout=60)
        release = threading.Event()
        versions = []

        def slow_subscriber(sess):
            versions.append(sess.status["labels_version"])
            release.wait(timeout=30)

        s.subscribe(slow_subscriber)
        s.label(0, "a")
        deadline = time.monotonic() + 30
        while not versions and time.monotonic() < deadline:
            time.sleep(0.01)
        assert versions, "the worker never ran"
        for i in range(1, 40):  # a burst while the worker is busy
            s.label(i, "b" if i % 2 else "a")
        release.set()
        assert s.wait(timeout=60)
        s.unsubscribe(slow_subscriber)
        assert len(versions) == 2  # the first run, then one run for the whole burst
        assert versions[-1] == s.status["labels_version"]
        assert s.status["n_labels"] == 40
        assert not s.status["busy"]


def test_label_returns_before_the_worker_finishes(digits):
    X, _ = digits
    with Session(X, strategy="random", device="cpu") as s:
        s.wait(timeout=60)
        gate = threading.Event()
        s.subscribe(lambda sess: gate.wait(timeout=30))
        s.label(0, "a")
        s.label(1, "b")  # the worker is blocked in the subscriber: label must not wait for it
        assert s.labels == {0: "a", 1: "b"}
        assert s.wait(timeout=0.05) is False
        gate.set()
        assert s.wait(timeout=60)


def test_worker_errors_are_reported_not_fatal(digits):
    X, _ = digits
    with Session(X, strategy="random", device="cpu") as s:
        real_fit = s.probe.fit

        def broken_fit(*args, **kwargs):
            raise RuntimeError("simulated failure")

        s.probe.fit = broken_fit
        s.label(0, "a")
        s.label(1, "b")
        assert s.wait(timeout=60)
        assert "simulated failure" in s.status["error"]
        assert s.labels == {0: "a", 1: "b"}  # labels are safe regardless
        s.probe.fit = real_fit
        s.label(2, "a")
        assert s.wait(timeout=60)
        assert s.status["error"] is None and s.predict_proba() is not None

        def bad_subscriber(sess):
            raise ValueError("subscriber broke")

        s.subscribe(bad_subscriber)
        s.label(3, "b")
        assert s.wait(timeout=60)
        assert "subscriber broke" in s.status["error"]
        s.label(4, "b")  # still alive
        assert s.wait(timeout=60) and s.labels[4] == "b"


def test_subscriber_may_read_the_session(digits):
    X, _ = digits
    with Session(X, strategy="random", device="cpu", batch_size=4) as s:
        seen = []

        def read_back(sess):  # inside the worker: these must not block
            sess.wait()
            seen.append((len(sess.next_batch()), sess.predict_proba() is not None))

        s.subscribe(read_back)
        s.label(0, "a")
        s.label(1, "b")
        assert s.wait(timeout=60)
        assert seen and seen[-1] == (4, True)


def test_strategy_switch_and_status(digits):
    X, y = digits
    with Session(X, device="cpu", batch_size=5) as s:
        assert s.strategy == "auto"
        s.wait(timeout=120)
        st = s.status
        assert st["active_strategy"] in ("typiclust", "probcover") and "cold start" in st["strategy_info"]["detail"]
        assert "until" in st["reason"]  # the plain sentence says what auto does until when
        s.strategy = "margin"
        for i in range(20):
            s.label(i, str(y[i]))
        s.wait(timeout=120)
        assert s.status["strategy"] == "margin" and s.status["active_strategy"] == "margin"
        with pytest.raises(ValueError, match="unknown strategy"):
            s.strategy = "nope"
        s.batch_size = 7
        s.wait(timeout=120)
        assert len(s.next_batch()) == 7


def test_reopen_restores_labels_and_undo(tmp_path, digits):
    X, _ = digits
    path = tmp_path / "labels.sqlite"
    with Session(X, store=path, strategy="random", device="cpu") as s:
        s.label(5, "a")
        s.label_many([6, 7], "b")
        s.label(8, "c")
    with Session(X, store=str(path), strategy="random", device="cpu") as s:
        assert s.labels == {5: "a", 6: "b", 7: "b", 8: "c"}
        assert s.classes == ["a", "b", "c"]
        s.wait(timeout=60)
        assert s.predict_proba().shape == (len(X), 3)  # the model is rebuilt from the store
        assert s.undo() == {8: None}
        assert s.undo() == {6: None, 7: None}
    with Session(X, store=path, strategy="random", device="cpu") as s:
        assert s.labels == {5: "a"}
    # Bare arrays are matched by row number with a content check that tolerates float noise:
    # fewer rows keep the labels of the rows still there; noise is accepted; other data is not.
    with Session(X[:100], store=path, strategy="random", device="cpu") as s:
        assert s.labels == {5: "a"}
    noisy = X + np.float32(3e-8) * np.sign(X)
    with Session(noisy, store=path, strategy="random", device="cpu") as s:
        assert s.labels == {5: "a"}
    other = X.copy()
    other[5] = X[6]
    with pytest.raises(StoreMismatchError, match="different data.*keys="):
        Session(other, store=path, strategy="random")
    with pytest.raises(StoreMismatchError, match="64-dimensional.*keys="):
        Session(np.hstack([X, X]), store=path, strategy="random")
    # A LabelStore object may be passed in; the session leaves it open.
    store = LabelStore(path, n_samples=len(X))
    with Session(X, store=store, strategy="random", device="cpu") as s:
        s.label(9, "d")
    assert store.current()[9] == "d"
    store.close()


def test_export(tmp_path, session):
    s = session
    s.label_many([2, 1], "x")
    s.label(7, "y")
    df = s.to_dataframe(names=[f"f{i}" for i in range(len(s.features))])
    assert df[["index", "name", "label"]].values.tolist() == [[1, "f1", "x"], [2, "f2", "x"], [7, "f7", "y"]]
    out = s.export(tmp_path / "labels.csv")
    assert pd.read_csv(out)["label"].tolist() == ["x", "x", "y"]
    out = s.export(tmp_path / "labels.parquet")
    assert pd.read_parquet(out)["index"].tolist() == [1, 2, 7]
    with pytest.raises(ValueError, match="parquet"):
        s.export(tmp_path / "labels.json")


def test_session_fingerprint_is_the_content_hash_when_hashed_in_a_thread(digits, monkeypatch):
    from alwidget import _util
    from alwidget._pool import known_fingerprint
    from alwidget.items import user_items

    X, _ = digits
    monkeypatch.setattr(_util, "HASH_BLOCK_BYTES", 4096)  # the digits pool spans many blocks: a second thread
    with Session(X, strategy="random", device="cpu") as s:
        assert s.fingerprint == _util.fingerprint(X.astype(np.float32))
        assert known_fingerprint(s.features) == s.fingerprint  # the probe and Geometry.of need not hash again
    with pytest.raises(ValueError, match="items has 3 entries"):  # a failure while the hash runs
        Session(X, items=user_items(["a", "b", "c"], 3), device="cpu")


def test_bad_input_raises_clear_errors(digits):
    X, _ = digits
    bad = X.copy()
    bad[4, 2] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        Session(bad)
    with pytest.raises(ValueError, match="n_samples, n_features"):
        Session(X[0])
    with pytest.raises(ValueError, match="unknown strategy"):
        Session(X, strategy="best")
    with pytest.raises(ValueError, match="batch_size"):
        Session(X, batch_size=0)
    with pytest.raises(TypeError, match="store"):
        Session(X, store=3)
    with pytest.raises(ValueError, match="duplicates"):
        Session(X, classes=["a", "a"])
    with Session(X, strategy="random", device="cpu") as s:
        with pytest.raises(ValueError, match="out of range"):
            s.label(len(X), "a")
        with pytest.raises(ValueError, match="out of range"):
            s.label(-1, "a")
        with pytest.raises(ValueError, match="out of range"):
            s.label_many([0, len(X) + 5], "a")
        with pytest.raises(TypeError, match="index must be an int"):
            s.label(1.5, "a")
        with pytest.raises(TypeError, match="cls must be"):
            s.label(1, 2.5)
        with pytest.raises(TypeError, match="cls must be"):
            s.label(1, None)
        with pytest.raises(ValueError, match="non-empty"):
            s.label(1, "")
        with pytest.raises(ValueError, match="k must be a positive"):
            s.next_batch(0)
        with pytest.raises(ValueError, match="empty"):
            s.label_many([], "a")
        assert s.labels == {}  # nothing was written by the failed calls
    with pytest.raises(RuntimeError, match="closed"):
        s.label(0, "a")


CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from alwidget import Session

    X = np.load(sys.argv[1])
    s = Session(X, store=sys.argv[2], strategy="random", device="cpu", batch_size=5)
    print("ready", flush=True)
    i = 0
    while i < len(X) // 2:
        if i % 7 == 6:
            idx = [i, len(X) // 2 + i]  # indices no later write touches
            s.label_many(idx, f"c{i % 3}")
            print("many", idx[0], idx[1], f"c{i % 3}", flush=True)
        else:
            s.label(i, f"c{i % 3}")
            print("one", i, f"c{i % 3}", flush=True)
        i += 1
    """
)


def test_acknowledged_labels_survive_sigkill(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5000, 16)).astype(np.float32)
    np.save(tmp_path / "X.npy", X)
    store = tmp_path / "labels.sqlite"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "X.npy"), str(store)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    acked = {}
    try:
        line = proc.stdout.readline()
        assert line.strip() == "ready", proc.stderr.read()
        while len(acked) < 300:
            parts = proc.stdout.readline().split()
            if not parts:
                break
            if parts[0] == "one":
                acked[int(parts[1])] = parts[2]
            elif parts[0] == "many":
                acked[int(parts[1])] = acked[int(parts[2])] = parts[3]
        os.kill(proc.pid, signal.SIGKILL)  # mid-run: the child is labelling as fast as it can
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert len(acked) >= 300
    with Session(X, store=store, strategy="random", device="cpu") as s:
        labels = s.labels
        missing = {i: c for i, c in acked.items() if labels.get(i) != c}
        assert not missing, f"{len(missing)} acknowledged label(s) lost"
        assert len(labels) >= len(acked)


_EXIT_BUSY = """
import sys
import numpy as np
from alwidget import Session
X = np.random.default_rng(0).standard_normal((20000, 128)).astype(np.float32)
for j in range(3):
    s = Session(X, store=f"{sys.argv[1]}/s{j}.sqlite", device="cpu")
    s.subscribe(lambda s: print("update", s.status["n_labels"], flush=True))
    for i in range(30):
        s.label(i + 40 * j, "abc"[i % 3])
print("leaving", flush=True)
"""  # ends without close() while three workers retrain


def test_a_script_that_ends_without_close_exits_cleanly(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", _EXIT_BUSY, str(tmp_path)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Fatal" not in r.stderr and "Traceback" not in r.stderr
    for j in range(3):
        with LabelStore(tmp_path / f"s{j}.sqlite", n_samples=20000) as st:
            assert st.n_labelled == 30


def test_negative_seed_is_refused_at_the_boundary(digits):
    X, _ = digits
    with pytest.raises(ValueError, match="non-negative"):
        Session(X, seed=-1)


def test_unsure_skip_and_recent_through_the_session(digits):
    X, _ = digits
    with Session(X, strategy="random", device="cpu", batch_size=5) as s:
        s.label_many([0, 1], "a")
        s.label(2, "b")
        s.mark_unsure([3])
        s.wait()
        batch = s.next_batch()
        s.skip(batch[:2])
        s.wait()
        again = s.next_batch()
        assert not set(batch[:2]) & set(again.tolist())  # skipped items are set aside
        assert 3 not in again.tolist() and s.unsure == [3]
        assert s.label_array()[3] == -1 and s.status["n_unsure"] == 1
        assert [r["index"] for r in s.recent(3)] == [3, 2, 0]
        s.undo()  # the skip
        assert s.store.state().skip_age[batch[0]] == -1
