"""Where OpenCLIP weights come from: offline fail-fast with the alternatives named, and
weights already in the hub cache found without touching the network."""
from __future__ import annotations

import os

import pytest

from alwidget import _weights
from alwidget.encoders import EncoderUnavailable, get_encoder

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in this file may reach a hub


def test_offline_tag_fails_fast_with_alternatives(tmp_path, monkeypatch):
    import huggingface_hub.constants
    import open_clip

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_hub"))

    def no_network(*a, **k):
        raise AssertionError("the network was touched")

    def no_model(*a, **k):
        raise AssertionError("a model was built before the weights were known to be available")

    monkeypatch.setattr(_weights.socket, "create_connection", no_network)
    monkeypatch.setattr(open_clip, "create_model_and_transforms", no_model)
    with pytest.raises(EncoderUnavailable) as err:
        get_encoder("openclip:ViT-B-32/laion2b_s34b_b79k", device="cpu")
    msg = str(err.value)
    assert "HF_HUB_OFFLINE" in msg
    assert "efficientnet-lite0" in msg and "checkpoint.pt" in msg and "precomputed" in msg
    # the weight-free transform (what Ray decode tasks get) fails the same way, before any model
    with pytest.raises(EncoderUnavailable, match="HF_HUB_OFFLINE"):
        get_encoder("openclip:ViT-B-32/laion2b_s34b_b79k", device="cpu", load=False).cpu_transform()

    # no offline flag but no route to the hub: one quick probe, then the same advice
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)

    def unreachable(*a, **k):
        raise OSError("Name or service not known")

    monkeypatch.setattr(_weights.socket, "create_connection", unreachable)
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
    assert _weights.cached_openclip_file(cfg) == str(snap / "open_clip_model.safetensors")
    ckpt, kwargs = _weights.openclip_weights("ViT-B-32", "laion2b_s34b_b79k")
    assert ckpt == str(snap / "open_clip_model.safetensors")
    assert kwargs["image_mean"] == cfg["mean"] and kwargs["image_resize_mode"] == cfg["resize_mode"]
    assert _weights.openclip_weights("ViT-B-32", None) == (None, {})
