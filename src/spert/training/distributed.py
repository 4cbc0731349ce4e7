"""Data-parallel plumbing: the process group from torchrun's environment, ranks, collectives.

``torchrun --nproc_per_node N -m spert train ...`` starts N processes and sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in each; :func:`setup`
joins them into one process group (NCCL on CUDA, gloo on CPU). Without those variables
training runs as one plain process and none of this is used.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from spert.config import ConfigError
from spert.model.modeling import default_device

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: The environment variables torchrun (torch.distributed.run) sets in every worker.
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass
class DistributedContext:
    """Where this process stands: its rank among ``world_size`` processes and its device."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    enabled: bool = False
    """True when processes train together (torchrun or an initialized process group)."""
    owns_group: bool = False
    """True when :func:`setup` created the process group (and :meth:`close` destroys it)."""

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes models, metrics, logs and checkpoints."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()

    def all_gather(self, obj: T) -> list[T]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: T, src: int = 0) -> T:
        """Rank ``src``'s ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj if self.rank == src else None]
        dist.broadcast_object_list(box, src=src)
        return box[0]  # type: ignore[return-value]

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over all ranks, in place (and return it)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def close(self) -> None:
        """Leave the process group if :func:`setup` created it (after all ranks get here)."""
        if self.owns_group and dist.is_initialized():
            self.barrier()
            dist.destroy_process_group()
            self.owns_group = False


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in ("RANK", "WORLD_SIZE"))


def env_rank() -> int:
    """This process's global rank per torchrun's environment (0 when not launched by it)."""
    return int(os.environ.get("RANK", "0"))


def setup(device: torch.device | str | None = None) -> DistributedContext:
    """Join the process group described by torchrun's environment variables, if any.

    An already initialized process group (e.g. by Accelerate or your own launcher) is used as
    it is. Under torchrun, the device defaults to ``cuda:LOCAL_RANK`` when CUDA is available,
    else the CPU; the backend is NCCL on CUDA and gloo on the CPU.
    """
    if dist.is_available() and dist.is_initialized():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        return DistributedContext(
            device=_process_device(device, local_rank),
            rank=dist.get_rank(),
            world_size=dist.get_world_size(),
            local_rank=local_rank,
            enabled=True,
        )
    if not launched_by_torchrun():
        chosen = torch.device(device) if device is not None else default_device()
        return DistributedContext(device=chosen)
    if not dist.is_available():  # pragma: no cover
        raise ConfigError("this torch build has no torch.distributed: cannot train with torchrun")
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise ConfigError(
            f"distributed training: environment variable(s) {', '.join(missing)} not set "
            "(launch with torchrun)"
        )
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    chosen = _process_device(device, local_rank)
    backend = "nccl" if chosen.type == "cuda" else "gloo"
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    dist.init_process_group(
        backend=backend,
        init_method="env://",
        rank=rank,
        world_size=world_size,
        device_id=chosen if chosen.type == "cuda" else None,
    )
    if rank == 0:
        logger.info(
            "data-parallel training: %d processes, backend %s, rank 0 on %s",
            world_size,
            backend,
            chosen,
        )
    return DistributedContext(
        device=chosen,
        rank=rank,
        world_size=world_size,
        local_rank=local_rank,
        enabled=True,
        owns_group=True,
    )


def _process_device(device: torch.device | str | None, local_rank: int) -> torch.device:
    """This process's device: ``cuda:LOCAL_RANK`` for CUDA without an index."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    chosen = torch.device(device)
    if chosen.type == "cuda" and chosen.index is None:
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise ConfigError(
                f"LOCAL_RANK {local_rank} but only {count} CUDA device(s) visible: start at "
                "most one process per GPU (torchrun --nproc_per_node)"
            )
        chosen = torch.device("cuda", local_rank)
    return chosen


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """Rank ``rank``'s share of ``items``: every ``world_size``-th one, from ``rank`` on."""
    return list(items[rank::world_size])


def unshard(shards: Sequence[Sequence[T]]) -> list[T]:
    """Undo :func:`shard`: the items of all ranks' shares, in their original order."""
    world_size = len(shards)
    total = sum(len(s) for s in shards)
    out: list[Any] = [None] * total
    for rank, part in enumerate(shards):
        out[rank::world_size] = part
    return out


def rank_seed(seed: int, rank: int, *more: int) -> int:
    """A seed for rank ``rank``'s own random streams (dropout), derived from the run's seed."""
    return int(np.random.SeedSequence([seed, rank, *more]).generate_state(1, np.uint64)[0] >> 1)
