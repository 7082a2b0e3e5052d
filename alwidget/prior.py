"""A zero-shot start from class names: a text prior, a probe anchored to it, balanced selection.

Spec: ``shared/specs/find.md`` §3; papers: CLAP (Silva-Rodriguez et al., CVPR 2024) and PCB
(Bang et al., CVPR 2024).

- **Text prior** T (C, D): per class name, fill the templates, embed them with the text tower of
  the checkpoint that made the image embeddings, L2-normalise, average, renormalise.
  Zero-shot probabilities are softmax(s * cos(x, t_c)), s = the model's ``logit_scale.exp()``
  (100 for trained CLIP). Classes without a text row get probability 0.
- **Anchored probe** (:class:`AnchoredProbe`, mode A of the spec): prototypes W (C, D) start at T;
  logits = s * cos(x, w_c), no bias; loss = mean cross-entropy + (1/C) sum_c lambda_c ||w_c - t_c||^2,
  full-batch L-BFGS, warm-started. lambda_c is CLAP's class-adaptive multiplier: the mean zero-shot
  probability of the true class over class c's labelled items (the mean of those for classes
  without labels), so the anchor loosens where the text is wrong. With no label the probe *is*
  the zero-shot classifier.
  Measured on Fashion-MNIST features (tests/test_prior.py, bench/bench_search.py): with a useful
  prior this beats the plain probe by far at 1-5 labels per class, but with a useless one the
  cosine classifier it becomes stays 2-5 points below the plain
  :class:`~alwidget.probe.LinearProbe`, however small lambda gets, and from ~10 labels per class
  the plain probe wins even with a useful prior. So the probe also *tests* the prior: when its
  zero-shot predictions of the labelled items are not better than chance (one-sided binomial
  test at ``alpha``) and 2 or more classes are labelled, it is the plain probe, and says so in
  ``prior_info``. Otherwise its logits blend the anchored probe with a plain LinearProbe fitted on
  the same labels, beta = k0 / (k0 + L / C) on the anchored side (k0 = 4): the spec's mode C with
  the anchored probe in the place of zero-shot.
- **Balanced selection** (:func:`balanced_select`, PCB): the candidates are the base strategy's
  batch of B followed by the rest of its batch of ``factor`` x B; they get pseudo-labels from the
  current model (the zero-shot guess at first); then B times: the class with the fewest
  (labelled + chosen) items gives its best-ranked candidate.
  The Session does this while some class has fewer than ``balance_until`` labels.

The prior shifts every model-based score (margin, entropy, DropQuery, BADGE): they read the
anchored probe's probabilities.
"""
from __future__ import annotations

import threading

import numpy as np

from ._lbfgs import minimize
from ._trainrows import TrainingRows
from ._util import check_labels
from .probe import LinearProbe, _get_pool
from .balance import BALANCE_FACTOR, balanced_select, pcb_order  # noqa: F401  (re-exported)
from .search import CLIP_SCALE, text_tower, unit_rows

__all__ = ["AnchoredProbe", "TextPrior", "balanced_select", "class_text_embeddings", "pcb_order",
           "session_prior", "zero_shot_proba"]

#: Templates filled with each class name (an editable domain template can be added, e.g.
#: "a photo of a {}, a type of clothing.").
DEFAULT_TEMPLATES = ("a photo of a {}.",)
#: Until every class has this many labels the colouring is marked a guess (spec default).
GUESS_UNTIL = 2
#: The Session balances batches while some class has fewer labels than this. Measured
#: (bench/bench_search.py): on a class-balanced pool balancing by noisy pseudo-labels costs
#: DropQuery/TypiClust picks a point or two once every class is found, while on long-tailed
#: pools it finds the rare classes sooner; so it stops as soon as every class has 2 labels.
BALANCE_UNTIL = 2
#: Significance level of the test "the prior predicts the labelled items better than chance".
#: Measured (bench_search.py, random sampling): 0.01 turned a 60 %-accurate prior down in about 1
#: of 6 runs at 10 labels (-4.5 points at 1 label per class), while what 0.05 let a random prior
#: cost stayed within the sampling noise.
PRIOR_ALPHA = 0.05
ZERO_SHOT_REASON = "no labels yet: the zero-shot guess from the class names"
#: Labels per class at which the anchored and the plain probe weigh the same (AnchoredProbe).
BLEND_K0 = 4.0


