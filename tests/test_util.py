import numpy as np
import pytest
import torch

from alwidget import _util
from alwidget._util import (atomic_write, cache_dir, check_features, check_k, check_labels, fingerprint, limit_threads,
                            resolve_device)


def test_check_features_converts_to_contiguous_float32():
    x = np.arange(12, dtype=np.float64).reshape(3, 4)[:, ::2]
    out = check_features(x)
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.shape == (3, 2)
    np.testing.assert_array_equal(out, x)


def test_check_features_accepts_torch_tensor():
    assert check_features(torch.ones(2, 3)).shape == (2, 3)


@pytest.mark.parametrize(
    "bad, exc, words",
    [
        (np.ones(5), ValueError, "shape (n_samples, n_features)"),
        (np.ones((0, 3)), ValueError, "empty"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), ValueError, "NaN"),
        (np.array([[1.0, np.inf]]), ValueError, "NaN or infinite"),
        (np.array([["a", "b"]]), TypeError, "numeric"),
    ],
)
def test_check_features_rejects_bad_input_with_clear_message(bad, exc, words):
    with pytest.raises(exc, match=words.replace("(", r"\(").replace(")", r"\)")):
        check_features(bad)


def test_check_labels_and_k():
    assert check_labels([0, -1, 2.0], 3).dtype == np.int64
    with pytest.raises(ValueError, match="shape"):
        check_labels([0, 1], 3)
    with pytest.raises(ValueError, match=">= -1"):
        check_labels([0, -2, 1], 3)
    with pytest.raises(TypeError):
        check_labels([0.5, 1, 1], 3)
    assert check_k(np.int64(3)) == 3
    for bad in (0, -1):
        with pytest.raises(ValueError, match="positive"):
            check_k(bad)
    with pytest.raises(TypeError):
        check_k(2.5)


def test_fingerprint_depends_on_content_shape_and_dtype():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert fingerprint(a) == fingerprint(a.copy())
    assert fingerprint(a) != fingerprint(a.reshape(3, 2))
    assert fingerprint(a) != fingerprint(a.astype(np.float64))
    b = a.copy()
    b[1, 2] += 1e-6
    assert fingerprint(a) != fingerprint(b)


# Values of main before the block-wise hash: every geometry/projection cache is keyed by them.
GOLDEN = ["40c1d0d3623cb6df027a6d95d7201e06", "c2fb48ca131827a0b7c2420f89fb0058", "6e57cc9cba288cfa195681c5a928dde5"]


def _golden_arrays():
    a = np.random.default_rng(7).standard_normal((3000, 700)).astype(np.float32)
    return [a, np.arange(6, dtype=np.int64).reshape(2, 3), a[:, ::2]]


@pytest.mark.parametrize("block", [_util.HASH_BLOCK_BYTES, 4096, 1000])  # whole, many and uneven blocks
def test_fingerprint_values_do_not_change_with_blocks_or_threads(monkeypatch, block):
    monkeypatch.setattr(_util, "HASH_BLOCK_BYTES", block)
    arrays = _golden_arrays()
    assert [fingerprint(x) for x in arrays] == GOLDEN
    assert [_util.BackgroundFingerprint(x).result() for x in arrays] == GOLDEN
    big = _util.BackgroundFingerprint(arrays[0])
    assert (big._thread is not None) == (arrays[0].nbytes > block)  # small blocks: hashed in a thread


def test_hash_stops_at_the_next_block_when_cancelled():
    stop = _util.threading.Event()
    stop.set()
    h = _util._hash_header(np.ones((4, 4), np.float32))
    before = h.hexdigest()
    assert not _util._hash_bytes(h, np.ones((4, 4), np.float32), stop)
    assert h.hexdigest() == before  # no block was hashed


def test_check_features_finds_non_finite_values_in_any_block(monkeypatch):
    monkeypatch.setattr(_util, "BLOCK_BYTES", 64)  # 4 rows of 4 floats per block
    x = np.ones((30, 4), np.float32)
    assert check_features(x) is x  # validated as it is, not copied
    for row in (0, 13, 29):
        bad = x.copy()
        bad[row, 3] = np.nan if row % 2 else -np.inf
        with pytest.raises(ValueError, match=rf"1 row\(s\) \(first: \[{row}\]\)"):
            check_features(bad)


def test_resolve_device_and_cache_dir(tmp_path, monkeypatch):
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    monkeypatch.setenv("ALWIDGET_CACHE_DIR", str(tmp_path / "c"))
    d = cache_dir("emb")
    assert d == tmp_path / "c" / "emb" and d.is_dir()


