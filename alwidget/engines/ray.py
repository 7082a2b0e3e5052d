"""Embedding on a Ray cluster with Ray Data (``embed_images(..., engine="ray")``).

The pipeline (notes on Ray's API across versions: ``shared/specs/scale.md`` section 7)::

    from_items(path, key)                   the driver's file list; each row carries its cache key
      -> map_batches(_decode)               CPU tasks: read the file's bytes, decode and crop them
                                            exactly as in-process (uint8 crops); a bad file becomes a
                                            row with ok=False and the same reason, never an error
      -> map_batches(_Embedder)             actor pool, one model per actor (GPU when the actor has
                                            one, CPU otherwise); each batch is committed as one cache
                                            chunk (``EmbeddingCache.write_chunk``) with its keys,
                                            permanent failures as a ``.failed.json``
      -> the driver collects (key, ok, reason) only

Embeddings never travel back to the driver: it reads them from the cache like any cached
run, which is why the cache folder must be storage that the workers and the notebook share,
at the same path (a missing row is reported, never silently dropped). Keys are the
driver's (``ImageSet.identities``: path, size and mtime as the notebook sees them), so
rows written on a cluster are cache hits for the notebook.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import os
import re

import numpy as np

from ..embed_cache import EmbeddingCache
from ..encoders import Encoder, get_encoder, preprocess_one
from ..images import load_rgb

__all__ = ["embed_files"]


_EXTRA = "pip install 'alwidget[ray]'  (or: pip install 'ray[data]>=2.9')"
# A decode worker holds torch and PIL (~400 MB measured) plus a batch of decoded photos and
# crops. Declaring it also keeps decoding a separate pool of CPU tasks: Ray fuses consecutive
# map stages whose resource requests are equal, which on CPU-only nodes would move decoding
# into the model actors and serialise it with the model.
_DECODE_MEMORY = 512 * 2**20


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Core alone lacks it)
    except ImportError as exc:
        raise ImportError(f"engine='ray' needs Ray Data ({exc}); install it with {_EXTRA}") from None
    return ray


# --------------------------------------------------------------------------------------
# the stages (module-level, so Ray pickles them by reference: workers import alwidget)
# --------------------------------------------------------------------------------------
def _load(path: str, max_pixels, size_hint):
    """Read the file's bytes, then decode them; a read error gets load_rgb's own reason."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return load_rgb(path, max_pixels, size_hint)  # raises UnreadableImage, worded as in-process
    return load_rgb(data, max_pixels, size_hint)


def _decode(batch, *, transform, max_pixels, shape, dtype):
    """{path, key} -> {key, image (n, *shape), ok, reason}: decode + crop, never raising."""

    n = len(batch["path"])
    images = np.zeros((n, *shape), dtype=dtype)
    ok = np.zeros(n, dtype=bool)
    reasons = np.full(n, "", dtype=object)
    size_hint = getattr(transform, "size", None)
    for j, path in enumerate(batch["path"]):
        x, reason = preprocess_one(lambda: _load(str(path), max_pixels, size_hint), transform)
        if x is None:
            reasons[j] = reason
        else:
            images[j] = np.asarray(x)
            ok[j] = True
    return {"key": batch["key"], "image": images, "ok": ok, "reason": reasons}


