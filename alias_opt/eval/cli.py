"""Score prompts or an alias file against a COCO dataset's target masks, next to the name baseline
(``python evaluate.py``; installed: ``sam3-alias-evaluate``).

    python evaluate.py --dataset DATA                         # natural-name baseline per category
    python evaluate.py --dataset DATA --aliases aliases.json  # aliases (or alias sets) vs names, held out
    python evaluate.py --dataset DATA --prompt "red circle"   # any text, on every category
    python evaluate.py --dataset DATA --check                 # validate the dataset only
    python evaluate.py --dataset DATA --aliases A.json --oracle --figures figs   # + oracle_name, pictures

An alias set (a record of aliases.json with several aliases) is scored as one prompt whose detections
are the merge of its aliases' (``alias_opt.eval.alias_sets``). A prompt's verdict against the name is
win / loss when the paired bootstrap interval of the AP difference over the split's images (--level,
default 95%) lies above / below zero, else tie.

Exit codes: 0 done; 1 nothing usable (no target set, or --check found none); 2 bad arguments,
dataset path, alias file or model source.
"""

from __future__ import annotations

import argparse
import logging
import sys

from alias_opt.cli import add_runtime_flags, init_runtime, user_error
from alias_opt.data.loader import CocoDataset, DatasetError
from alias_opt.eval.bootstrap import LEVEL, RESAMPLES
from alias_opt.eval.evaluation import EvaluationReport, PromptSpec, evaluate_target_sets
from alias_opt.eval.metrics import Thresholds
from alias_opt.export import AliasFileError, dataset_hash, read_aliases

