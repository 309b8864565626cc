"""Many processes, one run: ``torchrun --nproc-per-node 2 main.py`` (2 gloo processes on CPU) writes the
same merged outputs as one process with the same seeds, resumes per category, and the strategy
comparison shards its cells the same way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_optimizer import TINY

REPO = Path(__file__).resolve().parents[1]
TIMING = ("wall_time", "set_wall_time", "ms_per_pair", "created", "command")  # the only fields that may differ


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from tests.discovery_helpers import renamed_world

    root = tmp_path_factory.mktemp("dist")
    data, cats = renamed_world(root / "world", 3)  # 3 categories: rank 0 runs two, rank 1 one
    config = root / "tiny.json"
    config.write_text(json.dumps({**TINY, "index": {**TINY["index"], "cache_dir": str(root / "index")}}))
    return root, data, cats, config


def _run(root: Path, nproc: int, argv: list[str]) -> None:
    """Run ``argv`` in 1 process or under torchrun; each run gets its own empty feature cache, so
    2 ranks fill one cache side by side (categories share images)."""
    cache = root / f"features-{len(list(root.glob('features-*')))}"
    env = {**os.environ, "SAM3_ALIAS_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    launch = [sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    launch += [] if nproc == 1 else ["--nproc-per-node", str(nproc)]
    done = subprocess.run([*launch, *argv], cwd=root, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in TIMING}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _load(path: Path):
    return _strip(json.loads(path.read_text()))


def _history(path: Path) -> list:
    return [_strip(json.loads(line)) for line in path.read_text().splitlines()]


def test_two_processes_equal_one(setup):
    root, data, cats, config = setup
    argv = [str(REPO / "main.py"), "--dataset", str(data), "--model", "random:tiny", "--config", str(config)]
    argv += ["--categories", *map(str, cats), "--device", "cpu", "--no-progress", "--threads", "1", "--no-figures"]
    one, two = root / "one", root / "two"
    _run(root, 1, [*argv, "--output", str(one)])
    _run(root, 2, [*argv, "--output", str(two)])
    for name in ("aliases.json", "summary.json"):
        assert _load(two / name) == _load(one / name), name
    assert [r["category_id"] for r in json.loads((two / "aliases.json").read_text())["aliases"]] == cats
    for cid in cats:
        assert _load(two / "categories" / f"{cid}.json") == _load(one / "categories" / f"{cid}.json")
        assert _history(two / "history" / f"{cid}.jsonl") == _history(one / "history" / f"{cid}.jsonl")
    assert (two / "report.txt").is_file()
    assert not [p.name for p in two.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]

    # --resume per category under 2 processes: finished checkpoints are kept byte for byte
    kept = {cid: (two / "categories" / f"{cid}.json").read_bytes() for cid in cats[1:]}
    (two / "categories" / f"{cats[0]}.json").unlink()
    (two / "aliases.json").unlink()
    _run(root, 2, [*argv, "--output", str(two), "--resume"])
    assert all((two / "categories" / f"{cid}.json").read_bytes() == b for cid, b in kept.items())
    assert _load(two / "aliases.json") == _load(one / "aliases.json")


def test_comparison_cells_sharded(setup):
    root, data, cats, config = setup
    argv = ["-m", "alias_opt.compare", "--dataset", str(data), "--model", "random:tiny", "--config", str(config)]
    argv += ["--categories", ",".join(map(str, cats[:2])), "--strategies", "scan,pez+gcg", "--budget", "400"]
    argv += ["--seeds", "0", "--device", "cpu", "--no-progress", "--threads", "1", "--no-report"]
    _run(root, 1, [*argv, "--output", str(root / "c1")])
    _run(root, 2, [*argv, "--output", str(root / "c2")])
    a, b = _load(root / "c1" / "results.json"), _load(root / "c2" / "results.json")
    assert len(b["cells"]) == 4 and a == b


def test_one_category_images_sharded(setup):
    """--shard images: both ranks run the category, each grounding its share of the images; the
    output equals one process's (losses are summed exactly; gradients differ at ~1e-7 in float
    order, which moves no search step here) and rank 1 writes no per-category file."""
    root, data, cats, config = setup
    argv = [str(REPO / "main.py"), "--dataset", str(data), "--model", "random:tiny", "--config", str(config)]
    argv += ["--categories", str(cats[0]), "--device", "cpu", "--no-progress", "--threads", "1", "--no-figures"]
    one, two = root / "img1", root / "img2"
    _run(root, 1, [*argv, "--output", str(one)])
    _run(root, 2, [*argv, "--output", str(two), "--shard", "images"])
    for name in ("aliases.json", "summary.json"):
        assert _load(two / name) == _load(one / name), name
    assert _history(two / "history" / f"{cats[0]}.jsonl") == _history(one / "history" / f"{cats[0]}.jsonl")
    assert sorted(p.name for p in (two / "categories").iterdir()) == [f"{cats[0]}.json"]
