"""2-D maps of a feature set: an instant PCA preview and a seeded, disk-cached UMAP.

Both functions return ``(n_samples, 2)`` float32 coordinates on one **canvas**
(:func:`to_canvas`): centred on the midpoint of their bounding box and scaled by
a single factor (aspect ratio kept) so that every point lies in ``[-1, 1]`` and
the longer side spans it exactly. A widget can therefore draw the preview at
once and swap in UMAP when it arrives without changing its axes.

``metric="cosine"`` (the default, right for L2-normalised image embeddings)
works on L2-normalised rows with Euclidean distance: the neighbours are exactly
the cosine neighbours and umap-learn's fast Euclidean code paths are used.

Why the UMAP path looks the way it does (figures: ``bench/bench_project.py``):

* umap-learn compiles its numba kernels in every fresh process. Its own
  nearest-neighbour search (pynndescent) adds ~40 s of compilation once
  ``n_samples >= 4096``; an exact kNN graph from faiss (or torch blocks)
  costs no compilation and is handed over as ``precomputed_knn``. Exact
  search grows as N^2, so beyond ``EXACT_KNN_MAX`` points pynndescent is used.
* A fixed ``seed`` makes umap-learn run its layout on one thread (its parallel
  layout is not reproducible). Reproducibility is a requirement here, so the
  layout is always seeded; ``n_jobs`` only sizes the kNN search. On two busy
  cores the unseeded parallel run was no faster (20k points: 31 s vs 27 s warm,
  145 s vs 139 s in a fresh process); on many idle cores it would be.
* Exact kNN (one thread, 512-d) costs ~5 s at 20k points and grows as N^2
  (~33 s at 50k); pynndescent costs ~35 s of compilation in a fresh process
  plus a few seconds. Hence exact up to ``EXACT_KNN_MAX`` = 50k. At 20k points
  in a fresh process the whole map took 25 s of CPU against 61 s for
  ``umap.UMAP(random_state=0)``; in a process that has compiled pynndescent
  already, that one is ~5 s cheaper (exact search is not free).
* The layout starts from the preview (scaled as umap-learn scales its own
  initialisations), which skips the spectral initialisation and keeps the
  UMAP map oriented like the preview, so the swap in the widget is gentle.
"""
from __future__ import annotations

import hashlib
import json
import threading
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from . import _umap_fit
from ._umap_fit import ProgressCallback
from ._umap_fit import tqdm_reporter as _tqdm_reporter
from ._util import cache_dir as _cache_root
from ._util import atomic_write, check_features, fingerprint
# the canvas and the preview live in project_preview.py; preview and to_canvas stay public here
from .project_preview import check_metric, check_seed, preview, raw_preview, row_scale, to_canvas

__all__ = [
    "EXACT_KNN_MAX",
    "ProjectionJob",
    "preview",
    "project_file",
    "to_canvas",
    "umap",
]

#: Largest n_samples for which the kNN graph is computed exactly.
EXACT_KNN_MAX = 50_000
#: Bump when the cached coordinates would change for the same parameters.
_CACHE_FORMAT = 1
_KNN_METHODS = ("auto", "exact", "nndescent")


# --------------------------------------------------------------------------- umap


def _umap_params(n_neighbors, min_dist, metric, knn, init) -> dict:
    """Validate the UMAP parameters once, at the boundary."""
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, (int, np.integer)) or n_neighbors < 2:
        raise ValueError(f"n_neighbors must be an integer >= 2, got {n_neighbors!r}")
    if isinstance(min_dist, bool) or not isinstance(min_dist, (int, float, np.floating)) or not 0.0 <= min_dist <= 1.0:
        raise ValueError(f"min_dist must be a number in [0, 1], got {min_dist!r}")
    if knn not in _KNN_METHODS:
        raise ValueError(f"knn must be one of {_KNN_METHODS}, got {knn!r}")
    if init not in ("preview", "spectral"):
        raise ValueError(f"init must be 'preview' or 'spectral', got {init!r}")
    return {
        "n_neighbors": int(n_neighbors),
        "min_dist": float(min_dist),
        "metric": check_metric(metric),
        "knn": knn,
        "init": init,
    }


def _check_n_jobs(n_jobs):
    if n_jobs is None:
        return None
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs < 1:
        raise ValueError(f"n_jobs must be a positive integer or None (all cores), got {n_jobs!r}")
    return int(n_jobs)


