"""Data parallelism seen from inside the training loop, through ``torch.distributed`` only.

Whoever starts the processes (Ray Train, torchrun) sets up the process group; the loop asks
this module for its rank and world size and sums numbers across ranks. Without a process
group it is rank 0 of 1 and every call is the identity, so the single-process loop is the
same code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1

    @classmethod
    def current(cls) -> DistContext:
        """The process group's rank and size, or rank 0 of 1 when there is none."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def sum(self, values: list[float], device: torch.device | None = None) -> list[float]:
        """Element-wise sum of ``values`` over all ranks (every rank must call it)."""
        if not self.active:
            return list(values)
        backend = dist.get_backend()
        where = device if backend == "nccl" else torch.device("cpu")
        tensor = torch.tensor(values, dtype=torch.float64, device=where)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.cpu().tolist()

    def barrier(self) -> None:
        if self.active:
            dist.barrier()
