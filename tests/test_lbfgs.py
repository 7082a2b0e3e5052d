"""alwidget._lbfgs: the probe's softmax regression finds the optimum scikit-learn's finds, and its
analytic gradient (weights kept (C, D)) equals autograd's."""
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

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
