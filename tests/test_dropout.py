"""alwidget._dropout.shared: grouped blocks, products shared by two threads, rows read in place and the clean logits from the same
products give what one product per block of gathered rows gave (the passes bitwise, the clean
logits to rounding)."""
import numpy as np
import pytest
import torch

from alwidget import _dropout, _util


def reference(xs, w, bias, n_passes, seed, bank, block, block_ids=None):
    """The passes one block at a time: its masked weights, one product (as the kernel orients it:
    (passes * C, D) x (D, rows); BLAS may round the other orientation differently), then argmax."""
    n, d = xs.shape
    c = w.shape[0]
    n_blocks = -(-n // block)
    pick = torch.from_numpy(np.random.default_rng([seed, n, 1]).integers(0, bank.shape[0], (n_blocks, n_passes)))
    ids = np.arange(n_blocks) if block_ids is None else np.asarray(block_ids)
    out = []
    for blk in ids.tolist():
        xb = xs[blk * block:(blk + 1) * block]
        wk = (bank[pick[blk]][:, None, :] * w[None]).reshape(n_passes * c, d)
        z = torch.addmm(bias.repeat(n_passes)[:, None], wk, xb.T)
        out.append(torch.nan_to_num(z, nan=0.0).view(n_passes, c, xb.shape[0]).argmax(1))
    return torch.cat(out, 1)


@pytest.mark.parametrize("workers", [1, 2])  # the blocks' products on one thread, or shared by two
@pytest.mark.parametrize("group_bytes", [0, _dropout._GROUP_BYTES])  # groups of 16 blocks, or of all of them
@pytest.mark.parametrize("d, n_pool, n_rows, c", [(64, 1797, 1797, 10), (512, 20_000, 5_000, 10), (512, 9_000, 4_200, 3)])
def test_shared_masks_match_one_product_per_block(digits, monkeypatch, workers, group_bytes, d, n_pool, n_rows, c):
    monkeypatch.setattr(_dropout, "_GROUP_BYTES", group_bytes)
    monkeypatch.setattr(_util, "pass_workers", lambda: workers)
    rng = np.random.default_rng(d + c)
    pool = torch.from_numpy(digits[0].astype(np.float32)) if d == 64 else torch.randn(n_pool, d, generator=torch.Generator().manual_seed(1))
    rows = np.sort(rng.choice(pool.shape[0], n_rows, replace=False))
    w = torch.randn(c, d, generator=torch.Generator().manual_seed(2))
    b = torch.randn(c, generator=torch.Generator().manual_seed(3))
    bank = (torch.rand(4096, d, generator=torch.Generator().manual_seed(4)) >= 0.75).float() / 0.25
    xs = pool[torch.from_numpy(rows)].contiguous()
    assert (_dropout._group(4, c, d) > 16) == (group_bytes > 0)
    want = reference(xs, w, b, 3, 9, bank, 256)
    torch.testing.assert_close(_dropout.shared(xs, w, b, 3, 0.75, 9, bank, 256), want, rtol=0, atol=0)
    clean = torch.empty((n_rows, c))
    got = _dropout.shared(pool, w, b, 3, 0.75, 9, bank, 256, rows=rows, clean=clean)  # read in place
    assert torch.equal(got, want)
    # The clean logits come out of one product with the masked weights (4x the columns): the same
    # sums, but BLAS may block them differently per shape (bitwise on an Intel Xeon, about 1e-6 of
    # the logits' scale (about 20 here) on an AMD EPYC).
    torch.testing.assert_close(clean, torch.nn.functional.linear(xs, w, b), rtol=1e-5, atol=1e-4)
    some = np.arange(1, -(-n_rows // 256), 2)  # every other block, the last one partial or not
    assert torch.equal(_dropout.shared(pool, w, b, 3, 0.75, 9, bank, 256, some, rows=rows),
                       reference(xs, w, b, 3, 9, bank, 256, some))


def test_ties_take_the_first_class_as_argmax():
    """Equal logits (zero weights, and NaN read as 0): class 0, as argmax gives."""
    xs = torch.ones((300, 8))
    w = torch.zeros((4, 8))
    w[2, 0] = float("nan")
    bank = torch.ones((16, 8))
    out = _dropout.shared(xs, w, torch.zeros(4), 2, 0.0, 0, bank, 256)
    assert out.shape == (2, 300) and (out == 0).all()