# ------------------------------------------------------------------------------ text prior
def class_prompts(name: str, templates=DEFAULT_TEMPLATES) -> list[str]:
    """The prompts for one class name ("ankle_boot" reads "ankle boot")."""
    text = " ".join(str(name).replace("_", " ").split())
    return [t.format(text) for t in templates]


def _check_templates(templates) -> tuple:
    if isinstance(templates, str):
        templates = (templates,)
    templates = tuple(templates)
    if not templates or not all(isinstance(t, str) and "{}" in t for t in templates):
        raise ValueError(f"templates must be texts with a '{{}}' for the class name, e.g. {DEFAULT_TEMPLATES[0]!r}; "
                         f"got {templates!r}")
    return templates


def class_text_embeddings(names, text_encoder, templates=DEFAULT_TEMPLATES) -> np.ndarray:
    """(C, D) float32 unit rows t_c: the class's prompts embedded, normalised, averaged, renormalised."""
    templates = _check_templates(templates)
    names = list(names)
    if not names:
        raise ValueError("class_text_embeddings needs at least one class name")
    tower = text_tower(text_encoder)
    T = np.stack([tower(class_prompts(n, templates)).astype(np.float64).mean(0) for n in names])
    T /= np.maximum(np.linalg.norm(T, axis=1, keepdims=True), 1e-12)
    return T.astype(np.float32)


def _check_text(T, n_features: int) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.ndim != 2 or T.shape[1] != n_features:
        raise ValueError(f"the text prior must be (n_classes, {n_features}) to match the features, got shape "
                         f"{T.shape}; image and text embeddings must come from the same checkpoint")
    if not np.isfinite(T).all():
        raise ValueError("the text prior contains NaN or infinite values")
    norms = np.linalg.norm(T, axis=1, keepdims=True)
    return np.where(norms > 0, T / np.where(norms > 0, norms, 1.0), 0.0)  # zero rows: no text


def _log_softmax(z: np.ndarray) -> np.ndarray:
    m = z.max(1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(1, keepdims=True))


def zero_shot_proba(features, T, scale: float = CLIP_SCALE) -> np.ndarray:
    """(N, C) float32 softmax(scale * cos(x, t_c)); rows of T that are all zero (no text) get 0."""
    X = unit_rows(features)
    T = _check_text(T, X.shape[1])
    has = np.linalg.norm(T, axis=1) > 0
    out = np.zeros((X.shape[0], T.shape[0]), np.float32)
    if not has.any():
        return out
    Tt = T[has].astype(np.float32)
    for a in range(0, X.shape[0], 1 << 16):  # bounded temporaries at N = 1M
        z = float(scale) * (X[a:a + (1 << 16)] @ Tt.T)
        out[a:a + (1 << 16), has] = np.exp(_log_softmax(z.astype(np.float64)))
    return out


# ------------------------------------------------------------------------------ the anchored probe
def clap_multipliers(p_true: np.ndarray, y: np.ndarray, has_text: np.ndarray) -> np.ndarray:
    """(C,) lambda_c: mean zero-shot probability of the true class over class c's labelled items;
    text classes without labels get the mean of those (1 when none has labels); no text: 0."""
    C = has_text.size
    lam = np.zeros(C)
    counts = np.bincount(y, minlength=C)
    sums = np.bincount(y, weights=p_true, minlength=C)
    labelled = (counts > 0) & has_text
    lam[labelled] = sums[labelled] / counts[labelled]
    rest = has_text & ~labelled
    lam[rest] = lam[labelled].mean() if labelled.any() else 1.0
    return lam


