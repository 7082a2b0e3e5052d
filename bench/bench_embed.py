"""Benchmark: embedding throughput per encoder, the demo's input size, cache-hit load time.

1. Encoders on this CPU: EfficientNet-Lite0 (real weights) at 224 px and at smaller sizes,
   OpenCLIP ViT-B-32 at 224 px (random weights: throughput does not depend on them).
   "model" = forward pass on preprocessed batches; "end-to-end" = ``embed_images`` on the
   shipped Fashion-MNIST demo images (decode + preprocess + model + normalise, no cache).
   For EfficientNet sizes the table also gives the 5-NN leave-one-out accuracy and a
   2-labels-per-class logistic probe's accuracy on those demo images: the demo size
   (``embed.DEMO_ENCODER``) is the smallest one that loses no accuracy.
2. The demo as a user meets it first: ``embed_images`` on the whole shipped subset with the
   demo encoder, fresh cache, model load included.
3. Cache hit: synthetic L2-normalised rows written through the real cache code
   (``EmbeddingCache.write_chunk`` in 2,048-row chunks, as ``embed_images`` commits them),
   then looked up by key, as a re-run on an unchanged folder does; also after compaction.
4. ``--gpu``: OpenCLIP ViT-B-32 on CUDA, model-only img/s per batch size with and without
   AMP, and end-to-end from JPEG files through the DataLoader (names the bottleneck).
5. ``--sections ray``: ``embed_images(engine="ray")`` on a local Ray against the in-process
   engine, same JPEG files, same encoder, fresh cache each, side by side (Ray's start-up timed
   apart: on a cluster it is already running). Needs the ``ray`` extra.

    .venv/bin/python bench/bench_embed.py                 # full run on this machine (minutes)
    .venv/bin/python bench/bench_embed.py --quick         # smoke run
    .venv/bin/python bench/bench_embed.py --gpu --sections none --gpu-batch 256,512,1024   # GPU part only
    .venv/bin/python bench/bench_embed.py --sections ray --out bench_embed_ray            # Ray vs in-process
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import _common as C


def _timeit(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def knn_accuracy(X: np.ndarray, y: np.ndarray, k: int = 5) -> float:
    """Leave-one-out k-NN accuracy with cosine similarity (rows are unit length)."""
    sim = X @ X.T
    np.fill_diagonal(sim, -np.inf)
    nn = np.argpartition(-sim, k, axis=1)[:, :k]
    votes = y[nn]
    pred = np.array([np.bincount(v, minlength=y.max() + 1).argmax() for v in votes])
    return float((pred == y).mean())


def probe_accuracy(X: np.ndarray, y: np.ndarray, per_class: int = 2, draws: int = 10, seed: int = 0) -> float:
    """Accuracy on the rest of a logistic regression fitted on ``per_class`` random labels per
    class (mean over ``draws``): the low-budget regime the widget's probe starts in."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    if min(np.sum(y == c) for c in classes) <= per_class:
        return float("nan")
    accs = []
    for _ in range(draws):
        idx = np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in classes])
        rest = np.ones(len(y), bool)
        rest[idx] = False
        m = LogisticRegression(max_iter=2000).fit(X[idx], y[idx])
        accs.append(float((m.predict(X[rest]) == y[rest]).mean()))
    return float(np.mean(accs))


def model_throughput(enc, images, batch: int, n_batches: int) -> float:
    """img/s of the forward pass alone on preprocessed batches (one warm-up batch first)."""
    import torch

    x = torch.stack([enc.transform(images.open(i % len(images))) for i in range(batch)])
    enc.encode_images(x)  # warm-up (lazy init, allocator)
    if enc.device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n_batches):
        enc.encode_images(x)
    if enc.device.type == "cuda":
        torch.cuda.synchronize()
    return batch * n_batches / (time.perf_counter() - t)