def _knn_method(n: int, knn: str) -> str:
    if knn == "auto":
        return "exact" if n <= EXACT_KNN_MAX else "nndescent"
    return knn


def _cache_file(folder: Path, fp: str, seed: int, params: dict, n: int) -> Path:
    import umap as umap_pkg

    key = {
        "features": fp,
        "seed": seed,
        **params,
        "knn": _knn_method(n, params["knn"]),
        "umap": umap_pkg.__version__,
        "format": _CACHE_FORMAT,
    }
    digest = hashlib.blake2b(json.dumps(key, sort_keys=True).encode(), digest_size=16).hexdigest()
    return folder / f"umap-{digest}.npy"


def _load_cached(path: Path, n: int) -> np.ndarray | None:
    """The cached (n, 2) coordinates, or None when missing or unusable (then recomputed)."""
    if not path.exists():
        return None
    try:
        coords = np.load(path, allow_pickle=False)
        if coords.shape != (n, 2) or coords.dtype != np.float32 or not np.isfinite(coords).all():
            raise ValueError(f"unexpected content {coords.dtype} {coords.shape}")
    except Exception as exc:  # truncated, garbage, wrong shape: recompute
        warnings.warn(f"ignoring unreadable UMAP cache file {path} ({exc}); recomputing", RuntimeWarning, stacklevel=3)
        return None
    return coords


def _fit_umap(
    X: np.ndarray, seed: int, params: dict, n_jobs, report: ProgressCallback, preview_coords=None
) -> np.ndarray:
    """Compute UMAP coordinates on the canvas; trusts its (validated) inputs."""
    n = X.shape[0]
    metric = params["metric"]
    if params["init"] == "preview":
        if preview_coords is None:
            preview_coords = to_canvas(raw_preview(X, seed, metric))
        init = 10.0 * preview_coords  # umap-learn scales its own inits to max |coord| = 10
    else:
        init = "spectral"
    if metric == "cosine":
        X = X * row_scale(X, metric)[:, None]
    k = min(params["n_neighbors"], n - 1)
    coords = _umap_fit.layout(X, k, _knn_method(n, params["knn"]), init, params["min_dist"], seed, n_jobs, report)
    return to_canvas(coords)


def _fingerprint_of(X: np.ndarray) -> str:
    """X's content hash, reused when a Session hashed this very array already (the widget's map
    and its Session share one pool: a second pass was 3 s of background CPU at 1M x 512)."""
    from ._pool import validated_fingerprint

    fp = validated_fingerprint(X)
    return fp if fp is not None else fingerprint(X)


def _umap_checked(
    X, seed, params, *, n_jobs, cache_dir, report: ProgressCallback, preview_coords=None
) -> np.ndarray:
    """Cache lookup, fit, atomic store; inputs already validated."""
    n = X.shape[0]
    if n < 4:  # too few points for a neighbour graph; PCA is exact here
        coords = to_canvas(raw_preview(X, seed, params["metric"]))
        report(1.0, "done (fewer than 4 points: PCA map)")
        return coords
    folder = Path(cache_dir) if cache_dir is not None else _cache_root("projections")
    folder.mkdir(parents=True, exist_ok=True)
    path = _cache_file(folder, _fingerprint_of(X), seed, params, n)
    coords = _load_cached(path, n)
    if coords is not None:
        report(1.0, "done (loaded from cache)")
        return coords
    coords = _fit_umap(X, seed, params, n_jobs, report, preview_coords)
    atomic_write(path, lambda f: np.save(f, coords))
    report(1.0, "done")
    return coords


