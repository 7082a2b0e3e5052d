"""How arrays travel to the browser: dtype narrowing, round trips, chunking under the cap."""
import numpy as np
import pytest

from alwidget import _serialize


def test_narrowing_and_contiguity():
    arr = np.arange(12, dtype=np.float64).reshape(3, 4)[:, ::2]  # not C-contiguous
    out = _serialize.array_to_json(arr)
    assert out["dtype"] == "float32"
    assert out["shape"] == [3, 2]
    back = _serialize.array_from_json(out)
    np.testing.assert_array_equal(back, arr.astype(np.float32))
    assert _serialize.array_to_json(np.arange(3, dtype=np.int64))["dtype"] == "int32"
    assert _serialize.array_to_json(np.array([True, False]))["dtype"] == "uint8"


def test_rejects_non_numeric_and_bad_buffers():
    with pytest.raises(TypeError, match="numeric"):
        _serialize.to_wire(np.array(["a", "b"]))
    with pytest.raises(ValueError, match="whole number"):
        _serialize.array_from_json({"buffer": b"\x00\x01\x02", "dtype": "int32", "shape": None})
    with pytest.raises(ValueError, match="shape"):
        _serialize.array_from_json({"buffer": b"\x00" * 8, "dtype": "int32", "shape": [3]})
    with pytest.raises(ValueError, match="unsupported dtype"):
        _serialize.array_from_json({"buffer": b"\x00" * 8, "dtype": "complex64", "shape": None})


def test_chunks_cover_the_array_and_respect_the_cap():
    arr = np.arange(1000, dtype=np.float32)
    msgs = list(_serialize.chunk_messages("x", arr, version=3, max_bytes=1000))
    assert len(msgs) == 4  # 250 float32 per message
    rebuilt = np.empty(1000, dtype=np.float32)
    for content, (buf,) in msgs:
        assert content["type"] == "array" and content["version"] == 3 and content["name"] == "x"
        assert content["total"] == 1000 and buf.nbytes <= 1000
        part = np.frombuffer(buf, dtype=content["dtype"])
        rebuilt[content["offset"] : content["offset"] + part.size] = part
    np.testing.assert_array_equal(rebuilt, arr)


def test_one_million_points_stay_far_below_the_websocket_cap():
    arr = np.zeros(1_000_000, dtype=np.float64)  # narrowed to float32: 4 MB in 4 messages
    sizes = [buf.nbytes for _, (buf,) in _serialize.chunk_messages("x", arr, version=1)]
    assert sum(sizes) == 4_000_000
    assert max(sizes) <= _serialize.CHUNK_BYTES < 10 * 1024 * 1024 // 4


def test_empty_array_still_sends_one_message():
    msgs = list(_serialize.chunk_messages("batch", np.zeros(0, dtype=np.int32), version=1))
    assert len(msgs) == 1
    assert msgs[0][0]["total"] == 0 and msgs[0][1][0].nbytes == 0
