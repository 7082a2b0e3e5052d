"""Class-balanced selection on top of any strategy (PCB: Bang et al., CVPR 2024).

Plain active learning on vision-language features tends to pick class-imbalanced batches. PCB
gives the base strategy's candidates pseudo-labels from the current model (in alwidget: the
zero-shot guess from the class names at first, then the anchored probe, see
:mod:`alwidget.prior`) and fills the batch one item at a time from the class with the fewest
(labelled + chosen) items.
"""
from __future__ import annotations

import numpy as np

__all__ = ["BALANCE_FACTOR", "balanced_select", "pcb_order"]

#: PCB: candidates = the strategy's batch of B plus the rest of its batch of this many times B.
BALANCE_FACTOR = 5


def pcb_order(ranked, pseudo, counts, k: int) -> np.ndarray:
    """PCB's pick: ``k`` of the ``ranked`` rows (best first) with pseudo-labels ``pseudo``.

    Repeatedly the class with the fewest (labelled ``counts`` + chosen) items, among classes with
    candidates left, gives its best-ranked candidate (ties: the class whose candidate ranks
    higher). Returns the picks in the order taken, at most ``k``.
    """
    ranked, pseudo = np.asarray(ranked, np.int64), np.asarray(pseudo, np.int64)
    cnt = np.asarray(counts, np.int64).copy()
    cnt = np.concatenate([cnt, np.zeros(max(0, int(pseudo.max(initial=-1)) + 1 - cnt.size), np.int64)])
    queues = [np.flatnonzero(pseudo == c) for c in range(cnt.size)]  # positions, best first
    head = np.zeros(cnt.size, np.int64)
    picks = []
    while len(picks) < k:
        live = np.flatnonzero(head < np.array([q.size for q in queues]))
        if live.size == 0:
            break
        nxt = np.array([queues[c][head[c]] for c in live])
        c = live[np.lexsort((nxt, cnt[live]))[0]]
        picks.append(ranked[queues[c][head[c]]])
        head[c] += 1
        cnt[c] += 1
    return np.asarray(picks, np.int64)


def balanced_select(select, name, features, labels, k: int, *, proba, exclude=None,
                    factor: int = BALANCE_FACTOR, return_info: bool = False, **kwargs):
    """PCB on top of ``select`` (e.g. :func:`alwidget.strategies.select`): k class-balanced rows.

    The candidates, best first, are the strategy's own batch of k followed by the rest of its batch
    of ``factor * k`` (set-based strategies such as TypiClust or DropQuery pick a different set for
    a larger k, so the first k of that would not be the batch the strategy wants); rows in
    ``exclude`` never count. ``proba`` (N, C) from the current model gives them pseudo-labels and
    :func:`pcb_order` picks: a batch already spread over the predicted classes comes back as it was.
    """
    labels = np.asarray(labels, np.int64)
    excl = np.zeros(0, np.int64) if exclude is None else np.asarray(exclude, np.int64)
    n_free = int((labels < 0).sum())
    n_ok = n_free - int(np.count_nonzero(labels[excl] < 0)) if excl.size else n_free
    base, info = select(name, features, labels, min(int(k), n_ok), exclude=excl, return_info=True, **kwargs)
    want = min(int(factor) * int(k), n_ok)
    ext = select(name, features, labels, want, exclude=excl, **kwargs) if want > len(base) else base
    ext = np.asarray(ext, np.int64)
    base = np.asarray(base, np.int64)
    ranked = np.concatenate([base, ext[~np.isin(ext, base)]])
    ranked = ranked[~np.isin(ranked, excl)] if excl.size else ranked
    proba = np.asarray(proba)
    counts = np.bincount(labels[labels >= 0], minlength=proba.shape[1])
    picks = pcb_order(ranked, proba[ranked].argmax(1), counts, k)
    info = dict(info)
    info["balanced"] = {"candidates": int(ranked.size), "factor": int(factor)}
    info["reason"] = (info.get("reason", name)
                      + f"; class-balanced over {ranked.size} candidates by predicted class (PCB)")
    return (picks, info) if return_info else picks
