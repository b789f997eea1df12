import errno
import json
import os
from pathlib import Path

import pytest
import torch

from kdforge.config import from_dict
from kdforge.engine import checkpoint as ckpt
from kdforge.engine.logger import read_metrics
from kdforge.engine.run import load_student, run_experiment
from kdforge.engine.trainer import StopTraining
from kdforge.errors import KdforgeError

from conftest import digits_recipe


def _kill_at(k):
    def cb(step, _values):
        if step == k:
            raise StopTraining

    return cb


@pytest.mark.parametrize("method", ["supervised", "kd"])
def test_killed_run_resumes_to_identical_result(tmp_path, digits_teacher, method):
    teacher, _ = digits_teacher
    over = {
        "train": {"epochs": 3, "checkpoint_every_steps": 4, "lr": 0.01},
        "student": {"name": "mlp", "kwargs": {"hidden": [32], "dropout": 0.2}},
    }  # dropout: RNG matters
    if method == "kd":
        over.update(method={"name": "kd"}, teacher=teacher)
    full = run_experiment(from_dict(digits_recipe(tmp_path / "a", **over)), progress=False)

    cfg = from_dict(digits_recipe(tmp_path / "b", **over))
    with pytest.raises(StopTraining):
        run_experiment(cfg, progress=False, callback=_kill_at(23))  # mid-epoch, between checkpoints
    meta = json.loads((cfg.run_dir / "checkpoints" / "last.json").read_text())
    assert meta["step"] == 20
    resumed = run_experiment(cfg, resume=True, progress=False)
    for key in ("steps", "best_step", "val_acc", "val_loss", "test_acc", "test_loss"):
        assert resumed[key] == full[key], key
    a = load_student(tmp_path / "a" / "run" / "student")
    b = load_student(cfg.run_dir / "student")
    assert all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    # the metrics log of the resumed run matches the uninterrupted one row for row (minus wall time)
    strip = [{k: v for k, v in r.items() if k != "time"} for r in read_metrics(tmp_path / "a" / "run")]
    assert strip == [{k: v for k, v in r.items() if k != "time"} for r in read_metrics(cfg.run_dir)]


def test_exported_student_loads_without_teacher(tmp_path, digits_teacher):
    teacher, _ = digits_teacher
    cfg = from_dict(digits_recipe(tmp_path, method={"name": "kd"}, teacher=teacher))
    s = run_experiment(cfg, progress=False)
    model = load_student(cfg.run_dir / "student.safetensors")
    assert sum(p.numel() for p in model.parameters()) == s["student_params"]
    assert s["teacher_params"] > s["student_params"]


def test_kd_student_learns_from_the_teacher_alone(tmp_path, digits_teacher):
    teacher, summary = digits_teacher
    assert summary["test_acc"] > 0.9  # the teacher is really trained
    # alpha=1: the label term has weight 0, so all the student learns comes from the teacher's logits
    kd = {"name": "kd", "kwargs": {"temperature": 4.0, "alpha": 1.0}}
    cfg = from_dict(digits_recipe(tmp_path, "kd", method=kd, teacher=teacher, train={"epochs": 6}))
    student = run_experiment(cfg, progress=False)
    assert student["test_acc"] > 0.8  # chance is 0.1
    assert all(row["ce"] == 0.0 for row in read_metrics(cfg.run_dir) if "ce" in row)


def test_existing_checkpoint_is_never_overwritten(tmp_path):
    cfg = from_dict(digits_recipe(tmp_path))
    run_experiment(cfg, progress=False)
    before = {p.name: p.read_bytes() for p in cfg.run_dir.rglob("*") if p.is_file()}
    with pytest.raises(KdforgeError, match="(?s)already holds a checkpoint.*--resume"):
        run_experiment(cfg, progress=False)
    assert {p.name: p.read_bytes() for p in cfg.run_dir.rglob("*") if p.is_file()} == before


