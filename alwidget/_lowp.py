"""Reduced-precision scoring support for the probe (issue 12): is bfloat16 faster here, and top two.

A bfloat16 pass over a (N, D) pool halves the bytes read; on CPUs with AMX/AVX-512-BF16 it was
3x faster than float32 (34 -> 11 ms at 100k x 512, one core), elsewhere it can be several times
slower. :func:`lowp_faster` therefore measures both once per process and setting.
"""
from __future__ import annotations

import numpy as np

__all__ = ["lowp_faster", "product_error_coefficients", "softmax_near_ties", "top_two"]

# A bound on |bf16 logit - float32 logit| per row and class (issue 12, the 1M Session profile: the
# probability guard alone sent a third of a 1M pool to the exact pass at 30 labels): the product's
# error from the rows' and weights' rounding (Cauchy-Schwarz on the measured rounding errors, see
# product_error_coefficients) plus the bf16 result's rounding, <= u = 2^-8 relative (K_OUT). A row
# whose top-two bf16 logit gap exceeds twice its largest class bound has float32's argmax (the gap
# cannot close), so rows within the probability guard but outside this bound are not re-scored.
_U16 = 2.0 ** -8
_K_OUT = _U16 / (1 - _U16) + 2.0 ** -23
_GAP_FLOOR = 1e-4  # logits: keeps float32 probabilities of the top two apart too

# A bf16 pass must take at most this fraction of the fp32 pass to be used.
_LOWP_GAIN = 0.7

# (device, D, C, threads) -> whether a bf16 pass beat fp32 on a block of the pool in this process.
_LOWP_FASTER: dict = {}


def _timed(fn, reps: int = 3) -> float:
    import time

    import torch

    best = float("inf")
    for _ in range(reps + 1):  # the first call warms up the kernel
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def lowp_faster(x, c: int) -> bool:
    """Whether a bfloat16 linear() over rows of x is measurably faster than float32 here.

    Measured once per process for each (device, D, C, torch threads) on up to 16,384 rows of x
    (about 10 ms): reduced precision is worth it only where the hardware has fast bf16 kernels."""
    import torch

    key = (str(x.device), int(x.shape[1]), int(c), torch.get_num_threads())
    if key not in _LOWP_FASTER:
        xb = x[:16_384]
        w = torch.randn((c, x.shape[1]), generator=torch.Generator().manual_seed(0)).to(x.device)
        xh, wh = xb.to(torch.bfloat16), w.to(torch.bfloat16)
        with torch.no_grad():
            t32 = _timed(lambda: torch.nn.functional.linear(xb, w))
            t16 = _timed(lambda: wh @ xh.T)  # the bf16 pass's (C, n) product
        _LOWP_FASTER[key] = t16 <= _LOWP_GAIN * t32
    return _LOWP_FASTER[key]


def top_two(p: np.ndarray):
    """(largest, second largest) of each row of p (C >= 2), in p's dtype; a tie gives equal values.

    A running max / second max over the columns of p.T: 2x faster than a row-wise np.partition
    on 100k x 10 (issue 12) and the same values."""
    q = np.ascontiguousarray(p.T)
    m1, m2, tmp = q[0].copy(), np.full(q.shape[1], -np.inf, dtype=q.dtype), np.empty(q.shape[1], dtype=q.dtype)
    for c in range(1, q.shape[0]):
        np.minimum(m1, q[c], out=tmp)
        np.maximum(m2, tmp, out=m2)
        np.maximum(m1, q[c], out=m1)
    return m1, m2


def product_error_coefficients(w, w16, d: int):
    """(A, B): |x~ . w~_c - x . w_c| <= A ||x|| + B ||x - x~|| for every class c, x~ and w~ the bf16
    roundings, with fp32 accumulation of d terms in both products (error <= d 2^-24 sum |.|).

    |x~.w~ - x.w| <= ||x~|| ||w~ - w|| + ||x~ - x|| ||w||, and ||x~|| <= ||x|| + ||x - x~||."""
    import torch

    w1 = float(torch.linalg.vector_norm(w, dim=1).max())
    wd = float(torch.linalg.vector_norm(w16.float() - w, dim=1).max())
    g = 2 * d * 2.0 ** -24 / (1 - d * 2.0 ** -24) * (w1 + wd)
    return wd + g, wd + w1 + g


def softmax_near_ties(zt, norms, coef, b_abs: float, guard: float, bounded: bool = True):
    """Softmax of bf16 logits zt (C, n), in place, and the rows (indices into n) whose argmax may
    differ from float32's: ``(probabilities (C, n), rows)``.

    A row is a near tie when its probability gap is within ``guard`` and, if ``bounded``, its top-two
    logit gap is within twice the error bound (``norms``: (2, n) row and rounding-error norms,
    ``coef`` from :func:`product_error_coefficients`, ``b_abs`` the largest |bias|). Classes run down
    the rows so every step is a contiguous (n,) operation, and the softmax reuses the tie test's
    exponentials: with the pass's (n, C) layout the reductions over C were 5-12x slower on the CPU
    (issue 12: 15 of the 46 ms of a bf16 pass at 100k x 512 went to these steps)."""
    import torch

    if zt.shape[0] < 2:
        return zt.fill_(1.0), torch.zeros(0, dtype=torch.int64, device=zt.device)
    m1, m2, tmp = zt[0].clone(), torch.full_like(zt[0], float("-inf")), torch.empty_like(zt[0])
    for c in range(1, zt.shape[0]):
        torch.minimum(m1, zt[c], out=tmp)
        torch.maximum(m2, tmp, out=m2)
        torch.maximum(m1, zt[c], out=m1)
    gap = m1 - m2
    zabs = torch.maximum(m1.abs(), zt.amin(0).abs())
    e = zt.sub_(m1).exp_()
    total = e.sum(0)
    # probability gap p1 - p2 = (1 - exp(-gap)) / sum_c exp(z_c - z_max); exp, not expm1 (8x slower
    # on the CPU): its absolute error is far below any guard
    near = (1 - torch.exp(-gap)) / total <= guard
    if bounded:
        prod = coef[0] * norms[0] + coef[1] * norms[1]
        bound = 2 * (prod + _K_OUT * (zabs + b_abs)) + _GAP_FLOOR
        near &= gap <= bound
    return e.div_(total), near.nonzero().flatten()
