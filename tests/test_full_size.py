"""Full size, end to end: ``main.py --model random:full`` (facebook/sam3's architecture, 840M
parameters, seeded random weights) on a 2-image, 1-category dataset with a tiny budget, on the CPU.

Random weights find nothing, so the test checks that every stage ran and wrote its output, and that
the process stayed within a memory bound; it prints the wall time and peak memory (run with ``-s``).
Measured 2026-12-02 beside a training job, 1 thread: 5 min 10 s, peak RSS 4.9 GB (fp32 weights are
3.4 GB); wall time went to encoding the two images (about 85 s each) and the few forwards.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alias_opt.export import read_aliases

REPO = Path(__file__).resolve().parents[1]
PEAK_RSS_GB = 8.0  # fp32 weights 3.4 GB + activations of one 1008 px image; a copy per pair would exceed it


@pytest.mark.slow  # about 5 minutes on 2 CPU cores
def test_full_size_main_on_cpu(tmp_path):
    from sam3.toy.world import write_dataset

    data = tmp_path / "world"
    write_dataset(data, "named", images=2, seed=1)  # category 16 "yellow star": one train and one test image
    cfg = tmp_path / "cfg.json"
    # "random" needs no vocabulary index (a full-size index table costs hours on a CPU)
    cfg.write_text(json.dumps({"strategy": "random", "budget": 6, "max_len": 2, "rerank": 2, "max_negatives": 0}))
    out = tmp_path / "out"
    env = {**os.environ, "SAM3_ALIAS_CACHE": str(tmp_path / "features"), "HF_HUB_OFFLINE": "1"}
    argv = [sys.executable, str(REPO / "main.py"), "--dataset", str(data), "--model", "random:full"]
    argv += ["--categories", "16", "--config", str(cfg), "--output", str(out), "--device", "cpu", "--no-progress"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    peak_gb = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 2**20  # KiB on Linux
    print(f"\nrandom:full main.py: {wall:.0f} s wall, peak RSS {peak_gb:.2f} GB")
    assert done.returncode == 0, done.stderr[-3000:]
    f = read_aliases(out / "aliases.json")
    (rec,) = f.aliases
    assert rec.category_id == 16 and rec.token_ids and len(rec.token_ids) <= 2
    assert f.provenance.model_source == "random:full"
    assert (out / "figures" / "16.png").stat().st_size > 10_000 and (out / "report.md").is_file()
    assert peak_gb < PEAK_RSS_GB
