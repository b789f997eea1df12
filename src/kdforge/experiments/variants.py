"""Grids of recipe variants per base method: rows over seeds, deltas against a reference variant.

A *variant grid* holds one recipe per (base method, variant), e.g. ``kd_plain`` and
``kd_opdf``; each runs over the same seeds. :func:`variant_row` summarises one recipe's runs,
:func:`variant_deltas` compares the treated variants with their base's reference (and an
optional control) variant, :func:`variant_table` and :func:`delta_lines` render them.
Means are compared here (as the committed tables do); :func:`paired_deltas` adds the paired
bootstrap interval over seeds.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from kdforge.experiments.intervals import Interval, paired_bootstrap, verdict
from kdforge.report.tables import interval_cell, markdown_table, mean_std

VARIANT_HEADERS = [
    "method",
    "test acc (%)",
    "val acc (%)",
    "train-time params",
    "inference params",
    "latency vs plain",
    "train time (s)",
]


def variant_row(base: str, variant: str, recipe: str, runs: Sequence[dict[str, Any]], **extra: Any) -> dict:
    """One table row from a recipe's finished runs (one per seed); ``extra`` fields go in as given."""
    return {
        "base": base,
        "variant": variant,
        "recipe": recipe,
        **extra,
        "test_acc": [r["test_acc"] for r in runs],
        "val_acc": [r["val_acc"] for r in runs],
        "train_params": runs[0]["train_params"],
        "inference_params": runs[0]["student_params"],
        "train_time_s": [r["train_time_s"] for r in runs],
    }


def variant_deltas(
    rows: Sequence[dict],
    is_treated: Callable[[str], bool],
    reference: str = "plain",
    control: str | None = None,
    teacher_acc: float | None = None,
) -> list[dict]:
    """Each treated row's mean test accuracy minus its base's ``reference`` row, in points.

    Args:
        rows: From :func:`variant_row`.
        is_treated: Which variants get a delta (e.g. ``lambda v: v.startswith("opdf")``).
        reference: The variant every treated row is compared with; bases without it are skipped.
        control: A second comparison variant (``delta_vs_control``; ``None`` where missing).
        teacher_acc: When given, ``delta_vs_teacher`` against this test accuracy.
    """
    deltas = []
    for row in rows:
        same = {other["variant"]: other for other in rows if other["base"] == row["base"]}
        if reference not in same or not is_treated(row["variant"]):
            continue
        mean = statistics.mean(row["test_acc"])
        ctrl = same.get(control) if control else None
        delta = {
            "base": row["base"],
            "variant": row["variant"],
            "delta_points": 100 * (mean - statistics.mean(same[reference]["test_acc"])),
            "delta_vs_control": 100 * (mean - statistics.mean(ctrl["test_acc"])) if ctrl else None,
        }
        if teacher_acc is not None:
            delta["delta_vs_teacher"] = 100 * (mean - teacher_acc)
        deltas.append(delta)
    return deltas


def paired_deltas(
    rows: Sequence[dict], variant: str, reference: str, **bootstrap: Any
) -> dict[tuple, Interval]:
    """``(base, variant) ->`` the paired bootstrap interval of ``variant`` minus ``reference`` test
    accuracy, pairs by seed (rows list their seeds in the same order)."""
    by_key = {(r["base"], r["variant"]): r for r in rows}
    return {
        (base, var): paired_bootstrap(
            by_key[base, var]["test_acc"], by_key[base, reference]["test_acc"], **bootstrap
        )
        for base, var in by_key
        if var == variant and (base, reference) in by_key
    }


def variant_table(
    rows: Sequence[dict], labels: dict[str, str], first_rows: Sequence[Sequence[Any]] = ()
) -> str:
    """The variant grid as a markdown table (``first_rows``, e.g. teachers, above the variants)."""
    cells = [list(r) for r in first_rows]
    for r in rows:
        cells.append(
            [
                f"{r['base']} {labels[r['variant']]}",
                mean_std(r["test_acc"]),
                mean_std(r["val_acc"]),
                f"{r['train_params']:,}",
                f"{r['inference_params']:,}",
                f"{r['latency_ratio']:.2f}",
                f"{statistics.mean(r['train_time_s']):.0f}",
            ]
        )
    return markdown_table(VARIANT_HEADERS, cells)


def delta_lines(
    deltas: Sequence[dict], labels: dict[str, str], target: float = 1.0, intervals: dict | None = None
) -> list[str]:
    """``- kd +OPDF: +2.50 points vs plain (met); +0.35 vs the plain 3x-lr control`` per delta.

    Args:
        deltas: From :func:`variant_deltas`.
        labels: Variant -> printed label.
        target: Points over the reference the verdict asks for.
        intervals: ``(base, variant) -> Interval`` of the paired difference (fractions, e.g. from
            :func:`paired_deltas`). With it, the interval is printed and the verdict is
            :func:`kdforge.experiments.verdict` of the interval (``met`` only if its lower bound
            clears the target); without it, the verdict compares the mean with the target.
    """
    lines = []
    for d in deltas:
        interval = (intervals or {}).get((d["base"], d["variant"]))
        if interval is not None:
            shown = verdict(interval, target / 100)
            result = f"{interval_cell(interval)} points vs plain (95% CI; {shown})"
        else:
            shown = "met" if d["delta_points"] >= target else "**missed**"
            result = f"{d['delta_points']:+.2f} points vs plain ({shown})"
        line = f"- {d['base']} {labels[d['variant']]}: {result}"
        if d.get("delta_vs_control") is not None:
            line += f"; {d['delta_vs_control']:+.2f} vs the plain 3x-lr control"
        if d.get("delta_vs_teacher") is not None:
            line += f"; {d['delta_vs_teacher']:+.2f} vs the teacher"
        lines.append(line)
    return lines


def difference_lines(rows: Sequence[dict], first: str, second: str) -> list[str]:
    """``- kd: +0.12 points`` (mean test accuracy of ``first`` minus ``second``) per base having both."""
    acc = {(r["base"], r["variant"]): 100 * statistics.mean(r["test_acc"]) for r in rows}
    bases = sorted({b for b, _ in acc if (b, first) in acc and (b, second) in acc})
    return [f"- {b}: {acc[b, first] - acc[b, second]:+.2f} points" for b in bases]
