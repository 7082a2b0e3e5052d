"""Shared test data for the embedding modules (encoders, cache, run, Ray engine): real
Fashion-MNIST images from the shipped subset and a tiny registered OpenCLIP architecture.

Registered as a pytest plugin by ``conftest.py``; the test files import the constants and
helpers (``from embed_data import SMALL, write_folder``)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alwidget import datasets

TINY = "alwidget-test-tiny-ViT"
SMALL = "efficientnet-lite0@32"  # real weights, smallest input the network accepts: fast


@pytest.fixture(scope="module")
def tiny_arch(tmp_path_factory):
    """Register a tiny OpenCLIP architecture (2-layer ViT and text tower, 32-d)."""
    import open_clip

    d = tmp_path_factory.mktemp("oc_cfg")
    cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    }
    (d / f"{TINY}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(d / f"{TINY}.json")
    return TINY


TINY_CLIP = "alwidget-test-clip-ViT"  # the search tests' model: 1 layer, 32 wide, random weights


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A tiny OpenCLIP (1-layer ViT and text tower, 32-d) as an encoder spec, random weights: no download."""
    import open_clip

    cfg = {"embed_dim": 32,
           "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    path = tmp_path_factory.mktemp("oc_clip") / f"{TINY_CLIP}.json"
    path.write_text(json.dumps(cfg))
    open_clip.add_model_config(path)
    return f"openclip:{TINY_CLIP}/random"


@pytest.fixture(scope="module")
def demo_images():
    """A few real Fashion-MNIST images from the shipped subset: 4 each of 3 classes."""
    ds = datasets.demo()
    picks = np.concatenate([np.flatnonzero(ds.labels == c)[:4] for c in (1, 7, 8)])  # trouser, sneaker, bag
    return ds.images[picks], ds.labels[picks]


def write_folder(root: Path, arrays) -> list:
    """Save uint8 images as PNG files ``img000.png, ...`` under ``root``; returns the paths."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, a in enumerate(arrays):
        p = root / f"img{i:03d}.png"
        Image.fromarray(a).save(p)
        paths.append(p)
    return paths


def embed_fashion_test(cache_dir, per_class: int, seed: int):
    """(features, labels): ``per_class`` seeded Fashion-MNIST test images of each class, embedded with
    the demo encoder (real EfficientNet-Lite0 weights) into ``cache_dir``."""
    from alwidget import embed
    from alwidget.images import ImageSet

    ds = datasets.fashion_mnist("test", download=False)
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.choice(np.flatnonzero(ds.labels == c), per_class, replace=False) for c in range(10)])
    emb = embed.embed_images(ImageSet.from_arrays(ds.images[idx]), encoder=embed.DEMO_ENCODER, device="cpu",
                             progress=False, cache_dir=cache_dir)
    return emb.features, ds.labels[idx][emb.keep].astype(np.int64)
