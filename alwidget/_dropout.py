"""The CPU and CUDA kernels behind LinearProbe.predict_dropout (input dropout on a linear model).

Each returns ``(n_passes, rows)`` int64 argmax positions over the seen classes; ``w`` is the
(C, D) weight for ``linear()``, ``bias`` (C,). :mod:`alwidget.probe` chooses between them and
owns the settings (``DROPOUT_BLOCK``, ``SHARED_MASKS_MIN``) and the seeded mask bank.

- ``banked`` (CPU, small pools): each block of the pool reads a seeded bank of 4096 i.i.d.
  Bernoulli rows at a random offset: a point gets a different bank row in every pass; points in
  different blocks may share one. One (N, D) mask multiply per pass.
- ``shared`` (CPU, large pools): the rows of a block share one bank row per pass, so a pass is a
  product with masked weights, (x * m) W = x (m W), and all passes of a block are one
  (passes * C, D) x (D, rows) product with no (N, D) temporary: 133 -> 62 ms at N = 100k,
  D = 512, 3 passes, one thread (issue 12); in that orientation rather than (rows, D) x
  (D, passes * C), 194 -> 143 ms on an AMD EPYC.
- ``iid`` (CUDA): every mask drawn on the device.

``mc_dropout_proba`` (BALD's consistent MC-dropout probabilities) lives here too and is
re-exported by :mod:`alwidget.probe`.
"""
from __future__ import annotations

import numpy as np

from . import _util
from ._matmul import blas_threads, linear_into, numpy_faster
from ._util import share_blocks


