"""Discovery on shapes world v2 against the bars of the discovery issue, per variant and world seed.

For each (variant, world seed): generate the world-v2 dataset, run discovery as ``main.py`` does
(``alias_opt.discover.run``, the given config) and score it from the run's summary rows:

    policy     share of categories where the alias set beats the name (paired bootstrap win) and the
               mean share of the name-to-oracle AP gap it closes ((alias - name) / (oracle - name),
               over categories where the oracle beats the name)
    renamed    share of categories with alias AP >= 0.9 x the oracle's
    named      categories whose alias loses to the name by more than 0.02 held-out AP
    composite  share of categories whose alias set beats its best single alias on held-out AP
    all        positive held-out images per category (min, median): a verdict needs >= 10, so each
               world is topped up with images of its short categories (``--min-positives``)

    python bench/world_v2_discovery.py --model results/toy_v2/model --variants policy,renamed \\
        --seeds 4242,9090 --images 240 --config configs/fast.json --threads 1

The bars (discovery issue): policy >= 80% wins and >= 60% of the gap; renamed >= 80% at 0.9 x
oracle; named none worse than -0.02; composite >= 70% sets beating the single alias.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _finite(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def score_rows(variant: str, rows: list[dict]) -> dict:
    """The variant's bar numbers from ``alias_opt.eval.summary.summarize`` rows."""
    out: dict = {"categories": len(rows)}
    pos = [r["n_test_images"][0] for r in rows if r["n_test_images"]]
    out["positive_test_images_min"] = int(min(pos)) if pos else 0
    out["positive_test_images_median"] = float(np.median(pos)) if pos else 0.0
    out["mean_ap"] = {
        k: float(np.nanmean([r[k] for r in rows if _finite(r[k])] or [np.nan]))
        for k in ("alias_ap", "name_ap", "oracle_ap", "single_ap")
    }
    if variant == "policy":
        out["win_share"] = float(np.mean([r["vs_name"] == "win" for r in rows]))
        called = [r for r in rows if r.get("oracle_vs_name")]
        if called:  # the ceiling this held-out split allows: where the oracle itself beats the name
            wins = [r for r in called if r["oracle_vs_name"] == "win"]
            out["oracle_win_share"] = len(wins) / len(called)
            out["alias_wins_where_oracle_wins"] = f"{sum(r['vs_name'] == 'win' for r in wins)}/{len(wins)}"
        gaps = [
            (r["alias_ap"] - r["name_ap"]) / (r["oracle_ap"] - r["name_ap"])
            for r in rows
            if _finite(r["oracle_ap"]) and _finite(r["name_ap"]) and r["oracle_ap"] > r["name_ap"]
        ]
        out["gap_closed_mean"] = float(np.mean(gaps)) if gaps else math.nan
        out["gap_categories"] = len(gaps)
    if variant == "renamed":
        ok = [_finite(r["oracle_ratio"]) and r["oracle_ratio"] >= 0.9 for r in rows]
        out["share_ge_0.9_oracle"] = float(np.mean(ok))
    if variant == "named":
        drops = [r["name_ap"] - r["alias_ap"] for r in rows if _finite(r["name_ap"]) and _finite(r["alias_ap"])]
        out["worse_than_name_by_0.02"] = int(sum(d > 0.02 for d in drops))
        out["largest_drop"] = float(max(drops)) if drops else math.nan
    if variant == "composite":
        sets = [r for r in rows if r["n_aliases"] > 1]
        out["sets_kept"] = len(sets)
        out["set_beats_single_share"] = float(
            np.mean([_finite(r["single_ap"]) and r["alias_ap"] > r["single_ap"] for r in rows])
        )
    return out


