"""``python -m alias_opt.report``: rebuild a comparison's report (``alias_opt.compare.report``)."""

import sys

from alias_opt.compare.report import main

if __name__ == "__main__":
    sys.exit(main())
