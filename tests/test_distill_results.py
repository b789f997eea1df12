"""The `kdforge distill` benchmarks' results writer: paired gains and where the files go."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kdforge.experiments.distill_results import gains, write_results


def _selection() -> dict:
    return {
        "student_alone": {
            "runs": ["alone-seed0", "alone-seed1", "alone-seed2"],
            "test_acc": [0.80, 0.81, 0.82],
            "overrides": {"train.lr": 0.01},
        },
        "kd": {
            "runs": ["kd-seed2", "kd-seed0", "kd-seed1"],  # paired by the seed in the name, not by order
            "test_acc": [0.85, 0.83, 0.83],
            "overrides": {"train.lr": 0.003},
        },
    }


def test_gains_pair_by_seed_and_give_a_verdict():
    gain = gains(_selection())["kd"]
    assert gain["seeds"] == [0, 1, 2]
    assert gain["gain_points"] == pytest.approx([3.0, 2.0, 3.0])
    assert gain["interval_points"]["mean"] == pytest.approx(8 / 3)
    assert gain["interval_points"]["low"] >= 2.0 - 1e-9 and gain["verdict"] == "met"


def _distill_dir(root: Path) -> Path:
    out = root / "distill"
    out.mkdir()
    (out / "report.json").write_text(json.dumps({"rows": []}))
    (out / "selection.json").write_text(json.dumps(_selection()))
    (out / "distill.yaml").write_text(yaml.safe_dump({"seeds": [0, 1, 2]}))
    (out / "report.md").write_text("# report\n\n| a |\n\n<sub>footer</sub>\n")
    (out / "report.png").write_bytes(b"png")
    return out


def test_write_results_writes_into_the_given_directory_only(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    distill_dir = _distill_dir(tmp_path)
    path = write_results("bench", distill_dir, "python bench.py", results_dir=results, data={"n": 1})
    assert path == results / "bench.json"
    assert sorted(p.name for p in results.iterdir()) == ["bench.json", "bench.md", "bench.png"]
    saved = json.loads(path.read_text())
    assert saved["data"] == {"n": 1} and saved["gain"]["kd"]["verdict"] == "met"
    text = path.with_suffix(".md").read_text()
    paired = "**kd gain over the tuned student alone** (test, paired by seed [0, 1, 2]): +3.00, +2.00, +3.00"
    assert paired in text
    assert "python bench.py" in saved["provenance"]["command"]
