"""Encoders behind spec strings: OpenCLIP (tiny random architecture and a local checkpoint,
compared with open_clip's own pipeline), EfficientNet-Lite0 with its real weights, and the
weight-free preprocessing that Ray decode tasks run."""
from __future__ import annotations

import os

import numpy as np
import pytest
from embed_data import SMALL
from PIL import Image

from alwidget import encoders
from alwidget.embed import embed_images
from alwidget.encoders import get_encoder, parse_spec
from alwidget.images import ImageSet

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in this file may reach a hub


def test_parse_spec():
    assert parse_spec("efficientnet-lite0") == ("efficientnet-lite0", {"image_size": 224})
    assert parse_spec("efficientnet-lite0@112") == ("efficientnet-lite0", {"image_size": 112})
    assert parse_spec("openclip:ViT-B-32/laion2b_s34b_b79k") == (
        "openclip", {"arch": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"})
    assert parse_spec("openclip:ViT-B-32") == parse_spec("openclip:ViT-B-32/laion2b_s34b_b79k")
    assert parse_spec("openclip:ViT-B-16//data/ckpt.pt") == ("openclip", {"arch": "ViT-B-16", "pretrained": "/data/ckpt.pt"})
    assert parse_spec("openclip:X/random") == ("openclip", {"arch": "X", "pretrained": None})
    with pytest.raises(ValueError, match="efficientnet-lite0"):
        parse_spec("resnet50")
    with pytest.raises(TypeError):
        parse_spec(None)
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        get_encoder("openclip:ViT-B-32//no/such/file.pt", load=False)
    with pytest.raises(ValueError, match="between 32 and 1024"):
        get_encoder("efficientnet-lite0@8", load=False)


def test_encoder_ids_are_specs_that_rebuild_the_same_encoder(tiny_arch, tmp_path):
    """Ray workers rebuild the driver's encoder from its id: id and preprocessing must round-trip."""
    ckpt = tmp_path / "w.pt"
    ckpt.write_bytes(b"x")
    for spec in (SMALL, "efficientnet-lite0", f"openclip:{tiny_arch}/random", f"openclip:{tiny_arch}/{ckpt}",
                 "openclip:ViT-B-32"):
        a = get_encoder(spec, device="cpu", load=False)
        b = get_encoder(a.id, device="cpu", load=False)
        assert (b.id, b.preprocess_id) == (a.id, a.preprocess_id)


def test_openclip_random_tiny_and_local_checkpoint(tiny_arch, tmp_path, demo_images):
    import open_clip
    import torch

    arrays, _ = demo_images
    imgs = ImageSet.from_arrays(arrays[:4])
    rand = embed_images(imgs, f"openclip:{tiny_arch}/random", device="cpu", cache=False, progress=False)
    assert rand.features.shape == (4, 32) and rand.features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rand.features, axis=1), 1.0, atol=1e-5)
    again = embed_images(imgs, f"openclip:{tiny_arch}/random", device="cpu", cache=False, progress=False)
    np.testing.assert_allclose(again.features, rand.features, atol=1e-6)  # seeded random init

    # a checkpoint with different weights, loaded through the local-path spec
    torch.manual_seed(123)
    model, _, preprocess = open_clip.create_model_and_transforms(tiny_arch, pretrained=None)
    ckpt = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), ckpt)
    spec = f"openclip:{tiny_arch}/{ckpt}"
    assert str(ckpt).startswith("/")  # i.e. the spec reads ARCH//abs/path
    local = embed_images(imgs, spec, device="cpu", cache=False, progress=False)
    # workers hand over uint8 crops, normalised on the device; the result must equal open_clip's own pipeline
    assert get_encoder(spec, device="cpu").transform(imgs.open(0)).dtype == torch.uint8
    model.eval()
    with torch.no_grad():
        x = torch.stack([preprocess(imgs.open(i)) for i in range(4)])
        ref = torch.nn.functional.normalize(model.encode_image(x), dim=1).numpy()
    np.testing.assert_allclose(local.features, ref, atol=1e-5)
    assert np.abs(local.features - rand.features).max() > 1e-2
    assert local.encoder_id == f"openclip:{tiny_arch}/{ckpt}"

    # the text tower of the same model
    t = encoders.encode_text(["a photo of a bag", "a photo of a shoe", "a photo of a bag"], encoder=spec, device="cpu")
    assert t.shape == (3, 32) and t.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(t[0], t[2], atol=1e-6)
    assert np.abs(t[0] - t[1]).max() > 1e-3
    with pytest.raises(ValueError, match="text tower"):
        encoders.encode_text(["x"], encoder=SMALL)


def test_cpu_transform_matches_the_loaded_transform_without_weights(tiny_arch, demo_images):
    """Ray decode tasks preprocess with cpu_transform() (no model in the driver or the
    tasks); the crops must be exactly those the loaded encoder makes, and the model's
    normalisation must be the same."""
    arrays, _ = demo_images
    im = Image.fromarray(arrays[0]).convert("RGB").resize((45, 37))  # not square: resize + crop matter
    for spec in (f"openclip:{tiny_arch}/random", SMALL):
        light = get_encoder(spec, device="cpu", load=False)
        t = light.cpu_transform()
        assert light.model is None  # no weights were loaded
        full = get_encoder(spec, device="cpu")
        np.testing.assert_array_equal(t(im).numpy(), full.transform(im).numpy())
        assert (light._mean255, light._std255) == (full._mean255, full._std255)


def test_efficientnet_real_weights_separate_real_classes(demo_images):
    arrays, labels = demo_images
    e = embed_images(ImageSet.from_arrays(arrays), "efficientnet-lite0@64", device="cpu", cache=False,
                     progress=False)
    X = e.features
    assert X.shape == (12, 1280) and e.encoder_id == "efficientnet-lite0@64"
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    sim = X @ X.T
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(len(labels), dtype=bool)
    assert sim[same & off].mean() > sim[~same].mean() + 0.05
    # nearest neighbour (excluding itself) shares the class for most images
    np.fill_diagonal(sim, -2)
    assert (labels[sim.argmax(1)] == labels).mean() >= 0.75


def test_efficientnet_imagenet_head_recognises_a_real_photo():
    """The shipped weights are the real ImageNet ones: sklearn's temple photo lands in
    building classes (442 bell cote, 538 dome, 663 monastery, 668 mosque, 698 palace, ...)."""
    import torch
    from sklearn.datasets import load_sample_image

    enc = get_encoder("efficientnet-lite0", device="cpu")
    x = enc.transform(Image.fromarray(load_sample_image("china.jpg")))[None]
    with torch.no_grad():
        top5 = set(enc.model(enc.to_model_input(x)).topk(5).indices[0].tolist())
    assert top5 & {442, 483, 497, 538, 663, 668, 698, 832, 858}
