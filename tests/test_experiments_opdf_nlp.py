"""The OPDF NLP protocols (kdforge.experiments.opdf_nlp, opdf_nlp_align): running order, the grid
handed to the engine, selection of the alignment weight on validation, pairing by seed, the first
logged alignment loss, and the tables and plot. Runs are stubbed: nothing trains here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdforge.errors import KdforgeError
from kdforge.experiments import opdf_nlp, opdf_nlp_align
from kdforge.experiments.opdf_nlp_align import LAMBDA_KEY, align_markdown, align_rows, alignment_trace

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "opdf"


def _run(overrides: dict, seed: int, val: float, test: float, name: str = "r") -> dict:
    return {"overrides": overrides, "seed": seed, "val_acc": val, "test_acc": test, "train_time_s": 2.0,
            "train_params": 10, "student_params": 5, "trial": f"{name}-seed{seed}"}  # fmt: skip


def _plain(seeds=(0, 1, 2)) -> list[dict]:
    return [_run({"train.lr": 1e-4}, s, 0.75, 0.73 + 0.001 * s, opdf_nlp_align.PLAIN_RECIPE) for s in seeds]


def _opdf(seeds=(0, 1, 2)) -> list[dict]:
    """lambda 10 is best on validation, lambda 100 best on test: selection must pick 10."""
    val = {0.0: 0.75, 1.0: 0.76, 10.0: 0.78, 100.0: 0.77}
    test = {0.0: 0.740, 1.0: 0.741, 10.0: 0.750, 100.0: 0.790}
    return [
        _run(
            {LAMBDA_KEY: lam},
            s,
            val[lam] + 0.001 * s,
            test[lam] + 0.002 * s,
            f"{opdf_nlp_align.OPDF_RECIPE}-lambda_align={lam}",
        )
        for lam in val
        for s in seeds
    ]


def test_grid_runs_seed_major_with_the_controls_last():
    cells = [("kd", "plain"), ("kd", "opdf"), ("kd", "plain_lr3x"), ("adkd", "plain")]
    assert opdf_nlp.run_order(cells, [0, 1]) == [
        (0, "kd", "plain"), (0, "kd", "opdf"), (0, "adkd", "plain"),
        (1, "kd", "plain"), (1, "kd", "opdf"), (1, "adkd", "plain"),
        (0, "kd", "plain_lr3x"), (1, "kd", "plain_lr3x"),
    ]  # fmt: skip


def test_grid_cells_keep_only_the_recipes_that_exist():
    cells = opdf_nlp.grid_cells(CONFIGS, ["kd", "nosuchbase"], ["plain", "opdf", "nosuchvariant"])
    assert cells == [("kd", "plain"), ("kd", "opdf")]


def test_run_grid_hands_each_recipe_and_seed_to_the_engine_and_builds_rows(monkeypatch):
    calls = []

    def fake_run_seeds(recipe, seeds, name, overrides):
        calls.append((Path(recipe).stem, seeds, name, overrides))
        acc = 0.80 if "opdf" in name else 0.78
        return [{"trial": f"{name}-seed{seeds[0]}", "test_acc": acc, "val_acc": acc, "train_params": 9,
                 "student_params": 7, "train_time_s": 3.0}]  # fmt: skip

    teacher = {"train_time_s": 5.0, "train_params": 11, "student_params": 22, "val_acc": 0.9, "test_acc": 0.9}
    monkeypatch.setattr(opdf_nlp, "run_recipe", lambda recipe: dict(teacher))
    monkeypatch.setattr(opdf_nlp, "run_seeds", fake_run_seeds)
    monkeypatch.setattr(opdf_nlp, "exported_latency_ratio", lambda path, inputs, **timing: 1.0)
    monkeypatch.setattr(
        opdf_nlp, "teacher_scores", lambda cfg: {"val_acc": 0.85, "test_acc": 0.84, "test_size": 9}
    )
    res = opdf_nlp.run_grid(CONFIGS, ROOT, ["kd"], ["plain", "opdf"], [0, 1], ["data.subset=1920"], "_sub")
    assert calls == [
        ("nlp_kd_plain", [0], "nlp_kd_plain_sub", ["data.subset=1920"]),
        ("nlp_kd_opdf", [0], "nlp_kd_opdf_sub", ["data.subset=1920"]),
        ("nlp_kd_plain", [1], "nlp_kd_plain_sub", ["data.subset=1920"]),
        ("nlp_kd_opdf", [1], "nlp_kd_opdf_sub", ["data.subset=1920"]),
    ]
    assert [(r["variant"], r["recipe"], r["test_acc"]) for r in res["rows"]] == [
        ("plain", "configs/opdf/nlp_kd_plain.yaml", [0.78, 0.78]),
        ("opdf", "configs/opdf/nlp_kd_opdf.yaml", [0.80, 0.80]),
    ]
    assert res["subset"] == 1920 and res["max_len"] == 32 and res["teacher"]["test_acc"] == 0.84
    assert res["teacher"]["train_subset"] == 3000  # the teacher's own recipe, not the override
    assert res["deltas"][0]["delta_points"] == pytest.approx(2.0)
    assert res["deltas"][0]["delta_vs_teacher"] == pytest.approx(-4.0)
    assert "| kd +OPDF | 80.00 ± 0.00 |" in opdf_nlp.grid_markdown(res)


def test_alignment_on_is_the_best_positive_lambda_on_validation_paired_with_off():
    res = align_rows(_plain(), _opdf())
    rows, deltas = res["rows"], res["deltas"]
    assert rows["on"]["chosen"] == 10.0 and rows["on"]["grid"] == [1.0, 10.0, 100.0]  # val, not test
    assert rows["off"]["chosen"] == 0.0 and rows["opdf"]["chosen"] == 10.0
    on_off = deltas["on_minus_off"]
    assert on_off["interval"]["mean"] == pytest.approx(1.0)  # 0.750 - 0.740, every seed
    assert on_off["target"] == 0.0 and on_off["verdict"] == "met"
    assert deltas["opdf_minus_plain"]["interval"]["mean"] == pytest.approx(100 * (0.750 + 0.002 - 0.731))
    assert deltas["opdf_minus_plain"]["verdict"] == "met"  # +2.1 clears +1.0 on every seed


def test_alignment_on_scoring_exactly_as_off_is_not_a_gain():
    """Lambdas too small to move the student score as off on every seed: the interval is [0, 0],
    which does not clear the target of 0."""
    runs = [
        _run({LAMBDA_KEY: lam}, s, 0.75 + 0.01 * s, 0.74 + 0.01 * s) for lam in (0.0, 1.0) for s in range(3)
    ]
    delta = align_rows(_plain(), runs)["deltas"]["on_minus_off"]
    assert delta["interval"]["low"] == delta["interval"]["high"] == 0.0
    assert delta["verdict"] == "not distinguishable"


def test_alignment_rows_refuse_arms_run_on_different_seeds():
    with pytest.raises(KdforgeError, match="different seeds"):
        align_rows(_plain(seeds=(0, 1, 3)), _opdf())


def test_alignment_trace_reads_the_first_and_last_logged_term_divided_by_lambda(tmp_path):
    def run_dir(name: str, lam: float, lines: list[dict]) -> Path:
        d = tmp_path / name
        d.mkdir()
        (d / "trial.json").write_text(json.dumps({"overrides": {LAMBDA_KEY: lam}}))
        (d / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        return d

    logged = [
        {"step": 5, "ce": 0.3},
        {"step": 5, "align": 0.5},
        {"step": 10, "ce": 0.2},
        {"step": 10, "align": 0.1},
    ]
    trace = alignment_trace(run_dir("on", 100.0, logged))
    assert trace == {"lambda": 100.0, "first": pytest.approx(0.005), "last": pytest.approx(0.001)}
    assert alignment_trace(run_dir("off", 0.0, [{"step": 5, "ce": 0.3}])) is None


def _results(not_run: list[str] | None = None) -> dict:
    plain, opdf = _plain(), _opdf()
    return {
        "seeds": [0, 1, 2], "lambdas": [0.0, 1.0, 10.0, 100.0], "not_run": not_run or [],
        "trained_now": [r["trial"] for r in plain], "wall_s": 42.0,
        "train_time_s": {r["trial"]: r["train_time_s"] for r in plain + opdf},
        "alignment": {
            "a": {"lambda": 1.0, "first": 0.0047, "last": 0.0047},
            "b": {"lambda": 10.0, "first": 0.0046, "last": 0.0023},
            "c": {"lambda": 10.0, "first": 0.0050, "last": 0.0050},
        },
        "teacher": {"val_acc": 0.822, "test_acc": 0.81, "test_size": 1057, "train_time_s": 190.0},
        **align_rows(plain, opdf),
    }  # fmt: skip


def test_align_markdown_shows_the_curve_the_chosen_rows_and_the_verdicts():
    text = align_markdown(_results())
    assert "| +OPDF on (lambda > 0) | - | 76.10 | 78.10 | 77.10 | 10 |" in text
    assert "| +OPDF off (0) | 75.10 | - | - | - | 0 |" in text
    assert "- on minus off: +1.00 points [+1.00, +1.00] (target +0.0) -> **met**" in text
    assert "- opdf minus plain: +2.10 points [+2.00, +2.20] (target +1.0) -> **met**" in text
    assert "first log line of the 3 runs with lambda > 0: 0.00460-0.00500, above 0" in text
    assert "per lambda: 1: +0.00 %, 10: -25.00 %." in text
    assert "Teacher (6 layers) on the same splits: val 82.20, test 81.00." in text
    assert "plain KD 2 s (2-2); OPDF 2 s (2-2). This invocation trained 3 of them" in text
    assert "Every run had finished before" in align_markdown({**_results(), "trained_now": []})
    unfinished = align_markdown({"seeds": [0], "lambdas": [0.0], "not_run": ["a", "b"]})
    assert unfinished.endswith("Not finished (2 runs): a, b") and "| +OPDF" not in unfinished


def test_align_plot_is_written(tmp_path):
    out = opdf_nlp_align.plot_align(_results(), tmp_path / "align.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_align_reports_unfinished_runs_and_trains_nothing_when_collecting(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the recipes' output_dir (runs/opdf_nlp) is relative
    sweeps = []

    def fake_sweep(configs, recipe, grid, seeds, train, override, tag):
        sweeps.append((recipe, grid, list(seeds), train, list(override), tag))
        return [], [f"{recipe}-seed{s}" for s in seeds]

    monkeypatch.setattr(opdf_nlp_align, "_sweep", fake_sweep)
    monkeypatch.setattr(opdf_nlp_align, "run_recipe", lambda recipe: pytest.fail("trained the teacher"))
    over = ["method.kwargs.mpo_lr_scale=10"]
    res = opdf_nlp_align.run_align(CONFIGS, [0.0, 1.0], [0, 1], False, over, "_mpolr10")
    assert sweeps == [  # the override and tag reach the OPDF runs only
        ("nlp_kd_plain_shift", {"train.lr": [1e-4]}, [0, 1], False, [], ""),
        ("nlp_kd_opdf_shift", {LAMBDA_KEY: [0.0, 1.0]}, [0, 1], False, over, "_mpolr10"),
    ]
    assert res["overrides"] == over
    assert len(res["not_run"]) == 4 and res["rows"] == {} and res["trained_now"] == []


def test_sweep_names_runs_by_recipe_and_tag_so_untagged_runs_are_reused(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    grid, recipe = {LAMBDA_KEY: [0.0]}, opdf_nlp_align.OPDF_RECIPE
    _, missing = opdf_nlp_align._sweep(CONFIGS, recipe, grid, [0], False, [], "")
    assert missing == ["nlp_kd_opdf_shift-lambda_align=0.0-seed0"]
    _, missing = opdf_nlp_align._sweep(
        CONFIGS, recipe, grid, [0], False, ["method.kwargs.mpo_lr_scale=10"], "_t"
    )
    assert missing == ["nlp_kd_opdf_shift_t-lambda_align=0.0-seed0"]
