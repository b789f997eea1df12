"""`kdforge distill` end to end on the 8x8 digits: fair tuning, selection on validation, report, resume."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from kdforge.data import load_dataset
from kdforge.distill import (
    DistillConfig,
    TuningGrid,
    check_config,
    distill,
    fit_teacher_head,
    make_arm_trials,
    resolve_teacher,
    score_teacher,
)
from kdforge.errors import KdforgeError
from kdforge.models import build_model

GRID = TuningGrid(lr=[0.01, 0.05], temperature=[2.0], alpha=[0.9])


def _cfg(tmp_path, teacher="", **over):
    base = dict(
        teacher=teacher,
        data="digits",
        student_kwargs={"hidden": [16]},
        steps=40,
        evaluations=2,
        grid=GRID,
        output_dir=str(tmp_path / "distill"),
        timing_batch=32,
    )
    return DistillConfig(**{**base, **over})


def test_distill_tunes_every_arm_on_the_same_grid_selects_on_val_and_resumes(tmp_path, digits_teacher):
    teacher, teacher_summary = digits_teacher
    cfg = _cfg(tmp_path, teacher["checkpoint"])
    result = distill(cfg, progress=False, say=lambda _: None)
    sel = result["selection"]
    assert list(sel) == ["student_alone", "kd"]
    for arm in sel.values():
        tried = sorted(c["overrides"]["train.lr"] for c in arm["candidates"])
        assert tried == GRID.lr  # the same learning rates for the baseline and KD
        best = max(arm["candidates"], key=lambda c: c["mean"])
        assert arm["val_acc"] == [best["mean"]] and arm["overrides"] == best["overrides"]
    assert sel["kd"]["overrides"]["method.kwargs.temperature"] == 2.0
    # the report: teacher scored once, students read from their selected runs
    rows = {r["name"]: r for r in result["report"]["rows"]}
    assert list(rows) == ["teacher", "student alone", "kd"]
    assert rows["teacher"]["test_acc"] == [pytest.approx(teacher_summary["test_acc"])]
    kd_run = tmp_path / "distill" / "runs" / sel["kd"]["runs"][0]
    assert rows["kd"]["file_bytes"] == (kd_run / "student.safetensors").stat().st_size
    assert rows["kd"]["test_acc"] == [json.loads((kd_run / "summary.json").read_text())["test_acc"]]
    assert rows["kd"]["ratios"]["fewer_params"] == pytest.approx(
        (64 * 128 + 128 + 1290) / (64 * 16 + 16 + 170)
    )
    assert result["report"]["provenance"]["seeds"] == [0]  # command, versions, machine, commit, date
    assert "<sub>command:" in (tmp_path / "distill" / "report.md").read_text()
    for name in ("report.md", "report.json", "report.png", "selection.json"):
        assert (tmp_path / "distill" / name).is_file()
    # every setting, defaults included, is in the saved recipe
    saved = yaml.safe_load((tmp_path / "distill" / "distill.yaml").read_text())
    resolved = saved.pop("method_options_resolved")
    assert saved == json.loads(json.dumps(dataclasses.asdict(cfg)))
    assert resolved == {"kd": {"temperature": 4.0, "alpha": 0.9}}  # every option of the method, defaults too
    assert saved["grid"]["alpha"] == [0.9] and saved["batch_size"] == 64
    # running again skips every finished run and gives the same selection
    summaries = sorted((tmp_path / "distill" / "runs").glob("*/summary.json"))
    assert len(summaries) == 4
    stamps = [p.stat().st_mtime_ns for p in summaries]
    again = distill(cfg, progress=False, say=lambda _: None)
    assert [p.stat().st_mtime_ns for p in summaries] == stamps
    assert {a: s["test_acc"] for a, s in again["selection"].items()} == {
        a: s["test_acc"] for a, s in sel.items()
    }


def test_cli_distill_prints_the_report(tmp_path, digits_teacher):
    teacher, _ = digits_teacher
    out = tmp_path / "cli"
    args = ["--teacher", teacher["checkpoint"], "--data", "digits", "--steps", "20", "--lr", "0.03"]
    args += ["--method-option", "temperature=3", "--student-option", "hidden=[8]", "--output-dir", out]
    args += ["--head-steps", "7", "--head-lr", "0.02", "--no-progress"]
    r = subprocess.run(
        [sys.executable, "-m", "kdforge.cli", "distill", *map(str, args)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "| kd |" in r.stdout and "x smaller" in r.stdout and "[distill]" in r.stderr
    assert r.stderr.count("[distill] run ") == 2  # not a terminal: one line per finished run (1 lr, 1 T)
    saved = yaml.safe_load((out / "distill.yaml").read_text())
    assert saved["student_kwargs"] == {"hidden": [8]} and saved["method_options"] == {
        "kd": {"temperature": 3}
    }
    assert (saved["head_steps"], saved["head_lr"]) == (7, 0.02)
    stamps = [p.stat().st_mtime_ns for p in sorted(out.glob("runs/*/summary.json"))]
    again = subprocess.run(  # an interrupted command's suggested resume line (same flags + --resume)
        [sys.executable, "-m", "kdforge.cli", "distill", *map(str, args), "--resume"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert [p.stat().st_mtime_ns for p in sorted(out.glob("runs/*/summary.json"))] == stamps
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "kdforge.cli",
            "distill",
            "--teacher",
            teacher["checkpoint"],
            "--data-option",
            "x",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "KEY=VALUE" in bad.stderr and "Traceback" not in bad.stderr
    wrong_key = subprocess.run(
        [
            sys.executable,
            "-m",
            "kdforge.cli",
            "distill",
            "--teacher",
            teacher["checkpoint"],
            "--data",
            "digits",
        ]
        + ["--method-option", "temprature=3", "--output-dir", str(tmp_path / "bad")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert wrong_key.returncode == 2 and "Traceback" not in wrong_key.stderr
    assert "valid keys" in wrong_key.stderr and "temperature, alpha" in wrong_key.stderr


def _foreign_teacher(tmp_path, outputs=7):
    """A model trained for other classes (digit mod 7: 7 outputs, not 10), exported like kdforge does."""
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), outputs, hidden=[32])
    train = load_dataset("digits").train.tensors
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x=train["x"]), train["y"] % outputs).backward()
        opt.step()
    path = tmp_path / "foreign.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    spec = {"model": "mlp", "kwargs": {"hidden": [32]}, "input_shape": [1, 8, 8], "num_classes": outputs}
    path.with_suffix(".json").write_text(json.dumps(spec))
    return path, model


@pytest.mark.parametrize("head", ["probe", "finetune"])
def test_head_is_fitted_when_the_teacher_has_other_classes(tmp_path, head):
    path, original = _foreign_teacher(tmp_path)
    cfg = _cfg(tmp_path, str(path), head=head, head_steps=60, head_lr=0.03)
    teacher, outputs = resolve_teacher(cfg)
    assert outputs == 7
    fitted = fit_teacher_head(cfg, teacher, outputs, progress=False)
    state = load_file(fitted["checkpoint"])
    assert state["head.weight"].shape == (10, 7)
    same_body = all(torch.equal(state[f"body.{k}"], v) for k, v in original.state_dict().items())
    assert same_body == (head == "probe")  # a probe leaves the teacher untouched; fine-tuning moves it
    (run_dir,) = (tmp_path / "distill").glob("teacher_head-*-seed0")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["val_acc"] > 0.5  # 7 features trained for another task carry the 10 classes


def test_labelled_mode_gives_the_pool_to_distilled_students_only(tmp_path, digits_teacher):
    teacher, _ = digits_teacher
    arms = make_arm_trials(
        _cfg(tmp_path, teacher["checkpoint"], labelled=200),
        resolve_teacher(_cfg(tmp_path, teacher["checkpoint"]))[0],
    )
    alone, kd = arms["student_alone"][0].config.data, arms["kd"][0].config.data
    assert alone.name == kd.name == "few_labels"
    assert alone.kwargs == {"base": "digits", "labelled": 200, "unlabelled": None, "keep_unlabelled": False}
    assert kd.kwargs["keep_unlabelled"] is True
    assert arms["kd"][0].config.train.max_steps == arms["student_alone"][0].config.train.max_steps == 40


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"teacher": ""}, "no teacher"),
        ({"head": "linear"}, "probe or finetune"),
        ({"data": "digitz"}, "unknown dataset 'digitz'"),
        ({"methods": ["kdd"]}, "unknown method 'kdd'"),
        ({"methods": ["supervised"]}, "student-alone baseline"),
        ({"grid": TuningGrid(lr=[])}, "grid lr"),
        ({"grid": TuningGrid(alpha=[1.5])}, "alpha must lie"),
        ({"steps": 0}, "steps must be at least 1"),
        ({"seeds": [0, 0]}, "distinct"),
    ],
)
def test_bad_settings_are_refused_before_training(tmp_path, over, message):
    with pytest.raises(KdforgeError, match=message):
        check_config(_cfg(tmp_path, **{"teacher": "t.safetensors", **over}))


def test_bad_teacher_files(tmp_path):
    with pytest.raises(KdforgeError, match="do not exist"):
        resolve_teacher(_cfg(tmp_path, str(tmp_path / "none.safetensors")))
    lone = tmp_path / "lone.safetensors"
    save_file({"w": torch.zeros(1)}, str(lone))
    with pytest.raises(KdforgeError, match="model spec beside"):
        resolve_teacher(_cfg(tmp_path, str(lone)))
    with pytest.raises(KdforgeError, match="without weights"):
        resolve_teacher(_cfg(tmp_path, "mlp"))
    named, outputs = resolve_teacher(_cfg(tmp_path, "mlp", teacher_checkpoint="w.safetensors"))
    assert named == {"name": "mlp", "kwargs": {}, "checkpoint": "w.safetensors"} and outputs is None


def test_a_teacher_reference_that_brings_its_own_weights_needs_no_checkpoint(tmp_path):
    # e.g. a frozen pre-trained encoder from the user's own builder file (hf:DIR alike)
    builder = tmp_path / "my_encoder.py"
    builder.write_text(
        "import torch\n"
        "class Encoder(torch.nn.Module):\n"
        "    def __init__(self, width):\n"
        "        super().__init__()\n"
        "        torch.manual_seed(0)\n"
        "        self.fc = torch.nn.Linear(64, width)\n"
        "    def forward(self, x):\n"
        "        return self.fc(x.flatten(1))\n"
        "def encoder(input_shape, num_classes):\n"
        "    return Encoder(num_classes)\n"
    )
    name = f"{builder}:encoder"
    teacher, outputs = resolve_teacher(_cfg(tmp_path, name, teacher_outputs=12))
    assert teacher == {"name": name, "kwargs": {}, "checkpoint": None} and outputs == 12
    cfg = _cfg(tmp_path, name, teacher_outputs=12, head_steps=30, head_lr=0.03, grid=TuningGrid(lr=[0.05]))
    said: list[str] = []
    result = distill(cfg, progress=False, say=said.append)
    assert result["report"]["rows"][0]["file_bytes"] > 0  # the probed teacher's weights, measured
    if not sys.stderr.isatty():  # one line per run, counted even without a progress bar
        assert [m.split(" ")[1] for m in said if m.startswith("run ")] == ["1/4", "2/4", "3/4", "4/4"]


def test_schedule_lengths_are_tuned_alike_for_every_arm(tmp_path, digits_teacher):
    teacher, _ = digits_teacher
    grid = TuningGrid(lr=[0.01], temperature=[2.0], alpha=[0.9], steps=[20, 45])
    cfg = _cfg(tmp_path, teacher["checkpoint"], grid=grid, batch_size=100)
    arms = make_arm_trials(cfg, resolve_teacher(cfg)[0])
    for trials in arms.values():
        assert sorted(t.config.train.max_steps for t in trials) == [20, 45]
        # enough epochs for the longest schedule: 45 steps of 100 from about 1,100 examples
        assert all(t.config.train.epochs * (1097 // 100) >= 45 for t in trials)
    with pytest.raises(KdforgeError, match="grid steps"):
        check_config(_cfg(tmp_path, "t.safetensors", grid=TuningGrid(steps=[0])))


def test_teacher_scores_are_recomputed_when_the_splits_change(tmp_path, digits_teacher):
    teacher, summary = digits_teacher
    model = resolve_teacher(_cfg(tmp_path, teacher["checkpoint"]))[0]
    first = score_teacher(_cfg(tmp_path, teacher["checkpoint"]), model)
    assert first["val_acc"] == pytest.approx(summary["val_acc"])  # same splits as the teacher's run
    other = score_teacher(_cfg(tmp_path, teacher["checkpoint"], seeds=[5]), model)  # another val split
    assert other["teacher"] != first["teacher"]
    again = score_teacher(_cfg(tmp_path, teacher["checkpoint"], seeds=[5]), model)
    assert again == other


def test_every_arm_gets_as_many_grid_points_as_kd():
    from kdforge.distill import equal_budget_lrs

    assert equal_budget_lrs([0.003, 0.01], 2) == [0.003, 0.01]
    four = equal_budget_lrs([0.003, 0.01], 4)
    assert len(four) == 4 and four[0] == 0.003 and four[-1] == 0.01
    assert all(a < b for a, b in zip(four, four[1:], strict=False))
    assert equal_budget_lrs([0.01], 3) == pytest.approx([0.01 / 10**0.5, 0.01, 0.01 * 10**0.5], rel=1e-3)
