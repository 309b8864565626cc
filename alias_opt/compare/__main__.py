"""``python -m alias_opt.compare``: the strategy comparison CLI (``alias_opt.compare.runner``)."""

import sys

from alias_opt.compare.runner import main

if __name__ == "__main__":
    sys.exit(main())
