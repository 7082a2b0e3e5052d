"""TypiClust: where ours and scikit-activeml's differ (k-means, typicality k), at 10/20/50 labels.

Same protocol as ``bench_efficiency.py`` (70/30 split, zero labels, batches of 10,
LogisticRegression(C=100) on the picks, 5 seeds). Variants of ours: the default (faiss k-means,
20 iterations on at most 256 points per centroid; typicality over k = 20 neighbours, the paper's
value), typicality k = 5 (scikit-activeml's default), scikit-learn's KMeans in place of ours
(swapped into the geometry cache for the run), and both, which is scikit-activeml's recipe; and
scikit-activeml's TypiClust itself. From zero labels the cluster order is the same in both tools
(the largest clusters first), so it only matters from the second round on.

Also: the reference code's fixed outlier floor of 5 points (before the floor was capped at a
quarter of the mean cluster size N / K), and the k-means++ start (our torch backend: k-means++
seeding, then the same 20 Lloyd iterations), also only where the clusters are crowded (N / K < 20, the
later rounds on small pools). The second table gives, per variant and budget, the
mean ± sd over seeds of the paired difference to scikit-activeml (points; seed s of each side).

    python bench/bench_typiclust.py            # digits, fmnist, mnist, fmnist-lt
    python bench/bench_typiclust.py --quick    # digits, 2 seeds
    python bench/bench_typiclust.py --dataset digits --seeds 30 --budgets 10,20,50,100,200
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import _common as C
import bench_efficiency as E
import efficiency_data as ED


def ours_picker(seed, **params):
    from alwidget import strategies

    return lambda X, labels, k: strategies.select("typiclust", X, labels, k, seed=seed, geometry_seed=seed, **params)


def with_sklearn_kmeans():
    """Replace Geometry.kmeans by scikit-learn's KMeans (seeded); returns the function to undo it."""
    from sklearn.cluster import KMeans

    from alwidget.geometry import Geometry

    original = Geometry.kmeans

    def sk_kmeans(self, n_clusters, seed=0, dims=None):
        key = (*self._km_key(n_clusters, seed, dims), "sklearn")
        if key not in self._kmeans:
            km = KMeans(key[0], random_state=int(seed)).fit(self.X if len(key) == 3 else self.reduced(key[2]))
            self._kmeans[key] = (km.labels_.astype(np.int64), km.cluster_centers_.astype(np.float32))
        return self._kmeans[key]

    Geometry.kmeans = sk_kmeans
    Geometry.clear_cache()

    def undo():
        Geometry.kmeans = original
        Geometry.clear_cache()

    return undo


def with_pp_when_crowded(ratio=20):
    """k-means++ (the torch backend) where N / K < ratio, faiss's random start elsewhere; returns undo."""
    from alwidget import geometry as G

    original = G.Geometry.kmeans

    def km(self, n_clusters, seed=0, dims=None):
        key = (*self._km_key(n_clusters, seed, dims), "pp")
        if self.X.shape[0] >= ratio * key[0]:
            return original(self, n_clusters, seed, dims)
        if key not in self._kmeans:
            X = self.X if len(key) == 3 else self.reduced(key[2])
            self._kmeans[key] = G.kmeans(X, key[0], seed=key[1], backend="torch")
        return self._kmeans[key]

    G.Geometry.kmeans = km
    G.Geometry.clear_cache()

    def undo():
        G.Geometry.kmeans = original
        G.Geometry.clear_cache()

    return undo


def with_fixed_floor():
    """TypiClust's outlier floor as in the reference code (always min_cluster_size); returns undo."""
    from alwidget.strategies import typiclust

    share = typiclust.OUTLIER_SHARE
    typiclust.OUTLIER_SHARE = float("inf")

    def undo():
        typiclust.OUTLIER_SHARE = share

    return undo


VARIANTS = {  # name -> (select parameters or None for scikit-activeml, patch)
    "ours (faiss k-means, k = 20)": ({}, None),
    "ours, fixed outlier floor 5 (before)": ({}, with_fixed_floor),
    "ours, k-means++ start (torch backend)": ({"backend": "torch"}, None),
    "ours, ladder off (K = L + B)": ({"ladder": False}, None),
    "ours, k-means++, ladder off": ({"backend": "torch", "ladder": False}, None),
    "ours, typicality k = 5": ({"n_neighbors": 5}, None),
    "ours, k-means++ where N / K < 20": ({}, with_pp_when_crowded),
    "ours with sklearn KMeans": ({}, with_sklearn_kmeans),
    "ours with sklearn KMeans, k = 5": ({"n_neighbors": 5}, with_sklearn_kmeans),
    "scikit-activeml TypiClust": (None, None),
}
PEER = "scikit-activeml TypiClust"


