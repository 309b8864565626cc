"""Score several prompts per category on a dataset split, and report them against the name baseline.

The engine behind ``evaluate.py``. It walks the split's images once, image-major: each image is
read and encoded once (in chunks, so memory stays bounded on large datasets), then every prompt of
every category that uses the image is grounded on it and reduced to RLE masks at once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm

from alias_opt.data.loader import ImageReadError, TargetSet
from alias_opt.eval.alias_sets import merge_split
from alias_opt.eval.bootstrap import LEVEL, RESAMPLES, BootstrapDiff, verdict_vs
from alias_opt.eval.metrics import (
    DEFAULT_THRESHOLDS,
    ImagePredictions,
    PromptMetrics,
    Thresholds,
    score_with_matches,
)
from alias_opt.eval.predict import predict_pairs
from alias_opt.eval.text import align, quote
from alias_opt.export import now_iso, tool_version, write_json_atomic

logger = logging.getLogger(__name__)

KINDS = ("name", "alias", "prompt", "oracle")
# the natural-name baseline, an alias from a file, a --prompt text, the dataset's oracle_name (report only)


@dataclass
class PromptSpec:
    """A prompt to score on a category: its kind (see KINDS), display text and token ids; ``parts``
    (an alias set: several token-id lists) makes its detections the merge of each part's
    (``alias_opt.eval.alias_sets.merge_split``), and then ``token_ids`` is the first part."""

    kind: str
    text: str
    token_ids: list[int]
    parts: list[list[int]] | None = None

    @property
    def all_parts(self) -> list[list[int]]:
        return [list(p) for p in self.parts] if self.parts else [list(self.token_ids)]


@dataclass
class PromptResult:
    """One prompt's scores on one category; ``vs_name`` is win/tie/loss/n/a against the name
    baseline (None for the baseline itself and where there is none), decided by ``interval``: the
    paired bootstrap interval over the split's images of AP(prompt) - AP(name)
    (``BootstrapDiff.to_dict()``; a win when it lies above zero)."""

    kind: str
    text: str
    token_ids: list[int]
    metrics: PromptMetrics | None
    vs_name: str | None = None
    interval: dict | None = None
    parts: list[list[int]] | None = None


@dataclass
class CategoryResult:
    """All prompts scored on one category's split."""

    category_id: int
    name: str | None
    oracle_name: str | list[str] | None
    n_pos_images: int
    n_neg_images: int
    n_targets: int
    prompts: list[PromptResult] = field(default_factory=list)
    note: str = ""

    @property
    def nameless(self) -> bool:
        return self.name is None


