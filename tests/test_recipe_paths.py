"""Paths in a recipe: relative to the recipe file, ``{output_dir}/...`` below the run's output_dir,
overrides relative to the current directory; shipped recipes chain through ``{output_dir}``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from kdforge.cli import app
from kdforge.config import from_dict, load_recipe
from kdforge.errors import KdforgeError

from conftest import digits_recipe

CONFIGS = sorted(  # run recipes: not the base fragments (_*.yaml) nor the KT recipes (own schema)
    p
    for p in Path(__file__).parents[1].joinpath("configs").rglob("*.yaml")
    if not p.name.startswith("_") and p.parent.name != "kt"
)


def write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def recipe_dict(**over) -> dict:
    d = {
        "name": "r",
        "output_dir": "out",
        "data": {"name": "digits", "data_dir": "data"},
        "student": {"name": "mine.py:build", "kwargs": {"init_from": "init.safetensors", "width": 3}},
        "teacher": {"name": "hf:models/bert", "checkpoint": "t.safetensors", "kwargs": {"model_dir": "~/m"}},
    }
    d.update(over)
    return d


def test_relative_paths_resolve_against_the_recipe_file(tmp_path, monkeypatch):
    recipe = write(tmp_path / "recipes" / "r.yaml", recipe_dict())
    monkeypatch.chdir(tmp_path)
    cfg = load_recipe("recipes/r.yaml")
    here = tmp_path / "recipes"
    assert cfg.teacher.checkpoint == str(here / "t.safetensors")
    assert cfg.teacher.name == f"hf:{here / 'models' / 'bert'}"
    assert cfg.teacher.kwargs["model_dir"] == str(Path.home() / "m")
    assert cfg.student.name == f"{here / 'mine.py'}:build"
    assert cfg.student.kwargs == {"init_from": str(here / "init.safetensors"), "width": 3}
    assert cfg.data.data_dir == str(here / "data")
    assert cfg.output_dir == "out"  # where runs go stays relative to where kdforge runs
    assert load_recipe(recipe).teacher.checkpoint == cfg.teacher.checkpoint


def test_absolute_paths_registered_names_and_modules_are_kept(tmp_path):
    data = recipe_dict(
        student={"name": "mlp"},
        teacher={"name": "py:pkg.models:build", "checkpoint": str(tmp_path / "abs.safetensors")},
    )
    cfg = load_recipe(write(tmp_path / "sub" / "r.yaml", data))
    assert cfg.student.name == "mlp" and cfg.teacher.name == "py:pkg.models:build"
    assert cfg.teacher.checkpoint == str(tmp_path / "abs.safetensors")


def test_output_dir_token_follows_the_output_dir_override(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = recipe_dict(teacher={"name": "mlp", "checkpoint": "{output_dir}/teacher/student.safetensors"})
    recipe = write(tmp_path / "recipes" / "r.yaml", data)
    assert load_recipe(recipe).teacher.checkpoint == str(tmp_path / "out" / "teacher" / "student.safetensors")
    moved = load_recipe(recipe, ["output_dir=/elsewhere/runs"])
    assert moved.teacher.checkpoint == "/elsewhere/runs/teacher/student.safetensors"
    in_python = from_dict(data).teacher.checkpoint  # recipes built in Python too
    assert in_python == str(tmp_path / "out" / "teacher" / "student.safetensors")


def test_overrides_resolve_against_the_current_directory(tmp_path, monkeypatch):
    recipe = write(tmp_path / "recipes" / "r.yaml", recipe_dict())
    monkeypatch.chdir(tmp_path)
    cfg = load_recipe(recipe, ["teacher.checkpoint=runs/t.safetensors", "student.name=hf:my_dir"])
    assert cfg.teacher.checkpoint == str(tmp_path / "runs" / "t.safetensors")
    assert cfg.student.name == f"hf:{tmp_path / 'my_dir'}"


def test_unquoted_output_dir_token_gets_a_hint(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("teacher:\n  name: mlp\n  checkpoint: {output_dir}\n")
    with pytest.raises(KdforgeError, match=r"'teacher.checkpoint' holds a mapping") as e:
        load_recipe(recipe)
    assert 'checkpoint: "{output_dir}/..."' in str(e.value)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_recipes_find_earlier_runs_below_their_output_dir(path):
    """So `--output-dir X` moves a teacher run and the runs that read it together."""
    cfg = load_recipe(path)
    out = os.path.abspath(cfg.output_dir)
    for model in (cfg.student, cfg.teacher):
        for value in (model.checkpoint, model.kwargs.get("init_from")) if model else ():
            if value:
                assert value.startswith(out + os.sep), (
                    f"{value} is not below {out}: write '{{output_dir}}/...'"
                )


def test_cli_output_dir_moves_the_teacher_chain(tmp_path, monkeypatch, digits_teacher):
    """`kdforge run kd.yaml --output-dir X` reads the teacher from X, not from the recipe's runs/."""
    teacher, _ = digits_teacher
    out = tmp_path / "moved"
    (out / "teacher").mkdir(parents=True)
    for suffix in (".safetensors", ".json"):
        src = Path(teacher["checkpoint"]).with_suffix(suffix)
        (out / "teacher" / f"student{suffix}").write_bytes(src.read_bytes())
    kd = digits_recipe(
        "runs",
        name="kd",
        teacher={**teacher, "checkpoint": "{output_dir}/teacher/student.safetensors"},
        method={"name": "kd"},
        train={"epochs": 1, "max_steps": 2},
    )
    recipe = write(tmp_path / "recipes" / "kd.yaml", kd)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["run", str(recipe), "--output-dir", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "kd" / "summary.json").read_text())["steps"] == 2
    saved = yaml.safe_load((out / "kd" / "config.yaml").read_text())
    assert saved["teacher"]["checkpoint"] == str(out / "teacher" / "student.safetensors")
    help_text = CliRunner().invoke(app, ["run", "--help"], terminal_width=200).output
    assert "recipe file's directory" in help_text and "{output_dir}" in help_text
