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
from alias_opt.eval.metrics import (
    DEFAULT_THRESHOLDS,
    ImagePredictions,
    PromptMetrics,
    Thresholds,
    compare,
    predict_pairs,
    score_predictions,
)
from alias_opt.export import now_iso, tool_version, write_json_atomic

logger = logging.getLogger(__name__)

KINDS = ("name", "alias", "prompt")  # the natural-name baseline, an alias from a file, a --prompt text


@dataclass
class PromptSpec:
    """A prompt to score on a category: its kind (see KINDS), display text and token ids."""

    kind: str
    text: str
    token_ids: list[int]


@dataclass
class PromptResult:
    """One prompt's scores on one category; ``vs_name`` is win/tie/loss/n/a against the name
    baseline (None for the baseline itself and where there is none)."""

    kind: str
    text: str
    token_ids: list[int]
    metrics: PromptMetrics | None
    vs_name: str | None = None


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
    margin: float
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
                "margin",
                "tool_version",
                "created",
            )
        }
        return cls(thresholds=Thresholds(**data["thresholds"]), categories=cats, **kw)

    def write_json(self, path) -> None:
        """Write ``to_dict()`` atomically (NaN as null)."""
        write_json_atomic(path, self.to_dict())

    def table(self) -> str:
        """The human-readable table with a summary line."""
        head = ("category", "prompt", "AP", "AP50", "F1", "mIoU", "FP rate", "vs name")
        rows: list[tuple[str, ...]] = []
        for c in self.categories:
            label = f"{c.category_id} {c.name if c.name is not None else '(nameless)'}"
            label += f" [{c.n_pos_images}+{c.n_neg_images} img]"
            for k, p in enumerate(c.prompts):
                m = p.metrics
                nums = ("-",) * 5 if m is None else tuple(_fmt(v) for v in (m.ap, m.ap50, m.f1, m.miou, m.fp_rate))
                rows.append((label if k == 0 else "", f"{p.kind}: {_clip(p.text)}", *nums, p.vs_name or ""))
            if c.note or not c.prompts:
                rows.append(("" if c.prompts else label, f"({c.note or 'no prompt'})", *[""] * 6))
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        fmt = lambda r: "  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))  # noqa: E731
        lines = [fmt(head), "  ".join("-" * w for w in widths), *map(fmt, rows)]
        lines.append("")
        lines.append(self.summary_line())
        return "\n".join(lines)

    def summary_line(self) -> str:
        s = self.summary()
        parts = [f"split {self.split} (seed {self.split_seed})"]
        for kind in KINDS:
            if kind in s:
                e = s[kind]
                mean = "-" if e["mean_ap"] is None else f"{e['mean_ap']:.3f}"
                text = f"{kind}: mean AP {mean} over {e['n']}"
                if kind != "name":
                    text += f"; vs name (margin {self.margin:g}): {e['win']} win, {e['tie']} tie, {e['loss']} loss" + (
                        f", {e['n/a']} n/a" if e["n/a"] else ""
                    )
                parts.append(text)
        if s["nameless"]:
            parts.append(f"{s['nameless']} nameless categor{'y' if s['nameless'] == 1 else 'ies'} (no baseline)")
        return " | ".join(parts)


def _fmt(v: float) -> str:
    return "-" if v is None or math.isnan(v) else f"{v:.3f}"


def _clip(text: str, width: int = 40) -> str:
    text = repr(text) if not text.isprintable() else text
    return text if len(text) <= width else text[: width - 3] + "..."


def evaluate_target_sets(
    backend,
    sets: Sequence[TargetSet],
    prompts: dict[int, list[PromptSpec]],
    split: str = "test",
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    margin: float = 0.01,
    chunk: int = 16,
    progress: bool = True,
) -> list[CategoryResult]:
    """Score each category's prompts on its split; every image is encoded once for all of them.

    Args:
        backend: a ``sam3.Sam3Backend``.
        sets: target sets.
        prompts: category id -> prompts to score (a ``name`` prompt is the baseline the others are
            compared with).
        split: ``train``, ``test`` or ``all``.
        chunk: images encoded at a time.
    """
    splits = [ts.split(split) for ts in sets]
    specs = [prompts.get(ts.category_id, []) for ts in sets]
    unique: dict[tuple[int, ...], int] = {}
    for spec_list in specs:
        for spec in spec_list:
            unique.setdefault(tuple(spec.token_ids), len(unique))
    uses: dict[int, list[tuple[int, int]]] = {}  # image id -> (set index, position in its split)
    entries = {}
    for s, images in enumerate(splits):
        if not specs[s]:
            continue
        for pos, im in enumerate(images):
            uses.setdefault(im.image.image_id, []).append((s, pos))
            entries[im.image.image_id] = im.image
    preds: dict[tuple[int, int], list[ImagePredictions | None]] = {
        (s, q): [None] * len(splits[s]) for s in range(len(sets)) for q in range(len(specs[s]))
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
                            p_idx.append(unique[tuple(spec.token_ids)])
                            i_idx.append(j)
                            where.append((s, q, pos))
                sizes = [(entries[i].height, entries[i].width) for i in ids]
                for k, pred in predict_pairs(
                    backend, text, feats, torch.tensor(p_idx), torch.tensor(i_idx), sizes, thresholds
                ):
                    s, q, pos = where[k]
                    preds[(s, q)][pos] = pred
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
        for q, spec in enumerate(specs[s]):
            metrics = score_predictions([preds[(s, q)][pos] for pos in keep], images, thresholds) if images else None
            result.prompts.append(PromptResult(spec.kind, spec.text, list(spec.token_ids), metrics))
        base = next((p for p in result.prompts if p.kind == "name" and p.metrics is not None), None)
        for p in result.prompts:
            if p.kind != "name" and base is not None and p.metrics is not None:
                p.vs_name = compare(p.metrics.ap, base.metrics.ap, margin)
        results.append(result)
    return results
