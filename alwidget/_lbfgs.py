"""Full-batch L-BFGS: the loop for any smooth f (numpy arrays or torch tensors), and the probe's
softmax regression on it (analytic gradients, torch tensors)."""
from __future__ import annotations

__all__ = ["lbfgs", "minimize"]


def _loss_grad(x, xt, onehot_t, Wt, b, reg: float):
    """Mean softmax cross-entropy + reg * ||W||^2 and its analytic gradient (no autograd):
    (loss, flat gradient [dW (C*D), db (C)]) in one fresh tensor.

    The weights are (C, D) and the logits (C, n): with ``xt`` = x.T stored contiguous (once per
    fit) the logits are W @ xt, and the gradient g @ x with g (C, n); for the skinny C of a probe
    that was 1.4-1.7x faster per evaluation on CPUs than linear(x, W) and a (n, C) softmax
    (measured at 240-800 rows x 512-1280 features x 10 classes, one thread), and x @ (D, C) with
    x.T @ g slower still. The sums are dot products and the gradient is written by one addmm into
    its slice of the output: fewer small ops per evaluation (issue 12). ``onehot_t``: the (C, n)
    one-hot targets."""
    import torch

    n = x.shape[0]
    c, d = Wt.shape
    logp = torch.addmm(b[:, None], Wt, xt).log_softmax(0)
    w = Wt.reshape(-1)
    loss = reg * float(torch.dot(w, w)) - float(torch.dot(logp.view(-1), onehot_t.view(-1))) / n
    g = logp.exp_().sub_(onehot_t).div_(n)
    out = Wt.new_empty(c * d + c)
    torch.addmm(Wt, g, x, beta=2 * reg, out=out[:c * d].view(c, d))
    torch.sum(g, 1, out=out[c * d:])
    return loss, out


#: On the CPU, fit in the span of the training rows when they number at most this fraction of
#: the features. A 20-step fit measured here (AMD EPYC, one thread, 10 classes), span vs all D
#: features: D = 1280 and 40-320 rows 1.6-1.8x faster (29.2 -> 16.0 ms at 160 rows), D = 768 and
#: 160 rows 1.45x, D = 512 and 40-170 rows 1.15-1.4x; at D / 3 1.4-1.5x with the Gram matrix kept
#: from the last fit (GramCache; 91 -> 60 ms at 430 x 1280) and even without it; from D / 2 the
#: Gram matrix and the (n, n) steps cost about what they save.
SPAN_MAX_ROWS = 1 / 3


def lbfgs(x, y, W0, b0, reg: float, max_iter: int, history: int = 10, gtol: float = 1e-6,
           ftol: float = 1e-9, gram=None):
    """Minimise mean cross-entropy(x @ W + b, y) + reg * ||W||^2 from (W0, b0) with L-BFGS.

    Two-loop recursion with an Armijo backtracking line search; the objective is smooth and
    (for reg > 0) strongly convex, so this converges like torch's or SciPy's L-BFGS. Written
    here because the first torch.optim optimizer of a process imports torch._dynamo (seconds
    on a small machine) and SciPy's L-BFGS-B costs milliseconds per step at this size.
    W0 is (D, C); returns (W (D, C), b) float32 tensors on x's device and the number of iterations.

    With few rows (n <= SPAN_MAX_ROWS * D, CPU) the problem is solved in the rows' span: the
    optimum's W lies there (the penalty is ||W||^2, the bias is free), so with the Gram matrix
    x x^T = L L^T the n rows of L are the rows' coordinates in an orthonormal basis Q = L^-1 x,
    W = Q^T B and ||W|| = ||B||. Each evaluation then multiplies (n, n) instead of (n, D) and
    the (n, n) factor stays in cache. W0 enters as its projection on the span, which leaves
    every training logit unchanged and the penalty no larger. ``gram``: None, or a function of x
    returning x @ x.T as float64 (a GramCache's, which keeps it from one fit to the next).
    """
    if x.device.type == "cpu" and x.shape[0] <= SPAN_MAX_ROWS * x.shape[1]:
        L = _gram_factor((x @ x.T).double() if gram is None else gram(x))
        if L is not None:
            import torch

            # (C, D) @ (D, n) and (C, n) @ (n, D): 3-4x faster here than x @ W0 and x.T @ V
            B0 = torch.linalg.solve_triangular(L, (W0.T @ x.T).T.double(), upper=False).float()
            B, b, n_iter = _fit(L.float(), y, B0, b0, reg, max_iter, history, gtol, ftol)
            V = torch.linalg.solve_triangular(L.T, B.double(), upper=True).float()
            return (V.T @ x).T.contiguous(), b, n_iter
    return _fit(x, y, W0, b0, reg, max_iter, history, gtol, ftol)


