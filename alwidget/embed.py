"""Embedding a set of images: the run that ties an encoder to the on-disk cache.

``embed_images`` looks every image up in the cache of its encoder
(:mod:`alwidget.embed_cache`, format in ``docs/cache-format.md``), embeds only the missing
ones with the encoder (:mod:`alwidget.encoders`), committing rows in chunks as it goes, and
returns the rows in image order. The missing images are embedded either here
(``engine="local"``: DataLoader decoding processes feeding the model in this process) or on
a Ray cluster (``engine="ray"``, :mod:`alwidget.engines.ray`), which writes the same chunks;
either way the result is read back through the same cache.

Precomputed embeddings need no encoder: pass the (n_samples, n_features) array to the
Session or the widget directly. Every public name of the encoder and cache modules is
re-exported here (``alwidget.embed.get_encoder``, ``alwidget.embed.write_chunk``, ...).
"""
from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import sys
import time

import numpy as np

from ._util import available_cpus, cpu_threads, limit_threads
from .embed_cache import CACHE_FORMAT, EmbeddingCache, cache_for, write_chunk
from .encoders import (DEFAULT_ENCODER, DEMO_ENCODER, EfficientNetLite0, Encoder, EncoderUnavailable,
                       OpenClipEncoder, encode_text, get_encoder, parse_spec, preprocess_one)
from .images import ImageSet, summarize_skipped

__all__ = [
    "CACHE_FORMAT",
    "DEFAULT_ENCODER",
    "DEMO_ENCODER",
    "ENGINES",
    "EfficientNetLite0",
    "EmbeddingCache",
    "Embeddings",
    "Encoder",
    "EncoderUnavailable",
    "OpenClipEncoder",
    "cache_for",
    "cpu_threads",
    "embed_images",
    "encode_text",
    "get_encoder",
    "parse_spec",
    "preprocess_one",
    "write_chunk",
]

logger = logging.getLogger("alwidget")

#: Where the missing images are embedded: "local" (this process) or "ray" (a Ray cluster).
ENGINES = ("local", "ray")
#: A folder with this many chunks is merged into one at the end of a run (fewer files to open).
COMPACT_AT = 32


@dataclasses.dataclass
class Embeddings:
    """Result of :func:`embed_images`.

    features: (N_ok, D) float32, L2-normalised; keep: (N_ok,) int64 indices into the
    ImageSet; skipped: DataFrame (path, reason); encoder_id: the spec that made them.
    """

    features: np.ndarray
    keep: np.ndarray
    skipped: object
    encoder_id: str
    n_cached: int = 0
    n_computed: int = 0
    cache_path: str | None = None

    def __len__(self) -> int:
        return self.features.shape[0]


# --------------------------------------------------------------------------------------
# in-process decoding and batching
# --------------------------------------------------------------------------------------
class _DecodeDataset:
    """Index j -> (image index, (3, S, S) tensor or None, failure reason or None)."""

    def __init__(self, images: ImageSet, indices: np.ndarray, transform):
        self.images = images
        self.indices = indices
        self.transform = transform
        self.size_hint = getattr(transform, "size", None)  # lets big JPEGs decode at reduced scale

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j):
        i = int(self.indices[j])
        return (i, *preprocess_one(lambda: self.images.load(i, self.size_hint), self.transform))


def _collate(items):
    import torch

    ok = [(i, x) for i, x, _ in items if x is not None]
    fails = [(i, r) for i, _, r in items if r is not None]
    xs = torch.stack([x for _, x in ok]) if ok else None
    return [i for i, _ in ok], xs, fails


def _worker_init(_):
    import torch

    torch.set_num_threads(1)


