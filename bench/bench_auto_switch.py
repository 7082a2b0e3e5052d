"""Where should ``auto`` leave cold start for DropQuery? Learning curves on sklearn digits.

Pool: digits pixels, rows L2-normalised, a stratified 70 % split per seed; accuracy on the
other 30 %. Each run starts from zero labels and labels B = 10 points per round by oracle,
the way the Session does: after each round the LinearProbe is refitted (warm start) and
handed to ``select``. Policies: ``auto`` with ``min_per_class`` in THRESHOLDS (0 = DropQuery
as soon as two classes are labelled, inf = cold start only), for each cold-start strategy,
plus plain random and margin for reference. Prints accuracy per budget and the mean over
budgets; the best threshold is the default in alwidget/strategies/auto.py.

    .venv/bin/python bench/bench_auto_switch.py            # 5 seeds, up to 200 labels
    .venv/bin/python bench/bench_auto_switch.py --quick    # 2 seeds, up to 50 labels
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OMP_NUM_THREADS", "1")

THRESHOLDS = [0, 1, 2, 3, 4, 6, 10, float("inf")]


def run(policy: dict, X, y, Xt, yt, budgets, seed, batch=10):
    from alwidget import strategies
    from alwidget.probe import LinearProbe

    labels = np.full(len(y), -1, np.int64)
    probe = LinearProbe(seed=seed)
    out = {}
    while (labels >= 0).sum() < max(budgets):
        fitted = probe if probe.is_fitted else None
        idx = strategies.select(policy["name"], X, labels, batch, seed=seed, probe=fitted, **policy["params"])
        labels[idx] = y[idx]
        probe.fit(X, labels)
        n = int((labels >= 0).sum())
        if n in budgets:
            out[n] = float((probe.predict(Xt) == yt).mean())
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 seeds, budgets up to 50")
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args(argv)
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    budgets = [10, 20, 30, 50] if args.quick else [10, 20, 30, 40, 50, 60, 80, 100, 150, 200]
    seeds = range(2 if args.quick else args.seeds)
    policies = [{"label": "random", "name": "random", "params": {}},
                {"label": "margin", "name": "margin", "params": {}}]
    for cold in ("typiclust", "probcover"):
        for t in THRESHOLDS:
            policies.append({"label": f"auto {cold} t={t:g}", "name": "auto",
                             "params": {"cold_start": cold, "min_per_class": t}})
    rows = []
    t0 = time.time()
    for pol in policies:
        accs = []
        for s in seeds:
            Xp, Xt, yp, yt = train_test_split(X, y, test_size=0.3, stratify=y, random_state=s)
            accs.append(run(pol, Xp, yp, Xt, yt, budgets, s))
        mean = {b: np.mean([a[b] for a in accs]) for b in budgets}
        rows.append((pol["label"], mean, np.mean(list(mean.values()))))
        print(f"{pol['label']:<28}" + " ".join(f"{mean[b]:.3f}" for b in budgets) + f"  mean {rows[-1][2]:.4f}",
              flush=True)
    print(f"{'':<28}" + " ".join(f"{b:>5}" for b in budgets) + f"   ({len(seeds)} seeds, {time.time() - t0:.0f} s)")
    best = max((r for r in rows if r[0].startswith("auto")), key=lambda r: r[2])
    print(f"best: {best[0]} (mean accuracy over budgets {best[2]:.4f})")


if __name__ == "__main__":
    main()