def paired_rows(ds, accs, budgets):
    """Rows of mean ± sd (and standard error) of each variant minus scikit-activeml, seed by seed, in points."""
    peer = np.asarray(accs[PEER]) * 100
    rows = []
    for name, acc in accs.items():
        if name == PEER:
            continue
        d = np.asarray(acc) * 100 - peer
        sd = d.std(0, ddof=1) if len(d) > 1 else np.zeros(d.shape[1])
        rows.append({"set": ds, "variant": name, **{str(b): f"{m:+.1f} ± {v:.1f} ({v / np.sqrt(len(d)):.1f})"
                                                    for b, m, v in zip(budgets, d.mean(0), sd)}})
    return rows


def curve(pick, data, budgets):
    X, Xt, y, yt, lr = data
    labels = np.full(len(y), -1, np.int64)
    out = []
    for steps, b in E.schedule(budgets, 10):
        for k in steps:
            idx = np.asarray(pick(X, labels, k), np.int64)
            labels[idx] = y[idx]
        out.append(lr.accuracy(X, labels, Xt, yt))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--dataset", type=C.parse_names, default=["digits", "fmnist", "mnist", "fmnist-lt"])
    ap.add_argument("--budgets", type=C.parse_ints, default=[10, 20, 50])
    ap.add_argument("--variants", type=lambda t: [v for v in VARIANTS if any(w in v for w in t.split(","))],
                    default=list(VARIANTS), help="comma-separated substrings of the variant names")
    ap.add_argument("--out", default="bench_typiclust")
    args = ap.parse_args(argv)
    if args.quick:
        args.dataset, args.seeds = ["digits"], 2
    variants = [v for v in args.variants if v != PEER] + [PEER]  # the peer always: the paired table needs it
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    info = C.machine_info()
    print(C.machine_line(info), flush=True)
    t0 = time.perf_counter()
    rows, diffs, records = [], [], []
    for ds in args.dataset:
        X, Xt, y, yt = E.split(*ED.load(ds))
        data = (X, Xt, y, yt, E.SharedLR(X))
        accs = {}
        for name in variants:
            params, patch = VARIANTS[name]
            undo = patch() if patch else (lambda: None)
            try:
                accs[name] = [curve(E.peer_query("typiclust", s, int(y.max()) + 1, data[4]) if params is None
                                    else ours_picker(s, **params), data, args.budgets) for s in seeds]
            finally:
                undo()
            m = np.mean(accs[name], 0)
            rows.append({"set": ds, "variant": name, **{str(b): f"{v:.3f}" for b, v in zip(args.budgets, m)}})
            records += [{"set": ds, "variant": name, "seed": s, "n_labels": b, "lr": a}
                        for s, acc in zip(seeds, accs[name]) for b, a in zip(args.budgets, acc)]
            print(f"{ds:<10} {name:<40}" + " ".join(f"{v:.3f}" for v in m), flush=True)
        diffs += paired_rows(ds, accs, args.budgets)
    cols = [("set", "set"), ("variant", "variant")] + [(str(b), f"{b} labels") for b in args.budgets]
    table, paired = C.markdown_table(rows, cols), C.markdown_table(diffs, cols)
    settings = (f"sets {','.join(args.dataset)}; budgets {args.budgets}; seeds {list(seeds)}; LR(C=100) on the picks; "
                f"total {time.perf_counter() - t0:.0f} s" + ("; QUICK" if args.quick else ""))
    C.write_results(args.out, title="TypiClust: ours vs scikit-activeml, factor by factor", settings=settings,
                    info=info, tables=[("Test accuracy, mean over seeds", table),
                                       ("Minus scikit-activeml, points: mean ± sd over seeds (standard error)", paired)],
                    records=records)
    print(table + "\n\n" + paired)
    return 0


if __name__ == "__main__":
    sys.exit(main())
