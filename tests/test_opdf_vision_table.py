"""The OPDF vision grid: which recipes run, how their runs become rows and deltas, and the table."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdforge.config import load_recipe
from kdforge.experiments import opdf_vision_table as table

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "opdf"
TEST_ACC = {  # recipe -> test accuracy of its seed-0 run (seed s adds s / 1000)
    "kd_plain": 0.80,
    "kd_opdf": 0.83,
    "kd_plain_lr3x": 0.825,
    "theseus_plain": 0.85,
    "theseus_opdf": 0.84,
    "theseus_plain_lr3x": 0.845,
}


def _summary(name: str, acc: float) -> dict:
    return {"trial": name, "test_acc": acc, "val_acc": acc + 0.01, "train_params": 9, "student_params": 5,
            "train_time_s": 2.0}  # fmt: skip


@pytest.fixture
def grid(monkeypatch):
    """``run_grid`` over kd and theseus with the runs and timings stubbed: (results, calls)."""
    calls = {"teachers": [], "seeds": [], "timed": []}

    def run_recipe(recipe):
        calls["teachers"].append(recipe.stem)
        return _summary(recipe.stem, 0.88)

    def run_seeds(recipe, seeds):
        calls["seeds"].append((recipe.stem, seeds))
        return [_summary(f"{recipe.stem}-seed{s}", TEST_ACC[recipe.stem] + s / 1000) for s in seeds]

    monkeypatch.setattr(table, "run_recipe", run_recipe)
    monkeypatch.setattr(table, "run_seeds", run_seeds)
    monkeypatch.setattr(table, "exported_latency_ratio", lambda path: calls["timed"].append(path) or 1.02)
    variants = ["plain", "missing", "opdf", "plain_lr3x"]  # no recipe for "missing": skipped
    res = table.run_grid(CONFIGS, ROOT, ["kd", "theseus"], variants, [0, 2], {"theseus": "teacher_theseus"})
    return res, calls


def test_the_grid_runs_every_existing_recipe_over_the_seeds_and_each_teacher_once(grid):
    res, calls = grid
    assert calls["teachers"] == ["teacher", "teacher_theseus"]
    assert calls["seeds"] == [(name, [0, 2]) for name in TEST_ACC]
    first = load_recipe(CONFIGS / "kd_plain.yaml").output_dir
    assert calls["timed"][0] == Path(first) / "kd_plain-seed0" / "student.safetensors"
    assert res["seeds"] == [0, 2] and res["subset"] == load_recipe(CONFIGS / "kd_plain.yaml").data.subset


def test_rows_carry_their_runs_latency_and_architectures(grid):
    res, _ = grid
    assert [(r["base"], r["variant"]) for r in res["rows"]] == [tuple(n.split("_", 1)) for n in TEST_ACC]
    kd_plain, theseus_plain = res["rows"][0], res["rows"][3]
    assert kd_plain["test_acc"] == [0.80, 0.802] and kd_plain["recipe"] == "configs/opdf/kd_plain.yaml"
    assert (kd_plain["student"], kd_plain["teacher"], kd_plain["latency_ratio"]) == (
        "MLP 784-64-10",
        "teacher",
        1.02,
    )
    assert (theseus_plain["student"], theseus_plain["teacher"]) == ("MLP 784-256-256-10", "teacher_theseus")
    assert res["teachers"]["teacher_theseus"]["arch"] == "MLP 784-256-256-256-256-10"
    assert res["teacher"] is res["teachers"]["teacher"]


def test_opdf_rows_are_compared_with_plain_and_the_3x_lr_control(grid):
    res, _ = grid
    deltas = {(d["base"], d["variant"]): d for d in res["deltas"]}
    assert set(deltas) == {("kd", "opdf"), ("theseus", "opdf")}
    assert deltas["kd", "opdf"]["delta_points"] == pytest.approx(3.0)
    assert deltas["kd", "opdf"]["delta_vs_control"] == pytest.approx(0.5)
    assert deltas["theseus", "opdf"]["delta_points"] == pytest.approx(-1.0)


def test_the_table_lists_teachers_notes_and_verdicts(grid):
    res, _ = grid
    text = table.vision_markdown(res)
    assert (
        "- theseus: student MLP 784-256-256-10, teacher `teacher_theseus` (MLP 784-256-256-256-256-10)"
        in text
    )
    assert table.NOTES["theseus"] in text and table.NOTES["adkd"] not in text
    assert "| teacher `teacher` (MLP 784-1024-512-10) | 88.00 | 89.00 | 9 | 5 | - | 2 |" in text
    assert "| kd +OPDF | 83.10 ± 0.14 |" in text
    assert "- kd +OPDF: +3.00 points vs plain (met); +0.50 vs the plain 3x-lr control" in text
    assert "- theseus +OPDF: -1.00 points vs plain (**missed**)" in text
