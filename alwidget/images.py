"""Image sources with on-demand thumbnails (decoding: :mod:`alwidget.decode`).

An :class:`ImageSet` is an ordered list of images from a folder, a list of paths, a
pandas DataFrame or an in-memory uint8 array. Listing is cheap (one ``stat`` per file);
pixels are decoded only when asked for (``open``, ``thumbnail``, or the embedding
step). Files that cannot be read are never fatal: they are recorded in ``skipped``
(path + reason) and summarised in one log line, while readable odd formats (CMYK,
16-bit, palette, alpha, EXIF-rotated) are converted to plain RGB.
"""
from __future__ import annotations

import collections
import hashlib
import io
import logging
import os
import stat
import threading
from pathlib import Path

import numpy as np

from ._util import array_hash
from .decode import DEFAULT_MAX_PIXELS, UnreadableImage, array_to_rgb_image, check_image_array, load_rgb

__all__ = ["IMAGE_EXTENSIONS", "ImageSet", "UnreadableImage", "array_key", "file_key", "load_rgb", "summarize_skipped"]

logger = logging.getLogger("alwidget")

#: Extensions picked up by :meth:`ImageSet.from_folder` (compared case-insensitively).
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
     ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico"}
)

_THUMB_CACHE_SIZE = 4096  # ~3 KB per 96 px JPEG: about 12 MB at most


def summarize_skipped(skipped, total: int, what: str = "images") -> str | None:
    """One human line about skipped files (None when nothing was skipped)."""
    n = len(skipped)
    if n == 0:
        return None
    reasons = collections.Counter(str(r).split(" (")[0] for r in skipped["reason"])
    parts = ", ".join(f"{c} {r}" for r, c in reasons.most_common(4))
    if len(reasons) > 4:
        parts += ", ..."
    return f"skipped {n} of {total} {what} that could not be read ({parts}); see .skipped for the list"


def _norm_path(p) -> str:
    return os.path.normcase(os.path.abspath(os.fspath(Path(p).expanduser())))


