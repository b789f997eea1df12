"""Compression report: how much smaller and faster each student is, and how much accuracy it keeps.

For the teacher, the student trained alone and each distilled student the report gives accuracy
(mean ± std over seeds when there are several), parameters, weight-file size, latency at batch 1
and throughput at a large batch on the current device (median of repeated timings, warm-up
excluded), and ratios to the teacher. :func:`write_compression_report` writes ``report.json``,
``report.md`` (rendered from the JSON alone, so one always matches the other) and ``report.png``
(accuracy against latency and against size).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from kdforge.errors import KdforgeError

Inputs = dict[str, Tensor]


@dataclass
class ReportEntry:
    """One model in the report.

    Attributes:
        name: row label ("teacher", "student alone", "kd", ...).
        model: the model to time (called as ``model(**inputs)``).
        weights: its weight file (or a directory: the sum of its files) whose size is reported.
        test_acc: test accuracy per seed, as fractions in [0, 1].
        val_acc: validation accuracy per seed (what selection used), same order as ``test_acc``.
        role: ``teacher``, ``student`` (trained alone) or ``distilled``.
        details: free-form settings shown in the JSON (e.g. the selected learning rate).
    """

    name: str
    model: nn.Module
    weights: Path
    test_acc: list[float]
    val_acc: list[float] = field(default_factory=list)
    role: str = "distilled"
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class TimingConfig:
    """How latency and throughput are measured (defaults beside the code they configure)."""

    large_batch: int = 256  # batch size of the throughput measurement
    warmup: int = 3  # untimed calls before timing (allocations, lazy init)
    repeats: int = 15  # timed calls; the median is reported
    max_seconds: float = 2.0  # per model and batch size: stop repeating (at >= 3 timings) after this


def file_bytes(path: str | Path) -> int:
    """Size in bytes of a file, or the sum of the files under a directory."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    raise KdforgeError(f"weights '{path}' do not exist", "pass the model's exported weight file")


