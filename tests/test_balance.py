"""PCB balancing: the pick order, and the contract on top of real strategies."""
import numpy as np
import pytest

from alwidget import strategies
from alwidget.balance import balanced_select, pcb_order
from alwidget.probe import LinearProbe
from alwidget.session import strategy_accepts


def test_pcb_order_takes_the_scarcest_class_first():
    ranked = np.array([10, 11, 12, 13, 14, 15])
    pseudo = np.array([0, 0, 0, 1, 2, 1])
    picks = pcb_order(ranked, pseudo, counts=np.array([0, 3, 1]), k=4)
    # class 0 (0 labels) -> 10; then 0 and 2 tie at 1: 11 ranks higher -> 11; then 2 (1) vs 0 (2): 14; ...
    assert picks.tolist() == [10, 11, 14, 12]
    assert pcb_order(ranked, pseudo, np.zeros(3), k=10).size == 6  # never more than the candidates
    assert pcb_order(ranked, pseudo, np.zeros(1), k=3).tolist() == [10, 13, 14]  # counts shorter than classes


@pytest.mark.parametrize("name", ["random", "typiclust", "margin", "dropquery"])
def test_balanced_select_keeps_the_contract(digits, name):
    X, y = digits
    labels = np.full(y.size, -1, np.int64)
    for c in range(10):
        labels[np.flatnonzero(y == c)[:1]] = c
    probe = LinearProbe(device="cpu").fit(X, labels)
    proba = probe.predict_proba()
    excl = np.flatnonzero(labels < 0)[:40]
    kw = {"n_classes": 10} if strategy_accepts(name, "n_classes") else {}
    idx, info = balanced_select(strategies.select, name, X, labels, 10, proba=proba, exclude=excl, probe=probe,
                                return_info=True, **kw)
    assert idx.size == 10 and np.unique(idx).size == 10 and np.all(labels[idx] < 0)
    assert not np.isin(idx, excl).any() and "PCB" in info["reason"] and info["strategy"] == name
    assert np.bincount(proba[idx].argmax(1), minlength=10).max() <= 2  # spread over the predicted classes
    base = strategies.select(name, X, labels, 10 + excl.size, probe=probe, **kw)
    base = base[~np.isin(base, excl)][:10]
    if np.unique(proba[base].argmax(1)).size == 10:  # already balanced: the strategy's own batch
        assert set(idx.tolist()) == set(base.tolist())
