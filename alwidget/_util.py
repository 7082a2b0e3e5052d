"""Small shared helpers: validation at the boundary, fingerprints, devices, cache paths,
atomic cache writes and the package's one thread-count policy.

Everything here is dependency-light so every layer may import it.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import uuid
from pathlib import Path

import numpy as np

__all__ = [
    "BackgroundFingerprint",
    "atomic_write",
    "available_cpus",
    "cache_dir",
    "check_features",
    "check_labels",
    "cpu_threads",
    "default_threads",
    "fingerprint",
    "limit_threads",
    "max_threads",
    "pass_workers",
    "resolve_device",
    "share_blocks",
]


def check_features(features, name: str = "features") -> np.ndarray:
    """Validate a (n_samples, n_features) array; return it as C-contiguous float32.

    Raises TypeError for non-numeric input and ValueError for wrong shapes,
    empty arrays and NaN/inf values, naming the argument and the fix.
    """
    if hasattr(features, "detach"):  # a torch tensor
        features = features.detach().cpu().numpy()
    try:
        arr = np.asarray(features)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be a 2-D numeric array, got {type(features).__name__}: {exc}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (n_samples, n_features), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); pass at least one sample with one feature")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not all(np.isfinite(block).all() for block in _row_blocks(arr)):
        bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
        raise ValueError(
            f"{name} contains NaN or infinite values in {bad.size} row(s) (first: {bad[:5].tolist()}); "
            "drop or repair those rows before labelling"
        )
    return arr


def check_labels(labels, n_samples: int, name: str = "labels") -> np.ndarray:
    """Validate an (n_samples,) int label array with -1 for unlabelled; return int64."""
    arr = np.asarray(labels)
    if arr.shape != (n_samples,):
        raise ValueError(f"{name} must have shape ({n_samples},) to match features, got {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"{name} must be integers (class ids, -1 for unlabelled), got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < -1:
        raise ValueError(f"{name} must be >= -1 (-1 marks unlabelled), found {int(arr.min())}")
    return arr


def check_k(k, name: str = "k") -> int:
    """Validate a positive batch size."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"{name} must be a positive integer, got {k!r}")
    if k <= 0:
        raise ValueError(f"{name} must be a positive integer, got {k}")
    return int(k)


def check_seed(seed) -> int:
    """A non-negative int seed, or a clear error."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed}")
    return int(seed)


def check_index(i, n: int) -> int:
    """One row number of a pool of n rows, or a clear error."""
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
        raise TypeError(f"index must be an int (a row of features), got {type(i).__name__} {i!r}")
    if not 0 <= i < n:
        raise ValueError(f"index {i} is out of range for {n} samples (valid: 0..{n - 1})")
    return int(i)


def check_indices(indices, n: int) -> np.ndarray:
    """A non-empty 1-D list or array of row numbers of a pool of n rows as int64, or a clear error."""
    if isinstance(indices, (str, bytes)) or not hasattr(indices, "__len__"):
        raise TypeError(f"indices must be a list or array of ints, got {type(indices).__name__}")
    arr = np.asarray(indices)
    if arr.ndim != 1:
        raise ValueError(f"indices must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("indices is empty; pass at least one index")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"indices must be integers, got dtype {arr.dtype}")
    bad = arr[(arr < 0) | (arr >= n)]
    if bad.size:
        raise ValueError(f"index {int(bad[0])} is out of range for {n} samples (valid: 0..{n - 1})")
    return arr.astype(np.int64)


#: Bytes per step of the finiteness check: a whole-array isfinite mask at 1M x 512 is 512 MB of
#: fresh pages (0.6-1.2 s of ``Session()``); in 16 MB blocks it stays in cache (0.12 s).
BLOCK_BYTES = 16 << 20
#: Bytes per update of the content hash (the digest of one whole update). A hash in a second thread
#: waits for the GIL between updates while the caller runs Python (5 ms, or a whole GIL-holding C call
#: such as an extension's import): 256 MB makes 8 waits at 1M x 512, and cancel() stops within 0.4 s.
HASH_BLOCK_BYTES = 256 << 20


def _row_blocks(arr: np.ndarray):
    """Consecutive row slices (views) of about :data:`BLOCK_BYTES` each."""
    rows = max(1, BLOCK_BYTES // max(1, arr[:1].nbytes))
    return (arr[a:a + rows] for a in range(0, arr.shape[0], rows))


def _hash_bytes(h, arr: np.ndarray, stop: threading.Event | None = None) -> bool:
    """Feed a C-contiguous array's bytes to ``h`` block by block (the digest of one whole update);
    False when ``stop`` was set before the end."""
    data, step = memoryview(arr).cast("B"), HASH_BLOCK_BYTES
    for a in range(0, len(data), step):
        if stop is not None and stop.is_set():
            return False
        h.update(data[a:a + step])
    return True


def _hash_header(arr: np.ndarray):
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{arr.shape}|{arr.dtype.str}|".encode())
    return h


def array_hash(arr: np.ndarray):
    """blake2b (16 bytes) over an array's shape, dtype and bytes; the one content-hash scheme."""
    arr = np.ascontiguousarray(arr)
    h = _hash_header(arr)
    _hash_bytes(h, arr)
    return h


