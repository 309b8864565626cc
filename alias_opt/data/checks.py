"""Parse and validate a COCO instance-segmentation JSON, record by record.

Real files differ from the COCO spec in many small ways. Each record that breaks a rule is either
repaired (with a note) or dropped (with a message naming the file, the record id and the fix);
nothing here raises from deep inside pycocotools. Fatal problems (no such file, not JSON, no
``images`` list) raise :class:`DatasetError`; everything else goes into a :class:`LoadReport`.

Segmentations are normalized to compressed RLE in the JSON's image coordinates:
polygons (parts with fewer than 3 points or an odd number of coordinates are dropped), uncompressed
and compressed RLE (checked against the image size), and box-only annotations
(``segmentation: []``), which become ignore regions unless ``boxes_as_masks``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pycocotools import mask as mask_utils

from alias_opt.data.issues import DatasetError, Issue, LoadReport
from alias_opt.data.masks import SegmentationReader, is_int

__all__ = ["DatasetError", "Issue", "LoadReport", "JsonChecker", "Category", "RawImage", "Annotation"]

# What an annotation contributes to its (image, category) pair.
TARGET = "target"  # an instance mask to find
IGNORE = "ignore"  # a crowd or box-only region: predictions inside it are neither right nor wrong
TAINT = "taint"  # unusable: the image is neither a positive nor a negative for the category


@dataclass
class Category:
    """A category of the dataset. ``name`` is None when the file gives no usable name."""

    id: int
    name: str | None
    oracle_name: str | list[str] | None = None
    supercategory: str | None = None


@dataclass
class RawImage:
    """An image record before its file is resolved."""

    id: int
    file_name: str
    height: int | None
    width: int | None


@dataclass
class Annotation:
    """A normalized annotation: a compressed RLE in the image's JSON size, and its role."""

    id: int
    image_id: int
    category_id: int
    kind: str  # TARGET, IGNORE or TAINT
    rle: dict | None  # compressed RLE (counts as bytes); None for TAINT


