"""Shared set-up of the benches that re-score a finished world-v2 discovery run (``name_guard.py``,
``token_worth.py``): the common flags, and the run's config, model and target sets (same split)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alias_opt.config import SearchConfig, load_config  # noqa: E402
from alias_opt.data.loader import CocoDataset  # noqa: E402
from sam3 import Sam3Backend  # noqa: E402


def run_parser(description: str) -> argparse.ArgumentParser:
    """A parser with ``--run``, ``--config``, ``--model`` and ``--threads`` (add the bench's own flags)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--run", type=Path, required=True, help="a world_v2_discovery dataset folder holding run/")
    ap.add_argument("--config", default=str(REPO / "configs" / "fast.json"), help="the run's config JSON")
    ap.add_argument("--model", default="toy-v2", help="the run's model source")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return ap


def open_run(args: argparse.Namespace) -> tuple[SearchConfig, Sam3Backend, list]:
    """The run's config, its model and its dataset's target sets, split as the run split them."""
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    backend = Sam3Backend.load(args.model)
    sets = CocoDataset.open(args.run).target_sets(
        seed=cfg.seed,
        train_fraction=cfg.train_fraction,
        max_negatives=cfg.max_negatives,
        extra_negatives=cfg.name_negatives,
    )
    return cfg, backend, sets


def run_records(run: Path, sets: list):
    """The categories of a finished run that have a record.

    Yields:
        (target set, the category's first alias record)
    """
    for ts in sets:
        path = run / "run" / "categories" / f"{ts.category_id}.json"
        if path.exists():
            yield ts, json.loads(path.read_text())["aliases"][0]


def built_sets(run: Path, sets: list):
    """The categories of a finished run whose set search built two or more members.

    Yields:
        (target set, the category's first alias record, the built set's token-id tuples)
    """
    for ts, rec in run_records(run, sets):
        built = [tuple(b["token_ids"]) for b in (rec["extra"].get("alias_set_search") or {}).get("built", [])]
        if len(built) >= 2:
            yield ts, rec, built
