"""The Session's worker (alwidget.learner): on huge pools the batch is published before the whole
pool's scores, with the same picks, test requests and estimate as a round that scores first."""
import threading

import numpy as np
import pytest

from alwidget import Session
from alwidget import anchoral as A
from alwidget.geometry import Geometry
from alwidget.learner import ByRow, Learner
from alwidget.probe import LinearProbe


@pytest.fixture(autouse=True)
def _huge(monkeypatch):
    Geometry.clear_cache()
    monkeypatch.setattr(A, "SUBPOOL_MIN", 1000)  # digits (1797 rows) counts as huge here
    yield
    Geometry.clear_cache()


def label_rows(s, y, rows):
    """Label rows with their true classes as one snapshot (the worker never sees half of them)."""
    with s._cond:
        for c in np.unique(y[rows]):
            s.label_many(rows[y[rows] == c], str(c))


class Recorder:
    """A subscriber that notes what each publication showed; can hold the worker on a call."""

    def __init__(self):
        self.calls, self.hold_next = [], None
        self.entered, self.release = threading.Event(), threading.Event()

    def __call__(self, s):
        self.calls.append((s.proba_version, tuple(s.next_batch(wait=False).tolist()), s._busy))
        if self.hold_next is not None and len(self.calls) >= self.hold_next:
            self.hold_next = None
            self.entered.set()
            self.release.wait(60)


def test_by_row_reads_the_exact_scores_of_the_rows(digits):
    X, y = digits
    labels = np.full(len(y), -1)
    labels[:40] = y[:40]
    probe = LinearProbe(device="cpu").fit(X, labels)
    rows = np.array([5, 1700, 3, 3])
    scores = ByRow(probe, len(X))
    assert scores.shape == (len(X), 10)
    np.testing.assert_allclose(scores[rows], probe.pool_proba()[rows], atol=1e-6)
    assert (scores[rows].argmax(1) == probe.pool_proba()[rows].argmax(1)).all()


def test_the_batch_comes_before_the_pools_scores_and_both_reach_subscribers(digits, monkeypatch):
    X, y = digits
    with Session(X, strategy="margin", device="cpu", batch_size=5) as s:
        label_rows(s, y, np.arange(30))
        assert s.wait(timeout=120)
        rec = Recorder()
        s.subscribe(rec)
        first = s.predict_proba()
        version = s.proba_version
        entered, release = threading.Event(), threading.Event()
        real = LinearProbe.pool_proba

        def held(probe, **kw):  # the whole-pool pass waits until the test has looked
            entered.set()
            release.wait(60)
            return real(probe, **kw)

        monkeypatch.setattr(LinearProbe, "pool_proba", held)
        rec.calls.clear()
        batch = np.asarray(s.next_batch())
        label_rows(s, y, batch)
        assert entered.wait(60)
        new = s.next_batch()  # the batch is there while the pool is still being scored
        assert len(new) == 5 and not np.isin(new, batch).any()
        assert not s.wait(timeout=0.2) and s.status["busy"]
        np.testing.assert_array_equal(s.predict_proba(), first)  # the map keeps the last scores
        assert s.proba_version == version
        release.set()
        assert s.wait(timeout=120) and s.status["error"] is None
        assert s.proba_version == version + 1 and s.status["last_rescore_ms"] >= 0
        np.testing.assert_array_equal(s.predict_proba(), real(s.probe))
        assert not np.array_equal(s.predict_proba(), first)
        # two publications for the round: the batch with the old scores, then the new scores
        assert [c[0] for c in rec.calls] == [version, version + 1]
        assert rec.calls[0][1] == rec.calls[1][1] == tuple(new.tolist())


def _rounds(X, y, early: bool, monkeypatch, check: bool):
    """Batches, scores, estimate and test draws of 5 rounds on the same labels."""
    Geometry.clear_cache()
    out = []
    with monkeypatch.context() as m:
        if not early:
            m.setattr(Learner, "_early_batch", lambda self: False)
        with Session(X, strategy="margin", device="cpu", batch_size=6) as s:
            if check:
                s.check_model(True, every=2)
            label_rows(s, y, np.arange(30))
            for _ in range(5):
                assert s.wait(timeout=120)
                batch = np.asarray(s.next_batch())
                out.append((batch, s.predict_proba()))
                label_rows(s, y, batch)
            assert s.wait(timeout=120) and s.status["error"] is None
            est = s.accuracy_estimate()
            draws = [int(r) for r, _ in s.trust._state["draws"]]
            kappas = [c["kappa"] for c in s.trust._checkpoints]
    return out, (est["estimate"], est["n_test"]), draws, kappas


