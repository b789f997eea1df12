"""Shared table formatting: mean ± std cells, interval cells, and one row per recipe over seeds."""

from __future__ import annotations

import pytest

from kdforge.config import from_dict
from kdforge.errors import KdforgeError
from kdforge.experiments import Interval, make_trials, run_sweep, verdict
from kdforge.report.tables import (
    group_label,
    interval_cell,
    load_summary,
    markdown_table,
    mean_std,
    summaries_table,
)

from conftest import digits_recipe


def test_mean_std_cells():
    assert mean_std([0.85, 0.86, 0.87]) == "86.00 ± 1.00"
    assert mean_std([0.851]) == "85.10"  # one run: no '± 0.00'
    assert mean_std([1.0, 2.0], scale=1.0, digits=1) == "1.5 ± 0.7"
    with pytest.raises(KdforgeError, match="no values"):
        mean_std([])


def test_interval_cell_and_verdict():
    iv = Interval(0.0123, 0.004, 0.0205, 0.95)
    assert interval_cell(iv) == "+1.23 [+0.40, +2.05]"
    assert (
        interval_cell(iv.to_dict(), verdict=verdict(iv, 0.005))
        == "+1.23 [+0.40, +2.05] (not distinguishable)"
    )
    assert interval_cell(iv, verdict=verdict(iv, 0.004)).endswith("(met)")
    assert (
        interval_cell(iv, scale=1.0, digits=3, verdict=verdict(iv, 0.03))
        == "+0.012 [+0.004, +0.021] (missed)"
    )


def test_markdown_table():
    expected = "| a | b |\n|---|---|\n| 1 | x |\n| 2.5 | y |"
    assert markdown_table(["a", "b"], [[1, "x"], [2.5, "y"]]) == expected
    with pytest.raises(KdforgeError, match="2 cells for 3 columns"):
        markdown_table(["a", "b", "c"], [[1, 2]])


@pytest.mark.parametrize(
    ("names", "label"),
    [
        (["kd-lr=0.1-seed0", "kd-lr=0.1-seed1", "kd-lr=0.1-seed2"], "kd-lr=0.1"),
        (["kd_seed1", "kd_seed2"], "kd"),
        (["teacher"], "teacher"),
        (["a", "b"], "a"),
    ],
)
def test_group_label(names, label):
    assert group_label(names) == label


def test_report_groups_seeds_of_one_recipe(tmp_path):
    base = from_dict(digits_recipe(tmp_path, "rep", train={"epochs": 1}))
    trials = make_trials(base, {"train.lr": [0.01]}, seeds=[0, 1])
    trials += make_trials(base, {"train.lr": [0.03]}, seeds=[0])
    runs = run_sweep(trials, tmp_path / "out", progress=False)
    assert summaries_table(runs) == summaries_table([load_summary(tmp_path / "out" / t.name) for t in trials])
    summaries = [load_summary(tmp_path / "out" / t.name) for t in trials]
    assert summaries[0]["recipe_fingerprint"] == summaries[1]["recipe_fingerprint"]
    assert summaries[0]["recipe_fingerprint"] != summaries[2]["recipe_fingerprint"]
    lines = summaries_table(summaries).splitlines()
    assert len(lines) == 4  # header, rule, two recipes
    two_seeds = f"| rep-lr=0.01 | supervised | 2 | {mean_std([r['val_acc'] for r in runs[:2]])} |"
    assert lines[2].startswith(two_seeds) and "±" in lines[2]
    assert lines[3].startswith(f"| rep-lr=0.03-seed0 | supervised | 1 | {100 * runs[2]['val_acc']:.2f} |")
    assert "±" not in lines[3]
    # without a config.yaml a run is its own row, named by its name
    (tmp_path / "out" / trials[1].name / "config.yaml").unlink()
    summaries[1] = load_summary(tmp_path / "out" / trials[1].name)
    assert summaries[1]["recipe_fingerprint"] is None
    assert len(summaries_table(summaries).splitlines()) == 5
    with pytest.raises(KdforgeError, match="no summary.json"):
        load_summary(tmp_path)
