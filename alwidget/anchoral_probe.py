"""The probe of an AnchorAL subpool (:mod:`alwidget.anchoral`): a probe fitted on the whole pool,
read on some of its rows (the subpool and the labelled rows), without scoring the rest.
"""
from __future__ import annotations

import numpy as np

__all__ = ["RowsProbe"]


class RowsProbe:
    """A probe fitted on the whole pool, read on some of its rows (the subpool + labelled).

    ``predict_proba()``, ``predict()``, ``predict_dropout()`` and ``transform()`` with ``X=None``
    answer for ``rows`` only (in that order); everything else is the wrapped probe's. A view for
    one selection call: it keeps the rows' scores and standardised features once gathered."""

    #: The strategies' Context reads ``proba_exact`` / ``exact_proba`` of this wrapper itself (they
    #: answer for its rows), so a reduced-precision pool pass still gets its exact shortlist re-score.
    exact_rows = True

    def __init__(self, probe, rows):
        self._probe = probe
        self._rows = np.asarray(rows, dtype=np.int64)
        self._proba = None
        self._exact = True
        self._xs = None  # our rows of the pool's standardised tensor, gathered once per call

    def __getattr__(self, name):
        return getattr(self._probe, name)

    def transform(self, X=None):
        if X is not None:
            return self._probe.transform(X)
        if self._xs is None:  # read-only, like the probe's own pool tensor
            self._xs = _gather(self._probe.transform(None), self._rows)
        return self._xs

    def predict_proba(self, X=None) -> np.ndarray:
        if X is not None:
            return self._probe.predict_proba(X)
        return self._rows_proba().copy()

    def _rows_proba(self) -> np.ndarray:
        if self._proba is None:
            cached = getattr(self._probe, "_proba", None)  # the pool's scores, when computed already
            if cached is not None:  # possibly the pool's bf16 pass
                self._proba, self._exact = cached[self._rows], bool(getattr(self._probe, "proba_exact", True))
            else:
                self._proba, self._exact = self._score_rows(), True
        return self._proba

    @property
    def proba_exact(self) -> bool:
        """Whether predict_proba() is float32-exact on these rows."""
        self._rows_proba()
        return self._exact

    def exact_proba(self, rows) -> np.ndarray:
        """Float32 probabilities of positions ``rows`` of this wrapper (rows of the wrapped pool)."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.proba_exact:
            return self._rows_proba()[rows]
        return np.asarray(self._probe.exact_proba(self._rows[rows]))

    def _score_rows(self) -> np.ndarray:
        """Class probabilities of the rows only (the pool is not scored)."""
        import torch

        with torch.no_grad():
            return self._to_proba(self._probe._logits(self.transform(None)))

    def _to_proba(self, z) -> np.ndarray:
        """(rows, n_classes) probabilities from the logits over the seen classes (0 for the others)."""
        from .probe import _softmax_

        out = np.zeros((self._rows.size, self._probe.n_classes), np.float32)
        out[:, np.flatnonzero(self._probe.seen_classes)] = _softmax_(z).cpu().numpy()
        return out

    def predict(self, X=None) -> np.ndarray:
        return self.predict_proba(X).argmax(1).astype(np.int64)

    def _streams(self, n_passes, p) -> bool:
        """Whether the dropout passes read the rows from the pool in place (the CPU path, valid input)."""
        pool = self._probe.transform(None)
        return not (pool.is_cuda or pool.requires_grad or not pool.is_contiguous() or isinstance(n_passes, bool)
                    or not isinstance(n_passes, (int, np.integer)) or n_passes < 1 or not 0 <= p < 1)

    def predict_dropout(self, X=None, n_passes: int = 3, p: float = 0.75, seed: int = 0, rows=None, blocks=None):
        """(n_passes, rows) class ids under input dropout, as the wrapped probe's. On the CPU the
        masks are shared per block of ``DROPOUT_BLOCK`` of our rows (the probe's own path from
        ``SHARED_MASKS_MIN`` rows): one product per block with masked weights, where the per-point
        path multiplies every row by its mask (31 -> 6 ms at 8.4k rows, when that path also drew a
        new bank for every round's seed).
        The rows are read from the pool a block at a time (``_dropout.shared``'s ``rows``), not
        gathered first, unless :meth:`transform` gathered them already."""
        from .probe import DROPOUT_BLOCK

        if X is not None:
            return self._probe.predict_dropout(X, n_passes=n_passes, p=p, seed=seed)
        if blocks is not None:  # blocks of our rows (DropQuery on a big subpool)
            b = np.asarray(blocks, dtype=np.int64)
            rows = (b[:, None] * DROPOUT_BLOCK + np.arange(DROPOUT_BLOCK)[None, :]).ravel()
            rows = rows[rows < self._rows.size]
        r = self._rows if rows is None else self._rows[np.asarray(rows, dtype=np.int64)]
        if not self._streams(n_passes, p):  # i.i.d. masks on the device; the probe rejects bad input
            return self._probe.predict_dropout(None, n_passes=n_passes, p=p, seed=seed, rows=r)
        return self._dropout(r, int(n_passes), float(p), int(seed))

    def _dropout(self, r, n_passes: int, p: float, seed: int, clean=None):
        """Class ids of the shared-mask passes over pool rows ``r`` (CPU); ``clean``: see ``_dropout.shared``."""
        import torch

        cols = torch.from_numpy(np.flatnonzero(self._probe.seen_classes))
        w, bias = self._probe._W[:, cols].T.contiguous(), self._probe._b[cols]
        if self._xs is not None and r is self._rows:  # gathered already: read them there
            out = self._probe._dropout_blocks(self._xs, w, bias, n_passes, p, seed, clean=clean)
        else:
            out = self._probe._dropout_blocks(self._probe.transform(None), w, bias, n_passes, p, seed, rows=r,
                                              clean=clean)
        return cols[out].numpy()

    def proba_and_dropout(self, n_passes: int = 3, p: float = 0.75, seed: int = 0):
        """``(predict_proba(), predict_dropout(None, n_passes, p, seed))`` in one read of the rows
        when neither has been computed: each block's logits without dropout come from the block
        the dropout passes read (the same products, so the same values as apart). DropQuery's
        round on a subpool: 11k rows x 512 were gathered, then read twice (BENCHMARKS.md, section 7)."""
        import torch

        from .probe import _finite_

        if self._proba is not None or getattr(self._probe, "_proba", None) is not None \
                or not self._streams(n_passes, p):
            return self.predict_proba(), self.predict_dropout(None, n_passes=n_passes, p=p, seed=seed)
        z = torch.empty((self._rows.size, int(self._probe.seen_classes.sum())), dtype=torch.float32)
        drops = self._dropout(self._rows, int(n_passes), float(p), int(seed), clean=z)
        z = _finite_(z)  # as LinearProbe._logits
        self._proba, self._exact = self._to_proba(z), True
        return self._proba.copy(), drops


def _gather(t, rows):
    """Rows of a torch tensor; on the CPU by numpy's fancy indexing (the same values), which was
    about 4x faster than ``torch.index_select`` for 8k of 1M rows x 512 on one thread (10.6 -> 2.9 ms)."""
    import torch

    if t.device.type != "cpu" or t.requires_grad or not t.is_contiguous():
        return torch.index_select(t, 0, torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(t.device))
    return torch.from_numpy(t.numpy()[np.asarray(rows, dtype=np.int64)])