@pytest.mark.parametrize("check", [False, True])
def test_an_early_batch_picks_tests_and_estimates_what_a_scored_round_does(digits, monkeypatch, check):
    X, y = digits
    scored = _rounds(X, y, False, monkeypatch, check)
    early = _rounds(X, y, True, monkeypatch, check)
    for (b1, p1), (b2, p2) in zip(scored[0], early[0]):
        np.testing.assert_array_equal(b1, b2)
        np.testing.assert_array_equal(p1, p2)
    assert scored[1:] == early[1:]
    if check:  # the monitor drew tests and answered them through the by-row reads
        assert early[1][1] >= 5 and len(early[2]) >= 5
    assert len(early[3]) >= 2  # stop-hint checkpoints were taken on the stop set's rows


def test_a_label_while_the_batch_is_shown_skips_the_stale_rescore(digits, monkeypatch):
    X, y = digits
    calls = []
    real = LinearProbe.pool_proba
    monkeypatch.setattr(LinearProbe, "pool_proba", lambda probe, **kw: calls.append(1) or real(probe, **kw))
    with Session(X, strategy="margin", device="cpu", batch_size=5) as s:
        label_rows(s, y, np.arange(30))
        assert s.wait(timeout=120)
        rec = Recorder()
        rec.hold_next = 1  # hold the worker in the first publication after the next label
        s.subscribe(rec)
        version, n_calls = s.proba_version, len(calls)
        batch = np.asarray(s.next_batch())
        label_rows(s, y, batch[:2])
        assert rec.entered.wait(60)  # the batch is published; the pool is not scored yet
        label_rows(s, y, batch[2:])  # the user labels on
        rec.release.set()
        assert s.wait(timeout=120) and s.status["error"] is None
        assert len(calls) == n_calls + 1  # only the latest round scored the pool
        assert s.proba_version == version + 1
        np.testing.assert_array_equal(s.predict_proba(), real(s.probe))  # the latest model's scores
        assert set(batch.tolist()) <= set(s.labels)  # every label kept


def test_small_pools_publish_once(digits, monkeypatch):
    X, y = digits
    monkeypatch.setattr(A, "SUBPOOL_MIN", 10**9)
    with Session(X, strategy="margin", device="cpu", batch_size=5) as s:
        assert s.wait(timeout=120)
        rec = Recorder()
        s.subscribe(rec)
        label_rows(s, y, np.arange(30))
        assert s.wait(timeout=120)
        assert len(rec.calls) == 1 and s.status["last_rescore_ms"] is None
        assert rec.calls[0][0] == s.proba_version


def test_a_label_during_the_pools_rescore_stops_it(digits, monkeypatch):
    from alwidget import probe as probe_mod

    X, y = digits
    monkeypatch.setattr(probe_mod, "BLOCK_BYTES", 64 * 4 * 100)  # 100-row blocks
    entered, release, results = threading.Event(), threading.Event(), []
    real = LinearProbe.pool_proba

    def held(probe, should_stop=None):  # the first pass waits, mid-pool, for the test's next label
        def stop():
            if not entered.is_set():
                entered.set()
                release.wait(60)
            return should_stop()

        results.append(real(probe, should_stop=stop))
        return results[-1]

    with Session(X, strategy="margin", device="cpu", batch_size=5) as s:
        label_rows(s, y, np.arange(30))
        assert s.wait(timeout=120)
        version = s.proba_version
        monkeypatch.setattr(LinearProbe, "pool_proba", held)
        batch = np.asarray(s.next_batch())
        label_rows(s, y, batch[:1])
        assert entered.wait(60)  # the batch is out; the pool's pass has begun
        label_rows(s, y, batch[1:3])
        release.set()
        assert s.wait(timeout=120) and s.status["error"] is None
        assert results[0] is None and results[-1] is not None  # the stale pass stopped, the latest ran
        assert s.proba_version == version + 1  # only the latest model's scores were published
        np.testing.assert_array_equal(s.predict_proba(), results[-1])


