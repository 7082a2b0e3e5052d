"""Item identity: which image (or row) a label belongs to, independent of features and row order.

A label belongs to an item, not to a row or to float bits. Each row of a session has a stable
string key; the label store maps labels by key, so re-running, re-embedding (float noise, or a
different encoder), adding or removing images never strands a label.

Keys by source:

- **folder** (``ImageSet.from_folder``): the file's path relative to the folder, with ``/``
  separators (``"shirts/0017.png"``). Moving the whole folder keeps every key. A file's content
  hash (blake2b of its bytes) is recorded when it is labelled, which decides the cases a path
  alone cannot:

  * *renamed or moved inside the folder*: a labelled file whose path is gone and a new path with
    the same size and content hash are the same item; the label follows the file;
  * *edited in place* (same path, new content): the label stays with the path and the session
    reports the file as changed since it was labelled, so it can be checked;
  * *deleted*: the label stays in the store (exported with ``present=False``) and leaves the session.

- **list of paths / DataFrame**: the absolute path (same rename rule by content).
- **data set** (``datasets.*``): ``"<data set name>/<index>"``, e.g. ``"fashion-mnist-demo/0928"``.
- **bare arrays**: the user's ``keys=`` when given; else ``"row:<i>"`` plus a content check on the
  features that tolerates float noise (a few random projections of each labelled row), so rows
  that now hold other data are refused instead of silently relabelled.
"""
from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["Items", "file_content_hash", "pool_items", "row_items", "sketch_rows", "sketches_match"]

SKETCH_DIM = 8
SKETCH_TOL = 2e-3  # |difference| per projected coordinate; float noise is ~1e-7, another row ~0.1


@dataclasses.dataclass
class Items:
    """Identity of the rows of a session.

    keys : one unique, non-empty string per row.
    source : a short description of where the items come from ("folder:/data/photos",
        "dataset:fashion-mnist-demo", "features"); names the set in messages and the default
        store file.
    content : optional ``content(rows) -> list[str | None]``: a content fingerprint per row
        (files: blake2b of the bytes; arrays without keys: a feature sketch). Called only for
        rows being labelled and for rename candidates.
    sizes : optional (n,) int64 file sizes: rename candidates are hashed only when the size matches.
    tolerant : content fingerprints are feature sketches, compared with a tolerance.
    """

    keys: Sequence[str]
    source: str
    content: Callable[[np.ndarray], list] | None = None
    sizes: np.ndarray | None = None
    tolerant: bool = False

    def __post_init__(self):
        keys = [check_key(k) for k in self.keys]
        if len(set(keys)) != len(keys):
            seen, dup = set(), None
            for k in keys:
                if k in seen:
                    dup = k
                    break
                seen.add(k)
            raise ValueError(f"keys must be unique, {dup!r} appears more than once")
        self.keys = keys
        if self.sizes is not None:
            self.sizes = np.asarray(self.sizes, dtype=np.int64)
            if self.sizes.shape != (len(keys),):
                raise ValueError(f"sizes must have one entry per key ({len(keys)}), got {self.sizes.shape}")

    def __len__(self) -> int:
        return len(self.keys)

    def contents(self, rows) -> list:
        """Content fingerprints of ``rows`` (None where unknown)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if self.content is None or rows.size == 0:
            return [None] * rows.size
        return list(self.content(rows))

    def subset(self, rows) -> "Items":
        """The identities of ``rows`` (e.g. the images that embedded), in that order."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        parent = self

        def content(sub):
            return parent.contents(rows[np.asarray(sub, dtype=np.int64)])

        return Items([self.keys[i] for i in rows.tolist()], self.source,
                     content=None if self.content is None else content,
                     sizes=None if self.sizes is None else self.sizes[rows], tolerant=self.tolerant)


def check_key(key) -> str:
    if isinstance(key, (bytes, bytearray)):
        key = bytes(key).decode("utf-8", "surrogateescape")
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        key = str(int(key))
    if not isinstance(key, str):
        raise TypeError(f"item keys must be strings (or ints), got {type(key).__name__} {key!r}")
    if not key:
        raise ValueError("item keys must be non-empty strings")
    return key


def user_items(keys, n: int, source: str = "features") -> Items:
    """Items from a user's ``keys=`` (one per row)."""
    if isinstance(keys, (str, bytes)):
        raise TypeError("keys must be a list with one key per row, not a single string")
    keys = list(keys.tolist() if isinstance(keys, np.ndarray) else keys)
    if len(keys) != n:
        raise ValueError(f"keys has {len(keys)} entries but there are {n} rows; pass one key per row")
    return Items(keys, source)


def row_items(features: np.ndarray, source: str = "features") -> Items:
    """Items of a bare array: ``"row:<i>"`` keys and a noise-tolerant feature sketch as content."""
    n = features.shape[0]

    def content(rows):
        return sketch_rows(features[rows])

    return Items([f"row:{i}" for i in range(n)], source, content=content, tolerant=True)


def _projection(d: int) -> np.ndarray:
    rng = np.random.default_rng(20261201 + d)
    m = rng.standard_normal((d, SKETCH_DIM))
    return (m / np.linalg.norm(m, axis=0)).astype(np.float64)


def sketch_rows(X: np.ndarray) -> list:
    """A short, noise-tolerant fingerprint of each row: its direction projected on 8 fixed axes.

    Rows are L2-normalised first, so a re-embedding that only adds float noise (~1e-7) gives
    the same sketch to within ``SKETCH_TOL``, while another image's row differs by ~0.1.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[None]
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    Xn = X / np.where(norms > 0, norms, 1.0)
    proj = Xn @ _projection(X.shape[1])
    return [f"sketch:{X.shape[1]}:" + ",".join(f"{v:.5f}" for v in row) for row in proj]


def sketches_match(a: str, b: str) -> bool | None:
    """True/False whether two sketches agree; None when they cannot be compared (other D)."""
    try:
        _, da, va = a.split(":", 2)
        _, db, vb = b.split(":", 2)
    except (AttributeError, ValueError):
        return None
    if da != db:
        return None
    x = np.array([float(v) for v in va.split(",")])
    y = np.array([float(v) for v in vb.split(",")])
    return bool(x.shape == y.shape and np.abs(x - y).max() <= SKETCH_TOL)


def file_content_hash(path: str, chunk: int = 1 << 20) -> str | None:
    """blake2b (16 bytes, hex) of a file's bytes; None when it cannot be read."""
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as f:
            while True:
                block = f.read(chunk)
                if not block:
                    break
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def pool_items(features: np.ndarray, keys=None, items=None) -> Items:
    """The row identities of a Session's pool: ``items`` as given (an :class:`Items` of one entry
    per row), else ``keys`` (:func:`user_items`), else the rows themselves (:func:`row_items`)."""
    n = features.shape[0]
    if items is None:
        items = row_items(features) if keys is None else user_items(keys, n)
    elif not isinstance(items, Items):
        raise TypeError(f"items must be an alwidget.items.Items, got {type(items).__name__}")
    if len(items) != n:
        raise ValueError(f"items has {len(items)} entries but features has {n} rows")
    return items