def prior_test(pz: np.ndarray, y: np.ndarray, has_text: np.ndarray, alpha: float = PRIOR_ALPHA) -> dict:
    """Does the zero-shot classifier predict the labelled items (of text classes) better than chance?

    pz (n, C) zero-shot probabilities of the labelled rows, y (n,) their classes. Returns
    {"n", "correct", "p_value", "useful"} (one-sided binomial test, chance = 1 / classes with text).
    """
    from scipy.stats import binomtest

    keep = has_text[y]
    n = int(keep.sum())
    if n == 0:
        return {"n": 0, "correct": 0, "p_value": None, "useful": True}
    correct = int((pz[keep].argmax(1) == y[keep]).sum())
    p = float(binomtest(correct, n, 1.0 / max(1, int(has_text.sum())), alternative="greater").pvalue)
    return {"n": n, "correct": correct, "p_value": p, "useful": p <= alpha}


def fit_prototypes(x, y, W0, T, lam, scale: float, max_iter: int) -> np.ndarray:
    """Minimise mean CE(scale * cos(x, w_c)) + (1/C) sum_c lam_c ||w_c - t_c||^2 from W0 (L-BFGS).

    x (n, D) unit rows, y (n,) in 0..C-1, W0 / T (C, D), lam (C,); float64 throughout (the
    problem is small: labelled rows only). Returns the prototypes (C, D), not normalised.
    """
    n, c = x.shape[0], W0.shape[0]
    onehot = np.eye(c)[y]

    def f(theta):
        W = theta.reshape(W0.shape)
        norms = np.maximum(np.linalg.norm(W, axis=1, keepdims=True), 1e-12)
        Wh = W / norms
        logp = _log_softmax(scale * (x @ Wh.T))
        diff = W - T
        loss = -logp[np.arange(n), y].mean() + (lam * np.einsum("ij,ij->i", diff, diff)).sum() / c
        G = scale * ((np.exp(logp) - onehot) / n).T @ x  # dL/dWh
        grad = (G - Wh * np.einsum("ij,ij->i", G, Wh)[:, None]) / norms + (2.0 / c) * lam[:, None] * diff
        return float(loss), grad.ravel()

    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # tiny vector ops: a BLAS pool's spin-waits cost more than they save
        W = minimize(f, W0.ravel().astype(np.float64), max_iter, ftol=1e-10)[0].reshape(W0.shape)
    return W if np.isfinite(W).all() else W0


def torch_mask(mask, like):
    """A boolean numpy mask as a float tensor on ``like``'s device."""
    import torch

    return torch.from_numpy(np.asarray(mask, np.float32)).to(like.device)


