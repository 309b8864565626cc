"""Quality of a world-v2 sam3-toy on held-out shapes world v2 (pycocotools COCOeval, iouType='segm').

Generates, from a world seed never used in training, the *named*, *renamed* and *policy* datasets
and a *named* dataset in the shifted style (``render.SHIFTED_STYLE``: more noise, more blur and
heavier occlusion than training ever drew), prompts the model and prints every bar of the
world-v2 issue:

    named        mean AP50 over the 20 categories; over those of 3 or 4 attributes; per attribute
                 kind (categories whose clause names a size, a fill, a colour, a shape)
    robustness   named AP50 on the shifted images minus in-distribution named AP50
    absent       share of (category, image without it) pairs with no detection above the
                 threshold, and of (distractor word, image) pairs
    renamed      mean AP50 of the reserved (never-trained) names
    policy       mean AP50 / AP of the oracle phrases (a union's phrases' detections merged) and of
                 the plausible-but-too-broad names
    answer key   per renamed category, the best rank of its oracle words among the token-embedding
                 table's most distinct rows (the shortlist's ``distinct:embed`` view); passes when the
                 median rank is >= 20 and the world words among the top 20 rows are not significantly
                 more than a world-blind draw of the trained words would hold (one-sided hypergeometric
                 p >= 0.01). With ``tie_word_norms`` the trained rows share one distance from the table's
                 mean up to the float16 export's rounding (~1e-4 relative), so their order among
                 themselves is that rounding's, blind to meaning: a count of 4 against 2 by chance has
                 p ~ 0.14; an answer key by construction (e.g. the 9-word sam3-toy) has p << 0.01

    python bench/toy_quality_v2.py --model results/toy_v2/model --images 200 --seed 777
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import hypergeom

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from toy_quality import coco_eval, per_category_ap, predict, presence_matrix, quiet_coco  # noqa: E402

from sam3 import Sam3Backend  # noqa: E402
from sam3.toy import vocab, world2  # noqa: E402

BARS = {
    "named_ap50": 0.75,
    "named_ap50_3plus": 0.6,
    "absent_clean": 0.95,
    "distractor_clean": 0.95,
    "renamed_ap50_max": 0.3,
    "policy_oracle_ap50": 0.7,
    "policy_gap_ap": 0.2,
    "robustness_drop_max": 0.1,
    "answer_rank_min": 20,
    "answer_key_p_min": 0.01,
}


def score_prompts(backend, coco, root, prompts: dict[int, str | list[str]]) -> tuple[dict, np.ndarray]:
    """Per-category AP/AP50 and the best score per (category, image); a list of phrases is one
    category whose detections are the union of each phrase's."""
    flat = [(c, p) for c, ps in prompts.items() for p in ([ps] if isinstance(ps, str) else ps)]
    results, best = [], {}
    for k in range(len(flat)):
        cid, text = flat[k]
        res, max_score, _, _ = predict(backend, coco, root, {cid: text})
        results += res
        best[cid] = np.maximum(best.get(cid, 0.0), max_score[0])
    aps = per_category_ap(coco, coco_eval(coco, results))
    return aps, np.stack([best[c] for c in sorted(prompts)])