class GramCache:
    """x @ x.T of keyed rows, kept from one fit to the next: a fit that adds k rows to m computes
    k x m new products instead of m x m (the full product was 4-15 ms of a 160-320 row fit at
    D = 1280 here). The caller keys each row, ascending (the same key and ``tag``: the same row) and makes
    a new cache when the rows' source changes."""

    def __init__(self):
        self.tag = None
        self.keys = None
        self.K = None

    def __call__(self, keys, x, tag=None):
        import numpy as np
        import torch

        keys = np.asarray(keys, dtype=np.int64)
        if np.any(keys[1:] <= keys[:-1]):
            raise ValueError("GramCache keys must be strictly ascending (one key per row)")
        m = keys.size
        K = torch.empty((m, m), dtype=torch.float64, device=x.device)
        have = np.zeros(m, dtype=bool)
        if self.K is not None and tag == self.tag and self.keys.size:
            pos = np.minimum(np.searchsorted(self.keys, keys), self.keys.size - 1)
            have = self.keys[pos] == keys
            old = torch.from_numpy(np.flatnonzero(have)).to(x.device)
            at = torch.from_numpy(pos[have]).to(x.device)
            K[old[:, None], old] = self.K[at[:, None], at]
        new = torch.from_numpy(np.flatnonzero(~have)).to(x.device)
        if new.numel():
            rows = (x[new] @ x.T).double()
            K[new] = rows
            K[:, new] = rows.T
        self.tag, self.keys, self.K = tag, keys, K
        return K


def _gram_factor(K):
    """Lower-triangular L (float64) with L L^T = K, the Gram matrix (+ the smallest jitter that
    makes it positive definite: duplicate rows make it singular), or None if even 1e-3 of the
    mean diagonal is not enough."""
    import torch

    scale = float(K.diagonal().mean())
    if not scale > 0:
        return None
    eye = torch.eye(K.shape[0], dtype=K.dtype, device=K.device)
    for jitter in (1e-9, 1e-7, 1e-5, 1e-3):
        L, info = torch.linalg.cholesky_ex(K + (jitter * scale) * eye)
        if int(info) == 0:
            return L
    return None


def _fit(x, y, W0, b0, reg, max_iter, history, gtol, ftol):
    """L-BFGS on the rows x themselves; see lbfgs."""
    import torch

    d, c = W0.shape
    onehot_t = torch.nn.functional.one_hot(y, c).to(x.dtype).T.contiguous()
    xt = x.T.contiguous()

    theta0 = torch.cat([W0.T.reshape(-1), b0]).float()
    cpu = theta0.device.type == "cpu"

    def f(theta):
        t = torch.from_numpy(theta) if cpu else theta
        loss, grad = _loss_grad(x, xt, onehot_t, t[:c * d].view(c, d), t[c * d:], reg)
        return loss, grad.numpy() if cpu else grad

    # On the CPU the L-BFGS vectors are numpy views of the same memory: the loop's 4m small
    # vector operations per step cost 2-3x less than as torch calls (issue 12).
    theta, n_iter = minimize(f, theta0.numpy() if cpu else theta0, max_iter, history, gtol, ftol)
    theta = torch.from_numpy(theta) if cpu else theta
    return theta[:c * d].view(c, d).T.contiguous(), theta[c * d:].clone(), n_iter


def minimize(f, theta, max_iter: int, history: int = 10, gtol: float = 1e-6, ftol: float = 1e-9):
    """Minimise a smooth ``f(theta) -> (loss, grad)`` from ``theta`` with L-BFGS; (theta, n_iter).

    ``theta`` is a 1-D numpy array or torch tensor (the gradient of the same kind); two-loop
    recursion with an Armijo backtracking line search, stopping at max|grad| <= gtol, a relative
    decrease below ftol, or when no step decreases the loss at the working precision.
    """
    loss, g = f(theta)
    hist: list = []  # (s, y, 1 / y.s), oldest first
    n_iter = 0
    while n_iter < max_iter and float(abs(g).max()) > gtol:
        q = -g
        alphas = []
        for s, yv, rho in reversed(hist):
            a = rho * float(s @ q)
            q = q - a * yv
            alphas.append(a)
        if hist:
            s, yv, rho = hist[-1]
            q = q * (1.0 / (rho * float(yv @ yv)))  # gamma = s.y / y.y
        else:
            q = q * min(1.0, 1.0 / float(abs(g).sum()))
        for (s, yv, rho), a in zip(hist, reversed(alphas)):
            q = q + (a - rho * float(yv @ q)) * s
        slope = float(g @ q)
        if slope >= 0:  # lost descent (numerical noise): restart from steepest descent
            hist.clear()
            q = -g * min(1.0, 1.0 / float(abs(g).sum()))
            slope = float(g @ q)
        step = 1.0
        for _ in range(30):
            new = theta + step * q
            new_loss, new_g = f(new)
            if new_loss <= loss + 1e-4 * step * slope:
                break
            step *= 0.5
        else:
            break  # no decrease possible at this precision: converged
        s, yv = new - theta, new_g - g
        sy = float(s @ yv)
        if sy > 1e-12:
            hist.append((s, yv, 1.0 / sy))
            if len(hist) > history:
                hist.pop(0)
        n_iter += 1
        done = loss - new_loss <= ftol * max(1.0, abs(loss))
        theta, loss, g = new, new_loss, new_g
        if done:
            break
    return theta, n_iter
