"""sam3-alias: token aliases for a frozen SAM 3.

Importing the package first (every entry point does, before torch) makes OpenMP threads wait
passively (``OMP_WAIT_POLICY=PASSIVE`` unless it is set already): spinning threads fight other
jobs for shared cores. Measured with ``bench/dist_bench.py threads`` on 2 loaded cores, 2 threads:
spinning 13-18 ms per prompt-image pair alone and ~100 ms beside one busy process (5-12x the CPU
time); passive 4 ms and 2-11 ms. It must be set before torch loads OpenMP, hence here.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
