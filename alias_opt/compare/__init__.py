"""Strategy comparison: cells (``cells``), the run and CLI (``runner``), the summary, the report and
Optuna tuning. ``python -m alias_opt.compare`` runs ``runner.main``."""

from alias_opt.compare.runner import (
    DEFAULT_CONFIG,
    FRACTIONS,
    Bench,
    CategoryData,
    CompareSetup,
    build_parser,
    cell_seed,
    load_soft_prompt,
    main,
    open_bench,
    parse_list,
    run_cell,
    run_comparison,
    strategy_slug,
)

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
