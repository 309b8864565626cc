"""Discover SAM 3 aliases for the categories of a COCO dataset: ``alias_opt.discover_cli`` run from the
repository (the demo writes to ``results/demo/`` here). Installed, the same command is ``sam3-alias``.

    python main.py                                   # the demo
    python main.py --dataset DATA --output DIR [--config FILE] [--strategy NAME] [--resume] ...
    python main.py --help
"""

from __future__ import annotations

import sys
from pathlib import Path

from alias_opt.discover_cli import build_parser, compare_argv, make_demo_dataset
from alias_opt.discover_cli import main as _main

__all__ = ["DEMO_DIR", "build_parser", "compare_argv", "main", "make_demo_dataset"]

DEMO_DIR = Path(__file__).resolve().parent / "results" / "demo"


def main(argv: list[str] | None = None) -> int:
    """``alias_opt.discover_cli.main`` with the demo's output under this repository."""
    return _main(argv, demo_dir=DEMO_DIR)


if __name__ == "__main__":
    sys.exit(main())
