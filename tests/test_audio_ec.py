"""The audio EAsT / EC protocol: equal tuning budgets, rows, verdicts on synthetic scores, one tiny run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import kdforge.experiments.sweep as sweep_module
from kdforge.data.audio_folder import read_manifest
from kdforge.data.speech_words import SpeechWordsConfig, generate
from kdforge.errors import KdforgeError
from kdforge.experiments import audio_ec_report as report
from kdforge.experiments.audio_ec import (
    TASKS,
    AudioEcGrid,
    AudioPaths,
    row_specs,
    run_benchmark,
    run_overrides,
)
from kdforge.models.audio_teachers import resemblyzer_weights

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "east_audio"


def test_every_row_chooses_among_as_many_settings_as_the_baseline():
    grid = AudioEcGrid(ds=[8, 32, 128])
    rows = row_specs(grid)
    assert list(rows)[:3] == ["baseline", "EAsT-FitNet", "EAsT-dCor"]
    assert {f"EC-{loss}-d{d}" for loss in ("FitNet", "dCor") for d in (8, 32, 128)} <= set(rows)
    assert {"KD-from-probe", "teacher fine-tuned"} <= set(rows)
    for label, spec in rows.items():
        assert len(spec.grid) == 1 and len(next(iter(spec.grid.values()))) == grid.budget(), label
    assert rows["baseline"].grid == {"train.lr": grid.baseline_lrs}
    assert "method.kwargs.d=128" in rows["EC-dCor-d128"].overrides
    with pytest.raises(KdforgeError, match="unequal tuning budgets"):
        AudioEcGrid(lams=[0.1, 0.3, 0.7]).budget()


def test_run_overrides_put_the_task_on_the_right_dataset_level(tmp_path):
    grid = AudioEcGrid(epochs=7, finetune_epochs=3)
    rows = row_specs(grid)
    ec = run_overrides(rows["EC-FitNet-d32"], TASKS["voices"], grid, "D", tmp_path, 5)
    assert "data.kwargs.base_kwargs.label_column=voice" in ec and "data.kwargs.base_kwargs.per_class=5" in ec
    assert f"data.kwargs.cache={tmp_path / 'encoder'}" in ec and "train.epochs=7" in ec
    base = run_overrides(rows["baseline"], TASKS["words"], grid, "D", tmp_path, 20)
    assert "data.kwargs.per_class=20" in base and not [o for o in base if "label_column" in o]
    assert "train.epochs=3" in run_overrides(
        rows["teacher fine-tuned"], TASKS["words"], grid, "D", tmp_path, 5
    )


def _row(val: float, correct: np.ndarray) -> dict:
    return {
        "chosen": {},
        "val_acc": [val] * len(correct),
        "test_acc": correct.mean(1).tolist(),
        "test_correct": correct.tolist(),
        "unseen_acc": [],
        "unseen_correct": [],
        "train_time_s": [1.0] * len(correct),
    }


def _scores(acc: float, seed: int, n: int = 400) -> np.ndarray:
    return (np.random.default_rng(seed).random((3, n)) < acc).astype(float)


def test_verdicts_per_ec_row_and_the_choice_on_validation_only():
    rows = {
        "baseline": _row(0.5, _scores(0.5, 0)),
        "EAsT-FitNet": _row(0.5, _scores(0.5, 1)),
        "EAsT-dCor": _row(0.4, _scores(0.4, 2)),
        "EC-FitNet-d8": _row(0.6, _scores(0.8, 3)),  # far better on test: met
        "EC-FitNet-d32": _row(0.7, _scores(0.5, 4)),  # best on validation, same as the baseline on test
    }
    v = report.verdicts(rows, unseen=False)
    assert v["per_row"]["EC-FitNet-d8"]["vs baseline (test)"]["verdict"] == "met"
    assert v["per_row"]["EC-FitNet-d32"]["vs baseline (test)"]["verdict"] != "met"
    assert v["per_row"]["EC-FitNet-d8"]["vs EAsT-dCor (test)"]["low"] > 30
    assert v["ec_row"] == "EC-FitNet-d32" and v["east_row"] == "EAsT-FitNet"  # by validation, not test
    assert set(v["chosen"]) == {"vs baseline (test)", "vs EAsT-FitNet (test)", "vs EAsT-dCor (test)"}
    assert v["target"] == "not distinguishable"  # vs baseline n.d.; vs EAsT-dCor met
    rows["baseline"] = _row(0.5, _scores(0.95, 5))
    assert report.verdicts(rows, unseen=False)["per_row"]["EC-FitNet-d8"]["vs baseline (test)"][
        "verdict"
    ] == ("missed")
    assert report.verdicts({"EC-dCor-d8": rows["EC-FitNet-d8"]}, unseen=False)["ec_row"] is None


def test_a_regime_with_some_rows_says_which_are_missing_and_chooses_among_the_measured():
    rows = {
        "teacher probe": _row(0.5, _scores(0.5, 9)),
        "baseline": _row(0.5, _scores(0.5, 0)),
        "EAsT-FitNet": _row(0.5, _scores(0.5, 1)),
        "EC-FitNet-d8": _row(0.6, _scores(0.6, 3)),
        "EC-FitNet-d32": _row(0.4, _scores(0.4, 4)),
    }
    block = {"n_train": 10, "n_test": 400, "n_unseen": 0, "rows": rows}
    block["verdict"] = report.verdicts(rows, unseen=False)
    assert block["verdict"]["ec_row"] == "EC-FitNet-d8" and block["verdict"]["target"] == "not measured"
    planned = report.planned_rows({"grid": vars(AudioEcGrid(ds=[8, 32]))})
    text = "\n".join(report.regime_markdown("20", block, False, planned))
    assert "Not measured (CPU budget): EAsT-dCor, EC-dCor-d8, EC-dCor-d32, KD-from-probe, teacher" in text
    assert "among the measured EC rows (EC-FitNet-d8, EC-FitNet-d32): **EC-FitNet-d8**" in text
    assert "among the measured EAsT rows (EAsT-FitNet): EAsT-FitNet" in text
    assert "vs EAsT-dCor" not in text and "vs teacher fine-tuned" not in text
    full = {"n_train": 10, "n_test": 400, "n_unseen": 0, "rows": {k: rows[k] for k in rows}}
    full["rows"] |= {k: rows["EC-FitNet-d32"] for k in planned if k not in rows}
    full["verdict"] = report.verdicts(full["rows"], unseen=False)
    text = "\n".join(report.regime_markdown("20", full, False, planned))
    assert "Not measured" not in text and "among the measured" not in text


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    """A few voices x 3 words of generated speech."""
    if not (shutil.which("espeak-ng") and shutil.which("flite")):
        pytest.skip("espeak-ng/flite not installed (make data-audio)")
    try:
        resemblyzer_weights()
    except KdforgeError as e:
        pytest.skip(f"GE2E weights not installed: {e.fix}")
    root = tmp_path_factory.mktemp("audio_ec")
    cfg = SpeechWordsConfig(espeak_voices=5, flite_variants=1, words="01a", val_voices=0.2, test_voices=0.2)
    generate(root / "words", cfg, progress=False)
    return root


def test_a_tiny_voices_benchmark_runs_end_to_end_and_re_renders(voices, tmp_path, monkeypatch):
    grid = AudioEcGrid(
        seeds=[0, 1], lams=[0.5], ds=[4], baseline_lrs=[0.01], finetune_lrs=[0.001], kd_weights=[1.0],
        probe_cs=[1.0], epochs=1, finetune_epochs=1, eval_every_steps=1, batch_size=2,
    )  # fmt: skip
    paths = AudioPaths(str(voices / "words"), "", voices / "ge2e", tmp_path / "runs", CONFIGS)
    saved = []
    results = run_benchmark(
        TASKS["voices"], grid, paths, [1], lambda r: saved.append(json.loads(json.dumps(r, default=str))),
        only=["baseline", "EAsT-FitNet", "EC-FitNet-d4"],
    )  # fmt: skip
    block = results["regimes"]["1"]
    assert list(block["rows"]) == ["teacher probe", "baseline", "EAsT-FitNet", "EC-FitNet-d4"]
    n_voices = len({r["voice"] for r in read_manifest(voices / "words" / "manifest.csv")})
    assert block["n_unseen"] == 0 and block["n_train"] == n_voices  # one clip per voice
    assert len(saved) == 3 and block["rows"]["baseline"]["chosen"] == {"train.lr": 0.01}
    assert all(len(r["test_correct"]) == 2 for r in block["rows"].values())
    results["provenance"] = {"command": "test"}
    report.write(results, str(tmp_path / "out"))
    text = (tmp_path / "out.md").read_text()
    assert "Not measured (CPU budget): EAsT-dCor" in text and "| EC-FitNet-d4 |" in text
    assert "split by word" in text and "real recordings" not in text
    assert "**not measured**" in text  # EAsT-dCor missing: no overall verdict
    again = json.loads((tmp_path / "out.json").read_text())
    report.write(again, str(tmp_path / "again"), render_only=True)
    assert (tmp_path / "again.md").read_text() == text
    # re-reading finished trials trains nothing and scores only the rows whose grid finished
    monkeypatch.setattr(sweep_module, "run_experiment", None)
    collected = run_benchmark(TASKS["voices"], grid, paths, [1], lambda r: None, finished_only=True)
    assert list(collected["regimes"]["1"]["rows"]) == list(block["rows"])
    assert collected["regimes"]["1"]["rows"]["baseline"]["test_acc"] == block["rows"]["baseline"]["test_acc"]
