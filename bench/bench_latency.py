"""Benchmark 1: label latency, ours (alwidget.Session) vs the obvious scikit-activeml loop.

Data: synthetic embeddings (Gaussian mixture with 3 sub-modes per class, D = 512, C = 10, rows
L2-normalised; see ``_common.make_features``), the same array for every tool in one run.

Ours, per oracle label: ``Session.label(i, cls)`` (durable SQLite commit) -> ``next_batch()``
(waits for the background retrain of the probe, rescore of the whole pool and the next batch;
from ``anchoral.SUBPOOL_MIN`` rows the batch comes first and the rescore after it) -> ``wait()``
(the map's scores too, timed separately); ``i`` is always the first point of the batch the session suggested. A warm-up of labels
(the same random, class-stratified set for every tool) comes first and is not timed.

Peers, per oracle label: the label is added, then
- scikit-activeml: ``UncertaintySampling(method="margin_sampling").query(X, y, clf, batch_size=B)``
  with ``clf = SklearnClassifier(LogisticRegression())`` refit on the labelled rows each query;
- sklearn (bare): ``LogisticRegression().fit(X[labelled])``, ``predict_proba(X)``, margin, top-B
  -- the same loop without scikit-activeml's validation, as a lower bound for the peer approach.

    .venv/bin/python bench/bench_latency.py                       # N = 10k, 100k; auto, dropquery, margin
    .venv/bin/python bench/bench_latency.py --n 1000000 --device cuda --no-peer
    .venv/bin/python bench/bench_latency.py --quick               # N = 10k, few labels
"""
from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import _common as C


def class_name(c: int) -> str:
    return f"class_{c}"