class AnchoredProbe(LinearProbe):
    """A linear probe anchored to a text prior (CLAP); same interface as :class:`LinearProbe`.

    Parameters
    ----------
    text : (C, D) array of class text embeddings (zero rows: no text), or a callable returning
        the current one (the Session passes one so classes added later get their row).
    scale : the fixed logit scale s.
    alpha : significance of the prior test (see the module docstring).
    k0 : the blend's half-way point in labels per class (see below).
    **kwargs : LinearProbe's (``device``, ``seed``, ``l2``, ``input_dropout``...): the plain probe
        fitted beside the anchored one.

    Logits are beta * anchored + (1 - beta) * plain, beta = k0 / (k0 + labels per class), the plain
    probe being a LinearProbe on the same rows (beta = 1 while fewer than 2 classes have labels).
    Measured on Fashion-MNIST features (random labels, 10 seeds): the anchored probe alone wins up to
    ~5 labels per class and the plain one from ~10, the blend with k0 = 4 was within 0.2 points of
    the better one below 5 per class and above both from there (71.3 vs 70.1 / 67.2 at 5, 77.5 vs
    75.5 / 77.0 at 20); it is the spec's mode C with the anchored probe in the place of zero-shot.
    Both are linear in the pool-standardised unit rows (s * cos(x, w) is), so the blend is installed
    as LinearProbe weights: ``predict_proba``, ``predict_dropout`` and ``transform`` are LinearProbe's
    own and every strategy works unchanged. ``prior_info``: ``mode`` ("zero-shot" | "anchored" |
    "plain"), ``reason``, ``lambda``, ``beta`` and the prior test.
    """

    def __init__(self, text, scale: float = CLIP_SCALE, *, alpha: float = PRIOR_ALPHA, k0: float = BLEND_K0,
                 **kwargs):
        super().__init__(**kwargs)
        if not np.isfinite(scale) or scale <= 0:
            raise ValueError(f"scale must be a positive number, got {scale!r}")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
        if not np.isfinite(k0) or k0 < 0:
            raise ValueError(f"k0 must be a number >= 0, got {k0!r}")
        self._text = text
        self.scale, self.alpha, self.k0 = float(scale), float(alpha), float(k0)
        self.plain = LinearProbe(**kwargs)  # keeps its own warm start
        self._protos = None  # (C, D) float64 prototypes of the last anchored fit (warm start)
        self.mode = "zero-shot"
        self.prior_info: dict = {"mode": "zero-shot", "reason": ZERO_SHOT_REASON}

    def text_matrix(self, n_features: int, n_classes: int = 0) -> np.ndarray:
        """(max(n_classes, rows of T), D) float64 unit text rows, zero rows where a class has no text."""
        T = _check_text(self._text() if callable(self._text) else self._text, n_features)
        if T.shape[0] < n_classes:
            T = np.concatenate([T, np.zeros((n_classes - T.shape[0], n_features))])
        return T

    def fit(self, X, labels, n_classes: int | None = None) -> "AnchoredProbe":
        """Fit on the labelled rows (none is fine: the zero-shot classifier); see the class docstring."""
        Xn = unit_rows(X)
        labels = check_labels(labels, Xn.shape[0])
        idx = np.flatnonzero(labels >= 0)
        T = self.text_matrix(Xn.shape[1], max(int(n_classes or 0), int(labels.max()) + 1 if idx.size else 0))
        c = T.shape[0]
        has_text = np.linalg.norm(T, axis=1) > 0
        y, x = labels[idx], Xn[idx].astype(np.float64)
        pz = np.exp(_log_softmax(self.scale * (x @ T.T))) * has_text if idx.size else np.zeros((0, c))
        pz /= np.maximum(pz.sum(1, keepdims=True), 1e-300)
        test = prior_test(pz, y, has_text, self.alpha)
        n_seen = np.unique(y).size
        if idx.size:
            self.plain.fit(Xn, labels, n_classes=c)
        if not test["useful"] and n_seen >= 2:
            self._install(self.plain._W, self.plain._b, self.plain.seen_classes)
            self.mode = "plain"
            self.prior_info = {"mode": "plain", "lambda": [0.0] * c, "beta": 0.0, **test, "reason": (
                f"the class names predict only {test['correct']} of {test['n']} labelled items right, no better "
                "than chance: using the plain probe")}
            return self
        lam = clap_multipliers(pz[np.arange(y.size), y], y, has_text)
        active = has_text | (np.bincount(y, minlength=c) > 0)
        W = self._start(T, x, y, active)
        if idx.size:
            cols = np.flatnonzero(active)
            remap = np.full(c, -1)
            remap[cols] = np.arange(cols.size)
            # max_iter even when warm: a step costs well under a millisecond, and a warm start
            # only makes the ftol stop come sooner
            W[cols] = fit_prototypes(x, remap[y], W[cols], T[cols], lam[cols], self.scale, self.max_iter)
        self._protos = W
        Wa, ba = self._linear(Xn, W)
        beta = self.k0 / (self.k0 + idx.size / c) if n_seen >= 2 else 1.0
        if beta < 1.0:  # the plain probe's classes without labels now (e.g. after an undo) count 0
            keep = torch_mask(self.plain.seen_classes, Wa)
            Wa = beta * Wa + (1.0 - beta) * self.plain._W[:, :c] * keep
            ba = beta * ba + (1.0 - beta) * self.plain._b[:c] * keep
        self._install(Wa, ba, active)
        self.mode = "anchored" if idx.size else "zero-shot"
        reason = (ZERO_SHOT_REASON if not idx.size else
                  f"anchored to the text prior ({test['correct']} of {test['n']} labelled items predicted right "
                  f"by the class names alone), weight {beta:.2f} against the plain probe")
        self.prior_info = {"mode": self.mode, "reason": reason, "lambda": lam.tolist(), "beta": beta, **test}
        return self

    def _start(self, T, x, y, active) -> np.ndarray:
        """Initial prototypes: the previous fit's where shapes match, else t_c, else the class mean."""
        W0 = T.copy()
        for cls in np.flatnonzero(active & ~(np.linalg.norm(T, axis=1) > 0)):
            W0[cls] = x[y == cls].mean(0)
        if self._protos is not None and self._protos.shape[1] == T.shape[1]:
            k = min(self._protos.shape[0], T.shape[0])
            keep = np.linalg.norm(self._protos[:k], axis=1) > 0
            W0[:k][keep] = self._protos[:k][keep]
        return W0

    def _linear(self, Xn, W: np.ndarray):
        """Prototypes (C, D) -> LinearProbe weights on the standardised pool x~ = (x - mu) / sd:
        s x.w^ = x~ . (s sd * w^) + s mu . w^. Returns (W (D, C), b (C,)) float32 tensors."""
        import torch

        pool = _get_pool(Xn, self.device)
        if pool is not self._pool:
            self._train_masks = None
            self._rows = TrainingRows()  # rows of another pool must not be kept
        self._pool = pool
        Wh = W / np.maximum(np.linalg.norm(W, axis=1, keepdims=True), 1e-12)
        Wt = torch.from_numpy(np.ascontiguousarray(Wh.T)).to(self.device, torch.float64)
        return (self.scale * pool.std[:, None] * Wt).float(), (self.scale * (pool.mean @ Wt)).float()

    def _install(self, W, b, seen) -> None:
        """Become the linear model (W, b) over the classes ``seen`` (the pool is the plain probe's)."""
        if self.plain.is_fitted:
            self._pool = self.plain._pool
        self._W, self._b = W.clone(), b.clone()
        self._seen = np.asarray(seen, bool).copy()
        self._proba = None

    def transform(self, X=None):
        """Pool-standardised unit rows (new inputs are L2-normalised first, like the pool)."""
        return super().transform(None if X is None else unit_rows(np.asarray(X, dtype=np.float32)))


