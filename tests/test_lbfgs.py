"""alwidget._lbfgs: the probe's softmax regression finds the optimum scikit-learn's finds, and its
analytic gradient (weights kept (C, D)) equals autograd's."""
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from alwidget import _lbfgs
from alwidget._lbfgs import _loss_grad, lbfgs


def test_softmax_regression_matches_scikit_learns_optimum(digits):
    X, y = digits
    x = torch.from_numpy(((X - X.mean(0)) / (X.std(0) + 1e-6))[:300].astype(np.float32))
    yt = torch.from_numpy(y[:300].astype(np.int64))
    n, d, c, C = x.shape[0], x.shape[1], 10, 0.5
    W, b, n_iter = lbfgs(x, yt, torch.zeros(d, c), torch.zeros(c), 0.5 / (C * n), 500, gtol=1e-7)
    assert W.shape == (d, c) and b.shape == (c,) and 0 < n_iter <= 500
    ref = LogisticRegression(C=C, tol=1e-10, max_iter=5000).fit(x.numpy(), yt.numpy())
    got = torch.softmax(x @ W + b, 1).numpy()
    np.testing.assert_allclose(got, ref.predict_proba(x.numpy()), atol=2e-3)
    np.testing.assert_allclose(W.T.numpy(), ref.coef_, atol=2e-2 * np.abs(ref.coef_).max())


def test_analytic_gradient_equals_autograd():
    g = torch.Generator().manual_seed(0)
    x, Wt, b = torch.randn(50, 7, generator=g), torch.randn(4, 7, generator=g), torch.randn(4, generator=g)
    onehot = torch.nn.functional.one_hot(torch.randint(0, 4, (50,), generator=g), 4).float()
    Wt.requires_grad_(True)
    b.requires_grad_(True)
    loss = -(torch.log_softmax(torch.nn.functional.linear(x, Wt, b), 1) * onehot).sum() / 50 + 0.3 * Wt.square().sum()
    loss.backward()
    got_loss, grad = _loss_grad(x, x.T.contiguous(), onehot.T.contiguous(), Wt.detach(), b.detach(), 0.3)
    assert abs(got_loss - loss.item()) < 1e-5
    gw, gb = grad[:28].view(4, 7), grad[28:]
    torch.testing.assert_close(gw, Wt.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gb, b.grad, rtol=1e-5, atol=1e-6)


def _few_rows(n=48, d=256, c=5, seed=0):
    """Rows of a low-rank signal plus noise (like image embeddings): few rows, many features."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, c, (n,), generator=g)
    centres = torch.randn(c, 8, generator=g) @ torch.randn(8, d, generator=g)
    return centres[y] + 0.5 * torch.randn(n, d, generator=g), y


def _objective(x, y, W, b, reg):
    return float(torch.nn.functional.cross_entropy(x @ W + b, y) + reg * W.square().sum())


@pytest.mark.parametrize("duplicates,rows", [(False, 48), (True, 48), (False, 128)])
def test_fit_in_the_rows_span_reaches_the_direct_optimum(monkeypatch, duplicates, rows):
    """Few rows (n <= D / 2) are fitted in their span; with duplicate rows (a singular Gram
    matrix) too. Same optimum as the fit over all D features, from a warm start off the span."""
    x, y = _few_rows(n=rows)
    if duplicates:
        x, y = torch.cat([x, x[:10]]), torch.cat([y, y[:10]])
    n, d = x.shape
    assert n <= _lbfgs.SPAN_MAX_ROWS * d
    W0 = 0.01 * torch.randn(d, 5, generator=torch.Generator().manual_seed(1))  # not in the span
    reg = 5.0 / n  # well conditioned: both fits reach the optimum to 1e-6
    got = lbfgs(x, y, W0, torch.zeros(5), reg, 500, gtol=1e-7)
    monkeypatch.setattr(_lbfgs, "SPAN_MAX_ROWS", 0.0)  # the fit over all D features
    ref = lbfgs(x, y, W0, torch.zeros(5), reg, 500, gtol=1e-7)
    assert abs(_objective(x, y, *got[:2], reg) - _objective(x, y, *ref[:2], reg)) < 1e-5
    torch.testing.assert_close(torch.softmax(x @ got[0] + got[1], 1), torch.softmax(x @ ref[0] + ref[1], 1),
                               atol=1e-3, rtol=0)
    torch.testing.assert_close(got[0], ref[0], atol=1e-2 * float(ref[0].abs().max()), rtol=0)


def test_the_span_fit_is_used_only_when_it_pays(monkeypatch):
    """The Gram factor is formed for few rows on the CPU, not for many."""
    calls = []
    real = _lbfgs._gram_factor
    monkeypatch.setattr(_lbfgs, "_gram_factor", lambda K: calls.append(K.shape) or real(K))
    x, y = _few_rows(n=48, d=256)
    lbfgs(x, y, torch.zeros(256, 5), torch.zeros(5), 0.01, 5)
    x2, y2 = _few_rows(n=128, d=256)  # D / 2: still the span
    lbfgs(x2, y2, torch.zeros(256, 5), torch.zeros(5), 0.01, 5)
    x3, y3 = _few_rows(n=129, d=256)  # one row more: the fit over all D features
    lbfgs(x3, y3, torch.zeros(256, 5), torch.zeros(5), 0.01, 5)
    assert calls == [(48, 48), (128, 128)]


def test_the_span_of_a_single_repeated_row_still_fits():
    """n copies of one row: the Gram matrix has rank 1; the jittered factor still gives the
    one-row optimum (both classes' logits on the row are finite and the loss decreased)."""
    x = torch.ones(6, 64)
    y = torch.tensor([0, 1, 0, 1, 0, 0])
    W, b, _ = lbfgs(x, y, torch.zeros(64, 2), torch.zeros(2), 0.01, 200)
    p = torch.softmax(x[:1] @ W + b, 1)
    assert torch.isfinite(W).all() and abs(float(p[0, 0]) - 4 / 6) < 0.02


def test_the_compact_direction_equals_the_two_loop_recursion():
    """_Compact (numpy) and _TwoLoop give the same L-BFGS direction, also once the memory is full
    and its oldest pairs are dropped, and after a restart."""
    rng = np.random.default_rng(0)
    n, history = 50, 4
    A = rng.normal(size=(n, n))
    H = A @ A.T + n * np.eye(n)  # pairs from a convex quadratic: s.y > 0
    compact, loop = _lbfgs._Compact(n, history, np.float64), _lbfgs._TwoLoop(history)
    for step in range(9):
        if step == 6:
            compact.clear(), loop.clear()
        s = rng.normal(size=n)
        y = H @ s
        compact.push(s, y, float(s @ y)), loop.push(s, y, float(s @ y))
        g = rng.normal(size=n)
        assert len(compact) == len(loop) == min(history, step + 1 - (6 if step >= 6 else 0))
        np.testing.assert_allclose(compact.direction(g), loop.direction(g), rtol=1e-8, atol=1e-10)
