"""torch.distributed helpers: sharding, gathering and thread counts, with 2 gloo processes."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from alias_opt.dist import DistContext, close, cpu_threads, init_from_env, usable_cores


def test_alone():
    ctx = init_from_env()
    assert ctx == DistContext() and ctx.is_main and not ctx.distributed
    assert ctx.shard([1, 2, 3]) == [1, 2, 3] and ctx.gather("x") == ["x"]
    t = torch.ones(2)
    assert ctx.all_reduce_sum(t) is t and t.tolist() == [1.0, 1.0]


def test_shard_covers_items_once():
    items = list(range(11))
    shards = [DistContext(r, 3, r, 3, "gloo").shard(items) for r in range(3)]
    assert sorted(sum(shards, [])) == items and shards[1] == [1, 4, 7, 10]


def test_cpu_threads():
    assert cpu_threads(3) == 3
    assert cpu_threads(None, 1) == usable_cores()
    assert cpu_threads(None, usable_cores() * 4) == 1
    with pytest.raises(ValueError):
        cpu_threads(0)


def _worker(rank: int, world: int, port: int, out: dict) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    ctx = init_from_env("cpu")
    mine = ctx.shard(list(range(5)))
    gathered = ctx.gather(mine)
    t = ctx.all_reduce_sum(torch.tensor([float(rank + 1)]))
    ctx.barrier()
    out[rank] = (ctx.backend, mine, gathered, t.item(), ctx.is_main)
    close(ctx)


def test_two_gloo_processes():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(2, port, out), nprocs=2, join=True)
        res = dict(out)
    assert res[0] == ("gloo", [0, 2, 4], [[0, 2, 4], [1, 3]], 3.0, True)
    assert res[1] == ("gloo", [1, 3], [[0, 2, 4], [1, 3]], 3.0, False)
