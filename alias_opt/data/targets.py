"""Target images and target sets: what the optimizer and the metrics read from a dataset.

A *target set* is one category's images, split into train and test, each image with the category's
instance masks (none on a negative) and an optional ignore region (crowd / box-only annotations).
Masks are kept as compressed RLE and decoded when ``TargetImage.masks`` is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from pycocotools import mask as mask_utils

from sam3.preprocess import ImageReadError, load_image

EXIF_ORIENTATION = 0x0112
IMAGE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class ImageEntry:
    """One image of the dataset.

    Attributes:
        image_id: the id in the JSON.
        path: the resolved file path, inside the image root.
        height, width: the size in the JSON, which masks are drawn in.
        exif_transpose: whether to apply the file's EXIF orientation to match that size
            (None until the file's header has been read).
    """

    def __init__(self, image_id: int, path: Path, height: int, width: int, exif_transpose: bool | None = None):
        self.image_id = image_id
        self.path = Path(path)
        self.height = height
        self.width = width
        self.exif_transpose = exif_transpose

    def __repr__(self) -> str:
        return (
            f"ImageEntry(image_id={self.image_id}, path={str(self.path)!r}, height={self.height}, width={self.width})"
        )

    def check(self) -> None:
        """Read the file's header: it must exist, decode, and have the JSON size in one of its two
        orientations (raw, or after EXIF rotation). Sets ``exif_transpose``.

        Raises:
            ImageReadError: naming the file, the image id and what to fix.
        """
        if not self.path.is_file():
            raise ImageReadError(f"image id {self.image_id}: file not found: {self.path}")
        try:
            raw, turned = image_sizes(self.path)
        except IMAGE_ERRORS as exc:
            raise ImageReadError(
                f"image id {self.image_id}: cannot read {self.path}: {exc}; re-save it as PNG or JPEG"
            ) from exc
        want = (self.width, self.height)
        if turned == want:
            self.exif_transpose = True
        elif raw == want:
            self.exif_transpose = False
        else:
            shown = f"{raw[0]}x{raw[1]}" + (f" ({turned[0]}x{turned[1]} after EXIF rotation)" if turned != raw else "")
            raise ImageReadError(
                f"image id {self.image_id}: {self.path} is {shown} (width x height) but the JSON says "
                f"{self.width}x{self.height}; fix width/height in the JSON or replace the file"
            )

    def load(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB in the JSON's orientation (any PIL mode: gray, RGBA, P, CMYK, 16-bit)."""
        if self.exif_transpose is None:
            self.check()
        try:
            with Image.open(self.path) as im:
                im.load()
                if self.exif_transpose:
                    im = ImageOps.exif_transpose(im)
                rgb = load_image(im, exif_transpose=False)
        except IMAGE_ERRORS as exc:
            if isinstance(exc, ImageReadError):
                raise
            raise ImageReadError(f"image id {self.image_id}: cannot decode {self.path}: {exc}; re-save it") from exc
        if rgb.shape[:2] != (self.height, self.width):
            raise ImageReadError(
                f"image id {self.image_id}: {self.path} decoded to {rgb.shape[1]}x{rgb.shape[0]}, "
                f"not the JSON's {self.width}x{self.height}"
            )
        return rgb


def _decode(rles: list[dict], height: int, width: int) -> np.ndarray:
    if not rles:
        return np.zeros((0, height, width), dtype=bool)
    return np.ascontiguousarray(mask_utils.decode(rles).transpose(2, 0, 1).astype(bool))


def encode_masks(masks: np.ndarray) -> list[dict]:
    """(N, H, W) bool -> N compressed RLEs."""
    if len(masks) == 0:
        return []
    return mask_utils.encode(np.asfortranarray(np.asarray(masks, dtype=np.uint8).transpose(1, 2, 0)))


class TargetImage:
    """One image of a target set: the category's instance masks on it (none on a negative).

    Build it from dense masks (``TargetImage(entry, masks, ignore, ann_ids)``) or from RLEs
    (``rles=``, ``ignore_rle=``); either form is available from the other on demand.
    ``masks`` is decoded on each read when built from RLEs: keep a reference if you need it often.

    Attributes:
        image: the ImageEntry.
        masks: (K, H, W) bool target instance masks (K = 0 on negatives).
        ignore: (H, W) bool union of the category's crowd / box-only regions, or None.
        ann_ids: annotation ids of the K masks.
        rles, ignore_rle: the same as compressed RLE (what the metrics use).
    """

    def __init__(
        self,
        image: ImageEntry,
        masks: np.ndarray | None = None,
        ignore: np.ndarray | None = None,
        ann_ids: Sequence[int] | None = None,
        *,
        rles: list[dict] | None = None,
        ignore_rle: dict | None = None,
    ):
        if masks is not None and rles is not None:
            raise ValueError("give masks or rles, not both")
        self.image = image
        self._masks = None if masks is None else np.asarray(masks, dtype=bool).reshape(-1, image.height, image.width)
        self._rles = rles
        self._ignore = None if ignore is None else np.asarray(ignore, dtype=bool)
        self._ignore_rle = ignore_rle
        n = len(self._masks) if self._masks is not None else len(rles or [])
        self.ann_ids = [int(a) for a in ann_ids] if ann_ids is not None else list(range(1, n + 1))
        if len(self.ann_ids) != n:
            raise ValueError(f"{n} masks but {len(self.ann_ids)} annotation ids")

    @property
    def masks(self) -> np.ndarray:
        if self._masks is not None:
            return self._masks
        return _decode(self._rles or [], self.image.height, self.image.width)

    @property
    def rles(self) -> list[dict]:
        if self._rles is None:
            self._rles = encode_masks(self._masks if self._masks is not None else np.zeros((0, 1, 1), bool))
        return self._rles

    @property
    def ignore(self) -> np.ndarray | None:
        if self._ignore is not None or self._ignore_rle is None:
            return self._ignore
        return mask_utils.decode(self._ignore_rle).astype(bool)

    @property
    def ignore_rle(self) -> dict | None:
        if self._ignore_rle is None and self._ignore is not None and self._ignore.any():
            self._ignore_rle = encode_masks(self._ignore[None])[0]
        return self._ignore_rle

    @property
    def n_targets(self) -> int:
        return len(self.ann_ids)

    @property
    def is_positive(self) -> bool:
        return self.n_targets > 0

    def only(self, keep: Sequence[bool] | np.ndarray) -> TargetImage:
        """The image with only its ``keep`` targets ((K,) bool) as targets, the others added to its
        ignore region (finding them is neither rewarded nor punished); a negative comes back as is."""
        keep = np.asarray(keep, dtype=bool)
        if len(keep) != self.n_targets:
            raise ValueError(f"{len(keep)} flags for {self.n_targets} targets")
        if keep.all():
            return self
        rles = self.rles
        ignore = [rles[k] for k in np.flatnonzero(~keep)]
        if self.ignore_rle is not None:
            ignore.append(self.ignore_rle)
        return TargetImage(
            self.image,
            rles=[rles[k] for k in np.flatnonzero(keep)],
            ignore_rle=ignore[0] if len(ignore) == 1 else mask_utils.merge(ignore),
            ann_ids=[self.ann_ids[k] for k in np.flatnonzero(keep)],
        )

    def __repr__(self) -> str:
        crowd = ", ignore" if self._ignore is not None or self._ignore_rle is not None else ""
        return f"TargetImage(image_id={self.image.image_id}, targets={self.n_targets}{crowd})"


class TargetSet:
    """All masks of one category, split into train and test images (positives and negatives).

    Attributes:
        category_id: the category's id.
        name: its name, or None when the dataset gives none (a nameless category has no baseline).
        oracle_name: the optional ``oracle_name`` key (the toy world's training words); for reports only.
        train, test: TargetImage lists, sorted by image id.
        extra_negatives: negatives outside both splits (never in ``test``; empty unless asked for), sorted by
            image id: more images without the category for a train-side check (the name check).
    """

    def __init__(
        self,
        category_id: int,
        name: str | None,
        oracle_name,
        train: list[TargetImage],
        test: list[TargetImage],
        extra_negatives: list[TargetImage] | None = None,
    ):
        self.category_id = category_id
        self.name = name
        self.oracle_name = oracle_name
        self.train = train
        self.test = test
        self.extra_negatives = list(extra_negatives or [])

    def split(self, which: str) -> list[TargetImage]:
        """``train``, ``test`` or ``all`` (train then test)."""
        if which == "train":
            return self.train
        if which == "test":
            return self.test
        if which == "all":
            return self.train + self.test
        raise ValueError(f"unknown split {which!r}; use train, test or all")

    def __repr__(self) -> str:
        def counts(imgs: list[TargetImage]) -> str:
            pos = sum(t.is_positive for t in imgs)
            return f"{pos}+{len(imgs) - pos}"

        return (
            f"TargetSet(category_id={self.category_id}, name={self.name!r}, train={counts(self.train)}, "
            f"test={counts(self.test)})"
        )


def image_sizes(path: Path) -> tuple[tuple[int, int], tuple[int, int]]:
    """(width, height) of an image file as stored and as shown after its EXIF rotation (header only).

    Raises:
        one of IMAGE_ERRORS when the file cannot be read.
    """
    with Image.open(path) as im:
        w, h = im.size
        turned = im.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8)
    return (w, h), ((h, w) if turned else (w, h))


def file_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of an image file after EXIF rotation, or None if unreadable."""
    try:
        return image_sizes(path)[1]
    except IMAGE_ERRORS:
        return None
