"""ImageSet: sources, the bad-image matrix, odd formats converted, thumbnails."""
from __future__ import annotations

import io
import logging
import os
import pickle
import struct
import zlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from alwidget.images import ImageSet, UnreadableImage, array_key, file_key, load_rgb


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png(width, height, bit_depth, colour_type, raw_rows: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(raw_rows))
            + _png_chunk(b"IEND", b""))


def _jpeg_bytes(arr, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


@pytest.fixture()
def matrix(tmp_path):
    """A folder with good, odd and broken images; returns (root, expectations)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    (root / "cats").mkdir(parents=True)
    (root / "dogs" / "deep").mkdir(parents=True)
    good = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    (root / "cats" / "good.jpg").write_bytes(_jpeg_bytes(good))
    (root / "dogs" / "UPPER.JPEG").write_bytes(_jpeg_bytes(good[:, ::-1].copy()))
    # CMYK JPEG
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(root / "cats" / "cmyk.jpg")
    # 16-bit grey PNG: values up to 65535 must be scaled, not clipped to white
    grey16 = np.full((10, 12), 40000, dtype=np.uint16)
    Image.fromarray(grey16).save(root / "cats" / "grey16.png")
    # 16-bit RGB PNG (Pillow reads it as 8-bit RGB)
    rows = b"".join(b"\x00" + np.full((8, 3), 20000, dtype=">u2").tobytes() for _ in range(8))
    (root / "cats" / "rgb16.png").write_bytes(_png(8, 8, 16, 2, rows))
    # palette with transparency and RGBA with alpha
    pal = Image.new("P", (10, 10), 0)
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.putpixel((0, 0), 1)
    pal.save(root / "dogs" / "palette.gif", transparency=1)
    rgba = np.zeros((6, 6, 4), dtype=np.uint8)
    rgba[..., 2] = 255
    rgba[:3, :, 3] = 255  # top half opaque blue, bottom half fully transparent
    Image.fromarray(rgba, "RGBA").save(root / "dogs" / "alpha.png")
    # EXIF orientation 6 (rotate 90 degrees): stored 40 wide x 20 high, shown 20 x 40
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rng.integers(0, 255, (20, 40, 3), dtype=np.uint8)).save(
        root / "dogs" / "deep" / "rotated.jpg", exif=exif.tobytes())
    # broken files
    full = _jpeg_bytes(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    (root / "cats" / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (root / "cats" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(200))
    (root / "cats" / "empty.jpg").write_bytes(b"")
    (root / "cats" / "notimage.jpg").write_bytes(b"this is a text file, not a JPEG\n" * 5)
    # decompression bomb: a valid header claiming 30000 x 30000 pixels (never decoded)
    (root / "dogs" / "bomb.png").write_bytes(_png(30000, 30000, 8, 0, b"\x00" * 30001))
    (root / "dogs" / "README.txt").write_text("not an image; ignored")
    return root


def test_folder_listing_recursive_case_insensitive_and_labels(matrix):
    s = ImageSet.from_folder(matrix, labels_from_subfolders=True)
    names = set(s.names)
    assert "dogs/UPPER.JPEG" in names and "dogs/deep/rotated.jpg" in names
    assert not any(n.endswith(".txt") for n in names)
    # the empty file is skipped at listing time, with its reason
    assert list(s.skipped["reason"]) == ["empty file (0 bytes)"]
    assert s.skipped["path"].iloc[0].endswith("empty.jpg")
    lab = dict(zip(s.names, s.given_labels))
    assert lab["cats/good.jpg"] == "cats" and lab["dogs/deep/rotated.jpg"] == "dogs"
    assert all(isinstance(n, str) for n in s.names)


def test_odd_formats_are_converted_to_rgb(matrix):
    s = ImageSet.from_folder(matrix)
    idx = {n: i for i, n in enumerate(s.names)}

    cmyk = s.open(idx["cats/cmyk.jpg"])
    assert cmyk.mode == "RGB" and cmyk.size == (16, 16)
    r, g, b = np.asarray(cmyk).reshape(-1, 3).mean(axis=0)
    assert r > 200 and g < 60 and b < 60  # CMYK (0, 255, 255, 0) is red

    g16 = np.asarray(s.open(idx["cats/grey16.png"]))
    assert g16.shape == (10, 12, 3) and 150 <= g16.mean() <= 160  # 40000 / 257 = 155.6, not clipped to 255

    rgb16 = np.asarray(s.open(idx["cats/rgb16.png"]))
    assert rgb16.shape == (8, 8, 3) and 70 <= rgb16.mean() <= 85  # 20000 / 257 = 77.8

    pal = np.asarray(s.open(idx["dogs/palette.gif"]))
    assert tuple(pal[0, 0]) == (255, 255, 255)  # the transparent palette entry lands on white
    assert tuple(pal[5, 5]) == (255, 0, 0)

    alpha = np.asarray(s.open(idx["dogs/alpha.png"]))
    assert tuple(alpha[0, 0]) == (0, 0, 255) and tuple(alpha[5, 0]) == (255, 255, 255)

    rot = s.open(idx["dogs/deep/rotated.jpg"])
    assert rot.size == (20, 40)  # EXIF orientation applied

    assert len(s.skipped) == 1  # converting odd formats records nothing


@pytest.mark.parametrize(
    "name, reason",
    [("cats/truncated.jpg", "truncated"), ("cats/corrupt.png", "not an image"),
     ("cats/notimage.jpg", "not an image"), ("dogs/bomb.png", "too large")],
)
def test_broken_files_are_skipped_with_reasons(matrix, name, reason):
    s = ImageSet.from_folder(matrix)
    i = s.names.index(name)
    with pytest.raises(UnreadableImage, match=reason):
        s.open(i)
    rows = s.skipped[s.skipped["path"].str.endswith(name.split("/")[-1])]
    assert len(rows) == 1 and reason in rows["reason"].iloc[0]


def test_max_pixels_limit_is_configurable(tmp_path):
    p = tmp_path / "big.png"
    Image.new("RGB", (200, 100), (1, 2, 3)).save(p)
    with pytest.raises(UnreadableImage, match="too large"):
        load_rgb(str(p), max_pixels=10_000)
    assert load_rgb(str(p), max_pixels=None).size == (200, 100)
    s = ImageSet.from_paths([p], max_pixels=10_000)
    with pytest.raises(UnreadableImage):
        s.open(0)


def test_listing_summary_is_one_log_line(tmp_path, caplog):
    for i in range(5):
        (tmp_path / f"empty{i}.png").write_bytes(b"")
    Image.new("RGB", (4, 4)).save(tmp_path / "ok.png")
    with caplog.at_level(logging.INFO, logger="alwidget"):
        s = ImageSet.from_folder(tmp_path)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "skipped 5 of 6" in warnings[0].getMessage()
    assert len(s) == 1 and len(s.skipped) == 5


def test_big_jpeg_decodes_at_reduced_scale_when_allowed(tmp_path):
    rng = np.random.default_rng(0)
    big = np.repeat(np.repeat(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8), 20, 0), 20, 1)  # 1600x1200
    p = tmp_path / "photo.jpg"
    p.write_bytes(_jpeg_bytes(big))
    s = ImageSet.from_paths([p])
    assert s.open(0).size == (1600, 1200)
    small = s.open(0, size_hint=100)
    assert min(small.size) >= 100 and small.size[0] < 1600  # DCT-scaled decode, still big enough
    assert abs(small.size[0] / small.size[1] - 4 / 3) < 0.02
    assert Image.open(io.BytesIO(s.thumbnail(0, size=64))).size == (64, 48)


def test_paths_duplicates_missing_and_names(tmp_path, caplog):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.new("RGB", (4, 4), (9, 9, 9)).save(tmp_path / "a" / "x.png")
    Image.new("RGB", (4, 4), (9, 9, 9)).save(tmp_path / "b" / "x.png")
    paths = [tmp_path / "a" / "x.png", str(tmp_path / "a" / ".." / "a" / "x.png"), tmp_path / "b" / "x.png",
             tmp_path / "missing.png"]
    with caplog.at_level(logging.WARNING, logger="alwidget"):
        s = ImageSet.from_paths(paths)
    assert len(s) == 2  # the duplicate counted once, the missing file skipped
    assert s.names == ["a/x.png", "b/x.png"]  # relative to the common folder: no ambiguous basenames
    assert list(s.skipped["reason"]) == ["file not found"]
    assert any("duplicate" in r.getMessage() for r in caplog.records)
    with pytest.raises(TypeError, match="from_folder"):
        ImageSet.from_paths(str(tmp_path))


def test_dataframe_source_with_labels_and_root(tmp_path):
    for n in ("p.png", "q.png"):
        Image.new("L", (5, 5), 100).save(tmp_path / n)
    df = pd.DataFrame({"file": ["p.png", "q.png", "nope.png"], "cls": ["shoe", np.nan, "bag"]})
    s = ImageSet.from_dataframe(df, path_column="file", label_column="cls", root=tmp_path)
    assert len(s) == 2 and s.given_labels == ["shoe", None]
    assert s.open(0).mode == "RGB"
    assert s.skipped["path"].iloc[0].endswith("nope.png")
    with pytest.raises(KeyError, match="path_column"):
        ImageSet.from_dataframe(df)


def test_arrays_source_validation_and_identities():
    grey = np.zeros((3, 6, 5), dtype=np.uint8)
    grey[1] = 7
    s = ImageSet.from_arrays(grey, labels=["a", "b", "a"])
    assert s.names == ["#0", "#1", "#2"] and s.given_labels == ["a", "b", "a"]
    im = s.open(1)
    assert im.mode == "RGB" and im.size == (5, 6) and np.asarray(im).max() == 7
    keys = s.identities()
    assert keys.dtype == np.dtype("S16") and keys[0] == keys[2] and keys[0] != keys[1]
    assert keys[1] == np.array([array_key(grey[1])], dtype="S16")[0]  # (numpy drops trailing NULs alike)
    s.thumbnail(0)
    back = pickle.loads(pickle.dumps(s))  # spawn-started DataLoader workers pickle the set
    assert back.names == s.names and np.asarray(back.open(1)).max() == 7 and back.thumbnail(0)[:2] == b"\xff\xd8"
    colour = np.full((2, 4, 4, 3), 200, dtype=np.uint8)
    assert ImageSet.from_arrays(colour).open(0).getpixel((0, 0)) == (200, 200, 200)
    with pytest.raises(TypeError, match="uint8"):
        ImageSet.from_arrays(np.random.default_rng(0).random((2, 4, 4)))
    with pytest.raises(ValueError, match="shape"):
        ImageSet.from_arrays(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="names"):
        ImageSet.from_arrays(grey, names=["x"])


def test_file_identity_changes_when_the_file_changes(tmp_path):
    p = tmp_path / "a.png"
    Image.new("RGB", (4, 4)).save(p)
    k1 = ImageSet.from_paths([p]).identities()[0]
    st = os.stat(p)
    # the documented key functions (the seam for external engines) give the same keys
    assert k1 == np.array([file_key(str(p.resolve()), st.st_size, st.st_mtime_ns)], dtype="S16")[0]
    assert ImageSet.from_folder(tmp_path).identities()[0] == k1
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    k2 = ImageSet.from_paths([p]).identities()[0]
    assert k1 != k2


def test_thumbnails_are_cached_jpeg_bytes(matrix):
    s = ImageSet.from_folder(matrix)
    i = s.names.index("cats/good.jpg")
    t = s.thumbnail(i, size=16)
    assert isinstance(t, bytes) and t[:2] == b"\xff\xd8"
    im = Image.open(io.BytesIO(t))
    assert max(im.size) == 16 and im.mode == "RGB"
    assert s.thumbnail(i, size=16) is t  # served from the cache
    # tiny sources are upscaled so they stay visible
    tiny = ImageSet.from_arrays(np.zeros((1, 8, 8), dtype=np.uint8))
    assert Image.open(io.BytesIO(tiny.thumbnail(0, size=64))).size == (64, 64)
    # unreadable -> placeholder, and recorded
    j = s.names.index("cats/notimage.jpg")
    ph = Image.open(io.BytesIO(s.thumbnail(j, size=24)))
    assert ph.size == (24, 24)
    assert s.skipped["path"].str.endswith("notimage.jpg").any()


def test_subset_keeps_order_labels_and_skip_record(matrix):
    s = ImageSet.from_folder(matrix, labels_from_subfolders=True)
    j = s.names.index("cats/notimage.jpg")
    with pytest.raises(UnreadableImage):
        s.open(j)
    keep = [i for i in range(len(s)) if i != j][::-1]
    sub = s.subset(keep)
    assert sub.names == [s.names[i] for i in keep]
    assert sub.given_labels == [s.given_labels[i] for i in keep]
    assert (sub.identities() == s.identities()[keep]).all()
    assert sub.skipped["path"].str.endswith("notimage.jpg").any()


def test_symlink_cycles_end_and_symlink_loops_are_reported(tmp_path):
    from PIL import Image

    root = tmp_path / "pics"
    (root / "sub").mkdir(parents=True)
    Image.new("RGB", (8, 8), (10, 20, 30)).save(root / "a.png")
    Image.new("RGB", (8, 8), (30, 20, 10)).save(root / "sub" / "b.png")
    os.symlink(root, root / "sub" / "back_to_top")  # a directory cycle
    os.symlink(root / "loop2.png", root / "loop1.png")  # a file symlink loop
    os.symlink(root / "loop1.png", root / "loop2.png")
    s = ImageSet.from_folder(root)
    assert s.names == ["a.png", "sub/b.png"]
    reasons = dict(zip(s.skipped["path"], s.skipped["reason"]))
    assert set(reasons) == {str(root / "loop1.png"), str(root / "loop2.png")}
    assert all("cannot follow symlink" in r for r in reasons.values())


def test_items_of_a_folder_are_relative_paths_with_content_hashes(tmp_path):
    from PIL import Image

    root = tmp_path / "pics"
    (root / "x").mkdir(parents=True)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(root / "x" / "one.png")
    Image.new("RGB", (8, 8), (1, 2, 3)).save(root / "two.png")
    items = ImageSet.from_folder(root).items()
    assert items.keys == ["two.png", "x/one.png"] and items.source == f"folder:{root}"
    h = items.contents([0, 1])
    assert h[0] == h[1] and len(h[0]) == 32  # same bytes, same hash
    arrays = ImageSet.from_arrays(np.zeros((2, 4, 4), np.uint8), names=["p", "q"]).items()
    assert arrays.keys == ["p", "q"] and arrays.contents([0])[0] == arrays.contents([1])[0]
