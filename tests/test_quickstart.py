import json

import pytest

from kdforge.distill import TuningGrid
from kdforge.quickstart import QuickstartSettings, distill_config, quickstart, teacher_recipe

TINY = QuickstartSettings(
    labelled=150,
    unlabelled=700,
    val_size=200,
    teacher={"name": "mlp", "kwargs": {"hidden": [128]}},
    teacher_steps=80,
    teacher_lr=0.01,
    student_kwargs={"hidden": [16]},
    steps=60,
    batch_size=32,
    grid=TuningGrid(lr=[0.01, 0.03], temperature=[2.0], alpha=[0.9]),
)


def test_quickstart_end_to_end_on_digits_reuses_the_teacher(tmp_path):
    r = quickstart(str(tmp_path), "digits", None, seed=0, progress=False, settings=TINY)
    sel = r["selection"]
    assert r["kd_gain_points"] == pytest.approx(
        100 * (sel["kd"]["test_acc"][0] - sel["student_alone"]["test_acc"][0])
    )
    rows = {row["name"]: row for row in r["report"]["rows"]}
    assert list(rows) == ["teacher", "student alone", "kd"]
    assert rows["teacher"]["params"] > 7 * rows["kd"]["params"]
    assert all(row["test_acc"][0] > 0.5 for row in rows.values())  # real training, 10 classes
    teacher_summary = tmp_path / "teacher-seed0" / "summary.json"
    assert json.loads(teacher_summary.read_text())["dataset"] == "digits:150labelled"  # labelled part only
    stamp = teacher_summary.stat().st_mtime_ns
    again = quickstart(str(tmp_path), "digits", None, seed=0, progress=False, settings=TINY)
    assert teacher_summary.stat().st_mtime_ns == stamp  # trained once, reused
    assert again["kd_gain_points"] == r["kd_gain_points"]
    assert again["teacher_time_s"] < r["teacher_time_s"]


def test_quickstart_settings_are_fair_and_match_the_teacher():
    s = QuickstartSettings()
    cfg = distill_config("o", "fashion_mnist", None, 1, s)
    teacher = teacher_recipe("o", "fashion_mnist", None, 1, s)
    assert cfg.teacher == "o/teacher-seed1/student.safetensors" and cfg.seeds == [1]
    assert (cfg.labelled, cfg.unlabelled, cfg.val_size) == (500, 20000, 1000)
    # the teacher sees exactly the labelled examples the student alone sees
    assert teacher["data"]["kwargs"] == {
        "base": "fashion_mnist",
        "labelled": cfg.labelled,
        "unlabelled": cfg.unlabelled,
        "keep_unlabelled": False,
    }
    assert teacher["data"]["val_size"] == cfg.val_size and teacher["seed"] == 1
    assert cfg.methods == ["kd"] and cfg.grid.lr == [0.003, 0.01] and cfg.grid.steps == [500, 1500]
