"""How arrays travel between the kernel and the browser (the Python half of js/src/codecs.js).

An ndarray becomes ``{"buffer": memoryview, "dtype": str, "shape": list}`` (C-contiguous;
float64 -> float32, int64 -> int32: the browser has no use for the extra precision and
JavaScript typed arrays have no int64 that WebGL could use). Large arrays are cut into
chunks so that every comm message stays far below Jupyter's 10 MB websocket cap.
Nothing else in alwidget knows how bytes travel.
"""
from __future__ import annotations

import numpy as np

__all__ = ["CHUNK_BYTES", "array_from_json", "array_to_json", "chunk_messages", "to_wire"]

#: The most payload bytes one message carries (1 MiB: 1M float32 points take 4 messages).
CHUNK_BYTES = 1 << 20

_NARROW = {np.dtype(np.float64): np.float32, np.dtype(np.int64): np.int32, np.dtype(np.uint64): np.uint32}
_WIRE_DTYPES = {"float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32"}


def to_wire(array) -> np.ndarray:
    """The array as the browser will see it: C-contiguous, float64/int64 narrowed to 32 bits."""
    arr = np.asarray(array)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    arr = arr.astype(_NARROW.get(arr.dtype, arr.dtype), copy=False)
    if arr.dtype.name not in _WIRE_DTYPES:
        raise TypeError(f"arrays sent to the browser must be numeric, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr)


def array_to_json(array) -> dict:
    """ndarray -> ``{"buffer": memoryview, "dtype": str, "shape": list}`` (see module doc)."""
    arr = to_wire(array)
    return {"buffer": memoryview(arr).cast("B"), "dtype": arr.dtype.name, "shape": list(arr.shape)}


def array_from_json(value) -> np.ndarray:
    """``{"buffer", "dtype", "shape"}`` -> ndarray (a copy; accepts bytes, memoryview, bytearray).

    Raises ValueError when the buffer does not hold ``prod(shape)`` items of ``dtype``.
    """
    if not isinstance(value, dict) or "buffer" not in value or "dtype" not in value:
        raise ValueError("expected a dict with 'buffer', 'dtype' and 'shape'")
    dtype = np.dtype(str(value["dtype"]))
    if dtype.name not in _WIRE_DTYPES:
        raise ValueError(f"unsupported dtype {dtype} in a message from the browser")
    raw = bytes(value["buffer"])
    if len(raw) % dtype.itemsize:
        raise ValueError(f"buffer of {len(raw)} bytes is not a whole number of {dtype} items")
    arr = np.frombuffer(raw, dtype=dtype).copy()
    shape = value.get("shape")
    if shape is not None:
        shape = tuple(int(s) for s in shape)
        if int(np.prod(shape, dtype=np.int64)) != arr.size:
            raise ValueError(f"buffer holds {arr.size} items but shape {shape} needs {int(np.prod(shape))}")
        arr = arr.reshape(shape)
    return arr


def chunk_messages(name: str, array, version: int, max_bytes: int = CHUNK_BYTES):
    """Yield ``(content, [buffer])`` messages carrying a flat array in chunks of <= max_bytes.

    ``content = {"type": "array", "version", "name", "dtype", "total", "offset"}``; the buffer
    holds items ``[offset, offset + len)``. An empty array still yields one (empty) message.
    """
    arr = to_wire(array).reshape(-1)
    per = max(1, max_bytes // arr.dtype.itemsize)
    total = int(arr.size)
    starts = range(0, total, per) if total else [0]
    for start in starts:
        part = arr[start : start + per]
        content = {
            "type": "array",
            "version": int(version),
            "name": name,
            "dtype": arr.dtype.name,
            "total": total,
            "offset": int(start),
        }
        yield content, [memoryview(part).cast("B")]
