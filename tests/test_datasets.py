"""Data sets: IDX reading, Fashion-MNIST look-up order and messages, the shipped demo subset, digits."""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alwidget import datasets

ROOT = Path(__file__).resolve().parents[1]


def _idx_bytes(arr: np.ndarray) -> bytes:
    codes = {np.dtype(np.uint8): 0x08}
    head = bytes([0, 0, codes[arr.dtype], arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    return head + arr.tobytes()


@pytest.fixture(scope="module")
def real_subset():
    """Real Fashion-MNIST images (from the shipped subset) to write as IDX files."""
    d = datasets.demo()
    return d.images[:50], d.labels[:50].astype(np.uint8)


def _write_split(folder: Path, prefix: str, images, labels, gz: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, arr in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
        data = _idx_bytes(arr)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)


def test_read_idx_plain_gzip_and_damaged(tmp_path, real_subset):
    images, labels = real_subset
    _write_split(tmp_path / "gz", "t10k", images, labels, gz=True)
    _write_split(tmp_path / "raw", "t10k", images, labels, gz=False)
    a = datasets.read_idx(tmp_path / "gz" / "t10k-images-idx3-ubyte.gz")
    b = datasets.read_idx(tmp_path / "raw" / "t10k-images-idx3-ubyte")
    assert a.shape == (50, 28, 28) and a.dtype == np.uint8
    assert (a == images).all() and (b == images).all()
    (tmp_path / "bad").write_bytes(b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") + b"\x00" * 20)
    with pytest.raises(ValueError, match="truncated"):
        datasets.read_idx(tmp_path / "bad")
    (tmp_path / "nope").write_bytes(b"PK\x03\x04 zip")
    with pytest.raises(ValueError, match="not an IDX"):
        datasets.read_idx(tmp_path / "nope")


def test_fashion_mnist_from_path_and_debian_folder(tmp_path, real_subset, monkeypatch):
    images, labels = real_subset
    _write_split(tmp_path / "mine", "t10k", images, labels, gz=False)
    ds = datasets.fashion_mnist("test", path=tmp_path / "mine")
    assert ds.name == "fashion-mnist-test" and len(ds) == 50
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    assert ds.labels.dtype == np.int64 and (ds.labels == labels).all()
    assert "MIT" in ds.licence and "Zalando" in ds.licence
    with pytest.raises(FileNotFoundError, match="no Fashion-MNIST train"):
        datasets.fashion_mnist("train", path=tmp_path / "mine")
    with pytest.raises(ValueError, match="split"):
        datasets.fashion_mnist("validation")

    # the Debian package folder is searched when no path is given (gzipped files there)
    _write_split(tmp_path / "debian", "train", images, labels, gz=True)
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", str(tmp_path / "debian"))
    monkeypatch.setenv("ALWIDGET_CACHE_DIR", str(tmp_path / "cache"))
    assert (datasets.fashion_mnist("train").images == images).all()


def test_fashion_mnist_download_failure_names_every_option(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", str(tmp_path / "absent"))
    monkeypatch.setenv("ALWIDGET_CACHE_DIR", str(tmp_path / "cache"))

    def offline(url, timeout=None):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(FileNotFoundError) as err:
        datasets.fashion_mnist("test")
    msg = str(err.value)
    for needle in ("dataset-fashion-mnist", "no network", "path=", "demo()", str(tmp_path / "cache")):
        assert needle in msg
    with pytest.raises(FileNotFoundError, match="download=False"):
        datasets.fashion_mnist("test", download=False)


def test_fashion_mnist_download_verifies_and_caches(tmp_path, real_subset, monkeypatch):
    images, labels = real_subset
    payload = {
        "t10k-images-idx3-ubyte": gzip.compress(_idx_bytes(images)),
        "t10k-labels-idx1-ubyte": gzip.compress(_idx_bytes(labels)),
    }
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", str(tmp_path / "absent"))
    monkeypatch.setenv("ALWIDGET_CACHE_DIR", str(tmp_path / "cache"))
    sums = dict(datasets._FASHION_FILES)
    sums.update({k: hashlib.md5(v).hexdigest() for k, v in payload.items()})
    monkeypatch.setattr(datasets, "_FASHION_FILES", sums)
    calls = []

    def fake_urlopen(url, timeout=None):
        calls.append(url)
        return io.BytesIO(payload[url.rsplit("/", 1)[1][:-3]])

    monkeypatch.setattr("urllib.request.urlopen", fake_urlopen)
    ds = datasets.fashion_mnist("test")
    assert (ds.images == images).all() and len(calls) == 2
    assert all(u.startswith(datasets.FASHION_MNIST_URL) for u in calls)
    datasets.fashion_mnist("test")  # now read from the user cache
    assert len(calls) == 2

    # a damaged download is refused
    sums["t10k-images-idx3-ubyte"] = "0" * 32
    for f in (tmp_path / "cache" / "datasets" / "fashion-mnist").iterdir():
        f.unlink()
    with pytest.raises(FileNotFoundError, match="damaged"):
        datasets.fashion_mnist("test")


def test_shipped_demo_subset():
    d = datasets.demo()
    assert d.images.shape == (1000, 28, 28) and d.images.dtype == np.uint8
    assert (np.bincount(d.labels, minlength=10) == 100).all()  # stratified
    assert d.class_names == datasets.FASHION_MNIST_CLASSES
    assert "MIT" in d.licence and "Zalando" in d.licence
    data = Path(datasets.__file__).with_name("data")
    assert (data / "fashion_mnist_demo.npz").stat().st_size < 1_500_000  # keeps the wheel small
    text = (data / "LICENSE-fashion-mnist.txt").read_text()
    assert "MIT License" in text and "Zalando SE" in text
    # real pictures, not noise: trousers are taller than wide, bags are not
    def aspect(c):
        m = d.images[d.labels == c] > 30
        return (m.any(axis=2).sum(axis=1) / np.maximum(m.any(axis=1).sum(axis=1), 1)).mean()
    assert aspect(1) > 1.5 > aspect(8)


def test_make_demo_subset_script(tmp_path, real_subset):
    spec = importlib.util.spec_from_file_location("make_demo_subset", ROOT / "scripts" / "make_demo_subset.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    images, labels = real_subset
    big_imgs = np.concatenate([images] * 4)  # 200 real images, every class present
    big_labels = np.concatenate([labels] * 4)
    _write_split(tmp_path / "src", "train", big_imgs, big_labels, gz=True)
    per = int(np.bincount(big_labels, minlength=10).min())
    mod.main(["--per-class", str(per), "--source", str(tmp_path / "src"), "--out", str(tmp_path / "out")])
    with np.load(tmp_path / "out" / "fashion_mnist_demo.npz") as z:
        idx = z["source_index"]
        assert (z["images"] == big_imgs[idx]).all() and (z["labels"] == big_labels[idx]).all()
        assert (np.bincount(z["labels"], minlength=10) == per).all()
        assert len(np.unique(idx)) == idx.size
    assert "MIT License" in (tmp_path / "out" / "LICENSE-fashion-mnist.txt").read_text()


def test_digits_as_images_and_to_images():
    d = datasets.digits()
    assert d.images.shape == (1797, 8, 8) and d.images.dtype == np.uint8
    assert d.images.max() == 255 and set(np.unique(d.labels)) == set(range(10))
    s = d.to_images()
    assert len(s) == 1797 and s.names[0] == "digits/0000"
    assert s.given_labels[:3] == [d.class_names[c] for c in d.labels[:3]]
    im = s.open(5)
    assert im.mode == "RGB" and im.size == (8, 8)
    assert (np.asarray(im)[..., 0] == d.images[5]).all()
    thumb = Image.open(io.BytesIO(s.thumbnail(5, size=32)))
    assert thumb.size == (32, 32)
