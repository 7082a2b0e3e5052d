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

FIXED = ["typiclust", "probcover", "dropquery", "margin"]
SETS = ["digits", "fmnist", "mnist", "fmnist-lt"]
T1 = [1, 2, 3, 5]
T2 = [5, 10, float("inf")]


PROBCOVER_T1 = [1, 2, 3]
PROBCOVER_T2 = [10]


def policies(t1s, t2s, colds=("typiclust",)):
    """The grid: every (t1, t2) for TypiClust; a smaller one for a ProbCover cold start."""
    out = []
    for cold in colds:
        grid = [(a, b) for a in t1s for b in t2s] if cold == "typiclust" else \
            [(a, b) for a in PROBCOVER_T1 for b in PROBCOVER_T2]
        out += [f"auto:cold_start={cold}+min_per_class={a:g}+late_per_class={b:g}" for a, b in grid if b > a]
    return out


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
    ap.add_argument("--out", default="bench_auto_switch")
    args = ap.parse_args(argv)
    if args.quick:
        args.dataset, args.seeds, args.budgets = ["digits"], 2, [10, 20, 30, 50]
    seeds = list(range(args.seeds))
    pols = policies(T1, T2, args.cold)
    info = C.machine_info()
    print(C.machine_line(info), flush=True)
    t0 = time.perf_counter()
    means, records = {}, []
    for ds in args.dataset:
        X, Xt, y, yt = E.split(*ED.load(ds))
        data = (X, Xt, y, yt, E.SharedLR(X))
        for spec in FIXED + pols:
            recs = run(spec, data, args.budgets, seeds)
            for r in recs:
                r["dataset"] = ds
            records += recs
            for b in args.budgets:
                means[(ds, spec, b)] = float(np.mean([r["lr"] for r in recs if r["n_labels"] == b]))
            print(f"{ds:<10} {spec:<64}" + " ".join(f"{means[(ds, spec, b)]:.3f}" for b in args.budgets), flush=True)
    return report(args, info, means, records, pols, seeds, t0)


def report(args, info, means, records, pols, seeds, t0):
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
                    records=records, notes=[f"chosen: {best}", f"fixed strategies: {', '.join(FIXED)}"])
    print("chosen:", best)
    return 0


if __name__ == "__main__":
    sys.exit(main())