def answer_key_ranks(backend, table: list[world2.Category], top: int = 20) -> tuple[dict[str, int], dict]:
    """Best rank (0 = most distinct) of each category's oracle words in the embedding table, and how
    many of the ``top`` most distinct rows are world words (attribute values' trained words) against
    what a ranking blind to the world would put there (``top`` x their share of the trained words)."""
    from alias_opt.search.embeddings import VocabularyIndex

    index = VocabularyIndex.build(backend, "embed")
    order = index.distinct(k=backend.tokenizer.vocab_size)
    rank = {int(t): r for r, t in enumerate(order)}
    token = lambda w: backend.tokenizer.encode(w, special=False)[0]  # noqa: E731
    out = {}
    for cat in table:
        words = [w for clause in cat.clauses for w in vocab.phrase(clause).split()]
        out[cat.name] = min(rank[token(w)] for w in words)
    world_ids = {token(w) for w in vocab.ATTRIBUTE_WORDS}
    trained = {token(w) for w in vocab.TRAINED_WORDS}
    in_top = sum(int(t) in world_ids for t in order[:top])
    # one-sided: how often would ``top`` rows drawn blind from the trained words hold as many world words?
    p_value = float(hypergeom.sf(in_top - 1, len(trained), len(world_ids), top))
    top_rows = {"top": top, "world_words": in_top, "chance": top * len(world_ids) / len(trained), "p_value": p_value}
    return out, top_rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="model source (a world-v2 sam3-toy, e.g. results/toy_v2/model)")
    ap.add_argument("--images", type=int, default=200, help="held-out images per dataset")
    ap.add_argument("--seed", type=int, default=777, help="world seed of the held-out images (never a training one)")
    ap.add_argument("--threshold", type=float, default=0.3, help="detection score threshold (absent-clean)")
    ap.add_argument("--distractors", type=int, default=40, help="distractor words prompted on every named image")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "toy_quality_v2", help="datasets, cache, json")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--device", default="cpu", help="torch device of the model, e.g. cuda (default cpu)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    data = {}
    for name, variant, style in (
        ("named", "named", "train"),
        ("renamed", "renamed", "train"),
        ("policy", "policy", "train"),
        ("shifted", "named", "shifted"),
    ):
        root = args.out / f"{name}_s{args.seed}_n{args.images}"
        if not (root / "annotations.json").is_file():
            world2.write_dataset(root, variant, args.images, args.seed, style)
        data[name] = (root, quiet_coco(root / "annotations.json"))
    backend = Sam3Backend.load(args.model, device=args.device, cache_dir=args.out / "feature_cache")
    rep: dict = {"model": args.model, "fingerprint": backend.fingerprint, "seed": args.seed, "images": args.images}
    table = {c.id: c for c in world2.categories("named", args.seed)}

    root, coco = data["named"]
    aps, best = score_prompts(backend, coco, root, {c: coco.cats[c]["name"] for c in sorted(coco.cats)})
    cat_ids, img_ids = sorted(coco.cats), sorted(coco.imgs)
    ap50 = {c: aps[c]["ap50"] for c in cat_ids}
    present = presence_matrix(coco, cat_ids, img_ids)
    fired = best > args.threshold
    rep["named"] = {
        "mean_ap50": float(np.mean(list(ap50.values()))),
        "mean_ap": float(np.mean([aps[c]["ap"] for c in cat_ids])),
        "mean_ap50_3plus": float(np.mean([ap50[c] for c in cat_ids if len(table[c].clauses[0]) >= 3])),
        "ap50_by_attribute": {
            a: float(np.mean([ap50[c] for c in cat_ids if a in table[c].clauses[0]])) for a in vocab.ATTRIBUTES
        },
        "absent_clean": float(1 - fired[~present].mean()),
        "absent_clean_by_category": {
            table[c].name: float(1 - fired[k][~present[k]].mean()) for k, c in enumerate(cat_ids) if (~present[k]).any()
        },
        "per_category": {table[c].name: aps[c] for c in cat_ids},
    }
    words = vocab.DISTRACTORS[:: max(1, len(vocab.DISTRACTORS) // args.distractors)][: args.distractors]
    _, dbest = score_prompts(backend, coco, root, {i + 1: w for i, w in enumerate(words)})
    rep["named"]["distractor_clean"] = float((dbest <= args.threshold).mean())

    root, coco = data["shifted"]
    aps_s, _ = score_prompts(backend, coco, root, {c: coco.cats[c]["name"] for c in sorted(coco.cats)})
    rep["shifted"] = {"mean_ap50": float(np.mean([aps_s[c]["ap50"] for c in sorted(coco.cats)]))}
    rep["shifted"]["drop"] = rep["named"]["mean_ap50"] - rep["shifted"]["mean_ap50"]

    root, coco = data["renamed"]
    aps_r, _ = score_prompts(backend, coco, root, {c: coco.cats[c]["name"] for c in sorted(coco.cats)})
    rep["renamed"] = {
        "mean_ap50": float(np.mean([aps_r[c]["ap50"] for c in sorted(coco.cats)])),
    }
    rep["renamed"]["answer_rank"], rep["renamed"]["top_rows"] = answer_key_ranks(
        backend, world2.categories("renamed", args.seed)
    )

    root, coco = data["policy"]
    pcats = sorted(coco.cats)
    aps_n, _ = score_prompts(backend, coco, root, {c: coco.cats[c]["name"] for c in pcats})
    aps_o, _ = score_prompts(backend, coco, root, {c: coco.cats[c]["oracle_name"] for c in pcats})
    rep["policy"] = {
        "oracle_ap50": float(np.mean([aps_o[c]["ap50"] for c in pcats])),
        "oracle_ap": float(np.mean([aps_o[c]["ap"] for c in pcats])),
        "name_ap50": float(np.mean([aps_n[c]["ap50"] for c in pcats])),
        "name_ap": float(np.mean([aps_n[c]["ap"] for c in pcats])),
        "per_category": {coco.cats[c]["name"]: {"name": aps_n[c], "oracle": aps_o[c]} for c in pcats},
    }
    n, p, r = rep["named"], rep["policy"], rep["renamed"]
    rep["pass"] = {
        "named_ap50": n["mean_ap50"] >= BARS["named_ap50"],
        "named_ap50_3plus": n["mean_ap50_3plus"] >= BARS["named_ap50_3plus"],
        "absent_clean": n["absent_clean"] >= BARS["absent_clean"],
        "distractor_clean": n["distractor_clean"] >= BARS["distractor_clean"],
        "robustness": rep["shifted"]["drop"] <= BARS["robustness_drop_max"],
        "renamed_ap50": r["mean_ap50"] <= BARS["renamed_ap50_max"],
        "policy_oracle_ap50": p["oracle_ap50"] >= BARS["policy_oracle_ap50"],
        "policy_gap": p["oracle_ap"] - p["name_ap"] >= BARS["policy_gap_ap"],
        "no_answer_key": np.median(list(r["answer_rank"].values())) >= BARS["answer_rank_min"]
        and r["top_rows"]["p_value"] >= BARS["answer_key_p_min"],
    }
    rep["seconds"] = round(time.time() - t0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"quality_s{args.seed}.json").write_text(json.dumps(rep, indent=2))
    print(f"model {args.model} ({backend.fingerprint}), {args.images} held-out images per dataset, seed {args.seed}")
    for name, v in n["per_category"].items():
        print(f"  named {name:28s} AP50 {v['ap50']:.3f}  AP {v['ap']:.3f}")
    by_attr = "  ".join(f"{a} {v:.3f}" for a, v in n["ap50_by_attribute"].items())
    print(f"named     mean AP50 {n['mean_ap50']:.3f} (AP {n['mean_ap']:.3f}); 3+ attributes {n['mean_ap50_3plus']:.3f}")
    print(f"named     AP50 of categories naming a: {by_attr}")
    print(f"shifted   mean AP50 {rep['shifted']['mean_ap50']:.3f} (drop {rep['shifted']['drop']:+.3f})")
    print(f"absent    clean {n['absent_clean']:.3f}; distractor words clean {n['distractor_clean']:.3f}")
    print(
        f"renamed   mean AP50 {r['mean_ap50']:.3f}; best answer-word rank in the distinct rows: "
        f"min {min(r['answer_rank'].values())}, median {int(np.median(list(r['answer_rank'].values())))}; "
        f"world words among the top {r['top_rows']['top']} rows {r['top_rows']['world_words']} "
        f"(chance {r['top_rows']['chance']:.1f}; one-sided p {r['top_rows']['p_value']:.3f})"
    )
    print(
        f"policy    oracle AP50 {p['oracle_ap50']:.3f} AP {p['oracle_ap']:.3f}; name AP50 {p['name_ap50']:.3f} "
        f"AP {p['name_ap']:.3f}"
    )
    print(f"pass: {rep['pass']}  ({rep['seconds']} s)")
    return rep


if __name__ == "__main__":
    main()
