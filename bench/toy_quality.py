"""Quality of sam3-toy on held-out shapes-world images (pycocotools COCOeval, iouType='segm').

Generates a *named* and a *renamed* dataset from a seed never used in training (training images
come from a separate seed stream, see ``sam3.toy.train.TRAIN_STREAM``), prompts the model with
every category name on every image, and prints:

    named AP50     mean over the colour x shape concepts of COCO mask AP at IoU 0.5
    absent clean   over (concept, image without it) pairs: share with no detection above the
                   threshold (score = sigmoid(query) * sigmoid(presence) > 0.3)
    renamed AP50   the same AP50 with the renamed (never-trained) category names as prompts

and, to see where the named AP50 is lost: the presence AUC (does the best score per (concept,
image) tell present from absent concepts: grounding), the recall at IoU 0.5 of all detections
(masks), and the detections above the threshold that match nothing: duplicates, confusions with
another concept, junk (``ap50_losses``).

    python bench/toy_quality.py                      # the shipped model, 200 images, seed 777
    python bench/toy_quality.py --model results/toy_run1/model --images 100
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from scipy.stats import mannwhitneyu

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sam3 import Sam3Backend  # noqa: E402
from sam3.toy import world  # noqa: E402

BARS = {"named_ap50": 0.8, "absent_clean": 0.95, "renamed_ap50_max": 0.3}


def quiet_coco(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def predict(backend: Sam3Backend, coco: COCO, root: Path, prompts: dict[int, str], min_score: float = 0.01):
    """Detections (COCO result dicts) and the max score per (category, image)."""
    img_ids = sorted(coco.imgs)
    infos = [coco.imgs[i] for i in img_ids]
    feats = backend.encode_images([root / info["file_name"] for info in infos])
    cat_ids = sorted(prompts)
    text = backend.encode_text(backend.text_ids([prompts[c] for c in cat_ids]))
    results: list[dict] = []
    max_score = np.zeros((len(cat_ids), len(img_ids)))
    with torch.no_grad():
        for k, cid in enumerate(cat_ids):
            out = backend.ground(text.select([k]), feats)
            scores = (out.query_logits.sigmoid() * out.presence_logits.sigmoid()[..., None])[0].float()  # (I, Q)
            max_score[k] = scores.max(1).values.cpu().numpy()
            for j, info in enumerate(infos):
                keep = torch.nonzero(scores[j] >= min_score).flatten()
                if keep.numel() == 0:
                    continue
                logits = out.mask_logits[0, j, keep].float()[None]  # (1, n, h, w)
                up = F.interpolate(logits, size=(info["height"], info["width"]), mode="bilinear", align_corners=False)
                binary = (up[0] > 0).cpu().numpy().astype(np.uint8)
                for q, m in zip(keep.tolist(), binary):
                    if not m.any():
                        continue
                    rle = mask_utils.encode(np.asfortranarray(m))
                    rle["counts"] = rle["counts"].decode("ascii")
                    results.append(
                        {"image_id": img_ids[j], "category_id": cid, "segmentation": rle, "score": float(scores[j, q])}
                    )
    return results, max_score, cat_ids, img_ids


def coco_eval(coco: COCO, results: list[dict]) -> COCOeval | None:
    """One COCOeval (segm) run over ``results``, evaluated and accumulated; None without results."""
    if not results:
        return None
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco, coco.loadRes(results), iouType="segm")
        ev.evaluate()
        ev.accumulate()
    return ev


def per_category_ap(coco: COCO, ev: COCOeval | None) -> dict[int, dict[str, float]]:
    """COCO mask AP and AP50 per category (precision array of one COCOeval run)."""
    if ev is None:
        return {c: {"ap": 0.0, "ap50": 0.0} for c in coco.cats}
    prec = ev.eval["precision"]  # (T, R, K, A, M)
    out = {}
    for k, cid in enumerate(ev.params.catIds):
        p = prec[:, :, k, 0, -1]
        ap = float(np.mean(p[p > -1])) if (p > -1).any() else 0.0
        p50 = prec[0, :, k, 0, -1]
        ap50 = float(np.mean(p50[p50 > -1])) if (p50 > -1).any() else 0.0
        out[cid] = {"ap": max(ap, 0.0), "ap50": max(ap50, 0.0)}
    return out


def ap50_losses(coco: COCO, ev: COCOeval | None, threshold: float) -> dict[str, float]:
    """Where AP50 is lost: recall at IoU 0.5 of all detections (score >= 0.01; low recall = masks
    or localization), and the detections above ``threshold`` that match no instance (IoU 0.5),
    split by what they cover: another instance of the prompted concept already matched
    (*duplicate*), an instance of another concept (*confusion*: grounding), or neither (*junk*)."""
    if ev is None:
        return {"recall50": 0.0, "true": 0, "duplicate": 0, "confusion": 0, "junk": 0}
    anns: dict[int, list[dict]] = {}
    for a in coco.anns.values():
        anns.setdefault(a["image_id"], []).append(a)
    counts = {"true": 0, "duplicate": 0, "confusion": 0, "junk": 0}
    for e in ev.evalImgs:
        if e is None or e["aRng"] != ev.params.areaRng[0]:
            continue
        for d_id, matched, score in zip(e["dtIds"], e["dtMatches"][0], e["dtScores"]):
            if score < threshold:
                continue
            if matched > 0:
                counts["true"] += 1
                continue
            det = ev.cocoDt.anns[d_id]
            kind = "junk"
            for a in anns.get(det["image_id"], []):
                iou = float(mask_utils.iou([det["segmentation"]], [coco.annToRLE(a)], [0])[0, 0])
                if iou >= 0.5:
                    kind = "duplicate" if a["category_id"] == det["category_id"] else "confusion"
                    break
            counts[kind] += 1
    recall = ev.eval["recall"][0, :, 0, -1]  # (K,) at IoU 0.5, all areas, 100 detections
    return {"recall50": float(np.mean(recall[recall > -1])), **counts}


def presence_matrix(coco: COCO, cat_ids: list[int], img_ids: list[int]) -> np.ndarray:
    present = np.zeros((len(cat_ids), len(img_ids)), dtype=bool)
    col = {i: j for j, i in enumerate(img_ids)}
    row = {c: k for k, c in enumerate(cat_ids)}
    for ann in coco.anns.values():
        present[row[ann["category_id"]], col[ann["image_id"]]] = True
    return present


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="toy", help="model source (default the shipped toy model)")
    ap.add_argument("--images", type=int, default=200, help="held-out images per variant")
    ap.add_argument("--seed", type=int, default=777, help="world seed of the held-out images")
    ap.add_argument("--threshold", type=float, default=0.3, help="detection score threshold (absent concepts)")
    ap.add_argument(
        "--out", type=Path, default=REPO / "results" / "toy_quality", help="datasets, feature cache, quality.json"
    )
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--device", default="cpu", help="torch device of the model, e.g. cuda (default cpu)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    data = {}
    for variant in ("named", "renamed"):
        root = args.out / f"{variant}_s{args.seed}_n{args.images}"
        if not (root / "annotations.json").is_file():
            world.write_dataset(root, variant, args.images, args.seed)
        data[variant] = (root, quiet_coco(root / "annotations.json"))
    backend = Sam3Backend.load(args.model, device=args.device, cache_dir=args.out / "feature_cache")
    report: dict = {"model": args.model, "fingerprint": backend.fingerprint, "seed": args.seed, "images": args.images}
    for variant, (root, coco) in data.items():
        prompts = {c: coco.cats[c]["name"] for c in coco.cats}
        results, max_score, cat_ids, img_ids = predict(backend, coco, root, prompts)
        ev = coco_eval(coco, results)
        aps = per_category_ap(coco, ev)
        entry = {
            "mean_ap50": float(np.mean([aps[c]["ap50"] for c in cat_ids])),
            "mean_ap": float(np.mean([aps[c]["ap"] for c in cat_ids])),
            "per_category": {prompts[c] or str(c): aps[c] for c in cat_ids},
        }
        if variant == "named":
            present = presence_matrix(coco, cat_ids, img_ids)
            fired = max_score > args.threshold
            absent = ~present
            entry["absent_clean"] = float(1 - fired[absent].mean())
            entry["absent_clean_per_concept_min"] = float(
                min(1 - fired[k][absent[k]].mean() for k in range(len(cat_ids)))
            )
            entry["images_with_no_absent_false_detection"] = float(np.mean(~(fired & absent).any(0)))
            entry["present_detected"] = float(fired[present].mean())
            # grounding: how well the best score per (concept, image) tells present from absent
            entry["presence_auc"] = float(
                mannwhitneyu(max_score[present], max_score[absent]).statistic / (present.sum() * absent.sum())
            )
            entry["ap50_losses"] = ap50_losses(coco, ev, args.threshold)
        report[variant] = entry
    report["seconds"] = round(time.time() - t0, 1)
    named, renamed = report["named"], report["renamed"]
    report["pass"] = {
        "named_ap50": named["mean_ap50"] >= BARS["named_ap50"],
        "absent_clean": named["absent_clean"] >= BARS["absent_clean"],
        "renamed_ap50": renamed["mean_ap50"] <= BARS["renamed_ap50_max"],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality.json").write_text(json.dumps(report, indent=2))
    print("per-concept AP50 (named):")
    for name, v in named["per_category"].items():
        print(f"  {name:18s} AP50 {v['ap50']:.3f}  AP {v['ap']:.3f}")
    print(f"model {args.model} ({backend.fingerprint}), {args.images} held-out images, seed {args.seed}")
    print(f"named   mean AP50 {named['mean_ap50']:.3f} (AP {named['mean_ap']:.3f})   bar >= {BARS['named_ap50']}")
    print(
        f"absent  no detection > {args.threshold} on {named['absent_clean']:.3f} of (concept, image-without-it) pairs"
        f"   bar >= {BARS['absent_clean']}  (worst concept {named['absent_clean_per_concept_min']:.3f}; "
        f"images with no false detection for any absent concept {named['images_with_no_absent_false_detection']:.3f})"
    )
    print(
        f"renamed mean AP50 {renamed['mean_ap50']:.3f} (AP {renamed['mean_ap']:.3f})"
        f"   bar <= {BARS['renamed_ap50_max']}"
    )
    print(f"named   presence AUC (best score, concept present vs absent) {named['presence_auc']:.3f}")
    lost = named["ap50_losses"]
    print(
        f"named   recall@IoU.5 of all detections {lost['recall50']:.3f}; detections > {args.threshold}: "
        f"{lost['true']} true, {lost['duplicate']} duplicate, {lost['confusion']} on another concept, "
        f"{lost['junk']} junk"
    )
    print(f"pass: {report['pass']}  ({report['seconds']} s)")
    return report


if __name__ == "__main__":
    main()