@dataclass
class EvaluationReport:
    """What ``evaluate.py`` prints and writes as JSON."""

    dataset: str
    dataset_hash: str
    model_source: str
    model_fingerprint: str
    split: str
    split_seed: int
    train_fraction: float
    max_negatives: int
    thresholds: Thresholds
    level: float
    resamples: int
    categories: list[CategoryResult]
    tool_version: str = field(default_factory=tool_version)
    created: str = field(default_factory=now_iso)

    def summary(self) -> dict:
        """Win/tie/loss counts per prompt kind against the name, nameless count, mean AP per kind."""
        out: dict = {"nameless": sum(c.nameless for c in self.categories)}
        for kind in KINDS:
            rows = [p for c in self.categories for p in c.prompts if p.kind == kind]
            if not rows:
                continue
            aps = [p.metrics.ap for p in rows if p.metrics is not None and not math.isnan(p.metrics.ap)]
            entry: dict = {"n": len(rows), "mean_ap": sum(aps) / len(aps) if aps else None}
            if kind != "name":
                for verdict in ("win", "tie", "loss", "n/a"):
                    entry[verdict] = sum(p.vs_name == verdict for p in rows)
            out[kind] = entry
        return out

    def to_dict(self) -> dict:
        data = asdict(self)
        data["summary"] = self.summary()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> EvaluationReport:
        """Inverse of ``to_dict`` (the summary is recomputed)."""
        cats = []
        for c in data["categories"]:
            prompts = [
                PromptResult(
                    p["kind"],
                    p["text"],
                    list(p["token_ids"]),
                    None if p["metrics"] is None else PromptMetrics.from_dict(p["metrics"]),
                    p.get("vs_name"),
                    p.get("interval"),
                    p.get("parts"),
                )
                for p in c["prompts"]
            ]
            cats.append(
                CategoryResult(
                    c["category_id"],
                    c["name"],
                    c["oracle_name"],
                    c["n_pos_images"],
                    c["n_neg_images"],
                    c["n_targets"],
                    prompts,
                    c.get("note", ""),
                )
            )
        kw = {
            k: data[k]
            for k in (
                "dataset",
                "dataset_hash",
                "model_source",
                "model_fingerprint",
                "split",
                "split_seed",
                "train_fraction",
                "max_negatives",
                "tool_version",
                "created",
            )
        }
        kw["level"] = data.get("level", LEVEL)
        kw["resamples"] = data.get("resamples", RESAMPLES)
        return cls(thresholds=Thresholds(**data["thresholds"]), categories=cats, **kw)

    def write_json(self, path) -> None:
        """Write ``to_dict()`` atomically (NaN as null)."""
        write_json_atomic(path, self.to_dict())

    def table(self) -> str:
        """The human-readable table, a legend line per column and a summary line."""
        head = ("category", "images", "prompt", "AP", "AP50", "F1", "mIoU", "FP rate", "vs name", "AP diff [interval]")
        rows: list[tuple[str, ...]] = []
        for c in self.categories:
            label = f"{c.category_id} {quote(c.name) if c.name is not None else '(nameless)'}"
            n_img = f"{c.n_pos_images}+{c.n_neg_images}"
            for k, p in enumerate(c.prompts):
                m = p.metrics
                nums = ("-",) * 5 if m is None else tuple(_fmt(v) for v in (m.ap, m.ap50, m.f1, m.miou, m.fp_rate))
                kind = "oracle (report only)" if p.kind == "oracle" else p.kind
                ci = BootstrapDiff.from_dict(p.interval).short() if p.interval else ""
                first = k == 0
                text = f"{kind}: {quote(p.text, 40)}"
                rows.append((label if first else "", n_img if first else "", text, *nums, p.vs_name or "", ci))
            if c.note or not c.prompts:
                rows.append(("" if c.prompts else label, "", f"({c.note or 'no prompt'})", *[""] * 7))
        lines = align(head, rows, left=3)
        lines.append("")
        lines += self.legend()
        lines.append("")
        lines.append(self.summary_line())
        return "\n".join(lines)

    def legend(self) -> list[str]:
        """One line per column of ``table``."""
        t = self.thresholds
        return [
            "columns:",
            "  category  the category id and name (quoted; non-printable and wide characters escaped)",
            f"  images    {self.split}-split images scored: with targets + without (negatives)",
            "  prompt    name = the category name (the baseline); alias = from --aliases (a | b: an alias set, "
            "detections merged); prompt = --prompt text;",
            "            oracle = the dataset's oracle_name (report only; a list is an alias set, detections merged)",
            "  AP        COCO mask AP@[.5:.95] (pycocotools COCOeval, segm), 0..1, every detection ranked by score",
            "  AP50      COCO mask AP at IoU 0.5, 0..1",
            f"  F1        instance F1 at IoU {t.iou:g} (one-to-one matching) of detections scoring > {t.score:g}, 0..1",
            f"  mIoU      IoU of the detections' union (score > {t.score:g}) with the targets' union, mean over "
            "images with targets",
            f"  FP rate   share of images without targets with a detection scoring > {t.score:g}",
            f"  vs name   win / loss when the {self.level:.0%} paired bootstrap interval of the AP difference "
            f"({self.resamples} resamples of the images) lies above / below 0, else tie; n/a without targets",
            "  AP diff   AP(prompt) - AP(name) on these images, then that interval [low, high]",
        ]

    def summary_line(self) -> str:
        s = self.summary()
        parts = [f"split {self.split} (seed {self.split_seed})"]
        for kind in KINDS:
            if kind in s:
                e = s[kind]
                mean = "-" if e["mean_ap"] is None else f"{e['mean_ap']:.3f}"
                text = f"{kind}{' (report only)' if kind == 'oracle' else ''}: mean AP {mean} over {e['n']}"
                if kind != "name":
                    text += f"; vs name ({self.level:.0%} bootstrap interval): {e['win']} win, {e['tie']} tie, "
                    text += f"{e['loss']} loss" + (f", {e['n/a']} n/a" if e["n/a"] else "")
                parts.append(text)
        if s["nameless"]:
            parts.append(f"{s['nameless']} nameless categor{'y' if s['nameless'] == 1 else 'ies'} (no baseline)")
        return " | ".join(parts)


def _fmt(v: float) -> str:
    return "-" if v is None or math.isnan(v) else f"{v:.3f}"


