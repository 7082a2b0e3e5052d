"""The map's coordinates in the widget: the preview at once, UMAP swapped in when it is ready.

Mixed into :class:`alwidget.widget.Labeller` (uses its ``state``, ``_send_lock``, ``emit_all``,
``refresh_status``, ``set_error`` and ``_closed``).
"""
from __future__ import annotations

import numpy as np

from .mapstate import MapState, fit_square

__all__ = ["ProjectionMixin"]


class ProjectionMixin:
    """Coordinates for the map: given, the PCA preview, or UMAP in the background."""

    def _start_map(self, X, coords, projection, seed):
        from . import project

        with self._send_lock:  # UMAP's on_done may fire before this returns (a cached map)
            kind, xy = ("given", coords) if coords is not None else ("preview", None)
            if xy is None and projection == "preview":
                xy = project.preview(X, seed=seed)
            elif xy is None:  # the preview now, UMAP swapped in by _on_umap_done
                self._umap_running = True
                self._projection = project.ProjectionJob(X, seed=seed, on_done=self._on_umap_done,
                                                         on_error=self._on_umap_error,
                                                         on_progress=self._on_umap_progress)
                early = self._umap_early  # set when on_done ran inside ProjectionJob()
                kind, xy = ("preview", self._projection.preview) if early is None else ("umap", early)
            self._coords_kind, self.state = kind, MapState(*fit_square(xy))

    def set_coords(self, coords, kind: str = "given"):
        """Replace the map coordinates ((n_samples, 2)); the browser keeps zoom and pan."""
        coords = np.asarray(coords, dtype=np.float64)
        n = self._features.shape[0]
        if coords.shape != (n, 2) or not np.isfinite(coords).all():
            raise ValueError(f"coords must be a finite array of shape ({n}, 2), got shape {coords.shape}")
        with self._send_lock:
            self.state.set_coords(*fit_square(coords))
            self._coords_kind = kind
            self.emit_all(self.state.arrays_message(["x", "y"]))
        self.refresh_status()

    def _on_umap_done(self, coords):
        self._umap_running = False
        with self._send_lock:
            if self.state is None:  # still in the constructor: it takes these coordinates
                self._umap_early = coords
                return
        if not self._closed:
            self.set_coords(coords, kind="umap")

    def _on_umap_error(self, exc):
        self._umap_running = False
        if not self._closed and self.state is not None:
            self.set_error(f"UMAP failed, the map keeps the preview: {type(exc).__name__}: {exc}")

    def _on_umap_progress(self, fraction, message):
        if fraction - self._umap_progress >= 0.1 and not self._closed and self.state is not None:
            self._umap_progress = fraction  # a status message per 10% is plenty
            self.refresh_status()
