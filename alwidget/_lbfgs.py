"""Full-batch L-BFGS: the loop for any smooth f (numpy arrays or torch tensors), and the probe's
softmax regression on it (analytic gradients, torch tensors)."""
from __future__ import annotations

import numpy as np

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
#: from the last fit (now _trainrows.TrainingRows; 91 -> 60 ms at 430 x 1280) and even without it.
#: With that kept Gram matrix the span also wins up to D / 2 (s25, an AVX2 AMD EPYC, warm 12-step
#: refits at D = 1280 as labels arrive, 4 copies per label: 440-640 rows 16-26 -> 12-20 ms; a margin
#: run's refits at 110-160 labels 21-37 -> 12-20 ms); beyond that the gain shrinks and varies.
SPAN_MAX_ROWS = 1 / 2


def lbfgs(x, y, W0, b0, reg: float, max_iter: int, history: int = 10, gtol: float = 1e-6,
           ftol: float = 1e-9, factor=None):
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
    every training logit unchanged and the penalty no larger. ``factor``: None (computed here), or a
    function of x returning that factor L (or None), e.g. :meth:`alwidget._trainrows.TrainingRows.factor`,
    which keeps it from one fit to the next and extends it as rows arrive.
    """
    if x.device.type == "cpu" and x.shape[0] <= SPAN_MAX_ROWS * x.shape[1]:
        L = _gram_factor((x @ x.T).double()) if factor is None else factor(x)
        if L is not None:
            import torch

            # (C, D) @ (D, n) and (C, n) @ (n, D): 3-4x faster here than x @ W0 and x.T @ V
            B0 = torch.linalg.solve_triangular(L, (W0.T @ x.T).T.double(), upper=False).float()
            B, b, n_iter = _fit(L.float(), y, B0, b0, reg, max_iter, history, gtol, ftol)
            V = torch.linalg.solve_triangular(L.T, B.double(), upper=True).float()
            return (V.T @ x).T.contiguous(), b, n_iter
    return _fit(x, y, W0, b0, reg, max_iter, history, gtol, ftol)


def _gram_factor(K):
    """Lower-triangular L (float64) with L L^T = K, the Gram matrix (+ the smallest jitter that
    makes it positive definite: duplicate rows make it singular), or None if even 1e-3 of the
    mean diagonal is not enough."""
    return _cholesky_jittered(K)[0]


def _cholesky_jittered(K):
    """(L, eps): the factor of K + eps I for the smallest eps in 1e-9 .. 1e-3 of the mean diagonal
    that works, or (None, None)."""
    import torch

    scale = float(K.diagonal().mean())
    if not scale > 0:
        return None, None
    eye = torch.eye(K.shape[0], dtype=K.dtype, device=K.device)
    for jitter in (1e-9, 1e-7, 1e-5, 1e-3):
        L, info = torch.linalg.cholesky_ex(K + (jitter * scale) * eye)
        if int(info) == 0:
            return L, jitter * scale
    return None, None


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

    ``theta`` is a 1-D numpy array or torch tensor (the gradient of the same kind). The search
    direction is the L-BFGS one (H0 = s.y / y.y of the newest pair): the compact form for numpy
    (:class:`_Compact`), the two-loop recursion for tensors; an Armijo backtracking line search;
    stopping at max|grad| <= gtol, a relative decrease below ftol, or when no step decreases the
    loss at the working precision.
    """
    loss, g = f(theta)
    mem = _Compact(g.size, history, g.dtype) if isinstance(g, np.ndarray) else _TwoLoop(history)
    n_iter = 0
    while n_iter < max_iter and float(abs(g).max()) > gtol:
        q = mem.direction(g) if len(mem) else -g * min(1.0, 1.0 / float(abs(g).sum()))
        slope = float(g @ q)
        if slope >= 0:  # lost descent (numerical noise): restart from steepest descent
            mem.clear()
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
            mem.push(s, yv, sy)
        n_iter += 1
        done = loss - new_loss <= ftol * max(1.0, abs(loss))
        theta, loss, g = new, new_loss, new_g
        if done:
            break
    return theta, n_iter


