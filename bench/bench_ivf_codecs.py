"""Benchmark: IVF codecs for AnchorAL's neighbour search (alwidget.ann.IVFIndex), same run.

AnchorAL's search (``anchoral._search``) asks the IVF index (sqrt(N) cells, nprobe 16, inner
product on unit rows) for ``k * oversample`` candidates of each query row, re-scores them from
the pool's float32 rows and keeps the best k = N_NEIGHBORS + margin (114). Every arm here runs
that very function on a Geometry of the pool, with its own index installed:

- ``fp16``: ``ann.IVFIndex(codec="fp16")``, one candidate per result (main's search);
- ``pq4 xF``: ``ann.IVFIndex(codec="pq4")`` (4-bit product codes of 2-d sub-vectors, faiss fast
  scan) with F candidates per result;
- for the record, plain faiss indexes that are no ``ann`` codec: ``sq8`` (an 8-bit scalar
  quantiser per dimension, ``QT_8bit``) and ``pq64x8`` (IVF-PQ, 64 sub-quantisers of 8 bits, by
  residual; only where 64 divides D), both with F candidates.

Pools (unit rows): the synthetic 1M-row pool of ``_common.make_features`` (D = 512), Fashion-MNIST
pixels (60k + 10k images, 784-d), the EfficientNet-Lite0 features of the 10k Fashion-MNIST subset
of ``efficiency_data`` (1280-d). Reported per pool and arm: recall@50 (N_NEIGHBORS) and @114 of
the re-ranked lists of ``--queries`` random pool rows against the exact search, ms per 10 query
rows searched in one call (a round's new anchors) and one row per call (``prefetch``), medians
over ``--trials`` draws of 10 rows, the build time (train + add, what the first AnchorAL call pays)
and the codes' bytes. Checked on every draw: each row's list is the same searched alone or with
the other nine. One thread (as bench_anchoral).

    .venv/bin/python bench/bench_ivf_codecs.py
    .venv/bin/python bench/bench_ivf_codecs.py --pools effnet,pixels --trials 5
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import _common as C

K = 114  # anchoral.N_NEIGHBORS + anchoral._MARGIN: the list length a round searches


def load_pool(name: str) -> np.ndarray:
    from alwidget.geometry import normalize

    if name == "synthetic":
        xp, _ = C.cached_features(1_000_000, 512, 10, seed=0)
        return np.load(xp)
    if name == "pixels":
        from alwidget.datasets import fashion_mnist

        ims = [fashion_mnist(s, download=False).images for s in ("train", "test")]
        return normalize(np.concatenate([i.reshape(len(i), -1) for i in ims]).astype(np.float32))
    import efficiency_data as ED

    return normalize(ED.load("fmnist")[0])


class _Faiss:
    """A plain faiss IVF index (no ann codec) with the interface anchoral._search reads."""

    def __init__(self, X, kind: str, oversample: int):
        import faiss

        n, d = X.shape
        self.nlist, self.oversample = int(np.sqrt(n)), oversample
        q = faiss.IndexFlatIP(d)
        mt = faiss.METRIC_INNER_PRODUCT
        if kind == "sq8":
            self.index = faiss.IndexIVFScalarQuantizer(q, d, self.nlist, faiss.ScalarQuantizer.QT_8bit, mt)
        else:
            self.index = faiss.IndexIVFPQ(q, d, self.nlist, 64, 8, mt)
        self.index.cp.seed = 0
        self.index.cp.min_points_per_centroid = 1
        m = min(n, 40 * self.nlist)
        self.index.train(X[np.sort(np.random.default_rng([0, 31]).choice(n, m, replace=False))])
        self.index.add(X)
        self._q = q

    def search(self, Q, k, nprobe=16):
        self.index.nprobe = nprobe
        return self.index.search(np.ascontiguousarray(Q, np.float32), int(k))


def build(X, arm: str):
    """(index, build seconds, code bytes) for an arm name like "fp16", "pq4 x4", "sq8 x2"."""
    from alwidget import ann

    codec, _, f = arm.partition(" x")
    t = time.perf_counter()
    if codec in ann.CODECS:
        index = ann.IVFIndex(X, metric="inner", nlist=int(np.sqrt(len(X))), seed=0, codec=codec)
        if f:
            index.oversample = int(f)
    else:
        index = _Faiss(X, codec, int(f or 1))
    return index, time.perf_counter() - t, int(index.index.code_size) * len(X)


def _recall(got, exact, k):
    return float(np.mean([np.intersect1d(g[:k], e[:k]).size / k for g, e in zip(got, exact)]))


def run_pool(name: str, arms, args) -> list[dict]:
    from alwidget import anchoral
    from alwidget.geometry import Geometry, knn_query

    X = load_pool(name)
    n = len(X)
    rng = np.random.default_rng(1)
    qrows = np.sort(rng.choice(n, args.queries, replace=False))
    t = time.perf_counter()
    exact = np.concatenate([knn_query(X, X[qrows[a:a + 256]], K, metric="inner")[1] for a in range(0, qrows.size, 256)])
    print(f"{name}: N={n:,} D={X.shape[1]}, exact lists of {qrows.size} rows in {time.perf_counter() - t:.1f} s", flush=True)
    anchoral.IVF_MIN = 0  # the IVF path on every pool
    geo = Geometry.of(X)
    X = geo.X  # its unit rows (a copy): the original goes
    draws = [np.sort(np.random.default_rng([7, i]).choice(n, 10, replace=False)) for i in range(args.trials)]
    out = []
    built = {}
    for arm in arms:
        codec = arm.partition(" x")[0]
        if codec == "pq64x8" and X.shape[1] % 64:
            continue
        if codec not in built:  # one build per codec; the arms differ in candidates only
            built.clear()
            built[codec] = build(X, arm)
        index, secs, nbytes = built[codec]
        index.oversample = int(arm.partition(" x")[2] or 1)
        geo.scratch("anchoral_ivf")["index"] = index
        got = np.concatenate([anchoral._search(geo, qrows[a:a + 16], K)[1] for a in range(0, qrows.size, 16)])
        block, alone, same = [], [], True
        for rows in draws:
            t0 = time.perf_counter()
            together = anchoral._search(geo, rows, K)[1]
            block.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            single = np.concatenate([anchoral._search(geo, rows[i:i + 1], K)[1] for i in range(rows.size)])
            alone.append(time.perf_counter() - t0)
            same &= bool(np.array_equal(together, single))
        ms = lambda v: 1e3 * float(np.median(v))  # noqa: E731
        out.append({"pool": name, "n": n, "d": X.shape[1], "arm": arm, "recall50": _recall(got, exact, 50),
                    "recall114": _recall(got, exact, K), "block_ms": ms(block), "alone_ms": ms(alone),
                    "same_alone": same, "build_s": secs, "code_mb": nbytes / 2**20})
        r = out[-1]
        print(f"  {arm:10s} recall@50 {r['recall50']:.3f} @114 {r['recall114']:.3f} | 10 rows: {r['block_ms']:6.1f} ms "
              f"in one call, {r['alone_ms']:6.1f} ms one by one | same alone {same} | build {secs:.1f} s, "
              f"codes {r['code_mb']:.0f} MB", flush=True)
    Geometry.clear_cache()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pools", type=C.parse_names, default=["effnet", "pixels", "synthetic"])
    p.add_argument("--arms", type=lambda s: [a.strip() for a in s.split(",") if a.strip()],
                   default=["fp16", "pq4 x2", "pq4 x4", "pq4 x6", "pq4 x8", "sq8 x1", "pq64x8 x8"])
    p.add_argument("--queries", type=int, default=320, help="rows whose lists are checked against exact")
    p.add_argument("--trials", type=int, default=15, help="draws of 10 rows timed per arm")
    p.add_argument("--out", default="bench_ivf_codecs")
    args = p.parse_args(argv)
    from alwidget._util import limit_threads

    info = C.machine_info()
    print(C.machine_line(info), flush=True)
    rows = []
    with limit_threads(1):
        for pool in args.pools:
            rows += run_pool(pool, args.arms, args)
    cols = [("pool", "pool"), ("n", "N"), ("d", "D"), ("arm", "codec, candidates per result"),
            ("recall50", "recall@50"), ("recall114", "recall@114"), ("block_ms", "10 rows, one call, ms"),
            ("alone_ms", "10 rows one by one, ms"), ("same_alone", "same lists alone"),
            ("build_s", "build, s"), ("code_mb", "codes, MB")]
    for r in rows:
        r["recall50"], r["recall114"] = f"{r['recall50']:.3f}", f"{r['recall114']:.3f}"
    path = C.write_results(
        args.out, title="IVF codecs for AnchorAL's neighbour search",
        settings=f"pools {args.pools}; sqrt(N) cells, nprobe 16, lists of {K} re-ranked exactly from "
                 f"float32 rows (anchoral._search); recall of {args.queries} rows against exact; "
                 f"medians over {args.trials} draws of 10 rows; one thread",
        info=info, records=rows, tables=[("Recall against exact, search time, build", C.markdown_table(rows, cols))])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
