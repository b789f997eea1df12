"""The tuned OPDF benchmarks render their tables from results built by experiments.tuning, and
the committed results files re-render byte for byte from their JSON."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from kdforge.experiments.tuning import tune_row, tuned_delta
from kdforge.report.provenance import write_results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
LRS = [0.001, 0.002, 0.004, 0.008, 0.016]


def _script(monkeypatch, name):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module(name)


def _sweep(key: str, values: list[float], peak: float, gain: float) -> list[dict]:
    """Runs over ``values`` x 3 seeds whose validation/test accuracy peaks at ``peak``."""
    return [
        {
            "overrides": {key: v},
            "seed": s,
            "val_acc": 0.8 + gain - 0.01 * abs(values.index(v) - values.index(peak)) + 0.001 * s,
            "test_acc": 0.79 + gain - 0.01 * abs(values.index(v) - values.index(peak)) + 0.002 * s,
            "train_time_s": 1.0,
            "train_params": 10,
            "student_params": 5,
        }
        for v in values
        for s in range(3)
    ]


def test_vision_tuned_markdown_and_plot(tmp_path, monkeypatch):
    module = _script(monkeypatch, "opdf_vision_tuned")
    plain = dict(
        base="kd", variant="plain", recipe="r", **tune_row(_sweep("train.lr", LRS, 0.016, 0.0), "train.lr")
    )
    opdf = dict(
        base="kd", variant="opdf", recipe="r", **tune_row(_sweep("train.lr", LRS, 0.004, 0.02), "train.lr")
    )
    delta = {"base": "kd", "variant": "opdf", **tuned_delta(opdf, plain)}
    res = {
        "seeds": [0, 1, 2],
        "lrs": LRS,
        "rows": [plain, opdf],
        "deltas": [delta],
        "not_run": {"fitnet opdf": "x"},
    }
    text = module.markdown(res)
    assert "| kd plain | 76.10 | 77.10 | 78.10 | 79.10 | 80.10 | 0.016 (grid edge) |" in text
    assert "| kd +OPDF (MPO) | 80.10 | 81.10 | 82.10 | 81.10 | 80.10 | 0.004 |" in text
    assert "- kd +OPDF (MPO): +2.00 points [+2.00, +2.00] (target +1.0) -> **met**" in text
    assert "Not run (CPU budget): fitnet opdf (x)" in text
    module.plot(res, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 0


@pytest.mark.parametrize("script", ["opdf_vision_tuned"])
def test_committed_results_rerender(tmp_path, monkeypatch, script):
    committed = RESULTS / f"{script}.json"
    if not committed.is_file():
        pytest.skip(f"{committed.name} not committed")
    module = _script(monkeypatch, script)
    results = json.loads(committed.read_text())
    written = write_results(tmp_path / committed.name, results, module.markdown(results))
    assert written.with_suffix(".md").read_text() == committed.with_suffix(".md").read_text()
