"""Compression report: measured sizes, timings and ratios on tiny models; JSON/markdown round trip."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from kdforge.errors import KdforgeError
from kdforge.models import build_model
from kdforge.report.compression import (
    ReportEntry,
    TimingConfig,
    batch_of,
    build_report,
    format_accuracy,
    load_report,
    median_seconds,
    render_markdown,
    summary_line,
    write_compression_report,
)

FAST = TimingConfig(large_batch=32, warmup=1, repeats=3, max_seconds=0.2)


def _entry(tmp_path, name, hidden, role, test_acc, val_acc=()):
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10, hidden=hidden)
    path = tmp_path / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return ReportEntry(name, model, path, list(test_acc), list(val_acc), role)


@pytest.fixture()
def report(tmp_path):
    entries = [
        _entry(tmp_path, "teacher", [256, 256], "teacher", [0.95, 0.96, 0.94], [0.96, 0.97, 0.95]),
        _entry(tmp_path, "student alone", [16], "student", [0.90]),
        _entry(tmp_path, "kd", [16], "distilled", [0.92, 0.93]),
    ]
    inputs = {"x": torch.rand(5, 1, 8, 8)}
    return build_report(entries, inputs, FAST), entries


def test_sizes_are_the_files_sizes_and_params_counted(report):
    rep, entries = report
    for row, e in zip(rep["rows"], entries, strict=True):
        assert row["file_bytes"] == e.weights.stat().st_size
        assert row["params"] == sum(p.numel() for p in e.model.parameters())
    assert rep["rows"][0]["params"] == 64 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10


def test_timings_positive_and_ratios_consistent(report):
    rep, _ = report
    teacher, alone, kd = rep["rows"]
    for r in rep["rows"]:
        assert r["latency_ms"] > 0 and r["throughput_per_s"] > 0
    assert teacher["ratios"] == {
        "smaller": 1.0,
        "fewer_params": 1.0,
        "faster": 1.0,
        "throughput": 1.0,
        "accuracy_kept": 1.0,
    }
    for r in (alone, kd):
        ratio = r["ratios"]
        assert ratio["smaller"] == pytest.approx(teacher["file_bytes"] / r["file_bytes"])
        assert ratio["fewer_params"] == pytest.approx(teacher["params"] / r["params"])
        assert ratio["faster"] == pytest.approx(teacher["latency_ms"] / r["latency_ms"])
        assert ratio["accuracy_kept"] == pytest.approx(r["test_acc_mean"] / 0.95)
        assert ratio["smaller"] > 10  # 16 hidden units against 256 x 256
    assert kd["test_acc_mean"] == pytest.approx(0.925)
    assert kd["test_acc_std"] == pytest.approx(0.00707, abs=1e-5)
    assert alone["test_acc_std"] is None  # one seed: no spread claimed


def test_accuracy_format_has_no_zero_spread_for_one_run():
    assert format_accuracy([0.9]) == "90.00"
    assert format_accuracy([0.92, 0.93]) == "92.50 ± 0.71"
    assert format_accuracy([]) == "-"


def test_summary_line_words():
    row = {"ratios": {"smaller": 7.91, "faster": 5.2, "accuracy_kept": 0.9813}}
    assert summary_line(row) == "7.9x smaller, 5.2x faster, keeps 98.1% of its accuracy"


def test_written_files_round_trip(report, tmp_path):
    rep, _ = report
    paths = write_compression_report(rep, tmp_path / "out")
    loaded = load_report(paths["json"])
    assert loaded == json.loads(json.dumps(rep))
    assert paths["md"].read_text() == render_markdown(loaded) + "\n"
    md = paths["md"].read_text()
    assert "| student alone | 90.00 | - | 1 |" in md and "± 0.00" not in md
    assert "| kd | 92.50 ± 0.71 |" in md and "x smaller" in md
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_median_excludes_warmup():
    calls = []

    def call():
        calls.append(1)
        if len(calls) == 1:  # the first (warm-up) call is slow
            import time

            time.sleep(0.2)

    t = median_seconds(call, torch.device("cpu"), TimingConfig(warmup=1, repeats=5, max_seconds=5))
    assert len(calls) == 6 and t < 0.05


def test_batch_of_cycles_rows():
    x = torch.arange(3).view(3, 1)
    assert batch_of({"x": x}, 7)["x"].view(-1).tolist() == [0, 1, 2, 0, 1, 2, 0]


def test_needs_exactly_one_teacher(tmp_path):
    e = _entry(tmp_path, "a", [4], "student", [0.5])
    with pytest.raises(KdforgeError, match="exactly one teacher"):
        build_report([e], {"x": torch.rand(2, 1, 8, 8)}, FAST)


def test_missing_weights_and_report_are_clear_errors(tmp_path):
    e = _entry(tmp_path, "t", [4], "teacher", [0.5])
    e.weights = tmp_path / "gone.safetensors"
    with pytest.raises(KdforgeError, match="do not exist"):
        build_report([e], {"x": torch.rand(2, 1, 8, 8)}, FAST)
    with pytest.raises(KdforgeError, match="kdforge distill"):
        load_report(tmp_path / "nope.json")
