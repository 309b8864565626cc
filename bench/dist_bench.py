"""Many processes and threads on one machine: torchrun's speed-up, and what oversubscription costs.

(a) ``ranks``: the same ``main.py`` run (a generated toy world, several categories) in 1 process
    and under ``torchrun --nproc-per-node N``, each with its own empty feature cache; prints wall
    times, the speed-up and whether the merged outputs are equal (all but timing fields).
(b) ``images``: one category of >= 64 train images (``--max-negatives`` negatives beside its
    positives) in 1 process and under ``torchrun --nproc-per-node N main.py --shard images`` (every
    rank runs the category, its images split across ranks, losses and gradients all-reduced).
(c) ``threads``: the per-pair cost of scoring candidates as discovery does (cached image features,
    candidates x images batched), alone and beside one competing process that keeps every usable
    core busy with torch matmuls, at 1 thread, the count ``alias_opt.dist.cpu_threads`` picks and an
    oversubscribed count (default 4 x the usable cores), each twice (in both orders).

    python bench/dist_bench.py ranks --nproc 2 --categories 4 --images 60
    python bench/dist_bench.py images --nproc 2 --images 200 --max-negatives 60
    python bench/dist_bench.py threads --candidates 48
    OMP_WAIT_POLICY=ACTIVE python bench/dist_bench.py threads --candidates 48   # spinning threads (before)

Both measure on whatever else the machine is running; the printed load average says how loaded it was.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import alias_opt  # noqa: E402,F401  (before torch: sets OMP_WAIT_POLICY=PASSIVE unless set)

TIMING = ("wall_time", "set_wall_time", "ms_per_pair", "created", "command")


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in TIMING}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ---------------------------------------------------------------------------------------- ranks
def _timed_runs(root: Path, args, base: list[str], extra_n: list[str]) -> dict:
    """``base`` in 1 process and under torchrun with ``args.nproc`` ranks (``extra_n`` added there),
    each with its own empty feature cache; wall times, speed-up, merged outputs equal."""
    out: dict = {"usable_cores": len(os.sched_getaffinity(0))}
    for n in (1, args.nproc):
        env = {**os.environ, "SAM3_ALIAS_CACHE": str(root / f"features-{n}"), "HF_HUB_OFFLINE": "1"}
        launch = [sys.executable] if n == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        launch += [] if n == 1 else ["--nproc-per-node", str(n)]
        load = _load()
        t = time.perf_counter()
        argv = [*launch, *base, "--output", str(root / f"out-{n}"), *([] if n == 1 else extra_n)]
        done = subprocess.run(argv, env=env, capture_output=True)
        out[f"wall_s_{n}"] = round(time.perf_counter() - t, 2)
        out[f"load_before_{n}"] = load
        if done.returncode != 0:
            sys.exit(done.stderr.decode()[-3000:])
    out["speedup"] = round(out["wall_s_1"] / out[f"wall_s_{args.nproc}"], 2)
    a, b = (_strip(json.loads((root / f"out-{n}" / "aliases.json").read_text())) for n in (1, args.nproc))
    out["merged_equal"] = a == b
    return out


def _main_argv(root: Path, args, cats: list[int], config: str) -> list[str]:
    base = [str(REPO / "main.py"), "--dataset", str(root / "world"), "--model", args.model, "--config", config]
    return base + ["--categories", *map(str, cats), "--device", "cpu", "--no-progress", "--no-figures"]


def ranks(args) -> dict:
    from alias_opt.data.loader import CocoDataset
    from sam3.toy.world import write_dataset

    root = Path(tempfile.mkdtemp(prefix="dist_bench_"))
    write_dataset(root / "world", "renamed", images=args.images, seed=args.seed)
    ds = CocoDataset.open(root / "world")
    cats = [ts.category_id for ts in ds.target_sets() if any(t.is_positive for t in ts.train)][: args.categories]
    out = {"categories": cats, "images": args.images}
    return {**out, **_timed_runs(root, args, _main_argv(root, args, cats, args.config), [])}


def images(args) -> dict:
    from alias_opt.config import load_config
    from alias_opt.data.loader import CocoDataset
    from sam3.toy.world import write_dataset

    root = Path(tempfile.mkdtemp(prefix="dist_bench_"))
    write_dataset(root / "world", "renamed", images=args.images, seed=args.seed)
    cfg = json.loads(Path(args.config).read_text())
    cfg["max_negatives"] = args.max_negatives
    (root / "config.json").write_text(json.dumps(cfg))
    split = load_config(root / "config.json")
    sets = CocoDataset.open(root / "world").target_sets(
        seed=split.seed, train_fraction=split.train_fraction, max_negatives=split.max_negatives
    )
    ts = max(sets, key=lambda t: len(t.train))
    out = {"category": ts.category_id, "train_images": len(ts.train), "test_images": len(ts.test)}
    out["positive_train_images"] = sum(t.is_positive for t in ts.train)
    if len(ts.train) < 64:
        sys.exit(f"the largest category has {len(ts.train)} train images (< 64): raise --images or --max-negatives")
    argv = _main_argv(root, args, [ts.category_id], str(root / "config.json"))
    return {**out, **_timed_runs(root, args, argv, ["--shard", "images"])}


# ---------------------------------------------------------------------------------------- threads
_HOG = """
import os, torch
torch.set_num_threads(len(os.sched_getaffinity(0)))
a = torch.randn(512, 512)
while True:
    a = torch.tanh(a @ a)
