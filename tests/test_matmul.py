"""numpy-or-torch skinny products (alwidget._matmul) and the passes that use them."""
import numpy as np
import pytest
import torch

from alwidget import _dropout, _matmul, _util
from alwidget.probe import LinearProbe


def _data(n=700, d=96, c=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, d), generator=g), torch.randn((d, c), generator=g), torch.randn(c, generator=g)


@pytest.mark.parametrize("use_numpy", [False, True])
def test_linear_into_writes_the_product_plus_bias_into_out(use_numpy):
    x, wt, b = _data()
    out = torch.full((x.shape[0], wt.shape[1]), np.nan)
    got = _matmul.linear_into(out, x, wt, b, use_numpy)
    assert got.data_ptr() == out.data_ptr()
    want = (x.double() @ wt.double() + b.double()).float()
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-4)


def test_linear_into_accepts_a_row_slice_of_a_bigger_output():
    x, wt, b = _data()
    big = torch.zeros((900, wt.shape[1]))
    _matmul.linear_into(big[100:100 + x.shape[0]], x, wt, b, True)
    torch.testing.assert_close(big[100:800], x @ wt + b, rtol=1e-5, atol=1e-4)
    assert (big[:100] == 0).all() and (big[800:] == 0).all()


def test_numpy_faster_is_measured_once_per_shape_class(monkeypatch):
    monkeypatch.setattr(_matmul, "_NUMPY_FASTER", {})
    x, _, _ = _data(n=600, d=64)
    before = x.clone()
    first = _matmul.numpy_faster(x, 10, 512)
    assert isinstance(first, bool) and torch.equal(x, before)
    assert len(_matmul._NUMPY_FASTER) == 1
    _matmul._NUMPY_FASTER[next(iter(_matmul._NUMPY_FASTER))] = not first  # a cached answer is reused
    assert _matmul.numpy_faster(x, 10, 600) is (not first)  # 600 rows: the same power-of-2 class as 512
    _matmul.numpy_faster(x, 10, 300)
    _matmul.numpy_faster(x, 4, 512)
    assert len(_matmul._NUMPY_FASTER) == 3


def test_numpy_faster_says_no_for_other_dtypes():
    assert _matmul.numpy_faster(torch.zeros((64, 8), dtype=torch.float64), 3, 64) is False


def test_blas_threads_caps_numpys_blas_inside_the_block_only():
    from threadpoolctl import threadpool_info

    blas = lambda: [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]  # noqa: E731
    np.ones((4, 4)) @ np.ones((4, 4))  # numpy's BLAS is loaded
    outside = blas()
    with _matmul.blas_threads(1):
        assert blas() and all(n == 1 for n in blas())
    assert blas() == outside
    with _matmul.blas_threads(None):
        assert blas() == outside


@pytest.mark.parametrize("workers", [1, 2])
def test_pool_pass_gives_the_same_probabilities_with_either_blas(monkeypatch, workers):
    """The probe's pool pass with numpy's products forced on and off (two pass threads or one)."""
    import alwidget.probe as probe_mod

    monkeypatch.setattr(probe_mod, "pass_workers", lambda: workers)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((3000, 48)).astype(np.float32)
    labels = np.full(3000, -1)
    labels[:60] = np.arange(60) % 6
    probs = {}
    for use in (False, True):
        monkeypatch.setattr(probe_mod, "numpy_faster", lambda *a, use=use: use)
        p = LinearProbe(device="cpu", seed=0, low_precision=False).fit(X, labels)
        probs[use] = p.predict_proba()
    np.testing.assert_allclose(probs[True], probs[False], rtol=1e-5, atol=1e-6)
    assert (probs[True].argmax(1) == probs[False].argmax(1)).mean() >= 0.999
    np.testing.assert_allclose(probs[True].sum(1), 1.0, atol=1e-5)


@pytest.mark.parametrize("workers", [1, 2])
def test_banked_dropout_gives_the_same_classes_with_either_blas(monkeypatch, workers):
    monkeypatch.setattr(_util, "pass_workers", lambda: workers)
    monkeypatch.setattr(_dropout, "_CHUNK_BYTES", 4 * 64 * 100)  # 100-row chunks: partial ones too
    g = torch.Generator().manual_seed(5)
    xs, w, b = torch.randn((1234, 64), generator=g), torch.randn((10, 64), generator=g), torch.randn(10, generator=g)
    m = (torch.rand(400, 64, generator=g) >= 0.75).float() / 0.25
    bank = torch.cat([m, m])
    got = {}
    for use in (False, True):
        monkeypatch.setattr(_dropout, "numpy_faster", lambda *a, use=use: use)
        got[use] = _dropout.banked(xs, w, b, 3, 0.75, 4, bank)
    assert got[True].shape == (3, 1234)
    assert (got[True] == got[False]).float().mean() >= 0.999  # rounding moves near ties only
