"""Where a COCO dataset's files are: the annotation JSON of a folder, and the image root.

A folder is searched for ``annotations.json``, ``_annotations.coco.json`` (Roboflow) or a single
``annotations/instances_*.json``. Images are looked for next to the JSON, in ``images/``, and in
the COCO layout (``annotations/instances_val2017.json`` + ``val2017/`` or ``images/val2017/``); the
folder holding most of the files wins. A ``file_name`` may have subfolders but must stay inside
the image root.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from alias_opt.data.checks import DatasetError, LoadReport, RawImage
from alias_opt.data.targets import ImageEntry

logger = logging.getLogger(__name__)

ANNOTATION_NAMES = ("annotations.json", "_annotations.coco.json", "instances.json")
SAMPLE_FOR_ROOT = 200  # file names tried per candidate image root


def find_annotation_file(path: str | Path) -> Path:
    """The annotation JSON of a dataset given as a JSON path or a folder.

    Raises:
        DatasetError: nothing found, or several candidates (it lists them).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetError(f"dataset path {path} not found; pass a COCO annotation JSON or the folder holding it")
    if path.is_file():
        return path
    for name in ANNOTATION_NAMES:
        if (path / name).is_file():
            return path / name
    found = sorted(path.glob("annotations/instances_*.json")) or sorted(path.glob("*.json"))
    found = found or sorted(path.glob("*/_annotations.coco.json"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise DatasetError(
            f"no annotation JSON in {path}: expected annotations.json, _annotations.coco.json or "
            "annotations/instances_*.json; pass the JSON path instead"
        )
    listing = ", ".join(str(f.relative_to(path)) for f in found[:8])
    raise DatasetError(f"several annotation files in {path} ({listing}); pass the one to use")


def root_candidates(json_path: Path) -> list[Path]:
    """Folders where images usually are, relative to the annotation JSON (existing ones, in order)."""
    parent = json_path.parent
    subset = json_path.stem
    for prefix in ("instances_", "_annotations."):
        if subset.startswith(prefix):
            subset = subset[len(prefix) :]
    cands = [parent, parent / "images", parent / "images" / subset, parent / subset]
    if parent.name == "annotations":
        top = parent.parent
        cands += [top / subset, top / "images" / subset, top / "images", top]
    out: list[Path] = []
    for c in cands:
        if c.is_dir() and c not in out:
            out.append(c)
    return out


def inside_root(root: Path, file_name: str) -> Path | None:
    """``root / file_name`` normalized, or None if it leaves the root (``..``, absolute paths)."""
    joined = Path(os.path.normpath(root / file_name.replace("\\", "/")))
    try:
        joined.relative_to(root)
    except ValueError:
        return None
    return joined


def pick_image_root(json_path: Path, raw_images: dict[int, RawImage]) -> Path:
    """The candidate folder where most of the first images' files are."""
    cands = root_candidates(json_path)
    names = [r.file_name for r in list(raw_images.values())[:SAMPLE_FOR_ROOT]]
    best, best_hits = (cands[0] if cands else json_path.parent), -1
    for cand in cands:
        hits = sum(1 for n in names if (p := inside_root(cand, n)) is not None and p.is_file())
        if hits > best_hits:
            best, best_hits = cand, hits
    if names and best_hits <= 0:
        logger.warning("no image files of %s found in %s", json_path, ", ".join(map(str, cands)))
    return best.resolve()


def resolve_images(
    raw_images: dict[int, RawImage], root: Path, json_path: Path, report: LoadReport
) -> dict[int, ImageEntry]:
    """ImageEntry per image whose file is inside the root and exists; the others are reported."""
    images: dict[int, ImageEntry] = {}
    missing = 0
    for raw in raw_images.values():
        path = inside_root(root, raw.file_name)
        where = f"image id {raw.id}"
        if path is None:
            report.add(
                "error",
                "outside-root",
                json_path,
                where,
                f"file_name {raw.file_name!r} points outside the image root {root}; refused",
                "use a path relative to the image root (no '..', not absolute)",
            )
            continue
        if not path.is_file():
            missing += 1
            report.add(
                "error",
                "missing-image",
                json_path,
                where,
                f"image file {path} not found; image dropped",
                "add the file, fix file_name, or pass --image-root",
            )
            continue
        images[raw.id] = ImageEntry(raw.id, path, raw.height or 0, raw.width or 0)
    if missing and missing == len(raw_images):
        report.add(
            "error",
            "no-images-found",
            json_path,
            "all images",
            f"none of the {missing} image files were found under {root}",
            "pass --image-root DIR, the folder the file_name values are relative to",
        )
    return images
