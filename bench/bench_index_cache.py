"""Benchmark: AnchorAL's search index built, then read back from the cache folder after a restart.

What a user on a huge pool pays for the index in each new kernel: ``anchoral.warm(X)``, the call a
Session's background thread makes at its start (rounds before it is ready run on the whole pool).
Each run is a fresh process on the same synthetic pool (``_common.make_features``, unit rows): the
first on an empty cache folder (faiss build + the file's write), then ``--restarts`` more that find
the file (read + checks). Also reported: the file's size, and whether each restart's index returns
the same neighbours as the first one's for 10 pool rows (``IVFIndex.search``, k = 114). The same
run with ``anchoral.INDEX_CACHE = False`` times a rebuild in a restarted process, the old behaviour.

    .venv/bin/python bench/bench_index_cache.py --n 1000000 --restarts 2
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as C


def child(n: int, cache: bool) -> dict:
    import os

    import numpy as np

    from alwidget import anchoral
    from alwidget.geometry import Geometry

    X, _ = C.make_features(n, 512, 10, seed=0)
    anchoral.INDEX_CACHE = cache
    anchoral.IVF_MIN = min(anchoral.IVF_MIN, n)  # small smoke runs take the IVF path too
    Geometry.of(X)  # the unit rows, which a Session builds before its index too
    t = time.perf_counter()
    anchoral.warm(X)
    took = time.perf_counter() - t
    index = anchoral._ivf(Geometry.of(X))
    _, idx = index.search(Geometry.of(X).X[:10], 114)
    folder = Path(os.environ["ALWIDGET_CACHE_DIR"], "indexes")
    size = sum(f.stat().st_size for f in folder.glob("ivf-*.npz")) if folder.exists() else 0
    return {"s": took, "bytes": size, "lists": np.asarray(idx).tolist()}


def run(n: int, cache: bool, env: dict) -> dict:
    code = f"import json, bench_index_cache as B; print(json.dumps(B.child({n}, {cache})))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=1800,
                          cwd=Path(__file__).resolve().parent)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    import os

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--restarts", type=int, default=2)
    p.add_argument("--out", default="bench_index_cache")
    args = p.parse_args(argv)
    info = C.machine_info("cpu")
    print(C.machine_line(info))
    env = dict(os.environ, ALWIDGET_CACHE_DIR=tempfile.mkdtemp(prefix="alwidget-index-cache-"))
    first = run(args.n, True, env)
    rows = [{"run": "first (empty cache folder)", "what": "build + write", "s": C.fmt(first["s"], 2),
             "mb": C.fmt(first["bytes"] / 2**20, 0), "same": "-"}]
    for i in range(args.restarts):
        r = run(args.n, True, env)
        rows.append({"run": f"restart {i + 1}", "what": "read", "s": C.fmt(r["s"], 2), "mb": C.fmt(r["bytes"] / 2**20, 0),
                     "same": "yes" if r["lists"] == first["lists"] else "NO"})
    r = run(args.n, False, env)
    rows.append({"run": "restart, INDEX_CACHE off (before)", "what": "build", "s": C.fmt(r["s"], 2), "mb": "-",
                 "same": "yes" if r["lists"] == first["lists"] else "no (a rebuild)"})
    for row in rows:
        print(f"  {row['run']:<36} {row['what']:<14} {row['s']:>7} s  file {row['mb']} MB  same lists: {row['same']}")
    cols = [("run", "process"), ("what", "index"), ("s", "anchoral.warm (s)"), ("mb", "file (MB)"),
            ("same", "same neighbour lists as the first")]
    settings = (f"synthetic Gaussian-mixture pool, N = {args.n}, D = 512, unit rows; each row a fresh process on "
                f"one cache folder; IVF codec {json.dumps('pq4')}, sqrt(N) cells")
    path = C.write_results(args.out, title="AnchorAL's search index: build vs read after a restart", settings=settings,
                           info=info, tables=[("", C.markdown_table(rows, cols))], records=rows, notes=[])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