def name_checks(records) -> dict:
    """How often the name check (``alias_opt.search.name_check``) ran and kept the name, and the held-out
    verdicts (against the name) of the answers it turned down, from the records' ``extra["name_check"]``."""
    checks = [c for rec in records for c in rec.extra.get("name_check") or []]
    kept = [c for c in checks if c["name_kept"]]
    held = [c["held_out"] for c in kept if c.get("held_out")]
    return {
        "checked": len(checks),
        "name_kept": len(kept),
        "turned_down_held_out": {v: sum(h["verdict"] == v for h in held) for v in ("win", "tie", "loss")},
        "turned_down_held_out_diffs": [round(h["diff"], 3) for h in held if _finite(h.get("diff"))],
    }


def category_line(r: dict) -> str:
    """One category's held-out result: name, alias (or set), APs, verdict and its interval."""
    iv = r.get("vs_name_interval") or {}
    ci = f"[{iv['low']:+.3f}, {iv['high']:+.3f}]" if iv else ""
    fmt = lambda x: f"{x:.3f}" if _finite(x) else "  -  "  # noqa: E731
    return (
        f"  {r['name']!r:24} -> {r['alias']!r:40} AP alias {fmt(r['alias_ap'])} name {fmt(r['name_ap'])} "
        f"oracle {fmt(r.get('oracle_ap'))} ({r.get('oracle_text')!r}) {r['vs_name']} {ci}"
        + (f" (oracle: {r['oracle_vs_name']})" if r.get("oracle_vs_name") else "")
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a world-v2 sam3-toy (HF folder) or another model source")
    ap.add_argument("--variants", default="policy,renamed,named", help="comma-separated world-v2 variants")
    ap.add_argument("--seeds", default="4242", help="comma-separated world seeds (held out: never tuned on)")
    ap.add_argument("--images", type=int, default=240, help="images per generated world")
    ap.add_argument(
        "--min-positives",
        type=int,
        default=20,
        help="top each world up with images of its short categories until every category has this many "
        "positive images (20: >= 10 held out at the 50/50 split; 0: exactly --images images)",
    )
    ap.add_argument("--config", default=str(REPO / "configs" / "fast.json"), help="discovery config JSON")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "world_v2_discovery", help="datasets and runs")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument(
        "--category-ids", default="", help="only these category ids, comma-separated (overrides --categories)"
    )
    ap.add_argument("--resume", action="store_true", help="keep finished categories of earlier runs")
    ap.add_argument("--categories", type=int, default=0, help="only the first N categories (0: all)")
    args = ap.parse_args(argv)

    import torch

    from alias_opt.config import load_config
    from alias_opt.discover import run
    from alias_opt.eval.summary import summarize
    from sam3 import Sam3Backend
    from sam3.toy import world2

    torch.set_num_threads(args.threads)
    backend = Sam3Backend.load(args.model, device="cpu", cache_dir=args.out / "features")
    cfg = load_config(args.config)
    report: dict = {"model": args.model, "fingerprint": backend.fingerprint, "config": args.config, "runs": {}}
    for variant in args.variants.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            top_up = f"_p{args.min_positives}" if args.min_positives else ""
            data = args.out / f"{variant}_s{seed}_n{args.images}{top_up}"
            if not (data / "annotations.json").is_file():
                world2.write_dataset(data, variant, args.images, seed, min_positives=args.min_positives)
            coco = json.loads((data / "annotations.json").read_text())
            t0 = time.perf_counter()
            cats = None
            if args.categories:
                cats = [c["id"] for c in sorted(coco["categories"], key=lambda c: c["id"])[: args.categories]]
            if args.category_ids:
                cats = [int(c) for c in args.category_ids.split(",")]
            result = run(
                data, data / "run", cfg, model=args.model, backend=backend, resume=args.resume, categories=cats
            )
            rows = summarize(result)["rows"]
            for r in rows:
                print(category_line(r), flush=True)
            res = {
                **score_rows(variant, rows),
                "name_check": name_checks(result.aliases),
                "images": len(coco["images"]),
                "wall_s": round(time.perf_counter() - t0, 1),
            }
            report["runs"][f"{variant}/{seed}"] = res
            print(json.dumps({f"{variant}/{seed}": res}), flush=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
