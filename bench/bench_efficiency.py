"""Benchmark 3: label efficiency, accuracy at 10/20/50/100/200 labels, ours vs scikit-activeml.

Each data set is split once (stratified, 70% pool / 30% held-out test, split seed 0); every
strategy starts from zero labels and is asked for batches of ``--batch`` points from the pool
(the oracle answers from the true labels) until each budget is reached; accuracy is measured
on the held-out test set at every budget, for several seeds. Three arms:

- ``ours``: ``alwidget.simulate`` -- our strategies and our probe (torch multinomial logistic
  regression on pool-standardised features with input dropout), the product as shipped;
- ``ours+sklearn-LR``: our strategies (``alwidget.strategies.select``, which trains our probe
  internally where a strategy needs a model), accuracy from the shared sklearn classifier below;
- ``skactiveml``: scikit-activeml's strategies of the same name on the same features; where a
  strategy needs a model it gets ``SklearnClassifier`` around the shared sklearn classifier;
  accuracy from the same classifier.

Shared sklearn classifier: features standardised with the pool's mean/std (as our probe does),
then ``LogisticRegression(C=1.0, max_iter=1000)``. Arms 2 and 3 therefore differ only in which
points were picked; arms 1 and 2 only in the classifier.

    .venv/bin/python bench/bench_efficiency.py                    # digits, 5 seeds
    .venv/bin/python bench/bench_efficiency.py --dataset digits,demo
    .venv/bin/python bench/bench_efficiency.py --quick            # digits, 2 seeds, budgets 10,20,50
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np

import _common as C

STRATEGIES = ["random", "typiclust", "probcover", "dropquery", "coreset", "margin"]
PEER_NAME = {"random": "RandomSampling", "typiclust": "TypiClust", "probcover": "ProbCover",
             "dropquery": "DropQuery", "coreset": "CoreSet", "margin": "UncertaintySampling(margin_sampling)"}


# --------------------------------------------------------------------------- data and classifier

def load_dataset(name: str):
    """(X, y) for a data set name: digits (L2-normalised pixels) or demo (Fashion-MNIST embeddings).

    digits is read from scikit-learn directly (L2 normalisation makes the pixel scale irrelevant,
    so this equals ``alwidget.cli.simulation_features("digits")``); other names go through the CLI's
    loader, which embeds and caches the shipped images.
    """
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        X = d.data.astype(np.float32)
        X /= np.linalg.norm(X, axis=1, keepdims=True) + 1e-12
        return X, d.target.astype(np.int64)
    from alwidget.cli import simulation_features

    X, y, _ = simulation_features(name)
    return np.ascontiguousarray(X, dtype=np.float32), np.asarray(y, dtype=np.int64)


def split(X, y, seed: int = 0):
    from sklearn.model_selection import train_test_split

    return train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)


def _standardise(Z, mu, sd):
    return (Z - mu) / sd


def make_classifier(X_pool):
    """Pool-standardised LogisticRegression: the one classifier both sklearn-side arms use."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    mu = X_pool.mean(axis=0)
    sd = X_pool.std(axis=0)
    sd[sd < 1e-6] = 1.0  # constant pixels of digits
    return make_pipeline(FunctionTransformer(_standardise, kw_args={"mu": mu, "sd": sd}),
                         LogisticRegression(C=1.0, max_iter=1000))


def accuracy(clf_proto, X_pool, labels, X_test, y_test, n_classes) -> float:
    """Fit a clone on the labelled pool rows; with one class only, predict it (no NaN, no crash)."""
    from sklearn.base import clone

    m = labels >= 0
    present = np.unique(labels[m])
    if len(present) == 0:
        return float(np.mean(y_test == 0))
    if len(present) == 1:
        return float(np.mean(y_test == present[0]))
    clf = clone(clf_proto).fit(X_pool[m], labels[m])
    return float(np.mean(clf.predict(X_test) == y_test))


def schedule(budgets, batch):
    """Batch sizes that reach each budget exactly: [(batch sizes...), budget], ..."""
    out, have = [], 0
    for b in budgets:
        steps = []
        while have < b:
            k = min(batch, b - have)
            steps.append(k)
            have += k
        out.append((steps, b))
    return out


# --------------------------------------------------------------------------- arms

