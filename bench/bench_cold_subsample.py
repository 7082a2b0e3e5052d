"""Benchmark: the density cold start on a fixed subsample vs on the whole pool (label efficiency).

On pools of ``strategies._subsample.SUBSAMPLE_MIN`` rows or more, TypiClust and auto's neighbour
ratio run on a seeded random subsample. This runs the first rounds (batches of 10, labels from the
ground truth) with the whole pool and with subsamples, same seeds (``seed`` and ``geometry_seed``
per run, as simulations do), and scores LogisticRegression(C=100) on the picks at 10 / 20 / 50
labels on a held-out test set, with the classes found; paired differences (subsample - whole pool)
with standard errors over the seeds.

    .venv/bin/python bench/bench_cold_subsample.py --data synthetic --n 200000 --sizes 100000,20000
    .venv/bin/python bench/bench_cold_subsample.py --data fmnist-pixels --sizes 10000
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import _common as C

BUDGETS = (10, 20, 50)


def load(name: str, n: int):
    """(X_pool, y_pool, X_test, y_test)."""
    if name == "synthetic":
        X, y = C.make_features(n + 10_000, 512, 10, seed=0)
        return X[:n], y[:n], X[n:], y[n:]
    from bench_anchoral import long_tail_pool

    Xp, yp, Xt, yt = long_tail_pool(0, features="pixels")  # class 0 cut to 1 %
    if name == "fmnist-lt-pixels":
        return Xp, yp, Xt, yt
    from alwidget.datasets import fashion_mnist
    from alwidget.geometry import normalize

    tr = fashion_mnist("train", download=False)
    return normalize(tr.images.reshape(len(tr.images), -1).astype(np.float32)), np.asarray(tr.labels), Xt, yt


def run(X, y, Xt, yt, strategy: str, size, seed: int, lr) -> dict:
    """One labelling run to max(BUDGETS); size None = the whole pool."""
    from alwidget import strategies
    from alwidget.strategies import _subsample

    _subsample.SUBSAMPLE_MIN = 10 ** 12 if size is None else 1
    _subsample.SUBSAMPLE_SIZE = 100_000 if size is None else int(size)
    labels = np.full(len(y), -1)
    out, t_sel, chosen = {}, [], set()
    while (labels >= 0).sum() < max(BUDGETS):
        t = time.perf_counter()
        kw = {} if strategy == "typiclust" else {"n_classes": 10}
        idx, info = strategies.select(strategy, X, labels, 10, seed=seed, geometry_seed=seed, return_info=True, **kw)
        t_sel.append(time.perf_counter() - t)
        chosen.add(info["strategy"])
        labels[idx] = y[idx]
        L = int((labels >= 0).sum())
        if L in BUDGETS:
            out[L] = (lr.accuracy(X, labels, Xt, yt), int(np.unique(labels[labels >= 0]).size))
    return {"acc": out, "select_s": t_sel, "ran": "+".join(sorted(chosen))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=["synthetic", "fmnist-pixels", "fmnist-lt-pixels"], default="synthetic")
    p.add_argument("--n", type=int, default=200_000, help="synthetic pool rows")
    p.add_argument("--sizes", default="100000,20000", help="subsample sizes to compare with the whole pool")
    p.add_argument("--strategies", default="typiclust,auto")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--out", default="bench_cold_subsample")
    args = p.parse_args(argv)
    from bench_efficiency import SharedLR

    info = C.machine_info("cpu")
    print(C.machine_line(info), flush=True)
    X, y, Xt, yt = load(args.data, args.n)
    lr = SharedLR(X)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    records, rows = [], []
    for strategy in args.strategies.split(","):
        res = {}
        for size in [None, *sizes]:
            res[size] = [run(X, y, Xt, yt, strategy, size, s, lr) for s in range(args.seeds)]
            r = res[size]
            print(f"{strategy} {'whole' if size is None else size}: ran {r[0]['ran']}; " + ", ".join(
                f"{b}: {100 * np.mean([x['acc'][b][0] for x in r]):.1f}% / {np.mean([x['acc'][b][1] for x in r]):.1f} cl"
                for b in BUDGETS) + f"; select median {np.median([t for x in r for t in x['select_s']]):.2f} s", flush=True)
        for size in sizes:
            row = {"strategy": strategy, "subsample": f"{size:,} of {len(y):,}",
                   "ran": res[size][0]["ran"] + (" / " + res[None][0]["ran"] if res[size][0]["ran"] != res[None][0]["ran"] else "")}
            for b in BUDGETS:
                whole = np.array([x["acc"][b][0] for x in res[None]]) * 100
                sub = np.array([x["acc"][b][0] for x in res[size]]) * 100
                d = sub - whole
                cw = np.array([x["acc"][b][1] for x in res[None]])
                cs = np.array([x["acc"][b][1] for x in res[size]])
                row[f"acc{b}"] = f"{whole.mean():.1f} → {sub.mean():.1f} ({d.mean():+.1f} ± {d.std(ddof=1) / np.sqrt(d.size):.1f})"
                row[f"cl{b}"] = f"{cw.mean():.1f} → {cs.mean():.1f}"
            row["t"] = (f"{np.median([t for x in res[None] for t in x['select_s']]):.2f} → "
                        f"{np.median([t for x in res[size] for t in x['select_s']]):.2f}")
            rows.append(row)
            records.append({"strategy": strategy, "size": size, "whole": res[None], "sub": res[size]})
    cols = [("strategy", "strategy"), ("subsample", "subsample"), ("ran", "ran")]
    for b in BUDGETS:
        cols += [(f"acc{b}", f"acc @{b}: whole → sub (paired diff ± SE)"), (f"cl{b}", f"classes @{b}")]
    cols.append(("t", "select median (s): whole → sub"))
    path = C.write_results(args.out, title="The cold start on a subsample vs the whole pool", info=info,
                           records=records, settings=f"{args.data}, pool {len(y):,}, test {len(yt):,}, B = 10, "
                           f"{args.seeds} seeds (seed = geometry_seed = 0..{args.seeds - 1}), auto with n_classes=10",
                           tables=[("", C.markdown_table(rows, cols))], notes=[])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
