"""The teacher-output cache benchmark's protocol: ratios from measured seconds, and a tiny run of
the whole measurement on the 8x8 digits."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from kdforge.config import from_dict
from kdforge.engine.run import load_splits
from kdforge.experiments import teacher_cache_bench as bench
from kdforge.experiments.teacher_cache_table import cache_markdown, cache_results, paired_ratios

from conftest import digits_recipe

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def _close(got, expected) -> bool:
    """Equal, floats to rounding error, through nested dicts and lists."""
    if isinstance(expected, dict):
        return list(got) == list(expected) and all(_close(got[k], expected[k]) for k in expected)
    if isinstance(expected, list):
        return len(got) == len(expected) and all(_close(a, b) for a, b in zip(got, expected, strict=True))
    if isinstance(expected, float):
        return math.isclose(got, expected, rel_tol=1e-9)
    return got == expected


def _measurements(**over) -> bench.CacheMeasurements:
    fields = {
        "round_wall": {"student": [0.001, 0.002, 0.001], "kd": [0.03, 0.04, 0.035],
                       "kd_cached": [0.0012, 0.0026, 0.0011]},
        "round_cpu": {"student": [0.001, 0.001, 0.001], "kd": [0.02, 0.03, 0.02],
                      "kd_cached": [0.0011, 0.0012, 0.0013]},
        "interleaved": {"wall": [1.1, 1.3, 1.2], "cpu": [1.0, 1.1, 1.2]},
        "interleaved_steps": 300, "fill_s": 2.0, "warm_attach_s": 0.5,
        "check": {"kd": {"steps": 7}, "identical": True, "max_abs_metric_diff": 0.0,
                  "same_student_weights": True},
        "teacher_steps": 5, "teacher_val_acc": 0.5, "train_size": 1280, "val_size": 100, "steps": 15,
        "recipes": [], "wall_time_s": 60.0,
    }  # fmt: skip
    return bench.CacheMeasurements(**{**fields, **over})


def test_ratios_are_paired_within_rounds_then_the_median_over_rounds():
    res = cache_results(_measurements())
    assert res["paired_round_ratios"]["kd_cached_over_student"] == pytest.approx([1.2, 1.3, 1.1])
    assert res["kd_cached_over_student"] == pytest.approx(1.2) and res["meets_target"]  # 1.2 <= target 1.2
    assert res["kd_over_student"] == pytest.approx(30.0)  # rounds: 30, 20, 35
    assert res["kd_over_kd_cached"] == pytest.approx(0.03 / 0.0012)  # rounds: 25, 15.4, 31.8
    assert res["kd_cached_over_student_cpu"] == pytest.approx(1.2)
    assert res["step_ms_median_of_rounds"] == pytest.approx({"student": 1.0, "kd": 35.0, "kd_cached": 1.2})
    assert res["steps_per_epoch"] == 10 and res["pool_examples"] == 1380 and res["timed_steps_per_round"] == 5
    assert res["first_epoch_s_estimate"] == pytest.approx(
        {"kd": 0.35, "kd_cached_cold": 2.012, "kd_cached_warm": 0.512, "student": 0.01}
    )
    assert res["interleaved"]["kd_cached_over_student"] == pytest.approx(1.2)
    slower = _measurements(round_wall={**_measurements().round_wall, "kd_cached": [0.0013, 0.0026, 0.0013]})
    assert not cache_results(slower)["meets_target"]
    text = cache_markdown(cache_results(slower))
    assert "**1.30** (target <= 1.2: missed)" in text and "| kd_cached | 1.30 | 1.30x [1.30, 1.30] |" in text
    assert (
        "after 7 KD steps: yes" in text and "3 rounds, each running every configuration for 5 timed" in text
    )


def test_paired_ratios_refuse_rounds_of_different_counts():
    assert paired_ratios([2.0, 6.0], [1.0, 3.0]) == [2.0, 2.0]
    with pytest.raises(ValueError):
        paired_ratios([1.0], [1.0, 2.0])


def test_committed_numbers_follow_from_the_committed_round_medians():
    committed = json.loads((RESULTS / "teacher_cache.json").read_text())
    inter = committed["interleaved"]
    m = bench.CacheMeasurements(
        round_wall={k: [v / 1e3 for v in vs] for k, vs in committed["step_ms_round_medians"].items()},
        round_cpu={k: [v / 1e3 for v in vs] for k, vs in committed["cpu_round_medians_ms"].items()},
        interleaved=inter["block_ratios"],
        interleaved_steps=inter["steps"],
        fill_s=committed["fill_s"],
        warm_attach_s=committed["warm_attach_s"],
        check=committed["identical_with_and_without_cache"],
        teacher_steps=committed["teacher"]["steps"],
        teacher_val_acc=committed["teacher"]["val_acc"],
        train_size=55_000,
        val_size=5_000,
        steps=committed["timed_steps_per_round"] + bench.WARMUP,
        recipes=[],
        wall_time_s=committed["wall_time_s"],
    )
    committed.pop("provenance")
    assert _close(cache_results(m), committed)


def _digits_recipes(output_dir: str, data: dict) -> list[dict]:
    teacher = {"name": "mlp", "kwargs": {"hidden": [64]}}
    base = digits_recipe(output_dir)
    checkpoint = str(Path(output_dir) / "teacher" / "student.safetensors")
    return [
        {**base, "name": "teacher", "student": teacher},
        {**base, "name": "student_alone"},
        {
            **base,
            "name": "student_kd",
            "method": {"name": "kd"},
            "teacher": {**teacher, "checkpoint": checkpoint},
        },
    ]


def test_interleaved_steps_give_one_ratio_per_block(tmp_path):
    recipe = digits_recipe(tmp_path)
    splits = load_splits(from_dict(recipe))
    setups = {"student": (recipe, splits.train), "kd_cached": (recipe, splits.train)}
    out = bench.interleaved_steps(setups, splits, steps=10, root=tmp_path / "inter", block=5)
    assert [len(out["wall"]), len(out["cpu"])] == [2, 2] and all(r > 0 for r in out["wall"])


def test_measure_on_the_digits_times_every_configuration_and_finds_the_cache_exact(monkeypatch, tmp_path):
    monkeypatch.setattr(bench, "recipes", _digits_recipes)
    monkeypatch.setenv("KDFORGE_CACHE", str(tmp_path / "mine"))
    m = bench.measure(
        rounds=2, steps=bench.WARMUP + 3, teacher_steps=5, check_steps=4, interleaved=100, data_dir=None
    )
    assert os.environ["KDFORGE_CACHE"] == str(tmp_path / "mine")  # restored after the benchmark's cold cache
    assert not (tmp_path / "mine").exists()
    assert {k: len(v) for k, v in m.round_wall.items()} == {"student": 2, "kd": 2, "kd_cached": 2}
    assert all(t > 0 for ts in m.round_wall.values() for t in ts) and m.fill_s > 0
    assert len(m.interleaved["wall"]) == 100 // bench.BLOCK
    assert m.check["identical"] and m.check["same_student_weights"] and m.check["kd"]["steps"] == 4
    res = cache_results(m)
    assert res["timed_steps_per_round"] == 3 and res["pool_examples"] == m.train_size + m.val_size
    assert "Same results with and without the cache after 4 KD steps: yes" in cache_markdown(res)
