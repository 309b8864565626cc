"""``python -m alias_opt.tuning``: Optuna tuning of a strategy (``alias_opt.compare.tuning``)."""

import sys

from alias_opt.compare.tuning import main

if __name__ == "__main__":
    sys.exit(main())
