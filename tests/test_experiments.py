"""Grids, selection on validation, paired bootstrap intervals and verdicts (no training)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from kdforge.config import from_dict
from kdforge.errors import KdforgeError
from kdforge.experiments import (
    Interval,
    expand_grid,
    make_trials,
    paired_bootstrap,
    paired_bootstrap_examples,
    select_best,
    verdict,
)

# ----------------------------------------------------------------------------- grids and trials


def test_expand_grid_is_the_cartesian_product_in_key_order():
    grid = {"train.lr": [0.1, 0.01], "method.kwargs.temperature": [2, 4, 8]}
    points = expand_grid(grid)
    assert len(points) == 6
    assert points[0] == {"train.lr": 0.1, "method.kwargs.temperature": 2}
    assert points[1] == {"train.lr": 0.1, "method.kwargs.temperature": 4}  # last key fastest
    assert points[-1] == {"train.lr": 0.01, "method.kwargs.temperature": 8}
    assert expand_grid({}) == [{}]


@pytest.mark.parametrize("bad", [{"train.lr": []}, {"train.lr": 0.1}, {"train.lr": "0.1"}])
def test_expand_grid_refuses_non_lists(bad):
    with pytest.raises(KdforgeError, match="non-empty list"):
        expand_grid(bad)


def test_make_trials_applies_grid_and_seeds(tmp_path):
    base = from_dict({"name": "kd", "train": {"lr": 1.0}, "method": {"name": "kd"}})
    grid = {"train.lr": [1e-3, 3e-3], "method.kwargs.temperature": [4]}
    trials = make_trials(base, grid, seeds=[0, 1], extra_overrides=["train.epochs=2"])
    assert [t.name for t in trials] == [
        "kd-lr=0.001_temperature=4-seed0",
        "kd-lr=0.001_temperature=4-seed1",
        "kd-lr=0.003_temperature=4-seed0",
        "kd-lr=0.003_temperature=4-seed1",
    ]
    t = trials[2]
    assert t.config.train.lr == 3e-3 and isinstance(t.config.train.lr, float)
    assert t.config.method.kwargs == {"temperature": 4}
    assert t.config.seed == t.seed == 0 and t.config.name == t.name
    assert t.config.train.epochs == 2 and t.overrides == {"train.lr": 3e-3, "method.kwargs.temperature": 4}
    assert base.train.lr == 1.0  # the base recipe is not modified
    # a recipe file works the same and takes its name as the sweep name
    path = tmp_path / "r.yaml"
    path.write_text("name: fromfile\ntrain: {lr: 0.5}\n")
    assert [t.name for t in make_trials(path, {}, [3])] == ["fromfile-seed3"]
    assert make_trials(path, {}, [3], name="other")[0].name == "other-seed3"


def test_make_trials_names_stay_unique():
    base = from_dict({})
    # same last key component: the full key is used
    trials = make_trials(base, {"student.kwargs.hidden": [[8]], "teacher.kwargs.hidden": [[16]]}, [0])
    assert trials[0].name == "run-student.kwargs.hidden=8_teacher.kwargs.hidden=16-seed0"
    # values that slug alike get a hash
    names = [t.name for t in make_trials(base, {"data.name": ["a/b", "a_b"]}, [0])]
    assert len(set(names)) == 2


@pytest.mark.parametrize(
    ("grid", "seeds", "msg"),
    [
        ({}, [], "at least one seed"),
        ({}, [0, 0], "duplicate seeds"),
        ({"seed": [1, 2]}, [0], "not a grid key"),
        ({"train.lrr": [0.1]}, [0], r"unknown config key 'train.lrr'"),
    ],
)
def test_make_trials_bad_input(grid, seeds, msg):
    with pytest.raises(KdforgeError, match=msg):
        make_trials(from_dict({}), grid, seeds)


# ----------------------------------------------------------------------------- selection


def _summary(lr, seed, val, test, method="kd"):
    return {"name": f"{method}-{lr}-{seed}", "method": method, "seed": seed, "overrides": {"train.lr": lr},
            "val_acc": val, "val_loss": 1 - val, "test_acc": test}  # fmt: skip


def test_select_best_uses_the_mean_over_seeds():
    # lr=0.1 has the single best run (0.95) but the lower mean
    runs = [_summary(0.1, 0, 0.95, 0.5), _summary(0.1, 1, 0.70, 0.5), _summary(0.01, 0, 0.85, 0.5)]
    runs.append(_summary(0.01, 1, 0.86, 0.5))
    best = select_best(runs)[()]
    assert best["overrides"] == {"train.lr": 0.01}
    assert best["mean"] == pytest.approx(0.855) and best["seeds"] == [0, 1] and best["values"] == [0.85, 0.86]
    assert [c["overrides"]["train.lr"] for c in best["candidates"]] == [0.01, 0.1]
    # lower is better for a loss
    assert select_best(runs, metric="val_loss")[()]["overrides"] == {"train.lr": 0.01}


def test_select_best_never_looks_at_test():
    runs = [_summary(lr, seed, val, 0.5) for lr, val in ((0.1, 0.8), (0.01, 0.9)) for seed in (0, 1)]
    chosen = select_best(runs)[()]["overrides"]
    for test_values in ([0.99, 0.99, 0.1, 0.1], [0.1, 0.1, 0.99, 0.99]):
        changed = [dict(r, test_acc=t, test_loss=1 - t) for r, t in zip(runs, test_values, strict=True)]
        assert select_best(changed)[()]["overrides"] == chosen
    with pytest.raises(KdforgeError, match="test split"):
        select_best(runs, metric="test_acc")


def test_select_best_ties_are_deterministic_and_order_free():
    # same mean 0.8: lower std wins; same mean and std: canonical JSON order of the grid point
    runs = [
        _summary(0.3, 0, 0.7, 0),
        _summary(0.3, 1, 0.9, 0),
        _summary(0.2, 0, 0.8, 0),
        _summary(0.2, 1, 0.8, 0),
    ]
    runs += [_summary(0.1, 0, 0.8, 0), _summary(0.1, 1, 0.8, 0)]
    for order in range(5):
        shuffled = runs[:]
        random.Random(order).shuffle(shuffled)
        best = select_best(shuffled)[()]
        assert best["overrides"] == {"train.lr": 0.1}  # '{"train.lr": 0.1}' < '{"train.lr": 0.2}'
        assert [c["overrides"]["train.lr"] for c in best["candidates"]] == [0.1, 0.2, 0.3]


def test_select_best_per_group():
    runs = [_summary(0.1, 0, 0.9, 0, "kd"), _summary(0.01, 0, 0.8, 0, "kd")]
    runs += [_summary(0.1, 0, 0.6, 0, "fitnet"), _summary(0.01, 0, 0.7, 0, "fitnet")]
    best = select_best(runs, group_by=("method",))
    assert set(best) == {("kd",), ("fitnet",)}
    assert best[("kd",)]["overrides"] == {"train.lr": 0.1}
    assert best[("fitnet",)]["overrides"] == {"train.lr": 0.01}
    # grouping by a grid key: each lr is its own group with one point
    assert set(select_best(runs, group_by=("train.lr",))) == {(0.1,), (0.01,)}
    with pytest.raises(KdforgeError, match="group key 'nope'"):
        select_best(runs, group_by=("nope",))


def test_select_best_refuses_unequal_seed_sets_and_missing_metrics():
    runs = [_summary(0.1, 0, 0.99, 0), _summary(0.01, 0, 0.8, 0), _summary(0.01, 1, 0.8, 0)]
    with pytest.raises(KdforgeError, match="different seeds"):
        select_best(runs)
    assert select_best(runs, require_same_seeds=False)[()]["overrides"] == {"train.lr": 0.1}
    with pytest.raises(KdforgeError, match="has no 'val_f1'"):
        select_best(runs, metric="val_f1")
    with pytest.raises(KdforgeError, match="no run summaries"):
        select_best([])


# ----------------------------------------------------------------------------- intervals


DIFFS = [0.5, -0.2, 1.3, 0.7, 0.1, -0.4, 0.9, 0.2]


def test_paired_bootstrap_golden_values():
    got = paired_bootstrap(DIFFS, [0.0] * 8, n_boot=2000, seed=7)
    assert got.mean == pytest.approx(0.3875, abs=1e-12)
    assert got.low == pytest.approx(0.0125, abs=1e-12)
    assert got.high == pytest.approx(0.7628125, abs=1e-9)
    assert got.confidence == 0.95
    assert got.format() == "+0.39 [+0.01, +0.76]"
    # the same as resampling by hand with the same generator stream
    rng = np.random.default_rng(7)
    oracle = np.asarray(DIFFS)[rng.integers(0, 8, size=(2000, 8))].mean(axis=1)
    assert (got.low, got.high) == tuple(np.quantile(oracle, [0.025, 0.975]))
    assert paired_bootstrap(DIFFS, [0.0] * 8, n_boot=2000, seed=7) == got  # reproducible


def test_paired_bootstrap_resamples_pairs_together():
    # large shared noise: every pair differs by exactly 0.02, so the interval collapses onto it
    rng = np.random.default_rng(0)
    baseline = rng.normal(0.8, 0.1, size=10)
    got = paired_bootstrap(baseline + 0.02, baseline)
    assert got.low == pytest.approx(0.02) and got.high == pytest.approx(0.02)
    # shuffling the baseline breaks the pairs and the interval widens
    shuffled = paired_bootstrap(baseline + 0.02, baseline[::-1])
    assert shuffled.high - shuffled.low > 0.05


def test_paired_bootstrap_coverage_on_synthetic_data():
    # 95% intervals over 300 synthetic experiments (20 pairs each) cover the true delta ~95% of the time
    rng = np.random.default_rng(1)
    true_delta, hits = 0.3, 0
    for rep in range(300):
        baseline = rng.normal(0.0, 1.0, 20)
        method = baseline + true_delta + rng.normal(0.0, 0.5, 20)
        iv = paired_bootstrap(method, baseline, n_boot=1000, seed=rep)
        hits += iv.low <= true_delta <= iv.high
    assert 0.88 <= hits / 300 <= 0.99


def test_paired_bootstrap_examples_two_way():
    rng = np.random.default_rng(3)
    method = (rng.random((3, 40)) < 0.7).astype(float)
    baseline = (rng.random((3, 40)) < 0.6).astype(float)
    got = paired_bootstrap_examples(method, baseline, n_boot=2000, seed=7)
    assert got.mean == pytest.approx(method.mean() - baseline.mean())
    assert (got.low, got.high) == pytest.approx((-0.075, 0.30833333333333335), abs=1e-12)
    # identical per-example differences everywhere: the interval collapses
    same = paired_bootstrap_examples(np.ones((2, 5)), np.zeros((2, 5)), n_boot=500)
    assert (same.low, same.high) == (1.0, 1.0)
    # coverage: differences of a true 0.1 with per-example noise
    hits = 0
    for rep in range(100):
        diffs = 0.1 + rng.normal(0, 1, (3, 50))
        iv = paired_bootstrap_examples(diffs, np.zeros_like(diffs), n_boot=500, seed=rep)
        hits += iv.low <= 0.1 <= iv.high
    assert 0.85 <= hits / 100 <= 1.0


@pytest.mark.parametrize(
    ("call", "msg"),
    [
        (lambda: paired_bootstrap([1.0, 2.0], [1.0]), "differ in shape"),
        (lambda: paired_bootstrap([1.0], [1.0]), "at least 2 pairs"),
        (lambda: paired_bootstrap([1.0, float("nan")], [1.0, 1.0]), "NaN"),
        (lambda: paired_bootstrap([1.0, 2.0], [1.0, 1.0], confidence=95), "confidence"),
        (lambda: paired_bootstrap([1.0, 2.0], [1.0, 1.0], n_boot=10), "too few"),
        (lambda: paired_bootstrap_examples([1.0, 2.0], [1.0, 1.0]), r"\[seeds, examples\]"),
    ],
)
def test_interval_bad_input(call, msg):
    with pytest.raises(KdforgeError, match=msg):
        call()


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (0.9, 0.95, "met"),  # low exactly at the target counts
        (0.91, 0.95, "met"),
        (0.8999, 0.95, "not distinguishable"),
        (0.85, 0.9, "not distinguishable"),  # high exactly at the target is not a miss
        (0.85, 0.8999, "missed"),
    ],
)
def test_verdict_boundaries(low, high, expected):
    assert verdict(Interval((low + high) / 2, low, high, 0.95), 0.9) == expected