class ImageSet:
    """An ordered set of images: files (lazy, decoded on demand) or an in-memory uint8 array.

    Build one with :meth:`from_folder`, :meth:`from_paths`, :meth:`from_dataframe` or
    :meth:`from_arrays`. Attributes:

    - ``names``: display names (plain strings; relative paths for files),
    - ``given_labels``: labels that came with the images (subfolder names, a DataFrame
      column, or ``labels=``), or None,
    - ``paths``: absolute file paths (None for arrays),
    - ``skipped``: DataFrame (path, reason) of files that could not be read so far.
    """

    def __init__(self, *, paths=None, sizes=None, mtimes=None, array=None, names, given_labels=None,
                 skipped=(), max_pixels=DEFAULT_MAX_PIXELS, source=""):
        self.paths = paths
        self._sizes = sizes
        self._mtimes = mtimes
        self.array = array
        self.names = list(names)
        self.given_labels = None if given_labels is None else list(given_labels)
        self.max_pixels = max_pixels
        self.source = source
        self._skipped = dict(skipped)  # path -> reason, insertion-ordered
        self._failed_index = {}  # index -> reason, for images found unreadable after listing
        self._thumbs = collections.OrderedDict()
        self._lock = threading.Lock()
        self._keys = None
        self._item_keys = None  # identity keys for labels (see items()); None: derived from paths/names
        self._item_source = None
        self._content = {}  # cache key -> content hash of a file

    def __getstate__(self):  # picklable (spawn workers): drop the lock and the thumbnail cache
        state = self.__dict__.copy()
        state["_lock"] = None
        state["_thumbs"] = collections.OrderedDict()
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # construction ---------------------------------------------------------------------
    @classmethod
    def from_folder(cls, path, labels_from_subfolders: bool = False, *, recursive: bool = True,
                    extensions=None, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> "ImageSet":
        """All images under ``path`` (recursive by default), sorted by relative path.

        ``labels_from_subfolders=True`` takes each image's first-level subfolder name as
        its given label (images directly in ``path`` get None). ``extensions`` overrides
        :data:`IMAGE_EXTENSIONS` (case-insensitive, with the dot).
        """
        root = Path(path).expanduser()
        if not root.exists():
            raise FileNotFoundError(f"path={str(path)!r} does not exist; pass a folder of images")
        if not root.is_dir():
            raise NotADirectoryError(
                f"path={str(path)!r} is a file, not a folder; use ImageSet.from_paths([...]) for single files"
            )
        exts = IMAGE_EXTENSIONS if extensions is None else frozenset(e.lower() for e in extensions)
        root = Path(_norm_path(root))
        found, ignored, bad = _walk(root, exts, recursive)
        found.sort(key=lambda t: t[0])
        labels = None
        if labels_from_subfolders:
            labels = [r.split("/", 1)[0] if "/" in r else None for r, _, _ in found]
        if ignored:
            logger.info("alwidget: ignored %d files in %s without an image extension", ignored, root)
        out = cls._from_file_list([p for _, p, _ in found], names=[r for r, _, _ in found], labels=labels,
                                  max_pixels=max_pixels, source=str(root), entries=[e for _, _, e in found],
                                  skipped=bad)
        out._item_keys = list(out.names)  # relative paths: the folder may move without losing a label
        out._item_source = f"folder:{root}"
        if len(out) == 0 and not out._skipped:
            raise ValueError(
                f"no images found under {str(path)!r} (extensions: {', '.join(sorted(exts))}); "
                "check the folder or pass extensions=[...]"
            )
        return out

    @classmethod
    def from_paths(cls, paths, labels=None, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> "ImageSet":
        """Images from a list of file paths (order kept; duplicate paths counted once).

        Display names are the paths relative to their common folder.
        """
        if isinstance(paths, (str, os.PathLike)):
            raise TypeError("paths must be a list of file paths; for a folder use ImageSet.from_folder(path)")
        paths = [os.fspath(Path(p).expanduser()) for p in paths]
        if labels is not None:
            labels = list(labels)
            if len(labels) != len(paths):
                raise ValueError(f"labels has {len(labels)} entries but paths has {len(paths)}; pass one label per path")
        return cls._from_file_list(paths, names=None, labels=labels, max_pixels=max_pixels, source="paths")

    @classmethod
    def from_dataframe(cls, df, path_column: str = "path", label_column: str | None = None, *,
                       root=None, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> "ImageSet":
        """Images listed in a DataFrame column (relative paths resolved against ``root``).

        Missing labels (NaN/None) in ``label_column`` become None.
        """
        if path_column not in df.columns:
            raise KeyError(f"path_column={path_column!r} is not a column of df (columns: {list(df.columns)})")
        if label_column is not None and label_column not in df.columns:
            raise KeyError(f"label_column={label_column!r} is not a column of df (columns: {list(df.columns)})")
        paths = [str(p) for p in df[path_column].tolist()]
        if root is not None:
            paths = [p if os.path.isabs(p) else os.path.join(os.fspath(root), p) for p in paths]
        labels = None
        if label_column is not None:
            import pandas as pd

            labels = [None if (v is None or (not isinstance(v, str) and pd.isna(v))) else v
                      for v in df[label_column].tolist()]
        return cls._from_file_list(paths, names=None, labels=labels, max_pixels=max_pixels, source="dataframe")

    @classmethod
    def from_arrays(cls, array, names=None, labels=None) -> "ImageSet":
        """Images from a uint8 array (n, h, w) grey or (n, h, w, 1|3|4) colour.

        ``names`` default to ``"#0", "#1", ...``; ``labels`` (one per image) become ``given_labels``.
        """
        arr = check_image_array(array)
        n = arr.shape[0]
        if names is None:
            names = [f"#{i}" for i in range(n)]
        else:
            names = [str(x) for x in names]
            if len(names) != n:
                raise ValueError(f"names has {len(names)} entries but array has {n} images")
        if labels is not None:
            labels = list(labels.tolist() if isinstance(labels, np.ndarray) else labels)
            if len(labels) != n:
                raise ValueError(f"labels has {len(labels)} entries but array has {n} images")
        return cls(array=arr, names=names, given_labels=labels, max_pixels=None, source="array")

    @classmethod
    def _from_file_list(cls, paths, names, labels, max_pixels, source, entries=None, skipped=()):
        """``entries``: DirEntry objects from a folder walk (paths already absolute and unique);
        ``skipped``: (path, reason) pairs the walk could not list."""
        seen = set()
        keep_paths, sizes, mtimes, keep_names, keep_labels = [], [], [], [], []
        skipped = dict(skipped)
        n_listed = len(paths) + len(skipped)
        duplicates = conflicts = 0
        first_label = {}
        for i, p in enumerate(paths):
            lab = None if labels is None else labels[i]
            if entries is None:
                norm = _norm_path(p)
                if norm in seen or norm in skipped:
                    duplicates += 1
                    if labels is not None and first_label.get(norm) != lab:
                        conflicts += 1
                    continue
                first_label[norm] = lab
            else:
                norm = p
            try:
                st = os.stat(norm) if entries is None else entries[i].stat(follow_symlinks=True)
            except FileNotFoundError:
                skipped[norm] = "file not found"
                continue
            except OSError as exc:
                skipped[norm] = f"cannot access ({exc.strerror or exc})"
                continue
            if not stat.S_ISREG(st.st_mode):
                skipped[norm] = "not a regular file"
                continue
            if st.st_size == 0:
                skipped[norm] = "empty file (0 bytes)"
                continue
            seen.add(norm)
            keep_paths.append(norm)
            sizes.append(st.st_size)
            mtimes.append(st.st_mtime_ns)
            keep_names.append(None if names is None else names[i])
            keep_labels.append(lab)
        if names is None:
            keep_names = _relative_names(keep_paths)
        out = cls(paths=keep_paths, sizes=np.asarray(sizes, dtype=np.int64),
                  mtimes=np.asarray(mtimes, dtype=np.int64), names=keep_names,
                  given_labels=None if labels is None else keep_labels,
                  skipped=skipped, max_pixels=max_pixels, source=source)
        if duplicates:
            msg = f"alwidget: {duplicates} duplicate path(s) counted once"
            if conflicts:
                msg += f" ({conflicts} with a different label; the first label was kept)"
            logger.warning(msg)
        line = summarize_skipped(out.skipped, n_listed - duplicates)
        if line:
            logger.warning("alwidget: %s", line)
        return out

    # access ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        kind = "array" if self.array is not None else "files"
        return f"ImageSet({len(self)} {kind} from {self.source!r}, {len(self._skipped) + len(self._failed_index)} skipped)"

    @property
    def is_array(self) -> bool:
        return self.array is not None

    @property
    def skipped(self):
        """DataFrame with columns ``path`` and ``reason``: every file that could not be read."""
        import pandas as pd

        rows = list(self._skipped.items())
        rows += [(self.paths[i] if self.paths is not None else self.names[i], r)
                 for i, r in sorted(self._failed_index.items())]
        return pd.DataFrame(rows, columns=["path", "reason"])

    def _check_index(self, i) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"index must be an integer, got {type(i).__name__}")
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of range for {n} images")
        return int(i) % n

    def mark_unreadable(self, i: int, reason: str) -> None:
        """Record that image ``i`` could not be decoded (used by the embedding step)."""
        with self._lock:
            self._failed_index[int(i)] = str(reason)

    def load(self, i: int, size_hint: int | None = None):
        """Decode image ``i`` as RGB ``PIL.Image`` or raise UnreadableImage (nothing recorded).

        ``size_hint`` lets big JPEGs decode at a reduced scale (see :func:`load_rgb`)."""
        i = self._check_index(i)
        if self.array is not None:
            return array_to_rgb_image(self.array[i])
        return load_rgb(self.paths[i], self.max_pixels, size_hint)

    def open(self, i: int, size_hint: int | None = None):
        """Image ``i`` as an RGB ``PIL.Image``; an unreadable file is recorded in ``skipped`` and re-raised."""
        try:
            return self.load(i, size_hint)
        except UnreadableImage as exc:
            self.mark_unreadable(self._check_index(i), str(exc))
            raise

    def thumbnail(self, i: int, size: int = 96, *, quality: int = 80) -> bytes:
        """JPEG bytes of image ``i`` fitted into ``size`` x ``size`` (cached, LRU).

        An unreadable file yields a grey placeholder and is recorded in ``skipped``.
        """
        i = self._check_index(i)
        size = int(size)
        if size <= 0:
            raise ValueError(f"size must be a positive number of pixels, got {size}")
        key = (i, size, quality)
        with self._lock:
            hit = self._thumbs.get(key)
            if hit is not None:
                self._thumbs.move_to_end(key)
                return hit
        from PIL import Image

        try:
            im = self.open(i, size_hint=size)
            im.thumbnail((size, size), Image.Resampling.LANCZOS)
            if max(im.size) < size // 2:  # tiny sources (28 px) are upscaled so they stay visible
                scale = size / max(im.size)
                im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                               Image.Resampling.NEAREST)
        except UnreadableImage:
            im = Image.new("RGB", (size, size), (200, 200, 200))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=quality)
        data = buf.getvalue()
        with self._lock:
            self._thumbs[key] = data
            while len(self._thumbs) > _THUMB_CACHE_SIZE:
                self._thumbs.popitem(last=False)
        return data

    def subset(self, indices) -> "ImageSet":
        """A new ImageSet with the images at ``indices`` (e.g. ``Embeddings.keep``), in that order."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"indices must lie in 0..{len(self) - 1}")
        out = ImageSet(
            paths=None if self.paths is None else [self.paths[i] for i in idx],
            sizes=None if self._sizes is None else self._sizes[idx],
            mtimes=None if self._mtimes is None else self._mtimes[idx],
            array=None if self.array is None else self.array[idx],
            names=[self.names[i] for i in idx],
            given_labels=None if self.given_labels is None else [self.given_labels[i] for i in idx],
            skipped=self._skipped, max_pixels=self.max_pixels, source=self.source,
        )
        for i, r in self._failed_index.items():  # keep the record of what was left out
            name = self.paths[i] if self.paths is not None else self.names[i]
            out._skipped.setdefault(name, r)
        if self._keys is not None:
            out._keys = self._keys[idx]
        if self._item_keys is not None:
            out._item_keys = [self._item_keys[i] for i in idx]
        out._item_source = self._item_source
        return out

    def items(self):
        """Identity of the images for the label store (:class:`alwidget.items.Items`).

        Folder images are keyed by their path relative to the folder, other files by their
        absolute path, arrays by their names; a file's content hash (computed when needed, i.e.
        when it is labelled or is a rename candidate) lets a label follow a renamed file, and
        array images carry their pixel hash. See :mod:`alwidget.items` for the rules.
        """
        from .items import Items

        if self.array is not None:
            keys = self._item_keys or list(self.names)
            return Items(keys, self._item_source or "images", content=self._array_contents)
        keys = self._item_keys or list(self.paths)
        return Items(keys, self._item_source or f"files ({self.source})", content=self._file_contents,
                     sizes=self._sizes)

    def _file_contents(self, rows) -> list:
        from .items import file_content_hash

        ids = self.identities()
        out = []
        for r in np.asarray(rows, dtype=np.int64).tolist():
            key = bytes(ids[r])
            if key not in self._content:  # the cache key changes when the file changes
                self._content[key] = file_content_hash(self.paths[r])
            out.append(self._content[key])
        return out

    def _array_contents(self, rows) -> list:
        return [array_key(self.array[r]).hex() for r in np.asarray(rows, dtype=np.int64).tolist()]

    def identities(self) -> np.ndarray:
        """(n,) ``|S16`` keys naming each image's content for caches.

        Files: blake2b of (absolute path, size, mtime_ns), so a touched or replaced
        file gets a new key. Arrays: blake2b of the image's shape, dtype and bytes.
        """
        if self._keys is None:
            if self.array is not None:
                keys = [array_key(a) for a in self.array]
            else:
                b2 = hashlib.blake2b  # inlined file_key: this loop runs once per file on every re-run
                keys = [b2(f"{p}\0{s}\0{m}".encode("utf-8", "surrogateescape"), digest_size=16).digest()
                        for p, s, m in zip(self.paths, self._sizes.tolist(), self._mtimes.tolist())]
            self._keys = np.array(keys, dtype="S16") if keys else np.zeros(0, dtype="S16")
        return self._keys


def file_key(path: str, size: int, mtime_ns: int) -> bytes:
    """16-byte cache key of a file: blake2b over ``"<abs path>\\0<size>\\0<mtime_ns>"`` (UTF-8)."""
    return hashlib.blake2b(f"{path}\0{int(size)}\0{int(mtime_ns)}".encode("utf-8", "surrogateescape"),
                           digest_size=16).digest()


def array_key(image: np.ndarray) -> bytes:
    """16-byte cache key of one in-memory image: blake2b over shape, dtype and pixel bytes."""
    return array_hash(image).digest()


def _walk(root: Path, exts, recursive: bool):
    """Image files under ``root``: ([(relative name, path, DirEntry)], n ignored, [(path, reason)]).

    Each directory is entered once (by device and inode), so symlink cycles end; entries whose
    symlinks cannot be resolved (loops, too deep) are reported as skipped, not dropped.
    """
    found, bad, ignored = [], [], 0
    seen = set()
    stack = [(str(root), "")]
    while stack:
        d, prefix = stack.pop()
        try:
            st = os.stat(d)
            if (st.st_dev, st.st_ino) in seen:
                logger.info("alwidget: %s was already listed (a symlinked folder); not listed twice", d)
                continue
            seen.add((st.st_dev, st.st_ino))
            entries = list(os.scandir(d))
        except OSError as exc:
            logger.warning("alwidget: cannot list %s (%s); its images are left out", d, exc)
            continue
        for e in entries:
            is_image = os.path.splitext(e.name)[1].lower() in exts and not e.name.startswith("._")
            try:
                if e.is_dir(follow_symlinks=True):
                    if recursive and not e.name.startswith("."):
                        stack.append((e.path, prefix + e.name + "/"))
                    continue
                if e.is_symlink():
                    os.stat(e.path)  # raises for a loop
            except OSError as exc:
                if is_image or e.is_symlink():
                    bad.append((e.path, f"cannot follow symlink ({exc.strerror or exc})"))
                continue
            if is_image:
                found.append((prefix + e.name, e.path, e))
            else:
                ignored += 1
    return found, ignored, bad


def _relative_names(paths) -> list:
    if not paths:
        return []
    try:
        common = os.path.commonpath([os.path.dirname(p) for p in paths])
    except ValueError:  # different drives on Windows
        return [os.path.basename(p) for p in paths]
    return [os.path.relpath(p, common).replace(os.sep, "/") for p in paths]
