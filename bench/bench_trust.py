"""Benchmark: know when you are done (issue 10) -- the accuracy estimate and the cost per label.

Part 1, the estimate. On each feature set a quarter of the pool is the evaluation population E
(drawn by ``TrustMonitor`` as a Session does); margin sampling with an oracle labels the rest in
batches of 10 (what superintendent's acquisition does), and at each budget the probe's true
accuracy on E (the estimate's target) and on *all* unlabelled images is compared with three estimates:

- ``LURE, 30 tests (ours)``: ``TrustMonitor`` drawing 30 test items from E one by one (the
  surrogate refitted on training + test labels before each draw) and answering them with the
  oracle -- the product path; also the same draws with a plain t-interval;
- ``uniform, 30 tests``: 30 test items drawn uniformly from E, the same estimator (weights 1);
- ``3-fold CV on the labelled set``: what superintendent shows (the mean of a 3-fold
  stratified cross-validation of the labelled items), with a Wilson interval on the number of
  labelled items -- the interval one would attach to it.

Bias, RMSE and coverage of the nominal 95 % interval over runs x repetitions.

Part 2, the cost. A Session at N = 100k (D = 512, C = 10, margin, B = 10) with "Check my model"
on, labelled one item at a time by an oracle: the time the trust work adds to each label's
round trip (``TrustMonitor.update``: estimate refresh, checkpoint, test draws with the
surrogate refit), split by what happened on that label, next to retrain + select; then the same
with checking off (stop-hint checkpoints only), and one ``suspect_labels()`` call (on demand,
not on the round trip).

    .venv/bin/python bench/bench_trust.py            # digits + Fashion-MNIST (3,000) and N = 100k
    .venv/bin/python bench/bench_trust.py --quick    # small smoke run
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import _common as C

BATCH = 10
M_TESTS = 30


# --------------------------------------------------------------------------- data

def load(name: str, n_fashion: int):
    if name == "digits":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
        return X.astype(np.float32), y.astype(np.int64)
    from alwidget import datasets, embed
    from alwidget.images import ImageSet

    ds = datasets.fashion_mnist("test", download=False)
    rng = np.random.default_rng(0)
    per = n_fashion // 10
    idx = np.concatenate([rng.choice(np.flatnonzero(ds.labels == c), per, replace=False) for c in range(10)])
    emb = embed.embed_images(ImageSet.from_arrays(ds.images[idx]), encoder=embed.DEMO_ENCODER, progress=False)
    return emb.features, ds.labels[idx][emb.keep].astype(np.int64)


# --------------------------------------------------------------------------- part 1

def margin_run(X, y, E, budgets, seed):
    """Margin sampling outside E up to each budget; yields (budget, labels, probe proba)."""
    from alwidget import strategies
    from alwidget.probe import LinearProbe

    labels = np.full(len(y), -1, dtype=np.int64)
    probe = LinearProbe(device="cpu", seed=seed)
    in_e = np.zeros(len(y), bool)
    in_e[E] = True
    for budget in budgets:
        while (labels >= 0).sum() < budget:
            free = int(((labels < 0) & ~in_e).sum())
            k = min(BATCH, budget - int((labels >= 0).sum()))
            ask = min(int((labels < 0).sum()), int(np.ceil(k * (1 + E.size / free))) + 2)
            fitted = (labels >= 0).any()
            while True:  # as Session._select does until strategies take exclude=: more until enough outside E
                idx = strategies.select("margin", X, labels, ask, seed=seed * 1000 + int((labels >= 0).sum()),
                                        probe=probe if fitted else None, n_classes=10)
                idx = np.asarray(idx)[~in_e[idx]][:k]  # margin ranks: dropping E keeps the best of the rest
                if idx.size == k or ask >= (labels < 0).sum():
                    break
                ask = min(int((labels < 0).sum()), 2 * ask)
            labels[idx] = y[idx]
            probe.fit(X, labels, n_classes=10)
        yield budget, labels.copy(), probe.predict_proba()


def cv_estimate(X, labels, seed):
    """superintendent's number: mean accuracy of a 3-fold stratified CV on the labelled items."""
    from sklearn.model_selection import StratifiedKFold

    from alwidget.probe import LinearProbe
    from alwidget.trust import _wilson

    rows = np.flatnonzero(labels >= 0)
    scores = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # classes with fewer than 3 labels
        for tr, te in StratifiedKFold(3).split(rows, labels[rows]):
            train = np.full(len(labels), -1)
            train[rows[tr]] = labels[rows[tr]]
            p = LinearProbe(device="cpu", seed=seed).fit(X, train, n_classes=10)
            scores.append(float((p.predict_proba(X[rows[te]]).argmax(1) == labels[rows[te]]).mean()))
    acc = float(np.mean(scores))
    lo, hi = _wilson(acc, rows.size, 1.96)
    return {"estimate": acc, "low": lo, "high": hi}


