"""widget_sources: names and thumbnails per row, data set lookup."""
import numpy as np
import pytest

from alwidget.images import ImageSet
from alwidget.widget_sources import ImageLookup, resolve_dataset


def test_lookup_maps_rows_to_images_and_falls_back_to_numbers():
    images = ImageSet.from_arrays(np.zeros((3, 8, 8), np.uint8), names=["a.png", "b.png", "c.png"])
    look = ImageLookup(images, np.array([2, 0]))
    assert [look.name(0), look.name(1)] == ["c.png", "a.png"]
    assert look.thumbnail(0, 32)[:2] == b"\xff\xd8"
    bare = ImageLookup(None, np.arange(2))
    assert bare.name(1) == "#1" and bare.thumbnail(1, 32) is None


def test_unknown_data_sets_are_named_in_the_error():
    with pytest.raises(ValueError, match="unknown data set 'imagenet'"):
        resolve_dataset("imagenet")
    with pytest.raises(TypeError, match="Dataset"):
        resolve_dataset(42)
