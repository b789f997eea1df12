"""Pair generation for Knowledge Translation: many networks trained at once, sharded storage.

A *pair* is one trained large network (begin + large block + last) and a small block trained in
place of its large block with begin/last frozen. Generation is the method's cost bottleneck, so:

* ``K`` networks train at once as one grouped-conv network (:mod:`.grouped`), each with its own
  parameters, momentum buffers, BN statistics and data order;
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
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from tqdm import tqdm

from kdforge.errors import KdforgeError
from kdforge.io import atomic_write_text, load_tensors, save_tensors
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

    @classmethod
    def from_dict(cls, d: dict) -> PairConfig:
        """The configuration a manifest (:meth:`to_dict`'s JSON form) records."""
        return cls(
            dataset=d["dataset"],
            spec=networks.BlockSpec(**d["spec"]),
            schedule=Schedule(**d["schedule"]),
            seed=d["seed"],
            shard_size=d["shard_size"],
            eval_images=d["eval_images"],
        )

    def network_seed(self, index: int) -> int:
        """Seed of the pair set's network at position ``index`` (shard ``index // shard_size``)."""
        return self.seed * 10**6 + index


def network_orders(n: int, epochs: int, seeds: list[int], phase: int) -> Tensor:
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


def stack_networks(ds: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    return {k: torch.stack([d[k] for d in ds]) for k in ds[0]}


def train_pairs(
    seeds: list[int],
    cfg: PairConfig,
    train: dict[str, Tensor],
    test: dict[str, Tensor],
) -> dict[str, Tensor]:
    """Train ``len(seeds)`` pairs at once. Returns the stacked pair tensors (see module doc).

    All networks run as one grouped-conv network (:mod:`.grouped`, the one implementation; the
    ``torch.func.vmap`` and one-at-a-time paths in :mod:`.oracle` only check it). Network ``i``
    is initialised from ``seeds[i]`` alone, so results do not depend on how the seeds are grouped.
    """
    start = initial_pairs(seeds, cfg, train)
    p, stats, small = grouped.train_pairs_grouped(
        {**start.shared, **start.large, **start.small}, start.stats, start.x, start.y,
        start.orders_large, start.orders_small, cfg.schedule, cfg.spec,
    )  # fmt: skip
    acc_large = grouped.accuracy(p, stats, test["x"], test["y"], "large")
    acc_small = grouped.accuracy({**p, **small}, stats, test["x"], test["y"], "small", cfg.spec.small_skip)
    return stored_pairs(p, small, stats, acc_large, acc_small, seeds)


@dataclass
class InitialPairs:
    """What a group of pairs starts from: its data, initial parameters and per-network orders."""

    x: Tensor
    y: Tensor
    shared: dict[str, Tensor]
    large: dict[str, Tensor]
    small: dict[str, Tensor]
    stats: dict[str, Tensor]
    orders_large: Tensor
    orders_small: Tensor


def initial_pairs(seeds: list[int], cfg: PairConfig, train: dict[str, Tensor]) -> InitialPairs:
    """Initial state of the networks ``seeds``: network ``i`` from ``seeds[i]`` alone."""
    spec, sched = cfg.spec, cfg.schedule
    x, y = train["x"], train["y"]
    if sched.train_subset:
        x, y = x[: sched.train_subset], y[: sched.train_subset]
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    return InitialPairs(
        x=x,
        y=y,
        shared=stack_networks([networks.init_params(spec, "shared", g) for g in gens]),
        large=stack_networks([networks.init_params(spec, "large", g) for g in gens]),
        small=stack_networks([networks.init_params(spec, "small", g) for g in gens]),
        stats=stack_networks([networks.init_stats(spec, "large") for _ in seeds]),
        orders_large=network_orders(len(x), sched.epochs_large, seeds, 1),
        orders_small=network_orders(len(x), sched.epochs_small, seeds, 2),
    )


def stored_pairs(
    params: dict[str, Tensor],
    small: dict[str, Tensor],
    stats: dict[str, Tensor],
    acc_large: Tensor,
    acc_small: Tensor,
    seeds: list[int],
) -> dict[str, Tensor]:
    """The tensors a shard stores for trained pairs (see the module doc)."""
    out = {**params, **small, **{f"stats.{n}": v for n, v in stats.items()}}
    out.update(acc_large=acc_large, acc_small=acc_small, seed=torch.tensor(seeds))
    return {n: v.detach().contiguous() for n, v in out.items()}


# ---------------------------------------------------------------- data
#: prefix of a pair set's data set name when it was made on an IDX directory: ``idx:DIRECTORY``
IDX_PREFIX = "idx:"


def dataset_reference(dataset: str, data_dir: str | None = None) -> str:
    """The data set name a manifest records: ``idx:DIR`` for an IDX directory, else the name."""
    return f"{IDX_PREFIX}{data_dir}" if data_dir else dataset


def load_pair_data(reference: str, data_dir: str | None = None):
    """Load the data set a pair set was made on (:func:`dataset_reference`'s string).

    Args:
        reference: ``manifest["dataset"]``: a registered name, or ``idx:DIR``.
        data_dir: Another IDX directory to use instead (e.g. the files moved).
    """
    from kdforge.data import load_dataset

    if reference.startswith(IDX_PREFIX) or data_dir:
        return load_dataset("idx", data_dir=data_dir or reference[len(IDX_PREFIX) :])
    return load_dataset(reference)


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
    atomic_write_text(path, json.dumps(want, indent=2))


def shard_path(out: Path, i: int) -> Path:
    """File of shard ``i``."""
    return Path(out) / f"shard_{i:05d}.safetensors"


def make_pairs(
    out: str | Path,
    cfg: PairConfig,
    shards: range,
    splits=None,
    progress: bool = True,
) -> dict:
    """Generate shards ``shards`` into ``out`` (skipping finished ones). Returns timing info.

    Shard ``i`` holds the networks at positions ``i*shard_size + j`` (seeds
    :meth:`PairConfig.network_seed`); distinct processes may take distinct ranges. Accuracies are
    measured on the data set's test split. ``engine`` (see :func:`train_pairs`) changes speed only,
    not results, so it is not part of the manifest.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_manifest(out, cfg)
    todo = [i for i in shards if not shard_path(out, i).exists()]
    if not todo:
        return {"made": 0, "seconds": 0.0}
    splits = splits or load_pair_data(cfg.dataset)
    train, test = splits.train.tensors, pair_test_images(splits, cfg)
    t0, made = time.perf_counter(), 0
    for i in tqdm(todo, desc="pair shards", disable=not progress):
        t_shard = time.perf_counter()
        seeds = [cfg.network_seed(i * cfg.shard_size + j) for j in range(cfg.shard_size)]
        tensors = train_pairs(seeds, cfg, train, test)
        timing = {"seconds": f"{time.perf_counter() - t_shard:.3f}", "finished": f"{time.time():.3f}"}
        save_tensors(shard_path(out, i), tensors, metadata={"shard": str(i), **timing})
        made += len(seeds)
    return {"made": made, "seconds": time.perf_counter() - t0}


def pair_test_images(splits, cfg: PairConfig) -> dict[str, Tensor]:
    """The test images a pair set's stored accuracies are measured on (the first ``eval_images``)."""
    test = splits.test.tensors
    return {k: v[: cfg.eval_images] for k, v in test.items()} if cfg.eval_images else dict(test)


def regenerate_networks(cfg: PairConfig, indices: list[int], splits=None) -> dict[str, Tensor]:
    """Re-train the networks at positions ``indices`` of the pair set ``cfg`` describes (no files).

    Each shard holding one of them is trained whole, exactly as :func:`make_pairs` trains it, and
    only the asked networks are kept: that makes them bit-identical to the stored ones, so e.g. the
    test networks of a split can be rebuilt without the rest of their pair set. (A network trained
    in a group of another size starts from the same seed, but its grouped convolutions round
    differently and training amplifies the rounding: alone, a network can end points of accuracy
    away.) Returns the stacked pair tensors in the order of ``indices`` (as :func:`load_pairs`
    gives them, without ``has_small``).

    Raises:
        KdforgeError: no or negative indices.
    """
    if not indices or min(indices) < 0:
        raise KdforgeError(
            f"network indices {indices} name no network", "pass positions 0, 1, ... of the set"
        )
    splits = splits or load_pair_data(cfg.dataset)
    train, test = splits.train.tensors, pair_test_images(splits, cfg)
    size = cfg.shard_size
    made = [i * size + j for i in sorted({i // size for i in indices}) for j in range(size)]
    seeds = [cfg.network_seed(n) for n in made]
    parts = [train_pairs(seeds[i : i + size], cfg, train, test) for i in range(0, len(made), size)]
    order = torch.tensor([made.index(i) for i in indices])
    return {k: torch.cat([p[k] for p in parts])[order] for k in parts[0]}


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
        parts.append(load_tensors(f, "pair shard", f"delete '{f}' and rerun `make-pairs`"))
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
