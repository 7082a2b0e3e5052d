"""Oracle-driven active learning: learning curves for strategies (teaching, benchmarks).

The oracle answers every query with the true label from ``y``. For each strategy and seed the
loop starts from no labels, asks the strategy for the next batch, reveals those labels, refits
the probe (warm-started), and records accuracy whenever the number of labels reaches a budget.
"""
from __future__ import annotations

import numpy as np

from ._util import check_features, check_k, limit_threads
from .probe import LinearProbe
from .session import default_threads, strategy_accepts

__all__ = ["simulate", "learning_curve_figure", "run_one"]


def _as_list(value, name, kind):
    values = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value]
    if not values:
        raise ValueError(f"{name} must not be empty")
    for v in values:
        if kind is int and (isinstance(v, bool) or not isinstance(v, (int, np.integer))):
            raise TypeError(f"{name} must be an int or a list of ints, got {v!r}")
        if kind is str and not isinstance(v, str):
            raise TypeError(f"{name} must be a strategy name or a list of names, got {v!r}")
    return [kind(v) for v in values]


def run_one(features, y_ids, strategy: str, budgets, seed: int = 0, *, X_test=None, y_test_ids=None,
            batch_size: int | None = None, n_classes: int | None = None, device="auto", probe_params=None,
            n_threads: int = 1, params=None, on_budget=None):
    """One learning curve: [(n_labels, accuracy), ...] for increasing ``budgets``.

    features (N, D) float32 and y_ids (N,) int class ids are trusted (validated by `simulate`).
    Between budgets the labels are bought in batches of ``batch_size`` (default: the whole gap
    to the next budget in one batch). Accuracy is measured on (X_test, y_test_ids) when given,
    else on the pool samples that are still unlabelled. Every round selects with the run's
    ``seed``; ``strategies.select`` derives the round's seed from it and the labels so far
    (:func:`alwidget.strategies.round_seed`), as in a Session. ``params``: extra strategy
    parameters; ``on_budget(n_labels, labels, probe)`` is called at each budget (benchmarks
    score the same picks with other classifiers there).
    """
    from . import strategies

    n = features.shape[0]
    n_classes = int(y_ids.max()) + 1 if n_classes is None else n_classes
    labels = np.full(n, -1, dtype=np.int64)
    probe = LinearProbe(device=device, seed=seed, **(probe_params or {}))
    # Declared classes shape auto's switch, as in a Session.
    params = dict(params or {})
    if strategy_accepts(strategy, "n_classes"):
        params.setdefault("n_classes", n_classes)
    out = []
    for budget in budgets:
        while (labels >= 0).sum() < min(budget, n):
            have = int((labels >= 0).sum())
            k = min(budget, n) - have if batch_size is None else min(batch_size, min(budget, n) - have)
            fitted = have > 0
            # geometry_seed=seed: each run gets its own clusterings, so the spread over seeds
            # covers k-means too (the Session keeps one clustering for a whole labelling run)
            idx = strategies.select(strategy, features, labels, k, seed=seed, geometry_seed=seed,
                                    probe=probe if fitted else None, n_threads=n_threads, **params)
            idx = np.asarray(idx, dtype=np.int64)
            if idx.size == 0 or np.any(labels[idx] >= 0):
                raise RuntimeError(f"strategy {strategy!r} returned {idx.size} indices, some already labelled")
            labels[idx] = y_ids[idx]  # the oracle
            probe.fit(features, labels, n_classes=n_classes)
        if X_test is not None:
            acc = float((probe.predict(X_test) == y_test_ids).mean())
        else:
            rest = labels < 0
            acc = float((probe.predict()[rest] == y_ids[rest]).mean()) if rest.any() else float("nan")
        out.append((int((labels >= 0).sum()), acc))
        if on_budget is not None:
            on_budget(out[-1][0], labels.copy(), probe)
    return out


def _check_test_set(X_test, y_test, n_features: int, classes):
    """(X_test, y_test as class ids) or (None, None); clear errors for a mismatched held-out set."""
    if (X_test is None) != (y_test is None):
        raise ValueError("pass both X_test and y_test, or neither")
    if X_test is None:
        return None, None
    Xt = check_features(X_test, "X_test")
    if Xt.shape[1] != n_features:
        raise ValueError(f"X_test has {Xt.shape[1]} features, features has {n_features}")
    y_test = np.asarray(y_test)
    if y_test.shape != (Xt.shape[0],):
        raise ValueError(f"y_test must have shape ({Xt.shape[0]},) to match X_test, got {y_test.shape}")
    pos = np.clip(np.searchsorted(classes, y_test), 0, len(classes) - 1)
    if not np.all(classes[pos] == y_test):
        raise ValueError("y_test has classes that never occur in y; the probe could never predict them")
    return Xt, pos.astype(np.int64)


def _check_plan(strategy, seed, budgets, n_samples: int):
    """(strategy names, seeds, sorted budgets) of a simulation, or a clear error."""
    from . import strategies

    names = _as_list(strategy, "strategy", str)
    known = strategies.available()
    for s in names:
        if s not in known:
            raise ValueError(f"unknown strategy {s!r}; choose from {', '.join(known)}")
    seeds = _as_list(seed, "seed", int)
    budgets = sorted(set(_as_list(budgets, "budgets", int)))
    if budgets[0] <= 0:
        raise ValueError(f"budgets must be positive, got {budgets}")
    if budgets[-1] > n_samples:
        raise ValueError(f"the largest budget ({budgets[-1]}) exceeds the pool size ({n_samples})")
    return names, seeds, budgets


