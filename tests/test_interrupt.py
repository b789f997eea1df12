"""Interruption as a user meets it: Ctrl-C / SIGTERM, a second process, a killed run, a damaged file."""

from __future__ import annotations

import io
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from kdforge.cli import app
from kdforge.config import from_dict
from kdforge.engine import checkpoint as ckpt
from kdforge.engine.lock import LOCK_NAME, RunLock
from kdforge.engine.logger import ProgressLine
from kdforge.engine.run import run_experiment
from kdforge.engine.trainer import StopTraining
from kdforge.errors import KdforgeError
from kdforge.registry import METHODS

from conftest import digits_recipe

TESTS = Path(__file__).parent
SUMMARY_KEYS = ("steps", "best_step", "val_acc", "val_loss", "test_acc", "test_loss")


def _kill_at(k):
    def cb(step, _values):
        if step == k:
            raise StopTraining

    return cb


def _env():
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def _kdforge_with_slow_method(args, **kwargs):
    """`kdforge ARGS` in a subprocess that also registers `slow_supervised` (tests/_slow_method.py)."""
    code = "import _slow_method; from kdforge.cli import main; main()"
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        **kwargs,
    )


@pytest.fixture
def slow_method():
    """`slow_supervised` registered in this process for one test, then removed again."""
    from _slow_method import SlowSupervised

    METHODS._items["slow_supervised"] = SlowSupervised
    yield
    METHODS._items.pop("slow_supervised", None)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Summary of the plain `supervised` run the interrupted ones must reproduce."""
    root = tmp_path_factory.mktemp("reference")
    return run_experiment(from_dict(digits_recipe(root, train={"log_every_steps": 1})), progress=False)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_prints_resume_command_and_resume_matches(
    tmp_path, uninterrupted, slow_method, sig, code
):
    recipe = tmp_path / "recipe.yaml"
    rec = digits_recipe(tmp_path / "runs", method={"name": "slow_supervised"}, train={"log_every_steps": 1})
    recipe.write_text(yaml.safe_dump(rec))
    run_dir = tmp_path / "runs" / "run"
    proc = _kdforge_with_slow_method(["run", recipe, "--no-progress"])
    deadline = time.monotonic() + 240
    metrics = run_dir / "metrics.jsonl"
    while not (metrics.exists() and '"lr"' in metrics.read_text()):  # the first logged step
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no step was logged"
        time.sleep(0.02)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    name = signal.Signals(sig).name
    assert f"training interrupted by {name}; checkpoint saved at step " in err
    step = int(err.split("checkpoint saved at step ")[1].split()[0])
    assert 0 < step < uninterrupted["steps"]
    assert json.loads((run_dir / "checkpoints" / "last.json").read_text())["step"] == step
    assert not (run_dir / "summary.json").exists() and not (run_dir / LOCK_NAME).exists()
    command = err.split("resume with: ")[1].strip()
    assert command == shlex.join(["kdforge", "run", str(recipe), "--no-progress", "--resume"])
    resumed = CliRunner().invoke(app, shlex.split(command)[1:])  # in-process: no second start-up
    assert resumed.exit_code == 0, resumed.output
    summary = json.loads(resumed.stdout)
    for key in SUMMARY_KEYS:
        assert summary[key] == uninterrupted[key], key


def _hold_lock(run_dir: Path) -> subprocess.Popen:
    """Another process that takes the run directory's lock and waits."""
    code = (
        "import sys, time; from kdforge.engine.lock import RunLock\n"
        f"RunLock({str(run_dir)!r}).acquire(); print('locked', flush=True); time.sleep(300)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=_env())
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_process_on_a_run_directory_is_refused_then_stale_lock_taken_over(tmp_path, capsys):
    cfg = from_dict(digits_recipe(tmp_path))
    holder = _hold_lock(cfg.run_dir)
    try:
        with pytest.raises(KdforgeError, match=rf"(?s)is in use by process {holder.pid} .*wait for that run"):
            run_experiment(cfg, progress=False)
        assert not (cfg.run_dir / "checkpoints").exists()  # refused before writing anything
    finally:
        holder.kill()  # dies holding the lock: the file stays, the kernel drops the lock
        holder.wait()
    assert (cfg.run_dir / LOCK_NAME).exists()
    capsys.readouterr()
    summary = run_experiment(cfg, progress=False)
    assert f"took over the lock of '{cfg.run_dir}' left by process {holder.pid}" in capsys.readouterr().err
    assert summary["steps"] == 3 * (1097 // 64) and not (cfg.run_dir / LOCK_NAME).exists()


def test_lock_is_released_on_error_and_leaves_no_empty_directory(tmp_path):
    cfg = from_dict(digits_recipe(tmp_path, student={"kwargs": {"hiden": [3]}}))
    with pytest.raises(KdforgeError, match="has no option 'hiden'"):
        run_experiment(cfg, progress=False)
    assert not cfg.run_dir.exists()
    with RunLock(tmp_path / "x") as lock:
        assert lock.took_over is None and (tmp_path / "x" / LOCK_NAME).exists()
    assert not (tmp_path / "x").exists()


def test_run_killed_before_its_first_epoch_ends_resumes(tmp_path):
    """A time-based checkpoint (here: every step) makes a kill inside epoch 1 resumable."""
    over = {"train": {"checkpoint_every_s": 1e-9}}
    full = run_experiment(from_dict(digits_recipe(tmp_path / "a", **over)), progress=False)
    cfg = from_dict(digits_recipe(tmp_path / "b", **over))
    assert 10 < 1097 // 64  # the kill lies inside the first epoch (no evaluation yet)
    with pytest.raises(StopTraining):
        run_experiment(cfg, progress=False, callback=_kill_at(10))
    assert json.loads((cfg.run_dir / "checkpoints" / "last.json").read_text())["step"] == 9
    resumed = run_experiment(cfg, resume=True, progress=False)
    for key in SUMMARY_KEYS:
        assert resumed[key] == full[key], key


def test_time_based_checkpoint_is_off_by_default_within_its_interval(tmp_path):
    cfg = from_dict(digits_recipe(tmp_path))  # default: at most every 300 s
    with pytest.raises(StopTraining):
        run_experiment(cfg, progress=False, callback=_kill_at(10))
    assert not ckpt.has_checkpoint(cfg.run_dir / "checkpoints")


def test_truncated_newest_checkpoint_falls_back_to_the_one_before(tmp_path, capsys):
    over = {"train": {"checkpoint_every_steps": 5}}
    full = run_experiment(from_dict(digits_recipe(tmp_path / "a", **over)), progress=False)
    cfg = from_dict(digits_recipe(tmp_path / "b", **over))
    with pytest.raises(StopTraining):
        run_experiment(cfg, progress=False, callback=_kill_at(12))
    ckpt_dir = cfg.run_dir / "checkpoints"
    assert json.loads((ckpt_dir / "prev.json").read_text())["step"] == 5
    assert sorted(p.name for p in ckpt_dir.glob("step-*")) == [
        "step-00000005.safetensors",
        "step-00000010.safetensors",
    ]
    newest = ckpt_dir / "step-00000010.safetensors"
    newest.write_bytes(newest.read_bytes()[:-100])
    capsys.readouterr()
    resumed = run_experiment(cfg, resume=True, progress=False)
    err = capsys.readouterr().err
    assert f"the newest checkpoint is damaged: '{newest}'" in err and "(step 5," in err
    for key in SUMMARY_KEYS:
        assert resumed[key] == full[key], key


def test_flipped_byte_in_newest_checkpoint_is_caught_by_its_checksum(tmp_path, capsys):
    cfg = from_dict(digits_recipe(tmp_path, train={"checkpoint_every_steps": 5}))
    with pytest.raises(StopTraining):
        run_experiment(cfg, progress=False, callback=_kill_at(12))
    newest = cfg.run_dir / "checkpoints" / "step-00000010.safetensors"
    data = bytearray(newest.read_bytes())
    data[-1] ^= 0xFF  # same size, valid header: only the checksum can tell
    newest.write_bytes(bytes(data))
    _, _, meta = ckpt.load_checkpoint(cfg.run_dir / "checkpoints")
    assert meta["step"] == 5 and "SHA-256 differs" in capsys.readouterr().err
    # last.json now names step 5, so the next save keeps step 5 (not the damaged file) as prev
    assert json.loads((cfg.run_dir / "checkpoints" / "last.json").read_text())["step"] == 5
    assert ckpt.load_checkpoint(cfg.run_dir / "checkpoints")[2]["step"] == 5
    assert capsys.readouterr().err == ""


def test_both_checkpoints_damaged_is_one_clear_error(tmp_path):
    cfg = from_dict(digits_recipe(tmp_path, train={"checkpoint_every_steps": 5}))
    with pytest.raises(StopTraining):
        run_experiment(cfg, progress=False, callback=_kill_at(12))
    for f in (cfg.run_dir / "checkpoints").glob("step-*.safetensors"):
        f.write_bytes(b"junk")
    with pytest.raises(KdforgeError, match=r"(?s)step-00000010.safetensors.*delete the run directory's"):
        run_experiment(cfg, resume=True, progress=False)


def test_train_time_is_summed_over_resumes(tmp_path):
    cfg = from_dict(digits_recipe(tmp_path, train={"checkpoint_every_steps": 5}))
    with pytest.raises(StopTraining):
        run_experiment(cfg, progress=False, callback=_kill_at(12))
    pointer = cfg.run_dir / "checkpoints" / "last.json"
    meta = json.loads(pointer.read_text())
    assert meta["loop"]["train_time_s"] > 0
    meta["loop"]["train_time_s"] = 1000.0  # as if the first part had taken 1000 s
    pointer.write_text(json.dumps(meta))
    summary = run_experiment(cfg, resume=True, progress=False)
    assert 1000.0 < summary["train_time_s"] < 1000.0 + 600


def test_progress_lines_when_output_is_not_a_terminal(tmp_path, capsys):
    cfg = from_dict(digits_recipe(tmp_path, train={"epochs": 1, "progress_every_s": 1e-9}))
    run_experiment(cfg, progress=True)  # pytest's stderr is not a terminal
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("run: step ")]
    assert len(lines) == 1097 // 64
    assert lines[-1].startswith(f"run: step {1097 // 64}/{1097 // 64} (100.0%), loss ")
    assert "steps/s, ETA 0m00s" in lines[-1]


def test_progress_line_format_and_interval():
    stream = io.StringIO()
    line = ProgressLine("x", total=200, start=100, every_s=3600, stream=stream)
    line.update(101, 0.5)
    assert stream.getvalue() == ""  # within the interval
    line._last -= 3600
    line._start_time -= 10  # 50 steps in 10 s: 5 steps/s, 50 steps left: 10 s
    line.update(150, 0.25)
    assert stream.getvalue() == "x: step 150/200 (75.0%), loss 0.2500, 5.0 steps/s, ETA 0m10s\n"


def test_quickstart_interrupted_prints_its_resume_command(tmp_path, monkeypatch):
    """quickstart stops like run (checkpoint, exit 143, the command) and that command finishes it."""
    import kdforge.quickstart
    from kdforge.engine.trainer import Trainer
    from test_quickstart import TINY

    monkeypatch.setattr(kdforge.quickstart, "QuickstartSettings", lambda: TINY)  # a seconds-long quickstart
    real_due = Trainer._due
    monkeypatch.setattr(
        Trainer,
        "_due",
        lambda self, stop: (signal.SIGTERM, False) if self.state.step == 3 else real_due(self, stop),
    )
    args = ["quickstart", "--output-dir", str(tmp_path / "qs"), "--dataset", "digits", "--no-progress"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 143, r.output
    assert "training interrupted by SIGTERM; checkpoint saved at step 3" in r.stderr
    assert f"resume with: {shlex.join(['kdforge', *args, '--resume'])}" in r.stderr
    teacher = tmp_path / "qs" / "teacher-seed0"
    assert json.loads((teacher / "checkpoints" / "last.json").read_text())["step"] == 3
    monkeypatch.setattr(Trainer, "_due", real_due)
    r = CliRunner().invoke(app, [*args, "--resume"])
    assert r.exit_code == 0, r.output
    assert "KD gain over the tuned student alone" in r.stdout
    assert json.loads((teacher / "summary.json").read_text())["steps"] == TINY.teacher_steps


def test_how_often_a_run_saves_or_reports_does_not_change_its_fingerprint(tmp_path):
    """Changing checkpoint_every_s / progress_every_s on --resume is allowed (same recipe)."""
    base = from_dict(digits_recipe(tmp_path)).fingerprint()
    other = digits_recipe(tmp_path, train={"checkpoint_every_s": 5.0, "progress_every_s": None})
    assert from_dict(other).fingerprint() == base
    assert from_dict(digits_recipe(tmp_path, train={"lr": 0.5})).fingerprint() != base