def umap(
    X,
    seed: int = 0,
    *,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "cosine",
    knn: str = "auto",
    init: str = "preview",
    n_jobs: int | None = None,
    cache_dir=None,
    progress: bool = True,
    callback: ProgressCallback | None = None,
) -> np.ndarray:
    """Seeded UMAP to 2-D, on the common canvas, cached on disk.

    Parameters
    ----------
    X : array (n_samples, n_features)
    seed : int
        Same seed, features and parameters -> the same coordinates.
    n_neighbors, min_dist : umap-learn's parameters.
    metric : "cosine" (L2-normalised rows, Euclidean kNN) or "euclidean".
    knn : "auto" (exact up to EXACT_KNN_MAX points, else pynndescent), "exact", "nndescent".
    init : "preview" (start from :func:`preview`) or "spectral" (umap-learn's default).
    n_jobs : threads for the kNN search (None: all cores). The seeded layout uses one thread.
    cache_dir : folder for cached maps; default ``alwidget._util.cache_dir("projections")``.
        The key is the features' fingerprint, every parameter above except
        n_jobs, and the umap-learn version. Unreadable cache files are recomputed.
    progress : show a tqdm progress bar.
    callback : ``callback(fraction, message)``, called with fraction rising to 1.0.

    Returns
    -------
    (n_samples, 2) float32 in ``[-1, 1]`` (see :func:`to_canvas`).
    """
    X = check_features(X, "X")
    seed = check_seed(seed)
    params = _umap_params(n_neighbors, min_dist, metric, knn, init)
    n_jobs = _check_n_jobs(n_jobs)
    report, close = _tqdm_reporter(progress, callback)
    try:
        return _umap_checked(X, seed, params, n_jobs=n_jobs, cache_dir=cache_dir, report=report)
    finally:
        close()


# --------------------------------------------------------------------------- background job


class _Cancelled(Exception):
    """Raised inside the layout loop when a ProjectionJob is cancelled."""


class ProjectionJob:
    """The preview at once, UMAP in a background thread (for the widget).

    ``job = ProjectionJob(X, seed=0, on_done=show)`` validates ``X`` and the
    parameters in the caller's thread (bad input raises there), computes
    ``job.preview`` (``(N, 2)`` float32, seconds), then starts a daemon thread.

    Attributes and methods
    ----------------------
    preview : (N, 2) float32, available immediately.
    coords : the best map so far: UMAP when done, else the preview.
    progress : ``(fraction, message)`` of the running fit.
    done : True once the thread finished (successfully or not).
    error : the exception the fit raised, else None.
    result(timeout=None) : wait; return the UMAP coords or re-raise the error.
    cancel() : stop at the next layout epoch (the error is then a RuntimeError saying so).

    Callbacks run in the worker thread: ``on_progress(fraction, message)``,
    ``on_done(coords)``, ``on_error(exc)``. Without ``on_error`` a failure is
    also reported as a RuntimeWarning, so it is never lost silently.
    ``n_jobs`` (default 1) caps the threads the fit uses, leaving the other
    core to the labelling session; it only changes speed, never the map.
    """

    def __init__(
        self,
        X,
        seed: int = 0,
        *,
        on_done: Callable[[np.ndarray], None] | None = None,
        on_progress: ProgressCallback | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        n_jobs: int | None = 1,
        cache_dir=None,
        n_neighbors: int = 15,
        min_dist: float = 0.1,
        metric: str = "cosine",
        knn: str = "auto",
        init: str = "preview",
    ):
        self._X = check_features(X, "X")
        self.seed = check_seed(seed)
        self.params = _umap_params(n_neighbors, min_dist, metric, knn, init)
        self._n_jobs = _check_n_jobs(n_jobs)
        self._cache_dir = cache_dir
        self._on_done, self._on_progress, self._on_error = on_done, on_progress, on_error
        self.preview = to_canvas(raw_preview(self._X, self.seed, self.params["metric"]))
        self.progress: tuple[float, str] = (0.0, "starting")
        self.error: BaseException | None = None
        self._result: np.ndarray | None = None
        self._cancel = threading.Event()
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alwidget-umap", daemon=True)
        self._thread.start()

    # -- worker thread
    def _report(self, fraction: float, message: str) -> None:
        if self._cancel.is_set():
            raise _Cancelled()
        self.progress = (fraction, message)
        if self._on_progress is not None:
            try:
                self._on_progress(fraction, message)
            except Exception as exc:  # a broken progress display must not kill the fit
                warnings.warn(f"ProjectionJob on_progress callback failed: {exc!r}", RuntimeWarning, stacklevel=2)

    def _run(self) -> None:
        try:
            coords = _umap_checked(
                self._X,
                self.seed,
                self.params,
                n_jobs=self._n_jobs,
                cache_dir=self._cache_dir,
                report=self._report,
                preview_coords=self.preview,
            )
        except _Cancelled:
            self.error = RuntimeError("ProjectionJob was cancelled before UMAP finished")
        except BaseException as exc:  # captured for result()/on_error, never lost
            self.error = exc
        else:
            self._result = coords
        finally:
            self._X = None  # the features are not needed any more
            self._finished.set()
        if self.error is None:
            self._callback(self._on_done, self._result, "on_done")
        elif self._on_error is not None:
            self._callback(self._on_error, self.error, "on_error")
        elif not self._cancel.is_set():  # a cancel was asked for: nothing to warn about
            warnings.warn(f"UMAP projection failed: {self.error!r}", RuntimeWarning, stacklevel=2)

    @staticmethod
    def _callback(fn, arg, name):
        if fn is None:
            return
        try:
            fn(arg)
        except Exception as exc:
            warnings.warn(f"ProjectionJob {name} callback failed: {exc!r}", RuntimeWarning, stacklevel=2)

    # -- caller side
    @property
    def done(self) -> bool:
        return self._finished.is_set()

    @property
    def coords(self) -> np.ndarray:
        return self._result if self._result is not None else self.preview

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the fit finished (or timeout); return whether it did."""
        return self._finished.wait(timeout)

    def result(self, timeout: float | None = None) -> np.ndarray:
        """The UMAP coordinates; re-raises the fit's error; TimeoutError if not done in time."""
        if not self._finished.wait(timeout):
            raise TimeoutError(f"UMAP is still running ({self.progress[1]}); use job.preview meanwhile")
        if self.error is not None:
            raise self.error
        return self._result

    def cancel(self) -> None:
        """Ask the fit to stop at its next progress point; does not block."""
        self._cancel.set()


