"""Benchmark: what ``Session(features)`` costs on a huge pool before the learner starts.

Each repetition is a fresh process (the first whole-array pass of a process pays for fresh pages, as
a user's does): synthetic embeddings (``_common.make_features``), torch imported first (as after
embedding; ``--cold-import``: Session() imports it, as with features loaded from a file), then
``Session(X)`` timed without its learner (``_start_learner`` is a no-op here, so no cold start or
index build runs beside the timers), then its parts one by one: ``check_features``, ``fingerprint``,
the row items, the in-memory store. It times the checkout it lives in (``_common`` puts that first
on sys.path): for a before figure, copy it into a ``git archive`` of the older commit.

    .venv/bin/python bench/bench_session_init.py --n 1000000 --repeats 3
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import _common as C

PARTS = ["session_s", "check_features_s", "fingerprint_s", "row_items_s", "store_s"]


def child(n: int, dim: int, cold_import: bool) -> dict:
    if not cold_import:
        import torch  # noqa: F401 (a notebook that embedded has it loaded; Session() would import it)
    from alwidget import Session, _util, items, store
    from alwidget.learner import Learner

    X, _ = C.make_features(n, dim, 10, seed=0)
    Learner._start_learner = lambda self: None  # Session() alone: no worker, no second thread
    out = {}
    t = time.perf_counter()
    s = Session(X, store=":memory:", strategy="margin", device="cpu")
    out["session_s"] = time.perf_counter() - t
    out["fingerprint"] = s.fingerprint
    s.store.close()
    for name, fn in [("check_features_s", lambda: _util.check_features(X)),
                     ("fingerprint_s", lambda: _util.fingerprint(X)), ("row_items_s", lambda: items.row_items(X)),
                     ("store_s", lambda: store.LabelStore(":memory:", items.row_items(X)).close())]:
        t = time.perf_counter()
        fn()
        out[name] = time.perf_counter() - t
    out["store_s"] -= out["row_items_s"]  # the store's own share
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3, help="fresh processes")
    p.add_argument("--cold-import", action="store_true", help="torch not imported before Session()")
    p.add_argument("--quick", action="store_true", help="smoke run: N = 100k, one process")
    p.add_argument("--out", default="bench_session_init")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.repeats = 100_000, 1
    if args.child:
        print(json.dumps(child(args.n, args.dim, args.cold_import)))
        return 0
    info = C.machine_info("cpu")
    print(C.machine_line(info), flush=True)
    runs = []
    for _ in range(args.repeats):
        cmd = [sys.executable, __file__, "--child", "--n", str(args.n), "--dim", str(args.dim)] + \
            (["--cold-import"] if args.cold_import else [])
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        print("  " + ", ".join(f"{k} {v:.2f}" for k, v in r.items() if k in PARTS), flush=True)
        runs.append(r)
    fps = {r["fingerprint"] for r in runs}
    row = {k: f"{statistics.median(r[k] for r in runs):.2f} ({', '.join(f'{r[k]:.2f}' for r in runs)})"
           for k in PARTS}
    row["fingerprint"] = ", ".join(sorted(fps))
    cols = [("session_s", "Session() (s)"), ("check_features_s", "check_features (s)"),
            ("fingerprint_s", "fingerprint (s)"), ("row_items_s", "row items (s)"), ("store_s", "store (s)"),
            ("fingerprint", "fingerprint")]
    print(f"N = {args.n}: Session() median {row['session_s']} s; fingerprint {row['fingerprint']}")
    path = C.write_results(args.out, title="Session() before its learner starts", info=info, records=runs,
                           settings=f"N = {args.n}, D = {args.dim}, synthetic; {args.repeats} fresh processes; "
                                    f"torch {'imported by Session()' if args.cold_import else 'imported before'}; "
                                    "median (each run)", tables=[("", C.markdown_table([row], cols))],
                           notes=["parts after Session() in the same process, one at a time"])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