def test_a_huge_pool_builds_its_search_index_ahead_without_blocking_rounds(digits, monkeypatch):
    """Neither the cold start's rounds nor a first subpool round wait for the index built ahead."""
    pytest.importorskip("faiss")
    X, y = digits
    monkeypatch.setattr(A, "IVF_MIN", 1000)  # the IVF path on digits
    monkeypatch.setattr(A, "INDEX_CACHE", False)  # built here, not read from an earlier test's file
    entered, release, real = threading.Event(), threading.Event(), A.ann.IVFIndex

    def held(*args, **kw):  # the build ahead waits until the test has run a round
        entered.set()
        release.wait(60)
        return real(*args, **kw)

    monkeypatch.setattr(A.ann, "IVFIndex", held)
    from alwidget import _pool

    _pool.clear_pool_cache()
    with Session(X, strategy="typiclust", device="cpu", batch_size=5) as s:
        assert entered.wait(60)  # building, before any label; the probe's pool is built already
        built, real_pool = [], _pool._Pool
        monkeypatch.setattr(_pool, "_Pool", lambda *a, **k: built.append(1) or real_pool(*a, **k))
        label_rows(s, y, np.arange(20))
        assert s.wait(timeout=120)  # a round on the Geometry (TypiClust) while the build holds its own lock
        assert s.status["error"] is None and len(s.next_batch()) == 5
        assert built == []  # the round's fit found the pool standardised ahead
        s.strategy = "margin"  # a subpool round while the index is still building: the whole pool, no wait
        label_rows(s, y, np.arange(20, 30))
        assert s.wait(timeout=120) and s.status["error"] is None and len(s.next_batch()) == 5
        st = s.status
        assert st["strategy_info"]["anchoral"] is False and st["strategy_info"]["index_pending"]
        assert "index" in st["reason"] and not release.is_set()  # the build was still held all along
        release.set()
        s._indexer.join(60)
        memo = Geometry.of(s.features).scratch("anchoral_ivf")
        index = memo["index"]
        label_rows(s, y, np.arange(30, 40))  # subpools: the round searches with the index built ahead
        assert s.wait(timeout=120) and s.status["error"] is None
        info = s.status["strategy_info"]
        assert memo["index"] is index and info["anchoral"]["approximate"] and "index_pending" not in info


HUGE_CHILD = """
import sys
import numpy as np
from alwidget import Session, anchoral
anchoral.SUBPOOL_MIN, anchoral.IVF_MIN = 1000, 1000  # digits count as huge: early batch, index ahead
X, y = np.load(sys.argv[1]), np.load(sys.argv[2])
s = Session(X, classes=[str(c) for c in range(10)], store=sys.argv[3], strategy="margin", device="cpu",
            batch_size=5)
print("ready", s.labels == {}, flush=True)
done = []
for _ in range(int(sys.argv[4])):
    for i in s.next_batch():  # the user labels the batch as it comes, before the map is rescored
        s.label(int(i), str(y[i]))
        done.append(int(i))
        print("acked", int(i), flush=True)
if sys.argv[5] == "check":
    assert s.wait(timeout=120) and s.status["error"] is None, s.status["error"]
    print("proba", s.predict_proba() is not None, "batch", len(s.next_batch()), flush=True)
"""


def test_a_huge_pool_session_killed_mid_labelling_resumes_in_a_new_process(digits, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    pytest.importorskip("faiss")
    X, y = digits
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    store, script = tmp_path / "labels.sqlite", tmp_path / "child.py"
    script.write_text(HUGE_CHILD)
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    args = [sys.executable, str(script), str(tmp_path / "X.npy"), str(tmp_path / "y.npy"), str(store)]
    proc = subprocess.Popen(args + ["1000", "go"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    acked = []
    try:
        assert proc.stdout.readline().split() == ["ready", "True"], proc.stderr.read()  # a first run
        while len(acked) < 40:
            parts = proc.stdout.readline().split()
            assert parts, proc.stderr.read()
            acked.append(int(parts[1]))
        os.kill(proc.pid, signal.SIGKILL)  # the kernel dies while it labels, rescores and searches
    finally:
        proc.kill()
        proc.wait(timeout=30)
    again = subprocess.run(args + ["2", "check"], capture_output=True, text=True, env=env, timeout=300)
    out = again.stdout.split("\n")
    assert again.returncode == 0, again.stderr
    assert out[0] == "ready False" and "proba True batch 5" in again.stdout  # resumed, both phases done
    with Session(X, store=store, device="cpu") as s:  # every acknowledged label came back, none lost
        assert {i: str(y[i]) for i in acked}.items() <= s.labels.items()
        assert len(s.labels) >= len(acked) + 10
