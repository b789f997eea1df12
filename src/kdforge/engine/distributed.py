"""Keeping processes in agreement under ``accelerate launch`` (each call a no-op on one process).

The engine does not wrap models in DDP (the frozen teacher must stay out of it), so it
reduces explicitly. Everything that must be equal on every process passes through here:

* :func:`average_step` averages, in one all-reduce, the gradients of *every* trainable
  parameter (zeros where a process has none), the running statistics of the trained
  batch-norm layers and the step's loss terms;
* :func:`broadcast_tensors` and :func:`broadcast_values` hand rank 0's model state and
  evaluation results to the others, so that the early-stopping decision and the saved model
  are the ones every process holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn


def world_size() -> int:
    """Number of processes in the default group (1 when none is initialised)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _reduce_dtype(tensors: Iterable[Tensor]) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def average_step(params: Sequence[nn.Parameter], buffers: Sequence[Tensor], values: Tensor) -> Tensor:
    """Average gradients, buffers and ``values`` over all processes in place; return averaged ``values``.

    Every parameter takes part whether or not this process computed its gradient, so all
    processes reduce vectors of the same length in the same order. A missing gradient counts
    as zeros, and a flag per parameter records whether any process had one: a parameter no
    process computed a gradient for keeps ``grad = None`` (as on one process, so optimizers
    skip it); one that only some processes used gets the average with zeros from the others,
    the gradient of the mean loss over the global batch.

    Args:
        params: the trainable parameters (the same list, in the same order, on every process).
        buffers: floating buffers to average (e.g. batch-norm running mean and variance).
        values: a 1-D tensor of per-process scalars (the step's loss terms).
    """
    world = world_size()
    if world == 1:
        return values
    grads = [p.grad for p in params]
    device = values.device
    dtype = _reduce_dtype([g for g in grads if g is not None] + list(buffers))
    parts = [
        g.reshape(-1).to(dtype) if g is not None else torch.zeros(p.numel(), dtype=dtype, device=device)
        for p, g in zip(params, grads, strict=True)
    ]
    parts += [b.reshape(-1).to(dtype) for b in buffers]
    has_grad = torch.tensor([g is not None for g in grads], dtype=dtype, device=device)
    flat = torch.cat([*parts, values.reshape(-1).to(dtype), has_grad])
    dist.all_reduce(flat)
    flat /= world
    flags = flat[flat.numel() - len(params) :].tolist()
    offset = 0
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        chunk = flat[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
        if g is not None:
            g.copy_(chunk)
        elif flags[i] > 0:  # some other process computed it: the average with our zeros
            p.grad = chunk.to(p.dtype).clone()
    for b in buffers:
        b.copy_(flat[offset : offset + b.numel()].view_as(b))
        offset += b.numel()
    return flat[offset : offset + values.numel()].to(values.dtype)


def broadcast_tensors(tensors: Sequence[Tensor], src: int = 0) -> None:
    """Overwrite ``tensors`` in place with rank ``src``'s values (one broadcast per dtype)."""
    if world_size() == 1:
        return
    by_dtype: dict[torch.dtype, list[Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = torch.cat([t.detach().reshape(-1) for t in group])
        dist.broadcast(flat, src)
        offset = 0
        for t in group:
            with torch.no_grad():
                t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()


def broadcast_values(values: Sequence[float], device: torch.device, src: int = 0) -> list[float]:
    """Rank ``src``'s ``values`` on every process (float64; a list of the same length everywhere)."""
    if world_size() == 1:
        return list(values)
    flat = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.broadcast(flat, src)
    return flat.tolist()
