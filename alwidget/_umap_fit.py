"""umap-learn plumbing behind :mod:`alwidget.project`: progress, thread pools, the kNN graph, the fit.

Nothing here validates input or knows about the canvas or the cache (project does); this module
only drives umap-learn the way project's docstring explains.
"""
from __future__ import annotations

import contextlib
import threading
import warnings
from typing import Callable

import numpy as np

from ._util import max_threads
from .geometry import knn

ProgressCallback = Callable[[float, str], None]


def knn_graph(X: np.ndarray, k: int, report: ProgressCallback) -> tuple[np.ndarray, np.ndarray]:
    """Exact Euclidean kNN graph with each row first (umap-learn's layout of precomputed_knn).

    Returns (indices (N, k) int64, distances (N, k) float32): :func:`alwidget.geometry.knn`
    (the package's one kNN) for the k - 1 nearest others, after the row itself at distance 0.
    """
    n = X.shape[0]
    dist, idx = knn(X, k - 1, exclude_self=True,
                    progress=lambda done, total: report(done / total, f"exact kNN graph: {done:,}/{total:,} points"))
    self_col = np.arange(n, dtype=np.int64)[:, None]
    return np.hstack([self_col, idx]), np.hstack([np.zeros((n, 1), np.float32), dist])


# --------------------------------------------------------------------------- progress inside umap-learn

# umap-learn's layout loop is `for n in tqdm(range(n_epochs), **tqdm_kwds)` with
# tqdm imported into umap.layouts. tqdm offers no callback (and in a notebook it
# draws a widget into whatever cell is running), so the name is replaced once by
# a dispatcher: threads that registered a hook get epoch callbacks and no bar;
# every other caller gets umap-learn's own tqdm unchanged.
_epoch_hooks = threading.local()
_patch_lock = threading.Lock()


def prepare_umap() -> None:
    """Install the epoch dispatcher and silence one warning, once per process."""
    import umap.layouts as layouts

    with _patch_lock:
        # We hand umap-learn a kNN graph without a search index on purpose (we
        # never call .transform). catch_warnings is not thread-safe, so a narrow
        # process-wide filter hides that warning; re-added on every fit because
        # an enclosing catch_warnings (pytest, notebooks) may have dropped it.
        warnings.filterwarnings(
            "ignore", message=r"precomputed_knn\[2\] \(knn_search_index\)", category=UserWarning, module="umap"
        )
        if getattr(layouts.tqdm, "_alwidget_dispatch", False):
            return
        original = layouts.tqdm

        def dispatch(iterable=None, *args, **kwargs):
            hook = getattr(_epoch_hooks, "hook", None)
            if hook is None:
                return original(iterable, *args, **kwargs)
            items = list(iterable)
            return _hooked(items, hook)

        dispatch._alwidget_dispatch = True
        layouts.tqdm = dispatch


def _hooked(items, hook):
    total = len(items)
    for i, item in enumerate(items):
        yield item
        hook(i + 1, total)


@contextlib.contextmanager
def thread_local_pools(n_jobs):
    """Cap numba and faiss/OpenMP threads for the calling thread only.

    Both keep per-thread settings, so a background fit never changes the pools
    of the labelling thread (BLAS and torch pools are process-wide: untouched).
    """
    if n_jobs is None:
        n_jobs = max_threads()  # "all cores": the ones this process may use
    import numba

    try:
        import faiss
    except ImportError:
        faiss = None
    old_numba = numba.get_num_threads()
    old_omp = faiss.omp_get_max_threads() if faiss is not None else None
    numba.set_num_threads(min(n_jobs, numba.config.NUMBA_NUM_THREADS))
    if faiss is not None:
        faiss.omp_set_num_threads(n_jobs)
    try:
        yield
    finally:
        numba.set_num_threads(old_numba)
        if faiss is not None:
            faiss.omp_set_num_threads(old_omp)


def layout(X: np.ndarray, k: int, method: str, init, min_dist: float, seed: int, n_jobs,
           report: ProgressCallback) -> np.ndarray:
    """umap-learn's seeded layout of X (rows already scaled for the metric) -> raw (N, 2) coords.

    ``method`` "exact" hands umap-learn our exact kNN graph, "nndescent" lets it run pynndescent;
    ``init`` is an (N, 2) array (scaled like umap-learn's own) or "spectral"."""
    import umap as umap_pkg

    with thread_local_pools(n_jobs):
        precomputed = (None, None, None)
        if method == "exact":
            idx, dist = knn_graph(X, k, lambda f, msg: report(0.4 * f, msg))
            precomputed = (idx, dist, None)
            first = 0.4
        else:
            first = 0.05
            report(0.02, "kNN graph (pynndescent; compiles ~40 s in a fresh process)")
        model = umap_pkg.UMAP(
            n_neighbors=k,
            min_dist=min_dist,
            metric="euclidean",
            init=init,
            random_state=seed,
            n_jobs=1,  # umap-learn runs a seeded layout on one thread anyway; saying so avoids its warning
            precomputed_knn=precomputed,
            force_approximation_algorithm=method == "nndescent",
            tqdm_kwds={"disable": True},
        )
        report(first, "UMAP fuzzy graph (compiles ~15 s in a fresh process)")

        def on_epoch(i, total):
            report(first + (0.99 - first) * i / total, f"UMAP layout: epoch {i}/{total}")

        prepare_umap()
        _epoch_hooks.hook = on_epoch
        try:
            return model.fit_transform(X)
        finally:
            _epoch_hooks.hook = None


def tqdm_reporter(progress: bool, callback: ProgressCallback | None):
    """A report(fraction, message) that feeds a tqdm.auto bar and/or a user callback."""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=1000, desc="UMAP", bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")

    def report(fraction: float, message: str) -> None:
        if bar is not None:
            bar.n = int(1000 * fraction)
            bar.set_postfix_str(message, refresh=True)
        if callback is not None:
            callback(float(fraction), message)

    def close():
        if bar is not None:
            bar.close()

    return report, close