def arm_ours_simulate(X, y, X_test, y_test, strategies, budgets, seeds, batch):
    from alwidget.simulate import simulate

    df = simulate(X, y, strategy=list(strategies), budgets=list(budgets), seed=list(seeds),
                  X_test=X_test, y_test=y_test, batch_size=batch)
    return [{"arm": "ours", "strategy": r.strategy, "seed": int(r.seed), "n_labels": int(r.n_labels),
             "accuracy": float(r.accuracy)} for r in df.itertuples()]


def arm_loop(X, y, X_test, y_test, strategy, budgets, seed, batch, clf_proto, n_classes, *, peer: bool):
    """One learning curve: select batches with ours or the peer, score with the shared classifier."""
    labels = np.full(len(y), -1, dtype=np.int64)
    pick = _peer_picker(strategy, seed, n_classes, clf_proto) if peer else _ours_picker(strategy, seed)
    out = []
    for steps, b in schedule(budgets, batch):
        for k in steps:
            idx = np.asarray(pick(X, labels, k), dtype=np.int64)
            if len(idx) != k or len(np.unique(idx)) != k or np.any(labels[idx] >= 0):
                raise RuntimeError(f"{'peer' if peer else 'ours'} {strategy} returned an invalid batch "
                                   f"(asked {k}, got {len(idx)}, distinct {len(np.unique(idx))})")
            labels[idx] = y[idx]
        out.append({"arm": "skactiveml" if peer else "ours+sklearn-LR", "strategy": strategy, "seed": seed,
                    "n_labels": b, "accuracy": accuracy(clf_proto, X, labels, X_test, y_test, n_classes)})
    return out


def _ours_picker(strategy, seed):
    from alwidget import strategies

    rnd = {"n": 0}

    def pick(X, labels, k):
        rnd["n"] += 1  # a fresh selection seed per round; the clustering seed is the run's seed
        return strategies.select(strategy, X, labels, k, seed=seed * 1000 + rnd["n"], geometry_seed=seed)

    return pick


def _peer_picker(strategy, seed, n_classes, clf_proto):
    from skactiveml import pool
    from skactiveml.classifier import SklearnClassifier

    rs = np.random.RandomState(seed)
    common = dict(missing_label=-1, random_state=rs)
    clf = SklearnClassifier(clf_proto, classes=np.arange(n_classes), missing_label=-1, random_state=seed)
    qs = {"random": lambda: pool.RandomSampling(**common),
          "typiclust": lambda: pool.TypiClust(**common),
          "probcover": lambda: pool.ProbCover(n_classes=n_classes, **common),
          "dropquery": lambda: pool.DropQuery(**common),
          "coreset": lambda: pool.CoreSet(**common),
          "margin": lambda: pool.UncertaintySampling(method="margin_sampling", **common)}[strategy]()
    needs_clf = strategy in ("dropquery", "margin")

    def pick(X, labels, k):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its "no labels yet, uniform predictions" cold-start warnings
            if needs_clf:
                return qs.query(X, labels, clf=clf, batch_size=k)
            return qs.query(X, labels, batch_size=k)

    return pick


# --------------------------------------------------------------------------- main