class JsonChecker(SegmentationReader):
    """Turns the parsed JSON into categories, image records and normalized annotations."""

    def __init__(self, data: dict, file: Path, report: LoadReport, boxes_as_masks: bool = False):
        self.data = data
        self.file = file
        self.report = report
        self.boxes_as_masks = boxes_as_masks

    def _add(self, level: str, code: str, where: str, message: str, fix: str = "") -> None:
        self.report.add(level, code, self.file, where, message, fix)

    def _list(self, key: str, required: bool) -> list:
        value = self.data.get(key)
        if value is None:
            if required:
                raise DatasetError(f"{self.file}: no '{key}' list; is this a COCO annotation file?")
            self._add("warning", f"no-{key}", "top level", f"no '{key}' list", f"add a '{key}' list")
            return []
        if not isinstance(value, list):
            raise DatasetError(f"{self.file}: '{key}' must be a list, got {type(value).__name__}")
        return value

    # ------------------------------------------------------------------ categories
    def categories(self) -> dict[int, Category]:
        cats: dict[int, Category] = {}
        raw = self._list("categories", required=False)
        for n, rec in enumerate(raw):
            if not isinstance(rec, dict) or not is_int(rec.get("id")):
                self._add(
                    "error",
                    "bad-category",
                    f"categories[{n}]",
                    "category without an integer 'id'; dropped",
                    "give every category an integer id",
                )
                continue
            cid = int(rec["id"])
            if cid in cats:
                self._add(
                    "warning",
                    "duplicate-category",
                    f"category id {cid}",
                    "duplicate category id; the first one is kept",
                    "make category ids unique",
                )
                continue
            name = rec.get("name")
            if not isinstance(name, str) or not name.strip():
                self._add(
                    "info",
                    "nameless-category",
                    f"category id {cid}",
                    "category has no name; it has no natural-name baseline",
                )
                name = None
            oracle = rec.get("oracle_name")
            if not (isinstance(oracle, str) or (isinstance(oracle, list) and all(isinstance(o, str) for o in oracle))):
                oracle = None
            sup = rec.get("supercategory")
            cats[cid] = Category(cid, name.strip() if name else None, oracle, sup if isinstance(sup, str) else None)
        if not raw:
            used = {
                int(a["category_id"])
                for a in self.data.get("annotations") or []
                if isinstance(a, dict) and is_int(a.get("category_id"))
            }
            for cid in sorted(used):
                cats[cid] = Category(cid, None)
            if used:
                self._add(
                    "warning",
                    "derived-categories",
                    "top level",
                    f"no categories listed; {len(used)} nameless categories taken from the annotations",
                    "add a 'categories' list with ids and names",
                )
        return cats

    # ------------------------------------------------------------------ images
    def images(self) -> dict[int, RawImage]:
        images: dict[int, RawImage] = {}
        for n, rec in enumerate(self._list("images", required=True)):
            if not isinstance(rec, dict) or not is_int(rec.get("id")):
                self._add(
                    "error",
                    "bad-image",
                    f"images[{n}]",
                    "image without an integer 'id'; dropped",
                    "give every image an integer id",
                )
                continue
            iid = int(rec["id"])
            where = f"image id {iid}"
            fname = rec.get("file_name")
            if not isinstance(fname, str) or not fname.strip():
                self._add("error", "no-file-name", where, "image has no 'file_name'; dropped", "add its file_name")
                continue
            size = []
            for key in ("height", "width"):
                value = rec.get(key)
                size.append(int(value) if is_int(value) and int(value) > 0 else None)
            if None in size:
                self._add(
                    "warning",
                    "no-image-size",
                    where,
                    "missing or invalid height/width; taken from the image file",
                    "add height and width",
                )
            if iid in images:
                prev = images[iid]
                same = prev.file_name == fname
                self._add(
                    "warning" if same else "error",
                    "duplicate-image",
                    where,
                    "duplicate image id"
                    + (
                        ""
                        if same
                        else f" with another file ({fname!r}); the first "
                        f"({prev.file_name!r}) is kept and this one dropped"
                    ),
                    "make image ids unique",
                )
                continue
            images[iid] = RawImage(iid, fname, size[0], size[1])
        return images

    # ------------------------------------------------------------------ annotations
    def annotations(self, images: dict[int, RawImage], categories: dict[int, Category]) -> list[Annotation]:
        out: list[Annotation] = []
        seen: set[int] = set()
        dup_ids = 0
        for n, rec in enumerate(self._list("annotations", required=False)):
            if not isinstance(rec, dict):
                self._add("error", "bad-annotation", f"annotations[{n}]", "annotation is not an object; dropped")
                continue
            if is_int(rec.get("id")):
                aid = int(rec["id"])
                where = f"annotation id {aid}"
            else:
                aid = -(n + 1)
                where = f"annotations[{n}]"
                self._add(
                    "warning",
                    "no-annotation-id",
                    where,
                    f"annotation without an integer id; called {aid} here",
                    "give every annotation a unique integer id",
                )
            if aid in seen:
                dup_ids += 1
                self._add(
                    "warning",
                    "duplicate-annotation-id",
                    where,
                    "duplicate annotation id; both annotations are used",
                    "make annotation ids unique",
                )
            seen.add(aid)
            iid, cid = rec.get("image_id"), rec.get("category_id")
            if not is_int(iid) or int(iid) not in images:
                self._add(
                    "warning",
                    "unknown-image",
                    where,
                    f"annotation for image id {iid!r}, which is not in 'images' (or was dropped); annotation ignored",
                    "remove it or add the image",
                )
                continue
            if not is_int(cid) or int(cid) not in categories:
                self._add(
                    "warning",
                    "unknown-category",
                    where,
                    f"annotation for category id {cid!r}, which is not in 'categories'; annotation ignored",
                    "remove it or add the category",
                )
                continue
            image = images[int(iid)]
            crowd = rec.get("iscrowd", 0)
            if crowd not in (0, 1, True, False):
                self._add("warning", "bad-iscrowd", where, f"iscrowd={crowd!r} read as 0", "use 0 or 1")
                crowd = 0
            out.append(self._annotation(rec, aid, where, image, int(cid), bool(crowd)))
        if dup_ids:
            self.report.count("duplicate annotation ids", dup_ids)
        return out

    def _annotation(self, rec: dict, aid: int, where: str, image: RawImage, cid: int, crowd: bool) -> Annotation:
        h, w = image.height, image.width
        assert h is not None and w is not None, "image sizes are filled before annotations are read"
        seg = rec.get("segmentation")
        rle = None
        if isinstance(seg, dict):
            rle = self._rle(seg, where, h, w, image.id)
        elif isinstance(seg, list) and seg:
            rle = self._polygons(seg, where, h, w)
        elif seg not in (None, []):
            self._add(
                "error",
                "bad-segmentation",
                where,
                f"segmentation of type {type(seg).__name__} is neither polygons nor RLE; annotation unusable",
                "write polygons [[x1, y1, ...]] or RLE {size, counts}",
            )
            return Annotation(aid, image.id, cid, TAINT, None)
        if rle is None and not (isinstance(seg, list) and seg):
            rle = self._box(rec, where, h, w)
            if rle is not None:
                kind = TARGET if self.boxes_as_masks and not crowd else IGNORE
                return Annotation(aid, image.id, cid, kind, rle)
        if rle is None:
            return Annotation(aid, image.id, cid, TAINT, None)
        if crowd:
            return Annotation(aid, image.id, cid, IGNORE, rle)
        if int(mask_utils.area(rle)) == 0:
            self._add(
                "warning",
                "empty-mask",
                where,
                "mask has no pixels inside the image; the image is not used for this category",
                "fix or remove the annotation",
            )
            return Annotation(aid, image.id, cid, TAINT, None)
        return Annotation(aid, image.id, cid, TARGET, rle)
