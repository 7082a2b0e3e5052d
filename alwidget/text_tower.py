"""Text towers for text search and text priors: an OpenCLIP checkpoint's text encoder (or any
callable ``prompts -> (P, D)``) as ``tower(prompts) -> (P, D)`` unit rows, cached per prompt.

Split from :mod:`alwidget.search` (which re-exports these names): the towers know nothing of the
pool being searched, and :mod:`alwidget.prior` uses them too.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from .geometry import normalize

__all__ = ["CLIP_SCALE", "TextSearchUnavailable", "no_tower_sentence", "text_tower"]

#: CLIP's trained logit scale (exp of logit_scale); the default for text towers that do not say.
CLIP_SCALE = 100.0
_TRADE = "'More like this' works with every encoder."
_TOWER_LOCK = threading.Lock()


class TextSearchUnavailable(RuntimeError):
    """Text search cannot run for these features; ``str(exc)`` is a sentence for the user."""


class _Tower:
    """A text tower: ``tower(prompts) -> (P, D)`` float32 unit rows (cached per prompt), ``scale``."""

    def __init__(self, fn, scale, name: str):
        self.fn, self.name = fn, name
        self._scale = scale
        self._memo: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    @property
    def scale(self) -> float:
        s = self._scale() if callable(self._scale) else self._scale
        return float(CLIP_SCALE if s is None else s)

    def __call__(self, prompts) -> np.ndarray:
        prompts = [prompts] if isinstance(prompts, str) else [str(p) for p in prompts]
        with self._lock:
            todo = [p for p in dict.fromkeys(prompts) if p not in self._memo]
            if todo:
                out = np.asarray(self.fn(todo), dtype=np.float32)
                if out.ndim != 2 or out.shape[0] != len(todo) or not np.isfinite(out).all():
                    raise ValueError(f"the text encoder {self.name} returned shape {out.shape} (or non-finite values) "
                                     f"for {len(todo)} prompts; it must return (n_prompts, n_features)")
                for p, row in zip(todo, normalize(out)):
                    self._memo[p] = row
                while len(self._memo) > 512:
                    self._memo.popitem(last=False)
            return np.stack([self._memo[p] for p in prompts])


_TOWERS: OrderedDict = OrderedDict()  # spec or id(callable) -> _Tower, the two last used


def no_tower_sentence(text_encoder) -> str | None:
    """Why ``text_encoder`` cannot embed text (a sentence), or None when it can (weights unchecked)."""
    from . import embed

    if text_encoder is None:
        return ("Text search is off: these embeddings came without a text encoder. Pass text_encoder="
                f"'openclip:ARCH/TAG' (the OpenCLIP checkpoint that made them) to search by text. {_TRADE}")
    if callable(text_encoder) and not isinstance(text_encoder, (str, embed.Encoder)):
        return None
    if isinstance(text_encoder, str):
        try:
            enc = embed.get_encoder(text_encoder, device="cpu", load=False)
        except (TypeError, ValueError) as exc:
            return f"Text search is off: {exc}"
    elif isinstance(text_encoder, embed.Encoder):
        enc = text_encoder
    else:
        return (f"Text search is off: text_encoder must be an encoder spec, an alwidget Encoder or a callable, "
                f"got {type(text_encoder).__name__}.")
    if not enc.has_text:
        return (f"Text search needs an image-text model: these embeddings come from {enc.id}, which has no text "
                f"tower. Embed the images with an OpenCLIP encoder (e.g. '{embed.DEFAULT_ENCODER}') to search by "
                f"text. {_TRADE}")
    return None


def text_tower(text_encoder, *, device="auto") -> _Tower:
    """The text tower for a spec / Encoder / callable, loaded on first use and kept (two at most).

    Raises :class:`TextSearchUnavailable` (the message is a sentence for the user) when there is none.
    """
    from . import embed

    why = no_tower_sentence(text_encoder)
    if why:
        raise TextSearchUnavailable(why)
    if isinstance(text_encoder, _Tower):
        return text_encoder
    key = text_encoder if isinstance(text_encoder, str) else id(text_encoder)  # the tower keeps the object alive
    with _TOWER_LOCK:
        if key in _TOWERS:
            _TOWERS.move_to_end(key)
            return _TOWERS[key]
    if isinstance(text_encoder, (str, embed.Encoder)):
        tower = _encoder_tower(embed.get_encoder(text_encoder, device=device, load=False))
    else:  # a user callable
        tower = _Tower(text_encoder, getattr(text_encoder, "logit_scale", None),
                       getattr(text_encoder, "__name__", type(text_encoder).__name__))
    with _TOWER_LOCK:
        _TOWERS[key] = tower
        while len(_TOWERS) > 2:
            _TOWERS.popitem(last=False)
    return tower


def _encoder_tower(enc) -> _Tower:
    """An alwidget OpenCLIP encoder as a tower; its weights load on the first prompt."""
    from . import embed

    def encode(prompts):
        try:
            return enc.encode_text(prompts)
        except embed.EncoderUnavailable as exc:
            raise TextSearchUnavailable(f"Text search is unavailable: {exc}") from None

    def scale():
        enc.load()
        return float(enc.model.logit_scale.detach().exp()) if hasattr(enc.model, "logit_scale") else None

    return _Tower(encode, scale, enc.id)