def bench_encoders(args, demo, records, rows) -> None:
    from alwidget import embed
    from alwidget.images import ImageSet

    n = args.images
    imgs = ImageSet.from_arrays(demo.images[:n], labels=demo.labels[:n].tolist())
    y = demo.labels[:n]
    specs = [f"efficientnet-lite0@{s}" if s != 224 else "efficientnet-lite0" for s in args.sizes]
    if not args.no_openclip:
        specs.append("openclip:ViT-B-32/random")
    for spec in specs:
        t = time.perf_counter()
        enc = embed.get_encoder(spec, device="cpu")
        load_s = time.perf_counter() - t
        with _embed_threads():
            model_ips = model_throughput(enc, imgs, args.cpu_batch, args.batches)
        t = time.perf_counter()
        e = embed.embed_images(imgs, enc, cache=False, progress=False, batch_size=args.cpu_batch)
        e2e = len(imgs) / (time.perf_counter() - t)
        acc = knn_accuracy(e.features, y[e.keep]) if spec.startswith("efficientnet") else None
        probe = probe_accuracy(e.features, y[e.keep]) if spec.startswith("efficientnet") else None
        size = getattr(enc, "image_size", 224)
        rec = {"section": "encoders", "encoder": spec, "px": size, "load_s": load_s, "model_ips": model_ips,
               "e2e_ips": e2e, "knn5": acc, "probe2": probe, "n": len(imgs), "dim": e.features.shape[1],
               "threads": embed.cpu_threads()}
        records.append(rec)
        rows.append({"encoder": spec + (" (random weights)" if "random" in spec else ""), "px": size,
                     "load": C.fmt(load_s, 1), "model": C.fmt(model_ips, 1), "e2e": C.fmt(e2e, 1),
                     "knn": C.fmt(acc * 100, 1) if acc is not None else "-",
                     "probe": C.fmt(probe * 100, 1) if probe is not None else "-"})
        print(f"  {spec:<28} {size:>4} px  load {load_s:5.1f} s  model {model_ips:7.1f} img/s  "
              f"end-to-end {e2e:7.1f} img/s" + (f"  5-NN {acc:.3f}  probe@2/class {probe:.3f}" if acc is not None
                                                 else ""), flush=True)


def _embed_threads():
    """The thread limit embed_images uses, for the model-only timing."""
    from alwidget import embed
    from alwidget._util import limit_threads

    return limit_threads(embed.cpu_threads())


def bench_demo_first_run(args, demo, records) -> dict:
    from alwidget import embed

    with tempfile.TemporaryDirectory(prefix="alwidget-bench-cache-") as cache:
        imgs = demo.to_images()
        if args.quick:
            imgs = imgs.subset(np.arange(min(len(imgs), args.images)))
        t = time.perf_counter()
        e = embed.embed_images(imgs, embed.DEMO_ENCODER, cache_dir=cache, progress=False)
        first = time.perf_counter() - t
        t = time.perf_counter()
        again = embed.embed_images(demo.to_images().subset(np.arange(len(imgs))), embed.DEMO_ENCODER,
                                   cache_dir=cache, progress=False)
        hit = time.perf_counter() - t
        assert again.n_computed == 0
    rec = {"section": "demo", "encoder": embed.DEMO_ENCODER, "n": len(imgs), "first_s": first, "rerun_s": hit,
           "dim": e.features.shape[1]}
    records.append(rec)
    print(f"  demo: {len(imgs)} images with {embed.DEMO_ENCODER}: first run {first:.1f} s (model load included), "
          f"re-run {hit * 1000:.0f} ms", flush=True)
    return rec


def bench_cache(args, records, rows) -> None:
    from alwidget.embed import EmbeddingCache

    rng = np.random.default_rng(0)
    for n in args.cache_n:
        for dim in args.cache_dims:
            with tempfile.TemporaryDirectory(prefix="alwidget-bench-cache-") as root:
                store = EmbeddingCache(f"bench-synthetic-{dim}", "none", root)
                keys = np.array([rng.bytes(16) for _ in range(n)], dtype="S16")
                t = time.perf_counter()
                for a in range(0, n, 2048):
                    block = rng.standard_normal((min(n, a + 2048) - a, dim), dtype=np.float32)
                    store.write_chunk(keys[a:a + 2048], block)
                write_s = time.perf_counter() - t
                query = keys[rng.permutation(n)]  # the folder's order differs from the cache's
                n_chunks = store.n_chunks()
                chunked = _timeit(lambda: store.lookup(query), repeat=3)
                store.compact(min_chunks=2)
                compacted = _timeit(lambda: store.lookup(query), repeat=3)
                _, hit, _ = store.lookup(query)
                assert hit.all()
            rec = {"section": "cache", "n": n, "dim": dim, "chunks": n_chunks, "write_s": write_s,
                   "lookup_chunked_s": chunked, "lookup_compacted_s": compacted}
            records.append(rec)
            rows.append({"n": n, "dim": dim, "chunks": n_chunks, "write": C.fmt(write_s, 2),
                         "chunked": C.fmt(chunked * 1000, 0), "compacted": C.fmt(compacted * 1000, 0)})
            print(f"  cache N={n:>7} D={dim:>4}: write {write_s:5.2f} s in {n_chunks} chunks; hit load "
                  f"{chunked * 1000:6.0f} ms (chunked), {compacted * 1000:6.0f} ms (one chunk)", flush=True)
        # the other half of a re-run: item keys for N files (stat results given)
        from alwidget.images import file_key

        paths = [f"/data/images/class_{i % 10}/img_{i:07d}.jpg" for i in range(n)]
        t = time.perf_counter()
        _ = [file_key(p, 123456, 1_700_000_000_000_000_000 + i) for i, p in enumerate(paths)]
        keys_s = time.perf_counter() - t
        records.append({"section": "keys", "n": n, "keys_s": keys_s})
        print(f"  item keys for {n} files: {keys_s * 1000:.0f} ms", flush=True)


