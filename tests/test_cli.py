"""The command line as a user meets it: one clear message per bad input, never a traceback.

Commands run in-process through Typer's ``CliRunner`` (seconds, not a Python start-up
each); one smoke test runs the real console entry point in a subprocess, and the
start-up tests check in a fresh interpreter that torch is not imported.
(Signals and two-process locking: ``test_interrupt.py``.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from kdforge import cli
from kdforge._registry_scan import describe_registered, scan_registrations
from kdforge.cli import _SUBAPPS, app
from kdforge.registry import DATASETS, METHODS, MODELS

from conftest import digits_recipe, free_port

KDFORGE = [sys.executable, "-m", "kdforge.cli"]


def kd(*args):
    """Run ``kdforge ARGS`` in-process; the result has exit_code, stdout and stderr."""
    return CliRunner().invoke(app, [str(a) for a in args])


def write_recipe(tmp_path, **over):
    p = tmp_path / "recipe.yaml"
    p.write_text(yaml.safe_dump(digits_recipe(tmp_path / "runs", **over)))
    return p


@pytest.mark.parametrize(
    "cmd", [[], ["run"], ["list"], ["report"], ["quickstart"], *([name] for name in _SUBAPPS)]
)
def test_help_everywhere(cmd):
    r = kd(*cmd, "--help")
    assert r.exit_code == 0 and "Usage" in r.stdout
    assert "--install-completion" not in r.stdout  # off at the top level, so in lazy sub-apps too


def test_list():
    r = kd("list")
    assert r.exit_code == 0
    for name in ("kd", "fitnet", "supervised", "mlp", "cnn", "fashion_mnist", "digits", "idx", "vader_nyt"):
        assert f"  {name} " in r.stdout
    assert "  kd                       Student matches the teacher's" in r.stdout
    methods = kd("list", "methods").stdout
    assert methods.startswith("methods:\n") and "  kd " in methods and "mlp" not in methods


def test_list_from_source_equals_the_imported_registries():
    """`kdforge list` reads registrations from source; it must show exactly what importing registers.

    A registration with a computed name or docstring fails here: register with a literal
    name on a def/class with a docstring, so `kdforge list` can show it without torch.
    """
    live = {
        kind: {name: ((obj.__doc__ or "").strip().splitlines() or [""])[0] for name, obj in reg.items()}
        for kind, reg in (("methods", METHODS), ("models", MODELS), ("datasets", DATASETS))
    }
    assert scan_registrations() == live
    assert describe_registered() == live


def test_run_smoke_in_a_real_process_then_report(tmp_path):
    """The one subprocess test: the console entry point end to end (exit code, stdout JSON)."""
    recipe = write_recipe(tmp_path)
    r = subprocess.run(
        [*KDFORGE, "run", str(recipe), "train.epochs=1", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    run_dir = tmp_path / "runs" / "run"
    assert summary["steps"] == 1097 // 64 and (run_dir / "config.yaml").exists()
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["epochs"] == 1
    png = tmp_path / "curves.png"
    r = kd("report", run_dir, "--plot", png, "--out", tmp_path / "t.md")
    assert r.exit_code == 0, r.output
    assert "| run | supervised | 1 |" in r.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["method.name=kdd"], "unknown method 'kdd'"),
        (["train.lr=fast"], "train.lr' must be of type float"),
        (["traing.lr=1"], "unknown config key 'traing'"),
        (["data.name=idx", "data.data_dir=/nonexistent"], "does not exist"),
        (["method.name=fitnet", "method.kwargs.student_path=blocks.9"], None),
    ],
)
def test_bad_input_gives_one_clear_message(tmp_path, overrides, message):
    recipe = write_recipe(tmp_path)
    r = kd("run", recipe, *overrides, "--no-progress")
    assert r.exit_code == 2
    assert "Traceback" not in r.stderr and r.stderr.startswith("error: ")
    assert "fix:" in r.stderr
    if message:
        assert message in r.stderr


def test_usage_errors_are_messages_not_tracebacks():
    for args, message in ((["bogus"], "No such command 'bogus'"), (["run"], "Missing argument")):
        r = kd(*args)
        assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output


def test_data_dir_with_the_default_data_set_blames_that_directory(tmp_path):
    recipe = write_recipe(tmp_path, data={"name": "fashion_mnist"})
    r = kd("run", recipe, "--data-dir", tmp_path / "nope", "--no-progress")
    assert r.exit_code == 2
    assert f"data directory '{tmp_path / 'nope'}' does not exist" in r.stderr
    assert "not installed" not in r.stderr


def test_typo_on_an_existing_run_is_reported_as_the_typo(tmp_path):
    recipe = write_recipe(tmp_path)
    assert kd("run", recipe, "train.epochs=1", "--no-progress").exit_code == 0
    r = kd("run", recipe, "train.epochs=1", "student.kwargs.hiden=[8]", "--no-progress")
    assert r.exit_code == 2 and "model 'mlp' has no option 'hiden'" in r.stderr
    assert "already holds a checkpoint" in kd("run", recipe, "train.epochs=1", "--no-progress").stderr


def test_fitnet_bad_path_lists_nearest(tmp_path, digits_teacher):
    teacher, _ = digits_teacher
    recipe = write_recipe(
        tmp_path, method={"name": "fitnet", "kwargs": {"student_path": "blocks.9"}}, teacher=teacher
    )
    r = kd("run", recipe, "--no-progress")
    assert r.exit_code == 2 and "student has no module 'blocks.9'" in r.stderr and "blocks.0" in r.stderr


def test_report_on_unfinished_dir(tmp_path):
    r = kd("report", tmp_path)
    assert r.exit_code == 2 and "no summary.json" in r.stderr


def test_sub_app_that_cannot_be_imported_is_one_message(monkeypatch):
    monkeypatch.setitem(cli._SUBAPPS, "broken", ("kdforge_no_such_module", "A broken sub-app."))
    r = kd("--help")
    assert r.exit_code == 0 and "A broken sub-app." in r.stdout  # listed without importing
    r = kd("broken", "--help")
    assert r.exit_code == 2 and "needs the package 'kdforge_no_such_module'" in r.stderr


def _modules_after(args: list[str]) -> set[str]:
    """Run ``kdforge ARGS`` through ``main`` in a fresh interpreter; return its loaded module names."""
    code = (
        "import json, sys\nfrom kdforge.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print('\\n' + json.dumps(sorted(sys.modules)))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return set(json.loads(r.stdout.splitlines()[-1]))


@pytest.mark.parametrize("args", [["--help"], ["list"]])
def test_help_and_list_do_not_import_torch(args):
    modules = _modules_after(args)
    assert "torch" not in modules and "kdforge.methods" not in modules
    assert not {module for module, _ in _SUBAPPS.values()} & modules


def test_distributed_matches_single_process(tmp_path):
    """`accelerate launch` with 2 CPU processes (gloo) == 1 process at the same global batch."""
    recipe = write_recipe(tmp_path, train={"epochs": 2})
    one = kd("run", recipe, "--no-progress", "--output-dir", tmp_path / "one")
    assert one.exit_code == 0, one.output
    launcher = Path(sys.executable).parent / "accelerate"
    two = subprocess.run(
        [
            str(launcher),
            "launch",
            "--multi_gpu",
            "--main_process_port",
            str(free_port()),
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "-m",
            "kdforge.cli",
            "run",
            str(recipe),
            "--no-progress",
            "--output-dir",
            str(tmp_path / "two"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert two.returncode == 0, two.stderr[-3000:]
    s1, s2 = json.loads(one.stdout), json.loads(two.stdout)
    assert s2["processes"] == 2 and s1["processes"] == 1
    # Stated tolerance: float reduction order differs (gradient all-reduce), nothing else does.
    assert abs(s1["val_loss"] - s2["val_loss"]) < 1e-4
    assert abs(s1["test_acc"] - s2["test_acc"]) <= 0.005


def test_signal_outside_training_is_one_message_and_its_exit_code(tmp_path, monkeypatch):
    """main() turns SIGINT/SIGTERM into SignalExit; before training starts there is nothing to save."""
    import signal

    from kdforge.engine import run

    def terminated(_cfg):
        raise cli.SignalExit(signal.SIGTERM)

    monkeypatch.setattr(run, "load_splits", terminated)
    r = kd("run", write_recipe(tmp_path), "--no-progress")
    assert r.exit_code == 143 and "interrupted by SIGTERM outside training" in r.stderr
    assert not (tmp_path / "runs" / "run").exists()  # lock released, no empty run directory left
