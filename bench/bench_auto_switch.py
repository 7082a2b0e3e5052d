"""Where should ``auto`` switch? Policies of switch points against the best fixed strategy, on several sets.

auto runs ``cold_start`` (TypiClust) below ``min_per_class`` labels per class, DropQuery up to
``late_per_class``, margin from there on. This script runs a grid of (cold start, t1, t2) and
the fixed strategies auto can run, on the feature sets of ``efficiency_data.py`` (digits,
fmnist, mnist, fmnist-lt; the class-sorted pool differs only in order), with the protocol of
``bench_efficiency.py`` (stratified 70/30 split, zero labels, batches of 10, ``simulate.run_one``
with our probe; accuracy of pool-standardised LogisticRegression(C=100) on the picks).

For each policy: the shortfall from the best fixed strategy at every (set, budget); the policy
with the smallest worst shortfall (then the smallest mean) is the default. Leave-one-set-out:
the policy chosen on the other sets, scored on the held-out one, says whether the rule
carries over to a set it was not chosen on.

    python bench/bench_auto_switch.py                 # 5 seeds, the grid below
    python bench/bench_auto_switch.py --quick         # digits, 2 seeds, budgets to 50
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import _common as C
import bench_efficiency as E
import efficiency_data as ED

FIXED = ["typiclust", "probcover", "dropquery", "margin", "badge"]
SETS = ["digits", "fmnist", "mnist", "fmnist-lt"]
#: (t1, t2) pairs of the grid; t2 == t1 goes from the cold start straight to margin.
PAIRS = [(3, 3), (5, 5), (5, 10)]
#: auto's default policy before this bench (its records in bench_efficiency.json are named "auto").
OLD_DEFAULT = "auto:cold_start=typiclust+min_per_class=5+late_per_class=10"
#: Thresholds on the neighbour ratio tried for cold_start="auto" (between the sets' ratios, plus never/always).
RATIO_CUTS = [0.0, 0.37, 0.45, 0.50, 1.0]


def policies(pairs, colds=("typiclust", "probcover")):
    """The grid: every (t1, t2) pair for every cold start."""
    return [f"auto:cold_start={cold}+min_per_class={a:g}+late_per_class={b:g}" for cold in colds for a, b in pairs]


def ratio_policies(means, ratios, sets, budgets, pairs, cuts):
    """cold_start="auto" at each cut, computed from the grid: on a set with ratio < cut it runs exactly the
    ProbCover-start policy with the same (t1, t2), else the TypiClust-start one (the choice is per pool)."""
    out = {}
    for cut in cuts:
        for a, b in pairs:
            name = f"auto:cold_start=auto+tight_ratio={cut:g}+min_per_class={a:g}+late_per_class={b:g}"
            for d in sets:
                cold = "probcover" if ratios[d] < cut else "typiclust"
                src = f"auto:cold_start={cold}+min_per_class={a:g}+late_per_class={b:g}"
                for n in budgets:
                    means[(d, name, n)] = means[(d, src, n)]
            out[name] = None
    return list(out)


def parse_policy(spec):
    name, _, rest = spec.partition(":")
    params = {}
    for item in filter(None, rest.split("+")):
        k, _, v = item.partition("=")
        params[k] = v if k == "cold_start" else float(v)
    return name, params


def run(spec, data, budgets, seeds):
    from alwidget.simulate import run_one

    name, params = parse_policy(spec)
    X, Xt, y, yt, lr = data
    recs = []
    for seed in seeds:
        got = []
        run_one(X, y, name, budgets, seed, X_test=Xt, y_test_ids=yt, batch_size=10, n_classes=int(y.max()) + 1,
                    device="cpu", params=params,
                    on_budget=lambda n, labels, probe: got.append((n, lr.accuracy(X, labels, Xt, yt))))
        recs += [{"policy": spec, "seed": seed, "n_labels": n, "lr": a} for n, a in got]
    return recs


def shortfalls(means, pols, sets, budgets):
    """{policy: array (sets, budgets)} of best-fixed minus policy (positive = behind)."""
    best = {(d, b): max(means[(d, f, b)] for f in FIXED) for d in sets for b in budgets}
    return {p: np.array([[best[(d, b)] - means[(d, p, b)] for b in budgets] for d in sets]) for p in pols}


def choose(short, sets_idx):
    key = lambda p: (short[p][sets_idx].max(), short[p][sets_idx].mean())  # noqa: E731
    return min(short, key=key)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="digits, 2 seeds, budgets to 50")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--dataset", type=C.parse_names, default=SETS)
    ap.add_argument("--budgets", type=C.parse_ints, default=[10, 20, 30, 50, 70, 100, 150, 200])
    ap.add_argument("--cold", type=C.parse_names, default=["typiclust", "probcover"], help="cold starts in the grid")
    ap.add_argument("--pairs", default=None, help="(t1, t2) pairs instead of PAIRS, e.g. '3:3,5:5,5:10'")
    ap.add_argument("--fixed", type=C.parse_names, default=FIXED, help="the fixed strategies to compare with")
    ap.add_argument("--reuse", default=None, help="bench_efficiency .json files (comma-separated; later ones win): their runs of these strategies (same "
                    "protocol and seeds) are read instead of rerun; 'auto' there stands for " + OLD_DEFAULT)
    ap.add_argument("--reuse-strategies", type=C.parse_names, default=["typiclust", "dropquery", "margin", "badge",
                                                                        "auto"], help="which of them to read")
    ap.add_argument("--out", default="bench_auto_switch")
    args = ap.parse_args(argv)
    if args.quick:
        args.dataset, args.seeds, args.budgets = ["digits"], 2, [10, 20, 30, 50]
    seeds = list(range(args.seeds))
    pairs = [tuple(float(v) for v in p.split(":")) for p in args.pairs.split(",")] if args.pairs else PAIRS
    pols = policies(pairs, args.cold)
    FIXED[:] = args.fixed
    info = C.machine_info()
    print(C.machine_line(info), flush=True)
    t0 = time.perf_counter()
    means, records, ratios = {}, [], {}
    for ds in args.dataset:
        X, Xt, y, yt = E.split(*ED.load(ds))
        data = (X, Xt, y, yt, E.SharedLR(X))
        ratios[ds] = neighbour_ratio(X)
        print(f"{ds}: neighbour ratio {ratios[ds]:.3f}", flush=True)
        old = {}
        for path in (args.reuse.split(",") if args.reuse else []):
            old.update(reused(path, args.reuse_strategies, ds, args.budgets, seeds))
        for spec in FIXED + pols:
            recs = old[spec] if spec in old else run(spec, data, args.budgets, seeds)
            for r in recs:
                r["dataset"] = ds
            records += recs
            for b in args.budgets:
                means[(ds, spec, b)] = float(np.mean([r["lr"] for r in recs if r["n_labels"] == b]))
            print(f"{ds:<10} {spec:<64}" + " ".join(f"{means[(ds, spec, b)]:.3f}" for b in args.budgets), flush=True)
    if set(args.cold) >= {"typiclust", "probcover"}:
        pols += ratio_policies(means, ratios, args.dataset, args.budgets, pairs, RATIO_CUTS)
    return report(args, info, means, records, pols, seeds, t0, ratios)


def reused(path, names, ds, budgets, seeds):
    """{spec: records} of a bench_efficiency run (our arm) for ``names`` on set ``ds``, when it has every
    (seed, budget) asked for."""
    import json

    recs = json.loads(open(path).read())["records"]
    out = {}
    for name in names:
        got = [{"policy": OLD_DEFAULT if name == "auto" else name, "seed": r["seed"], "n_labels": r["n_labels"],
                "lr": r["lr"], "reused": path} for r in recs
               if r.get("arm") == "ours" and r.get("dataset") == ds and r.get("strategy") == name
               and r["seed"] in seeds and r["n_labels"] in budgets]
        if len(got) == len(seeds) * len(budgets):
            out[got[0]["policy"]] = got
    return out


def neighbour_ratio(X):
    from alwidget.geometry import Geometry
    from alwidget.strategies.auto import neighbour_ratio as ratio

    return ratio(Geometry.of(X), 0)


def report(args, info, means, records, pols, seeds, t0, ratios):
    sets, budgets = args.dataset, args.budgets
    short = shortfalls(means, pols, sets, budgets)
    allidx = np.arange(len(sets))
    best = choose(short, allidx)
    rows = sorted(({"policy": p.replace("auto:", ""), "worst": f"{100 * short[p].max():.1f}",
                    "mean": f"{100 * short[p].mean():.2f}",
                    **{d: f"{100 * short[p][i].max():.1f}" for i, d in enumerate(sets)}} for p in pols),
                  key=lambda r: (float(r["worst"]), float(r["mean"])))
    cols = [("policy", "policy"), ("worst", "worst shortfall (points)"), ("mean", "mean")] + [(d, d) for d in sets]
    loo = []
    for i, d in enumerate(sets):
        if len(sets) < 2:
            break
        p = choose(short, np.delete(allidx, i))
        loo.append({"held out": d, "chosen on the others": p.replace("auto:", ""),
                    "its worst shortfall on the held-out set": f"{100 * short[p][i].max():.1f}",
                    "best possible there": f"{100 * min(short[q][i].max() for q in pols):.1f}"})
    curves = [{"set": d, "strategy": s.replace("auto:", ""), **{str(b): f"{means[(d, s, b)]:.3f}" for b in budgets}}
              for d in sets for s in FIXED + [best]]
    tables = [("Policies ranked by their worst shortfall from the best fixed strategy (points of accuracy; "
               "positive = behind)", C.markdown_table(rows, cols)),
              ("Leave one set out", C.markdown_table(loo, [(k, k) for k in (loo[0] if loo else {})])),
              (f"Accuracy of the fixed strategies and of the chosen policy ({best.replace('auto:', '')})",
               C.markdown_table(curves, [("set", "set"), ("strategy", "strategy")] + [(str(b), str(b)) for b in budgets]))]
    for _, t in tables:
        print(t, "\n")
    settings = (f"sets {','.join(sets)}; budgets {budgets}; seeds {seeds}; batches of 10; LR(C=100) on the picks; "
                f"total {time.perf_counter() - t0:.0f} s" + ("; QUICK" if args.quick else ""))
    C.write_results(args.out, title="auto: switch points", settings=settings, info=info, tables=tables,
                    records=records, notes=[f"chosen: {best}", f"fixed strategies: {', '.join(FIXED)}",
                                            f"read from {args.reuse} (not rerun): {', '.join(args.reuse_strategies)}"
                                            if args.reuse else "every run made here",
                                            "neighbour ratios: " + ", ".join(f"{d} {r:.3f}" for d, r in ratios.items())])
    print("chosen:", best)
    return 0


if __name__ == "__main__":
    sys.exit(main())