"""


def _pair_ms(make, cands, repeats: int) -> float:
    """Best-of-``repeats`` ms per prompt-image pair; a fresh Objective each time (no memo hits)."""
    best, pairs = float("inf"), 1
    for _ in range(repeats):
        obj = make()
        t = time.perf_counter()
        obj.losses(cands)
        best = min(best, time.perf_counter() - t)
        pairs = len(cands) * len(obj.images)
    return 1000 * best / pairs


def threads(args) -> dict:
    import numpy as np
    import torch

    from alias_opt.config import load_config
    from alias_opt.data.loader import CocoDataset
    from alias_opt.discover import encode
    from alias_opt.dist import cpu_threads, usable_cores
    from alias_opt.search.objective import Objective
    from sam3 import Sam3Backend
    from sam3.toy.world import write_dataset

    root = Path(tempfile.mkdtemp(prefix="dist_bench_"))
    write_dataset(root / "world", "renamed", images=args.images, seed=args.seed)
    ts = CocoDataset.open(root / "world").target_sets()[0]
    cfg = load_config(args.config)
    backend = Sam3Backend.load(args.model, device="cpu", cache_dir=root / "features")
    images = ts.train[: args.pair_images]
    feats = encode(backend, images)
    rng = np.random.default_rng(0)
    cands = [tuple(int(x) for x in rng.integers(300, 40000, 2)) for _ in range(args.candidates)]
    picked, over = cpu_threads(None, 1), args.oversubscribe or 4 * usable_cores()
    counts = list(dict.fromkeys([1, picked, over]))
    out = {"usable_cores": usable_cores(), "picked_threads": picked, "oversubscribed_threads": over}
    out["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY")
    out["pairs"] = len(cands) * len(images)
    for hog in (False, True):
        proc = subprocess.Popen([sys.executable, "-c", _HOG]) if hog else None
        try:
            if proc:
                time.sleep(1.0)
            for n in counts + counts[::-1]:  # each count twice, in both orders
                torch.set_num_threads(n)

                def make():
                    return Objective(backend, images, cfg.loss, feats=feats)

                make().losses(cands[:2])  # warm up
                t_cpu = time.process_time()
                ms = _pair_ms(make, cands, args.repeats)
                key = f"{'beside_hog' if hog else 'alone'}_{n}t"
                key += "_again" if f"{key}_ms_per_pair" in out else ""
                out[f"{key}_ms_per_pair"] = round(ms, 3)
                out[f"{key}_cpu_s"] = round(time.process_time() - t_cpu, 2)
                out[f"{key}_load"] = _load()
        finally:
            if proc:
                proc.kill()
                proc.wait()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("ranks", "images", "threads"))
    ap.add_argument("--model", default="toy", help="model source (default the shipped toy model)")
    ap.add_argument("--config", default=str(REPO / "configs" / "fast.json"), help="discovery config JSON")
    ap.add_argument("--images", type=int, default=60, help="images in the generated toy world")
    ap.add_argument("--seed", type=int, default=11, help="world seed")
    ap.add_argument("--nproc", type=int, default=2, help="ranks: processes under torchrun (vs 1)")
    ap.add_argument("--categories", type=int, default=4, help="ranks: categories to discover")
    ap.add_argument("--candidates", type=int, default=48, help="threads: candidates scored per measurement")
    ap.add_argument("--pair-images", type=int, default=16, help="threads: train images scored per candidate")
    ap.add_argument("--repeats", type=int, default=3, help="threads: best of this many timings")
    ap.add_argument(
        "--oversubscribe", type=int, default=0, help="threads: the oversubscribed count (default 4 x cores)"
    )
    ap.add_argument("--max-negatives", type=int, default=60, help="images: negative train images of the category")
    args = ap.parse_args(argv)
    res = {"ranks": ranks, "images": images, "threads": threads}[args.what](args)
    res["load_average_at_end"] = _load()
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