def lure_estimates(X, y, labels, proba, seed, draw_seed):
    """30 tests through TrustMonitor (the product path): Wilson and t intervals from the same draws."""
    from alwidget import trust
    from alwidget.monitor import TrustMonitor

    mon = TrustMonitor(X, seed=seed, draw_seed=draw_seed, device="cpu")
    mon.set_on(True, np.full(len(y), -1), every=0)  # E as in margin_run: drawn before any label
    mon.target_half_width = 0.0  # always exactly M_TESTS tests here
    answered = labels.copy()
    while True:
        train = mon.training_labels(answered)
        row = mon.update(answered, train, proba, [], 10, 1)
        if mon.accuracy_estimate()["n_test"] >= M_TESTS:
            break
        answered[row] = y[row]  # the oracle answers the test request
    rows, q = mon.test_draws()
    rows, q = rows[:M_TESTS], q[:M_TESTS]
    correct = proba[rows].argmax(1) == y[rows]
    wilson = trust.accuracy_estimate(correct, q, mon.population_size)
    tint = trust.accuracy_estimate(correct, q, mon.population_size, interval="t")
    return wilson, tint


def uniform_estimate(y, E, proba, rng):
    from alwidget import trust

    rows = rng.choice(E, M_TESTS, replace=False)
    q = 1.0 / (E.size - np.arange(M_TESTS))
    return trust.accuracy_estimate(proba[rows].argmax(1) == y[rows], q, E.size)


