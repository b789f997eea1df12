"""Every recipe under configs/ builds: its method's Config (and a wrapped base method's), its
student and teacher, and (where that is cheap) the method itself, which takes one training step.
Every registered data set loads a few examples, or says clearly what is missing.

Recipes are built on synthetic batches of each data set's shape, so they are checked without the
data installed. Checkpoint and ``init_from`` paths name runs that may not exist here; the models
are built with fresh weights instead.
"""

from __future__ import annotations

import copy
import functools
import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from kdforge.config import check_kwargs, load_recipe
from kdforge.data import load_dataset
from kdforge.data.embeddings import all_rows, extract, module_embedder
from kdforge.errors import KdforgeError
from kdforge.models import build_model, count_parameters
from kdforge.registry import DATASETS, METHODS, list_datasets
from test_idx import make_idx_dir

CONFIGS = Path(__file__).parents[1] / "configs"
KT_RECIPES = CONFIGS / "kt"  # Knowledge Translation recipes: their own schema (test_translation_recipe.py)
RECIPES = sorted(
    p for p in CONFIGS.rglob("*.yaml") if not p.name.startswith("_") and KT_RECIPES not in p.parents
)
FRAGMENTS = sorted(CONFIGS.rglob("_*.yaml"))  # shared parts, only named as `base:` of recipes
# data set -> (input_shape, num_classes) for synthetic batches; text sets take MiniLM token ids
SHAPES = {
    "fashion_mnist": ((1, 28, 28), 10),
    "idx": ((1, 28, 28), 10),
    "digits": ((1, 8, 8), 10),
    **{f"vader_{d}": ((64,), 2) for d in ("movies", "tweets", "amazon", "nyt")},
    "audio_folder": ((1, 40, 101), 36),  # 1 s of 40-channel log-mels (configs/east_audio)
}
BUILD_METHOD_BELOW = 2_000_000  # student parameters; larger students (MiniLM) build models and configs only


def _ids(paths):
    return [str(p.relative_to(CONFIGS)) for p in paths]


def _data(cfg) -> tuple[tuple[int, ...], int, dict[str, torch.Tensor]]:
    """Input shape, class count and a 4-example synthetic batch of the recipe's data set."""
    name, kwargs = cfg.data.name, dict(cfg.data.kwargs)
    base = kwargs.get("base", "vader_movies") if name == "with_teacher_emb" else name
    assert base in SHAPES, f"add data set '{base}' (used by a recipe) to SHAPES"
    shape, classes = SHAPES[base]
    gen = torch.Generator().manual_seed(0)
    if len(shape) == 1:  # token ids
        tokens = int(kwargs.get("max_len", (kwargs.get("base_kwargs") or {}).get("max_len", shape[0])))
        shape = (tokens,)
        batch = {"input_ids": torch.randint(1000, 20000, (4, tokens), generator=gen)}
        batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    else:
        batch = {"x": torch.rand(4, *shape, generator=gen)}
    batch["y"] = torch.arange(4) % classes
    if name == "with_teacher_emb":
        batch["teacher_emb"] = torch.randn(4, 24, generator=gen)
    return shape, classes, batch


@functools.cache
def _model(name: str, kwargs_json: str, shape: tuple[int, ...], classes: int) -> torch.nn.Module:
    kwargs = json.loads(kwargs_json)
    if "init_from" in kwargs:
        kwargs["init_from"] = None  # weights of a run that may not exist here
    if name == "ge2e_classifier":  # a pre-trained teacher: its weights file may be absent
        from kdforge.models.audio_teachers import resemblyzer_weights

        try:
            resemblyzer_weights()
        except KdforgeError as e:
            pytest.skip(f"GE2E weights not installed: {e.fix}")
    return build_model(name, shape, classes, **kwargs)


def _build(model_cfg, shape, classes) -> torch.nn.Module:
    model = _model(model_cfg.name, json.dumps(model_cfg.kwargs, sort_keys=True), shape, classes)
    return copy.deepcopy(model)


@pytest.mark.parametrize("path", RECIPES, ids=_ids(RECIPES))
def test_recipe_builds(path):
    cfg = load_recipe(path)
    DATASETS.get(cfg.data.name)
    method_cls = METHODS.get(cfg.method.name)
    options = check_kwargs("method", cfg.method.name, cfg.method.kwargs, method_cls.Config)
    wrapped = getattr(options, "base", None)  # a wrapper method (OPDF) names a registered base method
    if isinstance(wrapped, str) and hasattr(options, "base_kwargs"):
        check_kwargs("method", wrapped, options.base_kwargs, METHODS.get(wrapped).Config)
    shape, classes, batch = _data(cfg)
    student = _build(cfg.student, shape, classes)
    teacher = _build(cfg.teacher, shape, classes) if cfg.teacher is not None else None
    assert (teacher is not None) or not method_cls.needs_teacher, "the method needs a teacher"
    if count_parameters(student) >= BUILD_METHOD_BELOW:
        return
    torch.manual_seed(0)
    method = method_cls.build(student, teacher, cfg.method.kwargs, batch)
    method.on_step_start(0, 10)
    _, losses = method.training_step(batch)
    total = sum(losses.values())
    assert losses and math.isfinite(float(total.detach()))
    total.backward()
    assert any(p.grad is not None for p in method.trainable_parameters())


def test_every_fragment_is_a_base_of_some_recipe():
    used = set()
    for path in CONFIGS.rglob("*.yaml"):
        bases = (yaml.safe_load(path.read_text()) or {}).get("base") or []
        used |= {(path.parent / b).resolve() for b in ([bases] if isinstance(bases, str) else bases)}
    assert {p.resolve() for p in FRAGMENTS} <= used


class _TinyEmbedder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(64, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def _dataset_kwargs(name: str, tmp_path: Path) -> dict:
    """Arguments a data set needs beyond its defaults (files made here)."""
    if name == "idx":
        make_idx_dir(tmp_path / "idx")
        return {"data_dir": str(tmp_path / "idx"), "val_size": 5}
    if name == "with_teacher_emb":  # a teacher-embedding cache of the digits, from a tiny network
        digits, net = load_dataset("digits"), _TinyEmbedder()
        kw = {"dataset": "digits", "split": "all", "model": "tiny", "progress": False}
        extract(module_embedder(net), all_rows(digits), tmp_path / "emb", **kw)
        return {"base": "digits", "model": "tiny", "cache": str(tmp_path / "emb")}
    return {}


@pytest.mark.parametrize("name", list_datasets())
def test_dataset_loads_a_few_examples(name, tmp_path):
    try:
        splits = load_dataset(name, subset=24, **_dataset_kwargs(name, tmp_path))
    except KdforgeError as e:  # data not installed on this machine: the message says how to get it
        assert e.fix, f"'{name}' failed without saying how to fix it: {e}"
        pytest.skip(f"{name}: {e.cause}")
    assert len(splits.train) == 24 and len(splits.val) > 0 and len(splits.test) > 0
    for split in (splits.train, splits.val, splits.test):
        y = split.tensors["y"]
        assert y.min() >= 0 and y.max() < splits.num_classes
        inputs = split.tensors.get("x", split.tensors.get("input_ids"))
        assert tuple(inputs.shape[1:]) == tuple(splits.input_shape)
    if name == "with_teacher_emb":
        assert splits.train.tensors["teacher_emb"].shape == (24, 6)
