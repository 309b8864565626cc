"""One category's images shared by 2 gloo processes: the sharded Scorer's losses and gradients equal
one process's (``alias_opt.dist.image_sharding``)."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from alias_opt.dist import DistContext, close, image_shard, image_sharding, init_from_env

SEQS = [(320, 736), (1000,), (4000, 5000, 6000)]


def _numbers(backend, cache) -> dict:
    """Losses of SEQS (all images, then a subset) and the gradient of one prompt's loss w.r.t. its
    token embeddings, from an objective built in the current sharding context."""
    from alias_opt.search.projection import embed_prompts
    from tests.discovery_helpers import objective

    obj = objective(backend, n_pos=3, n_neg=2)
    full = obj.scorer.seq_losses(SEQS, obj.scorer.all_idx)
    sub = obj.scorer.seq_losses(SEQS, obj.scorer.all_idx[[0, 2, 3]])
    E = backend.token_embeddings.detach().float()
    rows = E[list(SEQS[0])].clone().requires_grad_(True)
    embeds, mask = embed_prompts(E, backend.tokenizer.sot_id, backend.tokenizer.eot_id, [rows])
    loss = obj.scorer.loss_grad(embeds, mask, obj.scorer.all_idx)
    return {"full": full, "sub": sub, "loss": loss.tolist(), "grad": rows.grad.clone(), "shard": obj.scorer.shard}


def _backend(cache):
    from sam3 import Sam3Backend
    from tests.conftest import lively_weights

    backend = Sam3Backend.load("random:tiny@7", device="cpu", cache_dir=cache)
    lively_weights(backend.model, seed=7)
    return backend


def _worker(rank: int, world: int, port: int, root: str, out: dict) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    ctx = init_from_env("cpu")
    backend = _backend(f"{root}/cache{rank}")
    with image_sharding(ctx):
        res = _numbers(backend, None)
    res["shard"] = (res["shard"].rank, res["shard"].world_size)
    out[rank] = res
    close(ctx)


def test_context_is_scoped():
    assert image_shard() is None
    ctx = DistContext(0, 2, 0, 2, "gloo")
    with image_sharding(ctx):
        assert image_shard() is ctx
        with image_sharding(DistContext()):  # alone: nothing is sharded
            assert image_shard() is None
    assert image_shard() is None
    assert ctx.owns(5).tolist() == [True, False, True, False, True]
    assert DistContext(1, 2, 1, 2, "gloo").owns(3).tolist() == [False, True, False]


def test_two_processes_share_one_category(tmp_path):
    torch.set_num_threads(1)
    alone = _numbers(_backend(tmp_path / "cache_alone"), None)
    assert alone["shard"] is None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(2, port, str(tmp_path), out), nprocs=2, join=True)
        res = dict(out)
    assert res[0]["shard"] == (0, 2) and res[1]["shard"] == (1, 2)
    # each pair computed by one rank, summed with zeros: the losses equal one process's up to float rounding
    # (a rank's pair batches hold its pairs only, and some CPUs' kernels round batch-dependently: on an EPYC
    # the gradient pass's loss differed by 2e-7 relative; no-grad losses came out bitwise equal there)
    for rank in (0, 1):
        assert res[rank]["full"] == pytest.approx(alone["full"], rel=1e-6, abs=0)
        assert res[rank]["sub"] == pytest.approx(alone["sub"], rel=1e-6, abs=0)
        assert res[rank]["loss"] == pytest.approx(alone["loss"], rel=1e-6, abs=0)
        # gradients: the per-image contributions are summed in another order
        torch.testing.assert_close(res[rank]["grad"], alone["grad"], rtol=1e-4, atol=1e-6)
    assert float(alone["grad"].abs().max()) > 1e-4  # the comparison compares something
    assert len(set(alone["full"])) == len(SEQS)