class _TwoLoop:
    """L-BFGS memory as a list of (s, y, 1 / s.y), oldest first; -H g by the two-loop recursion."""

    def __init__(self, history: int):
        self.history, self.hist = history, []

    def __len__(self):
        return len(self.hist)

    def clear(self):
        self.hist.clear()

    def push(self, s, y, sy: float):
        self.hist.append((s, y, 1.0 / sy))
        if len(self.hist) > self.history:
            self.hist.pop(0)

    def direction(self, g):
        q, alphas = -g, []
        for s, yv, rho in reversed(self.hist):
            a = rho * float(s @ q)
            q = q - a * yv
            alphas.append(a)
        s, yv, rho = self.hist[-1]
        q = q * (1.0 / (rho * float(yv @ yv)))  # gamma = s.y / y.y
        for (s, yv, rho), a in zip(self.hist, reversed(alphas)):
            q = q + (a - rho * float(yv @ q)) * s
        return q


class _Compact:
    """L-BFGS memory as (h, n) arrays S, Y and the small products R = triu(S Y^T), Y Y^T; -H g in the
    compact form (Byrd, Nocedal and Schnabel 1994): H = gamma I + [S^T gamma Y^T] M [S; gamma Y] with
    M = [[R^-T (D + gamma Y Y^T) R^-1, -R^-T], [-R^-1, 0]], D = diag(R). The same direction as the
    two-loop recursion in a few matrix-vector products instead of 4h vector operations (those were
    2-3 ms of a 20-step refit on 400 rows here; issue 9)."""

    def __init__(self, n: int, history: int, dtype):
        self.S = np.empty((history, n), dtype)
        self.Y = np.empty((history, n), dtype)
        self.R = np.zeros((history, history))  # R[i, j] = s_i . y_j for i <= j
        self.YY = np.zeros((history, history))
        self.Rinv = np.zeros((history, history))
        self.h = 0

    def __len__(self):
        return self.h

    def clear(self):
        self.h = 0

    def push(self, s, y, sy: float):
        h = self.h
        if h == self.S.shape[0]:  # full: drop the oldest pair
            for A in (self.S, self.Y):
                A[:-1] = A[1:]
            for M in (self.R, self.YY, self.Rinv):
                M[:-1, :-1] = M[1:, 1:]
            h -= 1
        self.S[h], self.Y[h] = s, y
        self.R[:h, h] = self.S[:h] @ y
        self.R[h, :h] = 0.0
        self.R[h, h] = sy
        self.YY[h, :h + 1] = self.YY[:h + 1, h] = self.Y[:h + 1] @ y
        self.h = h + 1
        # R^-1 kept alongside (no solves: numpy's linalg wrappers cost 25-40 us a call at this size).
        # Appending column (r, sy): [[Ri, -Ri r / sy], [0, 1 / sy]]; dropping the oldest pair keeps the
        # trailing block, which is the inverse of R's trailing block (R is upper triangular).
        Ri = self.Rinv
        Ri[:h, h] = -(Ri[:h, :h] @ self.R[:h, h]) / sy
        Ri[h, :h] = 0.0
        Ri[h, h] = 1.0 / sy

    def direction(self, g):
        h = self.h
        S, Y, R, YY = self.S[:h], self.Y[:h], self.R[:h, :h], self.YY[:h, :h]
        gamma = float(R[h - 1, h - 1] / YY[h - 1, h - 1])  # a Python float keeps g's dtype
        a, c = (S @ g).astype(np.float64), (Y @ g).astype(np.float64)  # of v = -g, negated below
        Ri = self.Rinv[:h, :h]
        u = Ri @ -a
        p = Ri.T @ (np.diag(R) * u + gamma * (YY @ u) + gamma * c)
        return (-gamma) * g + p.astype(g.dtype) @ S - (gamma * u).astype(g.dtype) @ Y