def warmup_indices(y: np.ndarray, n_warmup: int, seed: int) -> np.ndarray:
    """``n_warmup`` random indices covering the classes round-robin (same for every tool)."""
    rng = np.random.default_rng(seed + 1)
    classes = np.unique(y)
    per = [rng.permutation(np.flatnonzero(y == c)) for c in classes]
    out = [per[j % len(classes)][j // len(classes)] for j in range(n_warmup)]
    return np.asarray(out, dtype=np.int64)


# --------------------------------------------------------------------------- ours

def _check_worker(s, when: str) -> None:
    err = s.status.get("error")
    if err:
        raise RuntimeError(f"the session's background worker failed during {when}: {err}")


def run_ours(X, y, *, strategy, device, batch, n_warmup, n_timed, seed, workdir, wait_index=False) -> dict:
    """Time label -> wait -> next_batch through a Session backed by an on-disk store. ``wait_index``:
    from anchoral.SUBPOOL_MIN rows, wait after the warm-up until the subpools' search index is built
    (rounds before it run on the whole pool), and report when it was ready."""
    from alwidget import Session, anchoral
    from alwidget.geometry import Geometry
    from alwidget.probe import clear_pool_cache

    # Cold start for every strategy: no geometry or standardised pool left by the previous one.
    Geometry.clear_cache()
    clear_pool_cache()
    gc.collect()
    n_classes = int(y.max()) + 1
    store = Path(workdir) / f"latency_{len(X)}_{strategy}.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(str(store) + suffix).unlink(missing_ok=True)
    t0 = time.perf_counter()
    s = Session(X, classes=[class_name(c) for c in range(n_classes)], store=str(store),
                strategy=strategy, seed=seed, device=device, batch_size=batch)
    t_init = time.perf_counter() - t0
    s.wait()
    s.next_batch()
    t_setup = time.perf_counter() - t0
    _check_worker(s, "setup")

    for i in warmup_indices(y, n_warmup, seed):
        s.label(int(i), class_name(int(y[i])))
    t1 = time.perf_counter()
    s.wait()
    t_warm = time.perf_counter() - t1
    _check_worker(s, "warm-up")
    t_index = None
    if len(X) >= anchoral.SUBPOOL_MIN:
        while wait_index and not anchoral.index_ready(X):
            time.sleep(0.1)
        t_index = time.perf_counter() - t0 if anchoral.index_ready(X) else None

    ack, total, scored, active, retrain, select, pending = [], [], [], [], [], [], 0
    batch_idx = list(s.next_batch())
    for _ in range(n_timed):
        i = int(batch_idx[0])
        t_a = time.perf_counter()
        s.label(i, class_name(int(y[i])))
        t_b = time.perf_counter()
        batch_idx = list(s.next_batch())  # what the user waits for to see the next batch
        t_c = time.perf_counter()
        s.wait()  # the map's new scores (later than the batch on huge pools)
        t_d = time.perf_counter()
        ack.append(t_b - t_a)
        total.append(t_c - t_a)
        scored.append(t_d - t_a)
        st = s.status
        active.append(str(st.get("active_strategy") or st.get("strategy")))
        # huge pools: the fit before the batch, the pool's rescore after it; both count here
        retrain.append((st.get("last_retrain_ms") or np.nan) + (st.get("last_rescore_ms") or 0.0))
        select.append(st.get("last_select_ms") or np.nan)
        pending += bool((st.get("strategy_info") or {}).get("index_pending"))
        _check_worker(s, "timed labels")
        if not batch_idx:
            break
    status = s.status
    n_threads = getattr(s, "n_threads", None)
    # Which pool pass the probe used in the last round (bf16 where calibrated faster, from LOWP_MIN rows).
    precision = "fp32" if getattr(s.probe, "proba_exact", True) else "bf16"
    s.close()
    del s
    gc.collect()
    used = sorted(set(active), key=active.index)
    return {"tool": "ours", "strategy": strategy, "init_s": t_init, "setup_s": t_setup, "warmup_wait_s": t_warm,
            "ack": C.percentiles(ack), "total": C.percentiles(total), "scored": C.percentiles(scored),
            "n_timed": len(total), "index_ready_s": t_index, "index_pending_rounds": pending,
            "active": used, "retrain_ms_p50": float(np.nanmedian(retrain)), "select_ms_p50": float(np.nanmedian(select)),
            "n_threads": n_threads, "precision": precision, "status": {k: v for k, v in status.items() if isinstance(v, (str, int, float, bool))},
            "times_ms": [t * 1000 for t in total]}


def _index_words(r) -> str:
    """The AnchorAL search index's part of a result line ("" below anchoral.SUBPOOL_MIN rows)."""
    if r.get("index_ready_s") is None and not r.get("index_pending_rounds"):
        return ""
    ready = "not built" if r.get("index_ready_s") is None else f"built {r['index_ready_s']:.0f} s after the start"
    return f" | search index {ready}; {r['index_pending_rounds']} of {r['n_timed']} timed rounds on the whole pool"


# --------------------------------------------------------------------------- peers

def time_oracle_loop(query, labels, y, n_timed):
    """First query's time, then ``n_timed`` times of (label the first suggested point -> next query)."""
    t0 = time.perf_counter()
    nxt = query()
    t_first = time.perf_counter() - t0
    total = []
    for _ in range(n_timed):
        i = int(nxt[0])
        t_a = time.perf_counter()
        labels[i] = y[i]
        nxt = query()
        total.append(time.perf_counter() - t_a)
    return t_first, total


def run_skactiveml(X, y, *, batch, n_warmup, n_timed, seed) -> dict:
    """scikit-activeml margin sampling with a LogisticRegression refit on every query."""
    from sklearn.linear_model import LogisticRegression
    from skactiveml.classifier import SklearnClassifier
    from skactiveml.pool import UncertaintySampling

    n_classes = int(y.max()) + 1
    clf = SklearnClassifier(LogisticRegression(max_iter=1000), classes=np.arange(n_classes),
                            missing_label=-1, random_state=seed)
    qs = UncertaintySampling(method="margin_sampling", missing_label=-1, random_state=seed)
    labels = np.full(len(y), -1, dtype=np.int64)
    w = warmup_indices(y, n_warmup, seed)
    labels[w] = y[w]

    def query():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return qs.query(X, labels, clf=clf, batch_size=batch)

    t_first, total = time_oracle_loop(query, labels, y, n_timed)
    return {"tool": "skactiveml", "strategy": "margin_sampling + LogisticRegression", "setup_s": t_first,
            "total": C.percentiles(total), "n_timed": len(total), "times_ms": [t * 1000 for t in total]}


def run_sklearn(X, y, *, batch, n_warmup, n_timed, seed) -> dict:
    """The bare loop: refit LogisticRegression on the labelled rows, margin over the pool, top-B."""
    from sklearn.linear_model import LogisticRegression

    labels = np.full(len(y), -1, dtype=np.int64)
    w = warmup_indices(y, n_warmup, seed)
    labels[w] = y[w]

    def query():
        m = labels >= 0
        clf = LogisticRegression(max_iter=1000).fit(X[m], labels[m])
        p = clf.predict_proba(X)
        part = np.partition(p, -2, axis=1)
        margin = part[:, -1] - part[:, -2]
        margin[m] = np.inf
        return np.argsort(margin, kind="stable")[:batch]

    t_first, total = time_oracle_loop(query, labels, y, n_timed)
    return {"tool": "sklearn (bare loop)", "strategy": "margin + LogisticRegression", "setup_s": t_first,
            "total": C.percentiles(total), "n_timed": len(total), "times_ms": [t * 1000 for t in total]}


# --------------------------------------------------------------------------- main

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=C.parse_ints, default=[10_000, 100_000], help="pool sizes, e.g. 10000,100000")
    p.add_argument("--strategies", type=C.parse_names, default=["auto", "dropquery", "margin"],
                   help="our Session strategies to time (comma-separated); margin is the peers' own strategy")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="our probe's device")
    p.add_argument("--batch", type=int, default=10, help="batch size B suggested after each label")
    p.add_argument("--warmup", type=int, default=20, help="labels given before timing (not timed)")
    p.add_argument("--labels", type=int, default=40, help="timed oracle labels per (tool, N)")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--wait-index", action="store_true",
                   help="from 200k rows: start timing once the subpools' search index is built (the steady state)")
    p.add_argument("--no-peer", action="store_true", help="time ours only (e.g. N = 1M on a GPU)")
    p.add_argument("--quick", action="store_true", help="N = 10k, 10 warm-up + 8 timed labels: a smoke run")
    p.add_argument("--out", default="bench_latency", help="results name under bench/results/")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.warmup, args.labels = [10_000], 10, 8
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            p.error("--device cuda: CUDA is not available on this machine; use --device cpu or auto")
    args.no_peer = args.no_peer or not C.peer_available()

    info = C.machine_info(args.device)
    print(C.machine_line(info))
    print(f"B = {args.batch}, warm-up {args.warmup} labels, {args.labels} timed labels, D = {args.dim}, "
          f"C = {args.classes}\n")
    records, rows = [], []
    workdir = tempfile.mkdtemp(prefix="alwidget-bench-")
    for n in args.n:
        t = time.perf_counter()
        X, y = C.make_features(n, args.dim, args.classes, seed=args.seed)
        print(f"N = {n}: data in {time.perf_counter() - t:.1f} s ({X.nbytes / 2**20:.0f} MB)", flush=True)
        results = []
        for strat in args.strategies:
            r = run_ours(X, y, strategy=strat, device=args.device, batch=args.batch, n_warmup=args.warmup,
                         n_timed=args.labels, seed=args.seed, workdir=workdir, wait_index=args.wait_index)
            results.append(r)
            print(f"  ours/{strat:<9} setup {r['setup_s']:.2f} s | label ack p50 {r['ack']['p50']:.1f} ms | "
                  f"label->next batch p50 {r['total']['p50']:.0f} ms, p95 {r['total']['p95']:.0f} ms "
                  f"(map scored p50 {r['scored']['p50']:.0f} ms) "
                  f"(retrain+rescore {r['retrain_ms_p50']:.0f} / select {r['select_ms_p50']:.0f} ms, "
                  f"{r['precision']} pool pass) "
                  f"| active: {'/'.join(r['active'])}{_index_words(r)}", flush=True)
        if not args.no_peer:
            for fn in (run_skactiveml, run_sklearn):
                r = fn(X, y, batch=args.batch, n_warmup=args.warmup, n_timed=args.labels, seed=args.seed)
                results.append(r)
                print(f"  {r['tool']:<19} label->next batch p50 {r['total']['p50']:.0f} ms, "
                      f"p95 {r['total']['p95']:.0f} ms", flush=True)
        peer = next((r for r in results if r["tool"] == "skactiveml"), None)
        for r in results:
            r["n"] = n
            records.append(r)
            speed = None
            if peer is not None and r is not peer:
                speed = f"{peer['total']['p50'] / max(r['total']['p50'], 1e-9):.1f}×"
            rows.append({"n": n, "tool": r["tool"] if r["tool"] != "ours" else f"ours ({r['strategy']})",
                         "what": "/".join(r["active"]) if r["tool"] == "ours" else r["strategy"],
                         "setup": C.fmt(r["setup_s"], 2),
                         "ack": C.fmt(r["ack"]["p50"], 1) if "ack" in r else "-",
                         "p50": C.fmt(r["total"]["p50"], 0), "p95": C.fmt(r["total"]["p95"], 0),
                         "scored": C.fmt(r["scored"]["p50"], 0) if "scored" in r else "-",
                         "split": (f"{r['retrain_ms_p50']:.0f} / {r['select_ms_p50']:.0f}"
                                   if r["tool"] == "ours" else None),
                         "precision": r.get("precision"),
                         "index": _index_words(r)[len(" | search index "):] or "-",
                         "speed": speed})
        del X, y
        gc.collect()

    cols = [("n", "N"), ("tool", "tool"), ("what", "strategy (active during timing)"),
            ("setup", "setup (s)"), ("ack", "label ack p50 (ms)"),
            ("p50", "label→next batch p50 (ms)"), ("p95", "p95 (ms)"), ("scored", "label→map's scores p50 (ms)"),
            ("split", "retrain+rescore / select p50 (ms)"), ("precision", "pool pass")]
    if any(r.get("index_ready_s") is not None or r.get("index_pending_rounds") for r in records):
        cols.append(("index", "AnchorAL search index"))
    if not args.no_peer:
        cols.append(("speed", "speed-up vs scikit-activeml (p50)"))
    settings = (f"synthetic Gaussian-mixture embeddings (D = {args.dim}, C = {args.classes}, rows L2-normalised, "
                f"seed {args.seed}); B = {args.batch}; {args.warmup} warm-up labels (random, class-stratified, "
                f"not timed) then {args.labels} timed oracle labels, each the first point of the tool's own "
                f"suggested batch; our device {args.device}" + ("; QUICK smoke run" if args.quick else "")
                + ("; timing starts once the AnchorAL search index is built (--wait-index)" if args.wait_index else ""))
    notes = ["ours: label() commits to an on-disk SQLite store before returning (label ack); then next_batch() "
             "waits for the session's worker thread (probe retrain + pool rescore + batch selection; from "
             "anchoral.SUBPOOL_MIN rows the batch is published before the pool's rescore) and wait() for the "
             "map's scores.",
             "setup: ours = Session construction + first batch from zero labels, with alwidget's in-process "
             "geometry and pool caches cleared before each strategy; peers = first query after the warm-up labels.",
             ("pool pass: the precision of our probe's rescore in the last round (bf16 from 20k rows where a one-off "
              "calibration found it faster on this machine; the uncertainty strategies re-score their shortlist in "
              "fp32, so their picks are fp32's)."),
             "ours (margin) runs the peers' own strategy (margin sampling) through the Session: the like-for-like "
             "row; auto and dropquery do more work per label (dropout passes, k-means on the candidates).",
             "scikit-activeml: UncertaintySampling(margin_sampling).query with SklearnClassifier("
             "LogisticRegression(max_iter=1000)) refit on the labelled rows at every query.",
             "sklearn (bare loop): LogisticRegression(max_iter=1000).fit on labelled rows + predict_proba on the "
             "pool + top-B margin, without scikit-activeml's input validation."]
    path = C.write_results(args.out, title="Label latency", settings=settings, info=info,
                           tables=[("", C.markdown_table(rows, cols))], records=records, notes=notes)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
