"""Where encoder weights come from, checked before any model is built.

A pretrained tag whose weights are neither in the local caches nor downloadable must fail
at once with a message naming the alternatives (the hub client otherwise retries for ~47 s
when offline); no network request is made while ``HF_HUB_OFFLINE`` is set.
"""
from __future__ import annotations

import os
import re
import socket

__all__ = ["EncoderUnavailable", "alternatives", "openclip_weights"]


class EncoderUnavailable(RuntimeError):
    """The encoder's weights cannot be found or fetched; the message names the alternatives."""


def alternatives(arch: str = "ViT-B-32") -> str:
    return (
        "Alternatives: (1) a local checkpoint file: encoder='openclip:"
        f"{arch}//path/to/checkpoint.pt'; (2) the offline encoder shipped with alwidget: "
        "encoder='efficientnet-lite0'; (3) precomputed embeddings: pass an (n_samples, n_features) "
        "array to the Session/widget instead of images."
    )


def openclip_weights(arch: str, pretrained: str | None):
    """-> (checkpoint path, "download" or None (random weights); extra create kwargs: the tag's
    preprocessing). Raises EncoderUnavailable when the weights are neither cached nor reachable."""
    import open_clip

    if pretrained is None:
        return None, {}
    if os.path.isabs(pretrained):
        return pretrained, {}
    cfg = open_clip.get_pretrained_cfg(arch, pretrained)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise ValueError(
            f"unknown OpenCLIP pretrained tag {pretrained!r} for {arch!r}; known tags: {tags}. " + alternatives(arch)
        )
    extra = {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if cfg.get(k)}
    kwargs = {f"image_{k}": v for k, v in extra.items()}
    if cfg.get("quick_gelu"):
        kwargs["force_quick_gelu"] = True
    local = cached_openclip_file(cfg)
    if local:
        return local, kwargs
    where = f"hf-hub {cfg['hf_hub']}" if cfg.get("hf_hub") else cfg.get("url", "?")
    if hf_offline():
        raise EncoderUnavailable(
            f"OpenCLIP weights {arch}/{pretrained} are not in the local cache and "
            f"HF_HUB_OFFLINE is set, so they cannot be downloaded ({where}). " + alternatives(arch)
        )
    host = "huggingface.co" if cfg.get("hf_hub") else _url_host(cfg.get("url", ""))
    if not reachable(host):
        raise EncoderUnavailable(
            f"OpenCLIP weights {arch}/{pretrained} are not in the local cache and {host} "
            f"cannot be reached (no network?), so they cannot be downloaded ({where}). " + alternatives(arch)
        )
    return "download", kwargs


def hf_offline() -> bool:
    flag = os.environ.get("HF_HUB_OFFLINE", "") or os.environ.get("TRANSFORMERS_OFFLINE", "")
    return flag.strip().lower() in ("1", "true", "yes", "on")


def _url_host(url: str) -> str:
    m = re.match(r"^[a-z]+://([^/:]+)", url)
    return m.group(1) if m else "huggingface.co"


def reachable(host: str, timeout: float = 3.0) -> bool:
    """One quick TCP connect: avoids the hub client's ~47 s of retries when offline."""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def cached_openclip_file(cfg) -> str | None:
    """Path of already-downloaded weights for a pretrained cfg, or None."""
    if cfg.get("file"):
        return cfg["file"] if os.path.isfile(cfg["file"]) else None
    if cfg.get("hf_hub"):
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return None
        repo, filename = os.path.split(cfg["hf_hub"])
        filename = filename or "open_clip_pytorch_model.bin"
        candidates = [filename]
        if filename == "open_clip_pytorch_model.bin":
            candidates.insert(0, "open_clip_model.safetensors")
        elif filename.endswith((".bin", ".pth")):
            candidates.insert(0, filename[:-4] + ".safetensors")
        for name in candidates:
            hit = try_to_load_from_cache(repo, name)
            if isinstance(hit, str) and os.path.isfile(hit):
                return hit
        return None
    if cfg.get("url"):
        path = os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(cfg["url"]))
        return path if os.path.isfile(path) else None
    return None