def bench_rerun_folder(args, records, rows) -> None:
    """A re-run of embed_images on an unchanged folder: listing (one stat per file), item keys,
    cache lookup and row gather. Files are tiny placeholders: every row is a cache hit, so
    nothing is decoded, exactly as on a real re-run."""
    from alwidget import embed
    from alwidget.images import ImageSet

    rng = np.random.default_rng(0)
    for n in args.rerun_n:
        with tempfile.TemporaryDirectory(prefix="alwidget-bench-folder-") as d:
            root = Path(d) / "imgs"
            for c in range(10):
                (root / f"class_{c}").mkdir(parents=True)
            for i in range(n):
                (root / f"class_{i % 10}" / f"img_{i:07d}.jpg").write_bytes(b"x")
            listing = ImageSet.from_folder(root)
            cache = Path(d) / "cache"
            for a in range(0, n, 2048):
                keys = listing.identities()[a:a + 2048]
                embed.write_chunk(args.rerun_encoder, keys, rng.standard_normal((len(keys), 512), dtype=np.float32),
                                  cache_dir=cache)
            t = time.perf_counter()
            s = ImageSet.from_folder(root)
            list_s = time.perf_counter() - t
            t = time.perf_counter()
            e = embed.embed_images(s, args.rerun_encoder, cache_dir=cache, progress=False)
            embed_s = time.perf_counter() - t
            assert e.n_cached == n and e.n_computed == 0
        records.append({"section": "rerun", "n": n, "list_s": list_s, "embed_s": embed_s, "dim": 512})
        rows.append({"n": n, "list": C.fmt(list_s * 1000, 0), "embed": C.fmt(embed_s * 1000, 0),
                     "total": C.fmt((list_s + embed_s) * 1000, 0)})
        print(f"  re-run on an unchanged folder of {n} files (D=512): listing {list_s * 1000:.0f} ms + "
              f"embed_images {embed_s * 1000:.0f} ms (keys, lookup, gather)", flush=True)


def bench_gpu(args, records, rows) -> None:
    import torch
    from PIL import Image

    from alwidget import datasets, embed
    from alwidget.images import ImageSet

    dev = args.gpu_device
    if dev == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--gpu: CUDA is not available here (use --gpu-device cpu for a dry run of this section)")
    enc = embed.get_encoder("openclip:ViT-B-32/random", device=dev)
    demo = datasets.demo()
    small = ImageSet.from_arrays(demo.images[:64])
    for batch in args.gpu_batch:
        for amp in (True, False):
            enc_amp = enc
            if not amp:  # the encoder autocasts on CUDA; time plain fp32 as the reference
                enc_amp = _NoAmp(enc)
            ips = model_throughput(enc_amp, small, batch, args.gpu_batches)
            records.append({"section": "gpu-model", "batch": batch, "amp": amp, "ips": ips, "device": dev})
            rows.append({"what": "model only (preprocessed tensors)", "batch": batch, "amp": "on" if amp else "off",
                         "workers": "-", "ips": C.fmt(ips, 0)})
            print(f"  ViT-B-32 {dev} batch {batch:>5} AMP {'on ' if amp else 'off'}: {ips:8.0f} img/s", flush=True)
    # end-to-end from JPEG files on disk
    with tempfile.TemporaryDirectory(prefix="alwidget-bench-jpeg-") as d:
        n = args.gpu_images
        base = [Image.fromarray(a).convert("RGB").resize((256, 256), Image.Resampling.BILINEAR)
                for a in demo.images[:200]]
        for i in range(n):
            base[i % len(base)].save(f"{d}/{i:07d}.jpg", quality=90)
        files = ImageSet.from_folder(d)
        for batch in args.gpu_batch:
            t = time.perf_counter()
            e = embed.embed_images(files, enc, cache=False, progress=False, batch_size=batch,
                                   workers=args.workers if args.workers != "auto" else "auto")
            ips = len(files) / (time.perf_counter() - t)
            workers = embed._auto_workers(len(files), enc.device.type) if args.workers == "auto" else int(args.workers)
            model = max(r["ips"] for r in records if r["section"] == "gpu-model" and r["batch"] == batch and r["amp"])
            bottleneck = ("JPEG decode + resize in DataLoader workers (CPU)" if ips < 0.8 * model
                          else f"the model ({dev})")
            records.append({"section": "gpu-e2e", "batch": batch, "workers": workers, "ips": ips,
                            "n": len(files), "bottleneck": bottleneck, "dim": e.features.shape[1]})
            rows.append({"what": f"end-to-end, {len(files)} JPEG 256 px ({bottleneck})", "batch": batch,
                         "amp": "on", "workers": workers, "ips": C.fmt(ips, 0)})
            print(f"  end-to-end {len(files)} JPEGs, batch {batch}, {workers} workers: {ips:8.0f} img/s; "
                  f"bottleneck: {bottleneck}", flush=True)


