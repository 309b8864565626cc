"""Strategy comparison on a generated shapes world (v1 *renamed* by default, or a world-v2 variant): one command.

Generates the dataset (if missing), picks the first categories with enough positives in both
splits, and runs ``python -m alias_opt.compare`` on them; the report lands in ``--out``.

    python bench/compare_strategies.py                               # toy model, all strategies
    python bench/compare_strategies.py --categories 3 --budget 3000 --seeds 0,1 --strategies pez+evolution,random
    python bench/compare_strategies.py --world v2 --variant policy --model results/toy_v2b/model \
        --images 240 --world-seed 5151 --min-positives 10 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def pick_categories(dataset: Path, n: int, split_seed: int, min_pos: int = 2) -> list[int]:
    """The first ``n`` category ids with at least ``min_pos`` positive images in train and in test."""
    from alias_opt.data.loader import CocoDataset

    sets = CocoDataset.open(dataset).target_sets(seed=split_seed)
    good = [
        ts.category_id
        for ts in sets
        if sum(t.is_positive for t in ts.train) >= min_pos and sum(t.is_positive for t in ts.test) >= min_pos
    ]
    return good[:n]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="toy", help="model source (default the shipped toy model)")
    p.add_argument("--world", choices=("v1", "v2"), default="v1", help="shapes world of the generated dataset")
    p.add_argument("--variant", default="renamed", help="world variant (v2: policy, renamed, named, composite)")
    p.add_argument("--images", type=int, default=120, help="images in the generated world")
    p.add_argument("--world-seed", type=int, default=2024, help="seed of the generated world")
    p.add_argument("--categories", type=int, default=4, help="how many categories to compare on")
    p.add_argument(
        "--min-positives", type=int, default=2, help="a category needs this many positive images in each split"
    )
    p.add_argument("--budget", type=int, default=3000, help="forward-equivalents per cell")
    p.add_argument("--seeds", default="0,1", help="search seeds, comma-separated")
    p.add_argument("--strategies", default="all", help="strategy names, comma-separated, or all")
    p.add_argument("--config", help="compare config JSON (default configs/compare.json)")
    p.add_argument("--out", default=str(REPO / "results" / "compare-toy"), help="output folder")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    p.add_argument("--resume", action="store_true", help="reuse finished cells made with the same settings")
    p.add_argument(
        "--overwrite", action="store_true", help="with --resume: redo finished cells made with other settings"
    )
    p.add_argument("--no-figures", action="store_true", help="write report.md without its PNGs")
    args = p.parse_args(argv)

    from alias_opt import compare
    from sam3.toy import world, world2

    out = Path(args.out)
    data = out / "data"
    if not (data / "annotations.json").is_file():
        writer = world.write_dataset if args.world == "v1" else world2.write_dataset
        writer(data, args.variant, args.images, args.world_seed)
    cats = pick_categories(data, args.categories, split_seed=0, min_pos=args.min_positives)
    if not cats:
        print(
            f"error: no category has {args.min_positives} positives in both splits; use more --images", file=sys.stderr
        )
        return 1
    cmd = ["--dataset", str(data), "--output", str(out), "--model", args.model, "--budget", str(args.budget)]
    cmd += ["--seeds", args.seeds, "--strategies", args.strategies, "--categories", ",".join(map(str, cats))]
    cmd += ["--threads", str(args.threads)] + (["--config", args.config] if args.config else [])
    cmd += ["--resume"] if args.resume else []
    cmd += ["--overwrite"] if args.overwrite else []
    cmd += ["--no-figures"] if args.no_figures else []
    print("python -m alias_opt.compare " + " ".join(cmd))
    return compare.main(cmd)


if __name__ == "__main__":
    sys.exit(main())
