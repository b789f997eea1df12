"""Sweeps through the engine on the 8x8 digits: results, skipping finished trials, resuming."""

from __future__ import annotations

import json

import pytest

import kdforge.experiments.sweep as sweep_module
from kdforge.config import from_dict
from kdforge.engine.run import run_experiment
from kdforge.engine.trainer import StopTraining
from kdforge.errors import KdforgeError
from kdforge.experiments import load_sweep, make_trials, run_sweep, select_best
from kdforge.experiments.sweep import all_finished

from conftest import digits_recipe


def _kill_at(step_to_die: int):
    def callback(step, _values):
        if step == step_to_die:
            raise StopTraining

    return callback


def _trials(tmp_path, **over):
    base = from_dict(digits_recipe(tmp_path, "sw", **{"train": {"epochs": 1}, **over}))
    return make_trials(base, {"train.lr": [0.003, 0.03]}, seeds=[0, 1])


def test_sweep_runs_skips_finished_and_selects(tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    trials = _trials(tmp_path)
    first = run_sweep(trials, out, progress=False)
    assert [s["trial"] for s in first] == [t.name for t in trials]
    assert all((out / t.name / "summary.json").is_file() for t in trials)
    assert first[2]["overrides"] == {"train.lr": 0.03} and first[2]["seed"] == 0
    assert first[0]["recipe"] == "sw"
    assert first[0]["val_acc"] != first[2]["val_acc"]  # the grid point took effect

    def no_training(*args, **kwargs):
        raise AssertionError("a finished trial was run again")

    monkeypatch.setattr(sweep_module, "run_experiment", no_training)
    again = run_sweep(trials, out, progress=False)
    assert again == first
    assert load_sweep(out) == sorted(first, key=lambda s: s["trial"])
    best = select_best(again)[()]
    expected = max(
        (0.003, 0.03), key=lambda lr: sum(s["val_acc"] for s in first if s["overrides"]["train.lr"] == lr)
    )
    assert best["overrides"] == {"train.lr": expected}


def test_sweep_resumes_a_half_finished_trial(tmp_path):
    trial = _trials(tmp_path, train={"epochs": 1, "checkpoint_every_steps": 5})[0]
    uninterrupted = run_sweep([trial], tmp_path / "reference", progress=False)[0]
    out = tmp_path / "sweep"
    # the same trial killed at step 12: checkpoints up to step 10, no summary
    killed = from_dict(dict(trial.config.to_dict(), output_dir=str(out)))
    with pytest.raises(StopTraining):
        run_experiment(killed, progress=False, callback=_kill_at(12))
    assert not (out / trial.name / "summary.json").exists()
    resumed = run_sweep([trial], out, progress=False)[0]  # a fresh start would refuse the checkpoint
    for key in ("steps", "best_step", "val_acc", "val_loss", "test_acc", "test_loss"):
        assert resumed[key] == uninterrupted[key], key
    assert resumed["steps"] > 12


def test_sweep_refuses_another_recipes_finished_run(tmp_path):
    out = tmp_path / "sweep"
    trial = _trials(tmp_path)[0]
    run_sweep([trial], out, progress=False)
    before = (out / trial.name / "summary.json").read_text()
    other = _trials(tmp_path, student={"name": "mlp", "kwargs": {"hidden": [16]}})[0]
    assert other.name == trial.name
    with pytest.raises(KdforgeError, match="different recipe"):
        run_sweep([other], out, progress=False)
    assert (out / trial.name / "summary.json").read_text() == before  # finished work kept
    longer = _trials(tmp_path, train={"epochs": 2})[0]
    with pytest.raises(KdforgeError, match="different recipe"):
        run_sweep([longer], out, progress=False)
    with pytest.raises(KdforgeError, match="already holds a checkpoint"):
        run_sweep([trial], out, resume=False, progress=False)
    (out / trial.name / "config.yaml").write_text("train: [unclosed\n")  # no readable record of the run
    with pytest.raises(KdforgeError, match="different recipe"):
        run_sweep([trial], out, progress=False)
    with pytest.raises(KdforgeError, match="duplicate trial names"):
        run_sweep([trial, trial], tmp_path / "dup", progress=False)
    assert json.loads(before)["fingerprint"] == trial.config.fingerprint()


def test_all_finished_says_whether_a_grid_can_be_scored_without_training(tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    trials = _trials(tmp_path)
    assert not all_finished(trials, out)
    run_sweep(trials[:3], out, progress=False)
    monkeypatch.setattr(sweep_module, "run_experiment", None)  # all_finished must train nothing
    assert all_finished(trials[:3], out) and not all_finished(trials, out)
    other = _trials(tmp_path, student={"name": "mlp", "kwargs": {"hidden": [16]}})
    with pytest.raises(KdforgeError, match="different recipe"):
        all_finished(other[:1], out)
