"""Benchmark: a Session's first rounds on a huge pool, as a user meets them.

Session(X) -> the first batch (no labels: the cold start) -> one label (one class: the cold start's
second round) -> a pause while the user looks at it -> the first labels of two classes -> the next batch (on pools from
``anchoral.SUBPOOL_MIN`` rows, the first subpool round: it needs the IVF index, which the Session
builds in a second thread from its start). Synthetic embeddings (``_common.make_features``).

    .venv/bin/python bench/bench_first_rounds.py --n 1000000 --pause 25
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import _common as C


def first_rounds(X, y, strategy: str, pause_s: float) -> dict:
    from alwidget import Session

    t0 = time.perf_counter()
    s = Session(X, classes=[f"c{c}" for c in range(int(y.max()) + 1)], store=":memory:", strategy=strategy,
                device="cpu", batch_size=10)
    built = time.perf_counter() - t0
    s.wait()
    first = time.perf_counter() - t0
    cold_reason = s.status["reason"]
    t2 = time.perf_counter()
    batch = s.next_batch()
    s.label(int(batch[0]), f"c{int(y[batch[0]])}")  # one label, one class: still the cold start
    s.next_batch()
    second = time.perf_counter() - t2
    second_active = s.status["active_strategy"]
    time.sleep(pause_s)  # the user looks at the first batches
    indexer = getattr(s, "_indexer", None)
    ready = indexer is not None and not indexer.is_alive()  # the index is built before the labels
    rng = np.random.default_rng(0)
    t1 = time.perf_counter()
    with s._cond:  # two labels as one snapshot: one round, as a quick user's two clicks coalesce
        for c in (0, 1):  # two classes at least (with the cold start's label)
            s.label_many(rng.choice(np.flatnonzero((y == c) & (s.label_array() < 0)), 1), f"c{c}")
    s.next_batch()
    labelled = time.perf_counter() - t1
    st = s.status
    out = {"strategy": strategy, "session_s": built, "first_batch_s": first, "second_cold_s": second,
           "second_active": second_active, "cold_reason": cold_reason, "pause_s": pause_s, "first_labels_to_batch_s": labelled,
           "active": st["active_strategy"], "index_built_ahead": ready, "retrain_ms": st["last_retrain_ms"],
           "select_ms": st["last_select_ms"], "error": st["error"]}
    s.close()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--strategy", default="margin")
    p.add_argument("--pause", type=float, default=25.0, help="seconds the user looks at the first batch")
    p.add_argument("--out", default="bench_first_rounds")
    args = p.parse_args(argv)
    info = C.machine_info("cpu")
    print(C.machine_line(info))
    X, y = C.make_features(args.n, args.dim, 10, seed=0)
    r = first_rounds(X, y, args.strategy, args.pause)
    print(f"N = {args.n}: Session() {r['session_s']:.1f} s, first batch {r['first_batch_s']:.1f} s; one label -> "
          f"cold-start batch {r['second_cold_s']:.2f} s ({r['second_active']}); reason: {r['cold_reason']}", flush=True)
    print(f"N = {args.n}: first batch {r['first_batch_s']:.1f} s ({r['active']}); after a {args.pause:.0f} s pause, "
          f"first labels -> batch {r['first_labels_to_batch_s']:.2f} s (fit {r['retrain_ms']:.0f} ms, select "
          f"{r['select_ms']:.0f} ms); index built before the labels: {r['index_built_ahead']}",
          flush=True)
    rows = [{k: (C.fmt(v, 2) if isinstance(v, float) else v) for k, v in r.items()}]
    cols = [("strategy", "strategy"), ("session_s", "Session() returns (s)"),
            ("first_batch_s", "Session() → first batch (s)"), ("second_cold_s", "one label → cold-start batch (s)"),
            ("pause_s", "pause (s)"),
            ("first_labels_to_batch_s", "first labels → batch (s)"), ("active", "strategy then"),
            ("index_built_ahead", "index built before the labels"), ("retrain_ms", "fit (ms)"),
            ("select_ms", "selection (ms)"), ("error", "error")]
    path = C.write_results(args.out, title="A Session's first rounds", info=info, records=[r],
                           settings=f"N = {args.n}, D = {args.dim}, synthetic; {args.strategy}; pause {args.pause} s",
                           tables=[("", C.markdown_table(rows, cols))], notes=[])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