# ------------------------------------------------------------------------------ the Session's prior
class TextPrior:
    """Class text embeddings by class name, the logit scale, and the Session's policies.

    ``TextPrior(names, T, scale)`` for a T the user brings (rows in the order of ``names``), or
    ``TextPrior.from_names(names, text_encoder, templates=...)``. With a text encoder, classes
    added later are embedded when first seen; without one they get no text row.
    """

    def __init__(self, names, T, scale: float = CLIP_SCALE, *, text_encoder=None, templates=DEFAULT_TEMPLATES,
                 balance_until: int = BALANCE_UNTIL, balance_factor: int = BALANCE_FACTOR,
                 guess_until: int = GUESS_UNTIL, alpha: float = PRIOR_ALPHA):
        names = [str(n) for n in names]
        T = np.asarray(T, dtype=np.float32)
        if T.ndim != 2 or T.shape[0] != len(names):
            raise ValueError(f"the text prior has shape {T.shape} but there are {len(names)} class names; "
                             "pass one row per class, in the order of the class names")
        if len(set(names)) != len(names):
            raise ValueError(f"class names must be unique, got {names}")
        self.rows = dict(zip(names, _check_text(T, T.shape[1]).astype(np.float32)))
        self.n_features = T.shape[1]
        self.scale = float(scale)
        self.text_encoder = text_encoder
        self.templates = _check_templates(templates)
        self.balance_until, self.balance_factor = int(balance_until), int(balance_factor)
        self.guess_until, self.alpha = int(guess_until), float(alpha)
        self._zs: dict = {}
        self._lock = threading.Lock()

    @classmethod
    def from_names(cls, names, text_encoder, templates=DEFAULT_TEMPLATES, **kwargs) -> "TextPrior":
        """Embed the class names with the text tower of ``text_encoder`` (spec, Encoder or callable)."""
        names = list(names)
        T = class_text_embeddings(names, text_encoder, templates)
        scale = kwargs.pop("scale", None) or text_tower(text_encoder).scale
        return cls(names, T, scale, text_encoder=text_encoder, templates=templates, **kwargs)

    def matrix_for(self, names) -> np.ndarray:
        """(len(names), D) float32: the text row of each class name (zero where there is none)."""
        missing = [n for n in names if n not in self.rows]
        if missing and self.text_encoder is not None:
            new = class_text_embeddings(missing, self.text_encoder, self.templates)
            with self._lock:
                self.rows.update(zip(missing, new))
        zero = np.zeros(self.n_features, np.float32)
        if not len(names):
            return np.zeros((0, self.n_features), np.float32)
        return np.stack([self.rows.get(n, zero) for n in names])

    def zero_shot(self, features, names) -> np.ndarray:
        """(N, len(names)) zero-shot probabilities (cached per feature object and class list)."""
        key = (id(features), tuple(names))
        with self._lock:
            hit = self._zs.get(key)
            if hit is not None and hit[0] is features:
                return hit[1]
        p = zero_shot_proba(features, self.matrix_for(names), self.scale)
        with self._lock:
            self._zs = {key: (features, p)}
        return p

    def make_probe(self, names, **kwargs) -> AnchoredProbe:
        """An AnchoredProbe that reads the text rows of ``names()`` (a callable) at every fit."""
        return AnchoredProbe(lambda: self.matrix_for(names()), self.scale, alpha=self.alpha, **kwargs)

    def status(self, probe, counts) -> dict:
        """What the Session's probe does with the prior now (its ``prior_info``; zero-shot before labels)."""
        if not np.asarray(counts).sum() or not isinstance(probe, AnchoredProbe):
            return {"mode": "zero-shot", "reason": ZERO_SHOT_REASON}
        return dict(probe.prior_info)

    def is_guess(self, counts) -> bool:
        """True while some class has fewer than ``guess_until`` labels (the colours lean on the text)."""
        counts = np.asarray(counts)
        return bool(counts.size == 0 or counts.min() < self.guess_until)

    def selector(self, select, labels, names, features, probe=None, exclude=None):
        """``select`` itself, or PCB on top of it while some class has < ``balance_until`` labels
        and the prior has not been found useless (``probe.mode == "plain"``).

        Pseudo-labels come from the zero-shot guess, as in PCB: a probe fitted on a few labels
        rarely predicts a class nobody has labelled yet, so balancing by its predictions spreads the
        batch over the known classes instead of finding the missing ones (measured on a long-tailed
        Fashion-MNIST pool: 90.8 labels to see every class with the probe's pseudo-labels, 64.2 with
        the zero-shot ones, 75.0 unbalanced; ``tests/test_prior.py``).
        """
        counts = np.bincount(labels[labels >= 0], minlength=len(names))
        if not len(names) or counts.min() >= self.balance_until:
            return select
        if probe is not None and getattr(probe, "mode", None) == "plain":
            return select  # the labels showed the class names to be no better than chance

        def balanced(name, features_, labels_, k, **kwargs):
            proba = self.zero_shot(features, names)
            excl = kwargs.pop("exclude", exclude)
            return balanced_select(select, name, features_, labels_, k, proba=proba, exclude=excl,
                                   factor=self.balance_factor, **kwargs)

        return balanced


