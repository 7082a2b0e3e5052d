"""Shared plumbing of the strategies: the registry, the per-call context, small helpers.

A strategy is a function ``fn(ctx, k, **params) -> (indices, info)`` registered under a name.
``ctx`` (:class:`Context`) holds the validated pool, the cached feature geometry and, for
model-based strategies, the probe. ``k`` is already capped at the number of candidates
(unlabelled and not excluded); the function returns exactly ``k`` distinct candidates.
``info`` holds ``reason`` (one plain sentence for the person labelling) and ``detail`` (the
technical sentence: thresholds, counts, parameters).
"""
from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass, field

import numpy as np

from ..geometry import Geometry

__all__ = ["Context", "REGISTRY", "register", "round_seed", "top_k"]

#: name -> Strategy
REGISTRY: dict = {}


@dataclass(frozen=True)
class Strategy:
    name: str
    fn: object
    needs_model: bool
    summary: str

    @property
    def params(self) -> frozenset | None:
        """Keyword parameters the strategy accepts (None: anything); read once per function
        (inspect.signature cost 0.17 ms of every select call)."""
        if self.fn not in _PARAMS:
            sig = inspect.signature(self.fn)
            _PARAMS[self.fn] = (None if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
                                else frozenset(n for n, p in sig.parameters.items() if p.kind is p.KEYWORD_ONLY))
        return _PARAMS[self.fn]


_PARAMS: dict = {}  # strategy function -> its keyword parameters (Strategy.params)


