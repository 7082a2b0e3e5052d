"""Linear probe: multinomial logistic regression on pool-standardised features (torch).

The probe is the only model alwidget trains. It is small on purpose: after every label
the session refits it on the labelled rows (warm-started, a few L-BFGS steps) and rescores
the whole pool with one matrix product, so the pool is kept on the device already
standardised.

Shapes: ``X`` is ``(n_samples, n_features)``, ``labels`` is ``(n_samples,)`` int with ``-1``
for unlabelled, probabilities are ``(n_samples, n_classes)``.
"""
from __future__ import annotations

import numpy as np

from . import _dropout
from ._dropout import mc_dropout_proba  # noqa: F401  (public here since issue 9)
from ._lbfgs import lbfgs as _lbfgs
from ._lowp import lowp_faster, product_error_coefficients, softmax_near_ties, top_two
from ._matmul import blas_threads, linear_into, numpy_faster
from ._pool import BLOCK_BYTES, _get_pool, _Pool, clear_pool_cache, remember_fingerprint  # noqa: F401 (re-exported)
from ._trainrows import TrainingRows
from ._util import check_features, check_labels, pass_workers, resolve_device, share_blocks

__all__ = ["LOWP_MIN", "LinearProbe", "lowp_faster", "top_two"]

#: Rows that share one dropout mask per pass on the CPU (predict_dropout); 256 was as fast as
#: 1024 and 2x faster than 64 at N = 100k (issue 12).
DROPOUT_BLOCK = 256
#: From this many rows on, predict_dropout shares masks within blocks on the CPU. Below it the
#: per-point path costs little, and on digits (1.3k rows: 5 blocks) shared masks cost DropQuery
#: 1-2 points at 20 labels (bench_efficiency, issue 12).
SHARED_MASKS_MIN = 20_000
#: From this many pool rows on, ``low_precision="auto"`` scores the pool with a bfloat16 copy when a
#: one-off calibration finds that pass faster on this machine (issue 12: 34 -> 11 ms at 100k x 512 on
#: one core of an AMX Xeon; the issue saw bf16 8x slower elsewhere). Smaller pools stay exact.
LOWP_MIN = 20_000
#: After a bf16 pass, rows whose second most probable class is within this of the first are re-scored
#: in float32, so the pool's argmax (predict, DropQuery's clean pass, the trust estimate) is the
#: float32 one whenever the bf16 error stays under half of it (measured under 0.01 on digits and
#: Fashion-MNIST features). Of those, only the rows whose logit gap is within the bf16 error bound of
#: :func:`_lowp.softmax_near_ties` are re-scored (the others provably keep float32's argmax).
ARGMAX_GUARD = 0.05
# Upper bound on the augmented training matrix (rows x copies x features) in elements.
_MAX_TRAIN_ELEMENTS = 1 << 25
# New inputs are clipped to this many pool standard deviations so logits stay finite.
_CLIP = 1e6


