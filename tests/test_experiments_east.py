"""The EAsT / EC benchmark protocol: lambda chosen on validation per variant, tables, verdicts, reuse."""

from __future__ import annotations

import json

import pytest

from kdforge.data import load_dataset
from kdforge.experiments import east_protocol as east
from kdforge.experiments.scoring import model_accuracy

from conftest import digits_recipe

SEEDS = [0, 1, 2]


class _StubRunner:
    """Rows whose validation accuracy depends on the setting as declared below (no training)."""

    ec_recipe = "ec.yaml"

    def __init__(self) -> None:
        self.calls, self.done = [], {}

    def run(self, label, recipe, overrides, lam, d, seeds):
        self.calls.append((label, lam, d, tuple(seeds)))
        best = {"EAsT-FitNet": 0.1, "EAsT-dCor": 0.3, "EC-FitNet": 0.3, "EC-dCor": 0.1}.get(label)
        val = 0.8 if lam == best else 0.7
        test = 0.9 if label == "EC-dCor" and d == 64 else 0.85  # the best EC row on test
        return [{"row": label, "lam": lam, "d": d, "seed": s, "val_acc": val + (d or 0) / 1e4,
                 "test_acc": test, "unseen_acc": test - 0.3} for s in seeds]  # fmt: skip


def test_protocol_chooses_lambda_per_variant_on_the_selection_seeds():
    runner = _StubRunner()
    r = east.run_protocol(
        runner, "base.yaml", [0.1, 0.3], [16, 64], d_select=16, seeds=SEEDS, select_seeds=[0]
    )
    assert r["chosen_lam"] == {"EAsT-FitNet": 0.1, "EAsT-dCor": 0.3, "EC-FitNet": 0.3, "EC-dCor": 0.1}
    assert r["val_grid"]["EAsT-dCor"] == {0.1: pytest.approx(70.0), 0.3: pytest.approx(80.0)}
    assert list(r["table"]) == ["baseline", "EAsT-FitNet", "EAsT-dCor", "EC-FitNet d=16", "EC-FitNet d=64",
                                "EC-dCor d=16", "EC-dCor d=64"]  # fmt: skip
    selection = [c for c in runner.calls if c[3] == (0,)]
    assert len(selection) == 8 and {c[2] for c in selection if c[0].startswith("EC")} == {
        16
    }  # EC at d_select
    assert r["table"]["EC-dCor d=64"][0]["lam"] == 0.1 and len(r["table"]["EC-dCor d=64"]) == 3


def test_verdict_uses_validation_for_the_ec_row_and_test_for_the_gain():
    table = east.run_protocol(_StubRunner(), "b.yaml", [0.1, 0.3], [16, 64], 16, SEEDS)["table"]
    v = east.verdict(table)
    assert v["ec_row_by_val"] == "EC-FitNet d=64"  # highest validation (d adds 0.0064), not highest test
    assert v["test_gain_over"] == {k: pytest.approx(0.0) for k in east.REFERENCES} and not v["met"]
    table["EC-FitNet d=64"] = [dict(x, test_acc=0.87, unseen_acc=0.57) for x in table["EC-FitNet d=64"]]
    v = east.verdict(table)
    assert v["met"] and v["test_gain_over"]["baseline"] == pytest.approx(2.0)
    assert v["generalises_better"] and v["unseen_gain_over"]["EAsT-dCor"] == pytest.approx(2.0)


def test_table_from_runs_rebuilds_the_protocol_table():
    r = east.run_protocol(_StubRunner(), "b.yaml", [0.1, 0.3], [16, 64], 16, SEEDS)
    runs = [dict(x, pair="p") for rows in r["table"].values() for x in rows]
    runs += [dict(x, pair="p", lam=0.3) for x in r["table"]["EC-dCor d=64"]]  # a selection run, other lambda
    runs += [dict(x, pair="other") for x in r["table"]["baseline"]]
    chosen = {k: str(v) for k, v in r["chosen_lam"].items()}  # JSON keys/values may come back as text
    rebuilt = east.table_from_runs(runs, "p", chosen, [16, 64], SEEDS)
    assert rebuilt == {k: [dict(x, pair="p") for x in rows] for k, rows in r["table"].items()}


def test_setting_runner_reuses_rows_trained_with_identical_overrides(tmp_path):
    overrides = ["method.kwargs.loss=dcor", "method.kwargs.lam=0.3", "data.subset=75", "seed=0"]
    old = {
        "recipe": "ec.yaml",
        "seed": 0,
        "val_acc": 0.5,
        "overrides": [*overrides, "name=x", "output_dir=y"],
    }

    def no_training(student):
        raise AssertionError("nothing should be trained")

    runner = east.SettingRunner(
        "p",
        tmp_path,
        str(tmp_path / "runs"),
        no_training,
        ["data.subset=75"],
        ec_recipe="ec.yaml",
        reuse=[old],
    )
    assert runner.run("EAsT-dCor", "ec.yaml", ["method.kwargs.loss=dcor"], 0.3, None, [0]) == [old]
    assert runner.run("EAsT-dCor", "ec.yaml", ["method.kwargs.loss=dcor"], 0.3, None, [0]) == [
        old
    ]  # remembered
    assert not (tmp_path / "runs").exists()


def test_setting_runner_trains_once_per_seed_and_scores_the_exported_student(tmp_path):
    (tmp_path / "base.yaml").write_text(json.dumps(digits_recipe(tmp_path, "b", train={"epochs": 1})))
    test = load_dataset("digits").test
    scored = []

    def score(student):
        scored.append(student)
        return {"unseen_acc": model_accuracy(student, test)}

    runner = east.SettingRunner("p", tmp_path, str(tmp_path / "runs"), score, ["train.lr=0.02"])
    rows = runner.run("baseline", "base.yaml", [], None, None, [0, 1])
    assert [r["seed"] for r in rows] == [0, 1] and len(scored) == 2
    assert rows[0]["overrides"] == ["train.lr=0.02", "seed=0"] and 0.1 < rows[0]["unseen_acc"] <= 1.0
    assert rows[0]["val_acc"] != rows[1]["val_acc"] or rows[0]["test_acc"] != rows[1]["test_acc"]
    assert runner.run("baseline", "base.yaml", [], None, None, [1]) == [rows[1]] and len(scored) == 2
