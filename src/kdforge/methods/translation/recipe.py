"""The Knowledge Translation recipe: one typed YAML file from pair sets to a scored translator.

A KT recipe (``configs/kt/*.yaml``) names the pair sets a translator trains on, the objective and
the translator's settings (:class:`~.train.TranslatorConfig`, every field a recipe key under
``translator:``). :func:`run_recipe` trains on the library's network split
(:func:`~.evaluate.split_networks`), selects the checkpoint on the validation networks and
validation images, and scores the held-out test networks once: ``kdforge translate run RECIPE``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kdforge.config import SCHEMA_VERSION, apply_overrides, build_config
from kdforge.errors import KdforgeError
from kdforge.methods.translation.train import OBJECTIVES, TranslatorConfig


@dataclass
class TranslationRecipe:
    """What one translator run is: its pair sets, objective, settings and output.

    Args:
        name: Run name; results go to ``output_dir/name/``.
        pairs: Pair-set directory (``kdforge translate make-pairs``); its networks are split into
            train / validation / test by position.
        extra_train_pairs: More pair sets (e.g. large-only networks) added to the *training*
            networks only, in order.
        data_dir: IDX directory to use instead of the one the pair set records.
        objective: ``mse``, ``functional`` or ``both`` (sets the translator's loss weights).
        translator: Translator settings (kind, size, epochs, augmentation, template...).
        output_dir: Parent directory of the run directory.
    """

    schema_version: int = SCHEMA_VERSION
    name: str = "kt"
    pairs: str = "runs/pairs"
    extra_train_pairs: list[str] = field(default_factory=list)
    data_dir: str | None = None
    objective: str = "functional"
    translator: TranslatorConfig = field(default_factory=TranslatorConfig)
    output_dir: str = "runs/kt"

    @property
    def run_dir(self) -> Path:
        """Directory this run writes to."""
        return Path(self.output_dir) / self.name

    def translator_config(self) -> TranslatorConfig:
        """The translator config with the objective's loss weights applied."""
        if self.objective not in OBJECTIVES:
            raise KdforgeError(
                f"unknown translator objective '{self.objective}'", f"use one of: {', '.join(OBJECTIVES)}"
            )
        default = TranslatorConfig()
        if (self.translator.mse_weight, self.translator.func_weight) != (
            default.mse_weight,
            default.func_weight,
        ):
            raise KdforgeError(
                "the recipe sets translator.mse_weight/func_weight, which the objective decides",
                f"remove them and set objective: {' | '.join(OBJECTIVES)}",
            )
        options = {k: v for k, v in asdict(self.translator).items() if k not in ("mse_weight", "func_weight")}
        options["augment"] = self.translator.augment
        return TranslatorConfig.for_objective(self.objective, **options)


def load_translation_recipe(path: str | Path, overrides: list[str] | None = None) -> TranslationRecipe:
    """Load a KT recipe, apply dotted ``key=value`` overrides and validate every key.

    Relative pair-set and output paths stay relative to the current directory, as in run recipes.

    Raises:
        KdforgeError: a missing file, invalid YAML, an unknown key or a value of the wrong type.
    """
    path = Path(path)
    if not path.is_file():
        raise KdforgeError(
            f"KT recipe '{path}' does not exist", "give the path of a recipe (see configs/kt/)"
        )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise KdforgeError(f"KT recipe '{path}' is not valid YAML: {e}", "fix the YAML syntax") from None
    if not isinstance(data, dict):
        raise KdforgeError(f"KT recipe '{path}' must be a YAML mapping", "see configs/kt/ for examples")
    recipe = build_config(TranslationRecipe, apply_overrides(data, overrides or []))
    if recipe.schema_version != SCHEMA_VERSION:
        raise KdforgeError(
            f"KT recipe schema_version {recipe.schema_version} is not supported (this kdforge reads "
            f"{SCHEMA_VERSION})",
            "update the recipe to the current schema (see configs/kt/)",
        )
    recipe.translator_config()  # an unknown objective fails at load time, not after training
    return recipe


def run_recipe(recipe: TranslationRecipe, progress: bool = True) -> dict[str, Any]:
    """Train, select on validation networks/images, score the test networks once; write results.

    Writes ``translator.safetensors``, ``recipe.yaml`` (resolved) and ``result.json`` (mean
    translated / random-init / trained accuracy on the test networks, the best validation accuracy
    and the per-network lists) into :attr:`TranslationRecipe.run_dir`.
    """
    from kdforge.methods.translation import networks
    from kdforge.methods.translation.evaluate import evaluate, split_networks
    from kdforge.methods.translation.pairs import load_pair_data, load_pairs, merge_pair_sets
    from kdforge.methods.translation.train import train_translator, validation_images

    pairs, manifest = load_pairs(recipe.pairs)
    spec = networks.BlockSpec(**manifest["spec"])
    splits = load_pair_data(manifest["dataset"], recipe.data_dir)
    train, val, test = split_networks(pairs)
    if recipe.extra_train_pairs:
        extra = [load_pairs(p, spec) for p in recipe.extra_train_pairs]
        train = merge_pair_sets((train, manifest), *extra)
    translator, history = train_translator(
        train,
        val,
        spec,
        recipe.translator_config(),
        (splits.train.tensors["x"], splits.train.tensors["y"]),
        validation_images(splits),
        progress=progress,
    )
    scores = evaluate(translator, test, splits.test.tensors["x"], splits.test.tensors["y"])
    run_dir = recipe.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    translator.save(run_dir / "translator.safetensors")
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(asdict(recipe), sort_keys=False))
    result = {
        "name": recipe.name,
        "test_networks": len(test["seed"]),
        "train_networks": len(train["seed"]),
        "best_val_acc": history["best_val_acc"],
        **{f"mean_{k}": sum(v) / len(v) for k, v in scores.items()},
        "per_network": scores,
        "train_seconds": history["seconds"],
    }
    (run_dir / "result.json").write_text(json.dumps(result, indent=1))
    return result
