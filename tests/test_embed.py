"""The embedding run (embed_images): cache hit, partial change, new files, bad files
skipped once and remembered, identical images embedded once, DataLoader workers, resume
after SIGKILL, input validation."""
from __future__ import annotations

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
from embed_data import SMALL, write_folder
from PIL import Image

from alwidget import embed
from alwidget.embed import embed_images, get_encoder
from alwidget.images import ImageSet


def test_the_one_module_names_still_work():
    """Callers written for the single embed module keep working (re-exports)."""
    from alwidget import embed_cache, encoders

    assert embed.get_encoder is encoders.get_encoder and embed.EncoderUnavailable is encoders.EncoderUnavailable
    assert embed.write_chunk is embed_cache.write_chunk and embed.EmbeddingCache is embed_cache.EmbeddingCache
    assert embed.DEMO_ENCODER == encoders.DEMO_ENCODER and callable(embed.cpu_threads)
    for name in embed.__all__:
        assert hasattr(embed, name), name


def test_cache_hit_partial_change_and_new_file(tmp_path, demo_images):
    arrays, _ = demo_images
    folder = tmp_path / "imgs"
    paths = write_folder(folder, arrays[:6])
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
    write_folder(folder, arrays[:3])
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
    assert sorted(again.skipped["reason"]) == sorted(e.skipped["reason"])


def test_identical_arrays_embedded_once(tmp_path, demo_images):
    arrays, _ = demo_images
    dup = np.concatenate([arrays[:3], arrays[:2], arrays[[1]]])
    cache = tmp_path / "cache"
    e = embed_images(ImageSet.from_arrays(dup), SMALL, device="cpu", cache_dir=cache, progress=False)
    assert e.n_computed == 3 and e.features.shape == (6, 1280)
    np.testing.assert_allclose(e.features[3], e.features[0])
    np.testing.assert_allclose(e.features[5], e.features[1])
    alone = embed_images(ImageSet.from_arrays(arrays[:3]), SMALL, device="cpu", cache=False, progress=False)
    np.testing.assert_allclose(e.features[:3], alone.features, atol=1e-5)


def test_dataloader_workers_match_in_process(tmp_path, demo_images):
    arrays, _ = demo_images
    folder = tmp_path / "imgs"
    write_folder(folder, arrays[:5])
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
    write_folder(folder, many)
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
            if store.n_chunks():  # a committed chunk (not a file still being written)
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
    one = ImageSet.from_arrays(np.zeros((1, 8, 8), np.uint8))
    with pytest.raises(TypeError, match="precomputed"):
        embed_images(np.zeros((3, 4), dtype=np.float32), SMALL)
    with pytest.raises(ValueError, match="batch_size"):
        embed_images(one, SMALL, batch_size=0)
    with pytest.raises(ValueError, match="chunk_size"):
        embed_images(one, SMALL, chunk_size=0)
    with pytest.raises(ValueError, match="engine must be one of 'local', 'ray'"):
        embed_images(one, SMALL, engine="spark")
    with pytest.raises(ValueError, match="cache=False needs engine='local'"):
        embed_images(one, SMALL, engine="ray", cache=False)
