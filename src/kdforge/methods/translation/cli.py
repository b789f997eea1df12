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
from kdforge.methods.translation.pairs import (
    PairConfig,
    Schedule,
    dataset_reference,
    load_pair_data,
    load_pairs,
    make_pairs,
)

app = typer.Typer(
    help="Knowledge Translation: translate a large block's parameters into a small block.",
    no_args_is_help=True,
)


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
) -> None:
    """Train pairs (large net, small block in its place) into sharded safetensors files."""
    try:
        reference = dataset_reference(dataset, data_dir)
        splits = load_pair_data(reference)
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
            reference,
            spec,
            Schedule(subset, epochs_large, epochs_small, 128, lr),
            seed,
            shard_size,
            eval_images,
        )
        info = make_pairs(out, cfg, range(start, stop), splits)
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
    from kdforge.methods.translation.train import TranslatorConfig, train_translator, validation_images

    try:
        p, manifest = load_pairs(pairs)
        spec = networks.BlockSpec(**manifest["spec"])
        splits = load_pair_data(manifest["dataset"], data_dir)
        tr, va, _ = split_networks(p)
        cfg = TranslatorConfig.for_objective(
            objective,
            kind=kind,
            dim=dim,
            depth=depth,
            epochs=epochs,
            seed=seed,
            augment=Augment(mask_p, noise, augment_on),
            hidden_perm=hidden_perm,
            context=context,
            template=template,
        )
        tt, hist = train_translator(
            tr,
            va,
            spec,
            cfg,
            (splits.train.tensors["x"], splits.train.tensors["y"]),
            validation_images(splits),
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
        splits = load_pair_data(manifest["dataset"], data_dir)
        _, _, te = split_networks(p)
        r = evaluate(tt, te, splits.test.tensors["x"], splits.test.tensors["y"])
    except KdforgeError as e:
        _fail(e)
    typer.echo(json.dumps({k: sum(v) / len(v) for k, v in r.items()}))


@app.command("run")
def run_cmd(
    recipe: Path = typer.Argument(..., help="KT recipe (YAML, see configs/kt/)."),
    overrides: list[str] = typer.Argument(None, help="Dotted overrides, e.g. translator.epochs=5."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Train a translator from a recipe, select it on validation networks, score the test networks.

    Writes translator.safetensors, recipe.yaml and result.json into OUTPUT_DIR/NAME of the recipe.
    The pair set's networks are split 70/10/20 (train/validation/test) by position, as in
    `train`/`eval` and the benchmarks.
    """
    from kdforge.methods.translation.recipe import load_translation_recipe, run_recipe

    try:
        result = run_recipe(load_translation_recipe(recipe, list(overrides or [])), progress=progress)
    except KdforgeError as e:
        _fail(e)
    typer.echo(json.dumps({k: v for k, v in result.items() if k != "per_network"}, indent=1))


if __name__ == "__main__":
    torch.set_num_threads(min(2, torch.get_num_threads()))
    app()
