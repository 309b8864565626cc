"""Score prompts or an alias file against a COCO dataset's target masks, next to the name baseline:
``alias_opt.eval.cli`` run from the repository. Installed, the same command is ``sam3-alias-evaluate``.

    python evaluate.py --dataset DATA [--aliases aliases.json] [--prompt TEXT] [--check] ...
    python evaluate.py --help
"""

from __future__ import annotations

import sys

from alias_opt.eval.cli import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
