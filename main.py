"""Discover SAM 3 aliases for the categories of a COCO dataset.

    python main.py                                   # the demo (see below)
    python main.py --dataset DATA --output DIR [--model SRC] [--categories IDS] [--config FILE]
                   [--resume] [--device D] [--seed S]

With no arguments it runs the demo on the embedded default: it generates the toy *renamed* shapes
dataset (category names the model never saw, e.g. "crimson disc") with a fixed seed, discovers an
alias per category with ``configs/fast.json``, scores alias and name on held-out images, prints the
table and writes everything to ``results/demo/``.

Exit codes: 0 done; 1 no usable category; 2 bad arguments, dataset, config or model source.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent
DEMO_DIR = REPO / "results" / "demo"
DEMO_IMAGES = 120
DEMO_SEED = 2024
FAST_CONFIG = REPO / "configs" / "fast.json"
DEFAULT_CONFIG = REPO / "configs" / "default.json"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="main.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    p.add_argument(
        "--dataset", metavar="PATH", help="COCO annotation JSON or the folder holding it (default: the demo)"
    )
    p.add_argument("--output", metavar="DIR", help="output folder (default results/demo for the demo, else required)")
    p.add_argument(
        "--model",
        default="toy",
        metavar="SRC",
        help="toy (default), random:NAME[@SEED], a checkpoint folder, or a hub id in the local HF cache",
    )
    p.add_argument("--categories", nargs="+", type=int, metavar="ID", help="category ids (default all)")
    p.add_argument(
        "--config",
        metavar="FILE",
        help="discovery config JSON (default configs/default.json; the demo uses configs/fast.json)",
    )
    p.add_argument("--resume", action="store_true", help="keep finished categories of an earlier run in --output")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, ...")
    p.add_argument("--seed", type=int, help="discovery and split seed (default: the config's, 0)")
    p.add_argument("--strategy", help="override the config's strategy (e.g. pez+evolution, pez+gcg, scan)")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    return p


def make_demo_dataset(out: Path, images: int = DEMO_IMAGES, seed: int = DEMO_SEED) -> Path:
    """The demo's renamed shapes dataset (regenerated only if missing or of another size/seed)."""
    import json

    from sam3.toy import world

    ann = out / "annotations.json"
    if ann.is_file():
        try:
            info = json.loads(ann.read_text()).get("info", {})
            if (
                info.get("seed") == seed
                and info.get("variant") == "renamed"
                and len(list((out / "images").glob("*.png"))) == images
            ):
                return ann
        except (OSError, ValueError):
            pass
    return world.write_dataset(out, "renamed", images, seed)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    demo = args.dataset is None
    if not demo and not args.output:
        print("error: --output DIR is required with --dataset", file=sys.stderr)
        return 2

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from alias_opt.config import load_config
    from alias_opt.data_loader import DatasetError
    from alias_opt.optimizer import format_summary, format_table, run, summarize
    from sam3 import ModelSourceError

    overrides: dict = {}
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.strategy:
        overrides["strategy"] = args.strategy
    try:
        cfg = load_config(args.config or (FAST_CONFIG if demo else DEFAULT_CONFIG), overrides)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    output = Path(args.output) if args.output else DEMO_DIR
    if demo:
        print(
            f"demo: generating the renamed shapes dataset ({DEMO_IMAGES} images, seed {DEMO_SEED}) in {output / 'data'}"
        )
        dataset = make_demo_dataset(output / "data")
    else:
        dataset = Path(args.dataset)
    try:
        result = run(
            dataset,
            output,
            cfg,
            model=args.model,
            categories=args.categories,
            resume=args.resume,
            device=args.device,
            progress=not args.no_progress,
        )
    except (DatasetError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModelSourceError as exc:
        print(f"error: cannot load the model {args.model!r}: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print()
    print(format_table(result))
    print()
    print(format_summary(summarize(result)))
    print(
        f"wrote {output / 'aliases.json'}, {output / 'report.txt'} and per-category checkpoints and histories "
        f"in {time.perf_counter() - t0:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
