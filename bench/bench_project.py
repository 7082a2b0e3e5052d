"""Benchmark alwidget.project against what a user would run instead.

For each size N (512-d Gaussian-mixture features, L2-normalised, or real
embeddings from an .npz with a ``features`` array) and each method, a child
process is started that imports everything, fits once ("fresh": includes
umap-learn's numba compilation and imports) and fits again ("warm": same
process, caches bypassed). Reported: wall seconds, CPU seconds (user+sys of the
child, a load-insensitive proxy on a shared machine), and map quality:

* knn-acc: 10-NN accuracy of the mixture (or given) labels in 2-D (held-out 20%),
* trust: fraction of each point's 10 nearest neighbours (cosine, full-D) that are
  among its 10 nearest in 2-D, over 1,000 sampled points.

Methods:
  preview          alwidget.project.preview (PCA on <= 20k rows, project all)
  sk-pca           sklearn PCA(2).fit_transform on the L2-normalised features
  alw-umap         alwidget.project.umap (defaults: seeded, knn auto, preview init)
  alw-umap-exact   ... forcing the exact kNN graph
  alw-umap-nnd     ... forcing pynndescent
  alw-umap-spec    ... spectral init instead of the preview
  umap-default     umap.UMAP().fit_transform(X): unseeded, parallel, not reproducible
  umap-seeded      umap.UMAP(random_state=0): reproducible, single-threaded layout
  umap-sub         umap.UMAP(random_state=0) fitted on 20k rows (--subsample), .transform for the rest

Usage:
  python bench/bench_project.py                 # N = 10k, 50k, 100k, all methods
  python bench/bench_project.py --quick         # smoke run: N = 3k, fewer methods
  python bench/bench_project.py --sizes 20000 --methods preview,alw-umap
  python bench/bench_project.py --features emb.npz [--labels-key labels]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

ALL_METHODS = [
    "preview",
    "sk-pca",
    "alw-umap",
    "alw-umap-exact",
    "alw-umap-nnd",
    "alw-umap-spec",
    "umap-default",
    "umap-seeded",
    "umap-sub",
]
QUICK_METHODS = ["preview", "sk-pca", "alw-umap", "alw-umap-nnd", "umap-default", "umap-seeded"]
SUBSAMPLE = 20_000


def mixture(n: int, d: int = 512, seed: int = 0):
    """(X (n, d) float32 L2-normalised, labels (n,)): 50 Gaussian blobs in 10 groups of 5.

    Blobs of a group share a centre (so they overlap somewhat, like fine classes
    of one coarse class); labels are the 50 blobs.
    """
    rng = np.random.default_rng(seed)
    groups = rng.normal(size=(10, d)).astype(np.float32)
    centres = np.repeat(groups, 5, axis=0) + 0.5 * rng.normal(size=(50, d)).astype(np.float32)
    labels = rng.integers(0, 50, n)
    X = centres[labels] + 0.6 * rng.normal(size=(n, d)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X, labels


def load(spec: dict, n: int):
    if spec.get("features"):
        with np.load(spec["features"], allow_pickle=False) as z:
            X = np.asarray(z["features"], dtype=np.float32)
            key = spec.get("labels_key")
            labels = z[key] if key and key in z.files else None
        rows = np.random.default_rng(0).permutation(len(X))[:n]
        X = X[rows]
        if labels is not None:
            labels = np.unique(labels[rows], return_inverse=True)[1]
        return X, labels
    return mixture(n)


def quality(X, Y, labels, seed: int = 0) -> dict:
    """knn-acc (labels in 2-D) and trust (10-NN kept), both on samples; higher is better."""
    from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

    rng = np.random.default_rng(seed)
    n = len(X)
    out = {}
    if labels is not None:
        test = rng.random(n) < 0.2
        clf = KNeighborsClassifier(10).fit(Y[~test], labels[~test])
        out["knn_acc"] = float(clf.score(Y[test], labels[test]))
    q = rng.choice(n, min(1000, n), replace=False)
    Xn = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    hi = NearestNeighbors(n_neighbors=11).fit(Xn).kneighbors(Xn[q], return_distance=False)[:, 1:]
    lo = NearestNeighbors(n_neighbors=11).fit(Y).kneighbors(Y[q], return_distance=False)[:, 1:]
    out["trust"] = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(hi, lo)]))
    return out


def run_method(method: str, X: np.ndarray, seed: int, cache: str, subsample: int = SUBSAMPLE):
    """One fit; returns (n, 2) coordinates. Imports happen inside (the fresh cost)."""
    if method == "preview":
        from alwidget.project import preview

        return preview(X, seed=seed)
    if method == "sk-pca":
        from sklearn.decomposition import PCA

        Xn = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        return PCA(2, random_state=seed).fit_transform(Xn)
    if method.startswith("alw-umap"):
        from alwidget.project import umap

        extra = {"alw-umap-exact": {"knn": "exact"}, "alw-umap-nnd": {"knn": "nndescent"},
                 "alw-umap-spec": {"init": "spectral"}}.get(method, {})
        # a fresh cache folder per fit: measure the computation, not the cache
        return umap(X, seed=seed, cache_dir=tempfile.mkdtemp(dir=cache), progress=False, **extra)
    import umap as umap_pkg

    if method == "umap-default":
        return umap_pkg.UMAP().fit_transform(X)
    if method == "umap-seeded":
        return umap_pkg.UMAP(random_state=seed).fit_transform(X)
    if method == "umap-sub":
        rows = np.sort(np.random.default_rng(seed).choice(len(X), min(subsample, len(X)), replace=False))
        model = umap_pkg.UMAP(random_state=seed).fit(X[rows])
        Y = np.empty((len(X), 2), np.float32)
        Y[rows] = model.embedding_
        rest = np.setdiff1d(np.arange(len(X)), rows)
        if rest.size:
            Y[rest] = model.transform(X[rest])
        return Y
    raise ValueError(f"unknown method {method!r}; choose from {ALL_METHODS}")


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def child(args) -> None:
    """Runs in a fresh interpreter: fit twice, print one JSON line."""
    import warnings

    warnings.filterwarnings("ignore")
    spec = json.loads(args.child)
    X, labels = load(spec, spec["n"])
    res, maps = {}, []
    with tempfile.TemporaryDirectory() as cache:
        for phase in ("fresh", "warm"):
            c0, t0 = cpu_seconds(), time.perf_counter()
            maps.append(np.asarray(run_method(spec["method"], X, spec["seed"], cache, spec["subsample"]), dtype=np.float32))
            res[phase] = time.perf_counter() - t0
            res[phase + "_cpu"] = cpu_seconds() - c0
    # both fits used the same seed: equal maps = reproducible
    res["repro"] = bool(np.array_equal(maps[0], maps[1]))
    res.update(quality(X, maps[1], labels))
    print("RESULT " + json.dumps(res), flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: small N, fewer methods")
    p.add_argument("--sizes", default=None, help="comma-separated N (default 10000,50000,100000)")
    p.add_argument("--methods", default=None, help=f"comma-separated, from {','.join(ALL_METHODS)}")
    p.add_argument("--features", default=None, help=".npz with a 'features' array (real embeddings)")
    p.add_argument("--labels-key", default="labels", help="array in --features holding labels, if any")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subsample", type=int, default=SUBSAMPLE, help="rows umap-sub fits on")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args)
        return 0

    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([3000] if args.quick else [10_000, 50_000, 100_000])
    methods = args.methods.split(",") if args.methods else (QUICK_METHODS if args.quick else ALL_METHODS)
    unknown = sorted(set(methods) - set(ALL_METHODS))
    if unknown:
        p.error(f"unknown method(s) {unknown}; choose from {ALL_METHODS}")
    print(f"# {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; data: {args.features or 'Gaussian mixture, 50 blobs in 10 groups, D=512'}")
    print("# fresh = new process (imports + numba compilation + fit); warm = second fit in that process")
    header = f"{'N':>7}  {'method':<15} {'fresh s':>8} {'warm s':>8} {'fresh cpu':>9} {'warm cpu':>9} {'repro':>5} {'knn-acc':>7} {'trust':>6}"
    print(header)
    print("-" * len(header))
    rows = []
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    for n in sizes:
        for method in methods:
            spec = {"n": n, "method": method, "seed": args.seed, "features": args.features,
                    "labels_key": args.labels_key, "subsample": args.subsample}
            proc = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)],
                capture_output=True, text=True, env=env,
            )
            line = [s for s in proc.stdout.splitlines() if s.startswith("RESULT ")]
            if proc.returncode != 0 or not line:
                err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                print(f"{n:>7}  {method:<15} failed: {err}")
                rows.append({"n": n, "method": method, "error": err})
                continue
            r = json.loads(line[-1][len("RESULT "):])
            repro = "yes" if r["repro"] else "no"
            acc = f"{r['knn_acc']:.3f}" if "knn_acc" in r else "-"
            print(f"{n:>7}  {method:<15} {r['fresh']:8.1f} {r['warm']:8.1f} {r['fresh_cpu']:9.1f} {r['warm_cpu']:9.1f} "
                  f"{repro:>5} {acc:>7} {r['trust']:6.3f}", flush=True)
            rows.append({"n": n, "method": method, **r})
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
