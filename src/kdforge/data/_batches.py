"""In-memory datasets as dicts of tensors, and a deterministic, resumable batch order.

Every batch in kdforge is a ``dict[str, Tensor]``; the key ``"y"`` holds targets
and every other key is passed to the model as a keyword argument.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class TensorData:
    """A split held in memory: equal-length tensors keyed by name."""

    tensors: dict[str, Tensor]

    def __post_init__(self) -> None:
        lengths = {k: len(v) for k, v in self.tensors.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"tensors of different lengths: {lengths}")

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def take(self, index: Tensor) -> dict[str, Tensor]:
        """Rows ``index`` of every tensor."""
        return {k: v[index] for k, v in self.tensors.items()}


def epoch_order(n: int, seed: int, epoch: int) -> Tensor:
    """The shuffled example order for one epoch: a pure function of (seed, epoch)."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g)


def iter_batches(
    data: TensorData,
    batch_size: int,
    *,
    seed: int | None = None,
    epoch: int = 0,
    start: int = 0,
    drop_last: bool = False,
    rank: int = 0,
    world: int = 1,
) -> Iterator[dict[str, Tensor]]:
    """Yield batches; shuffled by (seed, epoch) when ``seed`` is given.

    Args:
        start: index of the first batch to yield (resume mid-epoch).
        rank, world: each global batch is split into ``world`` contiguous shards;
            this process gets shard ``rank``.
    """
    n = len(data)
    order = epoch_order(n, seed, epoch) if seed is not None else torch.arange(n)
    n_batches = n // batch_size if drop_last else -(-n // batch_size)
    for b in range(start, n_batches):
        idx = order[b * batch_size : (b + 1) * batch_size]
        if world > 1:
            idx = idx.tensor_split(world)[rank]
        yield data.take(idx)


def num_batches(n: int, batch_size: int, drop_last: bool) -> int:
    """Number of batches per epoch."""
    return n // batch_size if drop_last else -(-n // batch_size)
