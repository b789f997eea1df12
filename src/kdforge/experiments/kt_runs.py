"""Measuring Knowledge Translation benchmarks: a pair set's split, reference accuracies, translators.

Every accuracy is of a small block between its own network's frozen begin/last blocks, on the
first ``test_images`` images of the data set's test split; translators are selected on the
validation networks and validation images only (:mod:`kdforge.methods.translation.train`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from kdforge.data import load_dataset
from kdforge.methods.translation import networks
from kdforge.methods.translation.evaluate import TEST_FRACTION, VAL_FRACTION, random_small, split_networks
from kdforge.methods.translation.grouped import small_accuracy
from kdforge.methods.translation.pairs import load_pairs
from kdforge.methods.translation.train import (
    TranslatorConfig,
    template_index,
    train_translator,
    validation_images,
)

Networks = dict[str, Tensor]


@dataclass
class KtSplit:
    """A pair set split into train / validation / test networks, with the images they are scored on."""

    pairs_dir: str
    manifest: dict
    spec: networks.BlockSpec
    n_all: int
    train: Networks
    val: Networks
    test: Networks
    train_images: tuple[Tensor, Tensor]
    val_images: tuple[Tensor, Tensor]
    test_images: tuple[Tensor, Tensor]


def load_split(
    pairs_dir: str,
    test_images: int = 2000,
    data_dir: str | None = None,
    val_frac: float = VAL_FRACTION,
    test_frac: float = TEST_FRACTION,
) -> KtSplit:
    """Load a pair set, split its networks (the library split) and its data set's images."""
    pairs, manifest = load_pairs(pairs_dir)
    ds = manifest["dataset"]
    splits = load_dataset("idx", data_dir=data_dir) if data_dir else load_dataset(ds)
    tr, va, te = split_networks(pairs, val_frac=val_frac, test_frac=test_frac)
    test = splits.test.tensors
    return KtSplit(
        pairs_dir=str(pairs_dir),
        manifest=manifest,
        spec=networks.BlockSpec(**manifest["spec"]),
        n_all=len(pairs["seed"]),
        train=tr,
        val=va,
        test=te,
        train_images=(splits.train.tensors["x"], splits.train.tensors["y"]),
        val_images=validation_images(splits),
        test_images=(test["x"][:test_images], test["y"][:test_images]),
    )


def small_blocks(nets: Networks) -> Networks:
    """The small-block tensors of stacked networks."""
    return {k: v for k, v in nets.items() if k.startswith("small.")}


def accuracy(split: KtSplit, nets: Networks, small: Networks) -> list[float]:
    """Per network of ``nets``: test accuracy with ``small`` between its begin/last blocks."""
    x, y = split.test_images
    return small_accuracy(nets, small, x, y, split.spec.small_skip).tolist()


def random_accuracies(split: KtSplit, nets: Networks, seeds: list[int]) -> list[list[float]]:
    """Per seed: accuracies of random-init small blocks (draw seed ``1000 + seed``)."""
    return [accuracy(split, nets, random_small(split.spec, len(nets["seed"]), 1000 + s)) for s in seeds]


def template_blocks(source: Networks, n: int, val_images: tuple[Tensor, Tensor], skip: bool) -> Networks:
    """The template of the functional rows, repeated for ``n`` networks: the small block of the
    ``source`` pair that scores best on the validation images (never the stored test accuracy)."""
    best = template_index(source, *val_images, skip)
    return {k: v[best : best + 1].expand(n, *v.shape[1:]) for k, v in small_blocks(source).items()}


def generation_seconds(pairs_dir: str | Path) -> float:
    """Wall time of a pair set's generation: manifest written to last shard finished (file times)."""
    shards = sorted(Path(pairs_dir).glob("shard_*.safetensors"))
    return max(f.stat().st_mtime for f in shards) - (Path(pairs_dir) / "manifest.json").stat().st_mtime


def train_and_score(
    split: KtSplit, cfg: TranslatorConfig, train: Networks, val: Networks, banks: dict, progress: bool = False
) -> tuple[Any, dict, float]:
    """Train one translator on ``train`` (selected on ``val``): (translator, history, seconds)."""
    t = time.perf_counter()
    tt, hist = train_translator(
        train, val, split.spec, cfg, split.train_images, split.val_images, progress, bank_cache=banks
    )
    return tt, hist, time.perf_counter() - t


def table_info(split: KtSplit, settings: dict, rows: list[str], gen_seconds: float) -> dict:
    """The header facts of a KT table (what ``kt_protocol.table_markdown`` prints)."""
    return {
        "dataset": split.manifest["dataset"],
        "pairs": split.pairs_dir,
        "n_all": split.n_all,
        "n_train": len(split.train["seed"]),
        "n_val": len(split.val["seed"]),
        "n_test": len(split.test["seed"]),
        "skip": split.spec.small_skip,
        "schedule": split.manifest["schedule"],
        "generation_seconds": gen_seconds,
        "dim": settings["dim"],
        "depth": settings["depth"],
        "batch_size": settings["batch_size"],
        "seeds": settings["seeds"],
        "test_images": len(split.test_images[1]),
        "translator_rows": rows,
    }


def run_table(split: KtSplit, rows: dict[str, dict], settings: dict) -> dict:
    """Measure the KT table: random init, template only, each translator row over seeds, trained.

    Args:
        rows: Row name -> :class:`TranslatorConfig` overrides (a functional row has ``func_weight``).
        settings: ``seeds``, ``epochs``, ``func_epochs`` (or None), ``evals``, ``dim``, ``depth``,
            ``batch_size``, ``bank``, ``img_batch``.

    Returns:
        ``{"rows", "curves", "info"}`` (per row: ``per_seed`` [seeds][test networks]).
    """
    te, seeds = split.test, settings["seeds"]
    results: dict = {"rows": {}, "curves": {}}
    results["rows"]["random init"] = {"per_seed": random_accuracies(split, te, seeds), "train_seconds": 0.0}
    template = template_blocks(split.train, len(te["seed"]), split.val_images, split.spec.small_skip)
    results["rows"]["template only (best training pair's small block)"] = {
        "per_seed": [accuracy(split, te, template)],
        "train_seconds": 0.0,
    }
    banks: dict = {}  # frozen feature banks, shared by all rows and seeds
    for name, over in rows.items():
        functional = over.get("func_weight", 0) > 0
        epochs = settings["func_epochs"] if functional and settings["func_epochs"] else settings["epochs"]
        per_seed, secs = [], 0.0
        for s in seeds:
            keys = ("dim", "depth", "batch_size", "bank", "img_batch")
            cfg = TranslatorConfig(
                **{k: settings[k] for k in keys},
                epochs=epochs,
                seed=s,
                eval_every=max(1, epochs // settings["evals"]),
                **over,
            )
            tt, hist, seconds = train_and_score(split, cfg, split.train, split.val, banks)
            secs += seconds
            per_seed.append(accuracy(split, te, tt.translate(te)))
            results["curves"].setdefault(name, []).append(hist)
            print(name, s, sum(per_seed[-1]) / len(per_seed[-1]), flush=True)
        results["rows"][name] = {"per_seed": per_seed, "train_seconds": secs / len(seeds), "epochs": epochs}
    trained = accuracy(split, te, small_blocks(te))  # stored trained blocks, same images
    results["rows"]["trained small block (upper bound)"] = {"per_seed": [trained], "train_seconds": None}
    gen = generation_seconds(split.pairs_dir)
    results["info"] = table_info(split, settings, list(rows), gen)
    return results