def summarise(records, strategies, budgets, arms):
    """Rows of mean ± std accuracy per (strategy, arm) and budget."""
    import pandas as pd

    df = pd.DataFrame(records)
    rows = []
    for s in strategies:
        for a in arms:
            sub = df[(df.strategy == s) & (df.arm == a)]
            if sub.empty:
                continue
            row = {"strategy": s, "arm": a if a != "skactiveml" else f"skactiveml {PEER_NAME[s]}"}
            for b in budgets:
                v = sub[sub.n_labels == b].accuracy
                row[str(b)] = f"{v.mean():.3f} ± {v.std(ddof=0):.3f}" if len(v) else "-"
            rows.append(row)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", type=C.parse_names, default=["digits"], help="digits, demo (comma-separated)")
    p.add_argument("--strategies", type=C.parse_names, default=STRATEGIES, help="comma-separated")
    p.add_argument("--budgets", type=C.parse_ints, default=[10, 20, 50, 100, 200])
    p.add_argument("--seeds", type=int, default=5, help="number of seeds (0..n-1)")
    p.add_argument("--batch", type=int, default=10, help="points per query round")
    p.add_argument("--arms", type=C.parse_names, default=["ours", "ours+sklearn-LR", "skactiveml"],
                   help="which arms to run (comma-separated)")
    p.add_argument("--quick", action="store_true", help="digits, 2 seeds, budgets 10,20,50: a smoke run")
    p.add_argument("--out", default="bench_efficiency", help="results name under bench/results/")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.budgets = min(args.seeds, 2), [b for b in args.budgets if b <= 50] or [10, 20, 50]
    bad = sorted(set(args.strategies) - set(STRATEGIES))
    if bad:
        p.error(f"--strategies: unknown {bad}; choose from {','.join(STRATEGIES)}")
    bad = sorted(set(args.arms) - {"ours", "ours+sklearn-LR", "skactiveml"})
    if bad:
        p.error(f"--arms: unknown {bad}; choose from ours,ours+sklearn-LR,skactiveml")
    if "skactiveml" in args.arms:
        try:
            import skactiveml  # noqa: F401
        except ImportError:
            print("scikit-activeml is not installed (pip install scikit-activeml); skipping its arm")
            args.arms = [a for a in args.arms if a != "skactiveml"]
    seeds = list(range(args.seeds))
    info = C.machine_info()
    print(C.machine_line(info))

    tables, records, notes = [], [], []
    for ds in args.dataset:
        try:
            X_all, y_all = load_dataset(ds)
        except Exception as exc:  # e.g. the demo subset or its encoder is not available here
            msg = f"data set {ds!r} not available: {type(exc).__name__}: {exc}"
            print(msg)
            notes.append(msg)
            continue
        X, X_test, y, y_test = split(X_all, y_all)
        n_classes = int(y_all.max()) + 1
        clf_proto = make_classifier(X)
        print(f"\n{ds}: pool {X.shape}, test {X_test.shape}, {n_classes} classes; seeds {seeds}; "
              f"budgets {args.budgets}; batch {args.batch}", flush=True)
        ds_records = []
        if "ours" in args.arms:
            t = time.perf_counter()
            ds_records += arm_ours_simulate(X, y, X_test, y_test, args.strategies, args.budgets, seeds, args.batch)
            print(f"  ours (alwidget.simulate): {time.perf_counter() - t:.1f} s", flush=True)
        for arm, peer in (("ours+sklearn-LR", False), ("skactiveml", True)):
            if arm not in args.arms:
                continue
            for s in args.strategies:
                t = time.perf_counter()
                for seed in seeds:
                    ds_records += arm_loop(X, y, X_test, y_test, s, args.budgets, seed, args.batch, clf_proto,
                                           n_classes, peer=peer)
                print(f"  {arm:<16} {s:<10} {time.perf_counter() - t:.1f} s", flush=True)
        for r in ds_records:
            r["dataset"] = ds
        records += ds_records
        rows = summarise(ds_records, args.strategies, args.budgets, args.arms)
        cols = [("strategy", "strategy"), ("arm", "arm")] + [(str(b), f"{b} labels") for b in args.budgets]
        table = C.markdown_table(rows, cols)
        print(table)
        tables.append((f"{ds}: test accuracy (mean ± std over {len(seeds)} seeds), pool {len(X)}, "
                       f"test {len(X_test)}", table))

    settings = (f"data sets {','.join(args.dataset)}; stratified 70/30 pool/test split (seed 0); start from zero "
                f"labels, batches of {args.batch}; budgets {args.budgets}; seeds {seeds}"
                + ("; QUICK smoke run" if args.quick else ""))
    notes = ["ours = alwidget.simulate: our strategies + our probe (torch multinomial logistic regression, "
             "pool-standardised features, input dropout).",
             "alwidget.simulate keeps the feature-only geometry (k-means, delta) at geometry_seed 0 for every "
             "seed, as a Session does, so its seed spread for typiclust/probcover comes from later rounds only; "
             "the ours+sklearn-LR arm passes geometry_seed = seed.",
             "ours+sklearn-LR = our strategies, accuracy from the shared sklearn classifier; skactiveml = its "
             "strategies (models: SklearnClassifier around the shared classifier), accuracy from the same "
             "classifier. Shared classifier: pool-standardised features + LogisticRegression(C=1, max_iter=1000).",
             "digits: sklearn's 8×8 digits, pixels L2-normalised per image; demo: the shipped Fashion-MNIST "
             "subset embedded with efficientnet-lite0 (alwidget.cli.simulation_features).",
             "At zero labels scikit-activeml's model-based strategies (DropQuery, margin) see an unfitted "
             "classifier and fall back to uniform predictions (random tie-breaking); ours use their documented "
             "cold-start choice.", *notes]
    path = C.write_results(args.out, title="Label efficiency", settings=settings, info=info, tables=tables,
                           records=records, notes=notes)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
