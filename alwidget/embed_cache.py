"""The on-disk embedding cache (the format is specified in ``docs/cache-format.md``).

One folder per (encoder id, preprocessing) pair holds chunks: ``<id>.feats.npy`` (n, D)
float32 L2-normalised rows and ``<id>.keys.npy`` (n,) ``|S16`` item keys, the keys file
written last as the commit marker, so many writers (in-process runs, Ray workers) can add
chunks at once and a killed writer never leaves a half-visible chunk. :func:`write_chunk`
is the seam an external engine uses to fill it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import uuid
from pathlib import Path

import numpy as np

from ._util import atomic_write
from ._util import cache_dir as _default_cache_dir
from .encoders import Encoder, get_encoder

__all__ = ["CACHE_FORMAT", "EmbeddingCache", "cache_for", "write_chunk"]

logger = logging.getLogger("alwidget")

CACHE_FORMAT = 1
# Reasons (from alwidget.images.load_rgb) that stay true until the file changes, and so get
# its key recorded in a .failed.json; permission errors and vanished files are retried.
_PERMANENT_FAILURES = ("corrupt", "truncated", "not an image", "cannot decode", "cannot convert", "cannot preprocess")


def _chunk_id() -> str:
    """Unique without coordination: a timestamp for people, 12 random hex digits for writers."""
    return f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:12]}"

def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:60].strip("_")


class EmbeddingCache:
    """Embeddings of one (encoder id, preprocessing) pair, stored as chunk files.

    Layout (``docs/cache-format.md``)::

        <root>/embeddings/<slug>-<hash>/manifest.json
        <root>/embeddings/<slug>-<hash>/chunks/<chunk>.feats.npy   (n, D) float32, L2-normalised
        <root>/embeddings/<slug>-<hash>/chunks/<chunk>.keys.npy    (n,) |S16 item keys (commit marker)
        <root>/embeddings/<slug>-<hash>/chunks/<chunk>.failed.json unreadable items: {"keys": [hex], "reasons": [...]}
    """

    def __init__(self, encoder_id: str, preprocess_id: str, cache_dir=None):
        root = Path(cache_dir).expanduser() if cache_dir is not None else _default_cache_dir()
        h = hashlib.blake2b(f"{CACHE_FORMAT}\0{encoder_id}\0{preprocess_id}".encode(), digest_size=8).hexdigest()
        self.encoder_id = encoder_id
        self.preprocess_id = preprocess_id
        self.root = root.absolute()  # what other processes (Ray workers) open the same cache with
        self.path = self.root / "embeddings" / f"{_slug(encoder_id)}-{h}"
        self.chunks = self.path / "chunks"

    # writing ----------------------------------------------------------------------
    def _ensure_manifest(self, dim: int | None) -> None:
        self.chunks.mkdir(parents=True, exist_ok=True)
        mpath = self.path / "manifest.json"
        if mpath.exists():
            return
        manifest = {
            "format": CACHE_FORMAT,
            "encoder_id": self.encoder_id,
            "preprocess": self.preprocess_id,
            "dim": dim,
            "dtype": "float32",
            "normalized": "l2",
            "keys": "16-byte blake2b: files of '<abs path>\\0<size>\\0<mtime_ns>', arrays of shape|dtype|bytes",
        }
        atomic_write(mpath, json.dumps(manifest, indent=1).encode())

    def write_chunk(self, keys, features) -> str | None:
        """Commit (n,) keys and (n, D) features as one new chunk; returns the chunk id.

        Features are L2-normalised here; keys are 16-byte strings. Safe to call from
        many processes at once (chunk ids are random)."""
        keys = np.asarray(keys, dtype="S16").reshape(-1)
        feats = np.ascontiguousarray(features, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[0] != keys.shape[0]:
            raise ValueError(f"features must have shape (n_keys={keys.shape[0]}, D), got {feats.shape}")
        if keys.size == 0:
            return None
        if not np.isfinite(feats).all():
            raise ValueError("features contain NaN/inf; refusing to cache them")
        norms = np.linalg.norm(feats, axis=1, keepdims=True)
        feats = feats / np.maximum(norms, 1e-12)
        self._ensure_manifest(feats.shape[1])
        cid = _chunk_id()
        atomic_write(self.chunks / f"{cid}.feats.npy", lambda f: np.save(f, feats))
        atomic_write(self.chunks / f"{cid}.keys.npy", lambda f: np.save(f, keys))  # commit marker, last
        return cid

    def write_failures(self, keys, reasons) -> None:
        """Remember items that can never be decoded (their keys change when the file does).
        Transient failures (permission denied, file vanished, size limit) are left out:
        they are retried on the next run."""
        reasons = [str(r) for r in reasons]
        perm = [i for i, r in enumerate(reasons) if r.startswith(_PERMANENT_FAILURES)]
        keys = np.asarray(keys, dtype="S16").reshape(-1)[perm]
        reasons = [reasons[i] for i in perm]
        if keys.size == 0:
            return
        self._ensure_manifest(None)
        doc = {"keys": [bytes(k).ljust(16, b"\0").hex() for k in keys], "reasons": reasons}
        cid = _chunk_id()
        atomic_write(self.chunks / f"{cid}.failed.json", json.dumps(doc).encode())

    # reading ----------------------------------------------------------------------
    def _chunk_ids(self):
        try:
            names = os.listdir(self.chunks)
        except FileNotFoundError:
            return []
        now = time.time()
        for n in names:  # leftovers of killed writers
            if n.startswith(".tmp-"):
                p = self.chunks / n
                try:
                    if now - p.stat().st_mtime > 3600:
                        p.unlink()
                except OSError:
                    pass
        # ".tmp-<random>-<id>.keys.npy" is a file being written: never a chunk (a reader that took
        # it for a damaged one would delete it under its writer)
        return sorted(n[: -len(".keys.npy")] for n in names if n.endswith(".keys.npy") and not n.startswith(".tmp-"))

    def _load_keys(self):
        """-> (keys (M,) S16, chunk position (M,) int32, row (M,) int64, [memory-mapped features], dim)."""
        feats, parts, dim = [], [], None
        for cid in self._chunk_ids():
            try:
                k = np.load(self.chunks / f"{cid}.keys.npy", allow_pickle=False)
                f = np.load(self.chunks / f"{cid}.feats.npy", mmap_mode="r", allow_pickle=False)
                ok = k.dtype == np.dtype("S16") and k.ndim == 1 and f.ndim == 2 and f.shape[0] == k.shape[0] \
                    and f.dtype == np.float32 and (dim is None or f.shape[1] == dim)
            except FileNotFoundError:
                continue  # removed by a concurrent compaction
            except (ValueError, OSError, EOFError):
                ok = False
            if not ok:
                logger.warning("alwidget: dropping a damaged embedding-cache chunk %s", self.chunks / cid)
                for suffix in (".keys.npy", ".feats.npy"):
                    try:
                        os.unlink(self.chunks / f"{cid}{suffix}")
                    except OSError:
                        pass
                continue
            dim = f.shape[1]
            feats.append(f)
            parts.append(k)
        if not parts:
            return np.zeros(0, "S16"), np.zeros(0, np.int32), np.zeros(0, np.int64), [], None
        keys = np.concatenate(parts)
        pos = np.repeat(np.arange(len(parts), dtype=np.int32), [len(p) for p in parts])
        rows = np.concatenate([np.arange(len(p), dtype=np.int64) for p in parts])
        return keys, pos, rows, feats, dim

    def _load_failures(self) -> dict:
        out = {}
        try:
            names = [n for n in os.listdir(self.chunks) if n.endswith(".failed.json")]
        except FileNotFoundError:
            return out
        for n in sorted(names):
            try:
                doc = json.loads((self.chunks / n).read_text())
                for kh, r in zip(doc["keys"], doc["reasons"]):
                    out[bytes.fromhex(kh).rstrip(b"\0")] = r
            except (OSError, ValueError, KeyError):
                continue
        return out

    def lookup(self, keys):
        """Cached rows for ``keys`` (n,) S16 -> (features (n, D) float32 with zero rows for
        misses, or None when the cache is empty; hit mask (n,) bool; failures {index: reason})."""
        keys = np.ascontiguousarray(keys, dtype="S16").reshape(-1)
        n = keys.shape[0]
        ckeys, pos, rows, chunks, dim = self._load_keys()
        hit = np.zeros(n, dtype=bool)
        feats = None
        if ckeys.size:
            # Sort and search on the first 8 key bytes (uint64: ~4x faster than |S16), then
            # confirm all 16 bytes; a prefix clash can only cost a cache miss, never a wrong row.
            c64 = ckeys.view("<u8")[::2]
            q64 = keys.view("<u8")[::2]
            order = np.argsort(c64)
            sorted64 = c64[order]
            at = np.minimum(np.searchsorted(sorted64, q64), sorted64.size - 1)
            src = order[at]
            hit = (sorted64[at] == q64) & (ckeys[src] == keys)
            dst = np.flatnonzero(hit)
            src = src[hit]
            feats = np.empty((n, dim), dtype=np.float32)
            feats[~hit] = 0.0
            cpos, crow = pos[src], rows[src]
            by_chunk = np.argsort(cpos, kind="stable")
            bounds = np.searchsorted(cpos[by_chunk], np.arange(len(chunks) + 1))
            for c, arr in enumerate(chunks):
                sel = by_chunk[bounds[c]:bounds[c + 1]]
                if sel.size:
                    feats[dst[sel]] = arr[crow[sel]]
        failures = {}
        fail_map = self._load_failures() if not hit.all() else {}
        if fail_map:
            for i in np.flatnonzero(~hit):
                r = fail_map.get(bytes(keys[i]))
                if r is not None:
                    failures[int(i)] = r
        return feats, hit, failures

    def n_chunks(self) -> int:
        return len(self._chunk_ids())

    def compact(self, min_chunks: int = 32) -> None:
        """Merge chunks into one when there are ``min_chunks`` or more (fewer files to open)."""
        ids = self._chunk_ids()
        if len(ids) < min_chunks:
            return
        ckeys, pos, rows, chunks, dim = self._load_keys()
        feats = np.concatenate(chunks)
        keys, first = np.unique(ckeys, return_index=True)
        self.write_chunk(keys, feats[first])
        for c in ids:  # readers tolerate a chunk vanishing between listing and loading
            for suffix in (".keys.npy", ".feats.npy"):
                try:
                    os.unlink(self.chunks / f"{c}{suffix}")
                except OSError:
                    pass


def cache_for(encoder: str | Encoder, cache_dir=None) -> EmbeddingCache:
    """The cache an encoder (a spec string or an :class:`Encoder`) writes to; no weights are loaded."""
    enc = get_encoder(encoder, device="cpu", load=False) if isinstance(encoder, str) else encoder
    return EmbeddingCache(enc.id, enc.preprocess_id, cache_dir)


def write_chunk(encoder: str | Encoder, keys, features, cache_dir=None) -> str | None:
    """The seam for external engines (e.g. Ray Data ``map_batches`` on GPU workers):
    store (n,) 16-byte item keys and their (n, D) features in the cache of ``encoder``.
    Keys come from ``alwidget.images.file_key`` / ``array_key``."""
    return cache_for(encoder, cache_dir).write_chunk(keys, features)
