"""Where a Labeller's points come from: images in a folder or a bundled data set, embedded.

Helpers behind `Labeller.from_folder` and `Labeller.from_dataset`; the widget itself only sees
features, an ImageSet and names.
"""
from __future__ import annotations

from pathlib import Path

from .widget_find import text_encoder_for

__all__ = ["DATASET_NAMES", "ImageLookup", "embed_for_widget", "open_dataset", "open_folder", "resolve_dataset"]

DATASET_NAMES = ("demo", "digits", "fashion_mnist")


def embed_for_widget(imageset, encoder, kwargs: dict):
    """Run `embed.embed_images`, taking its own options (cache_dir, progress, embed_batch_size,
    device) out of `kwargs`; prints the skipped files; raises when nothing could be read."""
    from . import embed

    opts = {k: kwargs.pop(k) for k in ("cache_dir", "progress") if k in kwargs}
    if "embed_batch_size" in kwargs:
        opts["batch_size"] = kwargs.pop("embed_batch_size")
    if encoder is not None:
        opts["encoder"] = encoder
    if "device" in kwargs:
        opts["device"] = kwargs["device"]
    emb = embed.embed_images(imageset, **opts)
    skipped = getattr(emb, "skipped", None)
    if skipped is not None and len(skipped):
        print(f"alwidget: skipped {len(skipped)} unreadable image(s):")
        for row in skipped.head(10).itertuples(index=False):
            print(f"  {row[0]}: {row[1]}")
    if len(emb.features) == 0:
        raise ValueError("no readable images to label; see the skipped list above")
    return emb


def open_folder(cls, path, classes, encoder, store, kwargs):
    """`cls` (a Labeller) on the images of a folder, embedded (see Labeller.from_folder)."""
    from . import embed
    from .images import ImageSet

    imageset = ImageSet.from_folder(path)
    emb = embed_for_widget(imageset, embed.DEFAULT_ENCODER if encoder is None else encoder, kwargs)
    kwargs.setdefault("name", Path(path).expanduser().resolve().name or "images")
    kwargs.setdefault("text_encoder", text_encoder_for(emb.encoder_id))  # OpenCLIP: text search on
    return cls(emb.features, images=imageset, classes=classes, store=store, image_index=emb.keep, **kwargs)


def open_dataset(cls, dataset_or_name, classes, encoder, store, kwargs):
    """`cls` (a Labeller) on a bundled or given data set, embedded (see Labeller.from_dataset)."""
    from . import embed

    ds = resolve_dataset(dataset_or_name)
    imageset = ds.to_images()
    emb = embed_for_widget(imageset, embed.DEMO_ENCODER if encoder is None else encoder, kwargs)
    kwargs.setdefault("name", getattr(ds, "name", None) or "dataset")
    kwargs.setdefault("text_encoder", text_encoder_for(emb.encoder_id))
    return cls(emb.features, images=imageset, classes=list(ds.class_names) if classes is None else classes,
               store=store, image_index=emb.keep, **kwargs)


def resolve_dataset(dataset_or_name):
    """A bundled data set by name, or the `alwidget.datasets.Dataset` given."""
    from . import datasets

    if isinstance(dataset_or_name, str):
        key = dataset_or_name.replace("-", "_")
        if key not in DATASET_NAMES:
            raise ValueError(
                f"unknown data set {dataset_or_name!r}; use 'demo', 'digits' or 'fashion_mnist', "
                "or pass an alwidget.datasets.Dataset"
            )
        ds = getattr(datasets, key)()
    else:
        ds = dataset_or_name
    if not hasattr(ds, "to_images") or not hasattr(ds, "class_names"):
        raise TypeError(f"dataset_or_name must be a name or an alwidget.datasets.Dataset, got {type(ds).__name__}")
    return ds


class ImageLookup:
    """Names and thumbnails of the map's points: row i shows image ``image_index[i]`` (or "#i")."""

    def __init__(self, images, image_index):
        self.images, self.image_index = images, image_index

    def name(self, i: int) -> str:
        if self.images is None:
            return f"#{i}"
        try:
            return str(self.images.names[int(self.image_index[i])])
        except Exception:  # a name that cannot be read is still a point
            return f"#{i}"

    def thumbnail(self, i: int, size: int):
        """JPEG bytes of point i's image, or None without images (errors propagate)."""
        if self.images is None:
            return None
        return bytes(self.images.thumbnail(int(self.image_index[i]), size=size))
