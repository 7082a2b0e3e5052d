"""Defensive decoding of one image: any readable file or array becomes 8-bit RGB, or a reason.

Readable odd formats (CMYK, 16-bit, palette, alpha, EXIF-rotated) are converted to plain RGB;
files that cannot be decoded raise :class:`UnreadableImage` with a short human reason, which
callers record as a skipped file instead of failing.
"""
from __future__ import annotations

import io
import struct
import warnings

import numpy as np

__all__ = ["DEFAULT_MAX_PIXELS", "UnreadableImage", "load_rgb", "array_to_rgb_image", "check_image_array"]

#: Default decompression-bomb limit: images with more pixels are skipped, not decoded.
DEFAULT_MAX_PIXELS = 100_000_000


class UnreadableImage(Exception):
    """Raised by :func:`load_rgb` with a short human reason (the file is skipped, not fatal)."""


def _to_rgb(im):
    """Convert any Pillow mode to 8-bit RGB; alpha is composited over white."""
    from PIL import Image

    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        # Pillow clips 16/32-bit grey to 0..255 on convert("L"); rescale instead.
        arr = np.asarray(im)
        if mode.startswith("I;16"):
            arr = arr.astype(np.float32) / 257.0
        else:
            arr = arr.astype(np.float64)
            lo, hi = float(arr.min()), float(arr.max())
            if mode == "I" and lo >= 0 and hi <= 255:
                pass
            elif mode == "I" and lo >= 0 and hi <= 65535:
                arr = arr / 257.0
            else:  # arbitrary range (float images, signed ints): stretch
                arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        grey = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")
        return grey.convert("RGB")
    if mode == "P" or mode == "PA":
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "La", "RGBa", "RGBX"):
        if mode == "RGBX":
            return im.convert("RGB")
        rgba = im.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return im.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV, ...


def load_rgb(source, max_pixels: int | None = DEFAULT_MAX_PIXELS, size_hint: int | None = None):
    """Decode one image file (path or bytes) into an RGB ``PIL.Image``, or raise UnreadableImage.

    Applies the EXIF orientation, takes the first frame of animations, converts odd
    modes to RGB and refuses images with more than ``max_pixels`` pixels before
    decoding them (decompression bombs). ``size_hint``: the caller only needs the
    shorter side to be at least this many pixels, so JPEGs are decoded at a reduced
    DCT scale (``draft``; several times faster for camera photos).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(source)
            w, h = im.size
            if max_pixels is not None and w * h > max_pixels:
                raise UnreadableImage(
                    f"too large ({w}x{h} = {w * h:,} pixels > limit {max_pixels:,}; raise max_pixels to read it)"
                )
            if size_hint and im.format == "JPEG" and min(w, h) >= 2 * size_hint:
                im.draft(None, (size_hint, size_hint))  # result stays >= size_hint on both sides
            im.load()
    except UnreadableImage:
        raise
    except FileNotFoundError:
        raise UnreadableImage("file not found") from None
    except IsADirectoryError:
        raise UnreadableImage("is a directory, not a file") from None
    except PermissionError:
        raise UnreadableImage("permission denied") from None
    except Image.DecompressionBombError as exc:
        raise UnreadableImage(f"too large (decompression-bomb limit): {exc}") from None
    except UnidentifiedImageError:
        raise UnreadableImage("not an image (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        msg = str(exc) or type(exc).__name__
        if "truncated" in msg.lower():
            raise UnreadableImage(f"truncated file ({msg})") from None
        raise UnreadableImage(f"corrupt image ({msg})") from None
    except Exception as exc:  # any other decoder failure: skip the file, keep going
        raise UnreadableImage(f"cannot decode ({type(exc).__name__}: {exc})") from None
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # a broken EXIF block must not cost us a readable image
        pass
    try:
        return _to_rgb(im)
    except Exception as exc:
        raise UnreadableImage(f"cannot convert mode {im.mode!r} to RGB ({exc})") from None


def array_to_rgb_image(arr: np.ndarray):
    from PIL import Image

    if arr.ndim == 2:
        return Image.fromarray(arr, mode="L").convert("RGB")
    if arr.shape[2] == 1:
        return Image.fromarray(arr[:, :, 0], mode="L").convert("RGB")
    if arr.shape[2] == 4:
        return _to_rgb(Image.fromarray(arr, mode="RGBA"))
    return Image.fromarray(arr, mode="RGB")


def check_image_array(array) -> np.ndarray:
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    arr = np.asarray(array)
    if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[3] not in (1, 3, 4)):
        raise ValueError(
            "array must have shape (n_images, height, width) for grey or (n_images, height, width, 1|3|4) "
            f"for colour, got {arr.shape}; for channels-first data use array.transpose(0, 2, 3, 1)"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0 or arr.shape[2] == 0:
        raise ValueError(f"array is empty (shape {arr.shape}); pass at least one image")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.integer) and arr.min() >= 0 and arr.max() <= 255:
            arr = arr.astype(np.uint8)
        else:
            raise TypeError(
                f"array must be uint8 pixels in 0..255, got dtype {arr.dtype}"
                + (f" with range {arr.min()}..{arr.max()}" if arr.size and np.issubdtype(arr.dtype, np.number) else "")
                + "; convert e.g. with (x * 255).round().astype(np.uint8) for floats in [0, 1]"
            )
    return np.ascontiguousarray(arr)
