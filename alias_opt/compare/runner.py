"""Compare search strategies fairly: same budget, same splits, several seeds; then a report.

    python -m alias_opt.compare --dataset DATA --output DIR --strategies pez+evolution,random,soft \\
        --budget 3000 --seeds 0,1,2 [--model toy] [--categories 1,2] [--config FILE] [--resume]

Every (strategy, category, seed) *cell* runs the strategy (``alias_opt.search.strategies``) on the
category's train split with the same budget in forward-equivalents (pair forwards + 2 x pair
backwards, the Objective's ``Counter.cost``; the vocabulary probes of a shortlist included), then
scores the final alias (for ``soft``: the soft prompt itself) on the held-out test split. The split
is fixed by ``--split-seed``, so every strategy and seed sees the same images; the seeds change only
the search's randomness.

Outputs under ``--output`` (every file written atomically):
    cells/<strategy>/<category>-seed<s>.json  one finished cell: the checkpoint ``--resume`` reuses
    history/<strategy>/<category>-seed<s>.jsonl  one line per search step
    soft/soft/<category>-seed<s>.safetensors  the ``soft`` strategy's prompt: ``embeds`` (1, T, D)
        incl. SOT/EOT and ``mask`` (1, T), for ``Sam3Backend.encode_text(embeds=..., mask=...)``
        (``load_soft_prompt`` reads it)
    results.json                              setup, per-category baselines, all cells, the summary
    report.md, plots/*.png                    the report (``alias_opt.compare.report``)
One cell is ``alias_opt.compare.cells``; the aggregation ``alias_opt.compare.summary``; the report
``alias_opt.compare.report``.

Exit codes: 0 done; 1 no usable category; 2 bad arguments, dataset, config or model source.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from tqdm.auto import tqdm

from alias_opt.cli import add_runtime_flags, init_runtime, user_error
from alias_opt.compare.cells import (
    CELL_VERSION,
    FRACTIONS,
    Bench,
    CategoryData,
    CompareSetup,
    cell_seed,
    load_soft_prompt,
    open_bench,
    run_cell,
    strategy_slug,
)
from alias_opt.compare.records import Cell
from alias_opt.compare.summary import summarize
from alias_opt.config import CONFIG_DIR, SearchConfig, load_config
from alias_opt.dist import DistContext, close, local_first, start
from alias_opt.eval.metrics import Thresholds
from alias_opt.export import tool_version, write_json_atomic
from alias_opt.search.shortlist import build_indexes
from alias_opt.search.strategies import NAMES
from sam3 import Sam3Backend

__all__ = [
    "DEFAULT_CONFIG",
    "FRACTIONS",
    "Bench",
    "CategoryData",
    "CompareSetup",
    "build_parser",
    "cell_seed",
    "load_soft_prompt",
    "main",
    "open_bench",
    "parse_list",
    "run_cell",
    "run_comparison",
    "strategy_slug",
]

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = CONFIG_DIR / "compare.json"


# ---------------------------------------------------------------------------------------- the run
def run_comparison(
    setup: CompareSetup,
    cfg: SearchConfig,
    output: str | Path,
    resume: bool = False,
    backend: Sam3Backend | None = None,
    device: str = "auto",
    thresholds: Thresholds | None = None,
    progress: bool = True,
    report: bool = True,
    command: str | None = None,
    dtype: str = "auto",
    ctx: DistContext | None = None,
) -> dict:
    """Run every cell (resuming finished ones if asked), write results.json and the report.

    With a ``ctx`` of several ranks (``torchrun``), each rank runs its shard of the cells (round
    robin over the (category, strategy, seed) list) and writes their checkpoints; rank 0 writes
    results.json and the report once; every rank returns the merged results.
    """
    ctx = ctx or DistContext()
    setup.validate()
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    thresholds = thresholds or Thresholds()
    bench = open_bench(setup, cfg, backend, device, thresholds, dtype)
    if ctx.distributed:  # one rank per node fills the vocabulary index cache, the others read it
        with local_first(ctx):
            bench.indexes.update(build_indexes(bench.backend, cfg))
    cids = sorted(bench.sets)
    todo = [(cid, strategy, seed) for cid in cids for strategy in setup.strategies for seed in setup.seeds]
    mine = ctx.shard(todo)
    done: dict[tuple[int, str, int], Cell] = {}
    bar = tqdm(total=len(mine), desc="cells", unit="cell", disable=not progress or not ctx.is_main)
    for cid, strategy, seed in mine:
        path = out / "cells" / strategy_slug(strategy) / f"{cid}-seed{seed}.json"
        cell = _resumed(path, bench.key) if resume else None
        if cell is None:
            bar.set_postfix_str(f"{strategy} cat {cid} seed {seed}")
            cell = run_cell(bench, cid, strategy, seed, setup.budget, out)
            write_json_atomic(path, cell.to_dict())
        done[cid, strategy, seed] = cell
        bar.update(1)
    bar.close()
    infos: dict[int, dict] = {}
    for part_cells, part_infos in ctx.gather((done, {c: bench.info(c) for c in dict.fromkeys(k[0] for k in done)})):
        done.update(part_cells)
        infos.update(part_infos)
    cells = [done[k] for k in todo]
    cats = {cid: infos[cid] if cid in infos else bench.info(cid) for cid in cids}
    results = {
        "setup": {**asdict(setup), "command": command, "tool_version": tool_version(), **bench.settings},
        "categories": {str(c): cats[c] for c in cids},
        "cells": [c.to_dict() for c in cells],
    }
    results["summary"] = summarize(results)
    if not ctx.is_main:
        ctx.barrier()  # returns once rank 0 has written results.json and the report
        return results
    write_json_atomic(out / "results.json", results)
    if report:
        from alias_opt.compare.report import write_report

        write_report(out, results)
    ctx.barrier()
    return results


def _resumed(path: Path, key: str) -> Cell | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("settings") != key or data.get("version") != CELL_VERSION:
            logger.warning("%s was made with other settings; redoing the cell", path)
            return None
        return Cell.from_dict(data)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        logger.warning("unreadable checkpoint %s (%s); redoing the cell", path, exc)
        return None


# ---------------------------------------------------------------------------------------- CLI
def parse_list(values: Sequence[str] | None, kind=str) -> list | None:
    """Items of comma- and/or space-separated arguments."""
    if values is None:
        return None
    items = [v.strip() for arg in values for v in str(arg).split(",") if v.strip()]
    try:
        return [kind(v) for v in items]
    except ValueError:
        raise ValueError(f"cannot read {items!r} as a list of {kind.__name__}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m alias_opt.compare",
        description="Compare alias search strategies on a COCO dataset with one forward-pass budget.",
        epilog="strategies: " + ", ".join(NAMES),
    )
    p.add_argument("--dataset", required=True, metavar="PATH", help="COCO annotation JSON or the folder holding it")
    p.add_argument("--output", required=True, metavar="DIR", help="output folder (cells, results.json, report.md)")
    p.add_argument(
        "--strategies", nargs="+", default=["all"], metavar="LIST", help="strategy names, comma-separated, or all"
    )
    p.add_argument(
        "--budget",
        type=int,
        default=2000,
        help="forward-equivalents (pair forwards + 2 x pair backwards) per strategy, category and seed",
    )
    p.add_argument("--seeds", nargs="+", default=["0,1,2"], metavar="LIST", help="search seeds (default 0,1,2)")
    p.add_argument("--model", default="toy", metavar="SRC", help="toy (default), random:NAME[@SEED], a checkpoint dir")
    p.add_argument("--categories", nargs="+", metavar="IDS", help="category ids, comma-separated (default all)")
    p.add_argument("--config", metavar="FILE", help="config JSON (default configs/compare.json)")
    p.add_argument("--split-seed", type=int, default=0, help="train/test split seed, the same for every cell")
    p.add_argument(
        "--resume", action="store_true", help="reuse finished cells of an earlier run with the same settings"
    )
    p.add_argument("--no-report", action="store_true", help="write results.json only (make the report later)")
    add_runtime_flags(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    init_runtime(args)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING if args.verbose < 2 else optuna.logging.DEBUG)
    from alias_opt.data.loader import DatasetError
    from sam3 import ModelSourceError

    try:
        strategies = parse_list(args.strategies)
        setup = CompareSetup(
            dataset=args.dataset,
            model=args.model,
            strategies=list(NAMES) if strategies == ["all"] else strategies,
            budget=args.budget,
            seeds=parse_list(args.seeds, int),
            categories=parse_list(args.categories, int),
            split_seed=args.split_seed,
        ).validate()
        cfg = load_config(args.config or DEFAULT_CONFIG)
    except (OSError, ValueError) as exc:
        return user_error(exc)
    t0 = time.perf_counter()
    command = "python -m alias_opt.compare " + " ".join(argv if argv is not None else sys.argv[1:])
    ctx, device = start(args.device, args.threads)  # torchrun's ranks (or one process); torch's CPU threads
    try:
        results = run_comparison(
            setup,
            cfg,
            args.output,
            resume=args.resume,
            device=device,
            progress=not args.no_progress,
            report=not args.no_report,
            command=command,
            dtype=args.dtype,
            ctx=ctx,
        )
    except (DatasetError, FileNotFoundError, ModelSourceError) as exc:
        return user_error(exc, args.model)
    except ValueError as exc:
        return user_error(exc, code=1)
    finally:
        close(ctx)
    if not ctx.is_main:
        return 0
    from alias_opt.compare.summary import format_overview

    print(format_overview(results["summary"]))
    out = Path(args.output)
    print(
        f"wrote {out / 'results.json'}"
        + ("" if args.no_report else f" and {out / 'report.md'}")
        + f" in {time.perf_counter() - t0:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
