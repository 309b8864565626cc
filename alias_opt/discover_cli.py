"""Discover SAM 3 aliases for the categories of a COCO dataset (``python main.py``; installed: ``sam3-alias``).

    python main.py                                   # the demo (see below)
    python main.py --dataset DATA --output DIR [--model SRC] [--categories IDS] [--config FILE]
                   [--resume] [--device D] [--seed S]
    python main.py --dataset DATA --output DIR --strategies pez+gcg,random --budget 2000 --seeds 0,1
                                                     # compare strategies (python -m alias_opt.compare)

With no arguments it runs the demo on the embedded world-v2 model (``toy-v2``, 386 trained words): it
generates the shapes-world-v2 *policy* dataset with a fixed seed (plausible names whose annotation is
narrower than the word: "star" where only the teal stars are annotated), discovers an alias (or an alias
set) for its first 8 categories with ``configs/fast.json`` (the defaults with a smaller shortlist pool),
scores alias and name on held-out images, prints the table
and writes everything to ``results/demo/``.

Exit codes: 0 done; 1 no usable category; 2 bad arguments, dataset, config, model source or device, or
a --resume whose settings differ from the finished run's (listed; --overwrite redoes those categories).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from alias_opt.cli import add_runtime_flags, init_runtime, user_error
from alias_opt.config import CONFIG_DIR

DEMO_DIR = Path("results") / "demo"  # under the working directory (main.py: under the repository)
DEMO_IMAGES = 160
DEMO_SEED = 2024  # a world seed never used while designing world v2 or its model
DEMO_MODEL = "toy-v2"  # the demo's model when --model is not given (other runs: "toy")
DEMO_VARIANT = "policy"  # sam3.toy.world2's variant the demo generates
DEMO_CATEGORIES = 8  # the demo searches the first 8 of its 16 categories (all 16 take about twice as long)
DEFAULT_CONFIG = CONFIG_DIR / "default.json"
# the demo's config does less of the costliest work than the defaults (64 tokens from each index view, the pairs over 96
# insertion tokens, no neighbours, no extra negatives for the cover set) to fit its 10-minute bar on 2 cores: 8 min 51 s
# cold on 2026-12-06's machine, where the previous demo config (80 tokens a view, 128 insertion tokens) took 11 min 05 s
# (configs/fast.json)
DEMO_CONFIG = CONFIG_DIR / "fast.json"


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
        metavar="SRC",
        help="toy (default; the demo: toy-v2), toy-v2, random:NAME[@SEED], a checkpoint folder, or a hub id in the "
        "local HF cache",
    )
    p.add_argument("--categories", nargs="+", type=int, metavar="ID", help="category ids (default all)")
    p.add_argument(
        "--config",
        metavar="FILE",
        help="discovery config JSON (default configs/default.json; the demo uses configs/fast.json)",
    )
    p.add_argument("--resume", action="store_true", help="keep finished categories of an earlier run in --output")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="with --resume: redo finished categories made with other settings (without it such a resume refuses)",
    )
    p.add_argument("--seed", type=int, help="discovery and split seed (default: the config's, 0)")
    p.add_argument(
        "--shard",
        choices=("categories", "images"),  # alias_opt.discover.SHARD_MODES (not imported here: no torch for --help)
        default="categories",
        help="under torchrun: split the categories across ranks (default), or run every category on all ranks "
        "with its images split across them (losses and gradients all-reduced; for few, large categories)",
    )
    p.add_argument(
        "--no-figures", action="store_true", help="do not draw figures/<category>.png (held-out masks) at the end"
    )
    p.add_argument("--strategy", help="override the config's strategy (e.g. pez+evolution, pez+gcg, scan)")
    p.add_argument(
        "--strategies",
        metavar="LIST",
        help="compare these strategies (comma-separated, or all) instead of discovering: runs alias_opt.compare",
    )
    p.add_argument("--budget", type=int, help="with --strategies: forward-equivalents per strategy, category, seed")
    p.add_argument("--seeds", metavar="LIST", help="with --strategies: search seeds, comma-separated")
    add_runtime_flags(p)
    return p


def compare_argv(args: argparse.Namespace) -> list[str]:
    """The ``alias_opt.compare`` command line that ``main.py --strategies ...`` stands for."""
    argv = ["--dataset", args.dataset, "--output", args.output, "--strategies", args.strategies]
    argv += ["--model", args.model or "toy", "--device", args.device, "--dtype", args.dtype]
    for flag, value in (("--budget", args.budget), ("--seeds", args.seeds), ("--config", args.config)):
        if value is not None:
            argv += [flag, str(value)]
    if args.categories:
        argv += ["--categories", ",".join(map(str, args.categories))]
    if args.seed is not None:
        argv += ["--split-seed", str(args.seed)]
    for flag, on in (("--resume", args.resume), ("--overwrite", args.overwrite), ("--no-figures", args.no_figures)):
        if on:
            argv.append(flag)
    if args.threads:
        argv += ["--threads", str(args.threads)]
    if args.no_progress:
        argv.append("--no-progress")
    return argv + ["-v"] * args.verbose


def make_demo_dataset(out: Path, images: int = DEMO_IMAGES, seed: int = DEMO_SEED) -> Path:
    """The demo's shapes-world-v2 policy dataset (regenerated only if missing or of another size/seed)."""
    import json

    from sam3.toy import world2

    ann = out / "annotations.json"
    if ann.is_file():
        try:
            info = json.loads(ann.read_text()).get("info", {})
            if (
                info.get("seed") == seed
                and info.get("variant") == DEMO_VARIANT
                and info.get("version") == "2"
                and len(list((out / "images").glob("*.png"))) == images
            ):
                return ann
        except (OSError, ValueError):
            pass
    return world2.write_dataset(out, DEMO_VARIANT, images, seed)


