"""The "teacher fine-tuned" row of the EAsT / EC text tables: lr on validation, cost, rendering."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from kdforge.data._batches import TensorData
from kdforge.data.vision import Splits
from kdforge.experiments import east_text_finetune as finetune
from kdforge.experiments.east_text_pairs import add_finetune, pair_markdown
from kdforge.experiments.scoring import length_sorted_accuracy, model_accuracy
from kdforge.models import build_model
from kdforge.models.mlp import count_parameters

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "east"
TWEETS = ROOT / "benchmarks" / "results" / "east_text_tweets"


def _texts(n: int, max_len: int = 12, seed: int = 0) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_len + 1, (n,), generator=g)
    mask = (torch.arange(max_len)[None] < lengths[:, None]).long()
    ids = torch.randint(1, 500, (n, max_len), generator=g) * mask
    return TensorData({"input_ids": ids, "attention_mask": mask, "y": torch.randint(0, 2, (n,), generator=g)})


class ParityModel(nn.Module):
    """Predicts the parity of the first token; records the longest text of every batch it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(2))
        self.batch_lengths: list[int] = []

    def forward(self, input_ids, attention_mask):
        self.batch_lengths.append(int(attention_mask.sum(1).max()))
        return nn.functional.one_hot(input_ids[:, 0] % 2, 2).float() + self.bias


def test_length_sorted_accuracy_equals_model_accuracy_and_batches_short_texts_first():
    data = _texts(300)
    torch.manual_seed(0)
    cnn = build_model("text_cnn", (12,), 2, emb=8, channels=[8], kernel=3)
    assert length_sorted_accuracy(cnn, data, batch_size=32) == model_accuracy(cnn, data)
    parity = ParityModel()
    acc = length_sorted_accuracy(parity, data, batch_size=32)
    want = ((data.tensors["input_ids"][:, 0] % 2) == data.tensors["y"]).float().mean().item()
    assert acc == pytest.approx(want)
    assert parity.batch_lengths == sorted(parity.batch_lengths) and parity.batch_lengths[0] < 12


def test_choose_lr_takes_the_best_mean_validation_and_the_first_on_a_tie():
    assert finetune.choose_lr({1e-4: [0.8, 0.9], 3e-4: [0.86, 0.86]}) == 3e-4
    assert finetune.choose_lr({1e-4: [0.85], 3e-4: [0.85]}) == 1e-4


def _fake_setup(monkeypatch, val_by_lr):
    """run_finetune without MiniLM or VADER: tiny splits, a parity model, summaries per (lr, seed)."""
    calls = []
    splits = Splits(_texts(40, seed=1), _texts(10, seed=2), _texts(20, seed=3), 2, (12,), "fake")
    monkeypatch.setattr(finetune, "load_splits", lambda cfg: splits)
    monkeypatch.setattr(finetune, "vader_all", lambda domain, max_len: _texts(30, seed=len(domain)))

    def train(recipe, lr, seed, overrides, output_dir):
        calls.append((lr, seed))
        summary = {"val_acc": val_by_lr[lr] + seed / 100, "test_acc": 0.5, "best_step": 3, "steps": 4}
        return {**summary, "train_time_s": 10.0 + seed, "student_params": 2}, ParityModel()

    return calls, splits, train


def test_run_finetune_chooses_lr_on_the_selection_seeds_then_runs_every_seed_at_it(monkeypatch):
    calls, splits, train = _fake_setup(monkeypatch, {1e-4: 0.80, 3e-4: 0.85})
    grid = finetune.FinetuneGrid(seeds=[0, 1, 2], lrs=[1e-4, 3e-4], select_seeds=[0])
    sec = finetune.run_finetune(
        "tweets", grid, CONFIGS, "unused", ["movies", "nyt"], "vader_tweets_baseline.yaml", train
    )
    assert calls == [(1e-4, 0), (3e-4, 0), (3e-4, 1), (3e-4, 2)]  # seed 0 at 3e-4 trained once
    assert (
        sec["chosen_lr"] == 3e-4
        and sec["tuned"]
        and sec["val_grid"] == pytest.approx({"0.0001": 80.0, "0.0003": 85.0})
    )
    rows = finetune.chosen_runs(sec)
    assert [x["seed"] for x in rows] == [0, 1, 2] and [x["train_time_s"] for x in rows] == [10.0, 11.0, 12.0]
    parity = ((_texts(30, seed=6).tensors["input_ids"][:, 0] % 2) == _texts(30, seed=6).tensors["y"]).float()
    assert rows[0]["unseen_movies"] == pytest.approx(parity.mean().item())
    assert "unseen_movies" not in next(x for x in sec["runs"] if x["lr"] == 1e-4)  # not the table row
    cost = sec["cost"]
    student = build_model("text_cnn", (12,), 2, emb=32, channels=[64], kernel=5)  # the baseline recipe's
    assert cost["student_params"] == count_parameters(student) and cost["teacher_params"] == 2
    assert cost["test_examples"] == 20 and cost["teacher_infer_s"] > 0 and cost["student_infer_s"] > 0
    assert sec["config"]["max_len"] == 32 and sec["config"]["train_examples"] == 40


def test_one_lr_is_reported_as_not_tuned(monkeypatch):
    calls, _, train = _fake_setup(monkeypatch, {1e-4: 0.80})
    grid = finetune.FinetuneGrid(seeds=[0, 1], lrs=[1e-4])
    sec = finetune.run_finetune(
        "tweets", grid, CONFIGS, "unused", ["nyt"], "vader_tweets_baseline.yaml", train
    )
    assert calls == [(1e-4, 0), (1e-4, 1)] and not sec["tuned"]


