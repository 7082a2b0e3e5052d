"""Know when you are done: an honest accuracy estimate, a stop hint, labels worth a second look.

Pure functions over arrays; the stateful parts (the evaluation population, the draws, the
checkpoint history) live in :mod:`alwidget.monitor`, which a Session composes.

- **Active testing** (Kossen et al., ICML 2021) with the LURE estimator (Farquhar, Gal &
  Rainforth, ICLR 2021). Test items are drawn without replacement from an evaluation
  population E of size N with a proposal q that favours items a surrogate expects the probe
  to get wrong; the m-th of M draws gets the weight
  ``v_m = 1 + (N - M) / (N - m) * (1 / ((N - m + 1) q_m) - 1)`` and the risk estimate
  ``R = mean(v_m L_m)`` is unbiased for the mean loss over E. Accuracy = 1 - R (0-1 loss),
  with a Wilson interval at the effective sample size (see :func:`risk_estimate`).
- **Stabilising predictions** (Bloodgood & Vijay-Shanker, CoNLL 2009): Cohen's kappa between
  the predictions of successive checkpoints on a stop set; "stable" when the mean of the last
  3 kappas is >= 0.99.
- **Label review**: out-of-sample probabilities by stratified K-fold, self-confidence,
  confident-learning flags (Northcutt, Jiang & Chuang, JAIR 2021) and ActiveLab scores for a
  single annotator (Goh & Mueller 2023, as in cleanlab's ``get_active_learning_scores``).

Shapes: ``proba`` is ``(n, n_classes)``; labels are int class ids ``0..C-1`` (-1 = none).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = [
    "accuracy_estimate", "activelab_scores", "checkpoint_interval", "cohen_kappa",
    "confident_learning_flags", "draw", "estimate_sentence", "expected_loss", "lure_weights", "mean_kappa",
    "n_folds", "out_of_sample_proba", "proposal", "risk_estimate", "self_confidence", "stop_decision",
    "stopping_sentence", "surrogate_params", "suspect_table", "trust_figure",
]

TAU = 0.1  # share of the proposal that stays uniform (bounds every weight by 1 / TAU)
SURROGATE_L2_FACTOR = 30.0  # a softer surrogate than the probe: calibrated error probabilities
MIN_TESTS_FOR_INTERVAL = 10  # below this no interval is reliable enough to show
LEVEL = 0.95
STOP_WINDOW = 3
STOP_THRESHOLD = 0.99
MIN_LABELS_PER_CLASS = 2
MAX_FOLDS = 5


# --------------------------------------------------------------------------- active testing

def lure_weights(q, n_population: int) -> np.ndarray:
    """LURE weights (M,) for M draws without replacement from a population of n_population.

    ``q[m-1]`` is the probability the m-th draw had, under the proposal used for it, among
    the ``n_population - m + 1`` items left at that moment. Uniform proposals give weights of
    exactly 1; M = N gives 1 as well (the estimate is then the exact mean).
    """
    q = np.asarray(q, dtype=np.float64).reshape(-1)
    big_m, n = q.size, int(n_population)
    if big_m == 0:
        return np.zeros(0)
    if big_m > n:
        raise ValueError(f"{big_m} draws cannot come from a population of {n} without replacement")
    if not np.all((q > 0) & (q <= 1)):
        raise ValueError("every proposal probability q must be in (0, 1]; a draw with q = 0 is impossible")
    if big_m == n:
        return np.ones(big_m)
    m = np.arange(1, big_m + 1, dtype=np.float64)
    return 1.0 + (n - big_m) / (n - m) * (1.0 / ((n - m + 1) * q) - 1.0)


def _t_quantile(p: float, dof: int) -> float:
    from scipy.stats import t

    return float(t.ppf(p, dof))


def _wilson(risk: float, n_eff: float, z: float):
    d = 1.0 + z * z / n_eff
    centre = (risk + z * z / (2 * n_eff)) / d
    half = z * math.sqrt(risk * (1 - risk) / n_eff + z * z / (4 * n_eff * n_eff)) / d
    return max(0.0, centre - half), min(1.0, centre + half)


def risk_estimate(losses, weights, *, level: float = LEVEL, min_n: int = MIN_TESTS_FOR_INTERVAL,
                  interval: str = "wilson") -> dict:
    """Weighted mean risk ``mean(v L)`` of a 0-1 loss with an interval: {"risk", "low", "high", "se", "n"}.

    ``se = sd(v L) / sqrt(M)``. ``interval="t"`` is ``risk +- t_{(1+level)/2, M-1} se``;
    the default ``"wilson"`` is the Wilson score interval at the effective sample size
    ``n_eff = risk (1 - risk) / se^2`` (Kish's design effect; ``n_eff = M`` when se = 0) with
    the same t quantile. The t-interval under-covers for accurate probes (few, heavily
    weighted errors: 0.91 at 92 % accuracy and M = 30, 0.83 for uniform draws at 94 %; see
    BENCHMARKS.md), the Wilson form stays near 0.95 and is about as wide. Both are clipped to
    [0, 1]; ``low``/``high``/``se`` are None while M < ``min_n``.
    """
    if interval not in ("wilson", "t"):
        raise ValueError(f"interval must be 'wilson' or 't', got {interval!r}")
    losses = np.asarray(losses, dtype=np.float64).reshape(-1)
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    if losses.shape != weights.shape:
        raise ValueError(f"losses {losses.shape} and weights {weights.shape} must match")
    n = losses.size
    if n == 0:
        return {"risk": None, "low": None, "high": None, "se": None, "n": 0}
    terms = weights * losses
    risk = float(terms.mean())
    out = {"risk": risk, "low": None, "high": None, "se": None, "n": n}
    if n >= max(2, min_n):
        se = float(terms.std(ddof=1) / math.sqrt(n))
        z = _t_quantile(0.5 + level / 2, n - 1)
        if interval == "t":
            low, high = max(0.0, risk - z * se), min(1.0, risk + z * se)
        else:
            r = min(1.0, max(0.0, risk))
            n_eff = n if se == 0 or r in (0.0, 1.0) else r * (1 - r) / se ** 2
            low, high = _wilson(r, n_eff, z)
        out.update(se=se, low=low, high=high)
    return out


def accuracy_estimate(correct, q, n_population: int, *, level: float = LEVEL,
                      min_n: int = MIN_TESTS_FOR_INTERVAL, interval: str = "wilson") -> dict:
    """Accuracy of a probe on a population from actively drawn test items.

    ``correct`` (M,) bool: whether the probe is right on the m-th drawn item; ``q`` (M,) the
    proposal probabilities stored at draw time. Returns {"estimate", "low", "high", "n_test",
    "method"} (interval None while M < ``min_n``; estimate None without tests).
    """
    correct = np.asarray(correct, dtype=bool).reshape(-1)
    r = risk_estimate(~correct, lure_weights(q, n_population), level=level, min_n=min_n, interval=interval)
    flip = (lambda v: None if v is None else min(1.0, max(0.0, 1.0 - v)))
    return {"estimate": flip(r["risk"]), "low": flip(r["high"]), "high": flip(r["low"]),
            "n_test": r["n"], "method": "lure"}


def surrogate_params(probe_params=None) -> dict:
    """LinearProbe arguments for the surrogate: the probe's, with SURROGATE_L2_FACTOR times its L2.

    The proposal needs calibrated error probabilities. A surrogate as confident as the probe
    gives errors it does not foresee tiny q and huge weights: on 1280-d Fashion-MNIST features
    with 200 labels, LURE with it had a larger RMSE than uniform draws (0.082 against 0.073);
    with 30x the L2 it beat uniform draws on digits and Fashion-MNIST from 50 to 600 labels.
    """
    params = dict(probe_params or {})
    params["l2"] = SURROGATE_L2_FACTOR * float(params.get("l2", 1.0))
    return params


def expected_loss(surrogate_proba, predicted) -> np.ndarray:
    """(n,) surrogate's probability that the probe's prediction is wrong: 1 - pi(y_hat | x)."""
    p = np.asarray(surrogate_proba, dtype=np.float64)
    pred = np.asarray(predicted, dtype=np.int64)
    if p.ndim != 2 or pred.shape != (p.shape[0],):
        raise ValueError(f"surrogate_proba must be (n, C) and predicted (n,), got {p.shape} and {pred.shape}")
    inside = (pred >= 0) & (pred < p.shape[1])
    right = np.where(inside, p[np.arange(p.shape[0]), np.clip(pred, 0, p.shape[1] - 1)], 0.0)
    return np.clip(1.0 - right, 0.0, 1.0)


def proposal(g, tau: float = TAU) -> np.ndarray:
    """Defensive proposal over n items: ``q = (1 - tau) g / sum(g) + tau / n`` (uniform if g sums to 0)."""
    g = np.clip(np.nan_to_num(np.asarray(g, dtype=np.float64).reshape(-1), nan=0.0), 0.0, None)
    n = g.size
    if n == 0:
        raise ValueError("the proposal needs at least one item to draw from")
    if not 0 < tau <= 1:
        raise ValueError(f"tau must be in (0, 1], got {tau!r}")
    total = g.sum()
    if not np.isfinite(total) or total <= 0:
        return np.full(n, 1.0 / n)
    q = (1.0 - tau) * g / total + tau / n
    return q / q.sum()


def draw(q, rng: np.random.Generator) -> int:
    """One position drawn with probabilities q."""
    q = np.asarray(q, dtype=np.float64)
    return int(rng.choice(q.size, p=q / q.sum()))


# --------------------------------------------------------------------------- stopping

def cohen_kappa(a, b, n_classes: int) -> float:
    """Cohen's kappa of two prediction vectors over the fixed label set 0..n_classes-1.

    Identical vectors give 1 (also when both predict one class, where the formula is 0/0);
    empty vectors give NaN. Equals ``sklearn.metrics.cohen_kappa_score(a, b, labels=range(C))``.
    """
    a = np.asarray(a, dtype=np.int64).reshape(-1)
    b = np.asarray(b, dtype=np.int64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"prediction vectors differ in length: {a.size} and {b.size}")
    if a.size == 0:
        return float("nan")
    if min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= n_classes:
        raise ValueError(f"predictions must be class ids in 0..{n_classes - 1}")
    if np.array_equal(a, b):
        return 1.0
    observed = float(np.mean(a == b))
    expected = float(np.bincount(a, minlength=n_classes) @ np.bincount(b, minlength=n_classes)) / a.size ** 2
    return (observed - expected) / (1.0 - expected)


def checkpoint_interval(n_classes: int) -> int:
    """Labels between checkpoints: max(10, C) (models one label apart agree trivially)."""
    return max(10, int(n_classes))


def mean_kappa(kappas, window: int = STOP_WINDOW):
    """Mean of the last ``window`` kappas (NaN counts as 0), or None with fewer than ``window``."""
    k = np.nan_to_num(np.asarray(kappas, dtype=np.float64), nan=0.0)
    return float(k[-window:].mean()) if k.size >= window else None


def stop_decision(kappas, counts, threshold: float = STOP_THRESHOLD, window: int = STOP_WINDOW) -> bool:
    """Stable: a full window of kappas with mean >= threshold and >= 2 labels in every class."""
    counts = np.asarray(counts)
    k = mean_kappa(kappas, window)
    return bool(k is not None and k >= threshold and counts.size >= 2 and counts.min() >= MIN_LABELS_PER_CLASS)


# --------------------------------------------------------------------------- label review

def n_folds(counts) -> int:
    """K = min(5, smallest count among classes with >= 2 labels); 0 if fewer than 2 such classes."""
    c = np.asarray(counts)
    scored = c[c >= 2]
    return int(min(MAX_FOLDS, scored.min())) if scored.size >= 2 else 0


def out_of_sample_proba(features, labels, n_classes: int, *, seed: int = 0, probe_params=None,
                        device="cpu", fit_predict=None):
    """Cross-validated probabilities for the labelled rows: (rows (n,), proba (n, C)).

    Stratified K-fold over the classes with >= 2 labels, K = ``n_folds(counts)``; labels of
    classes with one label stay in every training fold and are not scored. Each fold fits a
    fresh LinearProbe (``probe_params``) on the other folds. ``fit_predict(train_labels, rows)``
    replaces the probe (returns (len(rows), C) probabilities). No scorable rows: empty arrays.
    """
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels[labels >= 0], minlength=n_classes)
    k = n_folds(counts)
    if k < 2:
        return np.zeros(0, np.int64), np.zeros((0, n_classes), np.float32)
    rows = np.flatnonzero((labels >= 0) & (counts[np.clip(labels, 0, None)] >= 2))
    if fit_predict is None:
        fit_predict = _probe_fit_predict(features, n_classes, seed, probe_params, device)
    out = np.zeros((rows.size, n_classes), np.float32)
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for train_pos, held_pos in folds.split(rows, labels[rows]):
        train = labels.copy()
        train[rows[held_pos]] = -1
        out[held_pos] = fit_predict(train, rows[held_pos])
    return rows, out


def _probe_fit_predict(features, n_classes, seed, probe_params, device):
    from .probe import LinearProbe

    def fit_predict(train_labels, rows):
        probe = LinearProbe(device=device, seed=seed, **(probe_params or {}))
        probe.fit(features, train_labels, n_classes=n_classes)
        return probe.predict_proba(features[rows])

    return fit_predict


def self_confidence(proba, given) -> np.ndarray:
    """(n,) probability of the given label (cleanlab's default label-quality score)."""
    proba = np.asarray(proba)
    return proba[np.arange(proba.shape[0]), np.asarray(given, dtype=np.int64)].astype(np.float64)


def confident_learning_flags(proba, given) -> np.ndarray:
    """(n,) bool: off-diagonal of the confident joint (Northcutt et al. 2021).

    Per class k the threshold t_k is the mean of ``proba[:, k]`` over the items labelled k.
    An item is confidently of class k when ``proba[i, k] >= t_k``; among several such classes
    the most probable counts. Flagged when that class exists and differs from the given label.
    """
    proba = np.asarray(proba, dtype=np.float64)
    given = np.asarray(given, dtype=np.int64)
    c = proba.shape[1]
    t = np.full(c, np.inf)  # a class nobody labelled is never confident
    for k in np.unique(given):
        t[k] = proba[given == k, k].mean()
    confident = proba >= t - 1e-6
    guess = np.where(confident, proba, -np.inf).argmax(1)
    return confident.any(1) & (guess != given)


def activelab_scores(proba_labelled, given, proba_unlabelled, n_classes: int):
    """ActiveLab scores for one annotator, one scale for both kinds (lower = look first).

    Labelled: ``(2 * P[given] + 1/C) / 3`` (model and annotator weights 1 each, the prior 1/C
    with the mean annotator weight); unlabelled: ``(max P + 1/C) / 2``.
    """
    prior = 1.0 / n_classes
    a = (2.0 * self_confidence(proba_labelled, given) + prior) / 3.0
    pu = np.asarray(proba_unlabelled, dtype=np.float64)
    u = (pu.max(1) + prior) / 2.0 if pu.size else np.zeros(0)
    return a, u


def suspect_table(rows, oos, given, proba_new, class_names, batch_size: int = 10):
    """Labels worth a second look, most suspect first: DataFrame index, label, suggested, score,
    flagged, ahead_of_new.

    rows/oos/given: the scored rows, their out-of-sample probabilities and given labels;
    proba_new: the probe's probabilities for the new items a strategy could propose. score:
    ActiveLab (lower first); flagged: off the confident joint's diagonal; ahead_of_new: ActiveLab
    ranks re-checking it above the ``batch_size``-th best new item.
    """
    import pandas as pd

    c = oos.shape[1]
    names = np.asarray(list(class_names) + [f"class {j}" for j in range(len(class_names), c)], dtype=object)
    if len(rows) == 0:
        return pd.DataFrame({"index": np.zeros(0, np.int64), "label": [], "suggested": [], "score": [],
                             "flagged": np.zeros(0, bool), "ahead_of_new": np.zeros(0, bool)})
    a, u = activelab_scores(oos, given, proba_new, c)
    cut = np.partition(u, batch_size - 1)[batch_size - 1] if u.size >= batch_size else (u.max() if u.size else 1.0)
    df = pd.DataFrame({"index": rows, "label": names[given], "suggested": names[oos.argmax(1)], "score": a,
                       "flagged": confident_learning_flags(oos, given), "ahead_of_new": a < cut})
    return df.sort_values("score", kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- words and figures

def estimate_sentence(result: dict, *, on: bool) -> str:
    """One sentence for the accuracy panel (the interval is not symmetric: both ends are given)."""
    n = result.get("n_test", 0)
    if result.get("estimate") is None:
        if not on:
            return "Turn on “Check my model” to estimate how accurate the model is on new images like yours."
        return "Checking the model: label the test images as usual; the estimate appears after the first."
    est = result["estimate"]
    if result.get("low") is None:
        return (f"Estimated accuracy on new images like yours: {est:.2f} from {n} test label"
                f"{'s' if n != 1 else ''}; the 95 % interval appears after {MIN_TESTS_FOR_INTERVAL}.")
    return (f"Estimated accuracy on new images like yours: {est:.2f} "
            f"(95 % interval {result['low']:.2f}–{result['high']:.2f}, {n} test labels).")


def stopping_sentence(stable: bool, kappa, n_checkpoints: int, span: int, missing=()) -> str:
    """One sentence for the stop hint; ``span`` = labels covered by the kappa window."""
    if missing:
        names = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
        return f"The stop hint needs at least {MIN_LABELS_PER_CLASS} labels of every class (still short: {names})."
    if kappa is None:
        return (f"Too early for a stop hint: it compares the model's predictions at checkpoints "
                f"({n_checkpoints} so far, {STOP_WINDOW + 1} needed).")
    if stable:
        return (f"Predictions stopped changing over the last {span} labels (κ̄ = {kappa:.3f}); "
                "check the model to confirm.")
    return f"Predictions are still changing (κ̄ = {kappa:.3f} over the last {span} labels); keep labelling."


def trust_figure(estimates, kappas=None, title: str | None = None):
    """Plotly figure: the accuracy estimate and its interval over labels (+ truth, + kappa).

    ``estimates``: DataFrame (or records) with columns n_labels, estimate, low, high and
    optionally true_accuracy; ``kappas``: optional n_labels, kappa for a second panel.
    """
    import pandas as pd
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    est = pd.DataFrame(estimates)
    missing = {"n_labels", "estimate", "low", "high"} - set(est.columns)
    if missing:
        raise ValueError(f"estimates lacks column(s) {sorted(missing)}")
    est = est.dropna(subset=["estimate"]).sort_values("n_labels")
    rows = 2 if kappas is not None and len(kappas) else 1
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        row_heights=[0.7, 0.3][:rows] if rows == 2 else None)
    band = est.dropna(subset=["low", "high"])
    x = band["n_labels"].tolist()
    fig.add_trace(go.Scatter(x=x + x[::-1], y=band["high"].tolist() + band["low"].tolist()[::-1], fill="toself",
                             fillcolor="rgba(31,119,180,0.18)", line={"width": 0}, hoverinfo="skip",
                             name="95 % interval"), row=1, col=1)
    fig.add_trace(go.Scatter(x=est["n_labels"], y=est["estimate"], mode="lines+markers", name="estimate",
                             line={"color": "#1f77b4"}), row=1, col=1)
    if "true_accuracy" in est:
        fig.add_trace(go.Scatter(x=est["n_labels"], y=est["true_accuracy"], mode="lines", name="true accuracy",
                                 line={"color": "#d62728", "dash": "dash"}), row=1, col=1)
    fig.update_yaxes(title_text="accuracy", row=1, col=1)
    if rows == 2:
        k = pd.DataFrame(kappas)
        fig.add_trace(go.Scatter(x=k["n_labels"], y=k["kappa"], mode="lines+markers", name="κ between checkpoints",
                                 line={"color": "#2ca02c"}), row=2, col=1)
        fig.update_yaxes(title_text="κ", row=2, col=1)
    fig.update_xaxes(title_text="training labels", row=rows, col=1)
    fig.update_layout(title=title or "Estimated accuracy as labels grow", template="plotly_white",
                      hovermode="x unified")
    return fig