def simulate(features, y, *, strategy, budgets, seed=0, X_test=None, y_test=None, batch_size=None,
             device="auto", probe_params=None, n_threads: int | None = None, progress: bool = False):
    """Simulate active learning with an oracle; one row per (strategy, seed, budget).

    Parameters
    ----------
    features : array (n_samples, n_features)
        The pool.
    y : array (n_samples,)
        True labels (any hashable values: ints or strings); the oracle's answers.
    strategy : str or list of str
        Names from ``alwidget.strategies.available()``.
    budgets : int or list of int
        Numbers of labels at which accuracy is recorded (sorted, duplicates dropped).
    seed : int or list of int
        One run per seed (use several for mean +- std curves).
    X_test, y_test : optional held-out set; by default accuracy is measured on the pool
        samples that are not labelled yet.
    batch_size : int, optional
        Labels bought per round between budgets (default: each gap in one batch).
    n_threads : int, optional
        CPU threads for the probe and the strategies (default: cores - 1, at most 4; oversubscribed
        spin-waiting pools are many times slower than one thread).

    Returns
    -------
    pandas.DataFrame with columns ``strategy, seed, n_labels, accuracy``.
    """
    import pandas as pd

    X = check_features(features, "features")
    y = np.asarray(y)
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must have shape ({X.shape[0]},) to match features, got {y.shape}")
    names, seeds, budgets = _check_plan(strategy, seed, budgets, X.shape[0])
    if batch_size is not None:
        batch_size = check_k(batch_size, "batch_size")
    classes, y_ids = np.unique(y, return_inverse=True)
    y_ids = y_ids.astype(np.int64)
    Xt, yt = _check_test_set(X_test, y_test, X.shape[1], classes)

    runs = [(s, sd) for s in names for sd in seeds]
    if progress:
        from tqdm.auto import tqdm

        runs = tqdm(runs, desc="simulate")
    n_threads = default_threads() if n_threads is None else check_k(n_threads, "n_threads")
    rows = []
    with limit_threads(n_threads):
        for s, sd in runs:
            curve = run_one(X, y_ids, s, budgets, sd, X_test=Xt, y_test_ids=yt, batch_size=batch_size,
                            n_classes=len(classes), device=device, probe_params=probe_params,
                            n_threads=n_threads)
            rows += [{"strategy": s, "seed": sd, "n_labels": nl, "accuracy": acc} for nl, acc in curve]
    return pd.DataFrame(rows, columns=["strategy", "seed", "n_labels", "accuracy"])


_DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"]
_MARKERS = ["circle", "square", "diamond", "triangle-up", "x", "cross", "star", "triangle-down", "pentagon",
            "hexagram", "bowtie", "hourglass"]


def learning_curve_figure(df, title: str | None = None):
    """Plotly figure: mean accuracy vs number of labels per strategy, with a +-1 std band over seeds.

    Every strategy has its own colour, dash and marker (so identical curves stay visible on top
    of each other); the x axis is logarithmic when the budgets span a factor of 10 or more and
    is labelled at the budgets themselves.
    """
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    missing = {"strategy", "n_labels", "accuracy"} - set(df.columns)
    if missing:
        raise ValueError(f"df lacks column(s) {sorted(missing)}; pass the DataFrame returned by simulate()")
    fig = go.Figure()
    palette = qualitative.Plotly
    for j, (name, part) in enumerate(df.groupby("strategy", sort=False)):
        stats = part.groupby("n_labels")["accuracy"].agg(["mean", "std", "count"]).reset_index()
        stats["std"] = stats["std"].fillna(0.0)
        color = palette[j % len(palette)]
        x = stats["n_labels"].tolist()
        upper = (stats["mean"] + stats["std"]).tolist()
        lower = (stats["mean"] - stats["std"]).tolist()
        fig.add_trace(go.Scatter(x=x + x[::-1], y=upper + lower[::-1], fill="toself", fillcolor=color,
                                 opacity=0.15, line={"width": 0}, hoverinfo="skip", showlegend=False,
                                 legendgroup=name))
        fig.add_trace(go.Scatter(x=x, y=stats["mean"], mode="lines+markers", name=name, legendgroup=name,
                                 line={"color": color, "dash": _DASHES[j % len(_DASHES)], "width": 2},
                                 marker={"symbol": _MARKERS[j % len(_MARKERS)], "size": 9,
                                         "line": {"width": 1, "color": "white"}},
                                 customdata=np.stack([stats["std"], stats["count"]], 1),
                                 hovertemplate="%{x} labels: %{y:.3f} ± %{customdata[0]:.3f} "
                                               "(%{customdata[1]} seeds)<extra>" + name + "</extra>"))
    fig.update_layout(title=title or "Accuracy vs number of labels", xaxis_title="labels",
                      yaxis_title="accuracy", template="plotly_white", hovermode="x unified")
    budgets = sorted(int(b) for b in df["n_labels"].unique())
    fig.update_xaxes(tickmode="array", tickvals=budgets, ticktext=[str(b) for b in budgets])
    if budgets and budgets[0] > 0 and budgets[-1] / budgets[0] >= 10:
        fig.update_xaxes(type="log")
    return fig
