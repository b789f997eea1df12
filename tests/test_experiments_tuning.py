"""Per-row tuning: the value chosen on validation, paired deltas of tuned rows, finished vs missing."""

from __future__ import annotations

import pytest

from kdforge.config import from_dict
from kdforge.errors import KdforgeError
from kdforge.experiments import make_trials, run_sweep
from kdforge.experiments.tuning import (
    delta_line,
    plot_tuning,
    restrict_row,
    split_finished,
    tune_row,
    tuned_delta,
    tuned_table,
)

from conftest import digits_recipe


def _runs(val: dict[float, list[float]], test: dict[float, list[float]]) -> list[dict]:
    return [
        {
            "overrides": {"train.lr": lr},
            "seed": seed,
            "val_acc": v,
            "test_acc": test[lr][seed],
            "train_time_s": 1.0,
            "train_params": 10,
            "student_params": 5,
        }
        for lr, vals in val.items()
        for seed, v in enumerate(vals)
    ]


def test_tune_row_chooses_on_validation_and_keeps_the_curve():
    val = {0.001: [0.80, 0.82, 0.81], 0.01: [0.84, 0.83, 0.85], 0.1: [0.70, 0.71, 0.69]}
    test = {0.001: [0.99, 0.99, 0.99], 0.01: [0.82, 0.83, 0.84], 0.1: [0.99, 0.99, 0.99]}
    row = tune_row(_runs(val, test), "train.lr")
    assert row["chosen"] == 0.01 and not row["at_edge"]  # test's 0.99 never consulted
    assert row["grid"] == [0.001, 0.01, 0.1]
    assert row["val_mean"] == pytest.approx([0.81, 0.84, 0.70])
    assert row["test_acc"] == [0.82, 0.83, 0.84] and row["seeds"] == [0, 1, 2]
    assert row["val_acc"] == [0.84, 0.83, 0.85]
    assert row["train_params"] == 10 and row["inference_params"] == 5


def test_tune_row_flags_a_choice_at_the_grid_edge_and_refuses_other_sweeps():
    val = {0.001: [0.8, 0.8], 0.01: [0.9, 0.9]}
    row = tune_row(_runs(val, val), "train.lr")
    assert row["chosen"] == 0.01 and row["at_edge"]
    with pytest.raises(KdforgeError, match="do not sweep 'train.epochs'"):
        tune_row(_runs(val, val), "train.epochs")


def test_tuned_delta_pairs_by_seed_and_gives_a_verdict():
    ref = {"seeds": [0, 1, 2], "test_acc": [0.80, 0.81, 0.82]}
    big = {"seeds": [0, 1, 2], "test_acc": [0.83, 0.84, 0.85]}
    d = tuned_delta(big, ref, target=1.0)
    assert d["interval"]["mean"] == pytest.approx(3.0)
    assert d["interval"]["low"] == pytest.approx(3.0) and d["verdict"] == "met"
    small = {"seeds": [0, 1, 2], "test_acc": [0.805, 0.805, 0.83]}
    assert tuned_delta(small, ref, target=1.0)["verdict"] == "not distinguishable"
    assert tuned_delta(ref, big, target=1.0)["verdict"] == "missed"
    with pytest.raises(KdforgeError, match="different seeds"):
        tuned_delta({"seeds": [0, 1, 3], "test_acc": [0.8] * 3}, ref)


def test_split_finished_runs_nothing_and_names_the_missing(tmp_path):
    base = from_dict(digits_recipe(tmp_path, "tu", train={"epochs": 1}))
    trials = make_trials(base, {"train.lr": [0.003, 0.03]}, seeds=[0, 1])
    out = tmp_path / "sweep"
    assert split_finished(trials, out) == ([], [t.name for t in trials])
    ran = run_sweep(trials[:3], out, progress=False)
    done, missing = split_finished(trials, out)
    assert missing == [trials[3].name]
    assert done == ran


def test_delta_line_states_interval_target_and_verdict():
    ref = {"seeds": [0, 1], "test_acc": [0.80, 0.81]}
    line = delta_line("kd +OPDF", tuned_delta({"seeds": [0, 1], "test_acc": [0.82, 0.83]}, ref))
    assert line == "- kd +OPDF: +2.00 points [+2.00, +2.00] (target +1.0) -> **met**"


def test_tuned_table_and_plot(tmp_path):
    val = {0.001: [0.80, 0.82, 0.81], 0.01: [0.84, 0.83, 0.85]}
    full = tune_row(_runs(val, val), "train.lr")
    part = tune_row(_runs({0.01: val[0.01]}, val), "train.lr")
    table = tuned_table([("a", full), ("b", part)], [0.001, 0.01])
    assert "| a | 81.00 | 84.00 | 0.01 (grid edge) | 84.00 ± 1.00 | 84.00 ± 1.00 |" in table
    assert "| b | - | 84.00 | 0.01 |" in table
    assert plot_tuning({"kd": [("a", full), ("b", part)]}, tmp_path / "t.png", "lr").stat().st_size > 0


def test_restrict_row_reselects_on_the_sub_grid_as_if_only_it_had_run():
    val = {
        0.001: [0.80, 0.82, 0.81],
        0.002: [0.84, 0.83, 0.85],
        0.004: [0.86, 0.85, 0.84],
        0.008: [0.10, 0.10, 0.10],
    }
    test = {lr: [v + 0.01 for v in vals] for lr, vals in val.items()}
    full = tune_row(_runs(val, test), "train.lr")
    assert full["chosen"] == 0.004 and not full["at_edge"]
    sub = restrict_row(full, [0.004, 0.002])
    direct = tune_row(_runs({lr: val[lr] for lr in (0.002, 0.004)}, test), "train.lr")
    assert sub == direct  # the same row as running the sub-grid alone, choice now at its edge
    assert restrict_row(sub, [0.002, 0.004]) == sub


def test_restrict_row_refuses_values_not_run_and_a_changed_choice():
    val = {0.001: [0.80, 0.82], 0.002: [0.84, 0.86], 0.004: [0.83, 0.84]}
    row = tune_row(_runs(val, val), "train.lr")
    with pytest.raises(KdforgeError, match=r"not at \[0.016\]"):
        restrict_row(row, [0.002, 0.016])
    with pytest.raises(KdforgeError, match="chooses train.lr=0.004, not the row's 0.002"):
        restrict_row(row, [0.001, 0.004])  # its per-seed scores at 0.004 are not in the row


def test_restrict_row_breaks_a_tie_in_the_mean_like_select_best():
    val = {0.001: [0.5, 0.75], 0.002: [0.5625, 0.6875], 0.004: [0.625, 0.625]}  # equal means (exact)
    row = tune_row(_runs(val, val), "train.lr")
    assert row["chosen"] == 0.004  # the steadiest
    assert restrict_row(row, [0.001, 0.004])["chosen"] == 0.004
    sub = tune_row(_runs({lr: val[lr] for lr in (0.001, 0.002)}, val), "train.lr")
    assert sub["chosen"] == 0.002 and restrict_row(sub, [0.001, 0.002]) == sub
