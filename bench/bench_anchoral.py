"""Benchmark: AnchorAL subpools (alwidget.anchoral) against the whole pool, same run.

Part 1, speed. Synthetic embeddings (``_common.make_features``: Gaussian mixture, D = 512,
C = 10, unit rows) at N = 200k .. 1M, 10 labels per class, B = 10. A LinearProbe is fitted on
the whole pool once and handed to every arm; one round = one ``select`` call with the probe's
pool scores cleared and the previous round's 10 picks labelled (so new anchors are searched), so
each arm scores what its strategy reads (the whole pool, or only the subpool: AnchorAL's point).
Three arms on the same labels: the whole pool; AnchorAL without help (each round searches its
new anchors' neighbour lists); AnchorAL with ``anchoral.prefetch`` of each batch after its round
(as a Session does while the user looks at it), each AnchorAL arm with its own list cache.
Reported side by side: the round after the labels (label -> next batch: what the user waits
for) and the total work (that round + the prefetch that ran before it), and whether both
AnchorAL arms picked the same rows (each round's picks are in the JSON, to compare two trees).
Medians over rounds 2.. (round 1 has no new anchors), and over the last 3 rounds (at 1M over 14
rounds the subpool is at its cap, 11,000 rows, there).
The IVF index AnchorAL builds on first use is timed separately (once per feature set).

Part 2, label efficiency on a long-tailed pool. EfficientNet-Lite0 features of the 10k
Fashion-MNIST subset of ``efficiency_data`` (1280-d), split 70/30 stratified; in the pool one
class (``--minority``) keeps 1 % of its rows. Both arms start from the same labels (2 per
class, 1 of the minority) and buy batches of B = 10 up to ``--budget`` labels with margin
sampling; AnchorAL uses a subpool scaled to the pool (``--size`` rows + ``--tail``), with its
default class quotas and, as a third arm, the paper's plain top ``--size`` scores. Reported:
minority items found, the probe's recall of the minority class and macro-F1 on the test split,
time per round.

    .venv/bin/python bench/bench_anchoral.py                    # 200k, 500k, 1M + the long tail
    .venv/bin/python bench/bench_anchoral.py --n 200000 --seeds 1
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import _common as C


def _lists_swap(geo, lists):
    """Install one arm's neighbour-list cache on the pool's Geometry (each AnchorAL arm keeps its
    own, so the arm without prefetch never reads lists the other one searched ahead)."""
    old = geo.scratch("anchoral_lists")
    geo._scratch["anchoral_lists"] = lists
    return old


def speed(n: int, strategies, seed: int, rounds: int) -> list[dict]:
    """Per round, same labels for every arm: the whole pool; AnchorAL as a round without help;
    AnchorAL with :func:`anchoral.prefetch` of the batch after each round. Critical path = the
    round after the labels (what the user waits for); total = round + the prefetch before it."""
    from collections import OrderedDict

    from alwidget import anchoral, strategies as S
    from alwidget.geometry import Geometry
    from alwidget.probe import LinearProbe

    xp, yp = C.cached_features(n, 512, 10, seed=seed)
    X, y = np.load(xp), np.load(yp)
    labels = C.initial_labels(y, 10, seed=seed)
    probe = LinearProbe(seed=0).fit(X, labels, n_classes=10)
    probe.predict_proba()
    anchoral.INDEX_CACHE = False  # time the build itself, not a read of an earlier run's file
    t = time.perf_counter()
    anchoral.subpool(X, labels, seed=0)  # builds the normalised copy and the IVF index once
    t_index = time.perf_counter() - t
    geo = Geometry.of(X)
    first = geo.scratch("anchoral_lists")  # the initial labels' lists: both arms start from them
    rows = []
    for name in strategies:
        full, plain, crit, pre = [], [], [], []
        caches = {arm: OrderedDict((k, dict(v) if isinstance(v, dict) else v) for k, v in first.items())
                  for arm in ("plain", "ahead")}
        S.select(name, X, labels, 10, seed=0, probe=probe)  # warm caches for both arms
        lab, same, picks = labels.copy(), True, []
        for r in range(rounds):
            got = {}
            for arm in ("plain", "ahead"):
                # the whole pool right before each AnchorAL arm: both meet the memory it leaves behind
                probe._proba = None  # each arm scores what its strategy reads: the pool, or the subpool
                t0 = time.perf_counter()
                S.select(name, X, lab, 10, seed=r, probe=probe)
                full.append(time.perf_counter() - t0)
                _lists_swap(geo, caches[arm])
                probe._proba = None
                t0 = time.perf_counter()
                got[arm], info = anchoral.select(name, X, lab, 10, seed=r, probe=probe, return_info=True, min_pool=0)
                (plain if arm == "plain" else crit).append(time.perf_counter() - t0)
                if arm == "ahead":  # while the user looks at the batch: its rows' lists
                    t0 = time.perf_counter()
                    anchoral.prefetch(X, got[arm])
                    pre.append(time.perf_counter() - t0)
            same &= bool(np.array_equal(got["plain"], got["ahead"]))
            picks.append(np.sort(got["plain"]).tolist())  # in the JSON: compare runs of two trees
            lab[got["plain"]] = y[got["plain"]]  # the next round has 10 new labels (new anchors)
        # the round after a label pairs with the prefetch of the round before it
        tot = [c + p for c, p in zip(crit[1:], pre[:-1])]
        ms = lambda v: 1e3 * float(np.median(v))  # noqa: E731
        cap = min(3, len(tot))  # the last rounds: at 1M over 14 rounds the subpool is at its cap there
        rows.append({"n": n, "strategy": name, "full_ms": ms(full), "anchoral_ms": ms(plain[1:]),
                     "critical_last3_ms": ms(crit[-cap:]), "total_last3_ms": ms(tot[-cap:]),
                     "speedup_total_last3": ms(full) / ms(tot[-cap:]),
                     "critical_ms": ms(crit[1:]), "prefetch_ms": ms(pre), "total_ms": ms(tot),
                     "speedup": ms(full) / ms(plain[1:]), "speedup_critical": ms(full) / ms(crit[1:]),
                     "speedup_total": ms(full) / ms(tot), "same_picks": same, "index_s": t_index,
                     "subpool": info["anchoral"]["subpool"], "approximate": info["anchoral"]["approximate"],
                     "picks": picks,
                     "rounds_ms": {k: [round(1e3 * t, 2) for t in v] for k, v in
                                   (("full", full), ("plain", plain), ("critical", crit), ("prefetch", pre))}})
        x = rows[-1]
        print(f"    per round, ms: {x['rounds_ms']}", flush=True)
        print(f"  N={n:,} {name:10s} full {x['full_ms']:7.1f} | anchoral {x['anchoral_ms']:6.1f} (x{x['speedup']:.1f}) "
              f"| with prefetch: waits {x['critical_ms']:6.1f} (x{x['speedup_critical']:.1f}), "
              f"prefetch {x['prefetch_ms']:5.1f}, total {x['total_ms']:6.1f} (x{x['speedup_total']:.1f}) ms "
              f"| same picks {same} (index {t_index:.1f} s once) | last 3 rounds: waits {x['critical_last3_ms']:.1f}, "
              f"total {x['total_last3_ms']:.1f} (x{x['speedup_total_last3']:.1f}) ms", flush=True)
    Geometry.clear_cache()
    return rows


def long_tail_pool(minority: int, seed: int = 0, features: str = "effnet"):
    """(X_pool, y_pool, X_test, y_test), minority class cut to 1 % in the pool. ``features``:
    "effnet" (the 10k subset's EfficientNet features, 70/30 split) or "pixels" (the 60k training
    images' unit pixel rows as the pool, the 10k test images as the test set)."""
    if features == "pixels":
        from alwidget.datasets import fashion_mnist
        from alwidget.geometry import normalize

        tr, te = fashion_mnist("train", download=False), fashion_mnist("test", download=False)
        Xp, yp = normalize(tr.images.reshape(len(tr.images), -1).astype(np.float32)), np.asarray(tr.labels)
        Xt, yt = normalize(te.images.reshape(len(te.images), -1).astype(np.float32)), np.asarray(te.labels)
    else:
        import efficiency_data as ED
        from sklearn.model_selection import train_test_split

        X, y = ED.load("fmnist")
        Xp, Xt, yp, yt = train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)
    rng = np.random.default_rng(seed)
    rows = np.flatnonzero(yp == minority)
    drop = rng.choice(rows, rows.size - max(2, rows.size // 100), replace=False)
    keep = np.setdiff1d(np.arange(len(yp)), drop)
    return Xp[keep], yp[keep], Xt, yt


ARMS = ("full pool", "AnchorAL", "AnchorAL, top-S")


def efficiency(args, seed: int) -> list[dict]:
    from sklearn.metrics import f1_score

    from alwidget import anchoral
    from alwidget.geometry import Geometry
    from alwidget.probe import LinearProbe

    Xp, yp, Xt, yt = long_tail_pool(args.minority, seed, args.features)
    n_min = int((yp == args.minority).sum())
    rng = np.random.default_rng(seed)
    start = np.full(len(yp), -1)
    for c in range(10):
        pick = rng.choice(np.flatnonzero(yp == c), 1 if c == args.minority else 2, replace=False)
        start[pick] = c
    sp = dict(size=args.size, tail=args.tail)
    out = []
    for arm in ARMS:
        labels = start.copy()
        probe = LinearProbe(seed=seed)
        times = []
        while (labels >= 0).sum() < args.budget:
            probe.fit(Xp, labels, n_classes=10)
            probe.predict_proba()
            t = time.perf_counter()
            if arm == "full pool":
                idx = anchoral.select("margin", Xp, labels, 10, seed=seed, probe=probe, min_pool=10**12)
            else:  # the default (class quotas in the subpool) and the paper's top-S
                idx = anchoral.select("margin", Xp, labels, 10, seed=seed, probe=probe, min_pool=0,
                                      subpool_params=dict(sp, balanced=arm == "AnchorAL"))
            times.append(time.perf_counter() - t)
            labels[idx] = yp[idx]
        probe.fit(Xp, labels, n_classes=10)
        pred = probe.predict(Xt)
        f1 = f1_score(yt, pred, average="macro")
        recall = float((pred[yt == args.minority] == args.minority).mean())  # the model's, on the test split
        found = int(((labels >= 0) & (yp == args.minority)).sum())
        out.append({"seed": seed, "arm": arm, "minority_found": found, "minority_in_pool": n_min,
                    "macro_f1": f1, "minority_recall": recall, "round_ms": 1e3 * np.median(times), "labels": int((labels >= 0).sum())})
        print(f"  seed {seed} {arm:15s}: minority {found}/{n_min}, macro-F1 {f1:.3f}, "
              f"round {out[-1]['round_ms']:.1f} ms", flush=True)
        Geometry.clear_cache()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=C.parse_ints, default=[200_000, 500_000, 1_000_000])
    p.add_argument("--strategies", type=C.parse_names, default=["margin", "dropquery", "badge"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seeds", type=int, default=3, help="seeds of the long-tailed runs")
    p.add_argument("--budget", type=int, default=300)
    p.add_argument("--minority", type=int, default=0, help="the class cut to 1 %% of the pool")
    p.add_argument("--size", type=int, default=1000, help="subpool size on the long-tailed pool")
    p.add_argument("--tail", type=int, default=100, help="random tail on the long-tailed pool")
    p.add_argument("--features", choices=["effnet", "pixels"], default="effnet", help="long-tailed pool")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--out", default="bench_anchoral")
    args = p.parse_args(argv)
    from alwidget._util import limit_threads

    info = C.machine_info()
    print(C.machine_line(info), flush=True)
    speed_rows, eff_rows = [], []
    with limit_threads(1):
        for n in ([] if args.skip_speed else args.n):
            speed_rows += speed(n, args.strategies, 0, args.rounds)
        for s in range(args.seeds):
            eff_rows += efficiency(args, s)
    cols = [("n", "N"), ("strategy", "strategy"), ("full_ms", "whole pool, ms/round"),
            ("anchoral_ms", "AnchorAL, no prefetch"), ("speedup", "speed-up"),
            ("critical_ms", "AnchorAL + prefetch: label -> batch"), ("speedup_critical", "speed-up (waited)"),
            ("prefetch_ms", "prefetch (background)"), ("total_ms", "total work"), ("speedup_total", "speed-up (work)"),
            ("critical_last3_ms", "label -> batch, last 3 rounds"), ("total_last3_ms", "total work, last 3 rounds"),
            ("speedup_total_last3", "speed-up (work, last 3)"),
            ("same_picks", "same picks"), ("subpool", "subpool rows"), ("index_s", "IVF index, s (once)")]
    summary = []
    for arm in ARMS:
        r = [e for e in eff_rows if e["arm"] == arm]
        if not r:
            continue
        found, f1 = [e["minority_found"] for e in r], [e["macro_f1"] for e in r]
        rec = [e.get("minority_recall", np.nan) for e in r]
        summary.append({"arm": arm, "found": f"{np.mean(found):.1f} ± {np.std(found):.1f} / {r[0]['minority_in_pool']}",
                        "recall": f"{np.mean(rec):.3f} ± {np.std(rec):.3f}",
                        "f1": f"{np.mean(f1):.3f} ± {np.std(f1):.3f}", "ms": np.mean([e["round_ms"] for e in r])})
    path = C.write_results(
        args.out, title="AnchorAL subpools vs the whole pool",
        settings=f"N {args.n}, strategies {args.strategies}, {args.rounds} rounds; long tail: Fashion-MNIST "
                 f"{args.features} features, class {args.minority} cut to 1 %, margin, budget {args.budget}, subpool {args.size} + {args.tail}, "
                 f"{args.seeds} seeds; one thread",
        info=info, records=speed_rows + eff_rows,
        tables=[t for t in [
            ("Scoring + selection per round, ms (probe fitted on the whole pool for every arm; label -> batch = "
             "the round the user waits for; total work = that round + the prefetch of the batch before it)",
             C.markdown_table(speed_rows, cols))
            if speed_rows else None,
            ("Long-tailed Fashion-MNIST: minority items found, the probe's recall of the minority on the test split, macro-F1 after the budget (mean ± sd over seeds)",
             C.markdown_table(summary, [("arm", "arm"), ("found", "minority found"),
                                        ("recall", "minority recall (test)"), ("f1", "macro-F1"),
                                        ("ms", "ms/round")])) if summary else None] if t])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
