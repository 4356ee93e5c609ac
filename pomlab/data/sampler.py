"""Endless shuffled batches, sharded over DDP ranks, with a resumable state (docs/data.md)."""
from __future__ import annotations

import torch
from torch import Tensor

from ..checks import check_positive_int


class ShardedBatchSampler:
    def __init__(self, dataset_size: int, batch_size: int, *, rank: int = 0, world_size: int = 1,
                 seed: int = 0):
        check_positive_int("dataset_size", dataset_size)
        check_positive_int("batch_size", batch_size)
        check_positive_int("world_size", world_size)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.dataset_size, self.batch_size = dataset_size, batch_size
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.batches_per_epoch = dataset_size // world_size // batch_size
        if self.batches_per_epoch < 1:
            raise ValueError(f"the dataset ({dataset_size} items) is smaller than one batch of "
                             f"{batch_size} per rank on {world_size} rank(s)")
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch, self.position = 0, 0
        self._start_epoch()

    def _start_epoch(self) -> None:
        self._epoch_state = self.generator.get_state()
        perm = torch.randperm(self.dataset_size, generator=self.generator)
        mine = perm[self.rank::self.world_size][: self.batches_per_epoch * self.batch_size]
        self._batches = mine.view(self.batches_per_epoch, self.batch_size)

    def remaining(self) -> Tensor:
        """The batches of the current epoch not consumed yet, (k, batch_size)."""
        return self._batches[self.position:]

    def advance(self) -> None:
        """Mark one batch consumed (moving to the next epoch after the last one)."""
        self.position += 1
        if self.position == self.batches_per_epoch:
            self.epoch, self.position = self.epoch + 1, 0
            self._start_epoch()

    def next_batch(self) -> Tensor:
        batch = self._batches[self.position]
        self.advance()
        return batch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "generator": self._epoch_state,
                "dataset_size": self.dataset_size, "batch_size": self.batch_size,
                "world_size": self.world_size, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        for key in ("dataset_size", "batch_size", "world_size"):
            if state[key] != getattr(self, key):
                raise ValueError(f"cannot resume the data order: the checkpoint has {key}="
                                 f"{state[key]}, this run has {getattr(self, key)}")
        self.epoch, self.position = state["epoch"], state["position"]
        self.generator.set_state(state["generator"])
        self._start_epoch()