# --------------------------------------------------------------------------- files


def _read_features(in_path: Path, features_key: str) -> tuple[np.ndarray, dict]:
    suffix = in_path.suffix.lower()
    if suffix == ".npy":
        return np.load(in_path, allow_pickle=False), {}
    if suffix == ".npz":
        with np.load(in_path, allow_pickle=False) as data:
            if features_key not in data.files:
                raise ValueError(
                    f"{in_path} has no array named {features_key!r} (it has {data.files}); "
                    "pass features_key= or write the features under 'features' (as `alwidget embed` does)"
                )
            extra = {name: data[name] for name in data.files if name != features_key}
            return data[features_key], extra
    raise ValueError(f"in_path must be an .npy or .npz file of features, got {in_path}")


def project_file(
    in_path,
    out_path,
    *,
    seed: int = 0,
    method: str = "umap",
    features_key: str = "features",
    progress: bool = True,
    **umap_params,
) -> np.ndarray:
    """Read features from .npy/.npz, write their 2-D map to .npy/.npz; return the map.

    Input: an .npy array ``(n_samples, n_features)``, or an .npz whose
    ``features_key`` entry holds it (the file ``alwidget embed`` writes). Output:
    ``.npy`` holds the ``(n_samples, 2)`` float32 coordinates alone; ``.npz``
    holds ``coords``, ``method``, ``seed`` and every other entry of an input
    .npz (names, labels, encoder id, ...) except the features. ``method`` is
    ``"umap"`` (keyword arguments go to :func:`umap`) or ``"preview"``.
    """
    in_path, out_path = Path(in_path), Path(out_path)
    if method not in ("umap", "preview"):
        raise ValueError(f"method must be 'umap' or 'preview', got {method!r}")
    if out_path.suffix.lower() not in (".npy", ".npz"):
        raise ValueError(f"out_path must end in .npy or .npz, got {out_path}")
    if not in_path.exists():
        raise FileNotFoundError(f"no such features file: {in_path}")
    features, extra = _read_features(in_path, features_key)
    if method == "preview":
        metric = umap_params.pop("metric", "cosine")
        if umap_params:
            raise TypeError(f"method='preview' takes only seed and metric, got {sorted(umap_params)}")
        coords = preview(features, seed, metric=metric)
    else:
        coords = umap(features, seed, progress=progress, **umap_params)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if out_path.suffix.lower() == ".npy":
        atomic_write(out_path, lambda f: np.save(f, coords))
    else:
        atomic_write(out_path, lambda f: np.savez(f, **extra, coords=coords, method=np.asarray(method),
                                                  seed=np.asarray(seed)))
    return coords
