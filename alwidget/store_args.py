"""What LabelStore accepts at its boundary: class names, the rows of a view, row indices.

Split from :mod:`alwidget.store` (which re-exports ``check_class_name``): pure checks, no SQLite.
"""
from __future__ import annotations

import numpy as np

from .items import Items

__all__ = ["as_items", "check_class_name", "check_class_names", "check_rows", "stored_view"]


def check_class_name(name) -> str:
    """A class name: a non-empty string (numpy strings accepted)."""
    if isinstance(name, (bytes, bytearray)):
        raise TypeError(f"class names must be str, got bytes {name!r}; decode them first")
    if not isinstance(name, str):
        raise TypeError(f"class names must be str, got {type(name).__name__} {name!r}")
    name = str(name)
    if not name.strip():
        raise ValueError("class names must be non-empty strings")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"class name {name!r} is not valid text (it holds a lone surrogate); "
                         "type the name again") from None
    return name


def as_items(items, n_samples, keys) -> Items | None:
    """The rows of a store from LabelStore's items / n_samples / keys (None: none given)."""
    if isinstance(items, Items):
        return items
    if items is not None:
        keys = items
    if keys is not None:
        return Items(list(keys), "keys")
    if n_samples is not None:
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples <= 0:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        return Items([f"row:{i}" for i in range(int(n_samples))], "rows")
    return None


def stored_view(keys: dict) -> Items:
    """The rows of a store opened without items: by number for "row:<i>" keys, else by key."""
    rows = [k[4:] for k in keys if k.startswith("row:")]
    if keys and len(rows) == len(keys) and all(r.isdigit() for r in rows):
        return Items([f"row:{i}" for i in range(max(map(int, rows)) + 1)], "store")
    return Items(sorted(keys), "store")


def check_class_names(classes):
    """None, or a list of distinct class names (a Session's ``classes=``)."""
    if classes is None:
        return None
    if isinstance(classes, str) or not hasattr(classes, "__iter__"):
        raise TypeError(f"classes must be a list of class names, got {classes!r}")
    classes = [check_class_name(c) for c in classes]
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes contains duplicates: {classes}")
    return classes


def check_rows(indices, n: int) -> np.ndarray:
    """Row indices of a write as (k,) int64, in order, repeats dropped; n: the rows of the view."""
    arr = np.asarray(indices)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"indices must be a 1-D list of row indices, got shape {arr.shape}")
    if arr.size and (arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"indices must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        bad = arr[(arr < 0) | (arr >= n)]
        raise IndexError(f"row index {int(bad[0])} is out of range for {n} items (valid: 0..{n - 1})")
    _, first = np.unique(arr, return_index=True)
    if arr.size == 0:
        raise ValueError("at least one row index is needed")
    return arr[np.sort(first)]  # drop repeats, keep order
