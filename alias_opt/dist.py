"""Many processes, one run: ``torch.distributed`` as ``torchrun`` starts it, and CPU threads that share a machine.

``torchrun --nproc-per-node N main.py ...`` sets RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE /
MASTER_ADDR / MASTER_PORT; ``init_from_env`` joins the process group (gloo on CPU, NCCL on CUDA)
and returns a ``DistContext``; without those variables it is a one-process context and nothing is
initialized. Work is split by ``shard`` (round robin, so every rank's share is fixed by the item
list alone), per-rank results come back to every rank with ``gather`` (``all_gather_object``), and
one rank (``is_main``) writes merged outputs. Nothing here moves data or schedules work itself.

``cpu_threads`` picks the torch thread count from the cores this process may use (its CPU
affinity, not the machine's core count) divided among the ranks that share the node, so N ranks
on one machine do not oversubscribe it.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a run."""

    rank: int = 0  # global rank
    world_size: int = 1  # number of processes
    local_rank: int = 0  # rank on this node
    local_world_size: int = 1  # processes on this node
    backend: str | None = None  # "gloo" / "nccl" when a process group is up, else None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None and self.world_size > 1

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's share of ``items``: every ``world_size``-th item from ``rank``."""
        return list(items[self.rank :: self.world_size])

    def gather(self, obj: T) -> list[T]:
        """Every rank's ``obj``, in rank order (a list of one without a process group)."""
        if not self.distributed:
            return [obj]
        out: list = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over ranks in place (a no-op alone); returns it. Under NCCL a CPU tensor
        travels through the rank's GPU."""
        if self.distributed:
            if self.backend == "nccl" and tensor.device.type != "cuda":
                work = tensor.to(f"cuda:{torch.cuda.current_device()}")
                dist.all_reduce(work, op=dist.ReduceOp.SUM)
                tensor.copy_(work.cpu())
            else:
                dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def owns(self, n: int) -> torch.Tensor:
        """(n,) bool: which of n items (e.g. the images of one prompt batch) this rank computes (round robin)."""
        return torch.arange(n) % self.world_size == self.rank if self.distributed else torch.ones(n, dtype=torch.bool)


_IMAGE_SHARD: contextvars.ContextVar[DistContext | None] = contextvars.ContextVar("image_shard", default=None)


@contextlib.contextmanager
def image_sharding(ctx: DistContext) -> Iterator[None]:
    """Within the block, every ``Scorer`` built splits its prompt-image pairs across ``ctx``'s ranks by
    image (round robin) and all-reduces the losses and the gradients, so all ranks see the same
    numbers and take the same search steps: one category's images shared by several processes. All
    ranks must run the same categories with the same seeds inside the block."""
    token = _IMAGE_SHARD.set(ctx if ctx.distributed else None)
    try:
        yield
    finally:
        _IMAGE_SHARD.reset(token)


def image_shard() -> DistContext | None:
    """The context of the enclosing ``image_sharding`` block (None outside one, or alone)."""
    return _IMAGE_SHARD.get()


def init_from_env(device: str = "cpu") -> DistContext:
    """Join the process group ``torchrun`` describes in the environment, or run alone.

    Args:
        device: the run's device; NCCL when it is CUDA, else gloo.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    backend = "nccl" if str(device).startswith("cuda") else "gloo"
    if not dist.is_initialized():
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    logger.info("rank %d of %d (%s)", rank, world, backend)
    return DistContext(rank, world, local_rank, local_world, backend)


def start(device: str = "auto", threads: int | None = None) -> tuple[DistContext, str]:
    """What an entry point does first: join torchrun's process group (if any) and set torch's CPU threads.

    Args:
        device: the ``--device`` argument; ``auto`` and ``cuda`` become ``cuda:LOCAL_RANK`` under NCCL.
        threads: ``--threads`` (default: this rank's share of the usable cores, see ``cpu_threads``).

    Returns:
        the context and the device this rank runs on.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from sam3.loading import pick_device

        ctx = init_from_env(str(pick_device(device)))
        if ctx.backend == "nccl" and str(device) in ("auto", "cuda"):
            device = f"cuda:{ctx.local_rank}"
    else:
        ctx = DistContext()
    n = cpu_threads(threads, ctx.local_world_size)
    torch.set_num_threads(n)
    logger.info(
        "rank %d: %d torch threads (%d usable cores, %d ranks on this node)",
        ctx.rank,
        n,
        usable_cores(),
        ctx.local_world_size,
    )
    return ctx, device


@contextlib.contextmanager
def local_first(ctx: DistContext) -> Iterator[None]:
    """Run the block on each node's local rank 0 first, then on the node's other ranks.

    For work that fills a cache on disk (the vocabulary index, a generated dataset): the first rank
    writes it, the others read it instead of computing it again beside it. Every rank calls
    ``barrier`` exactly once, so all ranks must enter the block.
    """
    if ctx.distributed and ctx.local_rank != 0:
        ctx.barrier()
    try:
        yield
    finally:
        if ctx.distributed and ctx.local_rank == 0:
            ctx.barrier()


def close(ctx: DistContext) -> None:
    """Leave the process group (at the end of a run)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def cpu_threads(requested: int | None = None, local_world_size: int = 1) -> int:
    """Torch CPU threads: ``requested`` if given, else this process's share of the usable cores."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--threads must be >= 1, got {requested}")
        return requested
    return max(1, usable_cores() // max(1, local_world_size))