def check_passes(name: str, n, p) -> None:
    """Refuse a pass count that is not a positive integer and a drop probability outside [0, 1)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n!r}")
    if not 0 <= p < 1:
        raise ValueError(f"p must be in [0, 1), got {p!r}")


def banked(xs, w, bias, n_passes: int, p: float, seed: int, bank):
    """A bank row per point and pass, read at a random offset per block (small CPU pools).

    ``bank``: (2R, D) inverted-scaled masks (a row window never wraps); the seed picks the offsets.
    Each block of R rows is run in chunks of about :data:`_CHUNK_BYTES` (masked rows that stay in
    cache for their product, each chunk's passes together), the chunks shared by two threads on two
    CPUs (``_util.pass_workers``): 51 -> 26 ms at 10k x 1280 and 3 passes, the same output. The
    products use numpy's BLAS where :func:`_matmul.numpy_faster` found it faster."""
    import torch

    n, d = xs.shape
    r_bank = bank.shape[0] // 2
    rows = min(n, r_bank)
    n_blocks = -(-n // rows)
    base = np.random.default_rng([int(seed), n]).integers(0, r_bank, n_blocks)
    step = max(1, r_bank // n_passes)  # passes read disjoint rows for the same point
    chunk = max(1, min(rows, _CHUNK_BYTES // (4 * d)))
    per_block = -(-rows // chunk)
    out = torch.empty((n_passes, n), dtype=torch.int64, device=xs.device)
    use_np = numpy_faster(xs, w.shape[0], chunk)  # numpy's BLAS where it is faster (_matmul)
    wt = w.T.contiguous() if use_np else None

    def task(i):
        blk, j = divmod(i, per_block)
        a = blk * rows + j * chunk
        r = min(chunk, n - a, (blk + 1) * rows - a)
        if r <= 0:
            return
        buf = torch.empty((r, d), dtype=torch.float32, device=xs.device)
        z = torch.empty((r, w.shape[0]), dtype=torch.float32, device=xs.device) if use_np else None
        with torch.no_grad():
            for t in range(n_passes):
                o = int(base[blk] + t * step) % r_bank + j * chunk
                torch.mul(xs[a:a + r], bank[o:o + r], out=buf)
                zt = linear_into(z, buf, wt, bias, True) if use_np else torch.nn.functional.linear(buf, w, bias)
                out[t, a:a + r] = torch.nan_to_num(zt, nan=0.0).argmax(1)

    workers = 1 if xs.is_cuda else _util.pass_workers()
    with blas_threads(1 if use_np and workers > 1 else None):
        share_blocks(n_blocks * per_block, task, workers=workers)
    return out


#: Rows per chunk of :func:`banked` (their masked copy, float32): it stays in cache for its product.
_CHUNK_BYTES = 1 << 21


def shared(xs, w, bias, n_passes: int, p: float, seed: int, bank, block: int, block_ids=None, *,
           rows=None, clean=None):
    """One bank row per block of ``block`` rows and pass, applied to the weights: x (m W).

    Every block of the pool, or only ``block_ids`` (their rows in order). ``bank``: (>= 1, D)
    inverted-scaled masks; the seed picks a row per block and pass.

    ``rows`` (CPU): read rows ``xs[rows]`` instead of xs itself, a block at a time into a small
    buffer, so that they are never copied out as a whole (the same values, the same products:
    the same result as on ``xs[rows]``). ``clean``: an (n, C) float32 tensor that receives the
    logits without dropout, ``linear(x, w, bias)``, as C more columns of each block's product
    (one read of the rows for both). Blocks go in groups (:func:`_group`): their masked weights in
    one product, their classes in one reduction (the first largest logit, as ``argmax``)."""
    import torch

    n, d = xs.shape if rows is None else (len(rows), xs.shape[1])
    c = w.shape[0]
    n_blocks = -(-n // block)
    pick = torch.from_numpy(np.random.default_rng([seed, n, 1]).integers(0, bank.shape[0], (n_blocks, n_passes)))
    ids = np.arange(n_blocks) if block_ids is None else np.asarray(block_ids, dtype=np.int64)
    sizes = np.minimum(block, n - ids * block)
    out = torch.empty((n_passes, int(sizes.sum())), dtype=torch.int64, device=xs.device)
    b_all = (bias.repeat(n_passes) if clean is None else bias.repeat(n_passes + 1))[:, None]
    src = None if rows is None else xs.numpy()
    m = n_passes * c
    at, step = 0, _group(n_passes + (clean is not None), c, d)
    with torch.no_grad():
        for g in range(0, ids.size, step):
            gid, gsz = ids[g:g + step], sizes[g:g + step]
            masks = bank[pick[torch.from_numpy(gid)]]  # (blocks, passes, D)
            if clean is not None:  # a mask of ones: the clean weights, w * 1 = w
                masks = torch.cat([masks, masks.new_ones((gid.size, 1, d))], 1)
            wk = (masks[:, :, None, :] * w[None, None]).reshape(gid.size, -1, d)  # (blocks, passes * C [+ C], D)
            # Each block's logits as (passes * C [+ C], rows): see _products.
            z = torch.empty((gid.size, wk.shape[1], block), dtype=torch.float32, device=xs.device)
            _products(z, wk, b_all, xs if src is None else (src, rows), (gid * block).tolist(), gsz.tolist())
            zt = int(gsz.sum())
            if clean is not None:
                clean[at:at + zt] = _valid(z[:, m:].transpose(1, 2), gsz, 1).reshape(zt, c)
            cls = _argmax_classes(z[:, :m].view(gid.size, n_passes, c, block))  # (blocks, passes, block)
            out[:, at:at + zt] = _valid(cls.transpose(0, 1), gsz, 2).reshape(n_passes, zt)
            at += zt
    return out


#: Blocks per task when two threads share a group's products (:func:`_util.share_blocks`).
_TASK_BLOCKS = 8


def _products(z, wk, b_all, x, starts, sizes) -> None:
    """z[j] = b_all + wk[j] @ (block j's rows).T for every block j of a group, the blocks shared
    by two threads on two CPUs (``_util.pass_workers``). ``x``: the pool tensor (blocks read in
    place), or ``(array, rows)`` to gather each block's rows into a buffer of the task's own."""
    import torch

    block = z.shape[2]
    workers = 1 if z.is_cuda else None

    def task(t):
        buf = None if torch.is_tensor(x) else torch.from_numpy(np.empty((block, x[0].shape[1]), np.float32))
        with torch.no_grad():
            for j in range(t * _TASK_BLOCKS, min((t + 1) * _TASK_BLOCKS, len(starts))):
                a, r = starts[j], sizes[j]
                if buf is None:
                    xb = x[a:a + r]
                else:  # mode="clip": no checking copy of `out` (the rows are valid indices)
                    np.take(x[0], x[1][a:a + r], axis=0, out=buf.numpy()[:r], mode="clip")
                    xb = buf if r == block else buf[:r]
                # W x.T: 1.2-2x faster on CPUs than x W.T for these skinny products, and the class
                # reduction then runs over rows of contiguous (block,) vectors.
                torch.addmm(b_all, wk[j], xb.T, out=z[j] if r == block else z[j, :, :r])

    share_blocks(-(-len(starts) // _TASK_BLOCKS), task, workers=workers)


def _valid(t, sizes, dim: int):
    """t's blocks along dim 0 (dim 1 after a transpose) cut to their valid rows along ``dim``:
    the whole tensor when every block is full, else the blocks' valid parts concatenated."""
    import torch

    full = t.shape[dim]
    if (sizes == full).all():
        return t
    bdim = 1 if dim == 2 else 0
    return torch.cat([t.narrow(bdim, j, 1).narrow(dim, 0, int(r)) for j, r in enumerate(sizes)], dim)


def _argmax_classes(z):
    """Argmax over dim 2 of (blocks, passes, C, rows) logits, NaN read as 0, ties to the first
    class (as ``argmax``): a running maximum over the C contiguous (rows,) slices, which was
    several times faster on the CPU than ``argmax`` over a middle dimension."""
    import torch

    z = torch.nan_to_num_(z, nan=0.0)
    best = z[:, :, 0].clone()
    idx = torch.zeros(best.shape, dtype=torch.int64, device=z.device)
    for k in range(1, z.shape[2]):
        gt = z[:, :, k] > best
        idx.masked_fill_(gt, k)
        torch.maximum(best, z[:, :, k], out=best)
    return idx


#: Blocks per group in :func:`shared`: at least this many, more while their masked weights (blocks x
#: passes * C x D floats) stay under :data:`_GROUP_BYTES`: an AnchorAL subpool at its cap (44 blocks,
#: C = 10, D = 512) is one group, 0.9 ms less per round at 1M than groups of 16 (the same results).
_GROUP = 16
_GROUP_BYTES = 1 << 23


def _group(columns: int, c: int, d: int) -> int:
    """Blocks per group of :func:`shared` for ``columns`` weight matrices of (c, d) per block."""
    return max(_GROUP, _GROUP_BYTES // (4 * columns * c * d))


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


# --------------------------------------------------------------------------- MC dropout (BALD)

def mc_dropout_proba(probe, rows=None, *, n_masks: int = 20, p: float = 0.5, seed: int = 0,
                     block_bytes: int = 1 << 26):
    """Class probabilities of pool rows under ``n_masks`` consistent input-dropout masks.

    Yields ``(start, P)`` per block of ``rows`` (default: the whole pool seen in ``fit``), with P a
    float32 torch tensor of shape (n_masks, n_block, n_seen) on ``probe.device`` over the classes
    that had labels (``probe.seen_classes``). Mask k drops each standardised input with
    probability ``p`` and scales the rest by 1 / (1 - p); the K masks are drawn once from
    ``seed`` and shared by every row (consistent MC dropout: what BatchBALD's joint needs).
    Dropout on the inputs of a linear model is a dropout on the rows of its weights,
    W_k = diag(m_k) W / (1 - p), so each block is one (n, D) x (D, K * C) product; blocks keep
    the (K, n, C) result under ``block_bytes``, so a 1M pool is never held as N x K x C.
    """
    import torch

    probe._check_fitted()
    check_passes("n_masks", n_masks, p)
    xs = probe.transform(None)
    d = xs.shape[1]
    cols = torch.from_numpy(np.flatnonzero(probe.seen_classes)).to(probe.device)
    w, b = probe._W[:, cols], probe._b[cols]  # (D, C), (C,)
    c = w.shape[1]
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    masks = (torch.rand((int(n_masks), d), generator=g) >= p).float().div_(1.0 - p).to(probe.device)
    wk = (masks[:, :, None] * w[None]).permute(1, 0, 2).reshape(d, -1)  # (D, K * C)
    rows = np.arange(xs.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
    step = max(1, int(block_bytes) // (4 * int(n_masks) * max(c, 1)))
    with torch.no_grad():
        for a in range(0, rows.size, step):
            xb = xs[torch.from_numpy(rows[a:a + step]).to(probe.device)]
            z = (xb @ wk).view(xb.shape[0], int(n_masks), c) + b
            yield a, torch.nan_to_num(z, nan=0.0).log_softmax(-1).exp().permute(1, 0, 2)
