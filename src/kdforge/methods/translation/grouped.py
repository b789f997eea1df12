"""Training many KT networks at once as ONE network: grouped convolutions + batched matmuls.

``K`` networks of the same shapes are stacked along the channel axis: network ``j`` owns channels
``[j*C, (j+1)*C)`` of every activation, every conv is a single ``conv2d(..., groups=K)``, BatchNorm
is one ``F.batch_norm`` over ``K*C`` channels (its statistics are per channel, hence per network)
and the linear head is one ``torch.bmm``. The loss is the *sum* over networks of each network's mean
cross-entropy, so each network's gradient is exactly its own. Every network keeps its own init (from
its seed alone), data order, momentum buffer and BN statistics, so the result equals training the
networks one at a time (checked by a parity test against the vmap path).

On CPU this is much faster than ``torch.func.vmap`` for these tiny (6-channel) nets: one large
oneDNN grouped conv per layer instead of per-op overheads for each network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kdforge.methods.translation import networks

Stacked = dict[str, Tensor]


def _g(w: Tensor) -> Tensor:
    """[K, out, in, kh, kw] -> [K*out, in, kh, kw] (weight of a ``groups=K`` conv)."""
    return w.flatten(0, 1)


def _bn(x: Tensor, p: Stacked, s: Stacked, name: str, train: bool) -> Tensor:
    """BatchNorm over ``K*C`` channels; in training mode updates ``s`` (flat views) in place."""
    return F.batch_norm(
        x,
        s[f"{name}.mean"].view(-1),
        s[f"{name}.var"].view(-1),
        p[f"{name}.w"].flatten(),
        p[f"{name}.b"].flatten(),
        training=train,
        momentum=networks.BN_MOMENTUM,
        eps=networks.BN_EPS,
    )


def _head(z: Tensor, w: Tensor, b: Tensor, k: int) -> Tensor:
    """Per-network linear head: z [B, K*c, h, w] -> logits [K, B, classes] (one bmm)."""
    zb = z.reshape(z.shape[0], k, -1).transpose(0, 1)  # [K, B, F]
    return torch.baddbmm(b[:, None, :], zb, w.transpose(1, 2))


def begin(p: Stacked, s: Stacked, x: Tensor, train: bool) -> Tensor:
    """Begin block of K networks. x [B, K*in, H, W] (network j's images in its channel slice)."""
    k = p["begin.conv"].shape[0]
    x = x.contiguous(memory_format=torch.channels_last)  # oneDNN's fast layout for grouped convs
    h = F.relu(_bn(F.conv2d(x, _g(p["begin.conv"]), padding=1, groups=k), p, s, "begin.bn", train))
    return F.max_pool2d(h, 3, stride=2, padding=1)


def large(p: Stacked, s: Stacked, h: Tensor, train: bool) -> Tensor:
    """Large (basic) block of K networks."""
    k, pad = p["large.conv1"].shape[0], p["large.conv1"].shape[-1] // 2
    z = F.relu(_bn(F.conv2d(h, _g(p["large.conv1"]), padding=pad, groups=k), p, s, "large.bn1", train))
    z = _bn(F.conv2d(z, _g(p["large.conv2"]), padding=pad, groups=k), p, s, "large.bn2", train)
    return F.relu(z + h)


def small(q: Stacked, h: Tensor, skip: bool = True) -> Tensor:
    """Small (BN-free bottleneck) block of K networks; identity skip unless ``skip`` is False."""
    k, pad = q["small.conv1"].shape[0], q["small.conv1"].shape[-1] // 2
    h = h.contiguous(memory_format=torch.channels_last)
    z = F.relu(F.conv2d(h, _g(q["small.conv1"]), padding=pad, groups=k))
    z = F.conv2d(z, _g(q["small.conv2"]), padding=pad, groups=k)
    return F.relu(z + h if skip else z)


def last(p: Stacked, s: Stacked, h: Tensor, train: bool) -> Tensor:
    """Last block of K networks -> logits [K, B, classes]."""
    k = p["last.conv"].shape[0]
    z = F.relu(_bn(F.conv2d(h, _g(p["last.conv"]), stride=2, groups=k), p, s, "last.bn", train))
    return _head(z, p["last.fc.w"], p["last.fc.b"], k)


def folded_last(q: Stacked, h: Tensor) -> Tensor:
    """Last block with eval BN folded in (stacked :func:`networks.fold_last`) -> [K, B, classes]."""
    k = q["conv"].shape[0]
    z = F.relu(F.conv2d(h, _g(q["conv"]), q["bias"].flatten(), stride=2, groups=k))
    return _head(z, q["fc.w"], q["fc.b"], k)


def forward(p: Stacked, s: Stacked, x: Tensor, middle: str, train: bool, skip: bool = True) -> Tensor:
    """Whole networks: x [B, K*in, H, W] -> logits [K, B, classes]."""
    h = begin(p, s, x, train)
    h = large(p, s, h, train) if middle == "large" else small(p, h, skip)
    return last(p, s, h, train)


def per_net_images(x: Tensor, idx: Tensor) -> Tensor:
    """Gather network j's batch ``x[idx[j]]`` into its channel slice: x [N, c, ...], idx [K, B]."""
    xb = x[idx.T]  # [B, K, c, ...]
    return xb.flatten(1, 2)


def summed_ce(logits: Tensor, y: Tensor) -> Tensor:
    """Sum over networks of each network's mean cross-entropy. logits [K, B, cls], y [K, B]."""
    return F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum") / logits.shape[1]


@torch.no_grad()
def accuracy(
    p: Stacked, s: Stacked, x: Tensor, y: Tensor, middle: str, skip: bool = True, chunk: int = 256
) -> Tensor:
    """Eval-mode accuracy of each of K stacked networks on the same (x, y): [K]."""
    k = p["begin.conv"].shape[0]
    correct = torch.zeros(k)
    for i in range(0, len(x), chunk):
        xb = x[i : i + chunk].repeat(1, k, 1, 1)
        lo = forward(p, s, xb, middle, False, skip)
        correct += (lo.argmax(-1) == y[i : i + chunk]).sum(-1)
    return correct / len(x)


def train_sgd(params: Stacked, sched, step_fn, orders: Tensor, bs: int, after_epoch=None) -> None:
    """SGD + momentum on stacked leaves (per-network, since the summed loss separates them).

    ``after_epoch(epoch)`` (1-based), when given, runs after every epoch without gradients; training
    stops early when it returns True.
    """
    for t in params.values():
        t.requires_grad_(True)
    opt = torch.optim.SGD(params.values(), lr=sched.lr, momentum=sched.momentum)
    n = orders.shape[-1]
    for epoch, epoch_order in enumerate(orders, 1):  # [K, n]
        for b in range(0, n - bs + 1, bs):
            opt.zero_grad(set_to_none=True)
            step_fn(epoch_order[:, b : b + bs]).backward()
            opt.step()
        if after_epoch is not None:
            with torch.no_grad():
                if after_epoch(epoch):
                    break
    for t in params.values():
        t.requires_grad_(False)


@torch.no_grad()
def frozen_features(p: Stacked, s: Stacked, x: Tensor, chunk: int = 2048) -> Tensor:
    """Eval-mode begin-block output of K networks on the same images: [n, K, C, h, w]."""
    k = p["begin.conv"].shape[0]
    feats = torch.cat(
        [begin(p, s, x[i : i + chunk].repeat(1, k, 1, 1), False) for i in range(0, len(x), chunk)]
    )
    return feats.view(len(x), k, -1, *feats.shape[2:])


def small_step_loss(q: Stacked, folded: Stacked, feats: Tensor, y: Tensor, idx: Tensor, skip: bool) -> Tensor:
    """Summed cross-entropy of K small blocks between frozen begin features and the folded last block.

    Args:
        feats: :func:`frozen_features` of the training images; ``idx`` [K, B] picks network j's batch.
    """
    k = idx.shape[0]
    h = feats[idx.T, torch.arange(k)].flatten(1, 2)  # network j's cached batch in its channels
    return summed_ce(folded_last(folded, small(q, h, skip)), y[idx])


def train_pairs_grouped(
    init: Stacked,
    stats: Stacked,
    x: Tensor,
    y: Tensor,
    orders_large: Tensor,
    orders_small: Tensor,
    sched,
    spec,
) -> tuple[Stacked, Stacked, Stacked]:
    """Train K pairs as one grouped network. Returns (begin+large+last params, BN stats, small params).

    Args:
        init: Stacked initial params (shared + large + small), [K, ...] each; not modified.
        stats: Stacked fresh BN running stats, [K, C] each.
        x, y: Training images [n, c, H, W] and labels [n].
        orders_large, orders_small: Per-network example orders [epochs, K, n] of the two phases.
        sched: :class:`~kdforge.methods.translation.pairs.Schedule`.
        spec: :class:`~kdforge.methods.translation.networks.BlockSpec`.
    """
    bs = sched.batch_size
    p = {n: v.clone() for n, v in init.items() if not n.startswith("small.")}
    q = {n: v.clone() for n, v in init.items() if n.startswith("small.")}
    s = {n: v.clone() for n, v in stats.items()}

    def large_step(idx: Tensor) -> Tensor:
        return summed_ce(forward(p, s, per_net_images(x, idx), "large", True), y[idx])

    train_sgd(p, sched, large_step, orders_large, bs)
    if len(orders_small) == 0:  # no small-block phase: the small block stays at its random init
        return p, s, q
    feats = frozen_features(p, s, x)  # phase 2: frozen begin activations cached once per network
    with torch.no_grad():
        folded = torch.func.vmap(networks.fold_last)(p, s)  # last BN folded

    def small_step(idx: Tensor) -> Tensor:
        return small_step_loss(q, folded, feats, y, idx, spec.small_skip)

    train_sgd(q, sched, small_step, orders_small, bs)
    return p, s, q


def shared_and_stats(pairs: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(begin + last params, their BN stats) of stacked pairs."""
    p = {k: v for k, v in pairs.items() if k.startswith(("begin.", "last."))}
    s = {k[6:]: v for k, v in pairs.items() if k.startswith(("stats.begin", "stats.last"))}
    return p, s


def small_accuracy(
    pairs: dict[str, Tensor], small: dict[str, Tensor], x: Tensor, y: Tensor, skip: bool = True
) -> Tensor:
    """Accuracy of each network's begin/last around the given small blocks (eval-mode BN): [P].

    Args:
        skip: The small block's identity skip (``BlockSpec.small_skip``).
    """
    p, s = shared_and_stats(pairs)
    return accuracy({**p, **small}, s, x, y, "small", skip)
