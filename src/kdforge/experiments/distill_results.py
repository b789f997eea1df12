"""Shared by the `kdforge distill` benchmarks: the compression report plus the paired KD gain.

The gain of each distilled arm over the tuned student alone is paired by seed on the test split
(each arm's grid point was chosen on validation by `kdforge distill`), with a bootstrap interval
over the seed pairs and the verdict against a +1 point bar (met only when the lower bound clears it).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from kdforge.experiments import paired_bootstrap, verdict
from kdforge.report.provenance import provenance
from kdforge.report.provenance import write_results as write_with_provenance

BAR = 0.01  # +1 point of test accuracy


def _by_seed(arm: dict[str, Any]) -> dict[int, float]:
    seeds = [int(re.search(r"seed(\d+)", run).group(1)) for run in arm["runs"]]
    return dict(zip(seeds, arm["test_acc"], strict=True))


def gains(selection: dict[str, Any]) -> dict[str, Any]:
    """Per distilled arm: paired test-accuracy differences (points) against ``student_alone``."""
    alone = _by_seed(selection["student_alone"])
    out = {}
    for arm, sel in selection.items():
        if arm == "student_alone":
            continue
        mine = _by_seed(sel)
        seeds = sorted(set(mine) & set(alone))
        diffs = [100 * (mine[s] - alone[s]) for s in seeds]
        entry: dict[str, Any] = {"seeds": seeds, "gain_points": diffs, "bar_points": 100 * BAR}
        if len(seeds) >= 2:
            interval = paired_bootstrap([mine[s] for s in seeds], [alone[s] for s in seeds])
            entry["interval_points"] = {
                k: 100 * v for k, v in interval.to_dict().items() if k != "confidence"
            }
            entry["confidence"] = interval.confidence
            entry["verdict"] = verdict(interval, BAR)
        out[arm] = entry
    return out


def write_results(stem: str, distill_dir: Path, command: str, results_dir: Path, **extra: Any) -> Path:
    """``<results_dir>/<stem>.{json,md,png}`` from a finished ``kdforge distill`` directory.

    Args:
        stem: file name without suffix, e.g. ``"distill_image_folder"``.
        distill_dir: the ``--output-dir`` of a finished ``kdforge distill``.
        command: the command line recorded in the provenance.
        results_dir: where the files go (the benchmarks pass ``benchmarks/results``).
        **extra: more top-level entries of the JSON (data description, teacher).
    """
    report = json.loads((distill_dir / "report.json").read_text())
    selection = json.loads((distill_dir / "selection.json").read_text())
    config = yaml.safe_load((distill_dir / "distill.yaml").read_text())
    gain = gains(selection)
    lines = [(distill_dir / "report.md").read_text().split("\n<sub>")[0].rstrip(), ""]
    for arm, g in gain.items():
        iv = g.get("interval_points")
        per_seed = ", ".join(f"{d:+.2f}" for d in g["gain_points"])
        lines.append(
            f"**{arm} gain over the tuned student alone** (test, paired by seed {g['seeds']}): "
            f"{per_seed} points"
            + (
                f"; mean {iv['mean']:+.2f} [{iv['low']:+.2f}, {iv['high']:+.2f}] "
                f"({100 * g['confidence']:.0f}% paired bootstrap over seeds); bar +{g['bar_points']:.1f}: "
                f"**{g['verdict']}**"
                if iv
                else ""
            )
        )
    lines.append("")
    lines.append(
        "Selected grid points (validation): "
        + "; ".join(f"{arm}: {sel['overrides']}" for arm, sel in selection.items())
    )
    results = {
        "report": report,
        "gain": gain,
        "selection": selection,
        **extra,
        "provenance": provenance(config, config["seeds"], command=command),
    }
    path = write_with_provenance(results_dir / f"{stem}.json", results, "\n".join(lines))
    shutil.copyfile(distill_dir / "report.png", results_dir / f"{stem}.png")
    return path