def test_versus_ec_pairs_rows_by_seed():
    ec = [{"seed": s, "test_acc": 0.80 + s / 100, "unseen_a": 0.6, "unseen_b": 0.7} for s in (2, 0, 1)]
    ft = [{"seed": s, "test_acc": 0.85 + s / 100, "unseen_a": 0.5, "unseen_b": 0.6} for s in (0, 1, 2)]
    v = finetune.versus_ec(ec, ft, ["unseen_a", "unseen_b"])
    assert v["test"]["mean"] == pytest.approx(-0.05) and v["test"]["low"] == pytest.approx(-0.05)
    assert v["unseen_mean"]["mean"] == pytest.approx(0.10) and v["seeds"] == [2, 0, 1]


def _section(res: dict) -> dict:
    runs = [
        {"row": finetune.ROW, "lr": 3e-4, "seed": s, "val_acc": 0.9, "test_acc": 0.89 + s / 100,
         "best_step": 93, "steps": 93, "train_time_s": 100.0 + s, "student_params": 22713986,
         "unseen_movies": 0.7, "unseen_amazon": 0.8, "unseen_nyt": 0.6}
        for s in (0, 1, 2)
    ] + [{"row": finetune.ROW, "lr": 1e-4, "seed": 0, "val_acc": 0.88, "test_acc": 0.5}]  # fmt: skip
    prov = copy.deepcopy(res["provenance"])
    return {
        "config": {"recipe": "vader_tweets_teacher_ft.yaml", "train_examples": 2957, "max_len": 32,
                   "epochs": 1, "batch_size": 32, "eval_every_steps": 31, "lrs": [1e-4, 3e-4],
                   "select_seeds": [0], "seeds": [0, 1, 2], "overrides": []},
        "val_grid": {"0.0001": 88.0, "0.0003": 90.0}, "chosen_lr": 3e-4, "tuned": True, "runs": runs,
        "cost": {"teacher_params": 22713986, "student_params": 1000000, "student": "text_cnn",
                 "test_examples": 839, "teacher_infer_s": 2.0, "student_infer_s": 0.02},
        "provenance": {**prov, "command": "east_text_finetune.py --pair tweets", "git_commit": "abc"},
    }  # fmt: skip


def test_the_row_joins_the_committed_table_leaving_every_existing_line_as_it_is():
    res = json.loads(TWEETS.with_suffix(".json").read_text())
    res.pop("teacher_finetuned", None)
    before = pair_markdown(res).splitlines()
    full = add_finetune(res, _section(res))
    assert {k: v for k, v in full.items() if k != "teacher_finetuned"} == res
    after = pair_markdown(full).splitlines()
    row = next(i for i, line in enumerate(after) if line.startswith(f"| {finetune.ROW} |"))
    assert after[:row] == before[:row] and after[row + 1 : len(before) + 1] == before[row:]
    assert after[row] == (
        "| teacher fine-tuned | - | 90.00 ± 0.00 | 90.00 ± 1.00 | 70.00 ± 0.00 | 80.00 ± 0.00 "
        "| 60.00 ± 0.00 | 70.00 ± 0.00 |"
    )
    text = "\n".join(after[len(before) + 1 :])
    ec = [x["test_acc"] for x in res["runs"] if x["row"] == "EC-FitNet" and x["d"] == 8 and x["lam"] == 0.1]
    gain = 100 * (sum(ec) / 3 - 0.90)
    assert "EC-FitNet d=8 vs teacher fine-tuned" in text and f"test {gain:+.2f} [" in text
    assert (
        "**0.0003**" in text
        and "22,713,986 parameters vs 1,000,000" in text
        and "(100x, side by side" in text
    )
    assert "commit: abc" in text and "not tuned" not in text


def test_script_hands_the_declared_grid_to_the_library_and_adds_the_row_to_the_table(tmp_path, monkeypatch):
    import importlib
    import sys

    res = json.loads(TWEETS.with_suffix(".json").read_text())
    res.pop("teacher_finetuned", None)
    out = tmp_path / "east_text_tweets.json"
    out.write_text(json.dumps(res))
    calls = []

    def fake_run(pair, grid, configs, output_dir, unseen, student_recipe):
        calls.append((pair, grid, unseen, student_recipe))
        return {k: v for k, v in _section(res).items() if k != "provenance"}

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    module = importlib.import_module("east_text_finetune")
    monkeypatch.setattr(module, "run_finetune", fake_run)
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "east_text_finetune.py",
            "--pair",
            "tweets",
            "--out",
            str(out),
            "--output-dir",
            str(tmp_path / "runs"),
        ],
    )
    try:
        module.main()
    finally:
        sys.modules.pop("east_text_finetune", None)
    grid = finetune.FinetuneGrid([0, 1, 2], [1e-4, 3e-4], [0], [])
    assert calls == [("tweets", grid, ("movies", "amazon", "nyt"), "vader_tweets_baseline.yaml")]
    written = json.loads(out.read_text())
    assert written["provenance"] == res["provenance"] and written["runs"] == res["runs"]
    assert written["teacher_finetuned"]["provenance"]["config"]["lrs"] == [1e-4, 3e-4]
    assert f"| {finetune.ROW} | - |" in out.with_suffix(".md").read_text()
    assert json.loads((tmp_path / "runs" / "teacher_finetuned_tweets.json").read_text())["chosen_lr"] == 3e-4
