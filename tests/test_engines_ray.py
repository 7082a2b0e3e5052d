"""The Ray Data engine on a local Ray started here (2 CPUs, no dashboard): ~200 real
Fashion-MNIST images written as PNG and JPEG files plus a corrupt one, embedded on Ray and
in-process; the same keys, the same rows (to 1e-5), the same skip reason, and the widget
opens the result from the cache the Ray workers filled.

The local Ray also declares one *logical* GPU (no CUDA here): with ``device="auto"`` the
engine schedules its model actor as a GPU actor, which finds no CUDA and runs on the CPU, the
path a GPU cluster takes; ``device="cpu"`` takes the CPU-only path (actors on cores)."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import ray  # in the 'test' extra: CI always runs this file
from PIL import Image

from alwidget import datasets
from alwidget.embed import cache_for, embed_images, get_encoder
from alwidget.images import ImageSet

SPEC = "efficientnet-lite0@32"  # real weights, tiny input: the model is not what is tested
N = 200


@pytest.fixture(scope="module")
def local_ray():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # Ray >= 2.5x warns about token auth on local clusters
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """N real images of every kind the decoder meets (grey PNG, RGB JPEG larger than the crop,
    RGBA PNG), and one truncated PNG."""
    root = tmp_path_factory.mktemp("ray_imgs") / "imgs"
    root.mkdir()
    ds = datasets.demo()
    for i in range(N):
        im = Image.fromarray(ds.images[i])
        if i % 10 == 3:
            im.convert("RGB").resize((96, 96)).save(root / f"{i:03d}.jpg", quality=90)
        elif i % 10 == 7:
            im.convert("RGBA").save(root / f"{i:03d}.png")
        else:
            im.save(root / f"{i:03d}.png")
    (root / "zz_cut.png").write_bytes((root / "000.png").read_bytes()[:80])
    return root


@pytest.fixture(scope="module")
def in_process(folder):
    return ImageSet.from_folder(folder), embed_images(folder, SPEC, device="cpu", cache=False, progress=False)


def test_ray_engine_matches_in_process_and_fills_the_cache(local_ray, folder, in_process, tmp_path):
    ref_images, ref = in_process
    cache = tmp_path / "cache"
    images = ImageSet.from_folder(folder)
    got = embed_images(images, SPEC, cache_dir=cache, engine="ray", progress=False)

    assert got.features.shape == (N, 1280) and ref.features.shape == (N, 1280)
    np.testing.assert_array_equal(images.identities()[got.keep], ref_images.identities()[ref.keep])  # same keys
    np.testing.assert_allclose(got.features, ref.features, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got.features, axis=1), 1.0, atol=1e-5)
    assert (got.n_cached, got.n_computed) == (0, N)
    assert got.skipped.to_dict("records") == ref.skipped.to_dict("records") == [
        {"path": str(folder / "zz_cut.png"), "reason": ref.skipped["reason"][0]}]
    assert ref.skipped["reason"][0].startswith(("truncated", "corrupt"))

    # the workers wrote ordinary chunks: an in-process run is all cache hits, model never loaded,
    # and the corrupt file is remembered as in-process failures are
    enc = get_encoder(SPEC, device="cpu", load=False)
    again = embed_images(folder, enc, cache_dir=cache, progress=False)
    assert (again.n_cached, again.n_computed) == (N, 0) and enc.model is None
    np.testing.assert_array_equal(again.features, got.features)
    assert again.skipped.to_dict("records") == got.skipped.to_dict("records")
    assert cache_for(SPEC, cache).n_chunks() >= 1


def test_the_widget_opens_what_ray_embedded(local_ray, folder, in_process, tmp_path, capsys):
    from alwidget.widget import Labeller

    cache = tmp_path / "cache"
    embed_images(folder, SPEC, cache_dir=cache, engine="ray", progress=False, device="cpu")  # CPU-only actors
    w = Labeller.from_folder(folder, classes=["top", "shoe"], encoder=SPEC, store=tmp_path / "labels.sqlite",
                             cache_dir=cache, progress=False, projection="preview", device="cpu")
    try:
        assert "zz_cut.png" in capsys.readouterr().out  # the skipped file is reported to the user
        _, ref = in_process
        np.testing.assert_allclose(w.session.features, ref.features, atol=1e-5)
        w.session.label(0, "top")
        w.session.label(5, "shoe")
        assert w.labels == {0: "top", 5: "shoe"}
        batch = w.session.next_batch(5)
        assert len(batch) == 5 and not {0, 5} & set(batch.tolist())
    finally:
        w.close()


def test_actor_pool_follows_the_cluster(local_ray):
    from alwidget.engines import ray as engine

    assert engine._actors(local_ray, "auto", 100) == (1, {"num_gpus": 1, "num_cpus": 1})  # one per GPU
    assert engine._actors(local_ray, "cpu", 100) == (1, {"num_cpus": 1})  # 2 CPUs: 1 for the model, 1 decodes
    assert engine._actors(local_ray, "cuda", 100)[1]["num_gpus"] == 1


def test_ray_engine_refuses_what_it_cannot_do(local_ray, tmp_path, monkeypatch):
    arrays = ImageSet.from_arrays(datasets.demo().images[:3])
    with pytest.raises(ValueError, match="engine='local'"):
        embed_images(arrays, SPEC, cache_dir=tmp_path, engine="ray", progress=False)

    # rows the workers committed but this machine cannot see: the cache is not shared storage
    from alwidget.engines import ray as engine

    img = tmp_path / "a.png"
    Image.fromarray(datasets.demo().images[0]).save(img)
    one = ImageSet.from_paths([img])
    empty = cache_for(SPEC, tmp_path / "elsewhere")
    key = one.identities()[0].ljust(16, b"\0").hex()
    with pytest.raises(RuntimeError, match="shared by the workers and the notebook"):
        engine._collect(one, np.array([0]), empty, [key], {})

    # an encoder object that its spec does not rebuild is refused before any work starts ...
    skewed = get_encoder(SPEC, device="cpu", load=False)
    skewed.preprocess_id += ";other-version"
    with pytest.raises(ValueError, match="pass the encoder as a spec string"):
        engine.embed_files(one, np.array([0]), skewed, cache_for(skewed, tmp_path), progress=False)
    # ... and workers whose encoder differs from the driver's (other versions installed) refuse to
    # embed; the worker's reason reaches the user as one sentence
    monkeypatch.setattr(engine, "_check_rebuildable", lambda enc: None)
    with pytest.raises(RuntimeError, match="failed on a worker: RuntimeError: the Ray worker's encoder .* "
                                           "preprocesses differently"):
        engine.embed_files(one, np.array([0]), skewed, cache_for(skewed, tmp_path), progress=False)

    # without Ray installed: a clear message naming the extra
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"alwidget\[ray\]"):
        engine._ray()


def test_cli_embeds_on_ray(local_ray, folder, in_process, tmp_path, capsys):
    from alwidget.cli import main

    out = tmp_path / "emb.npz"
    assert main(["embed", str(folder), "--engine", "ray", "--encoder", SPEC, "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    printed = capsys.readouterr().out
    assert "skipped 1 unreadable file(s)" in printed and "zz_cut.png" in printed
    saved = np.load(out)
    _, ref = in_process
    np.testing.assert_allclose(saved["features"], ref.features, atol=1e-5)
    assert len(saved["names"]) == N
    with pytest.raises(SystemExit, match="--engine ray"):
        main(["embed", str(folder), "--address", "auto", "--encoder", SPEC, "--out", str(out)])
