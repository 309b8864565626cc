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
    settings/<key>.json                       what the cells of settings key <key> depend on (to list
        the differences when a --resume does not match)
    results.json                              setup, per-category baselines, all cells, the summary
    report.md, plots/*.png                    the report (``alias_opt.compare.report``; no PNGs with
        --no-figures); drawn once at the end from the cells' saved detections, never a model pass
One cell is ``alias_opt.compare.cells``; the aggregation ``alias_opt.compare.summary``; the report
``alias_opt.compare.report``.

``--resume`` keeps finished cells made with the same settings; if a finished cell in ``--output`` was
made with other settings it refuses before writing anything, listing the differences, unless
``--overwrite`` (then those cells are redone), as ``main.py --resume`` does.

Exit codes: 0 done; 1 no usable category; 2 bad arguments, dataset, config or model source, or a
--resume whose settings differ from the finished cells' (listed; --overwrite redoes them).
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
from alias_opt.compare.records import Cell, Results
from alias_opt.compare.summary import summarize
from alias_opt.config import CONFIG_DIR, SearchConfig, load_config, setting_differences
from alias_opt.dist import DistContext, close, local_first, start
from alias_opt.eval.metrics import Thresholds
from alias_opt.export import tool_version, write_json_atomic
from alias_opt.progress import RunProgress
from alias_opt.resume import ResumeMismatch
from alias_opt.search.shortlist import build_indexes
from alias_opt.search.strategies import NAMES
from sam3 import Sam3Backend

__all__ = [
    "DEFAULT_CONFIG",
    "FRACTIONS",
    "ResumeMismatch",
    "Bench",
    "CategoryData",
    "CompareSetup",
    "build_parser",
    "cell_seed",
    "check_resume",
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
    overwrite: bool = False,
    figures: bool = True,
) -> dict:
    """Run every cell (resuming finished ones if asked), write results.json and the report.

    With ``resume`` and without ``overwrite``, finished cells in ``output`` made with other settings make
    it refuse (``ResumeMismatch``, the differences listed) before anything is written; with ``overwrite``
    they are redone. ``figures=False`` writes the report without its PNGs.

    With a ``ctx`` of several ranks (``torchrun``), each rank runs its shard of the cells (round
    robin over the (category, strategy, seed) list) and writes their checkpoints; rank 0 writes
    results.json and the report once; every rank returns the merged results.
    """
    ctx = ctx or DistContext()
    setup.validate()
    out = Path(output)
    thresholds = thresholds or Thresholds()
    bench = open_bench(setup, cfg, backend, device, thresholds, dtype)
    if resume and not overwrite:  # refuse before anything is written
        check_resume(out, bench.key, bench.settings)
    out.mkdir(parents=True, exist_ok=True)
    if ctx.is_main:
        write_json_atomic(out / "settings" / f"{bench.key}.json", bench.settings)
    if ctx.distributed:  # one rank per node fills the vocabulary index cache, the others read it
        with local_first(ctx):
            bench.indexes.update(build_indexes(bench.backend, cfg))
    cids = sorted(bench.sets)
    todo = [(cid, strategy, seed) for cid in cids for strategy in setup.strategies for seed in setup.seeds]
    mine = ctx.shard(todo)
    done: dict[tuple[int, str, int], Cell] = {}
    bar = tqdm(total=len(mine), desc="cells", unit="cell", disable=not progress or not ctx.is_main)
    prog = RunProgress(bar, len(mine), setup.budget)
    try:
        for cid, strategy, seed in mine:
            path = out / "cells" / strategy_slug(strategy) / f"{cid}-seed{seed}.json"
            cell = _resumed(path, bench.key) if resume else None
            if cell is None:
                prog.start(f"{strategy} cat {cid} seed {seed}", None)
                cell = run_cell(bench, cid, strategy, seed, setup.budget, out, progress=prog)
                write_json_atomic(path, cell.to_dict())
                prog.finish(f"{strategy} cat {cid} seed {seed}: AP {cell.ap:.3f} {cell.vs_name}")
            else:
                prog.resumed()
            done[cid, strategy, seed] = cell
            bar.update(1)
    finally:
        prog.close()
        bar.close()
    infos: dict[int, dict] = {}
    for part_cells, part_infos in ctx.gather((done, {c: bench.info(c) for c in dict.fromkeys(k[0] for k in done)})):
        done.update(part_cells)
        infos.update(part_infos)
    cells = [done[k] for k in todo]
    cats = {cid: infos[cid] if cid in infos else bench.info(cid) for cid in cids}
    res = Results(
        {**asdict(setup), "command": command, "tool_version": tool_version(), **bench.settings},
        {str(c): cats[c] for c in cids},
        cells,
        {},
    )
    res.summary = summarize(res)
    results = res.to_dict()
    if not ctx.is_main:
        ctx.barrier()  # returns once rank 0 has written results.json and the report
        return results
    write_json_atomic(out / "results.json", results)
    if report:
        from alias_opt.compare.report import write_report

        write_report(out, res, figures=figures, sets=bench.sets)
    ctx.barrier()
    return results


def settings_differences(there: dict | None, now: dict) -> list[str]:
    """What differs between a finished cell's settings and this run's, one ``key: X there, Y now`` each."""
    if there is None:
        return ["settings: not recorded there (a run before settings/ was written)"]
    return setting_differences(there, now)


def check_resume(out: Path, key: str, settings: dict) -> None:
    """Refuse to resume into ``out`` when a finished cell there (any cell, not only the ones asked for
    now) was made with other settings or another cell format.

    Raises:
        ResumeMismatch: naming the folder, the cells and each difference.
    """
    bad: dict[str, list[Path]] = {}
    for path in sorted((out / "cells").glob("*/*.json")):
        try:
            data = json.loads(path.read_text())
            there = (data.get("settings"), data.get("version"))
        except (OSError, ValueError, AttributeError):
            continue  # unreadable: redone with a warning in the loop
        if there != (key, CELL_VERSION):
            bad.setdefault(f"{there[0]}@{there[1]}", []).append(path)
    if not bad:
        return
    cells = [p for ps in bad.values() for p in ps]
    old_key, _, old_version = next(iter(bad)).partition("@")
    diffs = (
        [] if old_version == str(CELL_VERSION) else [f"cell format: version {old_version} there, {CELL_VERSION} now"]
    )
    try:
        there = json.loads((out / "settings" / f"{old_key}.json").read_text())
    except (OSError, ValueError):
        there = None
    if old_key != key:
        diffs += settings_differences(there, settings)
    names = ", ".join(str(p.relative_to(out / "cells").with_suffix("")) for p in cells[:6])
    raise ResumeMismatch(
        f"--resume: {len(cells)} finished cell{'s' if len(cells) > 1 else ''} in {out} ({names}"
        f"{', ...' if len(cells) > 6 else ''}) made with other settings"
        + (f" ({len(bad)} different sets; the first:)" if len(bad) > 1 else ":")
        + "\n  "
        + "\n  ".join(diffs[:20])
        + (f"\n  ... and {len(diffs) - 20} more" if len(diffs) > 20 else "")
        + "\nrun with the same settings (e.g. the same --config and --budget), pass --overwrite to redo them "
        "with these, or choose a new --output"
    )


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
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="with --resume: redo finished cells made with other settings (without it such a resume refuses)",
    )
    p.add_argument("--no-report", action="store_true", help="write results.json only (make the report later)")
    p.add_argument(
        "--no-figures", action="store_true", help="write report.md without its PNGs (plots/, mask and loss figures)"
    )
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
            overwrite=args.overwrite,
            figures=not args.no_figures,
            device=device,
            progress=not args.no_progress,
            report=not args.no_report,
            command=command,
            dtype=args.dtype,
            ctx=ctx,
        )
    except (DatasetError, FileNotFoundError, ModelSourceError, ResumeMismatch) as exc:
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