def test_limit_threads_restores_torch_threads():
    before = torch.get_num_threads()
    with limit_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_limit_threads_caps_blas_pools_with_a_reused_controller():
    from threadpoolctl import threadpool_info

    from alwidget import _util

    before = [p["num_threads"] for p in threadpool_info()]
    for _ in range(2):  # the second block reuses the controller built by the first
        with limit_threads(1):
            assert all(p["num_threads"] == 1 for p in threadpool_info())
        assert [p["num_threads"] for p in threadpool_info()] == before
    built = _util._CONTROLLER[0]
    with limit_threads(1):
        pass
    assert _util._CONTROLLER[0] is built
    _util._CONTROLLER[1] = -1  # as if modules (maybe native libraries) were imported since: rebuilt
    with limit_threads(1):
        assert all(p["num_threads"] == 1 for p in threadpool_info())
    assert _util._CONTROLLER[0] is not built


def test_atomic_write_replaces_whole_files_and_leaves_nothing_on_failure(tmp_path):
    path = tmp_path / "x.npy"
    atomic_write(path, b"old")
    atomic_write(path, lambda f: np.save(f, np.arange(3)))
    assert np.load(path).tolist() == [0, 1, 2]

    def dies(f):
        f.write(b"half")
        raise KeyboardInterrupt  # a kill in the middle of the write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, dies)
    assert np.load(path).tolist() == [0, 1, 2]  # the old content, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]  # no temp file left behind


@pytest.fixture
def cpus(monkeypatch):
    """Pretend the process may run on ``n`` of 64 CPUs with a given load."""
    def set_(n, load=0.0, omp=None):
        monkeypatch.setattr(_util.os, "sched_getaffinity", lambda pid: set(range(n)), raising=False)
        monkeypatch.setattr(_util.os, "cpu_count", lambda: 64)
        monkeypatch.setattr(_util.os, "getloadavg", lambda: (load, load, load))
        if omp is None:
            monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        else:
            monkeypatch.setenv("OMP_NUM_THREADS", str(omp))
    return set_


def test_thread_policy_follows_affinity_and_omp_num_threads(cpus):
    from alwidget import geometry, session

    cpus(2)  # a 2-CPU container on a 64-core host
    assert (_util.available_cpus(), _util.max_threads(), _util.default_threads(), _util.cpu_threads()) == (2, 2, 1, 2)
    cpus(16)
    assert (_util.max_threads(), _util.default_threads(), _util.cpu_threads()) == (16, 4, 16)
    cpus(16, omp=2)  # the user's cap wins everywhere
    assert (_util.max_threads(), _util.default_threads(), _util.cpu_threads()) == (2, 2, 2)
    cpus(16, omp="garbage")
    assert _util.max_threads() == 16
    # one policy: Session and geometry ask the same function
    for n, omp in ((2, None), (8, None), (8, 3), (1, None)):
        cpus(n, omp=omp)
        assert session.default_threads() == geometry.default_threads() == _util.default_threads()


def test_cpu_threads_leaves_out_our_share_of_the_busy_cores(cpus):
    cpus(4, load=32.0)  # half of the 64-core host busy: 2 of our 4 CPUs
    assert _util.cpu_threads() == 2
    cpus(2, load=200.0)
    assert _util.cpu_threads() == 1  # never zero


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_share_blocks_runs_every_block_once_on_every_thread_count(workers):
    seen, threads = [], set()

    def fn(i):
        seen.append(i)
        threads.add(__import__("threading").get_ident())
        torch.ones(20_000).exp_()  # releases the GIL: the helpers get blocks too

    assert _util.share_blocks(64, fn, workers=workers)
    assert sorted(seen) == list(range(64))
    assert len(threads) <= workers


def test_share_blocks_stops_between_blocks_and_raises_a_helpers_error():
    done = []
    assert not _util.share_blocks(100, done.append, should_stop=lambda: len(done) >= 5, workers=2)
    assert 5 <= len(done) < 100

    def fail(i):
        if i == 3:
            raise ValueError("block 3")

    with pytest.raises(ValueError, match="block 3"):
        _util.share_blocks(50, fail, workers=2)


def test_pass_workers_is_two_only_on_one_torch_thread_with_a_second_cpu(monkeypatch):
    monkeypatch.setattr(_util, "max_threads", lambda: 2)
    with limit_threads(1):
        assert _util.pass_workers() == 2
    with limit_threads(2):
        assert _util.pass_workers() == 1  # torch's own threads split each block
    monkeypatch.setattr(_util, "max_threads", lambda: 1)
    with limit_threads(1):
        assert _util.pass_workers() == 1
