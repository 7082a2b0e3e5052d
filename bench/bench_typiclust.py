"""TypiClust: where ours and scikit-activeml's differ (k-means, typicality k), at 10/20/50 labels.

Same protocol as ``bench_efficiency.py`` (70/30 split, zero labels, batches of 10,
LogisticRegression(C=100) on the picks, 5 seeds). Variants of ours: the default (faiss k-means,
20 iterations on at most 256 points per centroid; typicality over k = 20 neighbours, the paper's
value), typicality k = 5 (scikit-activeml's default), scikit-learn's KMeans in place of ours
(swapped into the geometry cache for the run), and both, which is scikit-activeml's recipe; and
scikit-activeml's TypiClust itself. From zero labels the cluster order is the same in both tools
(the largest clusters first), so it only matters from the second round on.

    python bench/bench_typiclust.py            # digits, fmnist, mnist, fmnist-lt
    python bench/bench_typiclust.py --quick    # digits, 2 seeds
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
    ap.add_argument("--dataset", type=C.parse_names, default=["digits", "fmnist", "mnist", "fmnist-lt"])
    ap.add_argument("--budgets", type=C.parse_ints, default=[10, 20, 50])
    ap.add_argument("--out", default="bench_typiclust")
    args = ap.parse_args(argv)
    if args.quick:
        args.dataset, args.seeds = ["digits"], 2
    info = C.machine_info()
    print(C.machine_line(info), flush=True)
    t0 = time.perf_counter()
    variants = [("ours (faiss k-means, k = 20)", {}, False), ("ours, typicality k = 5", {"n_neighbors": 5}, False),
                ("ours with sklearn KMeans", {}, True), ("ours with sklearn KMeans, k = 5", {"n_neighbors": 5}, True)]
    rows, records = [], []
    for ds in args.dataset:
        X, Xt, y, yt = E.split(*ED.load(ds))
        data = (X, Xt, y, yt, E.SharedLR(X))
        for name, params, sk in variants + [("scikit-activeml TypiClust", None, False)]:
            undo = with_sklearn_kmeans() if sk else (lambda: None)
            try:
                accs = [curve(E.peer_query("typiclust", s, int(y.max()) + 1, data[4]) if params is None
                              else ours_picker(s, **params), data, args.budgets) for s in range(args.seeds)]
            finally:
                undo()
            m = np.mean(accs, 0)
            rows.append({"set": ds, "variant": name, **{str(b): f"{v:.3f}" for b, v in zip(args.budgets, m)}})
            records += [{"set": ds, "variant": name, "seed": s, "n_labels": b, "lr": a}
                        for s, acc in enumerate(accs) for b, a in zip(args.budgets, acc)]
            print(f"{ds:<10} {name:<34}" + " ".join(f"{v:.3f}" for v in m), flush=True)
    table = C.markdown_table(rows, [("set", "set"), ("variant", "variant")] + [(str(b), f"{b} labels")
                                                                              for b in args.budgets])
    settings = (f"sets {','.join(args.dataset)}; budgets {args.budgets}; seeds {args.seeds}; LR(C=100) on the picks; "
                f"total {time.perf_counter() - t0:.0f} s" + ("; QUICK" if args.quick else ""))
    C.write_results(args.out, title="TypiClust: ours vs scikit-activeml, factor by factor", settings=settings,
                    info=info, tables=[("Test accuracy, mean over seeds", table)], records=records)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
