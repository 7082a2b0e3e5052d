"""The probe's training rows kept from one refit to the next, in the order they arrived.

A refit after a label adds a few rows to a few hundred. Keeping the rows (each labelled image under
its fixed dropout masks), their Gram matrix x x^T and its Cholesky factor in arrival order makes the
new rows an appended block: the Gram matrix grows by one (new, m) product and the factor by one
triangular solve and a small Cholesky, with no gathers into a sorted order. At 10k x 1280 features
and 100-400 rows this took the span fit's set-up from about 3.5 to about 1 ms (issue 9: margin's
round). The order of the rows changes no optimum (the loss is a sum over rows), only rounding.
"""
from __future__ import annotations

import numpy as np

from ._lbfgs import _cholesky_jittered

__all__ = ["TrainingRows"]


class TrainingRows:
    """Rows keyed by an int (unique), their Gram matrix and its factor, kept in arrival order.

    :meth:`update` makes the kept rows exactly the given keys (dropping the others, appending the new
    ones made by a callback); :meth:`factor` is the lower Cholesky factor of x x^T (+ a tiny jitter),
    extended rather than recomputed when rows were only appended. ``tag`` names what the keys mean
    (e.g. the number of dropout copies per image): another tag starts afresh.
    """

    def __init__(self):
        self.tag = None
        self.keys = np.zeros(0, dtype=np.int64)  # arrival order
        self._buf = None  # (capacity, D) float32; the rows are its first m
        self.K = None  # (h, h) float64 Gram matrix of the first h rows (h <= m)
        self.L = None  # (l, l) float64 factor of the first l rows (l <= h), with jitter self._eps
        self._eps = 0.0

    @property
    def x(self):
        """The rows, (m, D), in the order of :attr:`keys` (a view: do not modify)."""
        return None if self._buf is None else self._buf[:self.keys.size]

    def update(self, keys, make_rows, tag=None):
        """Keep exactly ``keys`` (ascending, unique ints); ``make_rows(new_keys)`` -> (len, D) tensor
        of the rows not kept yet. Returns ``(x, keys)`` in arrival order."""
        import torch

        keys = np.asarray(keys, dtype=np.int64)
        if np.any(keys[1:] <= keys[:-1]):
            raise ValueError("TrainingRows keys must be strictly ascending (one key per row)")
        if tag != self.tag:
            self.__init__()
            self.tag = tag
        if self.keys.size:
            keep = np.isin(self.keys, keys, assume_unique=True)
            if not keep.all():  # rows removed (a label undone): gather the rest, refactor later
                k = np.flatnonzero(keep)
                kt = torch.from_numpy(k).to(self._buf.device)
                rows = self._buf[:self.keys.size].index_select(0, kt)
                self._buf, self.keys = rows, self.keys[k]
                h = 0 if self.K is None else self.K.shape[0]
                kk = k[k < h]
                self.K = None if not kk.size else _take2(self.K, kk)  # kept rows keep their order
                self.L = None
        new = np.setdiff1d(keys, self.keys, assume_unique=True)
        if new.size:
            self._append(new, make_rows(new))
        return self.x, self.keys

    def _append(self, new, rows):
        m, n = self.keys.size, new.size
        if self._buf is None or self._buf.shape[0] < m + n or self._buf.shape[1] != rows.shape[1]:
            cap = m + n + max(64, (m + n) // 2)  # half again: few copies, little memory held
            buf = rows.new_empty((cap, rows.shape[1]))
            if m:
                buf[:m] = self._buf[:m]
            self._buf = buf
        self._buf[m:m + n] = rows
        self.keys = np.concatenate([self.keys, new])

    def gram(self):
        """x x^T (float64, (m, m)), extended by the appended rows' products."""
        x = self.x
        m = x.shape[0]
        h = 0 if self.K is None else self.K.shape[0]
        if h < m:
            R = (x[h:] @ x.T).double()  # (m - h, m)
            K = R.new_empty((m, m))
            if h:
                K[:h, :h] = self.K
                K[:h, h:] = R[:, :h].T
            K[h:] = R
            self.K = K
        return self.K

    def factor(self, x=None):
        """Lower-triangular L with L L^T = x x^T + eps I (float64), or None when even the largest
        jitter of :func:`_lbfgs._cholesky_jittered` fails. ``x``: ignored (the kept rows are used)."""
        import torch

        K = self.gram()
        m = K.shape[0]
        l = 0 if self.L is None else self.L.shape[0]
        if 0 < l < m:  # extend: [[L11, 0], [L21, L22]] with L21 = K21 L11^-T, L22 L22^T = K22 - L21 L21^T
            L11 = self.L
            L21 = torch.linalg.solve_triangular(L11, K[l:, :l].T, upper=False).T
            S = K[l:, l:] - L21 @ L21.T
            S.diagonal().add_(self._eps)
            L22, info = torch.linalg.cholesky_ex(S)
            if int(info) == 0:
                L = K.new_zeros((m, m))
                L[:l, :l], L[l:, :l], L[l:, l:] = L11, L21, L22
                self.L = L
                return L
            self.L = None
        if self.L is None or self.L.shape[0] != m:
            self.L, eps = _cholesky_jittered(K)
            self._eps = 0.0 if eps is None else eps
        return self.L


def _take2(K, idx):
    """K[idx][:, idx] of a square tensor (numpy's take on the CPU: faster than index_select on dim 1)."""
    import torch

    if K.device.type == "cpu":
        return torch.from_numpy(K.numpy().take(idx, 0).take(idx, 1))
    t = torch.from_numpy(np.asarray(idx, dtype=np.int64)).to(K.device)
    return K.index_select(0, t).index_select(1, t)
