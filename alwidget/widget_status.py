"""The widget's status in plain words (the status line), with the technical details for hover.

Pure functions of the Session's status and the map's counts: no widget, no threads. The
front end shows `text` as the status line and `details` as its tooltip.
"""
from __future__ import annotations

import time

import numpy as np

from .mapstate import FLAG_SKIPPED, FLAG_UNSURE

__all__ = ["STRATEGY_WORDS", "accept_state", "describe_strategy", "map_counts", "status_dict"]

#: What each strategy does, in words a labeller understands.
STRATEGY_WORDS = {
    "typiclust": "Picking typical images",
    "probcover": "Picking images that cover the whole map",
    "dropquery": "Picking images the model is unsure about, spread over the map",
    "random": "Picking images at random",
    "margin": "Picking images the model is least sure about",
    "least_confidence": "Picking images the model is least sure about",
    "entropy": "Picking images the model is least sure about",
    "coreset": "Picking images unlike any labelled one",
    "badge": "Picking uncertain images that differ from each other",
    "power_margin": "Picking mostly uncertain images, with some chance",
    "bald": "Picking images where the model's guesses disagree with each other",
    "power_bald": "Picking mostly images where the model's guesses disagree, with some chance",
    "batchbald": "Picking images whose answers would teach the model the most together",
}


def describe_strategy(setting: str, active: str | None, n_label_classes: int, n_classes: int) -> str:
    """One sentence on what the strategy is doing now, e.g. "Picking typical images until ..."."""
    name = active or setting
    words = STRATEGY_WORDS.get(name, f"Picking images with {name}")
    if setting == "auto" and name in ("typiclust", "probcover"):
        total = max(n_classes, n_label_classes)
        so_far = f"{n_label_classes} of {total} classes so far" if total else "no classes yet"
        return f"{words} until every class has a few labels: {so_far}"
    if setting == "auto" and name == "dropquery":
        return f"{words} (the model has enough labels to guide the choice)"
    return words


def accept_state(n_label_classes: int, has_model: bool, n_open: int, labelled_names) -> tuple[bool, str]:
    """(available, reason) for accepting the batch as predicted."""
    if n_label_classes < 2:
        have = ", ".join(labelled_names) if labelled_names else "none"
        return False, f"Accepting predictions needs labels in at least 2 classes (so far: {have})."
    if not has_model:
        return False, "The model is still training; accept the batch once its predictions are shown."
    if n_open == 0:
        return False, "Every image of this batch is done; press Space (or n) for a new batch."
    return True, f"Review the predictions for the {n_open} open image(s) of this batch."


def _model_words(busy: bool, last_update, last_ms, has_model: bool, n_label_classes: int) -> tuple[str, str]:
    """(plain words, details) about the model's state."""
    detail = ""
    if last_update:
        when = time.strftime("%H:%M:%S", time.localtime(last_update))
        detail = f"last retrain {when}" + (f" ({last_ms / 1000:.2f} s)" if last_ms is not None else "")
    if busy:
        return "updating the model…", detail
    if has_model:
        return "model up to date", detail
    if n_label_classes == 1:
        return "predictions once 2 classes have labels", detail
    return "no model yet", detail


def map_counts(m, classes: list) -> dict:
    """Counts from a MapState: labels per class, unsure, skipped, open batch items, model shown."""
    counts = np.bincount(m.label[m.label >= 0], minlength=len(classes))
    open_ = int(((m.label[m.batch] < 0) & (m.flags[m.batch] == 0)).sum()) if m.batch.size else 0
    return {"counts": {c: int(counts[k]) for k, c in enumerate(classes)}, "n_points": m.n,
            "n_unsure": int(((m.flags & FLAG_UNSURE) != 0).sum()),
            "n_skipped": int(((m.flags & FLAG_SKIPPED) != 0).sum()),
            "has_model": bool((m.pred >= 0).any()), "n_open": open_}


def status_dict(st: dict, m, classes: list, *, coords: str, umap_running: bool, umap_progress: float,
                error: str, store: str, closed_reason: str | None, busy: bool | None = None) -> dict:
    """The `status` traitlet: plain-words `text`, technical `details`, and the fields behind them.

    st : the Session's `status` dict; m : the MapState; classes : class names (ids = positions).
    """
    mc = map_counts(m, classes)
    counts, n_points, n_unsure, n_skipped = mc["counts"], mc["n_points"], mc["n_unsure"], mc["n_skipped"]
    has_model, n_open = mc["has_model"], mc["n_open"]
    n_labelled = int(sum(counts.values()))
    labelled_names = [c for c, k in counts.items() if k]
    n_label_classes = len(labelled_names)
    setting = str(st.get("strategy") or "")
    active = st.get("active_strategy") or None
    busy = bool(st.get("busy", False)) if busy is None else bool(busy)
    can_accept, accept_reason = accept_state(n_label_classes, has_model, n_open, labelled_names)
    doing = describe_strategy(setting, active, n_label_classes, len(classes)) if setting else ""
    model_words, model_detail = _model_words(busy, st.get("last_update"), st.get("last_update_ms"), has_model,
                                             n_label_classes)
    parts = [f"{n_labelled} of {n_points} labelled"]
    if n_unsure:
        parts.append(f"{n_unsure} unsure")
    if doing:
        parts.append(doing)
    guess = bool(st.get("guess")) and has_model  # colours from the class names' text, not from labels
    if guess:
        parts.append("colours: a zero-shot guess from the class names")
    if busy or not guess:
        parts.append(model_words)
    if coords == "preview":
        parts.append(f"map: quick preview, final map {int(umap_progress * 100)}% ready" if umap_running
                     else "map: quick preview")
    strategy_shown = f"auto → {active}" if setting == "auto" and active else setting
    reason = str(st.get("reason") or "")
    details = [f"strategy {strategy_shown}: {reason}" if reason else f"strategy {strategy_shown}"]
    details += [d for d in (model_detail, f"probe on {st['device']}" if st.get("device") else "") if d]
    details.append(f"counts: {', '.join(f'{c} {k}' for c, k in counts.items()) or 'no classes'}")
    if n_skipped:
        details.append(f"{n_skipped} skipped (they come back later)")
    details.append(f"labels saved in {store}" if store else "labels kept in memory only (store=':memory:')")
    return {
        "n_points": int(n_points), "n_labelled": n_labelled, "counts": dict(counts),
        "n_label_classes": n_label_classes, "n_unsure": int(n_unsure), "n_skipped": int(n_skipped),
        "strategy": strategy_shown, "strategy_name": setting, "reason": reason,
        "last_retrain": model_detail, "busy": busy, "coords": coords, "error": error,
        "has_model": bool(has_model), "guess": guess, "can_accept": can_accept, "accept_reason": accept_reason,
        "n_open": int(n_open),
        "text": " · ".join(parts), "details": " · ".join(details),
        "store": store or ":memory:", "closed_reason": closed_reason or "", "closed": bool(closed_reason),
    }