def _block_rows(x):
    """(rows per block, threads) for a pass over the pool tensor x: one block on CUDA (one
    transfer back); on the CPU blocks of BLOCK_BYTES bound the temporaries, a quarter of that
    when two threads share them (_util.share_blocks; at 100k x 512 in bf16 the bare products
    took 18 ms in 16,384-row blocks, a thread idle at the end, and 14 ms in 4,096-row blocks;
    the whole pass 29-33 ms with 4,096 or 8,192 rows)."""
    if x.is_cuda:
        return max(1, x.shape[0]), 1
    workers = pass_workers()
    return max(1, (BLOCK_BYTES if workers == 1 else BLOCK_BYTES // 4) // (x.element_size() * x.shape[1])), workers


def _finite_(z):
    """z with NaN read as 0 and infinities as +-3e38, in place: every logit the probe scores is finite."""
    import torch

    return torch.nan_to_num_(z, nan=0.0, posinf=3e38, neginf=-3e38)


def _softmax_(z):
    """Row softmax of a (n, C) tensor, in place and max-shifted (never overflows). For the few
    columns of a probe, torch.softmax(dim=1) was 6x slower on the CPU (15 vs 2.7 ms at 100k x 10)."""
    z.sub_(z.amax(1, keepdim=True)).exp_()
    return z.div_(z.sum(1, keepdim=True))


class LinearProbe:
    """Multinomial logistic regression with L2 and input dropout, trained full-batch (L-BFGS).

    Parameters
    ----------
    l2 : float
        L2 penalty on the weights, in the scale of a summed loss (``l2=1`` matches
        scikit-learn's ``LogisticRegression(C=1)``); the bias is not penalised.
    input_dropout : float in [0, 1)
        Dropout rate on the standardised inputs during training. It is applied as
        ``n_dropout_copies`` fixed masked copies of every labelled row (inverted scaling), so the
        objective is deterministic, L-BFGS converges, and a row keeps its masks across refits
        (warm starts stay warm).
    device : "auto", "cpu", "cuda", torch.device
        Where the pool lives and training runs ("auto": CUDA when available).
    seed : int
        Seeds the training masks.
    max_iter, warm_iter : int
        L-BFGS iterations for a cold fit and for a warm-started refit. 12 warm steps picked and
        scored as well as 20 (issue 9, s23: 45 cells of digits / Fashion-MNIST / long-tailed
        Fashion-MNIST x margin / DropQuery / auto x 10-200 labels, 5 seeds, batches of 10 labels per
        refit: LogisticRegression on the picks +0.1 points, the probe's own accuracy +0.2, on average)
        and cost 40 % less.
    low_precision : "auto", True or False
        How ``predict_proba()`` scores the pool: ``"auto"`` uses a bfloat16 copy of the pool from
        :data:`LOWP_MIN` rows on when :func:`lowp_faster` measured it faster on this machine (logits
        within about 0.5 % of float32, probabilities within a few 1e-3; see ``proba_exact``), else
        float32; ``True`` always uses it, ``False`` never. Other inputs (``X`` given) are float32.

    Classes are ids ``0..n_classes-1``. A class with no labelled row gets probability 0 and is
    never predicted (its logits are masked), so declaring classes up front is harmless.
    """

    def __init__(self, l2: float = 1.0, input_dropout: float = 0.1, device="auto", seed: int = 0,
                 max_iter: int = 100, warm_iter: int = 12, n_dropout_copies: int = 4, low_precision="auto"):
        if not np.isfinite(l2) or l2 < 0:
            raise ValueError(f"l2 must be a finite number >= 0, got {l2!r}")
        if not 0 <= input_dropout < 1:
            raise ValueError(f"input_dropout must be in [0, 1), got {input_dropout!r}")
        for name, v in (("max_iter", max_iter), ("warm_iter", warm_iter), ("n_dropout_copies", n_dropout_copies)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if low_precision not in (True, False, "auto"):
            raise ValueError(f'low_precision must be "auto", True or False, got {low_precision!r}')
        self.low_precision = low_precision
        self.l2 = float(l2)
        self.input_dropout = float(input_dropout)
        self.seed = int(seed)
        self.max_iter = int(max_iter)
        self.warm_iter = int(warm_iter)
        self.n_dropout_copies = int(n_dropout_copies)
        self.device = resolve_device(device)
        self._pool: _Pool | None = None
        self._W = None  # (D, C) float32 tensor
        self._b = None  # (C,) float32 tensor
        self._seen = np.zeros(0, dtype=bool)  # (C,) classes with at least one label in the last fit
        self._proba = None  # cached pool probabilities after the last fit
        self._proba_exact = True  # whether they came from the float32 pass
        self._train_masks = None
        self._rows = TrainingRows()
        self.n_iter_ = 0
        self.n_rescored_ = 0  # rows the last bfloat16 pool pass re-scored in float32

    # -- state -----------------------------------------------------------------
    @property
    def n_classes(self) -> int:
        """Number of classes the weight matrix holds (0 before the first fit)."""
        return 0 if self._W is None else int(self._W.shape[1])

    @property
    def seen_classes(self) -> np.ndarray:
        """(n_classes,) bool: classes that had labelled rows in the last fit."""
        return self._seen.copy()

    @property
    def is_fitted(self) -> bool:
        return self._W is not None

    def _check_fitted(self):
        if self._W is None:
            raise RuntimeError("the probe is not fitted yet; call fit(X, labels) with at least one label first")

    # -- training --------------------------------------------------------------
    def fit(self, X, labels, n_classes: int | None = None) -> "LinearProbe":
        """Fit on the labelled rows of the pool X (labels (N,) int, -1 = unlabelled).

        Standardisation statistics come from the whole pool. Weights from the previous fit
        warm-start this one; new classes add zero-initialised columns.
        """
        import torch

        pool = _get_pool(X, self.device)
        labels = check_labels(labels, pool.n_samples)
        idx = np.flatnonzero(labels >= 0)
        if idx.size == 0:
            raise ValueError("fit needs at least one labelled sample (labels >= 0); got none")
        c = int(labels[idx].max()) + 1
        if n_classes is not None:
            if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < c:
                raise ValueError(f"n_classes must be an integer >= the largest label + 1 ({c}), got {n_classes!r}")
            c = int(n_classes)
        c = max(c, self.n_classes)
        d = pool.n_features
        warm = self._W is not None and self._W.shape[0] == d
        if not warm:
            self._W = torch.zeros((d, c), dtype=torch.float32, device=self.device)
            self._b = torch.zeros(c, dtype=torch.float32, device=self.device)
        elif c > self._W.shape[1]:
            grow = c - self._W.shape[1]
            self._W = torch.cat([self._W, self._W.new_zeros((d, grow))], 1)
            self._b = torch.cat([self._b, self._b.new_zeros(grow)])
        if pool is not self._pool:
            self._train_masks = None
            self._rows = TrainingRows()  # the training rows and their products, kept while the pool is this one
        self._pool = pool

        y = labels[idx]
        seen = np.bincount(y, minlength=c) > 0
        cols = np.flatnonzero(seen)
        remap = np.full(c, -1, dtype=np.int64)
        remap[cols] = np.arange(cols.size)
        cols_t = torch.from_numpy(cols).to(self.device)
        if cols.size > 1:
            xl, yl = self._training_rows(idx, labels, remap)
            with torch.no_grad():  # analytic gradients: autograd would only add overhead (and warnings)
                W, b, self.n_iter_ = _lbfgs(xl, yl, self._W[:, cols_t], self._b[cols_t], 0.5 * self.l2 / idx.size,
                                            self.warm_iter if warm else self.max_iter, factor=self._rows.factor)
            if torch.isfinite(W).all() and torch.isfinite(b).all():
                self._W[:, cols_t] = W
                self._b[cols_t] = b
        else:
            self.n_iter_ = 0  # a single class: every prediction is that class, nothing to learn
        self._seen = seen
        self._proba = None
        return self

    def _training_rows(self, idx: np.ndarray, labels: np.ndarray, remap: np.ndarray):
        """The labelled rows, each repeated under fixed dropout masks, in the kept order of
        :class:`TrainingRows` (rows that stay are not made again): ((rows, D), (rows,) targets
        ``remap[labels[image]]``, looked up for the kept rows only: no pass over the pool's labels).

        Image i's k-th copy has key i * copies + k and mask row (key mod the bank's rows) of a seeded
        mask bank, so an image keeps its masks (and its key names the same row) from one fit to the next.
        """
        import torch

        p = self.input_dropout
        d = self._pool.n_features
        copies = 1 if p == 0 else max(1, min(self.n_dropout_copies, _MAX_TRAIN_ELEMENTS // max(1, idx.size * d)))
        if p and (self._train_masks is None or self._train_masks.shape[1] != d):
            g = torch.Generator(device="cpu").manual_seed(self.seed)
            bank = (torch.rand((4096, d), generator=g) >= p).float() / (1 - p)
            self._train_masks = bank.to(self.device)

        def make(keys):
            kt = torch.from_numpy(keys).to(self.device)
            xl = self._pool.X.index_select(0, kt // copies)
            return xl if p == 0 else xl * self._train_masks.index_select(0, kt % self._train_masks.shape[0])

        keys = (idx[:, None] * copies + np.arange(copies)[None, :]).reshape(-1)
        xa, kept = self._rows.update(keys, make, tag=copies)
        return xa, torch.from_numpy(remap[labels[kept // copies]]).to(self.device)

    # -- prediction ------------------------------------------------------------
    def transform(self, X=None):
        """Pool-standardised features as a float32 torch tensor on ``self.device``, (N, D).

        ``X=None`` returns the cached pool tensor itself (do not modify it); new inputs are
        standardised with the pool's statistics.
        """
        import torch

        if self._pool is None:
            raise RuntimeError("the probe has no pool yet; call fit(X, labels) first")
        if X is None:
            return self._pool.X
        arr = check_features(X, "X")
        if arr.shape[1] != self._pool.n_features:
            raise ValueError(f"X has {arr.shape[1]} features but the probe was fitted on {self._pool.n_features}")
        t = torch.from_numpy(arr).to(self.device, torch.float64)
        return ((t - self._pool.mean) / self._pool.std).clamp_(-_CLIP, _CLIP).float()

    def _seen_weights(self):
        """((n_seen, D) weight, (n_seen,) bias) of the seen classes, for linear()."""
        import torch

        cols = torch.from_numpy(np.flatnonzero(self._seen)).to(self.device)
        return self._W[:, cols].T.contiguous(), self._b[cols]

    def _logits(self, xs, wb=None):
        """Logits over seen classes only, (n, n_seen), finite; ``wb``: :meth:`_seen_weights`, when a
        pass has them already (preparing them per block cost 1.3 of a 6 ms pass at 10k x 1280)."""
        import torch

        w, b = self._seen_weights() if wb is None else wb
        # linear() with a (C, D) weight: about twice as fast as x @ (D, C) for skinny C on CPUs.
        return _finite_(torch.nn.functional.linear(xs, w, b))

    def predict_proba(self, X=None) -> np.ndarray:
        """Class probabilities (N, n_classes) float32; X=None scores the pool seen in fit.

        Classes without labels get probability 0. Computed with a max-shifted softmax, so large
        logits neither overflow nor produce NaN. The pool's result is cached until the next fit;
        on big pools it may come from the bfloat16 pass (``low_precision``, ``proba_exact``).
        """
        self._check_fitted()
        if X is None:
            return self.pool_proba().copy()
        return self._score(self.transform(X))

    def pool_proba(self, should_stop=None) -> np.ndarray | None:
        """The pool's cached probabilities, read-only and not copied (what the strategies read).

        should_stop: called between blocks of rows; True abandons the pass and returns None
        (nothing cached), so a newer label need not wait for a whole pool's scores.
        """
        self._check_fitted()
        if self._proba is None:
            xs = self.transform(None)
            lowp = self._use_lowp(xs)
            out = self._score_lowp(should_stop) if lowp else self._score(xs, should_stop)
            if out is None:
                return None
            out.setflags(write=False)
            self._proba, self._proba_exact = out, not lowp
        return self._proba

    @property
    def proba_exact(self) -> bool:
        """False when the pool's cached probabilities came from the bfloat16 pass: rankings built
        on them should re-score their shortlist with :meth:`exact_proba`."""
        return self._proba is None or self._proba_exact

    def exact_proba(self, rows) -> np.ndarray:
        """Float32 probabilities of these pool rows, (len(rows), n_classes): the exact pass."""
        import torch

        self._check_fitted()
        idx = torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(self.device)
        return self._score(torch.index_select(self.transform(None), 0, idx))

    def _use_lowp(self, xs) -> bool:
        if self.low_precision is not True and (self.low_precision is False or xs.shape[0] < LOWP_MIN):
            return False
        c = int(self._seen.sum())
        return self.low_precision is True or lowp_faster(xs, 1 << max(0, c - 1).bit_length())  # C to a power of 2

    def _score(self, xs, should_stop=None) -> np.ndarray | None:
        """Float32 probabilities of the rows of xs (a float32 tensor on the device); None when
        ``should_stop()`` said so between blocks."""
        import torch

        n = xs.shape[0]
        out = np.zeros((n, self.n_classes), dtype=np.float32)
        cols = np.flatnonzero(self._seen)
        every = cols.size == self.n_classes
        dst = torch.from_numpy(out)
        rows, workers = _block_rows(xs)
        wb = self._seen_weights()
        direct = every and not xs.is_cuda  # the product written into the output, no temporary:
        wt = wb[0].T.contiguous() if direct else None  # 4.2 -> 3.9 ms at 10k x 1280 (issue 9: margin's round)
        use_np = direct and numpy_faster(xs, cols.size, rows)  # numpy's BLAS where it is faster (_matmul)

        def block(i):
            a = i * rows
            with torch.no_grad():
                if direct:
                    z = dst[a:a + rows]
                    _softmax_(_finite_(linear_into(z, xs[a:a + rows], wt, wb[1], use_np)))
                    return
                p = _softmax_(self._logits(xs[a:a + rows], wb))
            if every:  # written in place, no (rows, C) numpy temporary
                dst[a:a + rows].copy_(p)
            else:
                out[a:a + rows, cols] = p.cpu().numpy()

        with blas_threads(1 if use_np and workers > 1 else None):
            return out if share_blocks(-(-n // rows), block, should_stop, workers) else None

    def _score_lowp(self, should_stop=None) -> np.ndarray | None:
        """The pool's probabilities from the bfloat16 pass, near ties re-scored in float32.

        One pass over the pool block by block; within a block, the rows that are within both
        ARGMAX_GUARD (probabilities) and the bf16 error bound (logits, :func:`_lowp.softmax_near_ties`) are re-scored from
        the block's float32 rows while it is in cache, as exact_proba would (no pool-wide gather).
        """
        import torch

        pool, n = self._pool, self._pool.n_samples
        x16, xs, norms = pool.lowp(), pool.X, pool.row_norms
        out = np.zeros((n, self.n_classes), dtype=np.float32)
        cols_np = np.flatnonzero(self._seen)
        every, dst = cols_np.size == self.n_classes, torch.from_numpy(out)
        w, b = wb = self._seen_weights()
        w16 = w.to(torch.bfloat16)
        # cuBLAS may reduce bf16 products in bf16 (split-K): the bound then does not hold.
        bounded = not (x16.is_cuda and torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction)
        coef = product_error_coefficients(w, w16, pool.n_features)
        b_abs = float(b.abs().max())
        rows, workers = _block_rows(x16)
        rescored = []

        def block(i):
            a = i * rows
            with torch.no_grad():
                zt = (w16 @ x16[a:a + rows].T).float().add_(b[:, None])  # (C, rows): see softmax_near_ties
                zt = _finite_(zt)
                pt, near = softmax_near_ties(zt, norms[:, a:a + rows], coef, b_abs, ARGMAX_GUARD, bounded)
                if near.numel():
                    pt[:, near] = _softmax_(self._logits(xs[a:a + rows].index_select(0, near), wb)).T
                    rescored.append(int(near.numel()))
            if every:
                dst[a:a + rows].copy_(pt.T)
            else:
                out[a:a + rows, cols_np] = pt.T.cpu().numpy()

        done = share_blocks(-(-n // rows), block, should_stop, workers)
        self.n_rescored_ = sum(rescored)
        return out if done else None

    def predict(self, X=None) -> np.ndarray:
        """Most probable class id per row, (N,) int64."""
        return self.predict_proba(X).argmax(1).astype(np.int64)

    def predict_dropout(self, X=None, n_passes: int = 3, p: float = 0.75, seed: int = 0, rows=None,
                        blocks=None) -> np.ndarray:
        """Predicted class ids under ``n_passes`` input-dropout masks: (n_passes, N) int64.

        ``rows``: only these rows of the pool seen in fit (X=None), (n_passes, len(rows)).
        ``blocks``: only the rows of these blocks of :data:`DROPOUT_BLOCK` pool rows, in order,
        with the shared-mask path (read in place: no gather); on the CPU at least
        SHARED_MASKS_MIN rows they equal those rows of the whole pool's result.

        Each pass drops every standardised input feature with probability ``p`` and scales the
        rest by ``1 / (1 - p)`` (inverted dropout): exactly Bernoulli per point and pass. On CUDA
        masks are i.i.d. per point; on the CPU they are rows of a fixed bank (drawn once per D and
        p) read at offsets the seed picks, per point below :data:`SHARED_MASKS_MIN` rows and shared
        by the rows of a :data:`DROPOUT_BLOCK` above it (masked-weight products, 2x faster at 100k;
        see :mod:`alwidget._dropout`). Same seed and device -> same output.
        """
        import torch

        self._check_fitted()
        _dropout.check_passes("n_passes", n_passes, p)
        xs = self.transform(X)
        if (rows is not None or blocks is not None) and X is not None:
            raise ValueError("rows= and blocks= select rows of the pool seen in fit; pass X=None with them")
        if blocks is not None:
            cols = torch.from_numpy(np.flatnonzero(self._seen)).to(self.device)
            w, bias = self._W[:, cols].T.contiguous(), self._b[cols]
            out = self._dropout_blocks(xs, w, bias, int(n_passes), float(p), int(seed), np.asarray(blocks))
            return cols[out].cpu().numpy()
        if rows is not None:
            xs = torch.index_select(xs, 0, torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(self.device))
        n, d = xs.shape
        cols = torch.from_numpy(np.flatnonzero(self._seen)).to(self.device)
        w, bias = self._W[:, cols].T.contiguous(), self._b[cols]  # (C, D) for linear()
        if xs.is_cuda:
            return cols[self._dropout_iid(xs, w, bias, n_passes, float(p), int(seed))].cpu().numpy()
        if n >= SHARED_MASKS_MIN:
            return cols[self._dropout_blocks(xs, w, bias, int(n_passes), float(p), int(seed))].cpu().numpy()
        return cols[self._dropout_banked(xs, w, bias, int(n_passes), float(p), int(seed))].cpu().numpy()

    def _dropout_banked(self, xs, w, bias, n_passes: int, p: float, seed: int):
        """(n_passes, N): a bank row per point and pass (small CPU pools; :func:`_dropout.banked`)."""
        return _dropout.banked(xs, w, bias, n_passes, p, seed, self._dropout_bank(xs.shape[1], p))

    def _dropout_blocks(self, xs, w, bias, n_passes: int, p: float, seed: int, block_ids=None, *, rows=None,
                        clean=None):
        """(n_passes, rows): one shared mask per block and pass (:func:`_dropout.shared`, which
        says what ``rows`` and ``clean`` do). One fixed bank (drawn once per D and p); the seed
        picks its rows, so rounds with new seeds reuse it instead of drawing 4096 x D numbers again."""
        bank = self._dropout_bank(xs.shape[1], p)[:4096]
        return _dropout.shared(xs, w, bias, n_passes, p, seed, bank, DROPOUT_BLOCK, block_ids, rows=rows, clean=clean)

    _dropout_iid = staticmethod(_dropout.iid)

    def _dropout_bank(self, d: int, p: float):
        """The (2R, D) float mask bank with inverted scaling, drawn once per (d, p) from a fixed seed
        and cached: a round's seed only picks where its blocks read it. Drawing a new bank for every
        round's seed took 73 ms of DropQuery's 10k x 1280 round (its passes 26 ms)."""
        import torch

        key = (d, p)
        if getattr(self, "_bank_key", None) != key:
            g = torch.Generator(device="cpu").manual_seed(0)
            m = (torch.rand((4096, d), generator=g) >= p).float().mul_(1.0 / (1.0 - p))
            self._bank = torch.cat([m, m]).to(self.device)
            self._bank_key = key
        return self._bank
