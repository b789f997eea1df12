"""Pair generation for Knowledge Translation: many networks trained at once, sharded storage.

A *pair* is one trained large network (begin + large block + last) and a small block trained in
place of its large block with begin/last frozen. Generation is the method's cost bottleneck, so:

* ``K`` networks train at once: one ``torch.func.vmap`` over ``grad`` of a functional forward, each
  network with its own parameters, momentum buffers, BN statistics and data order;
* for the small-block phase the frozen begin block's eval-mode activations are computed once and
  cached (the large block's output is not needed at all in that phase), and the frozen last block's
  BN is folded into its conv;
* a short, fixed schedule (subset of the train split, few epochs; see :class:`Schedule`).

Pairs are stored as ``shard_XXXXX.safetensors`` (tensors stacked over the pairs of the shard) next to
a ``manifest.json`` (block shapes, schedule, data set, seed). Shards are written to a temp file and
renamed, so a killed run loses no finished shard; a shard range can be split across processes.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.func import grad, vmap
from tqdm import tqdm

from kdforge.errors import KdforgeError
from kdforge.methods.translation import grouped, networks

MANIFEST = "manifest.json"
HAS_SMALL = "has_small"  # bool [P]: the stored small block was trained (False: large-only network)


@dataclass
class Schedule:
    """Training schedule of one pair (both phases use SGD with momentum).

    The reference is 10 epochs over the full train split, lr 0.01, momentum 0.9, batch 128.
    ``epochs_small=0`` skips the small-block phase (the stored small block is its random init):
    enough for the functional objective, which needs only trained large networks.
    """

    train_subset: int = 10000
    epochs_large: int = 2
    epochs_small: int = 2
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9

    @classmethod
    def reference(cls) -> Schedule:
        """The reference schedule of Sun et al. (full train split)."""
        return cls(train_subset=0, epochs_large=10, epochs_small=10, batch_size=128, lr=0.01)


@dataclass
class PairConfig:
    """What a pair set is: data set, shapes, schedule, seed and shard size.

    ``eval_images``: the stored accuracies are on the first this-many test images (0 = all); on a
    2-core CPU, scoring the whole 10k test split costs about as much as training a pair.
    """

    dataset: str = "fashion_mnist"
    spec: networks.BlockSpec = field(default_factory=networks.BlockSpec)
    schedule: Schedule = field(default_factory=Schedule)
    seed: int = 0
    shard_size: int = 16
    eval_images: int = 2000

    def to_dict(self) -> dict:
        """JSON form (as written to the manifest)."""
        return {
            "dataset": self.dataset,
            "spec": self.spec.to_dict(),
            "schedule": asdict(self.schedule),
            "seed": self.seed,
            "shard_size": self.shard_size,
            "eval_images": self.eval_images,
        }


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


def _orders(n: int, epochs: int, seeds: list[int], phase: int) -> Tensor:
    """Per-network shuffles, a pure function of (network seed, phase, epoch): [epochs, k, n]."""
    if epochs == 0:
        return torch.zeros(0, len(seeds), n, dtype=torch.long)
    out = []
    for e in range(epochs):
        row = [
            torch.randperm(n, generator=torch.Generator().manual_seed(s * 1000 + phase * 100 + e))
            for s in seeds
        ]
        out.append(torch.stack(row))
    return torch.stack(out)


def _stack(ds: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    return {k: torch.stack([d[k] for d in ds]) for k in ds[0]}


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


def train_pairs(
    seeds: list[int],
    cfg: PairConfig,
    train: dict[str, Tensor],
    test: dict[str, Tensor],
    engine: str = "grouped",
) -> dict[str, Tensor]:
    """Train ``len(seeds)`` pairs at once. Returns the stacked pair tensors (see module doc).

    Network ``i`` is initialised from ``seeds[i]`` alone, so results do not depend on how the
    seeds are grouped (the parity test checks batched == one-at-a-time).

    Args:
        engine: ``"grouped"`` (all networks as one grouped-conv network; fastest on CPU, see
            :mod:`.grouped`) or ``"vmap"`` (``torch.func.vmap`` over a functional forward).
    """
    spec, sched = cfg.spec, cfg.schedule
    x, y = train["x"], train["y"]
    if sched.train_subset:
        x, y = x[: sched.train_subset], y[: sched.train_subset]
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    shared = _stack([networks.init_params(spec, "shared", g) for g in gens])
    large = _stack([networks.init_params(spec, "large", g) for g in gens])
    small0 = _stack([networks.init_params(spec, "small", g) for g in gens])
    stats = _stack([networks.init_stats(spec, "large") for _ in seeds])
    orders_large = _orders(len(x), sched.epochs_large, seeds, 1)
    orders_small = _orders(len(x), sched.epochs_small, seeds, 2)
    if engine == "grouped":
        p, stats, small = grouped.train_pairs_grouped(
            {**shared, **large, **small0}, stats, x, y, orders_large, orders_small, sched, spec
        )
        acc_large = grouped.accuracy(p, stats, test["x"], test["y"], "large")
        acc_small = grouped.accuracy({**p, **small}, stats, test["x"], test["y"], "small", spec.small_skip)
    elif engine == "vmap":
        p, stats, small = _vmap_pairs(shared, large, small0, stats, x, y, orders_large, orders_small, cfg)
        acc_large = accuracy_many(p, stats, test["x"], test["y"], "large")
        acc_small = accuracy_many({**p, **small}, stats, test["x"], test["y"], "small", skip=spec.small_skip)
    else:
        raise KdforgeError(f"unknown pair engine '{engine}'", "use 'grouped' or 'vmap'")
    out = {**p, **small, **{f"stats.{n}": v for n, v in stats.items()}}
    out.update(acc_large=acc_large, acc_small=acc_small, seed=torch.tensor(seeds))
    return {n: v.detach().contiguous() for n, v in out.items()}


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


# ---------------------------------------------------------------- storage
def _write_manifest(out: Path, cfg: PairConfig) -> None:
    path = out / MANIFEST
    want = cfg.to_dict()
    if path.exists():
        have = json.loads(path.read_text())
        if {k: have.get(k) for k in want} != want:
            raise KdforgeError(
                f"{path} was made with another configuration ({have}) than this run ({want})",
                "use a new --out directory, or the same settings to resume",
            )
        return
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(want, indent=2))
    os.replace(tmp, path)


def shard_path(out: Path, i: int) -> Path:
    """File of shard ``i``."""
    return Path(out) / f"shard_{i:05d}.safetensors"


def make_pairs(
    out: str | Path,
    cfg: PairConfig,
    shards: range,
    splits=None,
    progress: bool = True,
    engine: str = "grouped",
) -> dict:
    """Generate shards ``shards`` into ``out`` (skipping finished ones). Returns timing info.

    Shard ``i`` holds pairs with seeds ``cfg.seed*10**6 + i*shard_size + j``; distinct processes may
    take distinct ranges. Accuracies are measured on the data set's test split. ``engine`` (see
    :func:`train_pairs`) changes speed only, not results, so it is not part of the manifest.
    """
    from kdforge.data import load_dataset

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_manifest(out, cfg)
    todo = [i for i in shards if not shard_path(out, i).exists()]
    if not todo:
        return {"made": 0, "seconds": 0.0}
    splits = splits or load_dataset(cfg.dataset)
    train, test = splits.train.tensors, splits.test.tensors
    if cfg.eval_images:
        test = {k: v[: cfg.eval_images] for k, v in test.items()}
    t0, made = time.perf_counter(), 0
    for i in tqdm(todo, desc="pair shards", disable=not progress):
        t_shard = time.perf_counter()
        seeds = [cfg.seed * 10**6 + i * cfg.shard_size + j for j in range(cfg.shard_size)]
        tensors = train_pairs(seeds, cfg, train, test, engine)
        tmp = shard_path(out, i).with_suffix(f".tmp{os.getpid()}")
        timing = {"seconds": f"{time.perf_counter() - t_shard:.3f}", "finished": f"{time.time():.3f}"}
        save_file(tensors, str(tmp), metadata={"shard": str(i), **timing})
        os.replace(tmp, shard_path(out, i))
        made += len(seeds)
    return {"made": made, "seconds": time.perf_counter() - t0}


def generation_time(directory: str | Path, shards: int | None = None) -> dict:
    """Generation cost of a pair set from its shards' metadata (written by :func:`make_pairs`).

    Args:
        shards: Count only the first ``shards`` shard files (e.g. the networks a run used).

    Returns ``shards``, ``networks``, ``seconds`` (sum of per-shard wall seconds, i.e. the time one
    process would need on this machine's load) and ``wall_seconds`` (first shard start to last shard
    end, over all processes that made the set). Shards written before timing was recorded are
    counted in ``untimed``.
    """
    from safetensors import safe_open

    files = sorted(Path(directory).glob("shard_*.safetensors"))[:shards]
    secs, starts, ends, untimed, nets = 0.0, [], [], 0, 0
    for f in files:
        with safe_open(str(f), "pt") as h:
            meta = h.metadata() or {}
            nets += h.get_slice("seed").get_shape()[0]
        if "seconds" not in meta:
            untimed += 1
            continue
        s, end = float(meta["seconds"]), float(meta["finished"])
        secs, starts, ends = secs + s, [*starts, end - s], [*ends, end]
    wall = max(ends) - min(starts) if ends else 0.0
    return {"shards": len(files), "networks": nets, "seconds": secs, "wall_seconds": wall, "untimed": untimed}


def load_pairs(
    directory: str | Path, spec: networks.BlockSpec | None = None
) -> tuple[dict[str, Tensor], dict]:
    """Load every finished shard of a pair set: (stacked tensors, manifest).

    Raises:
        KdforgeError: missing/empty directory, corrupt shard, or block shapes other than ``spec``.
    """
    directory = Path(directory)
    mpath = directory / MANIFEST
    if not mpath.exists():
        raise KdforgeError(f"no {MANIFEST} in '{directory}'", "point to a directory written by `make-pairs`")
    manifest = json.loads(mpath.read_text())
    have = networks.BlockSpec(**manifest["spec"])
    if spec is not None and have != spec:
        raise KdforgeError(
            f"pair set '{directory}' has block shapes {have}, expected {spec}",
            "generate pairs with the same block shapes or change the translator's shapes",
        )
    files = sorted(directory.glob("shard_*.safetensors"))
    if not files:
        raise KdforgeError(
            f"pair set '{directory}' has no finished shards (empty pair set)",
            "run `make-pairs` first (it resumes where it stopped)",
        )
    parts = []
    for f in files:
        try:
            parts.append(load_file(str(f)))
        except (SafetensorError, OSError, ValueError) as e:
            raise KdforgeError(
                f"corrupt pair shard '{f}': {e}", f"delete '{f}' and rerun `make-pairs`"
            ) from e
    want = {**have.large_shapes(), **have.small_shapes()}
    for f, part in zip(files, parts, strict=True):
        for name, shape in want.items():
            if name not in part or tuple(part[name].shape[1:]) != shape:
                got = tuple(part[name].shape[1:]) if name in part else "missing"
                raise KdforgeError(
                    f"shard '{f}' tensor '{name}' has shape {got}, manifest says {shape}",
                    f"delete '{f}' and rerun `make-pairs` with this manifest",
                )
    pairs = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    # a large-only set (epochs_small=0) stores untrained small blocks: no MSE targets
    pairs[HAS_SMALL] = torch.full((len(pairs["seed"]),), manifest["schedule"]["epochs_small"] > 0)
    return pairs, manifest


def merge_pair_sets(*sets: tuple[dict[str, Tensor], dict]) -> dict[str, Tensor]:
    """Concatenate loaded pair sets (e.g. full pairs + large-only networks) into one, in order.

    Large-only networks (made with ``epochs_small=0``) keep ``has_small == False``: they serve the
    functional objective, which needs only the large network; an MSE objective refuses them
    (:func:`~kdforge.methods.translation.train.train_translator`).

    Args:
        *sets: ``(pairs, manifest)`` as returned by :func:`load_pairs`.

    Raises:
        KdforgeError: no sets, or sets with other block shapes / data sets / stored tensors.
    """
    if not sets:
        raise KdforgeError("no pair sets to merge (empty pair set)", "pass at least one pair set")
    first_pairs, first = sets[0]
    for pairs, manifest in sets[1:]:
        for key in ("spec", "dataset"):
            if manifest[key] != first[key]:
                raise KdforgeError(
                    f"pair sets differ in {key}: {first[key]} vs {manifest[key]}",
                    "merge only pair sets made with the same block shapes on the same data set",
                )
        if set(pairs) != set(first_pairs):
            raise KdforgeError(
                f"pair sets store different tensors: {sorted(set(pairs) ^ set(first_pairs))}",
                "regenerate one of them with this version of `make-pairs`",
            )
    return {k: torch.cat([p[k] for p, _ in sets]) for k in first_pairs}
