"""Encoders (OpenCLIP tiny/random + local checkpoint, EfficientNet-Lite0 real weights),
offline fail-fast, and the embedding cache (hit, partial change, resume after SIGKILL)."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alwidget import datasets, embed
from alwidget.embed import EncoderUnavailable, embed_images, get_encoder, parse_spec
from alwidget.images import ImageSet

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in this file may reach a hub

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


@pytest.fixture(scope="module")
def demo_images():
    """A few real Fashion-MNIST images from the shipped subset: 4 each of 3 classes."""
    ds = datasets.demo()
    picks = np.concatenate([np.flatnonzero(ds.labels == c)[:4] for c in (1, 7, 8)])  # trouser, sneaker, bag
    return ds.images[picks], ds.labels[picks]


def _write_folder(root: Path, arrays) -> list:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, a in enumerate(arrays):
        p = root / f"img{i:03d}.png"
        Image.fromarray(a).save(p)
        paths.append(p)
    return paths


# ------------------------------------------------------------------------------ specs
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


# ------------------------------------------------------------------------------ OpenCLIP
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
    t = embed.encode_text(["a photo of a bag", "a photo of a shoe", "a photo of a bag"], encoder=spec, device="cpu")
    assert t.shape == (3, 32) and t.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(t[0], t[2], atol=1e-6)
    assert np.abs(t[0] - t[1]).max() > 1e-3
    with pytest.raises(ValueError, match="text tower"):
        embed.encode_text(["x"], encoder=SMALL)


def test_offline_tag_fails_fast_with_alternatives(tmp_path, monkeypatch):
    import huggingface_hub.constants
    import open_clip

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_hub"))

    def no_network(*a, **k):
        raise AssertionError("the network was touched")

    def no_model(*a, **k):
        raise AssertionError("a model was built before the weights were known to be available")

    monkeypatch.setattr(embed.socket, "create_connection", no_network)
    monkeypatch.setattr(open_clip, "create_model_and_transforms", no_model)
    with pytest.raises(EncoderUnavailable) as err:
        get_encoder("openclip:ViT-B-32/laion2b_s34b_b79k", device="cpu")
    msg = str(err.value)
    assert "HF_HUB_OFFLINE" in msg
    assert "efficientnet-lite0" in msg and "checkpoint.pt" in msg and "precomputed" in msg

    # no offline flag but no route to the hub: one quick probe, then the same advice
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)

    def unreachable(*a, **k):
        raise OSError("Name or service not known")

    monkeypatch.setattr(embed.socket, "create_connection", unreachable)
    with pytest.raises(EncoderUnavailable, match="cannot be reached"):
        get_encoder("openclip:ViT-B-32/laion2b_s34b_b79k", device="cpu")
    with pytest.raises(ValueError, match="known tags"):
        get_encoder("openclip:ViT-B-32/no_such_tag", device="cpu")


def test_cached_hub_weights_are_found_without_network(tmp_path, monkeypatch):
    import huggingface_hub.constants

    hub = tmp_path / "hub"
    snap = hub / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "open_clip_model.safetensors").write_bytes(b"weights")
    (hub / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K" / "refs").mkdir()
    (hub / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    import open_clip

    cfg = open_clip.get_pretrained_cfg("ViT-B-32", "laion2b_s34b_b79k")
    assert embed._cached_openclip_file(cfg) == str(snap / "open_clip_model.safetensors")


# ------------------------------------------------------------------------------ EfficientNet
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


# ------------------------------------------------------------------------------ cache
def test_cache_hit_partial_change_and_new_file(tmp_path, demo_images, caplog):
    arrays, _ = demo_images
    folder = tmp_path / "imgs"
    paths = _write_folder(folder, arrays[:6])
    cache = tmp_path / "cache"

    first = embed_images(folder, SMALL, device="cpu", cache_dir=cache, progress=False)
    assert (first.n_cached, first.n_computed) == (0, 6) and first.features.shape == (6, 1280)

    enc = get_encoder(SMALL, device="cpu", load=False)
    hit = embed_images(ImageSet.from_folder(folder), enc, cache_dir=cache, progress=False)
    assert (hit.n_cached, hit.n_computed) == (6, 0)
    assert enc.model is None  # a fully cached run never loads the model
    np.testing.assert_allclose(hit.features, first.features, atol=1e-6)

    # touch one file (same pixels, new mtime), replace another, add a new one
    st = os.stat(paths[1])
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    Image.fromarray(arrays[9]).save(paths[4])
    Image.fromarray(arrays[10]).save(folder / "zz_new.png")
    part = embed_images(folder, SMALL, device="cpu", cache_dir=cache, progress=False)
    assert (part.n_cached, part.n_computed) == (4, 3)
    np.testing.assert_allclose(part.features[1], first.features[1], atol=1e-5)  # same pixels
    assert np.abs(part.features[4] - first.features[4]).max() > 1e-3  # new pixels
    assert part.features.shape == (7, 1280)


def test_bad_files_are_skipped_summarised_once_and_remembered(tmp_path, demo_images, caplog):
    arrays, _ = demo_images
    folder = tmp_path / "imgs"
    _write_folder(folder, arrays[:3])
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    (folder / "cut.png").write_bytes((folder / "img000.png").read_bytes()[:60])
    cache = tmp_path / "cache"
    with caplog.at_level(logging.WARNING, logger="alwidget"):
        e = embed_images(folder, SMALL, device="cpu", cache_dir=cache, progress=False)
    lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(lines) == 1 and "skipped 2 of 5" in lines[0]
    assert e.features.shape == (3, 1280)
    s = ImageSet.from_folder(folder)
    assert [s.names[i] for i in e.keep] == ["img000.png", "img001.png", "img002.png"]
    assert set(Path(p).name for p in e.skipped["path"]) == {"broken.jpg", "cut.png"}

    enc = get_encoder(SMALL, device="cpu", load=False)
    again = embed_images(folder, enc, cache_dir=cache, progress=False)
    assert enc.model is None and again.n_computed == 0  # failures are remembered, not retried
    assert len(again.skipped) == 2


def test_identical_arrays_embedded_once_and_seam_writes(tmp_path, demo_images):
    arrays, _ = demo_images
    dup = np.concatenate([arrays[:3], arrays[:2]])
    cache = tmp_path / "cache"
    e = embed_images(ImageSet.from_arrays(dup), SMALL, device="cpu", cache_dir=cache, progress=False)
    assert e.n_computed == 3 and e.features.shape == (5, 1280)
    np.testing.assert_allclose(e.features[3], e.features[0])

    # an external engine writes chunks through the seam; embed_images then only reads
    imgs = ImageSet.from_arrays(arrays[3:7])
    fake = np.random.default_rng(0).normal(size=(4, 1280)).astype(np.float32)
    embed.write_chunk(SMALL, imgs.identities(), fake, cache_dir=cache)
    got = embed_images(imgs, SMALL, device="cpu", cache_dir=cache, progress=False)
    assert got.n_computed == 0
    np.testing.assert_allclose(got.features, fake / np.linalg.norm(fake, axis=1, keepdims=True), atol=1e-6)


def test_damaged_chunks_and_temp_leftovers_are_ignored(tmp_path, demo_images, caplog):
    arrays, _ = demo_images
    imgs = ImageSet.from_arrays(arrays[:4])
    cache = tmp_path / "cache"
    e1 = embed_images(imgs, SMALL, device="cpu", cache_dir=cache, progress=False, chunk_size=2, batch_size=2)
    store = embed.cache_for(SMALL, cache)
    feats = sorted(store.chunks.glob("*.feats.npy"))
    assert len(feats) == 2
    feats[0].write_bytes(feats[0].read_bytes()[:50])  # a damaged chunk
    (store.chunks / ".tmp-deadbeef-x.keys.npy").write_bytes(b"partial")  # a killed writer's leftover
    with caplog.at_level(logging.WARNING, logger="alwidget"):
        e2 = embed_images(imgs, SMALL, device="cpu", cache_dir=cache, progress=False)
    assert e2.n_cached == 2 and e2.n_computed == 2
    assert any("damaged" in r.getMessage() for r in caplog.records)
    np.testing.assert_allclose(e2.features, e1.features, atol=1e-5)

    store.compact(min_chunks=2)
    assert store.n_chunks() == 1
    _, hit, _ = store.lookup(imgs.identities())
    assert hit.all()


def test_dataloader_workers_match_in_process(tmp_path, demo_images):
    arrays, _ = demo_images
    folder = tmp_path / "imgs"
    _write_folder(folder, arrays[:5])
    a = embed_images(folder, SMALL, device="cpu", cache=False, progress=False, workers=0, batch_size=2)
    b = embed_images(folder, SMALL, device="cpu", cache=False, progress=False, workers=1, batch_size=2)
    np.testing.assert_allclose(a.features, b.features, atol=1e-5)
    assert (a.keep == b.keep).all()


_KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    from alwidget import embed
    folder, cache = sys.argv[1], sys.argv[2]
    enc = embed.get_encoder("efficientnet-lite0@32", device="cpu")
    real = enc.encode_images
    def slow(batch):  # make the run long enough to be killed in the middle
        time.sleep(0.4)
        return real(batch)
    enc.encode_images = slow
    embed.embed_images(folder, enc, cache_dir=cache, batch_size=2, chunk_size=2, progress=False, workers=0)
    print("finished")
""")