class _Embedder:
    """One model per actor: embeds a batch of crops and commits it as one cache chunk."""

    def __init__(self, spec: str, preprocess_id: str, cache_root: str, device: str, threads: int):
        import ray
        import torch

        if device == "auto":  # Ray sets CUDA_VISIBLE_DEVICES for an actor it gave a GPU
            device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
        if device == "cpu":
            torch.set_num_threads(threads)
        self.enc = get_encoder(spec, device=device)  # loads the weights, once per actor
        if self.enc.preprocess_id != preprocess_id:
            raise RuntimeError(
                f"the Ray worker's encoder {spec!r} preprocesses differently from the notebook's "
                f"({self.enc.preprocess_id!r} vs {preprocess_id!r}): install the same alwidget, open_clip "
                "and weights on the workers"
            )
        self.store = EmbeddingCache(spec, preprocess_id, cache_root)

    def __call__(self, batch):
        import torch

        ok = np.asarray(batch["ok"], dtype=bool)
        keys = np.array([bytes.fromhex(k) for k in batch["key"]], dtype="S16")
        if ok.any():
            feats = self.enc.encode_images(torch.from_numpy(np.ascontiguousarray(batch["image"][ok])))
            self.store.write_chunk(keys[ok], feats)  # committed before this batch counts as done
        if not ok.all():
            self.store.write_failures(keys[~ok], list(batch["reason"][~ok]))
        return {"key": batch["key"], "ok": ok, "reason": batch["reason"]}


# --------------------------------------------------------------------------------------
# the driver
# --------------------------------------------------------------------------------------
@contextlib.contextmanager
def _connected(address: str | None):
    """Use the Ray this process is connected to, or connect (``address``; None: a local
    Ray unless RAY_ADDRESS names a cluster); disconnect afterwards only if we connected."""
    ray = _ray()
    if ray.is_initialized():
        yield ray
        return
    local = address is None and not os.environ.get("RAY_ADDRESS")
    ray.init(address=address, **({"include_dashboard": False} if local else {}))
    try:
        yield ray
    finally:
        ray.shutdown()


@contextlib.contextmanager
def _quiet(ray, progress: bool):
    """Ray Data's progress bars and per-stage log lines only when ``progress`` is on."""
    ctx = ray.data.DataContext.get_current()
    old, data_log = ctx.enable_progress_bars, logging.getLogger("ray.data")
    old_level = data_log.level
    ctx.enable_progress_bars = bool(progress)
    if not progress:
        data_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        ctx.enable_progress_bars = old
        data_log.setLevel(old_level)


