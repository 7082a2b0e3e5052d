"""Benchmark: bench_anchoral's long-tailed label efficiency with AnchorAL's IVF search forced on.

The long-tailed Fashion-MNIST pools of ``bench_anchoral.py`` (6.3k and 54k rows) are below
``anchoral.IVF_MIN``, so their neighbour lists are searched exactly and no IVF codec touches their
picks. This runs the same part with ``IVF_MIN = 0`` and the codec given first (``ann.CODECS``), so
that codecs can be compared on what they do to the picks, the minority items found and the probe's
recall. Every other argument goes to ``bench_anchoral.py`` (use ``--skip-speed``):

    .venv/bin/python bench/bench_anchoral_ivf.py pq4 --skip-speed --seeds 5 --out bench_anchoral_s16ivf_effnet_ivf_pq4
    .venv/bin/python bench/bench_anchoral_ivf.py fp16 --skip-speed --seeds 5 --features pixels --size 10000 --tail 1000 \\
        --out bench_anchoral_s16ivf_pixels_ivf_fp16
"""
from __future__ import annotations

import sys

import _common  # noqa: F401  (puts the checkout on sys.path)


def main(argv=None) -> int:
    from alwidget import anchoral, ann

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ann.CODECS:
        raise SystemExit(f"usage: bench_anchoral_ivf.py CODEC [bench_anchoral args]; CODEC one of {ann.CODECS}")
    anchoral.IVF_MIN = 0  # the IVF path on every pool
    anchoral.IVF_CODEC = argv[0]
    import bench_anchoral

    return bench_anchoral.main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
