"""Resumable, reproducible batches: the batch of global step ``s`` depends only on (seed, s), never on history.

torch's ``DistributedSampler`` + ``DataLoader`` cannot start in the middle of an epoch, and augmentation randomness in
worker processes depends on the number of workers. Here every step's batch is a pure function of ``(seed, step)``:

* :class:`StepBatchSampler` yields, for step ``s``, ``batch_size`` items of an endless stream of per-epoch permutations
  (sharded by rank), each paired with its own item seed;
* :class:`SeededItems` seeds Python, NumPy and torch with that item seed before calling the wrapped dataset, so any
  augmentation (torchvision transforms included) is reproducible whatever the worker count, and resuming at step ``s``
  replays exactly the batches an uninterrupted run would have seen.

Example:
    >>> sampler = StepBatchSampler(num_items=5, batch_size=2, seed=0, start_step=0)
    >>> first = next(iter(sampler))
    >>> again = next(iter(StepBatchSampler(num_items=5, batch_size=2, seed=0, start_step=0)))
    >>> first == again
    True
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

_MASK = (1 << 63) - 1


def item_seed(seed: int, epoch: int, position: int) -> int:
    """A well-mixed 63-bit seed for one item of one epoch (NumPy's SeedSequence does the mixing)."""
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(2, np.uint64)[0]) & _MASK


class StepBatchSampler:
    """Endless batch sampler whose step ``s`` batch is a pure function of ``(seed, s)`` (see module docstring)."""

    def __init__(self, num_items: int, batch_size: int, seed: int, start_step: int = 0,
                 rank: int = 0, world_size: int = 1, shuffle: bool = True):
        if num_items <= 0:
            raise ValueError("cannot sample batches from an empty dataset (0 items)")
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.start_step, self.rank, self.world_size, self.shuffle = start_step, rank, world_size, shuffle
        # every rank sees the same number of items per epoch (the shard of the padded permutation)
        self.per_rank = -(-num_items // world_size)

    def _epoch_indices(self, epoch: int) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            perm = torch.randperm(self.num_items, generator=g).tolist()
        else:
            perm = list(range(self.num_items))
        padded = (perm * (self.world_size + 1))[: self.per_rank * self.world_size]
        return padded[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        pos = self.start_step * self.batch_size  # position in this rank's endless stream
        epoch, offset = divmod(pos, self.per_rank)
        indices = self._epoch_indices(epoch)
        while True:
            batch = []
            while len(batch) < self.batch_size:
                if offset == self.per_rank:
                    epoch, offset = epoch + 1, 0
                    indices = self._epoch_indices(epoch)
                batch.append((indices[offset], item_seed(self.seed, epoch, offset * self.world_size + self.rank)))
                offset += 1
            yield batch


class SeededItems(Dataset):
    """Wrap a map-style dataset so that ``self[(index, seed)]`` seeds all RNGs with ``seed`` and returns ``dataset[index]``."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        random.seed(seed)
        np.random.seed(seed & 0xFFFFFFFF)
        torch.manual_seed(seed)
        return self.dataset[index]