def _auto_workers(n_items: int, device_type: str = "cpu") -> int:
    """Decoding processes: many on a GPU (decoding is the bottleneck there), few on a CPU
    (the model is, and it needs the cores)."""
    if n_items < 64:
        return 0
    if not sys.platform.startswith("linux") or "fork" not in multiprocessing.get_all_start_methods():
        return 0  # spawn re-imports torch per worker: slower than decoding in-process for most folders
    cores = available_cpus()
    if device_type == "cuda":
        return max(1, min(16, cores - 1))
    return max(1, min(4, cores // 4))


def _batches(dataset, batch_size, workers, pin):
    """Yield collated batches; falls back to in-process decoding if workers cannot start."""
    from torch.utils.data import DataLoader

    common = dict(batch_size=batch_size, shuffle=False, collate_fn=_collate, pin_memory=pin)
    if workers > 0:
        try:
            loader = DataLoader(dataset, num_workers=workers, worker_init_fn=_worker_init,
                                multiprocessing_context="fork", persistent_workers=False,
                                prefetch_factor=2, **common)
            it = iter(loader)
        except (RuntimeError, OSError, ValueError) as exc:
            logger.warning("alwidget: DataLoader workers unavailable (%s); decoding in-process", exc)
        else:
            yield from it
            return
    yield from DataLoader(dataset, num_workers=0, **common)


# --------------------------------------------------------------------------------------
# the steps of a run
# --------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Plan:
    """What the cache already has for ``keys`` and what is left to embed."""

    keys: np.ndarray  # (n,) S16
    feats: np.ndarray | None  # (n, D) cached rows (zeros for misses), None when the cache is empty
    hit: np.ndarray  # (n,) bool
    failures: dict  # index -> reason of cached permanent failures
    missing: np.ndarray  # indices neither cached nor known to fail
    by_key: np.ndarray  # one index per distinct missing key, in key order (np.unique's)
    todo: np.ndarray  # the same indices sorted: what gets embedded


@dataclasses.dataclass
class _Computed:
    """Rows embedded by this run: ``feats[j]`` belongs to image ``idx[j]``."""

    idx: np.ndarray
    feats: np.ndarray | None
    failed: dict  # index -> reason


def _as_image_set(images) -> ImageSet:
    if isinstance(images, (str, os.PathLike)):
        return ImageSet.from_folder(images)
    if isinstance(images, (list, tuple)):
        return ImageSet.from_paths(images)
    if isinstance(images, ImageSet):
        return images
    raise TypeError(
        f"images must be an ImageSet, a folder path or a list of paths, got {type(images).__name__}; "
        "for precomputed embeddings pass the array to the Session/widget directly"
    )


def _check_options(batch_size, chunk_size, engine, cache) -> None:
    if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) <= 0):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(map(repr, ENGINES))}, got {engine!r}")
    if engine == "ray" and not cache:
        raise ValueError("engine='ray' hands its rows back through the embedding cache; cache=False needs "
                         "engine='local'")


def _plan(store: EmbeddingCache | None, keys: np.ndarray) -> _Plan:
    n = keys.shape[0]
    feats, hit, failures = store.lookup(keys) if store is not None and n else (None, np.zeros(n, bool), {})
    missing = np.flatnonzero(~hit & ~np.isin(np.arange(n), list(failures)))
    by_key = missing
    if missing.size:  # identical images (same key) are embedded once
        _, first = np.unique(keys[missing], return_index=True)
        by_key = missing[first]
    return _Plan(keys, feats, hit, failures, missing, by_key, np.sort(by_key))


class _ChunkWriter:
    """Commits finished rows to the cache in chunks of at most ``chunk_size`` rows or
    ``chunk_seconds`` of work, so an interrupted run resumes where it stopped."""

    def __init__(self, store, keys, chunk_size: int, chunk_seconds: float):
        self.store, self.keys = store, keys
        self.chunk_size, self.chunk_seconds = chunk_size, chunk_seconds
        self.idx, self.feats, self.fails = [], [], []
        self.last = time.monotonic()

    def add(self, idx, feats, fails) -> None:
        if len(idx):
            self.idx.extend(idx)
            self.feats.append(feats)
        self.fails.extend(fails)
        if len(self.idx) >= self.chunk_size or time.monotonic() - self.last >= self.chunk_seconds:
            self.flush()

    def flush(self) -> None:
        if self.store is not None and self.idx:
            self.store.write_chunk(self.keys[self.idx], np.concatenate(self.feats))
        if self.store is not None and self.fails:
            self.store.write_failures(self.keys[[i for i, _ in self.fails]], [r for _, r in self.fails])
        self.idx, self.feats, self.fails = [], [], []
        self.last = time.monotonic()


def _run_local(images, enc, plan: _Plan, store, *, batch_size, workers, threads, progress,
               chunk_size, chunk_seconds) -> _Computed:
    """Embed ``plan.todo`` in this process, committing chunks as they fill."""
    enc.load()
    dataset = _DecodeDataset(images, plan.todo, enc.transform)
    n_workers = _auto_workers(plan.todo.size, enc.device.type) if workers == "auto" else int(workers)
    threads = None if enc.device.type == "cuda" else (cpu_threads() if threads is None else threads)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(plan.todo.size), desc=f"embedding ({enc.id})", unit="img")
    writer = _ChunkWriter(store, plan.keys, chunk_size, chunk_seconds)
    idx, feats, failed = [], [], {}
    try:
        with limit_threads(threads):
            for bidx, xs, fails in _batches(dataset, batch_size, n_workers, enc.device.type == "cuda"):
                out = enc.encode_images(xs) if xs is not None else None
                if out is not None:
                    idx.extend(bidx)
                    feats.append(out)
                failed.update(fails)
                writer.add(bidx, out, fails)
                if bar is not None:
                    bar.update(len(bidx) + len(fails))
    except BaseException:
        try:  # keep what is done (Ctrl-C in a notebook, a worker crash): the next run resumes
            writer.flush()
        except Exception:
            pass
        raise
    else:
        writer.flush()
    finally:
        if bar is not None:
            bar.close()
    return _Computed(np.asarray(idx, dtype=np.int64), np.concatenate(feats) if feats else None, failed)


