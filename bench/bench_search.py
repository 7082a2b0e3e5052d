"""Benchmark: find what you need (issue 11) -- search latency and label efficiency with a text prior.

Part 1, search latency. One query at a time over N unit rows (D = 512, `_common.make_features`,
generated in chunks), k = 100, on ``--threads`` CPU threads (2: the whole box):

- ours, example: ``alwidget.search.more_like_this(X, row, k)`` (the pool is searched in place:
  no copy when the rows already have unit norm; one matrix-vector product + top-k in torch);
- ours, text: ``alwidget.search.search_text`` with the text tower of ``--text-encoder``
  (ViT-B-32 with random weights: the real text tower's cost; no weights can be fetched here),
  a new prompt every query, so every query pays one text encoding;
- numpy brute force: ``s = X @ q; top = argpartition(-s, k)[:k]`` sorted -- what a user writes;
- faiss ``IndexFlatIP`` (exact): index build once, then one search per query.
The first call of ours (validation and the unit-norm check, once per feature set) is reported
apart. Every query's top-k from ours is checked against the numpy result.

Part 2, label efficiency with a synthetic text prior (no CLIP weights here): Fashion-MNIST
embedded with the demo encoder (EfficientNet-Lite0 @ 96 px); pool = ``--pool-per-class`` train
images per class, accuracy on ``--test-per-class`` held-out test images per class; the prior
t_c = the normalised mean embedding of class c over ``--means-per-class`` other test images
plus Gaussian noise (``--noise``; about 60 % zero-shot accuracy). From zero labels, batches of
10 chosen by each strategy, for each arm:
  plain (LinearProbe, the strategy as is) | + prior (AnchoredProbe + PCB balancing, exactly what a
  Session with ``text_prior=`` runs) | + random prior (the same with a random T: robustness).

    .venv/bin/python bench/bench_search.py                       # both parts, N = 100k and 1M
    .venv/bin/python bench/bench_search.py --part latency --n 100000
    .venv/bin/python bench/bench_search.py --quick
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import _common as C


# --------------------------------------------------------------------------- part 1: latency

def numpy_top(X, q, k):
    s = X @ q
    top = np.argpartition(-s, k)[:k]
    return top[np.argsort(-s[top], kind="stable")]


def latency_one(n, d, k, n_queries, text_spec, faiss_ok, threads):
    """Rows of the latency table for one N: the tools take turns on each query (same process),
    so a slow moment of the shared machine hits them alike."""
    from alwidget import search

    X = np.load(C.cached_features(n, d)[0])
    rng = np.random.default_rng(1)
    rows = rng.choice(n, n_queries + 1, replace=False)
    t0 = time.perf_counter()
    search.more_like_this(X, int(rows[-1]), k, n_threads=threads)  # first call: checks and caches the pool
    rec = {"n": n, "d": d, "k": k, "queries": n_queries, "first_call_ms": 1e3 * (time.perf_counter() - t0)}
    tower = search.text_tower(text_spec)
    for i in range(3):
        search.search_text(X, f"warm-up prompt {i} {threads}", tower, k=k, n_threads=threads)
    index = None
    if faiss_ok:
        import faiss

        t0 = time.perf_counter()
        index = faiss.IndexFlatIP(d)
        index.add(X)
        rec["faiss_build_ms"] = 1e3 * (time.perf_counter() - t0)
        index.search(X[:1], k + 1)
    times = {key: [] for key in ("ours_example", "numpy", "text_encode", "ours_text", "faiss")}
    same = True

    def clock(key, fn):
        t0 = time.perf_counter()
        out = fn()
        times[key].append(time.perf_counter() - t0)
        return out

    for i, r in enumerate(rows[:n_queries]):
        # alternate who goes first: at 100k the pool fits the 480 MB L3, which the first one warms
        if i % 2:
            ref = clock("numpy", lambda: numpy_top(X, X[r], k + 1))
        ours = clock("ours_example", lambda: search.more_like_this(X, int(r), k, n_threads=threads).indices)
        if not i % 2:
            ref = clock("numpy", lambda: numpy_top(X, X[r], k + 1))
        same &= bool(np.array_equal(ours, ref[ref != r][:k]))
        prompt = f"a photo of item number {i} among {n} ({threads})"  # new: every query encodes its text
        t0 = time.perf_counter()
        tower([prompt])
        times["text_encode"].append(time.perf_counter() - t0)
        search.search_text(X, prompt, tower, k=k, n_threads=threads)
        times["ours_text"].append(time.perf_counter() - t0)
        if index is not None:
            clock("faiss", lambda: index.search(X[r:r + 1], k + 1))
    rec.update({key: C.percentiles(v) for key, v in times.items() if v})
    rec["same_results"] = same
    return rec


def run_latency(args, info):
    """One record per (N, thread count): ours, numpy and faiss all on that many CPU threads."""
    import psutil
    import torch
    from threadpoolctl import threadpool_limits

    try:
        import faiss
    except ImportError:
        faiss = None
    records, notes = [], []
    for n in args.n:
        need = n * args.d * 4
        free = psutil.virtual_memory().available
        if free < 1.5 * need:
            notes.append(f"N = {n:,} skipped: {free / 2**30:.1f} GB free, the features take {need / 2**30:.1f} GB")
            print(notes[-1])
            continue
        faiss_ok = faiss is not None and free > 2.6 * need  # its index is a second copy of the pool
        if faiss is not None and not faiss_ok:
            notes.append(f"N = {n:,}: faiss skipped, {free / 2**30:.1f} GB free is too little for its copy")
        for t in args.threads:
            torch.set_num_threads(t)
            if faiss is not None:
                faiss.omp_set_num_threads(t)
            with threadpool_limits(t):
                rec = latency_one(n, args.d, args.k, args.queries, args.text_encoder, faiss_ok, t)
            rec["threads"] = t
            records.append(rec)
            print(rec)
    return records, notes


def run_graph(args):
    """Near-duplicates and outliers at N = --graph-n: the first call builds the exact kNN graph."""
    from alwidget import search
    from alwidget.geometry import Geometry

    out = []
    for n in args.graph_n:
        X = np.load(C.cached_features(n, args.d)[0])
        Geometry.clear_cache()
        t0 = time.perf_counter()
        dup = search.near_duplicates(X, 0.95)
        t1 = time.perf_counter()
        search.outliers(X, 100)
        t2 = time.perf_counter()
        out.append({"n": n, "duplicates_first_s": t1 - t0, "outliers_after_s": t2 - t1, "groups": len(dup.groups)})
        print(out[-1])
    return out


def latency_table(records):
    def cell(r, key):
        v = r.get(key)
        return "-" if v is None else f"{v['p50']:.0f} / {v['p95']:.0f}"

    rows = [{"n": f"{r['n']:,}", "t": r["threads"], "ex": cell(r, "ours_example"), "txt": cell(r, "ours_text"),
             "enc": cell(r, "text_encode"), "np": cell(r, "numpy"), "fa": cell(r, "faiss"),
             "fb": C.fmt(r.get("faiss_build_ms"), 0), "first": C.fmt(r["first_call_ms"], 0),
             "same": "yes" if r["same_results"] else "NO"} for r in records]
    cols = [("n", "N"), ("t", "threads"), ("ex", "ours, example p50 / p95 ms"), ("txt", "ours, text p50 / p95 ms"),
            ("enc", "of which text encoding"), ("np", "numpy brute force"), ("fa", "faiss IndexFlatIP"),
            ("fb", "faiss build ms"), ("first", "ours first call ms"), ("same", "same top-k as numpy")]
    return C.markdown_table(rows, cols)


# --------------------------------------------------------------------------- part 2: label efficiency

def fm_data(args):
    """(X pool, y pool, X test, y test, class means M) from Fashion-MNIST, embedded and cached."""
    from alwidget import datasets, embed
    from alwidget.images import ImageSet

    def pick(labels, per, seed, avoid=None):
        rng = np.random.default_rng(seed)
        ok = np.ones(labels.size, bool) if avoid is None else ~np.isin(np.arange(labels.size), avoid)
        return np.sort(np.concatenate([rng.choice(np.flatnonzero((labels == c) & ok), per, replace=False)
                                       for c in range(10)]))

    tr, te = datasets.fashion_mnist("train", download=False), datasets.fashion_mnist("test", download=False)
    a = pick(tr.labels, args.pool_per_class, 0)
    m = pick(te.labels, args.means_per_class, 1)
    t = pick(te.labels, args.test_per_class, 2, avoid=m)
    cache = C.TMP_DIR / "embed-cache"

    def emb(images):
        return embed.embed_images(ImageSet.from_arrays(images), embed.DEMO_ENCODER, cache_dir=cache,
                                  progress=False).features

    X, Xm, Xt = emb(tr.images[a]), emb(te.images[m]), emb(te.images[t])
    M = np.stack([Xm[te.labels[m] == c].mean(0) for c in range(10)])
    M /= np.linalg.norm(M, axis=1, keepdims=True)
    return X, tr.labels[a].astype(np.int64), Xt, te.labels[t].astype(np.int64), M


def make_prior(M, seed, noise):
    rng = np.random.default_rng(seed)
    T = M + noise * rng.standard_normal(M.shape) / np.sqrt(M.shape[1]) if noise is not None \
        else rng.standard_normal(M.shape)
    return T / np.linalg.norm(T, axis=1, keepdims=True)


def curve(X, y, Xt, yt, strategy, T, budgets, seed, batch):
    """[(n_labels, test accuracy)] from zero labels; T None: the plain probe and strategy."""
    from alwidget import strategies
    from alwidget.prior import TextPrior
    from alwidget.probe import LinearProbe
    from alwidget.session import strategy_accepts

    names = [str(c) for c in range(10)]
    prior = None if T is None else TextPrior(names, T)
    probe = LinearProbe(device="cpu", seed=seed) if prior is None else prior.make_probe(lambda: names, device="cpu",
                                                                                         seed=seed)
    labels = np.full(y.size, -1, np.int64)
    out = []
    for b in budgets:
        while (labels >= 0).sum() < b:
            fitted = bool((labels >= 0).any())
            k = min(batch, b - int((labels >= 0).sum()))
            select = strategies.select if prior is None else prior.selector(
                strategies.select, labels, names, X, probe if fitted else None)
            kw = {"n_classes": 10} if strategy_accepts(strategy, "n_classes") else {}
            idx = select(strategy, X, labels, k, seed=seed * 1000 + int((labels >= 0).sum()), geometry_seed=seed,
                         probe=probe if fitted else None, **kw)
            labels[np.asarray(idx)] = y[np.asarray(idx)]
            probe.fit(X, labels, n_classes=10)
        if (labels >= 0).any():
            acc = float((probe.predict_proba(Xt).argmax(1) == yt).mean())
        else:
            from alwidget.prior import zero_shot_proba

            acc = float((zero_shot_proba(Xt, T).argmax(1) == yt).mean()) if T is not None else None
        out.append((b, acc))
    return out


def run_efficiency(args, info):
    from alwidget.prior import zero_shot_proba

    X, y, Xt, yt, M = fm_data(args)
    records = []
    zs = [float((zero_shot_proba(Xt, make_prior(M, s, args.noise)).argmax(1) == yt).mean())
          for s in range(args.seeds)]
    records.append({"strategy": "-", "arm": "zero-shot alone", "curve": [(b, float(np.mean(zs))) for b in args.budgets]})
    for strategy in args.strategies:
        for arm, noise in (("plain", "off"), ("+ prior", args.noise), ("+ random prior", None)):
            curves = [curve(X, y, Xt, yt, strategy, None if noise == "off" else make_prior(M, s, noise),
                            args.budgets, s, args.batch) for s in range(args.seeds)]
            acc = np.array([[a if a is not None else np.nan for _, a in c] for c in curves], float)
            records.append({"strategy": strategy, "arm": arm, "curve": [
                (b, None if np.isnan(acc[:, j]).all() else float(np.nanmean(acc[:, j])),
                 None if np.isnan(acc[:, j]).all() else float(np.nanstd(acc[:, j])))
                for j, b in enumerate(args.budgets)], "raw": acc.tolist()})
            print(strategy, arm, [(b, None if a is None else round(100 * a, 1)) for b, a, *_ in records[-1]["curve"]],
                  flush=True)
    return records, (X.shape, Xt.shape, float(np.mean(zs)))


def efficiency_table(records, budgets):
    rows = []
    for r in records:
        row = {"s": r["strategy"], "arm": r["arm"]}
        for b, a, *sd in r["curve"]:
            row[b] = "-" if a is None else (f"{100 * a:.1f} ± {100 * sd[0]:.1f}" if sd else f"{100 * a:.1f}")
        rows.append(row)
    cols = [("s", "strategy"), ("arm", "arm")] + [(b, f"{b} labels ({b // 10}/class)") for b in budgets]
    return C.markdown_table(rows, cols)


# --------------------------------------------------------------------------- main

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["both", "latency", "efficiency"], default="both")
    p.add_argument("--n", type=C.parse_ints, default=[100_000, 1_000_000])
    p.add_argument("--d", type=int, default=512)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--queries", type=int, default=20)
    p.add_argument("--threads", type=C.parse_ints, default=[1, 2], help="CPU thread counts to run (1,2)")
    p.add_argument("--text-encoder", default="openclip:ViT-B-32/random")
    p.add_argument("--graph-n", type=C.parse_ints, default=[20_000], help="N for duplicates/outliers ('' skips)")
    p.add_argument("--strategies", type=C.parse_names, default=["auto", "random"])
    p.add_argument("--budgets", type=C.parse_ints, default=[0, 10, 20, 30, 50])
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--noise", type=float, default=3.0)
    p.add_argument("--pool-per-class", type=int, default=300)
    p.add_argument("--test-per-class", type=int, default=200)
    p.add_argument("--means-per-class", type=int, default=100)
    p.add_argument("--quick", action="store_true", help="N = 100k, 5 queries, 2 seeds: a smoke run")
    p.add_argument("--out", default="bench_search")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.queries, args.seeds, args.graph_n = [100_000], 5, 2, [5_000]
    info = C.machine_info()
    print(C.machine_line(info))
    tables, records, notes = [], {}, []
    if args.part in ("both", "latency"):
        lat, lat_notes = run_latency(args, info)
        records["latency"], notes = lat, notes + lat_notes
        tables.append((f"Search latency, one query, k = {args.k}, D = {args.d}, p50 / p95 over {args.queries} queries",
                       latency_table(lat)))
    if args.part in ("both", "latency") and args.graph_n:
        graph = run_graph(args)
        records["graph"] = graph
        tables.append(("Near-duplicates (k = 10 kNN graph, exact) and outliers", C.markdown_table(
            [{"n": f"{g['n']:,}", "d": C.fmt(g["duplicates_first_s"], 1), "o": C.fmt(g["outliers_after_s"], 2)}
             for g in graph], [("n", "N"), ("d", "near_duplicates, first call s (builds the graph)"),
                               ("o", "outliers next, s (graph cached)")])))
    if args.part in ("both", "efficiency"):
        eff, (shape, shape_t, zs) = run_efficiency(args, info)
        records["efficiency"] = eff
        tables.append((f"Test accuracy % (mean ± std over {args.seeds} seeds), Fashion-MNIST, pool {shape[0]}, "
                       f"test {shape_t[0]}, batches of {args.batch}; synthetic prior noise {args.noise} "
                       f"(zero-shot {100 * zs:.1f} %)", efficiency_table(eff, args.budgets)))
    settings = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("out", "quick"))
    path = C.write_results(args.out, title="Find what you need: search latency and the text prior",
                           settings=settings, info=info, tables=tables, records=[records], notes=notes)
    for cap, t in tables:
        print(f"\n{cap}\n{t}")
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
