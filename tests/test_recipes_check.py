"""The shipped-recipe check: every recipe planned, student alone vs distilled, verdicts, notes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from kdforge.config import from_dict, load_recipe
from kdforge.errors import KdforgeError
from kdforge.experiments.recipes_check import (
    alone_config,
    check_recipe,
    check_row,
    checkable_recipes,
    recipe_note,
    skipped_row,
    tune_pair,
)
from kdforge.experiments.recipes_plan import ALONE, DISTILLED, TEACHER, plan_recipes
from kdforge.experiments.recipes_table import NOT_RUN, latest_rows, merge_rows, recipes_markdown

from conftest import digits_recipe

ROOT = Path(__file__).resolve().parents[1]


def test_every_shipped_recipe_gets_its_role_and_teacher_from_the_recipe_itself():
    every = checkable_recipes(ROOT / "configs")
    plans = {p.rel: p for p in plan_recipes(ROOT / "configs", every, {"audio": "/data/words"})}
    assert sorted(plans) == every and "fmnist_kd.yaml" in every and "opdf/kd_plain.yaml" in every
    roles = {rel: (p.role, p.teacher) for rel, p in plans.items()}
    assert roles["fmnist_teacher.yaml"] == (TEACHER, None) and roles["fmnist_student.yaml"] == (ALONE, None)
    assert roles["fmnist_kd.yaml"] == (DISTILLED, "fmnist_teacher.yaml")
    assert roles["opdf/theseus_plain.yaml"] == (DISTILLED, "opdf/teacher_theseus.yaml")
    assert roles["opdf/nlp_kd_plain.yaml"] == (DISTILLED, "opdf/nlp_teacher.yaml")
    assert roles["east/vader_ec_dcor.yaml"] == (DISTILLED, None)  # cached embeddings, no teacher run
    assert roles["east_audio/words_teacher_probe.yaml"][0] == TEACHER
    assert plans["opdf/nlp_kd_plain.yaml"].reason.startswith("cost")
    assert plans["fmnist_kd.yaml"].reason is None
    assert plans["east_audio/words_ec.yaml"].overrides == [
        "data.data_dir=/data/words",
        "data.kwargs.cache=/data/words-ge2e/encoder",
    ]
    for rel, plan in plans.items():  # a teacher recipe named by a distilling one is a teacher
        if plan.teacher:
            assert plans[plan.teacher].role == TEACHER, rel
    with pytest.raises(KdforgeError, match="needs the data root 'audio'"):
        plan_recipes(ROOT / "configs", ["east_audio/words_baseline.yaml"])


def test_merge_rows_carries_earlier_rows_with_where_they_were_measured():
    row = {"recipe": "a.yaml", "kind": "student alone", "seeds": [0]}
    previous = {
        "rows": [row, {"recipe": "b.yaml", "kind": "not checked", "reason": "old"}],
        "provenance": {"git_commit": "abc1234", "date": "2026-12-01T00:00:00+00:00"},
    }
    fresh = {"recipe": "c.yaml", "kind": "teacher", "measured": {"commit": "def", "date": "now"}}
    recipes = ["a.yaml", "b.yaml", "c.yaml", "d.yaml"]
    rows = merge_rows(recipes, {"c.yaml": fresh}, previous, {"d.yaml": "cost"})
    assert rows[0] == {**row, "measured": {"commit": "abc1234", "date": "2026-12-01T00:00:00+00:00"}}
    assert rows[1] == {"recipe": "b.yaml", "kind": "not checked", "reason": NOT_RUN}  # a reason is redone
    assert rows[2] is fresh and rows[3]["reason"] == "cost"
    assert merge_rows(["a.yaml"], {}, None, {})[0]["reason"] == NOT_RUN
    # joined sessions: each recipe's most recently measured row wins
    older = {"rows": [row], "provenance": {"git_commit": "old", "date": "2026-12-01"}}
    newer = {"rows": [{**row, "seeds": [1]}], "provenance": {"git_commit": "new", "date": "2026-12-02"}}
    for files in ([older, newer], [newer, older]):
        (joined,) = latest_rows(files)["rows"]
        assert joined["seeds"] == [1] and joined["measured"]["commit"] == "new"
    # a carried row below its student alone takes the note its recipe was given since
    worse = {"recipe": "w.yaml", "kind": "distilled", "verdict": "missed", "note": None, "ok": False}
    later = merge_rows(["w.yaml"], {}, {"rows": [worse], "provenance": {}}, {}, {"w.yaml": "too small"})
    assert later[0]["note"] == "too small" and later[0]["ok"]
    assert not merge_rows(["w.yaml"], {}, {"rows": [worse], "provenance": {}}, {}, {})[0]["ok"]


def test_checkable_recipes_leave_out_bases_and_translation(tmp_path):
    for rel in ("a.yaml", "_base.yaml", "sub/b.yaml", "sub/_c.yaml", "kt/t.yaml", "notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("name: x\n")
    assert checkable_recipes(tmp_path) == ["a.yaml", "sub/b.yaml"]


def test_recipe_note_reads_the_comment_and_its_continuation(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("# intro\n# Distilled vs alone: the student is\n#   too small.\nname: r\n# later\n")
    assert recipe_note(path) == "the student is too small."
    path.write_text("# intro\nname: r\n")
    assert recipe_note(path) is None


def test_alone_config_drops_teacher_and_method_kwargs(tmp_path, digits_teacher):
    teacher, _ = digits_teacher
    cfg = from_dict(digits_recipe(tmp_path, teacher=teacher, method={"name": "kd", "kwargs": {"alpha": 0.5}}))
    alone = alone_config(cfg)
    assert alone.teacher is None and alone.method.name == "supervised" and alone.method.kwargs == {}
    assert (alone.data, alone.student, alone.train, alone.seed) == (
        cfg.data,
        cfg.student,
        cfg.train,
        cfg.seed,
    )


def test_alone_config_of_an_east_recipe_drops_the_teacher_embeddings():
    cfg = load_recipe(ROOT / "configs" / "east_audio" / "words_ec.yaml", ["data.data_dir=/words"])
    alone = alone_config(cfg)
    assert alone.data.name == "audio_folder" and alone.data.kwargs == {
        "manifest": "manifest.csv",
        "per_class": 5,
    }
    assert (alone.data.data_dir, alone.data.subset, alone.data.batch_size) == ("/words", None, 32)
    kd = load_recipe(ROOT / "configs" / "opdf" / "nlp_kd_plain.yaml")  # KD with the teacher's logits cached
    assert kd.train.teacher_cache and not alone_config(kd).train.teacher_cache
    assert alone_config(kd).train == dataclasses.replace(kd.train, teacher_cache=False)
    baseline = load_recipe(ROOT / "configs" / "east" / "digits_baseline.yaml")
    digits = alone_config(load_recipe(ROOT / "configs" / "east" / "digits_ae_ec.yaml"))
    assert digits.data == baseline.data and digits.student == baseline.student  # its baseline recipe


def _runs(vals, tests=None):
    return [
        {"seed": s, "val_acc": v, "test_acc": t, "student_params": 10, "train_time_s": 1.0}
        for s, (v, t) in enumerate(zip(vals, tests or vals, strict=True))
    ]


def test_check_row_verdicts_on_the_paired_validation_difference():
    alone = _runs([0.80, 0.82, 0.81])
    better = check_row("r.yaml", alone, _runs([0.83, 0.85, 0.84]), "kd")
    assert better["verdict"] == "met" and better["ok"]
    assert better["claim"] == "distilled >= alone on validation"
    assert better["val_delta"]["mean"] == pytest.approx(0.03)
    worse = check_row("r.yaml", alone, _runs([0.78, 0.80, 0.79]), "kd")
    assert worse["verdict"] == "missed" and not worse["ok"]
    assert check_row("r.yaml", alone, _runs([0.78, 0.80, 0.79]), "kd", note="why")["ok"]
    mixed = check_row("r.yaml", alone, _runs([0.79, 0.83, 0.81]), "kd")
    assert mixed["verdict"] == "not distinguishable"
    # only validation decides: a test split where distilled wins does not change the verdict
    assert check_row("r.yaml", alone, _runs([0.78, 0.80, 0.79], [0.9] * 3), "kd")["verdict"] == "missed"
    with pytest.raises(ValueError, match="same seeds"):
        check_row("r.yaml", alone, _runs([0.8, 0.8, 0.8])[::-1], "kd")


def test_check_recipe_runs_teacher_distilled_and_alone_and_reuses_them(tmp_path):
    teacher_rec = digits_recipe(tmp_path, "t", student={"name": "mlp", "kwargs": {"hidden": [64]}})
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(teacher_rec))
    teacher = {"name": "mlp", "kwargs": {"hidden": [64]}, "checkpoint": "{output_dir}/t/student.safetensors"}
    kd = digits_recipe(tmp_path, "kd", teacher=teacher, method={"name": "kd", "kwargs": {"alpha": 0.5}})
    (tmp_path / "kd.yaml").write_text(yaml.safe_dump(kd) + "# Distilled vs alone: a test note.\n")
    row = check_recipe(tmp_path / "kd.yaml", [0, 1], teacher=tmp_path / "t.yaml", label="kd.yaml", n_boot=200)
    assert row["recipe"] == "kd.yaml" and row["method"] == "kd" and row["seeds"] == [0, 1]
    assert row["note"] == "a test note." and row["ok"]
    assert (
        len(row["alone"]["val_acc"]["values"]) == 2 and row["alone"]["params"] == row["distilled"]["params"]
    )
    alone_dirs = sorted(p.name for p in tmp_path.glob("alone-*"))
    assert len(alone_dirs) == 2 and (tmp_path / "t" / "student.safetensors").is_file()
    again = check_recipe(
        tmp_path / "kd.yaml", [0, 1], teacher=tmp_path / "t.yaml", label="kd.yaml", n_boot=200
    )
    assert again["alone"] == {**row["alone"], "train_time_s": again["alone"]["train_time_s"]}
    row = {**row, "measured": {"commit": "abcdef123", "date": "2026-12-02T16:00:00+00:00"}}
    text = recipes_markdown({"seeds": [0, 1], "rows": [row, skipped_row("x.yaml", "cost")]})
    assert "| kd.yaml | kd |" in text and "| abcdef1 2026-12-02 |" in text
    assert "- cost: `x.yaml`" in text and "a test note." in text


def test_tune_pair_gives_both_sides_the_same_budget_and_selects_on_validation(tmp_path):
    teacher_rec = digits_recipe(tmp_path, "t", student={"name": "mlp", "kwargs": {"hidden": [64]}})
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(teacher_rec))
    teacher = {"name": "mlp", "kwargs": {"hidden": [64]}, "checkpoint": "{output_dir}/t/student.safetensors"}
    kd = digits_recipe(tmp_path, "kd", teacher=teacher, method={"name": "kd", "kwargs": {"alpha": 0.5}})
    (tmp_path / "kd.yaml").write_text(yaml.safe_dump(kd))
    with pytest.raises(KdforgeError, match="unequal tuning budgets"):
        tune_pair(tmp_path / "kd.yaml", {"train.lr": [0.01]}, {"train.lr": [0.01, 0.001]}, [0])
    res = tune_pair(
        tmp_path / "kd.yaml",
        {"train.lr": [0.01, 0.0001]},
        {"method.kwargs.alpha": [0.5, 0.9]},
        [0],
        teacher=tmp_path / "t.yaml",
    )
    assert res["alone"]["overrides"] == {"train.lr": 0.01}  # 1e-4 for 3 epochs barely moves
    assert len(res["alone"]["candidates"]) == len(res["distilled"]["candidates"]) == 2
    assert res["distilled"]["mean"] == res["distilled"]["candidates"][0]["mean"]
    # the check of the recipe reuses the tuning runs of its own setting (runs named by what they train)
    check_recipe(tmp_path / "kd.yaml", [0, 1], n_boot=200)
    assert len(list(tmp_path.glob("alone-*-seed*"))) == 3  # lr 0.01 and 1e-4 at seed 0, then seed 1
    assert len(list(tmp_path.glob("kd-*-seed*"))) == 3  # alpha 0.5 and 0.9 at seed 0, then seed 1