def part1(name, X, y, budgets, n_runs, n_reps):
    from alwidget.monitor import TrustMonitor

    records = []
    for run in range(n_runs):
        mon = TrustMonitor(X, seed=run, device="cpu")
        mon.set_on(True, np.full(len(y), -1))
        E = mon.eval_rows()
        rng = np.random.default_rng(run)
        for budget, labels, proba in margin_run(X, y, E, budgets, run):
            rest = labels < 0
            truth = float((proba[rest].argmax(1) == y[rest]).mean())
            truth_e = float((proba[E].argmax(1) == y[E]).mean())  # what the estimate is unbiased for
            base = {"dataset": name, "run": run, "n_labels": budget, "truth": truth, "truth_e": truth_e}
            records.append({**base, "method": "cv3", "rep": 0, **cv_estimate(X, labels, run)})
            t0 = time.perf_counter()
            for rep in range(n_reps):
                wil, tint = lure_estimates(X, y, labels, proba, run, 1000 * run + rep)
                records.append({**base, "method": "lure", "rep": rep, **_pick(wil)})
                records.append({**base, "method": "lure_t", "rep": rep, **_pick(tint)})
                records.append({**base, "method": "uniform", "rep": rep, **_pick(uniform_estimate(y, E, proba, rng))})
            print(f"  {name} run {run} budget {budget}: truth {truth:.3f} (E {truth_e:.3f}), {n_reps} repetitions in "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
    return records


def _pick(res):
    return {k: res[k] for k in ("estimate", "low", "high")}


METHODS = [("lure", "LURE active testing, 30 tests (ours)"), ("lure_t", "same draws, plain t-interval"),
           ("uniform", "uniform test sampling, 30 tests"), ("cv3", "3-fold CV on the labelled set (superintendent)")]


def summarise1(records):
    import pandas as pd

    df = pd.DataFrame(records)
    for t in ("truth", "truth_e"):
        df[f"err_{t}"] = df["estimate"] - df[t]
        df[f"cover_{t}"] = (df["low"] <= df[t]) & (df[t] <= df["high"])
    df["half"] = (df["high"] - df["low"]) / 2
    rows = []
    for (ds, n), part in df.groupby(["dataset", "n_labels"], sort=False):
        for key, label in METHODS:
            m = part[part.method == key]
            rows.append({"dataset": ds, "n_labels": n, "truth_e": f"{part.truth_e.mean():.3f}",
                         "truth": f"{part.truth.mean():.3f}", "method": label,
                         "bias": f"{m.err_truth_e.mean():+.3f}", "rmse": f"{np.sqrt((m.err_truth_e ** 2).mean()):.3f}",
                         "coverage": f"{m.cover_truth_e.mean():.2f}", "half": f"{m.half.mean():.3f}",
                         "rmse_all": f"{np.sqrt((m.err_truth ** 2).mean()):.3f}",
                         "coverage_all": f"{m.cover_truth.mean():.2f}", "n": len(m)})
    return rows


# --------------------------------------------------------------------------- part 2

def part2(n, labels_timed, warmup):
    from alwidget.session import Session

    xp, yp = C.cached_features(n, 512, 10)
    X, y = np.load(xp), np.load(yp)
    names = [f"c{c}" for c in range(10)]
    out = []
    store = C.TMP_DIR / f"bench_trust_{n}.sqlite"  # a file store, as users have (the draws persist next to it)
    for f in C.TMP_DIR.glob(f"{store.name}*"):
        f.unlink()
    with Session(X, classes=names, store=store, strategy="margin", batch_size=BATCH) as s:
        for c in range(10):
            s.label_many(np.flatnonzero(y == c)[:warmup // 10], names[c])
        s.wait()
        for phase, on in (("check on", True), ("check off", False)):
            s.check_model(on=on)
            s.wait()
            for _ in range(labels_timed):
                draws, cps = len(s.trust.test_rows()), len(s.trust.history()["checkpoints"])
                i = int(s.next_batch()[0])
                s.label(i, names[y[i]])
                s.wait()
                t = dict(s._timings)  # the worker's own split of this update (status shows the total)
                kind = ("draw" if len(s.trust.test_rows()) > draws else "") + \
                       (" checkpoint" if len(s.trust.history()["checkpoints"]) > cps else "")
                out.append({"phase": phase, "kind": kind.strip() or "neither", "trust_ms": t["trust_ms"],
                            "retrain_select_ms": t["retrain_ms"] + t["select_ms"]})
        st = s.store.state()  # the other per-label call, made before the timed part of the worker
        t0 = time.perf_counter()
        for _ in range(20):
            s.trust.training_labels(st.cls, st.unsure)
        mask_ms = 1e3 * (time.perf_counter() - t0) / 20
        t0 = time.perf_counter()
        s.suspect_labels(20)
        suspects_ms = 1e3 * (time.perf_counter() - t0)
        n_labels = int((s.label_array() >= 0).sum())
    return out, suspects_ms, n_labels, mask_ms


def summarise2(records):
    import pandas as pd

    df = pd.DataFrame(records)
    rows = []
    for (phase, kind), part in df.groupby(["phase", "kind"], sort=False):
        rows.append({"phase": phase, "kind": kind, "n": len(part),
                     "trust_p50": f"{part.trust_ms.median():.1f}", "trust_p95": f"{np.percentile(part.trust_ms, 95):.1f}",
                     "rs_p50": f"{part.retrain_select_ms.median():.0f}"})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", type=C.parse_names, default=["digits", "fashion"])
    p.add_argument("--budgets", type=C.parse_ints, default=[50, 100, 200])
    p.add_argument("--runs", type=int, default=6)
    p.add_argument("--reps", type=int, default=25)
    p.add_argument("--n-fashion", type=int, default=3000)
    p.add_argument("--n", type=int, default=100_000, help="pool size of the cost part")
    p.add_argument("--labels", type=int, default=40, help="timed labels per phase of the cost part")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--name", default="bench_trust")
    a = p.parse_args(argv)
    if a.quick:
        a.datasets, a.budgets, a.runs, a.reps, a.n, a.labels = ["digits"], [50, 100], 1, 4, 20_000, 12
    info = C.machine_info("cpu")
    print(C.machine_line(info), flush=True)
    from alwidget._util import limit_threads
    from alwidget.session import default_threads

    rec1 = []
    for name in a.datasets:
        X, y = load(name, a.n_fashion)
        print(f"{name}: {X.shape}", flush=True)
        with limit_threads(default_threads()):  # the Session's worker pool (spin-waiting pools crawl under load)
            rec1 += part1(name, X, y, a.budgets, a.runs, a.reps)
    rows1 = summarise1(rec1)
    rec2, suspects_ms, n_labels, mask_ms = part2(a.n, a.labels, warmup=20)
    rows2 = summarise2(rec2)
    t1 = C.markdown_table(rows1, [("dataset", "features"), ("n_labels", "labels"), ("truth_e", "true acc. on E"),
                                  ("truth", "on all unlabelled"), ("method", "estimate"), ("bias", "bias (E)"),
                                  ("rmse", "RMSE (E)"), ("coverage", "95 % coverage (E)"),
                                  ("half", "mean half-width"), ("rmse_all", "RMSE (all unlabelled)"),
                                  ("coverage_all", "coverage (all unlabelled)"), ("n", "n")])
    t2 = C.markdown_table(rows2, [("phase", "Check my model"), ("kind", "on that label"), ("n", "labels"),
                                  ("trust_p50", "trust work p50 (ms)"), ("trust_p95", "p95 (ms)"),
                                  ("rs_p50", "retrain + select p50 (ms)")])
    print(t1, "\n", t2, f"\nsuspect_labels(20) at {n_labels} labels, N = {a.n}: {suspects_ms:.0f} ms; "
          f"training_labels {mask_ms:.2f} ms", sep="\n")
    settings = (f"part 1: {', '.join(a.datasets)}; margin sampling B = {BATCH}; budgets {a.budgets}; {a.runs} runs x "
                f"{a.reps} test repetitions of {M_TESTS} tests; E = 25 % of the pool; part 2: N = {a.n}, D = 512, "
                f"C = 10, {a.labels} timed labels per phase after 20 warm-up labels")
    notes = [f"suspect_labels(20) (5-fold cross-validation, on demand) at {n_labels} labels, N = {a.n}: "
             f"{suspects_ms:.0f} ms",
             f"TrustMonitor.training_labels (masking tests, watching E; once per label before the fit): "
             f"{mask_ms:.2f} ms at N = {a.n}"]
    C.write_results(a.name, title="Know when you are done: estimate quality and cost per label", settings=settings,
                    info=info, tables=[("Accuracy estimate vs the truth on E (its target) and on all unlabelled "
                                        "images", t1),
                                       ("Time the trust work adds to a label's round trip", t2)],
                    records=rec1 + rec2, notes=notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
