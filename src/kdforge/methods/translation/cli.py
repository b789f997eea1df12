"""`kdforge translate ...`: make pairs, train a translator, evaluate it on held-out networks.

Run as ``python -m kdforge.methods.translation.cli --help`` until the main CLI mounts it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import typer

from kdforge.errors import KdforgeError
from kdforge.methods.translation import networks
from kdforge.methods.translation.augment import Augment
from kdforge.methods.translation.pairs import PairConfig, Schedule, load_pairs, make_pairs

app = typer.Typer(
    help="Knowledge Translation: translate a large block's parameters into a small block.",
    no_args_is_help=True,
)


def _data(dataset: str, data_dir: str | None):
    from kdforge.data import load_dataset

    return load_dataset(dataset, **({"data_dir": data_dir} if data_dir else {}))


def _manifest_data(manifest: dict, data_dir: str | None):
    """The data set a pair set was made on (an IDX directory is remembered in the manifest)."""
    name = manifest["dataset"]
    if name.startswith("idx:"):
        return _data("idx", data_dir or name[4:])
    return _data(name, data_dir)


def _fail(e: KdforgeError) -> None:
    typer.echo(f"error: {e.cause}\n  fix: {e.fix}", err=True)
    raise typer.Exit(2)


@app.command("make-pairs")
def make_pairs_cmd(
    out: Path = typer.Option(..., help="Pair-set directory (manifest + shards); rerun to resume."),
    dataset: str = typer.Option("fashion_mnist", help="fashion_mnist, digits or idx (with --data-dir)."),
    data_dir: str = typer.Option(None, help="Directory of MNIST-format IDX files."),
    shards: str = typer.Option("0:4", help="Shard range start:stop; give processes disjoint ranges."),
    shard_size: int = typer.Option(8, help="Pairs per shard (trained together in one batched step)."),
    channels: int = typer.Option(6, help="Middle-block width C."),
    bottleneck: int = typer.Option(3, help="Small block hidden width."),
    small_skip: bool = typer.Option(True, help="Identity skip in the small block (reference: yes)."),
    subset: int = typer.Option(4096, help="Train images per pair (0 = the whole train split)."),
    epochs_large: int = typer.Option(2),
    epochs_small: int = typer.Option(2),
    lr: float = typer.Option(0.05),
    seed: int = typer.Option(0),
    eval_images: int = typer.Option(2000, help="Score stored pairs on the first N test images (0 = all)."),
    engine: str = typer.Option("grouped", help="grouped (fastest on CPU) or vmap; same results."),
) -> None:
    """Train pairs (large net, small block in its place) into sharded safetensors files."""
    try:
        splits = _data("idx" if data_dir else dataset, data_dir)
        start, stop = (int(v) for v in shards.split(":"))
        spec = networks.BlockSpec(
            in_channels=splits.input_shape[0],
            image_size=splits.input_shape[1],
            channels=channels,
            bottleneck=bottleneck,
            small_skip=small_skip,
            num_classes=splits.num_classes,
        )
        cfg = PairConfig(
            dataset if not data_dir else f"idx:{data_dir}",
            spec,
            Schedule(subset, epochs_large, epochs_small, 128, lr),
            seed,
            shard_size,
            eval_images,
        )
        info = make_pairs(out, cfg, range(start, stop), splits, engine=engine)
    except KdforgeError as e:
        _fail(e)
    typer.echo(json.dumps(info))


@app.command("train")
def train_cmd(
    pairs: Path = typer.Option(..., help="Pair-set directory from make-pairs."),
    out: Path = typer.Option(..., help="Translator checkpoint (.safetensors)."),
    data_dir: str = typer.Option(None, help="IDX directory (default: the one the pair set was made from)."),
    kind: str = typer.Option("mixer", help="mixer, attention, mlp or set (order-free hidden channels)."),
    objective: str = typer.Option("functional", help="mse, functional, or both."),
    epochs: int = typer.Option(100),
    dim: int = typer.Option(64),
    depth: int = typer.Option(4),
    mask_p: float = typer.Option(0.0, help="Masking probability (augmentation)."),
    noise: float = typer.Option(0.0, help="Relative noise sigma (augmentation)."),
    augment_on: str = typer.Option("input", help="input, target or both."),
    hidden_perm: bool = typer.Option(
        False, help="Augment: reorder the large block's hidden channels (same function); best measured."
    ),
    context: int = typer.Option(0, help="Context tokens read from the begin/last blocks (0 = none)."),
    template: bool = typer.Option(
        True, help="Translate a correction of the best training pair's small block (needed without skip)."
    ),
    seed: int = typer.Option(0),
) -> None:
    """Train a translator on the training networks; checkpoint chosen on validation networks."""
    from kdforge.methods.translation.evaluate import split_networks
    from kdforge.methods.translation.train import TrainConfig, train_translator

    try:
        p, manifest = load_pairs(pairs)
        spec = networks.BlockSpec(**manifest["spec"])
        splits = _manifest_data(manifest, data_dir)
        tr, va, _ = split_networks(p)
        w = {"mse": (1.0, 0.0), "functional": (0.0, 1.0), "both": (1.0, 1.0)}
        if objective not in w:
            raise KdforgeError(f"unknown objective '{objective}'", "use mse, functional or both")
        cfg = TrainConfig(
            kind=kind,
            dim=dim,
            depth=depth,
            epochs=epochs,
            seed=seed,
            mse_weight=w[objective][0],
            func_weight=w[objective][1],
            augment=Augment(mask_p, noise, augment_on),
            hidden_perm=hidden_perm,
            context=context,
            template=template,
        )
        v = splits.val.tensors
        tt, hist = train_translator(
            tr,
            va,
            spec,
            cfg,
            (splits.train.tensors["x"], splits.train.tensors["y"]),
            (v["x"][:1000], v["y"][:1000]),
        )
    except KdforgeError as e:
        _fail(e)
    tt.save(out)
    typer.echo(json.dumps({"checkpoint": str(out), "best_val_acc": hist["best_val_acc"]}))


@app.command("eval")
def eval_cmd(
    pairs: Path = typer.Option(..., help="Pair-set directory (its test networks are scored)."),
    translator: Path = typer.Option(..., help="Checkpoint from `train`."),
    data_dir: str = typer.Option(None, help="IDX directory (default: the one the pair set was made from)."),
) -> None:
    """Score translated / random-init / trained small blocks on the held-out test networks."""
    from kdforge.methods.translation.evaluate import evaluate, split_networks
    from kdforge.methods.translation.train import TrainedTranslator

    try:
        p, manifest = load_pairs(pairs)
        spec = networks.BlockSpec(**manifest["spec"])
        tt = TrainedTranslator.load(translator, spec)
        splits = _manifest_data(manifest, data_dir)
        _, _, te = split_networks(p)
        r = evaluate(tt, te, splits.test.tensors["x"], splits.test.tensors["y"])
    except KdforgeError as e:
        _fail(e)
    typer.echo(json.dumps({k: sum(v) / len(v) for k, v in r.items()}))


if __name__ == "__main__":
    torch.set_num_threads(min(2, torch.get_num_threads()))
    app()