logger = logging.getLogger("evaluate")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="evaluate.py", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--dataset",
        required=True,
        metavar="PATH",
        help="COCO annotation JSON, or a folder holding annotations.json / _annotations.coco.json / "
        "annotations/instances_*.json",
    )
    p.add_argument(
        "--image-root",
        metavar="DIR",
        help="folder the images' file_name values are relative to "
        "(default: found next to the JSON or in the usual COCO / Roboflow layouts)",
    )
    p.add_argument(
        "--boxes-as-masks",
        action="store_true",
        help="use box-only annotations (segmentation: []) as rectangular masks, not ignore regions",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="only validate the dataset and print the report; exit 1 if no usable target set remains",
    )
    p.add_argument("--aliases", metavar="FILE", help="aliases.json to score (its split settings are re-used)")
    p.add_argument(
        "--prompt",
        nargs="+",
        action="extend",
        default=[],
        metavar="TEXT",
        help="text prompt(s) to score on every selected category",
    )
    p.add_argument("--categories", nargs="+", type=int, metavar="ID", help="category ids to evaluate (default all)")
    p.add_argument(
        "--model",
        default="toy",
        metavar="SRC",
        help="toy (default), random:NAME[@SEED], a checkpoint folder, or a cached hub id",
    )
    p.add_argument(
        "--split",
        default="test",
        choices=("test", "train", "all"),
        help="which images to score on (default test: held out from discovery)",
    )
    p.add_argument("--seed", type=int, help="split seed (default: the alias file's, else 0)")
    p.add_argument(
        "--train-fraction", type=float, help="train share of each category (default: alias file's, else 0.5)"
    )
    p.add_argument("--max-negatives", type=int, help="negative images per category (default: alias file's, else 20)")
    p.add_argument(
        "--score-threshold",
        type=float,
        default=Thresholds.score,
        help="presence x query score to keep a detection (default 0.3, SAM 3's)",
    )
    p.add_argument(
        "--mask-threshold", type=float, default=Thresholds.mask, help="sigmoid mask threshold (default 0.5, SAM 3's)"
    )
    p.add_argument(
        "--iou-threshold",
        type=float,
        default=Thresholds.iou,
        help="IoU of a match for precision / recall / F1 (default 0.5)",
    )
    p.add_argument(
        "--level",
        type=float,
        default=LEVEL,
        help="coverage of the paired bootstrap interval that decides win / tie / loss against the name (0.95)",
    )
    p.add_argument("--resamples", type=int, default=RESAMPLES, help="bootstrap resamples of the images (1000)")
    p.add_argument(
        "--oracle",
        action="store_true",
        help="also score each category's oracle_name (a dataset field; a list of phrases is an alias set whose "
        "detections are merged), report only",
    )
    p.add_argument("--figures", metavar="DIR", help="draw DIR/<category>.png: targets and each prompt's masks")
    p.add_argument("--figure-images", type=int, default=6, metavar="N", help="images per figure (default 6)")
    p.add_argument("--json", metavar="OUT", help="also write the report as JSON to OUT (atomically)")
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="image-feature cache (default $SAM3_ALIAS_CACHE or ~/.cache/sam3-alias/features)",
    )
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the image-feature cache")
    p.add_argument("--chunk", type=int, default=16, help="images encoded at a time (memory bound; default 16)")
    add_runtime_flags(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    init_runtime(args)

    try:
        ds = CocoDataset.open(args.dataset, image_root=args.image_root, boxes_as_masks=args.boxes_as_masks)
    except DatasetError as exc:
        return user_error(exc)

    alias_file = None
    if args.aliases:
        try:
            alias_file = read_aliases(args.aliases)
        except AliasFileError as exc:
            return user_error(exc)
    prov = alias_file.provenance if alias_file else None
    seed = args.seed if args.seed is not None else (prov.split_seed if prov else 0)
    fraction = args.train_fraction if args.train_fraction is not None else (prov.train_fraction if prov else 0.5)
    negatives = args.max_negatives if args.max_negatives is not None else (prov.max_negatives if prov else 20)

    if args.check:
        ds.check_images()
    try:
        sets = ds.target_sets(seed=seed, train_fraction=fraction, max_negatives=negatives, categories=args.categories)
    except (DatasetError, ValueError) as exc:
        return user_error(exc)
    if args.check:
        print(ds.report)
        print(f"usable target sets: {len(sets)} of {len(ds.categories)} categories")
        for ts in sets:
            print(f"  {ts!r}")
        return 0 if sets else 1
    if ds.report.n_errors or ds.report.by_level("warning"):
        logger.warning(
            "%s: %d error(s), %d warning(s) while loading; run with --check for details",
            ds.annotation_file,
            ds.report.n_errors,
            len(ds.report.by_level("warning")),
        )
    if not sets:
        print(f"error: no usable target set in {ds.annotation_file}; run with --check to see why", file=sys.stderr)
        return 1

    digest = dataset_hash(ds.annotation_file)
    if prov and prov.dataset_hash and prov.dataset_hash != digest:
        logger.warning(
            "%s was made on another dataset (%s); its 'test' split here is not held out from discovery",
            args.aliases,
            prov.dataset_path or prov.dataset_hash,
        )

    from sam3 import ModelSourceError, Sam3Backend  # heavy import: after the cheap checks

    try:
        backend = Sam3Backend.load(
            args.model, device=args.device, dtype=args.dtype, cache_dir=args.cache_dir, use_cache=not args.no_cache
        )
    except (ModelSourceError, ValueError, RuntimeError, AssertionError) as exc:  # AssertionError: no CUDA build
        print(f"error: cannot load the model {args.model!r}: {exc}", file=sys.stderr)
        return 2

    tok = backend.tokenizer
    extra = [PromptSpec("prompt", t, tok.encode(t, special=False)) for t in args.prompt]
    by_cat = alias_file.by_category() if alias_file else {}
    if args.categories:  # only what the user asked for
        by_cat = {cid: rec for cid, rec in by_cat.items() if cid in set(args.categories)}
    known = {ts.category_id for ts in sets}
    for cid in sorted(set(by_cat) - known):
        logger.warning("alias for category %s has no target set in this dataset; skipped", cid)
    prompts: dict[int, list[PromptSpec]] = {}
    for ts in sets:
        specs = [PromptSpec("name", ts.name, tok.encode(ts.name, special=False))] if ts.name is not None else []
        if ts.category_id in by_cat:
            rec = by_cat[ts.category_id]
            parts = rec.parts  # an alias set: its aliases' detections are merged
            specs.append(PromptSpec("alias", rec.set_text, parts[0], parts if len(parts) > 1 else None))
        if args.oracle and ts.oracle_name:
            phrases = [ts.oracle_name] if isinstance(ts.oracle_name, str) else [str(o) for o in ts.oracle_name]
            parts = [tok.encode(o, special=False) for o in phrases]
            text = phrases[0] if len(phrases) == 1 else " | ".join(phrases)
            specs.append(PromptSpec("oracle", text, parts[0], parts if len(parts) > 1 else None))
        prompts[ts.category_id] = specs + extra

    thresholds = Thresholds(score=args.score_threshold, mask=args.mask_threshold, iou=args.iou_threshold)
    predictions: dict | None = {} if args.figures else None
    results = evaluate_target_sets(
        backend,
        sets,
        prompts,
        split=args.split,
        thresholds=thresholds,
        level=args.level,
        resamples=args.resamples,
        chunk=args.chunk,
        progress=not args.no_progress,
        predictions=predictions,
    )
    report = EvaluationReport(
        dataset=str(ds.annotation_file),
        dataset_hash=digest,
        model_source=str(args.model),
        model_fingerprint=backend.fingerprint,
        split=args.split,
        split_seed=seed,
        train_fraction=fraction,
        max_negatives=negatives,
        thresholds=thresholds,
        level=args.level,
        resamples=args.resamples,
        categories=results,
    )
    print(report.table())
    if args.json:
        report.write_json(args.json)
        print(f"wrote {args.json}")
    if args.figures:
        drawn = draw_report_figures(report, predictions, args.figures, thresholds.score, args.figure_images)
        print(f"wrote {drawn} figure(s) to {args.figures}")
    return 0


def draw_report_figures(report: EvaluationReport, predictions: dict, folder, score: float, n: int = 6) -> int:
    """``folder/<category>.png`` for every scored category from the predictions ``evaluate_target_sets``
    kept (no second model pass); the number drawn."""
    from pathlib import Path

    from alias_opt.eval.figures import draw_category, image_aps
    from alias_opt.eval.text import quote

    drawn = 0
    for c in report.categories:
        images, preds = predictions.get(c.category_id, ([], []))
        if not images or not c.prompts:
            continue
        panels = []
        for p, pr in zip(c.prompts, preds):
            kind = "oracle (report only)" if p.kind == "oracle" else p.kind
            ap = "-" if p.metrics is None or p.metrics.ap != p.metrics.ap else f"{p.metrics.ap:.2f}"
            panels.append((f"{kind} {quote(p.text, 40)} (split AP {ap})", pr, image_aps(pr, images)))
        name = quote(c.name) if c.name is not None else "(nameless)"
        title = f"category {c.category_id} {name}: {report.split} split, {len(images)} images"
        if draw_category(Path(folder) / f"{c.category_id}.png", title, images, panels, score, n) is not None:
            drawn += 1
    return drawn


if __name__ == "__main__":
    sys.exit(main())
