"""The CPU and CUDA kernels behind LinearProbe.predict_dropout (input dropout on a linear model).

Each returns ``(n_passes, rows)`` int64 argmax positions over the seen classes; ``w`` is the
(C, D) weight for ``linear()``, ``bias`` (C,). :mod:`alwidget.probe` chooses between them and
owns the settings (``DROPOUT_BLOCK``, ``SHARED_MASKS_MIN``) and the seeded mask bank.

- ``banked`` (CPU, small pools): each block of the pool reads a seeded bank of 4096 i.i.d.
  Bernoulli rows at a random offset: a point gets a different bank row in every pass; points in
  different blocks may share one. One (N, D) mask multiply per pass.
- ``shared`` (CPU, large pools): the rows of a block share one bank row per pass, so a pass is a
  product with masked weights, (x * m) W = x (m W), and all passes of a block are one
  (rows, D) x (D, passes * C) product with no (N, D) temporary: 133 -> 62 ms at N = 100k,
  D = 512, 3 passes, one thread (issue 12).
- ``iid`` (CUDA): every mask drawn on the device.
"""
from __future__ import annotations

import numpy as np


def banked(xs, w, bias, n_passes: int, p: float, seed: int, bank):
    """A bank row per point and pass, read at a random offset per block (small CPU pools).

    ``bank``: (2R, D) inverted-scaled masks (a row window never wraps)."""
    import torch

    n, d = xs.shape
    r_bank = bank.shape[0] // 2
    rows = min(n, r_bank)
    n_blocks = -(-n // rows)
    base = np.random.default_rng([int(seed), n]).integers(0, r_bank, n_blocks)
    step = max(1, r_bank // n_passes)  # passes read disjoint rows for the same point
    out = torch.empty((n_passes, n), dtype=torch.int64, device=xs.device)
    buf = torch.empty((rows, d), dtype=torch.float32, device=xs.device)
    with torch.no_grad():
        for blk in range(n_blocks):
            a = blk * rows
            xb = xs[a:a + rows]
            r = xb.shape[0]
            for t in range(n_passes):
                o = int(base[blk] + t * step) % r_bank
                torch.mul(xb, bank[o:o + r], out=buf[:r])
                z = torch.nn.functional.linear(buf[:r], w, bias)
                out[t, a:a + r] = torch.nan_to_num(z, nan=0.0).argmax(1)
    return out


def shared(xs, w, bias, n_passes: int, p: float, seed: int, bank, block: int, block_ids=None):
    """One bank row per block of ``block`` rows and pass, applied to the weights: x (m W).

    Every block of the pool, or only ``block_ids`` (their rows in order). ``bank``: (>= 1, D)
    inverted-scaled masks; the seed picks a row per block and pass."""
    import torch

    n, d = xs.shape
    c = w.shape[0]
    n_blocks = -(-n // block)
    pick = torch.from_numpy(np.random.default_rng([seed, n, 1]).integers(0, bank.shape[0], (n_blocks, n_passes)))
    ids = np.arange(n_blocks) if block_ids is None else np.asarray(block_ids, dtype=np.int64)
    sizes = np.minimum(block, n - ids * block)
    out = torch.empty((n_passes, int(sizes.sum())), dtype=torch.int64, device=xs.device)
    b_all = bias.repeat(n_passes)
    at = 0
    with torch.no_grad():
        for blk, r in zip(ids.tolist(), sizes.tolist()):
            a = blk * block
            wk = (bank[pick[blk]][:, None, :] * w[None]).reshape(n_passes * c, d)  # (passes * C, D)
            z = torch.nn.functional.linear(xs[a:a + r], wk, b_all)
            out[:, at:at + r] = torch.nan_to_num(z, nan=0.0).view(r, n_passes, c).argmax(2).T
            at += r
    return out


def iid(xs, w, bias, n_passes: int, p: float, seed: int):
    """Masks drawn i.i.d. per point and pass on xs's device (the CUDA path)."""
    import torch

    n = xs.shape[0]
    g = torch.Generator(device=xs.device).manual_seed(seed)
    out = torch.empty((n_passes, n), dtype=torch.int64, device=xs.device)
    rows = 1 << 16
    with torch.no_grad():
        for a in range(0, n, rows):
            xb = xs[a:a + rows]
            for t in range(n_passes):
                keep = torch.rand(xb.shape, generator=g, device=xs.device) >= p
                z = torch.nn.functional.linear(xb * keep * (1.0 / (1.0 - p)), w, bias)
                out[t, a:a + rows] = torch.nan_to_num(z, nan=0.0).argmax(1)
    return out