def _actors(ray, device: str, n_batches: int) -> tuple[int, dict]:
    """-> (pool size, per-actor resources): one actor per GPU; on CPU-only clusters actors
    of up to 4 threads on half the cores (the other half decodes)."""
    res = ray.cluster_resources()
    gpus, cpus = int(res.get("GPU", 0)), max(1, int(res.get("CPU", 1)))
    if device.startswith("cuda") and not gpus:
        raise ValueError("device='cuda' was asked for but the Ray cluster has no GPUs; use device='auto' or 'cpu'")
    if gpus and device != "cpu":
        return max(1, min(gpus, n_batches)), {"num_gpus": 1, "num_cpus": 1}
    per_actor = max(1, min(4, cpus // 2))
    return max(1, min(cpus // (2 * per_actor) or 1, n_batches)), {"num_cpus": per_actor}


def _probe_crop(transform):
    """(shape, dtype) of one crop: failed rows get zeros of the same shape."""
    from PIL import Image

    x = np.asarray(transform(Image.new("RGB", (64, 64))))
    return x.shape, x.dtype


def _check_rebuildable(enc: Encoder) -> None:
    twin = get_encoder(enc.id, device="cpu", load=False)
    if (twin.id, twin.preprocess_id) != (enc.id, enc.preprocess_id):
        raise ValueError(
            f"engine='ray' rebuilds the encoder from its spec on every worker, and {enc!r} is not what "
            f"get_encoder({enc.id!r}) builds; pass the encoder as a spec string"
        )


def _items(ray, rows: list, n_blocks: int):
    # `override_num_blocks` since Ray 2.10, `parallelism` before
    arg = "override_num_blocks" if "override_num_blocks" in inspect.signature(ray.data.from_items).parameters \
        else "parallelism"
    return ray.data.from_items(rows, **{arg: n_blocks})


def _pipeline(ray, images, todo, enc: Encoder, store: EmbeddingCache, *, device, batch_size):
    transform = enc.cpu_transform()  # no weights in the driver
    shape, dtype = _probe_crop(transform)
    keys = images.identities()[todo]
    rows = [{"path": images.paths[i], "key": keys[j].ljust(16, b"\0").hex()} for j, i in enumerate(todo.tolist())]
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    n_blocks = max(1, min(len(rows) // 32 or 1, max(4 * cpus, -(-len(rows) // 1000))))
    n_actors, actor_res = _actors(ray, device, -(-len(rows) // batch_size))
    threads = int(actor_res.get("num_cpus", 1))
    return (
        _items(ray, rows, n_blocks)
        .map_batches(_decode, batch_size=batch_size, batch_format="numpy", num_cpus=1, memory=_DECODE_MEMORY,
                     fn_kwargs={"transform": transform, "max_pixels": images.max_pixels, "shape": shape,
                                "dtype": dtype})
        .map_batches(_Embedder, batch_size=batch_size, batch_format="numpy",
                     compute=ray.data.ActorPoolStrategy(size=n_actors),
                     fn_constructor_kwargs={"spec": enc.id, "preprocess_id": enc.preprocess_id,
                                            "cache_root": str(store.root), "device": device,
                                            "threads": threads},
                     **actor_res)
    )


def embed_files(images, todo: np.ndarray, enc: Encoder, store: EmbeddingCache, *, device="auto",
                batch_size: int | None = None, address: str | None = None, progress: bool = True):
    """Embed ``images[todo]`` (files) on Ray; the workers commit the rows to ``store``.

    Returns ``(idx, feats, failed)``: the image indices embedded, their (m, D) rows read
    back from the cache here, and {image index: reason} for the images that could not be
    decoded (reasons as in-process). Raises if rows the workers committed are not visible
    here (the cache folder is not shared storage).
    """
    if images.paths is None:
        raise ValueError("engine='ray' embeds image files; in-memory arrays are embedded with engine='local'")
    _check_rebuildable(enc)
    device = "auto" if device is None else str(device)
    with _connected(address) as ray, _quiet(ray, progress):
        if batch_size is None:
            batch_size = 256 if ray.cluster_resources().get("GPU", 0) and device != "cpu" else 32
        ds = _pipeline(ray, images, todo, enc, store, device=device, batch_size=int(batch_size))
        done, failed_keys = [], {}
        try:
            for b in ds.iter_batches(batch_format="numpy", batch_size=None):
                for k, ok, reason in zip(b["key"], b["ok"], b["reason"]):
                    if ok:
                        done.append(k)
                    else:
                        failed_keys[k] = str(reason)
        except ray.exceptions.RayError as exc:  # a worker's traceback: name its cause in one sentence
            raise RuntimeError(f"the Ray embedding job failed on a worker: {_cause(exc)}") from exc
    return _collect(images, todo, store, done, failed_keys)


def _cause(exc) -> str:
    """The innermost 'SomeError: message' line of a Ray error's text (it carries the remote traceback)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in reversed(lines):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Unavailable): ", ln):
            return ln
    return lines[0] if lines else type(exc).__name__


def _collect(images, todo, store: EmbeddingCache, done: list, failed_keys: dict):
    """Map the workers' report back to image indices and read the committed rows."""
    hexes = np.array([k.ljust(16, b"\0").hex() for k in images.identities()[todo]], dtype=object)
    index_of = dict(zip(hexes.tolist(), todo.tolist()))
    failed = {index_of[k]: r for k, r in failed_keys.items()}
    idx = np.array(sorted(index_of[k] for k in done), dtype=np.int64)
    feats, hit, _ = store.lookup(images.identities()[idx])
    if not hit.all():
        raise RuntimeError(
            f"the Ray workers committed {idx.size} embedding rows to {store.path}, but {int((~hit).sum())} of them "
            "are not visible from this machine: the cache folder must be storage shared by the workers and "
            "the notebook, mounted at the same path (pass cache_dir=/shared/path)"
        )
    return idx, feats, failed