def batch_of(inputs: Inputs, size: int) -> Inputs:
    """A batch of ``size`` rows from ``inputs`` (cycling when there are fewer rows)."""
    n = len(next(iter(inputs.values())))
    index = torch.arange(size) % n
    return {k: v[index] for k, v in inputs.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def median_seconds(call: Callable[[], Any], device: torch.device, timing: TimingConfig) -> float:
    """Median wall time of ``call()`` over repeated timings, after ``timing.warmup`` untimed calls."""
    for _ in range(timing.warmup):
        call()
    _sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < timing.repeats:
        t0 = time.perf_counter()
        call()
        _sync(device)
        times.append(time.perf_counter() - t0)
        if len(times) >= 3 and time.perf_counter() - start > timing.max_seconds:
            break
    return statistics.median(times)


def measure_speed(
    model: nn.Module, inputs: Inputs, timing: TimingConfig | None = None, device: torch.device | None = None
) -> dict[str, float]:
    """Latency at batch 1 (ms) and throughput at ``timing.large_batch`` (examples/s), eval mode."""
    timing = timing or TimingConfig()
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    was_training = model.training
    model.eval().to(device)
    one = {k: v.to(device) for k, v in batch_of(inputs, 1).items()}
    big = {k: v.to(device) for k, v in batch_of(inputs, timing.large_batch).items()}
    latency = median_seconds(lambda: model(**one), device, timing)
    big_time = median_seconds(lambda: model(**big), device, timing)
    model.train(was_training)
    return {"latency_ms": 1000 * latency, "throughput_per_s": timing.large_batch / big_time}


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _std(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def build_report(
    entries: list[ReportEntry],
    inputs: Inputs,
    timing: TimingConfig | None = None,
    device: torch.device | None = None,
    title: str = "Compression report",
) -> dict[str, Any]:
    """Measure every entry and compute ratios to the teacher (the entry with role ``teacher``).

    Args:
        entries: the models; exactly one has ``role="teacher"``.
        inputs: example model inputs (rows of the test split, without targets) used for timing.
        timing: how to time (default :class:`TimingConfig`).
        device: where to time (default: CUDA when available, else CPU).
        title: the report's heading.

    Returns:
        The report as a JSON-serialisable dict (what ``report.json`` holds).
    """
    teachers = [e for e in entries if e.role == "teacher"]
    if len(teachers) != 1:
        raise KdforgeError(
            f"a compression report needs exactly one teacher entry, got {len(teachers)}",
            "give one entry role='teacher'",
        )
    timing = timing or TimingConfig()
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    for e in entries:
        speed = measure_speed(e.model, inputs, timing, device)
        rows.append(
            {
                "name": e.name,
                "role": e.role,
                "params": sum(p.numel() for p in e.model.parameters()),
                "file_bytes": file_bytes(e.weights),
                "weights": str(e.weights),
                "test_acc": list(e.test_acc),
                "val_acc": list(e.val_acc),
                "test_acc_mean": _mean(e.test_acc),
                "test_acc_std": _std(e.test_acc),
                "val_acc_mean": _mean(e.val_acc),
                "val_acc_std": _std(e.val_acc),
                **speed,
                "details": e.details,
            }
        )
    teacher = next(r for r in rows if r["role"] == "teacher")
    for r in rows:
        r["ratios"] = {
            "smaller": teacher["file_bytes"] / r["file_bytes"],
            "fewer_params": teacher["params"] / r["params"],
            "faster": teacher["latency_ms"] / r["latency_ms"],
            "throughput": r["throughput_per_s"] / teacher["throughput_per_s"],
            "accuracy_kept": (r["test_acc_mean"] / teacher["test_acc_mean"])
            if r["test_acc_mean"] is not None and teacher["test_acc_mean"]
            else None,
        }
    return {
        "title": title,
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "timing": {**timing.__dict__, "torch_threads": torch.get_num_threads()},
        "rows": rows,
    }


def format_accuracy(values: list[float]) -> str:
    """Percent accuracy: ``"m ± s"`` over several seeds, the bare value for one (no "± 0.00")."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{100 * values[0]:.2f}"
    return f"{100 * statistics.fmean(values):.2f} ± {100 * statistics.stdev(values):.2f}"


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def summary_line(row: dict[str, Any]) -> str:
    """One sentence of ratios to the teacher, e.g. "7.9x smaller, 5.2x faster, keeps 98.1% ..."."""
    ratio = row["ratios"]
    kept = ratio["accuracy_kept"]
    keeps = f", keeps {100 * kept:.1f}% of its accuracy" if kept is not None else ""
    return f"{ratio['smaller']:.1f}x smaller, {ratio['faster']:.1f}x faster{keeps}"


def render_markdown(report: dict[str, Any]) -> str:
    """The markdown report, rendered from the report dict alone (``report.json`` round-trips)."""
    timing = report["timing"]
    lines = [
        f"# {report['title']}",
        "",
        "| model | test acc % | val acc % | seeds | params | file size | latency b=1 ms | "
        f"throughput b={timing['large_batch']} /s | vs teacher |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        versus = "-" if r["role"] == "teacher" else summary_line(r)
        lines.append(
            f"| {r['name']} | {format_accuracy(r['test_acc'])} | {format_accuracy(r['val_acc'])} | "
            f"{len(r['test_acc'])} | {r['params']:,} | {_size(r['file_bytes'])} | {r['latency_ms']:.3f} | "
            f"{r['throughput_per_s']:,.0f} | {versus} |"
        )
    lines += [
        "",
        f"Timed on {report['device']} with {timing['torch_threads']} torch thread(s): median of up to "
        f"{timing['repeats']} calls after {timing['warmup']} warm-up calls. Accuracy on the test split "
        "(each model selected on validation); mean ± std over seeds when there are several.",
    ]
    prov = report.get("provenance")
    if prov:
        lines += [
            "",
            f"<sub>command: `{prov.get('command')}` · seeds: {prov.get('seeds')} · "
            f"date: {prov.get('date')} · commit: {prov.get('git_commit')} · "
            f"torch {prov.get('versions', {}).get('torch')}</sub>",
        ]
    return "\n".join(lines)


def plot_report(report: dict[str, Any], out: str | Path) -> Path:
    """PNG: test accuracy against latency (batch 1) and against weight-file size, one point per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lat, ax_size) = plt.subplots(1, 2, figsize=(11, 4))
    for r in report["rows"]:
        acc = 100 * (r["test_acc_mean"] or 0.0)
        err = 100 * (r["test_acc_std"] or 0.0)
        marker = "s" if r["role"] == "teacher" else "o"
        for ax, x in ((ax_lat, r["latency_ms"]), (ax_size, r["file_bytes"] / 1e6)):
            ax.errorbar([x], [acc], yerr=[err], fmt=marker, capsize=3, label=r["name"])
            ax.annotate(r["name"], (x, acc), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax_lat.set(xlabel="latency at batch 1 (ms)", ylabel="test accuracy %", title="accuracy vs latency")
    ax_size.set(xlabel="weight file (MB)", ylabel="test accuracy %", title="accuracy vs size")
    for ax in (ax_lat, ax_size):
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    ax_size.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_compression_report(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.json`` (atomically), ``report.md`` and ``report.png`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "md": out_dir / "report.md", "png": out_dir / "report.png"}
    tmp = paths["json"].with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(tmp, paths["json"])
    paths["md"].write_text(render_markdown(report) + "\n")
    plot_report(report, paths["png"])
    return paths


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a ``report.json`` written by :func:`write_compression_report`."""
    path = Path(path)
    if not path.is_file():
        raise KdforgeError(f"compression report '{path}' does not exist", "run `kdforge distill` first")
    return json.loads(path.read_text())