def test_resume_with_other_recipe_is_refused(tmp_path):
    cfg = from_dict(digits_recipe(tmp_path))
    with pytest.raises(StopTraining):
        run_experiment(cfg, progress=False, callback=_kill_at(20))
    other = from_dict(digits_recipe(tmp_path, train={"lr": 0.5}))
    with pytest.raises(KdforgeError, match="different recipe"):
        run_experiment(other, resume=True, progress=False)
    # more epochs is allowed: the run is extended
    longer = from_dict(digits_recipe(tmp_path, train={"epochs": 4}))
    assert run_experiment(longer, resume=True, progress=False)["steps"] == 4 * (1097 // 64)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = from_dict(digits_recipe(tmp_path, train={"checkpoint_every_steps": 5}))
    from kdforge.methods.supervised import Supervised

    orig = Supervised.training_step
    calls = {"n": 0}

    def poisoned(self, batch):
        calls["n"] += 1
        out, losses = orig(self, batch)
        if calls["n"] == 13:
            losses["ce"] = losses["ce"] * float("nan")
        return out, losses

    monkeypatch.setattr(Supervised, "training_step", poisoned)
    with pytest.raises(KdforgeError, match=r"(?s)non-finite at step 12.*last good checkpoint is kept"):
        run_experiment(cfg, progress=False)
    model, _, meta = ckpt.load_checkpoint(cfg.run_dir / "checkpoints")
    assert meta["step"] == 10 and all(torch.isfinite(v).all() for v in model.values())


def test_full_disk_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    cfg = from_dict(digits_recipe(tmp_path, train={"checkpoint_every_steps": 5}))
    real_save = ckpt.save_file
    calls = {"n": 0}

    def flaky(tensors, path):
        calls["n"] += 1
        if calls["n"] == 3:
            real_save(tensors, path)  # partial file appears, then the disk fills up
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(tensors, path)

    monkeypatch.setattr(ckpt, "save_file", flaky)
    with pytest.raises(KdforgeError, match="(?s)No space left.*previous checkpoint is intact"):
        run_experiment(cfg, progress=False)
    model, _, meta = ckpt.load_checkpoint(cfg.run_dir / "checkpoints")
    assert meta["step"] == 10
    assert not list((cfg.run_dir / "checkpoints").glob("*.tmp"))
    monkeypatch.setattr(ckpt, "save_file", real_save)
    assert run_experiment(cfg, resume=True, progress=False)["steps"] == 3 * (1097 // 64)


def test_corrupt_checkpoint_is_reported(tmp_path):
    cfg = from_dict(digits_recipe(tmp_path, train={"checkpoint_every_steps": 5}))
    with pytest.raises(StopTraining):
        run_experiment(cfg, progress=False, callback=_kill_at(7))
    f = next((cfg.run_dir / "checkpoints").glob("step-*.safetensors"))
    f.write_bytes(f.read_bytes()[:50])
    with pytest.raises(KdforgeError, match="unreadable or corrupt"):
        run_experiment(cfg, resume=True, progress=False)


def test_unwritable_run_dir(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.geteuid() == 0:  # root writes anywhere (CI runs as root): the OS refuses the write instead
        real_mkdir = Path.mkdir

        def refused(path, *args, **kwargs):
            if ro in (path, *path.parents):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
            return real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(Path, "mkdir", refused)
    with pytest.raises(KdforgeError, match="cannot write to run directory .*Permission denied"):
        run_experiment(from_dict(digits_recipe(ro)), progress=False)
    assert list(ro.iterdir()) == []


def test_output_dir_that_is_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(KdforgeError, match="cannot write to run directory"):
        run_experiment(from_dict(digits_recipe(blocker)), progress=False)


def test_early_stopping(tmp_path):
    cfg = from_dict(
        digits_recipe(
            tmp_path, train={"epochs": 40, "lr": 0.0, "eval_every_steps": 5, "early_stopping_patience": 2}
        )
    )
    s = run_experiment(cfg, progress=False)
    assert s["stopped_early"] and s["steps"] == 15 and s["best_step"] == 5


def test_teacher_checkpoint_errors(tmp_path, digits_teacher):
    teacher, _ = digits_teacher
    wrong = {**teacher, "kwargs": {"hidden": [7]}}
    with pytest.raises(KdforgeError, match="does not fit the teacher architecture"):
        run_experiment(from_dict(digits_recipe(tmp_path, method={"name": "kd"}, teacher=wrong)))
    missing = {**teacher, "checkpoint": str(tmp_path / "none.safetensors")}
    with pytest.raises(KdforgeError, match="does not exist"):
        run_experiment(from_dict(digits_recipe(tmp_path, method={"name": "kd"}, teacher=missing)))


def test_schedule_and_optimizer_names(tmp_path):
    with pytest.raises(KdforgeError, match="unknown schedule 'cosin'"):
        run_experiment(from_dict(digits_recipe(tmp_path, train={"schedule": "cosin"})), progress=False)
    with pytest.raises(KdforgeError, match="unknown optimizer"):
        run_experiment(
            from_dict(digits_recipe(tmp_path, name="o", train={"optimizer": "lbfgs"})), progress=False
        )
