"""Markdown tables from run summaries, with mean ± std over seeds."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from kdforge.errors import KdforgeError


def load_summary(run_dir: str | Path) -> dict[str, Any]:
    """Read ``summary.json`` of a finished run."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        raise KdforgeError(
            f"'{run_dir}' has no summary.json (not a finished kdforge run)",
            "pass run directories written by `kdforge run` that ran to the end",
        )
    return json.loads(path.read_text())


def mean_std(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    """``"m ± s"`` (sample std; ``± 0`` for a single value), scaled (default: percent)."""
    m = statistics.fmean(values) * scale
    s = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def summaries_table(summaries: list[dict[str, Any]], group_key: str = "name") -> str:
    """One row per group (runs differing only by seed are grouped): accuracy mean ± std, params, time."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for s in summaries:
        key = s.get(group_key, s["name"])
        groups[key].append(s)
    lines = [
        "| run | method | seeds | val acc % | test acc % | student params | train time s |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, runs in groups.items():
        lines.append(
            f"| {key} | {runs[0]['method']} | {len(runs)} | {mean_std([r['val_acc'] for r in runs])} | "
            f"{mean_std([r['test_acc'] for r in runs])} | {runs[0]['student_params']:,} | "
            f"{statistics.fmean(r['train_time_s'] for r in runs):.1f} |"
        )
    return "\n".join(lines)
