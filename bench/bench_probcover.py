"""Why ProbCover's purity rule fails on supervised ImageNet features, and which delta rule works.

Three tables per feature set of ``efficiency_data.py`` (pool = the 70 % split of
``bench_efficiency.py``):

1. The features: median distance to the nearest neighbour and to a random point (L2-normalised
   rows, so distances lie in [0, 2]), their ratio (how much nearer the nearest neighbour is:
   near 1 = little cluster structure), 10-NN label agreement, and how well k-means with K = the
   number of classes recovers them (NMI; share of points in their cluster's majority class).
2. The paper's rule: delta at purity 0.95 for K = 5, 10, 20, 50 pseudo-labels, the share of
   points whose delta-ball holds only their own *true* class, the mean ball size, and the
   coverage of 10 and 50 greedy balls.
3. The rules on a labelling run (zero labels, batches of 10, 5 seeds): the paper's rule and the
   budget rule with coverage targets 0.3-0.8 (delta such that L + B greedy balls cover that
   share of the pool): delta used, coverage reached, classes found and the test accuracy of
   LogisticRegression(C=100) on the picks at 10/20/50/100/200 labels.

    python bench/bench_probcover.py            # all sets, 5 seeds
    python bench/bench_probcover.py --quick    # digits, 2 seeds, budgets to 50
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import _common as C
import bench_efficiency as E
import efficiency_data as ED

SETS = ["digits", "fmnist", "mnist", "fmnist-lt"]
TARGETS = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
#: Targets that grow with the budget b = L + B (0.5 up to 20 labels), measured against the constant ones.
GROWTH_RULES = ["growth=0.5", "growth=0.75", "growth=1", "grow=log:20,0.15,0.8", "grow=hold:20,0.9"]


def feature_row(ds, X, y):
    from sklearn.metrics import normalized_mutual_info_score

    from alwidget.geometry import Geometry

    geo = Geometry.of(X)
    d, i = geo.knn(10)
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, len(X), 20000), rng.integers(0, len(X), 20000)
    rand = np.linalg.norm(geo.X[a] - geo.X[b], axis=1)[a != b]
    assign, _ = geo.kmeans(int(y.max()) + 1, 0)
    major = sum(np.bincount(y[assign == c]).max() for c in np.unique(assign)) / len(y)
    return {"set": ds, "N": len(X), "D": X.shape[1], "nn": f"{np.median(d[:, 0]):.3f}",
            "rand": f"{np.median(rand):.3f}", "ratio": f"{np.median(d[:, 0]) / np.median(rand):.2f}",
            "knn": f"{np.mean(y[i] == y[:, None]):.3f}",
            "nmi": f"{normalized_mutual_info_score(y, assign):.3f}", "major": f"{major:.3f}"}


def purity_rows(ds, X, y):
    from alwidget.cover_geometry import ball_graph, cover_rows, probcover_info
    from alwidget.geometry import Geometry
    from alwidget.strategies.probcover import greedy_cover

    geo = Geometry.of(X)
    rows = []
    for K in (5, 10, 20, 50):
        info = probcover_info(geo, K, 0, 0.95)
        indptr, indices = ball_graph(geo, info["delta"])
        owner = np.repeat(np.arange(len(X)), np.diff(indptr))
        impure = np.zeros(len(X), bool)
        impure[owner[y[indices] != y[owner]]] = True
        cov = {}
        for b in (10, 50):
            covered, gain = np.zeros(len(X), bool), np.diff(indptr).astype(np.int64)
            cover_rows(indptr, indices, [], covered, gain)
            greedy_cover(indptr, indices, covered, gain, np.ones(len(X), bool), b, np.arange(len(X)))
            cov[b] = covered.mean()
        rows.append({"set": ds, "K": K, "delta": f"{info['delta']:.3f}", "pseudo": f"{info['purity']:.3f}",
                     "true": f"{1 - impure.mean():.3f}", "ball": f"{np.diff(indptr).mean():.1f}",
                     "cov10": f"{cov[10]:.1%}", "cov50": f"{cov[50]:.1%}"})
    return rows


def parse_rule(spec):
    """'coverage=0.5;growth=0.75' or 'grow=log:20,0.15,0.8' -> (name, select params, target rule or None).

    ``growth`` is ProbCover's own parameter (0 = a constant target). ``grow`` names a target rule
    measured against it: ``log:b0,s,cap`` (coverage + s log2(b / b0), capped) or ``hold:b0,cap`` (keep
    the radius at which b0 balls cover ``coverage`` while the share it reaches is below cap)."""
    params, grow = {}, None
    for item in filter(None, spec.split(";")):
        k, _, v = item.partition("=")
        if k == "grow":
            grow = v
        else:
            params[k] = float(v)
    params.setdefault("coverage", 0.5)
    params.setdefault("growth", 0.0 if grow else params.get("growth", 0.0))
    name = f"budget, coverage {params['coverage']:g}" + (f", grow {grow}" if grow else
                                                         f", growth {params['growth']:g}" if params["growth"] else "")
    return name, params, grow


def target_rule(grow, geo, seed):
    """A stand-in for ``probcover.coverage_target`` implementing a ``grow`` rule of :func:`parse_rule`."""
    from alwidget.strategies import _cover

    kind, _, rest = grow.partition(":")
    a = [float(v) for v in rest.split(",")]

    def target(b, coverage, growth):
        if b <= a[0]:
            return coverage
        if kind == "log":
            return float(min(a[2], coverage + a[1] * np.log2(b / a[0])))
        if kind == "hold":
            rows, d2 = _cover.sample_sq_dists(geo, seed)
            d0 = _cover.budget_delta(geo, int(a[0]), coverage, seed)["delta"]
            reach = _cover.greedy_coverage(d2 < np.float32(d0 * d0), int(max(1, min(b, rows.size // 8))))
            return float(max(coverage, min(a[1], reach)))
        raise ValueError(f"unknown target rule {grow!r}")

    return target


def default_rules(y):
    return [("purity 0.95 (paper)", {"purity": 0.95, "n_classes": int(y.max()) + 1}, None)] + \
           [(f"budget, coverage {t:g}", {"coverage": t, "growth": 0.0}, None) for t in TARGETS] + \
           [parse_rule(s) for s in GROWTH_RULES]


def rule_runs(ds, X, Xt, y, yt, budgets, seeds, specs=None):
    from alwidget import strategies
    from alwidget.geometry import Geometry
    from alwidget.strategies import probcover as P

    lr = E.SharedLR(X)
    rules = [parse_rule(s) for s in specs] if specs else default_rules(y)
    out, shipped = [], P.coverage_target
    for name, params, grow in rules:
        per = {b: [] for b in budgets}
        for seed in seeds:
            labels = np.full(len(y), -1, np.int64)
            P.coverage_target = target_rule(grow, Geometry.of(X), seed) if grow else shipped
            try:
                for steps, b in E.schedule(budgets, 10):
                    for k in steps:
                        idx, info = strategies.select("probcover", X, labels, k, seed=seed, geometry_seed=seed,
                                                      return_info=True, **params)
                        labels[idx] = y[idx]
                    per[b].append((info["delta"], info["covered_after"], np.unique(labels[labels >= 0]).size,
                                   lr.accuracy(X, labels, Xt, yt)))
            finally:
                P.coverage_target = shipped
        row = {"set": ds, "rule": name}
        for b in budgets:
            m = np.mean(per[b], 0)
            row[str(b)] = f"δ {m[0]:.2f}, cov {m[1]:.0%}, {m[2]:.1f} cl, acc {m[3]:.3f}"
            out.append({"set": ds, "rule": name, "n_labels": b, "delta": m[0], "coverage": m[1],
                        "classes": m[2], "lr": m[3]})
        print(f"{ds:<10} {name:<22}" + " | ".join(row[str(b)] for b in budgets), flush=True)
        yield row, out


def summary_table(records, sets, budgets):
    """One row per rule: 'set 10 / 20 / ...' accuracies, the mean over the sets per budget, fmnist-lt classes."""
    acc = {(r["set"], r["rule"], r["n_labels"]): r for r in records}
    rows = []
    for rule in dict.fromkeys(r["rule"] for r in records):
        row = {"rule": rule}
        for d in sets:
            row[d] = " / ".join(f"{acc[(d, rule, b)]['lr']:.3f}" for b in budgets)
        row["mean"] = " / ".join(f"{np.mean([acc[(d, rule, b)]['lr'] for d in sets]):.3f}" for b in budgets)
        if "fmnist-lt" in sets:
            row["lt"] = " / ".join(f"{acc[('fmnist-lt', rule, b)]['classes']:.1f}" for b in budgets)
        rows.append(row)
    cols = [("rule", "rule")] + [(d, f"{d} {' / '.join(map(str, budgets))}") for d in sets] + [("mean", "mean over sets")]
    return C.markdown_table(rows, cols + ([("lt", "fmnist-lt classes found")] if "fmnist-lt" in sets else []))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--dataset", type=C.parse_names, default=SETS)
    ap.add_argument("--budgets", type=C.parse_ints, default=[10, 20, 50, 100, 200])
    ap.add_argument("--rule", action="append", help="a rule to run instead of the default list, e.g. "
                    "'coverage=0.5;grow=power:20,0.5' (repeatable)")
    ap.add_argument("--runs-only", action="store_true", help="skip the feature and purity tables")
    ap.add_argument("--out", default="bench_probcover")
    args = ap.parse_args(argv)
    if args.quick:
        args.dataset, args.seeds, args.budgets = ["digits"], 2, [10, 20, 50]
    info = C.machine_info()
    print(C.machine_line(info), flush=True)
    t0 = time.perf_counter()
    feats, pur, rules, records = [], [], [], []
    for ds in args.dataset:
        X, Xt, y, yt = E.split(*ED.load(ds))
        if not args.runs_only:
            feats.append(feature_row(ds, X, y))
            pur += purity_rows(ds, X, y)
        for row, recs in rule_runs(ds, X, Xt, y, yt, args.budgets, list(range(args.seeds)), args.rule):
            rules.append(row)
        records += recs
    tables = [] if args.runs_only else [("Features (L2-normalised; distances in [0, 2])",
               C.markdown_table(feats, [("set", "set"), ("N", "pool"), ("D", "dims"), ("nn", "median 1-NN dist"),
                                        ("rand", "median dist to a random point"), ("ratio", "ratio"),
                                        ("knn", "10-NN label agreement"), ("nmi", "k-means(K=C) NMI"),
                                        ("major", "k-means majority share")])),
              ("The paper's rule: delta at purity 0.95 with K k-means pseudo-labels",
               C.markdown_table(pur, [("set", "set"), ("K", "K"), ("delta", "delta"), ("pseudo", "pseudo-label purity"),
                                      ("true", "true-class purity"), ("ball", "mean ball size"),
                                      ("cov10", "coverage, 10 balls"), ("cov50", "coverage, 50 balls")]))]
    tables += [(f"Rules on a labelling run (mean over {args.seeds} seeds): delta used, coverage, classes found, "
               "LR(C=100) test accuracy", C.markdown_table(rules, [("set", "set"), ("rule", "rule")]
                                                           + [(str(b), f"{b} labels") for b in args.budgets])),
               ("Rules compared: accuracy per set and budget, the mean over sets, classes found on fmnist-lt",
                summary_table(records, args.dataset, args.budgets))]
    for _, t in tables:
        print(t, "\n")
    settings = (f"sets {','.join(args.dataset)}; 70 % pool split; budgets {args.budgets}; seeds {args.seeds}; "
                f"total {time.perf_counter() - t0:.0f} s" + ("; QUICK" if args.quick else ""))
    C.write_results(args.out, title="ProbCover: the delta rule", settings=settings, info=info, tables=tables,
                    records=records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
