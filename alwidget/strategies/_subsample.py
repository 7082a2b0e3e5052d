"""The density cold start on huge pools: a fixed, seeded random subsample of the pool.

TypiClust's k-means and typicality, and auto's neighbour ratio, need pool-level density, and on
the whole of a 1M-row pool they cost about 40 s on two cores (typicality's k-nearest distances
alone 30 s). Density is a property of the distribution, which a uniform sample of
:data:`SUBSAMPLE_SIZE` rows estimates, so from :data:`SUBSAMPLE_MIN` rows they run on one
(design spec, scale.md §4). ProbCover needs none of this: it already measures coverage on a seeded
sample (:mod:`._cover`, at most 10,000 rows) in which labelled rows outside still cover.

The subsample depends only on the pool's size and ``geometry_seed`` (the seed of the cached
clusterings), never on the labels, so it is the same every round and its geometry (PCA, k-means,
typicality) is computed once. Labelled rows outside it still count: the strategy gets their unit
rows (:attr:`Cold.outside`), and TypiClust counts each in the cluster whose members' mean is
nearest. Picks come from the subsample's candidates (unlabelled, not excluded).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..geometry import Geometry

__all__ = ["SUBSAMPLE_MIN", "SUBSAMPLE_SIZE", "Cold", "applies", "cold_context", "density_geometry",
           "reason_words", "subsample_geometry"]

#: Pools of at least this many rows run the density cold start on a subsample (equal to
#: anchoral.SUBPOOL_MIN; a TypiClust round on the whole of a 200k pool took 2.2 s (median), at 1M 40 s).
SUBSAMPLE_MIN = 200_000
#: Rows of the subsample (BENCHMARKS.md §7, "The cold start on huge pools"): at 1M, auto's first call
#: took 4.0 s on 50k rows and 9.8 s on 100k (two busy cores); subsamples of 1/10 (synthetic) and 1/6
#: (Fashion-MNIST pixels) of the pool labelled as well as the whole pool at 10-50 labels. A class of
#: 1 % of the pool keeps ~500 rows in it.
SUBSAMPLE_SIZE = 50_000
_SALT = 23  # keeps this sample apart from the other seeded samples of the pool


@dataclass(frozen=True)
class Cold:
    """A cold start's view of a huge pool: ``ctx`` on the subsample's rows ``rows`` (sorted pool
    indices), and ``outside`` the (m, D) unit rows of the labelled pool rows not in it."""

    ctx: object
    rows: np.ndarray
    outside: np.ndarray
    n_pool: int

    def info(self) -> dict:
        """The entry ``info["cold_subsample"]``: what the cold start ran on."""
        return {"rows": int(self.rows.size), "pool": int(self.n_pool), "outside_labelled": int(self.outside.shape[0])}

    def detail(self) -> str:
        """What to add to ``info["detail"]`` (technical)."""
        return (f"; on a seeded {self.rows.size}-row subsample of {self.n_pool} "
                f"({self.outside.shape[0]} labelled rows outside it counted)")


def _check(min_pool, size):
    for name, v in (("min_pool", min_pool), ("size", size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"cold subsample {name} must be a positive integer, got {v!r}")
    return int(min_pool), int(size)


def subsample_geometry(geo: Geometry, size: int, seed: int) -> tuple[np.ndarray, Geometry]:
    """(rows, Geometry of those rows): the seeded subsample of ``size`` rows of ``geo``'s pool.

    Cached on the pool's Geometry (not in :meth:`Geometry.of`'s small cache, where it could push
    out the pool itself); the sample's unit rows are gathered once (100 MB at 50k x 512)."""
    key = (int(size), int(seed))
    with geo.lock:
        memo = geo.scratch("cold_subsample")
        if key not in memo:
            rows = np.sort(np.random.default_rng([int(seed), _SALT]).choice(geo.n_samples, int(size), replace=False))
            X = geo.rows(rows)
            fp = f"cold:{geo.fingerprint}:{size}:{seed}"
            memo[key] = (rows, Geometry(X, fp, geo.backend, geo.device, X=X))
        return memo[key]


def applies(n: int) -> bool:
    """Whether a pool of ``n`` rows runs its density cold start on the subsample."""
    min_pool, size = _check(SUBSAMPLE_MIN, SUBSAMPLE_SIZE)
    return n >= min_pool and n > size


def density_geometry(geo: Geometry, seed: int) -> Geometry:
    """The Geometry to measure the pool's density on (auto's neighbour ratio): the seeded
    subsample's (``seed``: the geometry seed) on huge pools, the pool's ``geo`` otherwise."""
    if not applies(geo.n_samples):
        return geo
    return subsample_geometry(geo, SUBSAMPLE_SIZE, seed)[1]


def reason_words(entry) -> str:
    """What ``info["reason"]`` adds for an ``info["cold_subsample"]`` entry ("" for False/None)."""
    if not entry:
        return ""
    return f" (from a fixed random sample of {entry['rows']:,} of the {entry['pool']:,} images)"


def cold_context(ctx) -> Cold | None:
    """The subsample's :class:`Cold` view of ``ctx``, or None unless :func:`applies` (pools of at
    least :data:`SUBSAMPLE_MIN` rows and more than :data:`SUBSAMPLE_SIZE`): then the cold start runs
    on the whole pool, as before.

    The view's context keeps ``ctx``'s seeds; its labels and exclusions are those of the sample's
    rows, so its candidates are the pool's candidates in the sample."""
    if not applies(ctx.n_samples):
        return None
    n = ctx.n_samples
    geo = ctx.geometry
    rows, sub = subsample_geometry(geo, SUBSAMPLE_SIZE, ctx.geometry_seed)
    lab = ctx.labelled
    outside = lab[~np.isin(lab, rows, assume_unique=True)]
    excluded = None if ctx.excluded is None else ctx.excluded[rows]
    view = replace(ctx, features=sub.X, labels=ctx.labels[rows], excluded=excluded, probe=None, _geometry=sub)
    return Cold(view, rows, geo.rows(outside), n)
