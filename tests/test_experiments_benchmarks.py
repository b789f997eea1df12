"""Benchmark protocols as library code: variant grids, timing, results files, and re-rendering the
committed tables from their JSON with the rewritten scripts (byte for byte)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import kdforge.experiments.timing as timing_module
from kdforge.config import from_dict
from kdforge.data._batches import TensorData
from kdforge.errors import KdforgeError
from kdforge.experiments import paired_bootstrap, run_recipe, run_seeds
from kdforge.experiments.scoring import model_accuracy, teacher_scores
from kdforge.experiments.timing import exported_latency_ratio, latency_ratio
from kdforge.experiments.variants import (
    delta_lines,
    difference_lines,
    paired_deltas,
    variant_deltas,
    variant_row,
    variant_table,
)
from kdforge.report.provenance import write_results
from kdforge.report.results import rerender_results, save_results

from conftest import digits_recipe

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# (script, results file): committed tables the rewritten scripts reproduce exactly from their JSON
RERENDERED = [
    ("opdf_align_sweep", "opdf_align_sweep"),
    ("east_table", "east_table_lam0.3"),
    ("east_images", "east_images_digits"),
    ("east_images", "east_images_fmnist"),
    ("east_text", "east_text_tweets"),
    ("east_text", "east_text_amazon_kd0.3"),
]


@pytest.mark.parametrize(("script", "name"), RERENDERED)
def test_rewritten_benchmark_reproduces_the_committed_table(tmp_path, monkeypatch, script, name):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    module = importlib.import_module(script)
    results = json.loads((RESULTS / f"{name}.json").read_text())
    written = write_results(tmp_path / f"{name}.json", results, module.markdown(results))
    assert written.with_suffix(".md").read_text() == (RESULTS / f"{name}.md").read_text()
    sys.modules.pop(script, None)


def _runs(test_accs, params=100):
    return [{"test_acc": a, "val_acc": a - 0.01, "train_params": params, "student_params": 50,
             "train_time_s": 2.0} for a in test_accs]  # fmt: skip


ROWS = [
    variant_row("kd", "plain", "r", _runs([0.80, 0.82, 0.81]), latency_ratio=1.0),
    variant_row("kd", "opdf", "r", _runs([0.83, 0.84, 0.83], 400), latency_ratio=0.99),
    variant_row("kd", "opdf_noalign", "r", _runs([0.82, 0.84, 0.83], 400), latency_ratio=1.01),
    variant_row("kd", "plain_lr3x", "r", _runs([0.82, 0.83, 0.83]), latency_ratio=1.0),
    variant_row("fitnet", "opdf", "r", _runs([0.7]), latency_ratio=1.0),  # no plain row: no delta
]
LABELS = {"plain": "plain", "opdf": "+OPDF", "opdf_noalign": "+OPDF w/o alignment", "plain_lr3x": "3x lr"}


def test_variant_deltas_and_lines():
    deltas = variant_deltas(ROWS, lambda v: v.startswith("opdf"), control="plain_lr3x", teacher_acc=0.9)
    assert [(d["base"], d["variant"]) for d in deltas] == [("kd", "opdf"), ("kd", "opdf_noalign")]
    assert deltas[0]["delta_points"] == pytest.approx(100 * (0.8333333 - 0.81), abs=1e-4)
    assert deltas[0]["delta_vs_control"] == pytest.approx(100 * (0.8333333 - 0.8266667), abs=1e-4)
    assert deltas[0]["delta_vs_teacher"] == pytest.approx(100 * (0.8333333 - 0.9), abs=1e-4)
    lines = delta_lines(deltas, LABELS, target=1.5)
    assert (
        lines[0]
        == "- kd +OPDF: +2.33 points vs plain (met); +0.67 vs the plain 3x-lr control; -6.67 vs the teacher"
    )
    assert lines[1].startswith("- kd +OPDF w/o alignment: +2.00 points vs plain (met)")
    assert delta_lines(deltas, LABELS, target=2.5)[0].startswith(
        "- kd +OPDF: +2.33 points vs plain (**missed**)"
    )
    assert difference_lines(ROWS, "opdf", "opdf_noalign") == ["- kd: +0.33 points"]


def test_variant_table_and_paired_deltas():
    table = variant_table(ROWS[:2], LABELS, [["teacher", "90.00", "89.00", "1", "1", "-", "5"]]).splitlines()
    assert (
        table[0].startswith("| method | test acc (%) |")
        and table[2] == "| teacher | 90.00 | 89.00 | 1 | 1 | - | 5 |"
    )
    assert table[3] == "| kd plain | 81.00 ± 1.00 | 80.00 ± 1.00 | 100 | 50 | 1.00 | 2 |"
    intervals = paired_deltas(ROWS, "opdf", "plain", n_boot=1000)
    assert set(intervals) == {("kd", "opdf")}
    assert intervals["kd", "opdf"] == paired_bootstrap(ROWS[1]["test_acc"], ROWS[0]["test_acc"], n_boot=1000)
    # with the interval, the verdict is the interval's (paired differences +3, +2, +2 points)
    deltas = variant_deltas(ROWS, lambda v: v == "opdf")
    iv = intervals["kd", "opdf"]
    assert (iv.low, iv.high) == pytest.approx((0.02, 0.03))
    line = delta_lines(deltas, LABELS, target=2.5, intervals=intervals)[0]
    assert line == "- kd +OPDF: +2.33 [+2.00, +3.00] points vs plain (95% CI; not distinguishable)"
    assert delta_lines(deltas, LABELS, target=1.5, intervals=intervals)[0].endswith("(95% CI; met)")
    assert delta_lines(deltas, LABELS, target=3.5, intervals=intervals)[0].endswith("(95% CI; missed)")
    # the mean alone (+2.33) clears 2.2 points; the interval's lower bound (+2.00) does not
    assert delta_lines(deltas, LABELS, target=2.2)[0].endswith("(met)")
    assert delta_lines(deltas, LABELS, target=2.2, intervals=intervals)[0].endswith("; not distinguishable)")


class _Slow(nn.Module):
    def __init__(self, repeats: int) -> None:
        super().__init__()
        self.layer, self.repeats = nn.Linear(64, 64), repeats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.repeats):
            x = self.layer(x)
        return x


def test_latency_ratio_orders_models():
    x = {"x": torch.randn(64, 64)}
    slow = latency_ratio(_Slow(40), _Slow(1), x, blocks=3, per_block=5, warmup=1)
    assert slow > 3.0
    assert latency_ratio(_Slow(1), _Slow(40), x, blocks=3, per_block=5, warmup=1) < 1 / 3.0


def test_exported_latency_ratio_and_run_helpers(tmp_path, monkeypatch):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps(digits_recipe(tmp_path / "runs", "tiny", train={"epochs": 1})))
    first = run_recipe(recipe)
    assert (tmp_path / "runs" / "tiny" / "summary.json").is_file()
    assert run_recipe(recipe) == first  # finished: read back, not re-run
    runs = run_seeds(recipe, [0, 1], overrides=["train.lr=0.02"])
    assert [r["trial"] for r in runs] == ["tiny-seed0", "tiny-seed1"]
    ratio = exported_latency_ratio(tmp_path / "runs" / "tiny" / "student.safetensors", blocks=3, per_block=5)
    assert 0.2 < ratio < 5.0  # the same architecture either side
    monkeypatch.setattr(timing_module, "load_student", lambda path: _Slow(1))
    with pytest.raises(KdforgeError, match="module types"):
        exported_latency_ratio(tmp_path / "runs" / "tiny" / "student.safetensors")
    assert from_dict(json.loads(recipe.read_text())).name == "tiny"


def test_results_files_save_and_rerender(tmp_path):
    path = tmp_path / "bench.json"
    text = save_results(path, {"value": 0.5}, lambda r: f"# value {r['value']}", config={"a": 1}, seeds=[0])
    assert text == "# value 0.5"
    saved = json.loads(path.read_text())
    assert (
        saved["value"] == 0.5
        and saved["provenance"]["seeds"] == [0]
        and saved["provenance"]["config"] == {"a": 1}
    )
    md = path.with_suffix(".md").read_text()
    assert md.startswith("# value 0.5") and "seeds: [0]" in md
    saved["value"] = 0.7  # the JSON is the source: re-rendering follows it, provenance kept
    path.write_text(json.dumps(saved))
    assert rerender_results(path, lambda r: f"# value {r['value']}") == "# value 0.7"
    assert path.with_suffix(".md").read_text().startswith("# value 0.7")
    assert json.loads(path.read_text())["provenance"] == saved["provenance"]
    with pytest.raises(KdforgeError, match="does not exist"):
        rerender_results(tmp_path / "none.json", str)


class _FirstToken(nn.Module):
    """Predicts class ``input_ids[:, 0] % 3`` (keyword inputs, as text models take them)."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(input_ids[:, 0] % 3, 3).float() + 0 * attention_mask[:, :1]


def test_model_accuracy_passes_every_input_but_the_labels():
    ids = torch.arange(30).reshape(10, 3)
    y = ids[:, 0] % 3
    y[:4] = (y[:4] + 1) % 3  # 4 of 10 wrong
    data = TensorData({"input_ids": ids, "attention_mask": torch.ones_like(ids), "y": y})
    assert model_accuracy(_FirstToken(), data, batch_size=3) == pytest.approx(0.6)


def test_teacher_scores_on_the_student_recipe_match_the_teacher_run(tmp_path, digits_teacher):
    teacher, summary = digits_teacher  # trained on the digits with seed 0, like the recipe below
    cfg = from_dict(digits_recipe(tmp_path, "kd", method={"name": "kd"}, teacher=teacher))
    scores = teacher_scores(cfg)
    assert (scores["val_acc"], scores["test_acc"]) == (summary["val_acc"], summary["test_acc"])
    assert scores["test_size"] == 400
