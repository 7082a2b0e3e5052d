"""Skinny float32 products on the CPU, (rows, D) x (D, C) with C about 10: the probe's pool pass and
its per-point dropout passes (issue 9, margin's and DropQuery's rounds).

They are memory-bound, and the BLAS libraries behind torch and numpy differ a lot at this shape.
On an AVX2 AMD EPYC (2 cores, s25) torch's MKL took 0.99 ms (``addmm``) / 0.59 ms (``linear``) for
a 409 x 1280 x 10 block that numpy's OpenBLAS multiplied in 0.23 ms, and 16-33 ms for a whole
10k x 1280 pool that OpenBLAS did in 9-12 ms; on an AVX-512 Xeon torch's ``addmm`` was the fast
one (s24). So :func:`numpy_faster` times both once per process for each shape class and thread
count, on rows of the pool itself, and the passes use the winner. The two give the same products
up to float32 rounding (summation order), not bit for bit.
"""
from __future__ import annotations

import contextlib

import numpy as np

from ._lowp import _timed  # best of a few calls after a warm-up (the bf16 calibration's)

__all__ = ["blas_threads", "linear_into", "numpy_faster"]

#: numpy is used when its product takes at most this fraction of torch's: a coin flip between two
#: equal libraries would only make results depend on the timing noise.
_GAIN = 0.8

# (D, C, rows rounded down to a power of 2, torch threads) -> whether numpy won.
_NUMPY_FASTER: dict = {}


def numpy_faster(x, c: int, rows: int) -> bool:
    """Whether numpy's ``x[:rows] @ wt`` beats torch's ``addmm`` and ``linear`` here for a (D, c) ``wt``.

    ``x``: a float32 CPU tensor (N, D), the rows a pass will read; measured on its first ``rows``
    rows once per process for each (D, c, rows to a power of 2, torch threads): about 1-3 ms."""
    import torch

    if x.is_cuda or x.dtype != torch.float32:
        return False
    rows = max(1, min(int(rows), x.shape[0]))
    key = (int(x.shape[1]), int(c), 1 << (rows.bit_length() - 1), torch.get_num_threads())
    if key not in _NUMPY_FASTER:
        xb = x[:rows].contiguous()
        wt = torch.randn((x.shape[1], int(c)), generator=torch.Generator().manual_seed(0))
        b = torch.zeros(int(c))
        out = torch.empty((rows, int(c)))
        w = wt.T.contiguous()
        xn, wn, on = xb.numpy(), wt.numpy(), out.numpy()
        with torch.no_grad(), blas_threads(1 if torch.get_num_threads() == 1 else None):
            t_torch = min(_timed(lambda: torch.addmm(b, xb, wt, out=out)),  # the pool pass's product
                          _timed(lambda: torch.nn.functional.linear(xb, w, b)))  # the dropout passes'
            t_numpy = _timed(lambda: np.matmul(xn, wn, out=on))
        _NUMPY_FASTER[key] = t_numpy <= _GAIN * t_torch
    return _NUMPY_FASTER[key]


def linear_into(out, x, wt, b, use_numpy: bool):
    """``out = x @ wt + b`` in place and returned: ``x`` (r, D), ``wt`` (D, C) contiguous, ``b`` (C,),
    ``out`` a C-contiguous (r, C) float32 tensor; numpy's BLAS when ``use_numpy`` (CPU tensors)."""
    import torch

    if not use_numpy:
        return torch.addmm(b, x, wt, out=out)
    np.matmul(x.numpy(), wt.numpy(), out=out.numpy())  # releases the GIL, as torch's ops do
    return out.add_(b)


def blas_threads(n: int | None):
    """Cap numpy's BLAS threads inside the block (None: leave them). Two pass threads that each
    call a BLAS with its own pool of 2 would put 4 threads on 2 cores."""
    if n is None:
        return contextlib.nullcontext()
    from ._util import _pool_controller

    return _pool_controller().limit(limits=int(n), user_api="blas")
