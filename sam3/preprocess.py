"""Image loading and SAM 3 preprocessing with torch and PIL alone.

Equal to transformers' ``Sam3ImageProcessor`` (which needs torchvision): convert to RGB, resize the
uint8 image to the model's square size with antialiased bilinear interpolation (the same torch
kernel torchvision calls on CPU), rescale by 1/255, normalize with mean = std = 0.5.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

ImageLike = Union[str, Path, Image.Image, np.ndarray]

MEAN = 0.5
STD = 0.5


class ImageReadError(ValueError):
    """An image that cannot be read or converted; the message names the file and the fix."""


def _to_uint8_rgb(image: Image.Image) -> np.ndarray:
    """Any PIL mode -> (H, W, 3) uint8 RGB. 16-bit and float modes are scaled, not clipped."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16"):
            arr = arr / 65535.0 * 255.0
        elif mode == "I":
            hi = 65535.0 if arr.max(initial=0) > 255 else 255.0
            arr = arr / hi * 255.0
        else:  # "F": assume [0, 1] if it looks like it, else [0, 255]
            arr = arr * 255.0 if arr.max(initial=0) <= 1.0 else arr
        gray = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in ("RGBA", "LA") or (mode == "P" and "transparency" in image.info):
        # Transparent pixels go on white, like most viewers show them.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.array(image.convert("RGB"), dtype=np.uint8)


def load_image(image: ImageLike, exif_transpose: bool = True) -> np.ndarray:
    """Read an image as (H, W, 3) uint8 RGB.

    Args:
        image: a path, a PIL image, or an array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4),
            uint8 / uint16 / float in [0, 1].
        exif_transpose: apply the EXIF orientation tag (as photo viewers do).

    Raises:
        ImageReadError: missing file, unreadable or unsupported data, with the path in the message.
    """
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise ImageReadError(f"image file not found: {path}")
        try:
            with Image.open(path) as im:
                im.load()
                if exif_transpose:
                    im = ImageOps.exif_transpose(im)
                return _to_uint8_rgb(im)
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise ImageReadError(f"cannot read image {path}: {exc}; re-save it as PNG or JPEG") from exc
    if isinstance(image, Image.Image):
        if exif_transpose:
            image = ImageOps.exif_transpose(image)
        return _to_uint8_rgb(image)
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image)
    raise ImageReadError(f"unsupported image type {type(image).__name__}; pass a path, PIL image or array")


def _array_to_rgb(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageReadError(f"image array must be (H, W), (H, W, 3) or (H, W, 4); got shape {arr.shape}")
    if arr.dtype == np.uint8:
        pass
    elif arr.dtype == np.uint16:
        arr = np.rint(arr.astype(np.float64) / 65535.0 * 255.0).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        arr = np.rint(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    else:
        raise ImageReadError(f"unsupported image array dtype {arr.dtype}; use uint8, uint16 or float")
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.shape[2] == 4:
        return _to_uint8_rgb(Image.fromarray(arr, mode="RGBA"))
    return np.ascontiguousarray(arr)


def content_hash(rgb: np.ndarray) -> str:
    """Stable hash of decoded pixels (and their shape): the image part of a cache key."""
    h = hashlib.sha256()
    h.update(repr(rgb.shape).encode())
    h.update(np.ascontiguousarray(rgb).tobytes())
    return h.hexdigest()[:32]


def preprocess(rgb: np.ndarray | list[np.ndarray], size: int) -> torch.Tensor:
    """RGB uint8 images -> normalized pixel values for SAM 3.

    Args:
        rgb: one (H, W, 3) uint8 array or a list of them (sizes may differ).
        size: the model's square input side (1008 for facebook/sam3).

    Returns:
        (N, 3, size, size) float32 tensor in [-1, 1].
    """
    arrays = [rgb] if isinstance(rgb, np.ndarray) else list(rgb)
    out = torch.empty(len(arrays), 3, size, size, dtype=torch.float32)
    for i, arr in enumerate(arrays):
        x = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None]  # (1, 3, H, W) uint8
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[i] = (x[0].to(torch.float32) / 255.0 - MEAN) / STD
    return out
