"""The on-disk embedding cache (docs/cache-format.md): chunks committed by their keys file,
damaged chunks and killed writers' leftovers ignored, compaction, remembered failures, the
write_chunk seam for external engines."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from embed_data import SMALL

from alwidget import embed_cache
from alwidget.embed import embed_images
from alwidget.embed_cache import EmbeddingCache, cache_for, write_chunk
from alwidget.images import ImageSet


def _keys(n, seed=0):
    rng = np.random.default_rng(seed)
    return np.array([rng.bytes(16) for _ in range(n)], dtype="S16")


def test_chunks_round_trip_in_any_order_with_a_manifest(tmp_path):
    store = EmbeddingCache("test-enc", "prep-1", tmp_path)
    keys = _keys(10)
    feats = np.random.default_rng(1).normal(size=(10, 8)).astype(np.float32)
    store.write_chunk(keys[:6], feats[:6])
    store.write_chunk(keys[6:], feats[6:])
    assert store.n_chunks() == 2
    order = np.array([9, 0, 3, 7])
    got, hit, failures = store.lookup(np.concatenate([keys[order], _keys(1, seed=5)]))
    assert hit.tolist() == [True] * 4 + [False] and failures == {}
    np.testing.assert_allclose(got[:4], feats[order] / np.linalg.norm(feats[order], axis=1, keepdims=True),
                               atol=1e-6)
    assert not got[4].any()
    manifest = json.loads((store.path / "manifest.json").read_text())
    assert manifest["dim"] == 8 and manifest["encoder_id"] == "test-enc" and manifest["format"] == 1
    # another preprocessing is another folder: a change can never return stale rows
    assert EmbeddingCache("test-enc", "prep-2", tmp_path).path != store.path
    assert not list(store.chunks.glob(".tmp-*"))  # every file was renamed into place


def test_bad_input_to_write_chunk_is_refused(tmp_path):
    store = EmbeddingCache("test-enc", "p", tmp_path)
    with pytest.raises(ValueError, match="shape"):
        store.write_chunk(_keys(3), np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        store.write_chunk(_keys(1), np.full((1, 4), np.nan, np.float32))
    assert store.write_chunk(_keys(0), np.zeros((0, 4), np.float32)) is None


def test_only_permanent_failures_are_remembered(tmp_path):
    store = EmbeddingCache("test-enc", "p", tmp_path)
    keys = _keys(4)
    store.write_failures(keys, ["corrupt image (broken data stream)", "permission denied", "file not found",
                                "truncated file (image file is truncated)"])
    _, hit, failures = store.lookup(keys)
    assert not hit.any()
    assert failures == {0: "corrupt image (broken data stream)", 3: "truncated file (image file is truncated)"}


def test_damaged_chunks_and_temp_leftovers_are_ignored(tmp_path, demo_images, caplog):
    arrays, _ = demo_images
    imgs = ImageSet.from_arrays(arrays[:4])
    cache = tmp_path / "cache"
    e1 = embed_images(imgs, SMALL, device="cpu", cache_dir=cache, progress=False, chunk_size=2, batch_size=2)
    store = cache_for(SMALL, cache)
    feats = sorted(store.chunks.glob("*.feats.npy"))
    assert len(feats) == 2
    feats[0].write_bytes(feats[0].read_bytes()[:50])  # a damaged chunk
    (store.chunks / ".tmp-deadbeef-x.keys.npy").write_bytes(b"partial")  # a writer's file in progress
    (store.chunks / ".tmp-deadbeef-x.feats.npy").write_bytes(b"partial")
    with caplog.at_level(logging.WARNING, logger="alwidget"):
        e2 = embed_images(imgs, SMALL, device="cpu", cache_dir=cache, progress=False)
    assert e2.n_cached == 2 and e2.n_computed == 2
    assert sum("damaged" in r.getMessage() for r in caplog.records) == 1  # the chunk, not the temp files
    assert (store.chunks / ".tmp-deadbeef-x.keys.npy").exists()  # never deleted under a live writer
    np.testing.assert_allclose(e2.features, e1.features, atol=1e-5)

    store.compact(min_chunks=2)
    assert store.n_chunks() == 1
    _, hit, _ = store.lookup(imgs.identities())
    assert hit.all()


def test_the_seam_writes_rows_embed_images_then_only_reads(tmp_path, demo_images):
    arrays, _ = demo_images
    cache = tmp_path / "cache"
    imgs = ImageSet.from_arrays(arrays[3:7])
    fake = np.random.default_rng(0).normal(size=(4, 1280)).astype(np.float32)
    write_chunk(SMALL, imgs.identities(), fake, cache_dir=cache)
    assert embed_cache.cache_for(SMALL, cache).path.is_dir()
    got = embed_images(imgs, SMALL, device="cpu", cache_dir=cache, progress=False)
    assert got.n_computed == 0
    np.testing.assert_allclose(got.features, fake / np.linalg.norm(fake, axis=1, keepdims=True), atol=1e-6)