def register(name: str, *, needs_model: bool = False, summary: str = ""):
    """Decorator: add a strategy to the registry under ``name``."""

    def deco(fn):
        REGISTRY[name] = Strategy(name, fn, needs_model, summary or (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return deco


def round_seed(seed: int, labels, *, labelled=None) -> int:
    """The seed of one selection round: a hash of ``seed``, the labelled indices and their classes.

    Successive rounds (one more label) get unrelated seeds, so random parts (random sampling,
    tie orders, fills, dropout masks, DropQuery's k-means) never replay the previous round;
    the same seed and the same labels give the same value. Returns an int in [0, 2**31).
    ``labelled``: ``flatnonzero(labels >= 0)`` when the caller has it (no pass over the labels).
    """
    lab = np.asarray(labels)
    idx = np.flatnonzero(lab >= 0) if labelled is None else np.asarray(labelled, dtype=np.int64)  # sorted
    h = hashlib.blake2b(digest_size=8)
    h.update(np.int64(seed).tobytes())
    h.update(idx.astype("<i8").tobytes())
    h.update(lab[idx].astype("<i8").tobytes())
    return int.from_bytes(h.digest(), "little") >> 33


@dataclass
class Context:
    """One selection call: validated inputs plus lazily built geometry and probe.

    features : the caller's feature object (handed to the probe so its pool cache hits)
    labels : (N,) int64, -1 = unlabelled
    seed : the round's seed (:func:`round_seed` of the caller's seed and these labels)
    excluded : (N,) bool, unlabelled rows that must never be proposed (None: none). They stay
        in the pool for geometry (k-means, densities, coverage) and for the probe.
    """

    features: object
    labels: np.ndarray
    seed: int
    geometry_seed: int = 0
    probe: object = None
    backend: object = None
    device: object = None
    excluded: np.ndarray | None = None
    _geometry: Geometry | None = field(default=None, repr=False)

    @property
    def geometry(self) -> Geometry:
        if self._geometry is None:
            self._geometry = Geometry.of(self.features, backend=self.backend)
        return self._geometry

    @property
    def n_samples(self) -> int:
        return int(self.labels.shape[0])

    @property
    def available(self) -> np.ndarray:
        """(N,) bool, a fresh copy: unlabelled and not excluded (what may be proposed)."""
        ok = self.labels < 0
        if self.excluded is not None:
            ok &= ~self.excluded
        return ok

    @property
    def candidates(self) -> np.ndarray:
        """Indices that may be proposed (unlabelled and not excluded), ascending."""
        return np.flatnonzero(self.available)

    @property
    def labelled(self) -> np.ndarray:
        return np.flatnonzero(self.labels >= 0)

    @property
    def seen_classes(self) -> np.ndarray:
        """Class ids that have at least one label."""
        return np.unique(self.labels[self.labels >= 0])

    def rng(self, salt: int = 0) -> np.random.Generator:
        return np.random.default_rng([int(self.seed), int(salt)])

    def fitted_probe(self, n_classes=None):
        """The caller's probe (assumed fitted on this pool), else a fresh LinearProbe fitted here."""
        if self.probe is None:
            from ..probe import LinearProbe

            self.probe = LinearProbe(seed=self.seed, device="auto" if self.device is None else self.device)
            self.probe.fit(self.features, self.labels, n_classes=n_classes)
        return self.probe

    def proba(self, n_classes=None) -> np.ndarray:
        """(N, C) class probabilities of the pool from the probe (read-only when the probe caches
        them: LinearProbe.pool_proba, no copy). On big pools they may be reduced-precision
        (``proba_exact``); rankings re-score their shortlist with :meth:`exact_proba`."""
        probe = self.fitted_probe(n_classes)
        p = np.asarray(probe.pool_proba() if _is_linear_probe(probe) else probe.predict_proba())
        if p.ndim != 2 or p.shape[0] != self.n_samples:
            raise ValueError(f"probe scores {p.shape[0] if p.ndim else 0} rows but features have "
                             f"{self.n_samples}; pass a probe fitted on these features, or probe=None")
        return p


    @property
    def proba_exact(self) -> bool:
        """Whether :meth:`proba` is the probe's float32 result (always, for probes without the flag)."""
        p = self.probe
        return not (_is_linear_probe(p) or getattr(type(p), "exact_rows", False)) or p.proba_exact

    def exact_proba(self, rows) -> np.ndarray:
        """(len(rows), C) float32 probabilities of these pool rows, from the exact pass when the
        pool's were reduced-precision."""
        if not self.proba_exact:
            return np.asarray(self.probe.exact_proba(rows))
        return self.proba()[np.asarray(rows, dtype=np.int64)]


def _is_linear_probe(probe) -> bool:
    """A LinearProbe itself (wrappers such as AnchorAL's subpool probe delegate attributes to one
    fitted on another pool, so hasattr() would read the wrong rows; a wrapper that answers for its
    own rows says so with a class attribute ``exact_rows = True``)."""
    from ..probe import LinearProbe

    return isinstance(probe, LinearProbe)


def top_k(scores: np.ndarray, candidates: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """The ``k`` candidates with the highest scores; ties broken by a seeded random order.

    Only the candidates scoring at least the k-th best score are sorted (the full lexsort of a
    100k pool took ~10 ms of a margin round); the result is the same as sorting everything. The
    random order (a permutation of all candidates, ``rng``'s only draw) is drawn only when the
    sorted scores hold a tie: without one it cannot change the order."""
    s = np.asarray(scores, dtype=np.float64)
    if 0 < k < s.size:
        # Rows at -inf (outside an exact shortlist) cannot be among the k best when k others are
        # not: numpy's partition over 100k mostly equal values took 15-18 ms, over the rest 0.01 ms.
        live = np.flatnonzero(s != -np.inf)
        live = live if live.size >= k else np.arange(s.size)
        sl = s[live]
        kth = np.partition(sl, sl.size - k)[sl.size - k]
        keep = live[sl >= kth]
    else:
        keep = np.arange(s.size)
    neg = -s[keep]
    order = np.argsort(neg, kind="stable")
    if np.any(neg[order[1:]] == neg[order[:-1]]):  # a tie: the seeded order breaks it
        order = np.lexsort((rng.permutation(candidates.size)[keep], neg))
    return candidates[keep[order][:k]]


#: What a cold-start strategy does, in the words of ``info["reason"]``.
COLD_START_WORDS = {"typiclust": "typical images of groups of look-alikes",
                    "probcover": "images that stand for as many look-alikes as possible",
                    "coreset": "images unlike anything labelled so far",
                    "random": "images at random"}


def check_cold_start(cold_start: str) -> None:
    if cold_start not in REGISTRY or REGISTRY[cold_start].needs_model or cold_start == "auto":
        raise ValueError(f"cold_start must be a strategy that needs no model "
                         f"({', '.join(n for n, s in REGISTRY.items() if not s.needs_model and n != 'auto')}), "
                         f"got {cold_start!r}")


def model_cold_start(ctx: Context, k: int, name: str, cold_start: str, params: dict):
    """Run ``cold_start`` in place of a model-based strategy that has fewer than 2 labelled classes."""
    check_cold_start(cold_start)
    n_seen = ctx.seen_classes.size
    idx, info = call(cold_start, ctx, k, params)
    what = COLD_START_WORDS.get(cold_start, f"images chosen by {cold_start}")
    info["reason"] = (f"Picking {what} until two classes have labels "
                      f"({n_seen} so far): only then can the model say what it is unsure of")
    info["detail"] = (f"{cold_start} (cold start): {name} needs labels from at least 2 classes "
                      f"({n_seen} labelled so far); {info.get('detail', '')}").rstrip("; ")
    info["requested"] = name
    return idx, info


def call(name: str, ctx: Context, k: int, params: dict):
    """Run a registered strategy with the subset of ``params`` it accepts."""
    strat = REGISTRY[name]
    ok = strat.params
    kw = dict(params) if ok is None else {p: v for p, v in params.items() if p in ok}
    idx, info = strat.fn(ctx, k, **kw)
    info.setdefault("strategy", name)
    info.setdefault("detail", info.get("reason", name))
    return np.asarray(idx, dtype=np.int64), info