def _run_ray(images, enc, plan: _Plan, store, *, batch_size, device, progress, ray_address) -> _Computed:
    """Embed ``plan.todo`` on a Ray cluster; its workers commit the chunks, read back here."""
    from .engines import ray as ray_engine

    idx, feats, failed = ray_engine.embed_files(images, plan.todo, enc, store, device=device, batch_size=batch_size,
                                                address=ray_address, progress=progress)
    return _Computed(idx, feats, failed)


def _assemble(images: ImageSet, enc, store, plan: _Plan, new: _Computed) -> Embeddings:
    """Rows in image order; identical images share the row of the one embedded."""
    n = plan.keys.shape[0]
    feats = plan.feats
    if feats is None:
        dim = new.feats.shape[1] if new.feats is not None else 0
        feats = np.zeros((n, dim), dtype=np.float32)
    ok = plan.hit.copy()
    bad = dict(plan.failures)  # index -> reason, for this call's summary
    if plan.missing.size:
        _, inverse = np.unique(plan.keys[plan.missing], return_inverse=True)
        rep = plan.by_key[inverse.reshape(-1)]  # the embedded index standing for each missing one
        row_of = np.full(n, -1, dtype=np.int64)
        row_of[new.idx] = np.arange(new.idx.size)
        got = row_of[rep] >= 0
        if got.any():
            feats[plan.missing[got]] = new.feats[row_of[rep[got]]]
            ok[plan.missing[got]] = True
        for i, r in zip(plan.missing[~got].tolist(), rep[~got].tolist()):
            bad[i] = new.failed.get(r, "not embedded")
    _report_skipped(images, bad, n)
    keep = np.flatnonzero(ok).astype(np.int64)
    return Embeddings(
        features=feats if keep.size == n else feats[keep],
        keep=keep,
        skipped=images.skipped,
        encoder_id=enc.id,
        n_cached=int(plan.hit.sum()),
        n_computed=int(new.idx.size),
        cache_path=None if store is None else str(store.path),
    )


def _report_skipped(images: ImageSet, bad: dict, n: int) -> None:
    """Record unreadable images on the ImageSet and log one summary line."""
    for i, r in sorted(bad.items()):
        images.mark_unreadable(i, r)
    if bad:
        import pandas as pd

        logger.warning("alwidget: %s", summarize_skipped(pd.DataFrame({"reason": list(bad.values())}), n))


def embed_images(images, encoder: str | Encoder = "efficientnet-lite0", *, device="auto", batch_size: int | None = None,
                 cache_dir=None, cache: bool = True, progress: bool = True, workers="auto", threads=None,
                 chunk_size: int = 2048, chunk_seconds: float = 30.0, engine: str = "local",
                 ray_address: str | None = None) -> Embeddings:
    """Embed every readable image of ``images`` (an ImageSet, a folder path or a list of paths).

    ``encoder`` is a spec string or an :class:`Encoder`; the default works offline
    (:data:`DEFAULT_ENCODER`, OpenCLIP, is the better choice for users' own photos when
    its weights can be fetched; :data:`DEMO_ENCODER` suits small images such as the demo).

    Cached rows are reused (keyed by encoder, preprocessing and each file's path, size
    and mtime); only new or changed images are run through the model, and results are
    committed in chunks of at most ``chunk_size`` rows or ``chunk_seconds`` so an
    interrupted run resumes where it stopped. Returns :class:`Embeddings`.

    ``engine``: "local" embeds in this process; "ray" on a Ray cluster (``ray_address``,
    None: the cluster ``ray.init()`` finds, or a local one; needs ``pip install
    alwidget[ray]``, files rather than arrays, and a cache folder the workers share; see
    :mod:`alwidget.engines.ray`). ``workers``: DataLoader decoding processes ("auto": up
    to 4 where fork is available, 0 for small jobs). ``threads``: torch CPU threads (None:
    the idle cores, see :func:`alwidget._util.cpu_threads`). These two and the chunk limits
    apply to "local"; Ray workers commit one chunk per batch of ``batch_size``.
    """
    images = _as_image_set(images)
    _check_options(batch_size, chunk_size, engine, cache)
    # A Ray driver only needs the encoder's identity; the workers pick their own device.
    enc = get_encoder(encoder, device="cpu" if engine == "ray" else device, load=False)
    store = EmbeddingCache(enc.id, enc.preprocess_id, cache_dir) if cache else None
    plan = _plan(store, images.identities())
    new = _Computed(np.zeros(0, np.int64), None, {})
    if plan.todo.size and engine == "ray":
        new = _run_ray(images, enc, plan, store, batch_size=batch_size, device=device, progress=progress,
                       ray_address=ray_address)
    elif plan.todo.size:
        default_batch = 256 if enc.device.type == "cuda" else 32
        new = _run_local(images, enc, plan, store, batch_size=batch_size or default_batch, workers=workers,
                         threads=threads, progress=progress, chunk_size=chunk_size, chunk_seconds=chunk_seconds)
    if plan.todo.size and store is not None and store.n_chunks() >= COMPACT_AT:
        store.compact()
    return _assemble(images, enc, store, plan, new)
