"""Reference implementations that check the pair pipeline (tests and the speed benchmark only).

The pipeline trains pairs with one implementation, :func:`.pairs.train_pairs` (all networks as one
grouped-conv network). The paths here compute the same thing another way and are not used by it:

* :func:`vmap_pairs`: ``torch.func.vmap`` over ``grad`` of a functional forward (same seeds, data
  order and schedule, so a parity test compares the two to float tolerance);
* :func:`reference_pair`: one pair with ``torch.optim.SGD``, no batching, no activation cache (the
  straightforward loop the speed benchmark measures against).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import grad, vmap

from kdforge.methods.translation import networks
from kdforge.methods.translation.pairs import PairConfig, Schedule, initial_pairs, stored_pairs


def _sgd_train(params, stats, xs, ys, orders, sched: Schedule, loss_fn, k: int):
    """Train ``k`` networks (stacked params) with vmapped functional SGD+momentum.

    Args:
        params: Trainable params stacked over networks ([k, ...] each).
        stats: Anything per-network that the loss needs besides params (stacked), updated via aux.
        xs: Inputs; either shared [N, ...] or per network [k, N, ...] (``orders`` index into dim -4).
        ys: Labels [N].
        orders: Per-network example order for every epoch, [epochs, k, N] long.
        loss_fn: ``loss_fn(params, stats, x, y) -> (loss, new_stats)`` for ONE network.
    """
    gfn = vmap(grad(loss_fn, has_aux=True), in_dims=(0, 0, 0, 0))
    mom = {n: torch.zeros_like(v) for n, v in params.items()}
    per_net_x = xs.dim() == 5
    bs = sched.batch_size
    for epoch_order in orders:
        n = epoch_order.shape[1]
        for b in range(0, n - bs + 1, bs):
            idx = epoch_order[:, b : b + bs]  # [k, bs]
            xb = torch.stack([xs[i][idx[i]] for i in range(k)]) if per_net_x else xs[idx]
            g, stats = gfn(params, stats, xb, ys[idx])
            with torch.no_grad():
                for name in params:
                    mom[name].mul_(sched.momentum).add_(g[name])
                    params[name] = params[name] - sched.lr * mom[name]
    return params, stats


@torch.no_grad()
def accuracy_many(
    p: dict[str, Tensor],
    s: dict[str, Tensor],
    x: Tensor,
    y: Tensor,
    middle: str,
    chunk: int = 2000,
    skip: bool = True,
) -> Tensor:
    """Eval-mode accuracy of each of ``k`` stacked networks on (x, y): [k]."""
    f = vmap(lambda pp, ss, xx: networks.forward(pp, ss, xx, middle, False, skip)[0], in_dims=(0, 0, None))
    correct = 0
    for i in range(0, len(x), chunk):
        correct = correct + (f(p, s, x[i : i + chunk]).argmax(-1) == y[i : i + chunk]).sum(-1)
    return correct.float() / len(x)


def vmap_pairs(
    seeds: list[int], cfg: PairConfig, train: dict[str, Tensor], test: dict[str, Tensor]
) -> dict[str, Tensor]:
    """:func:`.pairs.train_pairs` computed with ``torch.func.vmap`` (the parity oracle)."""
    start = initial_pairs(seeds, cfg, train)
    p, stats, small = _vmap_pairs(
        start.shared, start.large, start.small, start.stats, start.x, start.y,
        start.orders_large, start.orders_small, cfg,
    )  # fmt: skip
    acc_large = accuracy_many(p, stats, test["x"], test["y"], "large")
    acc_small = accuracy_many({**p, **small}, stats, test["x"], test["y"], "small", skip=cfg.spec.small_skip)
    return stored_pairs(p, small, stats, acc_large, acc_small, seeds)


def _vmap_pairs(shared, large, small0, stats, x, y, orders_large, orders_small, cfg: PairConfig):
    """The vmap engine: ``vmap(grad(loss))`` per step; returns (params, stats, small params)."""
    spec, sched, k = cfg.spec, cfg.schedule, orders_large.shape[1]

    def large_loss(p, s, xb, yb):
        logits, new = networks.forward(p, s, xb, "large", True)
        return F.cross_entropy(logits, yb), new

    p, stats = _sgd_train({**shared, **large}, stats, x, y, orders_large, sched, large_loss, k)
    with torch.no_grad():  # phase 2 inputs: frozen begin activations (cached once), folded last block
        feats = vmap(lambda pp, ss: networks.begin_forward(pp, ss, x, False, {}), in_dims=(0, 0))(p, stats)
        folded = vmap(networks.fold_last)(p, stats)

    def small_loss(q, fl, hb, yb):
        return F.cross_entropy(
            networks.folded_last_forward(fl, networks.small_forward(q, hb, spec.small_skip)), yb
        ), fl

    small, _ = _sgd_train(dict(small0), folded, feats, y, orders_small, sched, small_loss, k)
    return p, stats, small


def reference_pair(
    seed: int,
    cfg: PairConfig,
    train: dict[str, Tensor],
    test: dict[str, Tensor],
    max_steps: int | None = None,
) -> dict[str, float]:
    """The straightforward baseline: one pair, ``torch.optim.SGD``, no vmap, no activation cache.

    Args:
        max_steps: Stop each phase after this many steps (for timing only).
    """
    spec, sched = cfg.spec, cfg.schedule
    x, y = train["x"], train["y"]
    if sched.train_subset:
        x, y = x[: sched.train_subset], y[: sched.train_subset]
    g = torch.Generator().manual_seed(seed)
    p = {**networks.init_params(spec, "shared", g), **networks.init_params(spec, "large", g)}
    small = networks.init_params(spec, "small", g)
    s = networks.init_stats(spec, "large")
    steps = 0

    def run(trainable: dict[str, Tensor], middle: str, epochs: int, phase: int) -> None:
        nonlocal s, steps
        for t in trainable.values():
            t.requires_grad_(True)
        opt = torch.optim.SGD(trainable.values(), lr=sched.lr, momentum=sched.momentum)
        steps = 0
        for e in range(epochs):
            order = torch.randperm(
                len(x), generator=torch.Generator().manual_seed(seed * 1000 + phase * 100 + e)
            )
            for b in range(0, len(x) - sched.batch_size + 1, sched.batch_size):
                idx = order[b : b + sched.batch_size]
                logits, new = networks.forward(
                    {**p, **small}, s, x[idx], middle, middle == "large", spec.small_skip
                )
                loss = F.cross_entropy(logits, y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                if middle == "large":
                    s = {k: v.detach() for k, v in new.items()}
                steps += 1
                if max_steps and steps >= max_steps:
                    return
        for t in trainable.values():
            t.requires_grad_(False)

    run(p, "large", sched.epochs_large, 1)
    steps_large = steps
    for t in p.values():
        t.requires_grad_(False)
    run(small, "small", sched.epochs_small, 2)
    one = lambda d: {k: v.detach()[None] for k, v in d.items()}  # noqa: E731
    acc_l = accuracy_many(one(p), one(s), test["x"], test["y"], "large")
    acc_s = accuracy_many(one({**p, **small}), one(s), test["x"], test["y"], "small", skip=spec.small_skip)
    return {
        "acc_large": float(acc_l[0]),
        "acc_small": float(acc_s[0]),
        "steps_large": steps_large,
        "steps_small": steps,
    }
