"""Knowledge Translation as a pipeline: typed recipes, validation-only selection, batch-free KL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from kdforge.data import load_dataset
from kdforge.errors import KdforgeError
from kdforge.methods.translation import grouped, networks
from kdforge.methods.translation.evaluate import TEST_FRACTION, VAL_FRACTION, split_networks
from kdforge.methods.translation.pairs import PairConfig, Schedule, load_pairs, make_pairs
from kdforge.methods.translation.recipe import load_translation_recipe, run_recipe
from kdforge.methods.translation.train import OBJECTIVES, TranslatorConfig, agreement_kl, template_index

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "kt"
SPEC = networks.BlockSpec(image_size=8)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def pair_dir(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("kt_pairs")
    schedule = Schedule(train_subset=384, epochs_large=3, epochs_small=2, batch_size=32, lr=0.05)
    make_pairs(
        out, PairConfig("digits", SPEC, schedule, seed=3, shard_size=5), range(2), digits, progress=False
    )
    return out


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_kt_recipe_loads_into_its_typed_config(path):
    recipe = load_translation_recipe(path)
    config = recipe.translator_config()
    assert (config.mse_weight, config.func_weight) == OBJECTIVES[recipe.objective]
    raw = yaml.safe_load(path.read_text())
    for key, value in raw["translator"].items():  # every key written in the file reached the config
        assert getattr(config, key) == value, key


def test_template_is_chosen_on_validation_images_never_on_stored_test_accuracy(pair_dir, digits):
    pairs, _ = load_pairs(pair_dir)
    xv, yv = digits.val.tensors["x"], digits.val.tensors["y"]
    chosen = template_index(pairs, xv, yv, SPEC.small_skip)
    own = {k: v for k, v in pairs.items() if k.startswith("small.")}
    on_val = grouped.small_accuracy(pairs, own, xv, yv, SPEC.small_skip)
    assert chosen == int(on_val.argmax())
    # the stored accuracies come from test images: making another network "best" there changes nothing
    rigged = dict(pairs, acc_small=torch.arange(len(pairs["seed"]), 0, -1).float())
    rigged["acc_small"][(chosen + 1) % len(pairs["seed"])] = 2.0
    assert template_index(rigged, xv, yv, SPEC.small_skip) == chosen
    # a large-only network (untrained small block) is never the template, however well it scores
    only_one_full = dict(pairs, has_small=torch.arange(len(pairs["seed"])) == 3)
    assert template_index(only_one_full, xv, yv, SPEC.small_skip) == 3


def test_agreement_kl_is_the_per_example_mean_whatever_the_batch_sizes():
    gen = torch.Generator().manual_seed(0)
    translated, large = torch.randn(3, 5, 4, generator=gen), torch.randn(3, 5, 4, generator=gen)
    q = F.softmax(large.double(), -1)
    by_hand = (q * (q.log() - F.log_softmax(translated.double(), -1))).sum(-1).mean()
    assert agreement_kl(translated, large).item() == pytest.approx(by_hand.item(), rel=1e-5)
    # more networks per step or more images per network (same examples repeated): same value
    assert agreement_kl(translated.repeat(4, 1, 1), large.repeat(4, 1, 1)).item() == pytest.approx(
        by_hand.item(), rel=1e-5
    )
    assert agreement_kl(translated.repeat(1, 6, 1), large.repeat(1, 6, 1)).item() == pytest.approx(
        by_hand.item(), rel=1e-5
    )


def test_one_network_split_for_cli_benchmarks_and_recipes(pair_dir):
    pairs, _ = load_pairs(pair_dir)
    train, val, test = split_networks(pairs)
    n = len(pairs["seed"])
    assert (VAL_FRACTION, TEST_FRACTION) == (0.1, 0.2)
    assert len(test["seed"]) == max(1, int(n * TEST_FRACTION)) and len(val["seed"]) == max(1, int(n * 0.1))
    assert torch.equal(torch.cat([train["seed"], val["seed"], test["seed"]]), pairs["seed"])


def _recipe(tmp_path, pair_dir, **extra):
    data = {
        "name": "tiny",
        "pairs": str(pair_dir),
        "objective": "functional",
        "translator": {"dim": 8, "depth": 1, "epochs": 2, "batch_size": 4, "bank": 32, "img_batch": 8},
        "output_dir": str(tmp_path / "runs"),
        **extra,
    }
    path = tmp_path / "kt.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_recipe_runs_end_to_end_through_the_cli(tmp_path, pair_dir):
    from typer.testing import CliRunner

    from kdforge.methods.translation.cli import app

    path = _recipe(tmp_path, pair_dir)
    result = CliRunner().invoke(app, ["run", str(path), "translator.template=true", "--no-progress"])
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "tiny"
    stored = json.loads((run_dir / "result.json").read_text())
    assert stored["test_networks"] == 2 and stored["train_networks"] == 7
    assert len(stored["per_network"]["translated"]) == 2
    assert stored["mean_trained"] == pytest.approx(sum(stored["per_network"]["trained"]) / 2)
    assert 0 < stored["mean_large"] <= 1 and (run_dir / "translator.safetensors").is_file()
    assert yaml.safe_load((run_dir / "recipe.yaml").read_text())["translator"]["template"] is True


def test_recipe_errors_name_the_cause(tmp_path, pair_dir):
    with pytest.raises(KdforgeError, match="unknown config key 'translator.epoch'"):
        load_translation_recipe(_recipe(tmp_path, pair_dir), ["translator.epoch=3"])
    with pytest.raises(KdforgeError, match="unknown translator objective 'kl'"):
        load_translation_recipe(_recipe(tmp_path, pair_dir, objective="kl"))
    with pytest.raises(KdforgeError, match="which the objective decides"):
        load_translation_recipe(_recipe(tmp_path, pair_dir), ["translator.mse_weight=0.5"])
    with pytest.raises(KdforgeError, match="does not exist"):
        load_translation_recipe(tmp_path / "missing.yaml")
    with pytest.raises(KdforgeError, match="no manifest.json"):
        run_recipe(load_translation_recipe(_recipe(tmp_path, tmp_path / "nowhere")), progress=False)


def test_objective_names_map_to_loss_weights():
    assert TranslatorConfig.for_objective("both", dim=8).mse_weight == 1.0
    assert TranslatorConfig.for_objective("functional").func_weight == 1.0
    with pytest.raises(KdforgeError, match="unknown translator objective"):
        TranslatorConfig.for_objective("kl")


def test_ratio_interval_resamples_networks_and_brackets_the_ratio():
    from kdforge.methods.translation.evaluate import ratio_interval

    gen = torch.Generator().manual_seed(1)
    reference = (0.5 + 0.4 * torch.rand(200, generator=gen)).tolist()
    translated = [
        [0.9 * r + 0.02 * torch.randn(1, generator=gen).item() for r in reference] for _ in range(3)
    ]
    ratio, low, high = ratio_interval(translated, reference)
    by_hand = torch.tensor(translated).mean(0).mean() / torch.tensor(reference).mean()
    assert ratio == pytest.approx(by_hand.item(), rel=1e-6) and low < ratio < high
    assert high - low < 0.02  # 200 networks, per-network ratio close to 0.9: a tight interval
    _, low_few, high_few = ratio_interval([t[:10] for t in translated], reference[:10])
    assert high_few - low_few > high - low  # fewer networks: a wider interval
    assert ratio_interval([[1.0, 1.0]], [0.5, 0.5]) == (2.0, 2.0, 2.0)  # no spread: a point
    with pytest.raises(KdforgeError, match="same test networks"):
        ratio_interval([[0.5, 0.5]], [0.5])
