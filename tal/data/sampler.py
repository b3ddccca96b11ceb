"""Global batches shared out across data-parallel ranks.

Every rank draws the same seeded permutation of the dataset for an epoch, cuts it into global
batches of ``batch_size`` and takes its own slice of each. So the data of one optimiser step,
summed over the ranks, is the same for any number of workers: the global batch size is kept
when workers change, and a 2-worker run sees exactly the batches of a 1-worker run. With one
rank the order is the one ``DataLoader(shuffle=True)`` draws from the same generator.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ShardedBatchSampler(Sampler[list[int]]):
    """This rank's item indices of each global batch (a batch sampler for ``DataLoader``).

    A last global batch with fewer items than ranks is topped up from the start of the
    epoch's order (as ``DistributedSampler`` pads), so that no rank gets an empty step; with
    ``drop_last`` a short last batch is left out instead (unless it is the only one), as
    BatchNorm training wants.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if size < 1:
            raise ValueError(f"sampler: the dataset is empty (size {size})")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"sampler: rank {rank} of world size {world_size} is not valid")
        if batch_size < world_size:
            raise ValueError(
                f"global batch size {batch_size} is smaller than the {world_size} workers: "
                "every worker needs at least one item per step (raise training.batch_size)"
            )
        self.size, self.batch_size = size, batch_size
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self) -> list[int]:
        """The epoch's permutation of all items (the same on every rank)."""
        generator = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        return torch.randperm(self.size, generator=generator).tolist()

    def global_batches(self) -> list[list[int]]:
        order = self.order()
        batches = [order[i : i + self.batch_size] for i in range(0, self.size, self.batch_size)]
        if self.drop_last and len(batches) > 1 and len(batches[-1]) < self.batch_size:
            return batches[:-1]
        if len(batches[-1]) < self.world_size:
            short = self.world_size - len(batches[-1])
            batches[-1] = batches[-1] + (order * self.world_size)[:short]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches():
            yield shard(batch, self.rank, self.world_size)

    def __len__(self) -> int:
        if self.drop_last and self.size > self.batch_size:
            return self.size // self.batch_size
        return -(-self.size // self.batch_size)


def shard(batch: list[int], rank: int, world_size: int) -> list[int]:
    """Rank ``rank``'s contiguous share of ``batch`` (sizes differ by at most one)."""
    base, extra = divmod(len(batch), world_size)
    start = rank * base + min(rank, extra)
    return batch[start : start + base + (rank < extra)]
