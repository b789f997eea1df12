"""Markdown tables: mean ± std cells, intervals, and one row per recipe over its seeds.

The one place that formats a quality figure: :func:`mean_std` (a single run is printed
without a "± 0.00" that would pass for a measured spread), :func:`interval_cell`, and
:func:`markdown_table` for the layout.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from kdforge.config import from_dict
from kdforge.errors import KdforgeError


def load_summary(run_dir: str | Path) -> dict[str, Any]:
    """Read ``summary.json`` of a finished run, adding ``recipe_fingerprint`` from its ``config.yaml``.

    ``recipe_fingerprint`` (see :meth:`kdforge.config.RunConfig.recipe_fingerprint`) is equal
    for runs of one recipe that differ only by seed; it is ``None`` when the run directory
    has no readable ``config.yaml``.
    """
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        raise KdforgeError(
            f"'{run_dir}' has no summary.json (not a finished kdforge run)",
            "pass run directories written by `kdforge run` that ran to the end",
        )
    summary = json.loads(path.read_text())
    summary["recipe_fingerprint"] = None
    config_path = Path(run_dir) / "config.yaml"
    if config_path.is_file():
        with contextlib.suppress(KdforgeError, yaml.YAMLError):  # another schema: the run is its own row
            config = from_dict(yaml.safe_load(config_path.read_text()))
            summary["recipe_fingerprint"] = config.recipe_fingerprint()
    return summary


def mean_std(values: Sequence[float], scale: float = 100.0, digits: int = 2) -> str:
    """``"m ± s"`` over ``values`` times ``scale`` (default: fractions as percent), sample std.

    A single value is printed alone (``"85.10"``): one run has no measured spread.

    Raises:
        KdforgeError: for no values.
    """
    if not values:
        raise KdforgeError("no values to average", "pass at least one run's value")
    mean = statistics.fmean(values) * scale
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"


def interval_cell(interval: Any, scale: float = 100.0, digits: int = 2, verdict: str | None = None) -> str:
    """``"+1.23 [+0.40, +2.05]"`` for an interval of a delta, plus an optional verdict.

    Args:
        interval: Anything with ``mean``, ``low`` and ``high`` (a
            :class:`kdforge.experiments.Interval`) or a dict with those keys.
        scale: Multiplier of the printed values (default: fractions as points).
        digits: Decimals.
        verdict: Appended in parentheses, e.g. ``kdforge.experiments.verdict(interval, target)``.
    """
    get = interval.get if isinstance(interval, dict) else lambda key: getattr(interval, key)
    mean, low, high = (get(key) * scale for key in ("mean", "low", "high"))
    text = f"{mean:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"
    return f"{text} ({verdict})" if verdict else text


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; cells are printed with ``str`` (format numbers before).

    Raises:
        KdforgeError: when a row has another number of cells than ``headers``.
    """
    for row in rows:
        if len(row) != len(headers):
            raise KdforgeError(
                f"table row {list(row)} has {len(row)} cells for {len(headers)} columns",
                "give every row one cell per header",
            )
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def group_label(names: Sequence[str]) -> str:
    """A row label for runs of one recipe: their names' common prefix without seed suffixes."""
    prefix = os.path.commonprefix(list(names)).rstrip("-_.")
    if len(set(names)) > 1 and prefix.endswith("seed"):
        prefix = prefix[: -len("seed")].rstrip("-_.")
    return prefix or names[0]


def summaries_table(summaries: Sequence[dict[str, Any]], group_key: str = "recipe_fingerprint") -> str:
    """One row per recipe (runs differing only by seed), accuracy mean ± std over its seeds.

    Args:
        summaries: Run summaries (:func:`load_summary` adds the ``recipe_fingerprint``).
        group_key: Summary field whose value defines a row; a summary without it (or with
            ``None``) is grouped by its ``name``.
    """
    groups: dict[Any, list[dict]] = defaultdict(list)
    for s in summaries:
        groups[s.get(group_key) or ("name", s["name"])].append(s)
    rows = []
    for runs in groups.values():
        runs = sorted(runs, key=lambda r: r.get("seed", 0))
        rows.append(
            [
                group_label([r["name"] for r in runs]),
                runs[0]["method"],
                len(runs),
                mean_std([r["val_acc"] for r in runs]),
                mean_std([r["test_acc"] for r in runs]),
                f"{runs[0]['student_params']:,}",
                f"{statistics.fmean(r['train_time_s'] for r in runs):.1f}",
            ]
        )
    headers = ["run", "method", "seeds", "val acc %", "test acc %", "student params", "train time s"]
    return markdown_table(headers, rows)
