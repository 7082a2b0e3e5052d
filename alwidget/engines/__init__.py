"""Engines that embed images outside this process and fill the same embedding cache.

``alwidget.engines.ray``: Ray Data on a cluster (``embed_images(..., engine="ray")``,
``alwidget embed FOLDER --engine ray``). Engines import their framework lazily, so this
package costs nothing unless one is used.
"""