def main(argv: list[str] | None = None, demo_dir: Path = DEMO_DIR) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); the demo writes to ``demo_dir``.

    Returns:
        the exit code (0 done; 1 no usable category; 2 bad arguments, dataset, config or model source).
    """
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    demo = args.dataset is None
    if not demo and not args.output:
        print("error: --output DIR is required with --dataset", file=sys.stderr)
        return 2
    if args.strategies is None and (args.budget is not None or args.seeds is not None):
        print("error: --budget and --seeds belong to a strategy comparison: add --strategies LIST", file=sys.stderr)
        return 2
    if args.strategies is not None:
        if demo:
            print("error: --strategies needs --dataset and --output", file=sys.stderr)
            return 2
        from alias_opt.compare import main as compare_main

        return compare_main(compare_argv(args))
    init_runtime(args)

    from alias_opt.config import load_config
    from alias_opt.data.loader import DatasetError
    from alias_opt.discover import run
    from alias_opt.dist import close, local_first, start
    from alias_opt.eval.summary import format_summary, format_table, summarize
    from alias_opt.progress import time_report
    from alias_opt.resume import ResumeMismatch
    from sam3 import ModelSourceError

    overrides: dict = {}
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.strategy:
        overrides["strategy"] = args.strategy
    try:
        cfg = load_config(args.config or (DEMO_CONFIG if demo else DEFAULT_CONFIG), overrides)
    except (OSError, ValueError) as exc:
        return user_error(exc)

    output = Path(args.output) if args.output else Path(demo_dir)
    ctx, device = start(args.device, args.threads)  # torchrun's ranks (or one process); torch's CPU threads
    demo_ids = list(range(1, DEMO_CATEGORIES + 1))
    model = args.model or (DEMO_MODEL if demo else "toy")
    if demo:
        with local_first(ctx):
            if ctx.local_rank == 0:
                print(
                    f"demo: generating the shapes-world-v2 {DEMO_VARIANT} dataset ({DEMO_IMAGES} images, seed "
                    f"{DEMO_SEED}) in {output / 'data'}; model {model}; categories "
                    f"{' '.join(map(str, args.categories or demo_ids))} (--categories 1 ... 16 picks others)"
                )
            dataset = make_demo_dataset(output / "data")
    else:
        dataset = Path(args.dataset)
    timings: dict[str, float] = {}
    try:
        result = run(
            dataset,
            output,
            cfg,
            model=model,
            categories=args.categories or (demo_ids if demo else None),
            resume=args.resume,
            overwrite=args.overwrite,
            device=device,
            dtype=args.dtype,
            progress=not args.no_progress,
            figures=not args.no_figures,
            timings=timings,
            ctx=ctx,
            shard=args.shard,
        )
    except (DatasetError, FileNotFoundError, ModelSourceError, ResumeMismatch) as exc:
        return user_error(exc, model=model)
    except ValueError as exc:
        return user_error(exc, code=1)
    finally:
        close(ctx)
    if not ctx.is_main:
        return 0
    summary = summarize(result)
    print()
    print(format_table(result, summary))
    print()
    print(format_summary(summary))
    print(time_report(timings, time.perf_counter() - t0))
    figures = " and figures/" if not args.no_figures and (output / "figures").is_dir() else ""
    print(f"output: {output}/ (aliases.json, report.txt, report.md{figures}; categories/, history/, predictions/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