def fingerprint(arr: np.ndarray) -> str:
    """Content hash of an array (shape, dtype and bytes): the key of every geometry cache."""
    return array_hash(arr).hexdigest()


class BackgroundFingerprint:
    """:func:`fingerprint` of an array, computed in a daemon thread above one block (hashlib
    releases the GIL while it hashes), so that the caller's own work overlaps the one sequential
    pass (2.7-3.4 s at 1M x 512 on this AMD host). ``result()`` waits for the value; ``cancel()``
    stops the pass at the next block (a caller that failed halfway)."""

    def __init__(self, arr: np.ndarray):
        self._arr = np.ascontiguousarray(arr)
        self._stop = threading.Event()
        self._out: list = []
        self._thread = None
        if self._arr.nbytes <= HASH_BLOCK_BYTES:  # a thread would cost more than it hides
            self._run()
        else:
            self._thread = threading.Thread(target=self._run, name="alwidget-fingerprint", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            h = _hash_header(self._arr)
            if _hash_bytes(h, self._arr, self._stop):
                self._out.append(h.hexdigest())
        except BaseException as exc:  # handed to result(), raised there
            self._out.append(exc)

    def result(self) -> str:
        if self._thread is not None:
            self._thread.join()
        if not self._out:
            raise RuntimeError("the fingerprint was cancelled before it finished")
        if isinstance(self._out[0], BaseException):
            raise self._out[0]
        return self._out[0]

    def cancel(self) -> None:
        self._stop.set()


def resolve_device(device="auto"):
    """'auto' -> CUDA when available else CPU; any torch device spec otherwise."""
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for but CUDA is not available; use device='auto' or 'cpu'")
    return dev


def cache_dir(*parts: str) -> Path:
    """The on-disk cache root ($ALWIDGET_CACHE_DIR, else $XDG_CACHE_HOME/alwidget, else ~/.cache/alwidget)."""
    root = os.environ.get("ALWIDGET_CACHE_DIR")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "alwidget")
    path = Path(root, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def limit_threads(n: int | None):
    """Cap BLAS/OpenMP and torch intra-op threads inside the block.

    Spin-waiting thread pools slow down badly when a browser and a kernel share
    two cores, so the interactive path runs with a small, fixed pool.
    """
    if n is None:
        yield
        return
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with _pool_controller().limit(limits=n):
            yield
    finally:
        torch.set_num_threads(old)


_CONTROLLER: list = [None, -1]  # [threadpoolctl.ThreadpoolController, len(sys.modules) when built]


def _pool_controller():
    """A threadpoolctl controller, rebuilt only when modules were imported since (a new one scans
    every loaded library: 0.7 ms, paid twice per selection round before)."""
    import sys

    from threadpoolctl import ThreadpoolController

    if _CONTROLLER[0] is None or _CONTROLLER[1] != len(sys.modules):
        _CONTROLLER[0], _CONTROLLER[1] = ThreadpoolController(), len(sys.modules)
    return _CONTROLLER[0]


def atomic_write(path, data) -> None:
    """Write ``path`` completely or not at all: through ``.tmp-<random>-<name>`` in the same
    folder, fsynced, then renamed over ``path`` (``os.replace``). ``data`` is bytes or a
    callable ``data(binary file)``. A writer killed at any moment leaves the old file (or
    none) plus at most a ``.tmp-*`` leftover, never a partial file under the real name; every
    cache (embeddings, projections, downloads) writes through here."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# ------------------------------------------------------------------ thread-count policy
# One policy for the package. Every count starts from the CPUs this process may actually
# use (its affinity mask: containers, taskset, Slurm, Ray workers) and respects a user's
# $OMP_NUM_THREADS. Spin-waiting OpenMP/BLAS pools slow down badly when they ask for more
# threads than there are idle cores (on 2 busy cores, 2 threads ran 2-4x slower than 1), so
# the interactive path leaves a core free and bulk work leaves out the busy ones.

def available_cpus() -> int:
    """CPUs this process may run on (``os.sched_getaffinity``; ``os.cpu_count`` elsewhere)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def _omp_limit() -> int | None:
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(env) if env.isdigit() and int(env) > 0 else None


def max_threads() -> int:
    """All usable CPUs, at most $OMP_NUM_THREADS: for work that owns the machine (a
    projection's kNN search given ``n_jobs=None``)."""
    n, omp = available_cpus(), _omp_limit()
    return min(n, omp) if omp else n


def default_threads() -> int:
    """Threads for interactive and background work (selection, retraining, geometry): all
    usable CPUs but one (the kernel, the browser), at most 4, at most $OMP_NUM_THREADS.
    Two CPUs -> 1 thread: on 2 busy cores one thread was 4x faster than two for the
    memory-bound per-pick updates."""
    return max(1, min(max_threads(), available_cpus() - 1, 4))


def cpu_threads() -> int:
    """Threads for bulk CPU work (embedding images): the usable CPUs minus those other
    processes keep busy (our share of the 1-minute load average), at most $OMP_NUM_THREADS.

    On a 2-core machine already loaded by other work, 2 threads embedded 2-3x slower than 1
    (measured with EfficientNet-Lite0), so busy cores are left out.
    """
    n = available_cpus()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows
        load = 0.0
    busy = int(load * n / max(n, os.cpu_count() or n) + 0.5)  # the load is machine-wide
    return max(1, min(max_threads(), n - busy))


def pass_workers() -> int:
    """Threads a pass over pool blocks shares them with (:func:`share_blocks`): 2 when torch runs
    one intra-op thread (the 2-CPU policy above) and a second CPU is usable, else 1 (torch's own
    threads already split each block). Blocks are handed out one at a time, nobody spin-waits:
    at 100k x 512 the probe's bf16 pass took 29-33 ms instead of 43 on two idle cores; its bare
    products 26 ms (serial 27) with one core kept busy by another process, where torch's 2
    intra-op threads took 37-103 ms (issue 12)."""
    import torch

    return 2 if torch.get_num_threads() == 1 and max_threads() >= 2 else 1


_HELPER: list = [None, 0]  # share_blocks' ThreadPoolExecutor, started on first use, and its process id
_HELPER_LOCK = threading.Lock()


def share_blocks(n_blocks: int, fn, should_stop=None, workers: int | None = None) -> bool:
    """Call ``fn(i)`` for every block ``i < n_blocks``, on this thread and ``workers - 1`` helper
    threads (default :func:`pass_workers`) that take the next block from one counter; False
    (some blocks not run) when ``should_stop()``, asked before each block, said so.

    ``fn`` must write disjoint outputs per block and release the GIL for its heavy work (torch
    ops do). A helper's exception is raised here once every taken block is finished."""
    import itertools
    from concurrent.futures import ThreadPoolExecutor

    workers = pass_workers() if workers is None else max(1, int(workers))
    counter, stop = itertools.count(), threading.Event()  # next(count) is atomic under the GIL

    def work():
        while not stop.is_set():
            if should_stop is not None and should_stop():
                stop.set()
                return
            i = next(counter)
            if i >= n_blocks:
                return
            try:
                fn(i)
            except BaseException:
                stop.set()
                raise

    if workers == 1 or n_blocks < 2:
        work()
        return not stop.is_set()
    with _HELPER_LOCK:
        if _HELPER[0] is None or _HELPER[1] != os.getpid():  # a forked child has none of its threads
            _HELPER[0], _HELPER[1] = ThreadPoolExecutor(max_workers=3, thread_name_prefix="alwidget-pass"), os.getpid()
        helpers = [_HELPER[0].submit(work) for _ in range(min(workers, 4) - 1)]
    try:
        work()
    finally:
        for h in helpers:
            h.exception()  # wait for its last block
    for h in helpers:
        h.result()
    return not stop.is_set()
