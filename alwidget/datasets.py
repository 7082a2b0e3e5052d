"""Real image data sets for demos, teaching and tests.

- :func:`demo`: a stratified Fashion-MNIST subset shipped inside the package (works offline
  on any machine; made by ``scripts/make_demo_subset.py``).
- :func:`fashion_mnist`: the full Fashion-MNIST from the IDX files of the Debian package
  ``dataset-fashion-mnist``, a folder you name, the user cache, or a download from the
  official source.
- :func:`digits`: scikit-learn's bundled 8x8 handwritten digits as images.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
from pathlib import Path

import numpy as np

from ._util import atomic_write, cache_dir
from .images import ImageSet

__all__ = ["Dataset", "FASHION_MNIST_CLASSES", "demo", "digits", "fashion_mnist", "read_idx"]

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
FASHION_MNIST_LICENCE = (
    "Fashion-MNIST, Copyright (c) 2017 Zalando SE (Zalando Research), MIT licence; "
    "https://github.com/zalandoresearch/fashion-mnist"
)
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
# file stem -> md5 of the .gz file (from the data set's README)
_FASHION_FILES = {
    "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
}
_SPLIT_PREFIX = {"train": "train", "test": "t10k"}
_DEMO_FILE = Path(__file__).with_name("data") / "fashion_mnist_demo.npz"


@dataclasses.dataclass
class Dataset:
    """An image data set: ``images`` uint8 (n, h, w) or (n, h, w, 3), ``labels`` int64 (n,)
    class ids into ``class_names``, a ``name`` and its ``licence``/credit line."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list
    name: str
    licence: str

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, {len(self)} images of {self.images.shape[1:]}, "
                f"{len(self.class_names)} classes)")

    def to_images(self) -> ImageSet:
        """The images as an :class:`~alwidget.images.ImageSet`; class names become ``given_labels``."""
        width = len(str(len(self) - 1))
        out = ImageSet.from_arrays(
            self.images,
            names=[f"{self.name}/{i:0{width}d}" for i in range(len(self))],
            labels=[self.class_names[c] for c in self.labels.tolist()],
        )
        out._item_source = f"dataset:{self.name}"  # keys: "<name>/<index>" (the names above)
        return out


# --------------------------------------------------------------------------------------
# IDX files
# --------------------------------------------------------------------------------------
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path) -> np.ndarray:
    """Read an IDX file (gzipped or not) into a numpy array of its declared shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4].hex()})")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(f"{path} is truncated or damaged: {len(data) - header} data bytes, expected {expected}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find_idx(folder: Path, stem: str):
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        p = folder / name
        if p.is_file():
            return p
    return None


def _download_fashion_mnist(folder: Path, stems, timeout: float = 15.0) -> None:
    import urllib.request

    folder.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        target = folder / f"{stem}.gz"
        if target.is_file():
            continue
        url = FASHION_MNIST_URL + f"{stem}.gz"
        with urllib.request.urlopen(url, timeout=timeout) as r:
            data = r.read()
        md5 = hashlib.md5(data).hexdigest()
        if md5 != _FASHION_FILES[stem]:
            raise OSError(f"download of {url} is damaged (md5 {md5}, expected {_FASHION_FILES[stem]})")
        atomic_write(target, data)


def fashion_mnist(split: str = "train", path=None, *, download: bool = True) -> Dataset:
    """Fashion-MNIST (70,000 28x28 grey images, 10 classes; MIT, Zalando Research).

    Looks in ``path`` (a folder with the four IDX files, gzipped or not), then the Debian
    package folder ``/usr/share/datasets/fashion-mnist``, then the user cache
    (``alwidget._util.cache_dir('datasets', 'fashion-mnist')``); if ``download`` is true and
    none has the files, downloads them from the official source into the user cache.
    ``split`` is ``"train"`` (60,000) or ``"test"`` (10,000).
    """
    if split not in _SPLIT_PREFIX:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    prefix = _SPLIT_PREFIX[split]
    stems = [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]
    if path is not None:
        folders = [Path(path).expanduser()]
        if not folders[0].is_dir():
            raise FileNotFoundError(f"path={str(path)!r} is not a folder; pass the folder holding the IDX files")
    else:
        folders = [Path(DEBIAN_FASHION_MNIST), cache_dir("datasets", "fashion-mnist")]
    for folder in folders:
        found = [_find_idx(folder, s) for s in stems]
        if all(found):
            return _load_fashion(found, split)
    if path is not None:
        raise FileNotFoundError(f"no Fashion-MNIST {split} IDX files ({', '.join(stems)}[.gz]) in {str(path)!r}")
    user = folders[-1]
    error = "download=False"
    if download:
        try:
            _download_fashion_mnist(user, stems)
            return _load_fashion([_find_idx(user, s) for s in stems], split)
        except OSError as exc:  # URLError, timeouts, damaged downloads
            error = f"download from {FASHION_MNIST_URL} failed: {exc}"
    raise FileNotFoundError(
        f"Fashion-MNIST ({split}) was not found in {DEBIAN_FASHION_MNIST} (Debian package "
        f"'dataset-fashion-mnist') or in {user}, and {error}. Options: install the Debian package; "
        f"download {', '.join(s + '.gz' for s in stems)} from {FASHION_MNIST_URL} into {user}; pass "
        "path=FOLDER; or use alwidget.datasets.demo(), the subset shipped with alwidget."
    )


def _load_fashion(files, split) -> Dataset:
    images = read_idx(files[0])
    labels = read_idx(files[1]).astype(np.int64)
    if images.ndim != 3 or labels.shape != (images.shape[0],):
        raise ValueError(f"Fashion-MNIST files disagree: images {images.shape}, labels {labels.shape}")
    return Dataset(images=np.ascontiguousarray(images, dtype=np.uint8), labels=labels,
                   class_names=list(FASHION_MNIST_CLASSES), name=f"fashion-mnist-{split}",
                   licence=FASHION_MNIST_LICENCE)


def demo() -> Dataset:
    """The stratified Fashion-MNIST subset shipped with alwidget (offline; MIT, Zalando Research)."""
    if not _DEMO_FILE.is_file():
        raise FileNotFoundError(
            f"the shipped demo subset {_DEMO_FILE} is missing; reinstall alwidget or regenerate it with "
            "python scripts/make_demo_subset.py"
        )
    with np.load(_DEMO_FILE, allow_pickle=False) as z:
        images, labels = z["images"], z["labels"].astype(np.int64)
        class_names = [str(c) for c in z["class_names"].tolist()]
        licence = str(z["licence"])
    return Dataset(images=images, labels=labels, class_names=class_names, name="fashion-mnist-demo", licence=licence)


def digits() -> Dataset:
    """scikit-learn's 1,797 handwritten digits (8x8, 0..16) as uint8 images scaled to 0..255."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.rint(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    return Dataset(
        images=images,
        labels=d.target.astype(np.int64),
        class_names=[str(i) for i in range(10)],
        name="digits",
        licence=("Optical Recognition of Handwritten Digits (E. Alpaydin, C. Kaynak), UCI Machine Learning "
                 "Repository, CC BY 4.0; as bundled with scikit-learn"),
    )
