"""Every recipe under configs/ parses and validates (models and methods build on 1 example)."""

from pathlib import Path

import pytest

from kdforge.config import load_recipe
from kdforge.models import build_model
from kdforge.registry import DATASETS, METHODS

RECIPES = sorted(Path(__file__).parents[1].joinpath("configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[str(p.relative_to(p.parents[1])) for p in RECIPES])
def test_recipe_is_valid(path):
    cfg = load_recipe(path)
    METHODS.get(cfg.method.name)
    DATASETS.get(cfg.data.name)
    if cfg.student.name in ("mlp", "cnn"):
        build_model(cfg.student.name, (1, 28, 28), 10, **cfg.student.kwargs)
    if cfg.teacher is not None and cfg.teacher.name in ("mlp", "cnn"):
        build_model(cfg.teacher.name, (1, 28, 28), 10, **cfg.teacher.kwargs)
