"""COCO instance-segmentation datasets as *target sets*: per category, its images and masks.

    ds = CocoDataset.open("path/to/dataset")          # a folder or an annotation JSON
    print(ds.report)                                   # what was repaired or dropped, and why
    for ts in ds.target_sets(seed=0):                  # deterministic 50/50 split per category
        ts.train, ts.test                              # TargetImage lists: positives + negatives

Where the files are (a folder's annotation JSON, the image root) is ``alias_opt.data.layout``;
record-by-record checks of the JSON are ``alias_opt.data.checks``; the target images themselves
(masks kept as compressed RLE, decoded on read) are ``alias_opt.data.targets``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from alias_opt.data.checks import (
    IGNORE,
    TARGET,
    Annotation,
    Category,
    DatasetError,
    Issue,
    JsonChecker,
    LoadReport,
)
from alias_opt.data.layout import find_annotation_file, pick_image_root, resolve_images
from alias_opt.data.targets import ImageEntry, TargetImage, TargetSet, encode_masks, file_size
from sam3.preprocess import ImageReadError

logger = logging.getLogger(__name__)

__all__ = [
    "Category",
    "CocoDataset",
    "DatasetError",
    "ImageEntry",
    "ImageReadError",
    "Issue",
    "LoadReport",
    "TargetImage",
    "TargetSet",
    "encode_masks",
    "find_annotation_file",
]


class CocoDataset:
    """A validated COCO instance-segmentation dataset.

    Attributes:
        annotation_file: the JSON read.
        image_root: the folder ``file_name`` is relative to.
        categories: id -> Category.
        images: id -> ImageEntry (images whose file name stays inside the root).
        report: LoadReport of everything repaired or dropped.
    """

    def __init__(
        self,
        annotation_file: Path,
        image_root: Path,
        categories: dict[int, Category],
        images: dict[int, ImageEntry],
        annotations: list[Annotation],
        report: LoadReport,
    ):
        self.annotation_file = annotation_file
        self.image_root = image_root
        self.categories = categories
        self.images = images
        self.annotations = annotations
        self.report = report
        self._bad_images: dict[int, str] = {}
        self._by_image_cat: dict[tuple[int, int], list[Annotation]] = {}
        for ann in annotations:
            self._by_image_cat.setdefault((ann.image_id, ann.category_id), []).append(ann)

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | Path, image_root: str | Path | None = None, boxes_as_masks: bool = False) -> CocoDataset:
        """Read and validate a dataset.

        Args:
            path: an annotation JSON, or a folder holding one (see the module doc).
            image_root: the folder ``file_name`` is relative to (default: found by looking).
            boxes_as_masks: use box-only annotations (``segmentation: []``) as rectangular masks
                instead of ignore regions.

        Raises:
            DatasetError: the path, the JSON or the image root cannot be used at all.
        """
        json_path = find_annotation_file(path).resolve()
        try:
            data = json.loads(json_path.read_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{json_path} is not valid JSON: {exc}") from exc
        except OSError as exc:
            raise DatasetError(f"cannot read {json_path}: {exc}") from exc
        if not isinstance(data, dict):
            raise DatasetError(f"{json_path}: expected a JSON object with images/annotations/categories")
        report = LoadReport(annotation_file=str(json_path))
        checker = JsonChecker(data, json_path, report, boxes_as_masks=boxes_as_masks)
        categories = checker.categories()
        raw_images = checker.images()
        if image_root is not None:
            root = Path(image_root).expanduser().resolve()
            if not root.is_dir():
                raise DatasetError(f"image root {root} is not a folder")
        else:
            root = pick_image_root(json_path, raw_images)
        report.image_root = str(root)
        images = resolve_images(raw_images, root, json_path, report)
        for raw in list(raw_images.values()):  # sizes are needed to read masks; take missing ones from files
            if raw.height is None or raw.width is None:
                entry = images.get(raw.id)
                size = file_size(entry.path) if entry else None
                if size is None:
                    report.add(
                        "error",
                        "no-image-size",
                        json_path,
                        f"image id {raw.id}",
                        "no height/width in the JSON and the file cannot be read; image dropped",
                        "add height and width",
                    )
                    del raw_images[raw.id]
                    images.pop(raw.id, None)
                    continue
                raw.width, raw.height = size
                if entry:
                    entry.width, entry.height = size
        annotations = checker.annotations(raw_images, categories)
        report.counts.update(
            images=len(raw_images),
            images_usable=len(images),
            categories=len(categories),
            annotations=len(annotations),
            targets=sum(a.kind == TARGET for a in annotations),
            ignore_regions=sum(a.kind == IGNORE for a in annotations),
        )
        return cls(json_path, root, categories, images, annotations, report)

    # ------------------------------------------------------------------ images
    def image_array(self, entry: ImageEntry) -> np.ndarray:
        """(H, W, 3) uint8 RGB of an image, in the orientation that matches the JSON."""
        return entry.load()

    def usable(self, image_id: int) -> bool:
        """Whether an image's file exists and matches the JSON (header read once, then remembered)."""
        if image_id in self._bad_images:
            return False
        entry = self.images.get(image_id)
        if entry is None:
            return False
        if entry.exif_transpose is None:
            try:
                entry.check()
            except ImageReadError as exc:
                self._bad_images[image_id] = str(exc)
                self.report.add("error", "bad-image-file", entry.path, f"image id {image_id}", str(exc))
                return False
        return True

    def check_images(self) -> int:
        """Read every image header (for ``--check``); returns how many are usable."""
        return sum(self.usable(i) for i in list(self.images))

    # ------------------------------------------------------------------ target sets
    def target_sets(
        self,
        seed: int = 0,
        train_fraction: float = 0.5,
        max_negatives: int = 20,
        categories: Sequence[int] | None = None,
        min_positives: int = 1,
        extra_negatives: int = 0,
    ) -> list[TargetSet]:
        """Per category, its positive images (with masks) and up to ``max_negatives`` negative images,
        each split train/test deterministically by ``seed`` and the category id.

        An image is a negative for a category only if it has no annotation of it at all; images
        whose only annotations of the category are crowd/box-only regions or unusable are left out.

        Args:
            seed: split seed.
            train_fraction: fraction of positives (and of the sampled negatives) in train.
            max_negatives: negatives sampled per category (before the split).
            categories: category ids to build (default all, sorted by id).
            min_positives: categories with fewer usable positive images are skipped (noted in the report).
            extra_negatives: further negatives per category, drawn after the sampled ones (which stay as
                they are) and kept apart from both splits (``TargetSet.extra_negatives``): never in its test
                split, so a train-side check may read them (the name check, ``SearchConfig.name_negatives``).
        """
        if not 0.0 <= train_fraction <= 1.0:
            raise ValueError(f"train_fraction must be in [0, 1]; got {train_fraction}")
        wanted = sorted(self.categories) if categories is None else [int(c) for c in categories]
        unknown = [c for c in wanted if c not in self.categories]
        if unknown:
            raise DatasetError(
                f"{self.annotation_file}: no category with id {unknown[0]}; known ids: {sorted(self.categories)[:20]}"
            )
        touched: dict[int, set[int]] = {}
        for image_id, cid in self._by_image_cat:
            touched.setdefault(cid, set()).add(image_id)
        all_ids = sorted(self.images)
        out = []
        for cid in wanted:
            cat = self.categories[cid]
            positives, skipped = [], 0
            for image_id in sorted(touched.get(cid, ())):
                anns = self._by_image_cat[(image_id, cid)]
                if any(a.kind == TARGET for a in anns) and self.usable(image_id):
                    positives.append(self._target_image(image_id, anns))
                else:
                    skipped += 1
            if len(positives) < min_positives:
                if cid in touched:
                    self.report.add(
                        "warning",
                        "few-positives",
                        self.annotation_file,
                        f"category id {cid}",
                        f"{len(positives)} usable positive image(s), fewer than {min_positives}"
                        + (
                            f" ({skipped} image(s) have only crowd, box-only or unusable annotations "
                            "of it, or unreadable files)"
                            if skipped
                            else ""
                        )
                        + "; no target set",
                    )
                else:
                    self.report.add(
                        "info",
                        "unused-category",
                        self.annotation_file,
                        f"category id {cid}",
                        "category has no annotations; no target set",
                    )
                continue
            split_seed = _split_seed(seed, cid)
            rng = np.random.default_rng([split_seed, 1])
            pool = [i for i in all_ids if i not in touched.get(cid, ())]
            negatives: list[TargetImage] = []
            for k in rng.permutation(len(pool)):  # the first max_negatives split, the next extra_negatives apart
                if len(negatives) >= max_negatives + extra_negatives:
                    break
                if self.usable(pool[int(k)]):
                    negatives.append(TargetImage(self.images[pool[int(k)]], rles=[], ann_ids=[]))
            negatives, extra = negatives[:max_negatives], negatives[max_negatives:]
            pos_train, pos_test = _split(positives, train_fraction, np.random.default_rng([split_seed, 0]))
            neg_train, neg_test = _split(negatives, train_fraction, rng)
            by_id = lambda t: t.image.image_id  # noqa: E731
            out.append(
                TargetSet(
                    cid,
                    cat.name,
                    cat.oracle_name,
                    sorted(pos_train + neg_train, key=by_id),
                    sorted(pos_test + neg_test, key=by_id),
                    sorted(extra, key=by_id),
                )
            )
        return out

    def _target_image(self, image_id: int, anns: list[Annotation]) -> TargetImage:
        targets = [a for a in anns if a.kind == TARGET]
        ignores = [a.rle for a in anns if a.kind == IGNORE]
        ignore = mask_utils.merge(ignores) if len(ignores) > 1 else (ignores[0] if ignores else None)
        return TargetImage(
            self.images[image_id], rles=[a.rle for a in targets], ignore_rle=ignore, ann_ids=[a.id for a in targets]
        )


def _split_seed(seed: int, category_id: int) -> int:
    """A stable per-category seed (any int ids, also negative or 64-bit)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{category_id}".encode()).digest()[:8], "little")


def _split(items: list, fraction: float, rng: np.random.Generator) -> tuple[list, list]:
    n = len(items)
    n_train = int(n * fraction + 0.5)  # half up: a lone positive goes to train
    if 0.0 < fraction < 1.0 and n >= 2:
        n_train = min(max(n_train, 1), n - 1)  # both splits get at least one
    order = rng.permutation(n)
    return [items[i] for i in order[:n_train]], [items[i] for i in order[n_train:]]
