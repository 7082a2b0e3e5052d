"""The compiled loops of ProbCover's delta search against plain numpy references."""
import numpy as np
import pytest

from alwidget import _cover_kernels as K
from alwidget.strategies._cover import greedy_coverage


def sorted_sample(n=300, d=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    d2 = ((X[:, None] - X[None]) ** 2).sum(-1).astype(np.float32)
    np.fill_diagonal(d2, 0.0)
    order = np.argsort(d2, axis=1).astype(np.int16)
    return d2, np.take_along_axis(d2, order, 1), order


def run(order, cnt, need, b, covered=None, gain=None, counts=None, steps=0, n_cov=0):
    covered = np.zeros(cnt.size, bool) if covered is None else covered
    gain = cnt.copy() if gain is None else gain
    counts = np.zeros(max(b, 1), np.int64) if counts is None else counts
    return K.greedy_extend(order, cnt, covered, gain, counts, steps, n_cov, need, b), covered, gain, counts


@pytest.mark.parametrize("t", [2.0, 6.0, 12.0])
def test_greedy_extend_covers_as_the_dense_greedy(t):
    d2, srt, order = sorted_sample()
    cnt = (srt < np.float32(t)).sum(1).astype(np.int64)
    A = d2 < np.float32(t)
    for b in (1, 3, 10, 25):
        want = round(greedy_coverage(A, b) * len(A))
        (steps, n_cov, state), covered, _, counts = run(order, cnt, want, b)
        assert state == 1 and n_cov == covered.sum() == want and steps <= b
        assert list(counts[:steps]) == sorted(set(counts[:steps]))  # every step adds rows
        if want < len(A):  # one row more is out of reach of b greedy balls
            assert run(order, cnt, want + 1, b)[0][2] == 0


def test_greedy_extend_resumes_to_the_same_counts():
    # Stopped early at a small need, then resumed with a larger budget: the same counts as one run.
    _, srt, order = sorted_sample(seed=1)
    cnt = (srt < np.float32(6.0)).sum(1).astype(np.int64)
    (s1, n1, st1), covered, gain, counts = run(order, cnt, 40, 30)
    assert st1 == 1 and n1 >= 40
    (s2, n2, _), _, _, counts = run(order, cnt, 250, 30, covered, gain, counts, s1, n1)
    (s3, n3, _), _, _, whole = run(order, cnt, 250, 30)
    assert (s2, n2) == (s3, n3) and s2 > s1
    np.testing.assert_array_equal(counts[:s2], whole[:s3])


def test_greedy_extend_states():
    _, srt, order = sorted_sample(n=50)
    ones = np.ones(50, np.int64)  # tiny radius: each ball is its own point
    (steps, n_cov, state), *_ = run(order, ones, 10, 5)
    assert (steps, n_cov, state) == (0, 0, 0)  # five balls of one can never cover ten: stops at once
    (steps, n_cov, state), *_ = run(order, ones, 5, 5)
    assert (steps, n_cov, state) == (5, 5, 1)
    (steps, n_cov, state), *_ = run(order, ones, 50, 60)
    assert (steps, n_cov, state) == (50, 50, 1)
    full = np.full(50, 50, np.int64)
    (steps, n_cov, state), covered, gain, counts = run(order, full, 50, 3)
    assert (steps, n_cov, state) == (1, 50, 1)
    assert run(order, full, 51, 3, covered, gain, counts, steps, n_cov)[0][2] == -1  # nothing left to add


def test_counts_below_within_brackets():
    _, srt, _ = sorted_sample(n=60)
    for t in (0.0, 3.0, 8.0, 1e9):
        want = (srt < np.float32(t)).sum(1)
        lo = np.zeros(60, np.int64)
        K.counts_below(srt, np.float32(t), lo, np.full(60, 60, np.int64))
        np.testing.assert_array_equal(lo, want)
        lo = (srt < np.float32(t / 2)).sum(1).astype(np.int64)
        K.counts_below(srt, np.float32(t), lo, (srt < np.float32(t * 2 + 1)).sum(1).astype(np.int64))
        np.testing.assert_array_equal(lo, want)


def test_row_prefixes_keeps_each_rows_entries_below_the_radius():
    rng = np.random.default_rng(2)
    lens = rng.integers(0, 6, size=40)
    indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    w = np.concatenate([np.sort(rng.random(k)) for k in lens]).astype(np.float32)
    ind = rng.integers(0, 40, size=w.size).astype(np.int32)
    for d2 in (0.0, 0.3, 0.5, 2.0):
        ip, joined = K.row_prefixes(indptr, ind, w, np.float32(d2))
        keep = w < np.float32(d2)
        np.testing.assert_array_equal(joined, ind[keep])
        np.testing.assert_array_equal(np.diff(ip), [keep[a:b].sum() for a, b in zip(indptr[:-1], indptr[1:])])


def test_kernels_work_where_no_cache_directory_is_writable():
    # numba refuses cache=True when no locator can write; the module then compiles per process.
    import subprocess
    import sys

    code = ("import numba.core.caching as c\n"
            "(getattr(c, 'CacheImpl', None) or c._CacheImpl)._locator_classes = []  # nowhere to write\n"
            "import numpy as np\n"
            "from alwidget import _cover_kernels as K\n"
            "lo = np.zeros(2, np.int64)\n"
            "srt = np.array([[0.0, 1.0], [0.5, 2.0]], np.float32)\n"
            "K.counts_below(srt, np.float32(0.7), lo, np.full(2, 2, np.int64))\n"
            "assert lo.tolist() == [1, 1], lo\n"
            "assert K.counts_below._cache.__class__.__name__ == 'NullCache'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_first_process_compiles_into_an_empty_cache_and_a_restart_loads_it(tmp_path):
    # A new user's path: the first process compiles into an empty cache, a restarted kernel loads
    # the compiled loops from it (no compile) and finds the same budget delta.
    import os
    import subprocess
    import sys

    code = ("import numpy as np\n"
            "from alwidget.geometry import Geometry\n"
            "from alwidget.strategies import _cover\n"
            "from alwidget import _cover_kernels as K\n"
            "X = np.random.default_rng(0).normal(size=(400, 16)).astype(np.float32)\n"
            "d = _cover.budget_delta(Geometry.of(X), 20, 0.6)['delta']\n"
            "hits = sum(sum(f.stats.cache_hits.values()) for f in (K.counts_below, K.greedy_extend))\n"
            "misses = sum(sum(f.stats.cache_misses.values()) for f in (K.counts_below, K.greedy_extend))\n"
            "print(repr(d), hits, misses)\n")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
            for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr[-2000:] + runs[1].stderr[-2000:]
    (d1, hits1, misses1), (d2, hits2, misses2) = (r.stdout.split() for r in runs)
    assert int(misses1) > 0 and any(tmp_path.rglob("*.nbi"))  # compiled and written
    assert int(hits2) > 0 and int(misses2) == 0  # loaded, nothing compiled again
    assert d1 == d2
