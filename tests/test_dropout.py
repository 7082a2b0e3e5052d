"""alwidget._dropout.banked: chunks of a block, shared by two threads, give what the whole block
gave. alwidget._dropout.shared: grouped blocks, products shared by two threads, rows read in place and the clean logits from the same
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


def banked_reference(xs, w, bias, n_passes, seed, bank):
    """The per-point bank path one whole block of R rows at a time (before it ran in chunks)."""
    n, d = xs.shape
    r_bank = bank.shape[0] // 2
    rows = min(n, r_bank)
    base = np.random.default_rng([seed, n]).integers(0, r_bank, -(-n // rows))
    step = max(1, r_bank // n_passes)
    out = torch.empty((n_passes, n), dtype=torch.int64)
    for blk, a in enumerate(range(0, n, rows)):
        xb = xs[a:a + rows]
        for t in range(n_passes):
            o = int(base[blk] + t * step) % r_bank
            z = torch.nn.functional.linear(xb * bank[o:o + xb.shape[0]], w, bias)
            out[t, a:a + xb.shape[0]] = torch.nan_to_num(z, nan=0.0).argmax(1)
    return out


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("chunk_rows", [37, 500, 4096])  # several chunks per block (the last partial), one
def test_banked_chunks_give_the_whole_blocks_result(digits, monkeypatch, workers, chunk_rows):
    monkeypatch.setattr(_util, "pass_workers", lambda: workers)
    xs = torch.from_numpy(digits[0].astype(np.float32))  # 1797 rows: 4 blocks of a 500-row bank, the last partial
    d = xs.shape[1]
    monkeypatch.setattr(_dropout, "_CHUNK_BYTES", 4 * d * chunk_rows)
    w = torch.randn(10, d, generator=torch.Generator().manual_seed(2))
    b = torch.randn(10, generator=torch.Generator().manual_seed(3))
    m = (torch.rand(500, d, generator=torch.Generator().manual_seed(4)) >= 0.75).float() / 0.25
    bank = torch.cat([m, m])
    got = _dropout.banked(xs, w, b, 3, 0.75, 9, bank)
    want = banked_reference(xs, w, b, 3, 9, bank)
    assert got.shape == (3, 1797)
    # The same products per row; a BLAS may round another row count differently (near ties only).
    assert (got == want).float().mean() >= 0.999
    assert torch.equal(got, _dropout.banked(xs, w, b, 3, 0.75, 9, bank))
    assert not torch.equal(got, _dropout.banked(xs, w, b, 3, 0.75, 10, bank))  # the seed moves the offsets


def test_ties_take_the_first_class_as_argmax():
    """Equal logits (zero weights, and NaN read as 0): class 0, as argmax gives."""
    xs = torch.ones((300, 8))
    w = torch.zeros((4, 8))
    w[2, 0] = float("nan")
    bank = torch.ones((16, 8))
    out = _dropout.shared(xs, w, torch.zeros(4), 2, 0.0, 0, bank, 256)
    assert out.shape == (2, 300) and (out == 0).all()
