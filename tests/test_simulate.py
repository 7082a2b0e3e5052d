import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

import alwidget
from alwidget.simulate import learning_curve_figure, simulate


@pytest.fixture(scope="module")
def low_budget(digits):
    """Accuracy at 10 labels over 5 seeds for random, TypiClust and ProbCover."""
    X, y = digits
    return simulate(X, y, strategy=["random", "typiclust", "probcover"], budgets=10, seed=list(range(5)))


@pytest.fixture(scope="module")
def curves(digits):
    """Learning curves to 100 labels over 5 seeds for random and DropQuery."""
    X, y = digits
    return simulate(X, y, strategy=["random", "dropquery"], budgets=[10, 20, 50, 100], seed=list(range(5)))


def test_frame_layout(curves):
    assert list(curves.columns) == ["strategy", "seed", "n_labels", "accuracy"]
    assert len(curves) == 2 * 5 * 4
    assert set(curves["n_labels"]) == {10, 20, 50, 100}
    assert curves["accuracy"].between(0, 1).all()
    # More labels help (mean over seeds) for both strategies.
    mean = curves.groupby(["strategy", "n_labels"])["accuracy"].mean().unstack()
    assert (mean[100] > mean[10]).all()


def test_typiclust_and_probcover_beat_random_at_10_labels(low_budget):
    mean = low_budget.groupby("strategy")["accuracy"].mean()
    assert mean["typiclust"] > mean["random"]
    assert mean["probcover"] > mean["random"]


def test_dropquery_beats_random_at_100_labels(curves):
    at100 = curves[curves["n_labels"] == 100].groupby("strategy")["accuracy"].mean()
    assert at100["dropquery"] > at100["random"]


def test_same_seed_same_curve_and_batches(digits):
    X, y = digits
    a = simulate(X, y, strategy="random", budgets=[5, 15], seed=3, batch_size=5)
    b = simulate(X, y, strategy="random", budgets=[15, 5], seed=3, batch_size=5)  # order does not matter
    pd.testing.assert_frame_equal(a, b)
    assert a["n_labels"].tolist() == [5, 15] and a["seed"].tolist() == [3, 3]
    c = simulate(X, y, strategy="random", budgets=[5, 15], seed=4, batch_size=5)
    assert not a["accuracy"].equals(c["accuracy"])


def test_held_out_test_set_and_string_labels(digits):
    X, y = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])[y]
    df = simulate(X[:1200], names[:1200], strategy="typiclust", budgets=[20, 60],
                  X_test=X[1200:], y_test=names[1200:])
    assert len(df) == 2 and df["accuracy"].iloc[1] > 0.6
    # The package-level name is the function.
    assert alwidget.simulate is simulate


def test_bad_input_raises_clear_errors(digits):
    X, y = digits
    with pytest.raises(ValueError, match="unknown strategy"):
        simulate(X, y, strategy="oracle", budgets=10)
    with pytest.raises(ValueError, match="exceeds the pool size"):
        simulate(X, y, strategy="random", budgets=10_000)
    with pytest.raises(ValueError, match="positive"):
        simulate(X, y, strategy="random", budgets=[0, 10])
    with pytest.raises(ValueError, match="shape"):
        simulate(X, y[:10], strategy="random", budgets=10)
    with pytest.raises(ValueError, match="both X_test and y_test"):
        simulate(X, y, strategy="random", budgets=10, X_test=X)
    with pytest.raises(ValueError, match="never occur in y"):
        simulate(X, y, strategy="random", budgets=10, X_test=X[:5], y_test=np.array([0, 1, 2, 3, 42]))
    with pytest.raises(TypeError, match="seed"):
        simulate(X, y, strategy="random", budgets=10, seed=1.5)
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        simulate(bad, y, strategy="random", budgets=10)


def test_learning_curve_figure(curves):
    fig = learning_curve_figure(curves, title="digits")
    assert isinstance(fig, go.Figure)
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert sorted(t.name for t in lines) == ["dropquery", "random"]
    means = curves.groupby(["strategy", "n_labels"])["accuracy"].mean()
    dq = next(t for t in lines if t.name == "dropquery")
    np.testing.assert_allclose(dq.y, means["dropquery"].values)
    bands = [t for t in fig.data if t.fill == "toself"]
    assert len(bands) == 2  # one +-std band per strategy
    assert fig.layout.title.text == "digits"
    # Budgets 10..100 span a factor of 10: a log axis, labelled at the budgets themselves.
    assert fig.layout.xaxis.type == "log" and list(fig.layout.xaxis.tickvals) == [10, 20, 50, 100]
    assert list(fig.layout.xaxis.ticktext) == ["10", "20", "50", "100"]
    with pytest.raises(ValueError, match="lacks column"):
        learning_curve_figure(curves.drop(columns="accuracy"))


def test_identical_curves_stay_visible():
    # Six strategies with the same numbers: each keeps its own dash and marker, so none hides another.
    df = pd.DataFrame([{"strategy": f"s{j}", "seed": 0, "n_labels": b, "accuracy": 0.5}
                       for j in range(6) for b in (5, 10, 20)])
    lines = [t for t in learning_curve_figure(df).data if t.mode == "lines+markers"]
    assert len({(t.line.dash, t.marker.symbol) for t in lines}) == 6
    assert len({t.line.dash for t in lines}) == 6 and len({t.marker.symbol for t in lines}) == 6
    fig = learning_curve_figure(df)
    assert fig.layout.xaxis.type != "log" and list(fig.layout.xaxis.tickvals) == [5, 10, 20]


def test_random_on_a_class_sorted_pool_sees_the_classes(digits):
    from alwidget.simulate import run_one

    X, y = digits
    order = np.argsort(y, kind="stable")  # a folder sorted by class
    seen = {}
    run_one(X[order], y[order], "random", [20, 50], seed=0, batch_size=10,
            on_budget=lambda n, labels, probe: seen.setdefault(n, np.unique(labels[labels >= 0]).size))
    assert seen[50] >= 9


def test_rounds_of_a_run_use_fresh_round_seeds(digits, monkeypatch):
    import alwidget.strategies as S
    from alwidget.simulate import run_one

    X, y = digits
    seeds, real = [], S.select

    def spy(*args, **kwargs):
        idx, info = real(*args, **kwargs, return_info=True)
        seeds.append(info["round_seed"])
        return idx

    monkeypatch.setattr(S, "select", spy)
    run_one(X, y, "random", [30], seed=1, batch_size=10)
    assert len(seeds) == 3 and len(set(seeds)) == 3


def test_seeds_vary_the_clustering_of_cold_start_strategies(digits, monkeypatch):
    import alwidget.strategies as S
    from alwidget.simulate import run_one

    X, y = digits
    picks, real = [], S.select

    def spy(*args, **kwargs):
        idx = real(*args, **kwargs)
        picks.append(tuple(sorted(int(i) for i in idx)))
        return idx

    monkeypatch.setattr(S, "select", spy)
    # Different seeds must give different TypiClust clusterings (hence picks), or the spread over
    # seeds in a learning curve would say nothing about the strategy.
    for s in (0, 1, 2):
        run_one(X, y, "typiclust", [10], seed=s)
    assert len(picks) == 3 and len(set(picks)) == 3