def session_prior(text_prior, text_encoder, classes, n_features: int) -> TextPrior | None:
    """The Session's ``text_prior=`` argument as a TextPrior (or None).

    None: no prior. True: embed ``classes`` with ``text_encoder``. A (C, D) array: one row per
    name in ``classes``. A :class:`TextPrior`: used as is.
    """
    if text_prior is None or text_prior is False:
        return None
    if isinstance(text_prior, TextPrior):
        prior = text_prior
    elif text_prior is True:
        if not classes:
            raise ValueError("text_prior=True builds the prior from the class names: pass classes=[...] too")
        if text_encoder is None:
            raise ValueError("text_prior=True needs text_encoder= (the OpenCLIP spec that made the features) "
                             "to embed the class names; or pass a (n_classes, n_features) array")
        prior = TextPrior.from_names(classes, text_encoder)
    else:
        if not classes:
            raise ValueError("a text_prior array needs classes=[...]: one class name per row")
        scale = text_tower(text_encoder).scale if text_encoder is not None else CLIP_SCALE
        prior = TextPrior(classes, text_prior, scale, text_encoder=text_encoder)
    if prior.n_features != n_features:
        raise ValueError(f"the text prior has {prior.n_features} columns but the features have {n_features}; "
                         "image and text embeddings must come from the same checkpoint")
    return prior
