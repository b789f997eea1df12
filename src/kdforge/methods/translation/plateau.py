"""Small blocks trained to their validation plateau: a converged reference for translated blocks.

A pair set's small blocks are trained with the short pair schedule (e.g. 2 epochs on 4,096 images),
which is a weak yardstick for a translated block. :func:`train_small_to_plateau` continues that
very schedule (same initial block, optimiser, learning rate, batch size and per-network data
order, between the network's frozen begin/last blocks) epoch after epoch and stops each network
by :class:`PlateauRule` on *validation* images; the test images are never looked at. K networks
train at once as one grouped network (:mod:`.grouped`); each keeps its own stopping point, and a
stopped network's later updates are ignored, so the result equals training it alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from kdforge.methods.translation import grouped, networks
from kdforge.methods.translation.pairs import network_orders

Stacked = dict[str, Tensor]


@dataclass
class PlateauRule:
    """When a directly trained small block counts as converged.

    After every epoch the block is scored on ``val_images`` validation images. A network stops once
    ``patience`` epochs in a row brought no new best (a strictly higher accuracy), or after
    ``max_epochs``; it keeps the state of its best epoch (the first epoch reaching its maximum).
    """

    max_epochs: int = 20
    patience: int = 3
    val_images: int = 2000


class PlateauTracker:
    """Per-network best validation accuracy, best epoch and stop flag under a :class:`PlateauRule`."""

    def __init__(self, k: int, patience: int) -> None:
        self.patience = patience
        self.best = torch.full((k,), -1.0)
        self.best_epoch = torch.zeros(k, dtype=torch.long)
        self.stale = torch.zeros(k, dtype=torch.long)
        self.stopped_at = torch.zeros(k, dtype=torch.long)  # 0: still training
        self.curves: list[list[float]] = [[] for _ in range(k)]

    @property
    def active(self) -> Tensor:
        """Networks still training: bool [K]."""
        return self.stopped_at == 0

    def update(self, epoch: int, acc: Tensor) -> Tensor:
        """Record epoch ``epoch``'s accuracies [K] of the active networks; returns which improved."""
        active = self.active
        improved = active & (acc > self.best)
        for j in torch.nonzero(active).flatten().tolist():
            self.curves[j].append(float(acc[j]))
        self.best = torch.where(improved, acc, self.best)
        self.best_epoch = torch.where(improved, epoch, self.best_epoch)
        self.stale = torch.where(improved, 0, self.stale + active.long())
        self.stopped_at = torch.where(active & (self.stale >= self.patience), epoch, self.stopped_at)
        return improved

    def finish(self, epoch: int) -> None:
        """Mark networks still active as stopped at ``epoch`` (the last one trained)."""
        self.stopped_at = torch.where(self.active, epoch, self.stopped_at)


@dataclass
class PlateauResult:
    """What :func:`train_small_to_plateau` returns (per network: index j of the stacked inputs)."""

    small: Stacked
    best_epoch: list[int]
    epochs: list[int]
    best_val_acc: list[float]
    val_curves: list[list[float]]
    at_epoch: Stacked | None = field(default=None)


@torch.no_grad()
def _val_accuracy(
    q: Stacked, folded: Stacked, feats: Tensor, y: Tensor, skip: bool, chunk: int = 1000
) -> Tensor:
    correct = torch.zeros(feats.shape[1])
    for i in range(0, len(y), chunk):
        lo = grouped.folded_last(folded, grouped.small(q, feats[i : i + chunk].flatten(1, 2), skip))
        correct += (lo.argmax(-1) == y[i : i + chunk]).sum(-1)
    return correct / len(y)


def train_small_to_plateau(
    trained: Stacked,
    init_small: Stacked,
    train_images: tuple[Tensor, Tensor],
    val_images: tuple[Tensor, Tensor],
    schedule,
    skip: bool,
    rule: PlateauRule | None = None,
    keep_epoch: int | None = None,
) -> PlateauResult:
    """Train each network's small block until its validation accuracy plateaus; keep the best state.

    Args:
        trained: Stacked pairs (their begin/last blocks and BN statistics stay frozen; ``seed`` [K]
            gives each network's data order, as in the pair schedule).
        init_small: The small blocks' initial parameters [K, ...] (the pair schedule's start).
        train_images: Training images and labels; the first ``schedule.train_subset`` are used.
        val_images: Validation images and labels (held out from training); the first
            ``rule.val_images`` decide.
        schedule: :class:`~kdforge.methods.translation.pairs.Schedule` (lr, momentum, batch size).
        skip: The small block's identity skip.
        keep_epoch: Also return the state after this epoch (e.g. the pair schedule's
            ``epochs_small``, to check that the run extends it exactly).
    """
    rule = rule or PlateauRule()
    x, y = train_images
    if schedule.train_subset:
        x, y = x[: schedule.train_subset], y[: schedule.train_subset]
    vx, vy = val_images[0][: rule.val_images], val_images[1][: rule.val_images]
    p, s = grouped.shared_and_stats(trained)
    feats, val_feats = grouped.frozen_features(p, s, x), grouped.frozen_features(p, s, vx)
    with torch.no_grad():
        folded = torch.func.vmap(networks.fold_last)(p, s)
    seeds = [int(v) for v in trained["seed"]]
    orders = network_orders(len(x), rule.max_epochs, seeds, 2)  # phase 2: the small-block orders
    q = {n: v.clone() for n, v in init_small.items()}
    best = {n: v.clone() for n, v in q.items()}
    tracker, kept, last = PlateauTracker(len(seeds), rule.patience), {}, [0]

    def after_epoch(epoch: int) -> bool:
        last[0] = epoch
        if epoch == keep_epoch:
            kept.update({n: v.detach().clone() for n, v in q.items()})
        improved = tracker.update(epoch, _val_accuracy(q, folded, val_feats, vy, skip))
        for n, v in q.items():
            best[n][improved] = v.detach()[improved]
        return not bool(tracker.active.any())

    def step(idx: Tensor) -> Tensor:
        return grouped.small_step_loss(q, folded, feats, y, idx, skip)

    grouped.train_sgd(q, schedule, step, orders, schedule.batch_size, after_epoch)
    tracker.finish(last[0])
    return PlateauResult(
        small=best,
        best_epoch=tracker.best_epoch.tolist(),
        epochs=tracker.stopped_at.tolist(),
        best_val_acc=tracker.best.tolist(),
        val_curves=tracker.curves,
        at_epoch=kept or None,
    )