def evaluate_target_sets(
    backend,
    sets: Sequence[TargetSet],
    prompts: dict[int, list[PromptSpec]],
    split: str = "test",
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    chunk: int = 16,
    progress: bool = True,
    predictions: dict | None = None,
) -> list[CategoryResult]:
    """Score each category's prompts on its split; every image is encoded once for all of them.

    Args:
        backend: a ``sam3.Sam3Backend``.
        sets: target sets.
        prompts: category id -> prompts to score (a ``name`` prompt is the baseline the others are
            compared with: win / tie / loss by a paired bootstrap interval of the AP difference over
            the split's images, at ``level`` with ``resamples`` resamples).
        split: ``train``, ``test`` or ``all``.
        chunk: images encoded at a time.
        predictions: if given, filled with category id -> (the split's TargetImages that were scored,
            per prompt their ImagePredictions), e.g. for ``alias_opt.eval.figures``.
    """
    splits = [ts.split(split) for ts in sets]
    specs = [prompts.get(ts.category_id, []) for ts in sets]
    unique: dict[tuple[int, ...], int] = {}
    for spec_list in specs:
        for spec in spec_list:
            for part in spec.all_parts:
                unique.setdefault(tuple(part), len(unique))
    uses: dict[int, list[tuple[int, int]]] = {}  # image id -> (set index, position in its split)
    entries = {}
    for s, images in enumerate(splits):
        if not specs[s]:
            continue
        for pos, im in enumerate(images):
            uses.setdefault(im.image.image_id, []).append((s, pos))
            entries[im.image.image_id] = im.image
    preds: dict[tuple[int, int, int], list[ImagePredictions | None]] = {
        (s, q, r): [None] * len(splits[s])
        for s in range(len(sets))
        for q, spec in enumerate(specs[s])
        for r in range(len(spec.all_parts))
    }
    failed: set[int] = set()
    if unique and uses:
        text = backend.encode_text(ids=backend.prompt_ids([list(k) for k in unique]))
        order = sorted(uses)
        bar = tqdm(total=len(order), desc="encode + ground", unit="img", disable=not progress)
        for start in range(0, len(order), chunk):
            ids, arrays = [], []
            for image_id in order[start : start + chunk]:
                try:
                    arrays.append(entries[image_id].load())
                    ids.append(image_id)
                except ImageReadError as exc:
                    logger.error("%s; the image is left out of every category", exc)
                    failed.add(image_id)
            if ids:
                feats = backend.encode_images(arrays)
                p_idx, i_idx, where = [], [], []
                for j, image_id in enumerate(ids):
                    for s, pos in uses[image_id]:
                        for q, spec in enumerate(specs[s]):
                            for r, part in enumerate(spec.all_parts):
                                p_idx.append(unique[tuple(part)])
                                i_idx.append(j)
                                where.append((s, q, r, pos))
                sizes = [(entries[i].height, entries[i].width) for i in ids]
                for k, pred in predict_pairs(
                    backend, text, feats, torch.tensor(p_idx), torch.tensor(i_idx), sizes, thresholds
                ):
                    s, q, r, pos = where[k]
                    preds[(s, q, r)][pos] = pred
                del feats
            bar.update(len(order[start : start + chunk]))
        bar.close()
    results = []
    for s, ts in enumerate(sets):
        keep = [pos for pos, im in enumerate(splits[s]) if im.image.image_id not in failed]
        images = [splits[s][pos] for pos in keep]
        n_pos = sum(im.is_positive for im in images)
        result = CategoryResult(
            ts.category_id, ts.name, ts.oracle_name, n_pos, len(images) - n_pos, sum(im.n_targets for im in images)
        )
        notes = []
        if ts.name is None:
            notes.append("nameless: no baseline")
        if not n_pos:
            notes.append(f"no positive images in the {split} split")
        if len(keep) < len(splits[s]):
            notes.append(f"{len(splits[s]) - len(keep)} unreadable image(s) left out")
        result.note = "; ".join(notes)
        matches = []
        kept_preds = []
        for q, spec in enumerate(specs[s]):
            per_part = [[preds[(s, q, r)][pos] for pos in keep] for r in range(len(spec.all_parts))]
            mine = per_part[0] if len(per_part) == 1 else merge_split(per_part)
            kept_preds.append(mine)
            metrics, m = score_with_matches(mine, images, thresholds) if images else (None, None)
            matches.append(m)
            parts = spec.all_parts if spec.parts else None
            result.prompts.append(PromptResult(spec.kind, spec.text, list(spec.token_ids), metrics, parts=parts))
        base = next((q for q, p in enumerate(result.prompts) if p.kind == "name" and p.metrics is not None), None)
        for q, p in enumerate(result.prompts):
            if p.kind != "name" and base is not None and p.metrics is not None:
                p.vs_name, diff = verdict_vs(matches[q], matches[base], resamples=resamples, level=level)
                p.interval = diff.to_dict() if diff is not None else None
        if predictions is not None:
            predictions[ts.category_id] = (images, kept_preds)
        results.append(result)
    return results