def test_resume_after_sigkill(tmp_path, demo_images):
    arrays, _ = demo_images
    rng = np.random.default_rng(1)
    many = np.concatenate([arrays, np.clip(arrays.astype(int) + rng.integers(-20, 20, arrays.shape), 0, 255)
                          .astype(np.uint8)])  # 24 distinct images
    folder = tmp_path / "imgs"
    _write_folder(folder, many)
    cache = tmp_path / "cache"
    store = embed.cache_for(SMALL, cache)
    script = tmp_path / "run.py"
    script.write_text(_KILL_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(Path(embed.__file__).parents[1]))
    proc = subprocess.Popen([sys.executable, str(script), str(folder), str(cache)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if store.chunks.is_dir() and any(store.chunks.glob("*.keys.npy")):
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    _, hit, _ = store.lookup(ImageSet.from_folder(folder).identities())
    done = int(hit.sum())
    assert 0 < done < len(many)  # killed in the middle, with work saved

    resumed = embed_images(folder, SMALL, device="cpu", cache_dir=cache, progress=False)
    assert resumed.n_cached == done and resumed.n_computed == len(many) - done
    clean = embed_images(folder, SMALL, device="cpu", cache=False, progress=False)
    np.testing.assert_allclose(resumed.features, clean.features, atol=1e-5)


def test_input_validation():
    with pytest.raises(TypeError, match="precomputed"):
        embed_images(np.zeros((3, 4), dtype=np.float32), SMALL)
    with pytest.raises(ValueError, match="batch_size"):
        embed_images(ImageSet.from_arrays(np.zeros((1, 8, 8), np.uint8)), SMALL, batch_size=0)
    with pytest.raises(ValueError, match="between 32 and 1024"):
        get_encoder("efficientnet-lite0@8", load=False)
