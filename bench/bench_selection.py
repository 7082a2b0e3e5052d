"""Benchmark 2: selection time and peak memory per strategy, ours vs scikit-activeml.

For every (tool, strategy, N) a fresh worker subprocess loads the same synthetic embeddings
(Gaussian mixture, D = 512, C = 10, rows L2-normalised) with the same labelled set, then asks
for one batch of B points twice:

- first call: everything from cold, including our feature-only geometry (normalisation, kNN,
  k-means, ProbCover's delta and ball graph) and, for model-based strategies, training the model;
- second call: the same request again in the same process (our geometry is cached per feature
  set; scikit-activeml's ProbCover object keeps its distance matrix, the rest recompute).

Peak memory is the growth of the worker's peak RSS (``VmHWM``, reset just before the first call)
over its RSS after loading the data and importing the libraries, so it counts numpy, torch and
faiss allocations alike.
The parent samples the worker's RSS and kills it past ``--timeout`` seconds or ``--mem-cap-gb``,
reporting "> T s" or "> M GB" instead of hanging or swapping.

    .venv/bin/python bench/bench_selection.py                 # N = 10k, 100k
    .venv/bin/python bench/bench_selection.py --n 10000,100000,1000000
    .venv/bin/python bench/bench_selection.py --quick         # N = 2k, a couple of minutes
    .venv/bin/python bench/bench_selection.py --knn --n 100000   # kNN graph: exact vs approximate

``--knn`` (issue 12): the k = 10 kNN graph that near-duplicates and outliers read
(``Geometry.knn``), exact (faiss flat, what main used) against the approximate HNSW graph
(``alwidget.ann``), on the synthetic pool and on real features (Fashion-MNIST pixels, 60k rows,
784-d); recall against an exact search of 1,000 seeded query rows.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

import _common as C

OURS = ["typiclust", "probcover", "dropquery", "coreset", "badge", "margin", "random"]
# Our name -> the scikit-activeml class that implements the same idea (None: no peer run).
PEER = {"typiclust": "TypiClust", "probcover": "ProbCover", "dropquery": "DropQuery",
        "coreset": "CoreSet", "badge": None, "margin": "UncertaintySampling(margin_sampling)",
        "random": "RandomSampling"}


# --------------------------------------------------------------------------- worker side

def _worker(args) -> dict:
    """Runs in the subprocess: load, measure baseline RSS, select twice, report JSON."""
    X = np.load(args.x)
    y = np.load(args.y)
    labels = C.initial_labels(y, args.per_class, seed=args.seed)
    n_classes = int(y.max()) + 1
    np.ones((64, 64)) @ np.ones((64, 64))  # BLAS start-up is not selection memory
    if args.tool == "ours":
        call = _ours_call(args.strategy, X, labels, args.batch, args.seed)
    else:
        call = _peer_call(args.strategy, X, labels, args.batch, args.seed, n_classes)
    exact = C.reset_peak_rss()
    base = C.rss_bytes()
    t0 = time.perf_counter()
    first, info = call()
    t1 = time.perf_counter()
    second, _ = call()
    t2 = time.perf_counter()
    first = np.asarray(first)
    res = {
        "first_s": t1 - t0,
        "second_s": t2 - t1,
        "peak_rss_delta": max(0, C.peak_rss_bytes() - base),
        "peak_rss_exact": exact,
        "n_selected": int(len(first)),
        "n_distinct": int(len(np.unique(first))),
        "all_unlabelled": bool(np.all(labels[first] == -1)) if len(first) else True,
        "info": info,
    }
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
            res["cuda_peak"] = int(torch.cuda.max_memory_allocated())
    except ImportError:
        pass
    return res


def _ours_call(name, X, labels, k, seed):
    """Import everything the call needs before the baseline, then return the call."""
    import torch  # import and start-up costs are not selection memory
    from alwidget import strategies

    torch.ones(64, 64) @ torch.ones(64, 64)

    try:
        import faiss  # noqa: F401
    except ImportError:
        pass

    def call():
        idx, info = strategies.select(name, X, labels, k, seed=seed, return_info=True)
        keep = {k_: v for k_, v in info.items() if isinstance(v, (int, float, str, bool))}
        return idx, keep

    return call


def _peer_call(name, X, labels, k, seed, n_classes):
    """The scikit-activeml strategy of the same name, LogisticRegression where a model is needed."""
    from sklearn.linear_model import LogisticRegression
    from skactiveml.classifier import SklearnClassifier
    from skactiveml import pool

    common = dict(missing_label=-1, random_state=seed)
    clf = SklearnClassifier(LogisticRegression(max_iter=1000), classes=np.arange(n_classes),
                            missing_label=-1, random_state=seed)
    if name == "typiclust":
        qs, kw = pool.TypiClust(**common), {}
    elif name == "probcover":
        qs, kw = pool.ProbCover(n_classes=n_classes, **common), {}
    elif name == "dropquery":
        qs, kw = pool.DropQuery(**common), {"clf": clf}
    elif name == "coreset":
        qs, kw = pool.CoreSet(**common), {}
    elif name == "margin":
        qs, kw = pool.UncertaintySampling(method="margin_sampling", **common), {"clf": clf}
    elif name == "random":
        qs, kw = pool.RandomSampling(**common), {}
    else:
        raise ValueError(f"no scikit-activeml peer for strategy {name!r}")

    def call():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idx = qs.query(X, labels, batch_size=k, **kw)
        info = {"delta": float(qs.delta_max_)} if name == "probcover" else {}
        return idx, info

    return call


# --------------------------------------------------------------------------- parent side

def _peer_memory_precheck(name: str, n: int, cap: int) -> str | None:
    """scikit-activeml's ProbCover builds the full N x N float64 distance matrix (plus N x N
    booleans); refuse to start it when that alone exceeds the memory cap."""
    if name == "probcover":
        need = n * n * (8 + 3)
        if need > cap:
            return f"not run: needs N×N matrices ≈ {need / 2**30:.0f} GB"
    return None


def _run_one(tool, strategy, xp, yp, args, cap) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--tool", tool, "--strategy", strategy,
           "--x", str(xp), "--y", str(yp), "--batch", str(args.batch), "--per-class", str(args.per_class),
           "--seed", str(args.seed)]
    env = dict(os.environ)
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    if args.threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(args.threads)
    return C.run_worker(cmd, timeout_s=args.timeout, mem_cap_bytes=cap, env=env)


def _cell_time(r, key, args, cap) -> str:
    if r is None:
        return "-"
    st = r.get("status")
    if st == "timeout":
        return f"> {args.timeout:.0f} s"
    if st == "oom":
        return f"> {cap / 2**30:.0f} GB"
    if st in ("error", "skipped"):
        return st
    return C.fmt(r[key], 2)


def _cell_mem(r) -> str:
    if r is None or r.get("status") != "ok":
        return "-"
    mb = r["peak_rss_delta"] / 2**20
    if r.get("cuda_peak"):
        return f"{mb:.0f} (+{r['cuda_peak'] / 2**20:.0f} GPU)"
    return f"{mb:.0f}"


def knn_bench(args) -> int:
    """Exact vs approximate kNN graph: time and recall (see the module docstring)."""
    from alwidget import ann
    from alwidget._util import limit_threads
    from alwidget.datasets import fashion_mnist
    from alwidget.geometry import Geometry, knn_query, normalize

    info = C.machine_info(args.device)
    print(C.machine_line(info), flush=True)
    sets = []
    for n in args.n:
        xp, _ = C.cached_features(n, args.dim, args.classes, seed=args.seed)
        sets.append((f"synthetic GMM, N = {n:,}, D = {args.dim}", np.load(xp)))
    ds = fashion_mnist("train", download=False)
    sets.append(("Fashion-MNIST pixels, N = 60,000, D = 784", ds.images.reshape(len(ds.images), -1).astype(np.float32)))
    rows = []
    with limit_threads(args.threads or 1):
        for name, X in sets:
            Xn = normalize(X)
            q = np.sort(np.random.default_rng(0).choice(len(Xn), 1000, replace=False))
            _, ex = knn_query(Xn, Xn[q], 11)
            ex = np.array([[j for j in r if j != i][:10] for i, r in zip(q, ex)])
            rec = {"set": name}
            for mode, approx in (("exact", False), ("approximate", True)):
                Geometry.clear_cache()
                t = time.perf_counter()
                _, idx = Geometry.of(X).knn(10, approx=approx)
                rec[f"{mode}_s"] = time.perf_counter() - t
                rec[f"{mode}_recall"] = ann.recall(idx[q], ex)
            rows.append(rec)
            print(f"  {name}: exact {rec['exact_s']:.1f} s (recall {rec['exact_recall']:.3f}), approximate "
                  f"{rec['approximate_s']:.1f} s (recall {rec['approximate_recall']:.3f})", flush=True)
    cols = [("set", "features"), ("exact_s", "exact graph, s"), ("exact_recall", "recall"),
            ("approximate_s", "HNSW graph, s"), ("approximate_recall", "recall")]
    table = C.markdown_table([{k: (C.fmt(v, 3) if "recall" in k else v) for k, v in r.items()} for r in rows], cols)
    path = C.write_results(f"{args.out}_knn", title="kNN graph (k = 10): exact vs approximate",
                           settings=f"threads {args.threads or 1}; recall on 1,000 seeded query rows vs exact",
                           info=info, tables=[("", table)], records=rows)
    print(f"wrote {path}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=C.parse_ints, default=[10_000, 100_000], help="pool sizes, e.g. 10000,100000")
    p.add_argument("--strategies", type=C.parse_names, default=OURS, help="comma-separated")
    p.add_argument("--batch", type=int, default=100, help="B, points per selection")
    p.add_argument("--per-class", type=int, default=10,
                   help="random oracle labels per class before selecting (10 -> L = 100 at C = 10)")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="cpu hides the GPU from the workers; auto/cuda leave it visible")
    p.add_argument("--threads", type=int, default=None,
                   help="cap OpenMP/BLAS/torch threads in every worker (default: the libraries' own choice)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per (tool, strategy, N)")
    p.add_argument("--mem-cap-gb", type=float, default=None, help="default: 60%% of the machine's RAM")
    p.add_argument("--no-peer", action="store_true", help="skip scikit-activeml")
    p.add_argument("--quick", action="store_true", help="N = 2000, 60 s timeout: a smoke run")
    p.add_argument("--out", default="bench_selection", help="results name under bench/results/")
    p.add_argument("--knn", action="store_true", help="the kNN graph: exact vs approximate (issue 12)")
    # worker mode (internal)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--tool", help=argparse.SUPPRESS)
    p.add_argument("--strategy", help=argparse.SUPPRESS)
    p.add_argument("--x", help=argparse.SUPPRESS)
    p.add_argument("--y", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        print(json.dumps(_worker(args), default=C._json_default))
        return 0
    if args.knn:
        return knn_bench(args)

    import psutil

    if args.quick:
        args.n, args.timeout = [2_000], min(args.timeout, 60.0)
    unknown = sorted(set(args.strategies) - set(OURS))
    if unknown:
        p.error(f"--strategies: unknown {unknown}; choose from {','.join(OURS)}")
    cap = int((args.mem_cap_gb * 2**30) if args.mem_cap_gb else 0.6 * psutil.virtual_memory().total)
    args.no_peer = args.no_peer or not C.peer_available()
    info = C.machine_info(args.device)
    print(C.machine_line(info))
    print(f"B = {args.batch}, labelled before selection: {args.per_class} per class, D = {args.dim}, "
          f"C = {args.classes}, timeout {args.timeout:.0f} s, memory cap {cap / 2**30:.1f} GB\n")

    records, rows = [], []
    for n in args.n:
        t = time.perf_counter()
        xp, yp = C.cached_features(n, args.dim, args.classes, seed=args.seed)
        print(f"N = {n}: data ready in {time.perf_counter() - t:.1f} s")
        for s in args.strategies:
            ours = _run_one("ours", s, xp, yp, args, cap)
            peer = None
            if not args.no_peer and PEER[s] is not None:
                why = _peer_memory_precheck(s, n, cap)
                peer = {"status": "skipped", "error": why} if why else _run_one("skactiveml", s, xp, yp, args, cap)
            for tool, r in (("ours", ours), ("skactiveml", peer)):
                if r is not None:
                    records.append({"n": n, "strategy": s, "tool": tool, **r})
                    if r.get("status") not in ("ok", "timeout", "oom"):
                        print(f"  {tool} {s}: {r.get('status')}: {r.get('error')}")
            speedup = None
            if peer and peer.get("status") == "ok" and ours.get("status") == "ok":
                ratio = peer["first_s"] / max(ours["first_s"], 1e-9)
                speedup = f"{ratio:.0f}×" if ratio >= 10 else f"{ratio:.1f}×"
            elif peer and peer.get("status") in ("timeout", "oom", "skipped") and ours.get("status") == "ok":
                speedup = "peer did not finish" if peer.get("status") != "skipped" else "peer not run"
            extra = ""
            if ours.get("status") == "ok":
                inf = ours.get("info", {})
                extra = ", ".join(f"{k}={C.fmt(v, 3)}" for k, v in inf.items() if k in ("delta", "purity"))
                if inf.get("strategy") not in (None, s):  # a cold-start fallback ran instead
                    extra = ", ".join(x for x in (extra, f"ran {inf['strategy']}") if x)
                if ours["n_selected"] != min(args.batch, n) or ours["n_distinct"] != ours["n_selected"] \
                        or not ours["all_unlabelled"]:
                    extra += " CONTRACT BROKEN: " + json.dumps({k: ours[k] for k in
                                                                ("n_selected", "n_distinct", "all_unlabelled")})
            row = {"n": n, "strategy": s,
                   "ours_first": _cell_time(ours, "first_s", args, cap),
                   "ours_second": _cell_time(ours, "second_s", args, cap),
                   "ours_mem": _cell_mem(ours),
                   "peer": PEER[s] if not args.no_peer else None,
                   "peer_first": _cell_time(peer, "first_s", args, cap) if peer else "-",
                   "peer_second": _cell_time(peer, "second_s", args, cap) if peer else "-",
                   "peer_mem": _cell_mem(peer),
                   "speedup": speedup, "notes": extra or None}
            rows.append(row)
            print(f"  {s:<10} ours: 1st {row['ours_first']:>8}, 2nd {row['ours_second']:>7} (s), {row['ours_mem']:>6} MB"
                  f" | skactiveml: 1st {row['peer_first']:>8} (s), {row['peer_mem']:>6} MB | {speedup or ''} {extra}",
                  flush=True)

    cols = [("n", "N"), ("strategy", "strategy"), ("ours_first", "ours 1st call (s)"),
            ("ours_second", "ours 2nd call (s)"), ("ours_mem", "ours peak RSS Δ (MB)")]
    if not args.no_peer:
        cols += [("peer", "scikit-activeml"), ("peer_first", "peer 1st call (s)"),
                 ("peer_second", "peer 2nd call (s)"), ("peer_mem", "peer peak RSS Δ (MB)"),
                 ("speedup", "speed-up (1st call)")]
    cols.append(("notes", "notes"))
    settings = (f"B = {args.batch}; synthetic Gaussian-mixture embeddings (D = {args.dim}, C = {args.classes}, "
                f"rows L2-normalised, seed {args.seed}); {args.per_class} random oracle labels per class before "
                f"selecting; one fresh subprocess per (tool, strategy, N); 1st call includes geometry and model "
                f"training, 2nd call repeats it in the same process; memory = peak RSS growth over the loaded data; "
                f"timeout {args.timeout:.0f} s, memory cap {cap / 2**30:.1f} GB; device {args.device}; "
                f"threads {args.threads or 'library default'}"
                + ("; QUICK smoke run" if args.quick else ""))
    notes = ["scikit-activeml models: sklearn LogisticRegression(max_iter=1000) wrapped in SklearnClassifier; "
             "ours: alwidget's LinearProbe trained inside select().",
             "scikit-activeml's ProbCover computes the full N×N distance matrix; its delta comes from a grid "
             "(0.2, 0.4, ..., 2.0), ours is the exact 0.95-purity quantile."]
    skipped = [r for r in records if r.get("status") == "skipped"]
    for r in skipped:
        notes.append(f"N = {r['n']}, scikit-activeml {r['strategy']}: {r['error']}")
    path = C.write_results(args.out, title="Selection time and peak memory (B = %d)" % args.batch,
                           settings=settings, info=info,
                           tables=[("", C.markdown_table(rows, cols))], records=records, notes=notes)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
