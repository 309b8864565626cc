"""Segmentations of a COCO annotation as one compressed RLE, checked before pycocotools sees them.

Polygons: parts with fewer than 3 points, an odd number of coordinates or non-numbers are dropped;
a flat coordinate list is read as one polygon. Uncompressed and compressed RLE must have the image's
size and runs that fill it exactly (pycocotools' decoder trusts them). A box-only annotation
(``segmentation: []`` + ``bbox``) becomes a rectangle. Each problem is reported through ``_add``.
"""

from __future__ import annotations

import math

import numpy as np
from pycocotools import mask as mask_utils


def is_int(value) -> bool:
    """An integer id (bools and floats with fractions are not)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    return isinstance(value, float) and value.is_integer()


def is_number(value) -> bool:
    """A finite number (not a bool)."""
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


class SegmentationReader:
    """Mixin of JsonChecker: one segmentation -> one compressed RLE, or None with a reported reason."""

    boxes_as_masks: bool

    def _add(self, level: str, code: str, where: str, message: str, fix: str = "") -> None:
        raise NotImplementedError

    def _box(self, rec: dict, where: str, h: int, w: int) -> dict | None:
        bbox = rec.get("bbox")
        if isinstance(bbox, list) and len(bbox) == 4 and all(is_number(v) for v in bbox) and bbox[2] > 0 < bbox[3]:
            use = "used as a rectangular mask" if self.boxes_as_masks else "its box is an ignore region"
            self._add(
                "warning",
                "box-only",
                where,
                f"segmentation is empty (box only); {use}",
                "add a polygon or RLE mask"
                + ("" if self.boxes_as_masks else ", or pass --boxes-as-masks to use boxes as masks"),
            )
            return mask_utils.frPyObjects(np.asarray([bbox], dtype=np.float64), h, w)[0]
        self._add(
            "error",
            "no-segmentation",
            where,
            "no segmentation and no valid bbox; annotation unusable, the image is not used for this category",
            "add a polygon or RLE mask",
        )
        return None

    def _polygons(self, seg: list, where: str, h: int, w: int) -> dict | None:
        if all(is_number(v) for v in seg):  # a flat [x1, y1, ...] instead of [[x1, y1, ...]]
            self._add(
                "warning",
                "flat-polygon",
                where,
                "segmentation is a flat coordinate list; read as one polygon",
                "nest polygons: [[x1, y1, x2, y2, ...]]",
            )
            seg = [seg]
        parts = []
        for k, part in enumerate(seg):
            if not isinstance(part, list) or not all(is_number(v) for v in part):
                self._add(
                    "warning",
                    "bad-polygon",
                    where,
                    f"polygon {k} is not a list of finite numbers; dropped",
                    "write polygons as [[x1, y1, x2, y2, ...]]",
                )
            elif len(part) % 2:
                self._add(
                    "warning",
                    "odd-polygon",
                    where,
                    f"polygon {k} has an odd number of coordinates ({len(part)}); dropped",
                    "give x, y pairs",
                )
            elif len(part) < 6:
                self._add(
                    "warning",
                    "short-polygon",
                    where,
                    f"polygon {k} has {len(part) // 2} point(s), fewer than 3; dropped",
                    "remove degenerate polygons",
                )
            else:
                parts.append([float(v) for v in part])
        if not parts:
            self._add(
                "error",
                "no-polygon",
                where,
                "no valid polygon left; annotation unusable, the image is not used for this category",
                "fix or remove the annotation",
            )
            return None
        return mask_utils.merge(mask_utils.frPyObjects(parts, h, w))

    def _rle(self, seg: dict, where: str, h: int, w: int, image_id: int) -> dict | None:
        size, counts = seg.get("size"), seg.get("counts")
        fix = "re-export the mask at the image's size"
        if not (isinstance(size, list) and len(size) == 2 and all(is_int(v) and v >= 0 for v in size)):
            self._add(
                "error", "bad-rle", where, f"RLE 'size' {size!r} is not [height, width]; annotation unusable", fix
            )
            return None
        rh, rw = int(size[0]), int(size[1])
        if (rh, rw) != (h, w):
            self._add(
                "error",
                "rle-size",
                where,
                f"RLE size {rh}x{rw} (height x width) disagrees with image id "
                f"{image_id} ({h}x{w}); annotation unusable, the image is not used for this category",
                fix,
            )
            return None
        if isinstance(counts, list):
            if not all(is_int(c) and c >= 0 for c in counts) or sum(int(c) for c in counts) != h * w:
                self._add(
                    "error",
                    "bad-rle",
                    where,
                    f"uncompressed RLE counts do not add up to {h}x{w} pixels; annotation unusable",
                    fix,
                )
                return None
            return mask_utils.frPyObjects({"size": [h, w], "counts": [int(c) for c in counts]}, h, w)
        if isinstance(counts, (str, bytes)):
            raw = counts.encode("ascii", "replace") if isinstance(counts, str) else counts
            try:
                runs = rle_string_counts(raw)
            except ValueError as exc:
                self._add("error", "bad-rle", where, f"compressed RLE cannot be read ({exc}); annotation unusable", fix)
                return None
            if any(c < 0 for c in runs) or sum(runs) != h * w:
                self._add(
                    "error",
                    "bad-rle",
                    where,
                    f"compressed RLE counts do not add up to {h}x{w} pixels; annotation unusable",
                    fix,
                )
                return None
            return {"size": [h, w], "counts": raw}
        self._add("error", "bad-rle", where, "RLE 'counts' is neither a list nor a string; annotation unusable", fix)
        return None


def rle_string_counts(s: bytes) -> list[int]:
    """Run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString`` in Python).

    Checked here before pycocotools sees the string: its decoder trusts the runs to fit the mask.
    """
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            if p >= len(s):
                raise ValueError("the string ends inside a number")
            c = s[p] - 48
            if not 0 <= c < 64:
                raise ValueError(f"character {chr(s[p])!r} is not part of the RLE alphabet")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts
