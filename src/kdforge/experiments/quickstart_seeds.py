"""The quickstart over several seeds: each seed's record, the paired KD gain and its table.

The quickstart itself (a layer above this package) is run by the benchmark script; this module
turns its per-seed results into the summary (KD gain over the tuned student alone, paired by seed,
with a bootstrap interval and a verdict against :data:`TARGET`) and renders it.
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Any

from kdforge.experiments.intervals import Interval, paired_bootstrap, verdict
from kdforge.report.compression import format_accuracy

TARGET = 1.0  # points of test accuracy over the tuned student alone
ROW_KEYS = ("params", "file_bytes", "latency_ms", "val_acc", "test_acc")


def seed_record(seed: int, result: dict[str, Any], cpu_time_s: float) -> dict[str, Any]:
    """What one seed's quickstart result contributes to the results file."""
    rows = {row["name"]: row for row in result["report"]["rows"]}
    return {
        "seed": seed,
        "kd_gain": result["kd_gain_points"],
        "wall_time_s": result["wall_time_s"],
        "teacher_time_s": result["teacher_time_s"],
        "cpu_time_s": cpu_time_s,
        "selected": {arm: sel["overrides"] for arm, sel in result["selection"].items()},
        "rows": {name: {k: row[k] for k in ROW_KEYS} for name, row in rows.items()},
        "ratios_kd": rows["kd"]["ratios"],
    }


def seeds_summary(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy table per model, the paired KD gain (points), its bootstrap interval and the verdict."""
    gains = [s["kd_gain"] for s in per_seed]
    names = list(per_seed[0]["rows"])
    table = {n: {k: [s["rows"][n][k][0] for s in per_seed] for k in ("val_acc", "test_acc")} for n in names}
    interval = paired_bootstrap(table["kd"]["test_acc"], table["student alone"]["test_acc"])
    points = dataclasses.replace(
        interval, mean=interval.mean * 100, low=interval.low * 100, high=interval.high * 100
    )
    return {
        "per_seed": per_seed,
        "table": table,
        "kd_gain": gains,
        "kd_gain_interval": points.to_dict(),
        "target": TARGET,
        "verdict": verdict(points, TARGET),
        "wall_time_s": [s["wall_time_s"] for s in per_seed],
    }


def seeds_markdown(res: dict[str, Any]) -> str:
    """The table, the paired gain and verdict, the selections and the times, from a results dict alone."""
    config, per_seed, table = res["provenance"]["config"], res["per_seed"], res["table"]
    settings, gains = config["settings"], res["kd_gain"]
    points = Interval(**res["kd_gain_interval"])
    md = [
        f"# Quickstart: {config['dataset']}, {settings['labelled']:,} labels + "
        f"{settings['unlabelled']:,} unlabelled images, seeds {config['seeds']}",
        "",
        "| model | params | val acc % | test acc % |",
        "|---|---|---|---|",
    ]
    for n in table:
        md.append(
            f"| {n} | {per_seed[0]['rows'][n]['params']:,} | {format_accuracy(table[n]['val_acc'])} | "
            f"{format_accuracy(table[n]['test_acc'])} |"
        )
    times = ", ".join(f"{s['wall_time_s']:.0f}" for s in per_seed)
    cpu_times = ", ".join(f"{s['cpu_time_s']:.0f}" for s in per_seed)
    md += [
        "",
        "KD gain over the tuned student alone, paired by seed (test, points): "
        + ", ".join(f"{g:+.2f}" for g in gains)
        + f"; mean {statistics.fmean(gains):+.2f}, 95% bootstrap interval {points.format()}: "
        f"target +{res['target']:.1f} **{res['verdict']}**.",
        "Selected on validation: " + "; ".join(f"seed {s['seed']}: {s['selected']}" for s in per_seed),
        f"Wall time per seed (teacher training + both tuned arms + report): {times} s; process CPU time "
        f"{cpu_times} s.",
    ]
    return "\n".join(md)
