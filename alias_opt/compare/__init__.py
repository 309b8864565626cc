"""Strategy comparison: cells (``cells``), the run and CLI (``runner``), the summary, the report and
Optuna tuning. ``python -m alias_opt.compare`` runs ``runner.main``; this package re-exports ``runner``'s
public names (its ``__all__``)."""

from alias_opt.compare.runner import *  # noqa: F403
from alias_opt.compare.runner import __all__  # noqa: F401
