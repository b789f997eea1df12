"""The MPO speed benchmark's protocol: timing helpers, ratios, verdict, and tiny measuring runs."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import kdforge.experiments.timing as timing_module
from kdforge.experiments import mpo_speed
from kdforge.experiments.mpo_speed_table import mpo_speed_markdown
from kdforge.experiments.timing import interleaved_seconds, median_seconds
from kdforge.layers import MPOLinear, overparameterize


def _fake_clock(monkeypatch, stamps):
    """``time.perf_counter`` of the timing module returns ``stamps`` one after the other."""
    ticks = iter(stamps)
    monkeypatch.setattr(timing_module, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))


def test_median_seconds_skips_the_warmup_and_takes_the_median(monkeypatch):
    calls = []
    _fake_clock(monkeypatch, [0.0, 1.0, 1.0, 4.0, 4.0, 6.0])  # calls of 1, 3 and 2 seconds
    assert median_seconds(lambda: calls.append(1), repeats=3, warmup=2) == 2.0
    assert len(calls) == 5  # 2 untimed + 3 timed


def test_interleaved_seconds_alternates_and_times_each_call(monkeypatch):
    calls = []
    _fake_clock(monkeypatch, [0, 1, 1, 3, 3, 6, 6, 10])
    times = interleaved_seconds([lambda: calls.append("a"), lambda: calls.append("b")], rounds=2)
    assert calls == ["a", "b", "a", "b"]
    assert times == [[1, 3], [2, 4]]


@pytest.mark.parametrize(
    ("ratios", "expected"),
    [
        ([1.1, 1.2, 1.3], "met"),  # every pair at most the target (the bound counts as met)
        ([1.2, 1.4], "not distinguishable"),
        ([1.3, 1.5], "not distinguishable"),  # one pair exactly at the target
        ([1.31, 1.8], "missed"),
    ],
)
def test_pair_verdict_asks_every_pair_to_be_at_most_the_target(ratios, expected):
    assert mpo_speed.pair_verdict(ratios, 1.3) == expected


def test_contraction_macs_ratio_counts_the_cores_product_against_the_dense_matmul():
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
    overparameterize(model, ["0"], "mpo", n=2)
    first, second = model[0].cores
    bond = first.shape[-1]
    # two cores: contracting them costs out*in*bond multiply-adds; the dense layer out*in per row
    assert second.shape[0] == bond and mpo_speed.contraction_macs_ratio(model, 1) == bond
    assert mpo_speed.contraction_macs_ratio(model, 4) == bond / 4


def test_paired_step_times_warm_up_once_then_take_turns():
    calls = []
    plain, mpo = mpo_speed.paired_step_times(lambda: calls.append("p"), lambda: calls.append("m"), rounds=3)
    assert calls == ["p", "m"] * 4  # warm-up, then 3 rounds
    assert len(plain) == len(mpo) == 3


def test_paired_latencies_run_without_gradients():
    grad_enabled = []
    lat = mpo_speed.paired_latencies(
        lambda: grad_enabled.append(torch.is_grad_enabled()), lambda: None, rounds=2
    )
    assert grad_enabled == [False, False] and [len(x) for x in lat] == [2, 2]


def test_sgd_step_updates_the_model():
    layer = nn.Linear(3, 2)
    before = layer.weight.detach().clone()
    mpo_speed.sgd_step(layer, torch.ones(4, 3))()
    assert not torch.equal(before, layer.weight)


def test_decomposition_on_a_tiny_weight_is_exact_and_timed():
    (row,) = mpo_speed.bench_decomposition(repeats=1, shapes=[(8, 12)])
    assert row["shape"] == [8, 12] and row["ours_s"] > 0 and row["ours_rel_err"] < 1e-5
    assert torch.tensor(row["row_factors"]).prod() == 8 and torch.tensor(row["col_factors"]).prod() == 12
    if importlib.util.find_spec("tensorly"):
        assert row["tensorly_over_ours"] == pytest.approx(row["tensorly_s"] / row["ours_s"])
        assert row["tensorly_rel_err"] < 1e-5


def test_train_step_rows_per_shape_and_batch(monkeypatch):
    rows = mpo_speed.bench_train_step(repeats=1, batch_rows=[1, 4], shapes=[(16, 24)])
    assert [(r["shape"], r["batch_rows"]) for r in rows] == [([16, 24], 1), ([16, 24], 4)]
    layer = MPOLinear.from_linear(nn.Linear(24, 16), n=5)
    for r in rows:
        assert r["dense_s"] > 0 and all(r[f"{m}_ratio"] > 0 for m in mpo_speed.FORWARD_MODES)
        assert r["auto_picks"] == layer.choose_mode(r["batch_rows"])
        assert (r["mpo_params"], r["dense_params"]) == (sum(c.numel() for c in layer.cores), 16 * 24)
    monkeypatch.setattr(mpo_speed, "SEQUENTIAL_SKIP", 0)  # every sequential path now counts as too slow
    (row,) = mpo_speed.bench_train_step(repeats=1, batch_rows=[2], shapes=[(16, 24)])
    assert row["sequential_ratio"] is None and row["contract_ratio"] > 0


def test_markdown_leaves_out_the_nlp_section_without_its_rows():
    decomposition = {"shape": [8, 12], "row_factors": [2, 4], "col_factors": [3, 4], "ours_s": 0.5,
                     "ours_rel_err": 1e-6}  # fmt: skip
    step = {"shape": [8, 12], "batch_rows": 1, "contract_ratio": 2.0, "sequential_ratio": None,
            "auto_ratio": 2.5, "auto_picks": "contract", "mpo_params": 192, "dense_params": 96}  # fmt: skip
    student = {"model": "m", "plain_params": 1, "train_time_params": 2, "collapsed_params": 1,
               "train_step_ratio": 2.0, "pair_ratios": [1.0, 2.0, 4.0], "contraction_macs_over_linear": 0.5,
               "latency_ratio_collapsed_vs_plain": 1.0, "latency_plain_ms": 0.1}  # fmt: skip
    text = mpo_speed_markdown({"decomposition": [decomposition], "train_step": [step], "student": student})
    assert "| 8x12 | [2, 4] / [3, 4] | 0.500 | nan | nan | 1.0e-06 |" in text  # no tensorly
    assert "| 8x12 | 1 | 2.00 | 2.00x | skipped | 2.50x (contract) |" in text
    assert "pairs min / median / max 1.00 / 2.00 / 4.00" in text and "NLP student" not in text