def _jpeg_folder(root: Path, demo, n: int, px: int) -> Path:
    """n JPEG files of px x px (the demo images upscaled, as photos are larger than the crop)."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    base = [Image.fromarray(a).convert("RGB").resize((px, px), Image.Resampling.BILINEAR) for a in demo.images[:200]]
    for i in range(n):
        base[i % len(base)].rotate(i // len(base), fillcolor=(0, 0, 0)).save(root / f"{i:06d}.jpg", quality=90)
    return root


def bench_ray(args, demo, records, rows) -> None:
    """Ray Data engine vs in-process on the same files: wall time incl. model load, fresh caches,
    at each size in --ray-images (the difference of two sizes separates start-up from throughput)."""
    import os

    import ray

    from alwidget._util import available_cpus

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    t = time.perf_counter()
    ray.init(num_cpus=available_cpus(), include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - t
    print(f"  Ray {ray.__version__} local cluster of {available_cpus()} CPUs started in {init_s:.1f} s", flush=True)
    try:
        for n in args.ray_images:
            with tempfile.TemporaryDirectory(prefix="alwidget-bench-ray-") as d:
                folder = _jpeg_folder(Path(d) / "imgs", demo, n, args.ray_px)
                times, feats = _ray_vs_local(args, folder, Path(d))
            diff = float(np.abs(feats["ray"] - feats["local"]).max())
            local_s, ray_s = min(times["local"]), min(times["ray"])
            records.append({"section": "ray", "n": n, "px": args.ray_px, "encoder": args.ray_encoder,
                            "local_s": times["local"], "ray_s": times["ray"], "ray_init_s": init_s,
                            "max_abs_diff": diff, "cpus": available_cpus(), "ray_version": ray.__version__})
            rows.append({"n": n, "local": C.fmt(local_s, 1), "local_ips": C.fmt(n / local_s, 1),
                         "ray": C.fmt(ray_s, 1), "ray_ips": C.fmt(n / ray_s, 1), "rel": f"{local_s / ray_s:.2f}",
                         "diff": f"{diff:.0e}"})
            print(f"  {n} JPEGs ({args.ray_px} px) with {args.ray_encoder}: in-process {local_s:.1f} s "
                  f"({n / local_s:.1f} img/s), Ray {ray_s:.1f} s ({n / ray_s:.1f} img/s, {local_s / ray_s:.2f}x); "
                  f"max |difference| {diff:.1e}", flush=True)
    finally:
        ray.shutdown()


def _ray_vs_local(args, folder: Path, tmp: Path):
    """Best-of-repeats wall time per engine, the order alternated between repeats."""
    from alwidget import embed

    times, feats = {"local": [], "ray": []}, {}
    for rep in range(args.ray_repeats):
        for engine in ("local", "ray") if rep % 2 == 0 else ("ray", "local"):
            t = time.perf_counter()
            e = embed.embed_images(str(folder), args.ray_encoder, cache_dir=tmp / f"cache-{engine}-{rep}",
                                   engine=engine, progress=False)
            times[engine].append(time.perf_counter() - t)
            feats[engine] = e.features
    return times, feats


class _NoAmp:
    """An encoder view that runs the model in fp32 even on CUDA."""

    def __init__(self, enc):
        self._enc = enc
        self.device = enc.device
        self.transform = enc.transform

    def encode_images(self, batch):
        import torch

        with torch.inference_mode():
            f = self._enc._forward_images(self._enc.to_model_input(batch))
            f = torch.nn.functional.normalize(f.float(), dim=1)
        return f.cpu().numpy()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=1000, help="demo images for the encoder section")
    p.add_argument("--sizes", type=C.parse_ints, default=[224, 160, 112, 96, 64],
                   help="EfficientNet-Lite0 input sizes (px)")
    p.add_argument("--cpu-batch", type=int, default=32)
    p.add_argument("--batches", type=int, default=4, help="timed batches for model-only throughput")
    p.add_argument("--no-openclip", action="store_true", help="skip OpenCLIP on the CPU")
    p.add_argument("--cache-n", type=C.parse_ints, default=[10_000, 100_000])
    p.add_argument("--cache-dims", type=C.parse_ints, default=[512, 1280])
    p.add_argument("--rerun-n", type=C.parse_ints, default=[10_000, 100_000],
                   help="folder sizes for the unchanged-folder re-run")
    p.add_argument("--rerun-encoder", default="efficientnet-lite0", help=argparse.SUPPRESS)
    p.add_argument("--sections", type=C.parse_names, default=["encoders", "demo", "cache", "rerun"],
                   help="which of encoders,demo,cache,rerun,ray to run (gpu: use --gpu)")
    p.add_argument("--gpu", action="store_true", help="also OpenCLIP ViT-B-32 on the GPU")
    p.add_argument("--gpu-device", default="cuda", help="device for --gpu ('cpu' for a dry run)")
    p.add_argument("--gpu-batch", type=C.parse_ints, default=[256, 512, 1024])
    p.add_argument("--gpu-batches", type=int, default=10)
    p.add_argument("--gpu-images", type=int, default=20000,
                   help="JPEG files for the end-to-end GPU run (enough for many batches per worker)")
    p.add_argument("--workers", default="auto", help="DataLoader workers for the end-to-end GPU run")
    p.add_argument("--ray-images", type=C.parse_ints, default=[200, 2000],
                   help="JPEG files for the Ray vs in-process section (one run per size)")
    p.add_argument("--ray-px", type=int, default=256)
    p.add_argument("--ray-encoder", default="efficientnet-lite0@96")
    p.add_argument("--ray-repeats", type=int, default=2, help="runs per engine (best of), order alternated")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of every section")
    p.add_argument("--out", default=None, help="results name under bench/results/ (default bench_embed)")
    return p


def _tables(args, rows: dict, demo_rec) -> list:
    tables = []
    if rows["encoders"]:
        tables.append(("Encoders on this CPU", C.markdown_table(rows["encoders"], [
            ("encoder", "encoder"), ("px", "input px"), ("load", "load (s)"), ("model", "model img/s"),
            ("e2e", "end-to-end img/s"), ("knn", "5-NN acc. on demo (%)"),
            ("probe", "probe acc., 2 labels/class (%)")])))
    if demo_rec:
        tables.append((f"Demo first run: {demo_rec['n']} images with {demo_rec['encoder']}: "
                       f"{demo_rec['first_s']:.1f} s (model load included); re-run from the cache "
                       f"{demo_rec['rerun_s'] * 1000:.0f} ms", ""))
    if rows["cache"]:
        tables.append(("Cache hit (lookup of every key, rows gathered in the folder's order)",
                       C.markdown_table(rows["cache"], [
                           ("n", "N"), ("dim", "D"), ("chunks", "chunks"), ("write", "write (s)"),
                           ("chunked", "hit load, chunked (ms)"), ("compacted", "hit load, one chunk (ms)")])))
    if rows["rerun"]:
        tables.append(("Re-run on an unchanged folder (every row cached; D = 512)", C.markdown_table(rows["rerun"], [
            ("n", "files"), ("list", "listing (ms)"), ("embed", "embed_images (ms)"), ("total", "total (ms)")])))
    if rows["ray"]:
        tables.append((f"Ray vs in-process: JPEG files of {args.ray_px} px, {args.ray_encoder}, fresh cache, model load "
                       f"included, best of {args.ray_repeats} (Ray's own start-up excluded)",
                       C.markdown_table(rows["ray"], [
                           ("n", "files"), ("local", "in-process (s)"), ("local_ips", "in-process img/s"),
                           ("ray", "Ray (s)"), ("ray_ips", "Ray img/s"), ("rel", "Ray throughput vs in-process"),
                           ("diff", "max abs. row difference")])))
    if rows["gpu"]:
        tables.append(("OpenCLIP ViT-B-32 (random weights) on the GPU", C.markdown_table(rows["gpu"], [
            ("what", "what"), ("batch", "batch"), ("amp", "AMP"), ("workers", "workers"), ("ips", "img/s")])))
    return tables


def _settings_and_notes(args, embed, with_ray: bool):
    if args.sections == ["ray"]:
        settings = (f"Ray section only: {', '.join(map(str, args.ray_images))} JPEG files made from the demo images, "
                    f"{args.ray_encoder}, a local Ray of all usable CPUs" + ("; QUICK" if args.quick else ""))
    else:
        settings = (f"{args.images} shipped Fashion-MNIST demo images (28 px grey, upscaled by the encoder's "
                    f"preprocessing); CPU batch {args.cpu_batch}; torch threads = idle cores "
                    f"({embed.cpu_threads()} at the end)" + ("; QUICK smoke run" if args.quick else ""))
    notes = ["model = forward pass on preprocessed tensors (best of the timed batches as a mean); end-to-end = "
             "embed_images without cache (decode, preprocess, DataLoader, model, L2 normalisation).",
             "5-NN acc. = leave-one-out 5-nearest-neighbour accuracy (cosine) of the embeddings on the demo "
             "images: how well the map will separate the classes at that input size; probe acc. = logistic "
             "regression on 2 random labels per class, accuracy on the rest, mean of 10 draws.",
             "cache figures exclude listing the folder (one stat per file) and include the key sort and the "
             "row gather; item-key hashing is timed separately in the JSON records ('keys')."]
    if with_ray:
        notes.append("Ray = embed_images(engine='ray') on a running local Ray: CPU decode tasks, one model actor "
                     "(1 thread on 2 CPUs, the other decodes), one cache chunk per batch, rows read back from the "
                     "cache; its wall time includes starting the actor process (torch import, model load) on "
                     "every call; in-process = engine='local' (1 DataLoader worker on 2 CPUs).")
    return settings, notes


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        args.images, args.sizes, args.batches, args.cpu_batch = 32, [224, 96], 1, 16
        args.cache_n, args.cache_dims, args.rerun_n = [10_000], [512], [2_000]
        args.gpu_batch, args.gpu_batches, args.gpu_images = [32], 1, 64
        args.ray_images, args.ray_repeats = [64], 1
    out = args.out or ("tmp/bench_embed_quick" if args.quick else "bench_embed")

    from alwidget import datasets, embed

    info = C.machine_info(args.gpu_device if args.gpu else "cpu")
    print(C.machine_line(info))
    demo = datasets.demo()
    records = []
    rows = {k: [] for k in ("encoders", "cache", "rerun", "ray", "gpu")}
    demo_rec = None
    if "encoders" in args.sections:
        print(f"\n1. encoders on the CPU ({args.images} Fashion-MNIST demo images, batch {args.cpu_batch})")
        bench_encoders(args, demo, records, rows["encoders"])
    if "demo" in args.sections:
        print(f"\n2. the demo's first embedding ({embed.DEMO_ENCODER})")
        demo_rec = bench_demo_first_run(args, demo, records)
    if "cache" in args.sections:
        print("\n3. cache-hit load")
        bench_cache(args, records, rows["cache"])
    if "rerun" in args.sections:
        print("\n3b. re-run on an unchanged folder")
        bench_rerun_folder(args, records, rows["rerun"])
    if "ray" in args.sections:
        print(f"\n5. Ray Data engine vs in-process ({args.ray_encoder})")
        bench_ray(args, demo, records, rows["ray"])
    if args.gpu:
        print("\n4. OpenCLIP ViT-B-32 on the GPU")
        bench_gpu(args, records, rows["gpu"])

    settings, notes = _settings_and_notes(args, embed, bool(rows["ray"]))
    path = C.write_results(out, title="Embedding throughput and cache", settings=settings, info=info,
                           tables=_tables(args, rows, demo_rec), records=records, notes=notes)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
