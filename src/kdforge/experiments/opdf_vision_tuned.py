"""The OPDF vision table with every row's learning rate chosen on validation from one grid.

A row is one recipe ``configs/opdf/<base>_<variant>.yaml`` run at every learning rate of the
grid x seeds (runs ``tuned_<base>_<variant>-lr=<lr>-seed<S>`` in the recipes' ``output_dir``,
resumable; the teachers are trained first from their recipes when missing). Per row the lr with
the best mean validation accuracy over seeds is chosen (:func:`kdforge.experiments.tuning.tune_row`);
every other variant is compared with the tuned plain row of its base, paired by seed (bootstrap
95% interval, target +1.0 point), and OPDF with alignment with OPDF without it (target 0).

A row whose runs are no longer on disk can be *carried over* from an earlier results file of
the table (:func:`carry_over`): its per-lr validation means are restricted to the current grid
and the selection is re-run on them (:func:`kdforge.experiments.tuning.restrict_row`, refused
when the choice would change), and the row records the commit and date it was measured at.
Rows neither finished on disk nor carried over are listed as not run, with the count.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdforge.config import load_recipe
from kdforge.experiments.sweep import Trial, make_trials, run_recipe, run_sweep
from kdforge.experiments.tuning import (
    delta_line,
    plot_tuning,
    restrict_row,
    split_finished,
    tune_row,
    tuned_delta,
    tuned_table,
)

BASES = ["kd", "fitnet", "adkd", "theseus"]
LABELS = {"plain": "plain", "opdf": "+OPDF (MPO)", "svd": "+SVD", "opdf_noalign": "+OPDF w/o alignment"}
TEACHERS = {"theseus": "teacher_theseus"}  # base -> teacher recipe (default: teacher)
LRS = [0.002, 0.004, 0.008, 0.016, 0.032]  # factors of 2 from the recipes' lr (0.002)
PARAM = "train.lr"
TARGET = 1.0  # points of test accuracy over the tuned plain row
CARRIED_MARK = " †"


@dataclass
class TunedVisionGrid:
    """What the table runs: ``bases`` x ``variants`` rows, each at every lr of ``lrs`` x ``seeds``."""

    bases: list[str] = field(default_factory=lambda: list(BASES))
    variants: list[str] = field(default_factory=lambda: list(LABELS))
    lrs: list[float] = field(default_factory=lambda: list(LRS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])

    def recipes(self) -> list[str]:
        """The rows' recipe paths, relative to the repository root."""
        return [f"configs/opdf/{b}_{v}.yaml" for b in self.bases for v in self.variants]


def teacher_recipe(base: str) -> str:
    """Name of the teacher recipe a base's rows distil from."""
    return TEACHERS.get(base, "teacher")


def run_order(bases: Sequence[str], variants: Sequence[str]) -> list[tuple[str, str]]:
    """``(base, variant)`` in the order they are run: the first two variants (plain, +OPDF) of
    every base first, then the others base by base."""
    head = [(b, v) for b in bases for v in variants[:2]]
    return head + [(b, v) for b in bases for v in variants[2:]]


def row_trials(
    configs: Path, base: str, variant: str, lrs: Sequence[float], seeds: Sequence[int]
) -> list[Trial]:
    """The runs of one row: its recipe at every lr x seed."""
    return make_trials(
        configs / f"{base}_{variant}.yaml", {PARAM: list(lrs)}, seeds, f"tuned_{base}_{variant}"
    )


def carry_over(
    previous: dict[str, Any] | None, lrs: Sequence[float], seeds: Sequence[int]
) -> dict[tuple, dict]:
    """The rows of an earlier results file of this table, restricted to ``lrs`` (selection re-run).

    Each row gets ``carried_over``: the ``git_commit`` and ``date`` of the file it was measured in
    (kept from the row when it was itself carried over), the ``grid`` it was run on, and
    ``runs_on_disk: False``. A file run on other seeds carries nothing (its rows cannot be paired).

    Raises:
        KdforgeError: when ``lrs`` holds a value a row was not run at, or would change its choice.
    """
    if not previous or list(previous.get("seeds", [])) != list(seeds):
        return {}
    prov = previous.get("provenance", {})
    out = {}
    for row in previous["rows"]:
        origin = row.get("carried_over") or {
            "git_commit": prov.get("git_commit"),
            "date": prov.get("date"),
            "grid": row["grid"],
            "runs_on_disk": False,
        }
        out[row["base"], row["variant"]] = dict(restrict_row(row, lrs), carried_over=origin)
    return out


def teacher_scores(configs: Path, bases: Sequence[str]) -> dict[str, dict[str, float]]:
    """Validation/test accuracy of the teachers of ``bases`` whose finished run is on disk."""
    out = {}
    for name in dict.fromkeys(teacher_recipe(b) for b in bases):
        summary = Path(load_recipe(configs / f"{name}.yaml").output_dir) / name / "summary.json"
        if summary.is_file():
            out[name] = {k: json.loads(summary.read_text())[k] for k in ("val_acc", "test_acc")}
    return out


def compare_rows(rows: Sequence[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """Every non-plain row minus the plain row of its base (target +1.0), and OPDF with minus
    without alignment (target 0), each where both rows exist."""
    by = {(r["base"], r["variant"]): r for r in rows}
    deltas = [
        {"base": b, "variant": v, **tuned_delta(r, by[b, "plain"], target=TARGET)}
        for (b, v), r in by.items()
        if v != "plain" and (b, "plain") in by
    ]
    align = [
        {"base": b, **tuned_delta(r, by[b, "opdf_noalign"], target=0.0)}
        for (b, v), r in by.items()
        if v == "opdf" and (b, "opdf_noalign") in by
    ]
    return deltas, align


def run_table(
    grid: TunedVisionGrid,
    configs: Path,
    root: Path,
    train: bool = True,
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run (``train``) and collect every row; rows of ``previous`` are carried over, not re-run.

    Returns:
        ``seeds``, ``lrs``, ``rows`` (base by base, variants in ``grid`` order; each a
        :func:`tune_row` result plus ``base``, ``variant``, ``recipe``), ``deltas``,
        ``align_deltas``, ``teachers`` and ``not_run`` (row -> unfinished runs).
    """
    carried = carry_over(previous, grid.lrs, grid.seeds)
    found, missing = {}, {}
    for base, variant in run_order(grid.bases, grid.variants):
        trials = row_trials(configs, base, variant, grid.lrs, grid.seeds)
        out_dir = trials[0].config.output_dir
        if train and (base, variant) not in carried:
            run_recipe(configs / f"{teacher_recipe(base)}.yaml")
            run_sweep(trials, out_dir, progress=False)
        done, todo = split_finished(trials, out_dir)
        recipe = str((configs / f"{base}_{variant}.yaml").relative_to(root))
        if not todo:
            found[base, variant] = {
                "base": base,
                "variant": variant,
                "recipe": recipe,
                **tune_row(done, PARAM),
            }
        elif (base, variant) in carried:
            found[base, variant] = carried[base, variant]
        else:
            missing[f"{base} {variant}"] = f"{len(todo)} of {len(trials)} runs unfinished"
    rows = [found[b, v] for b in grid.bases for v in grid.variants if (b, v) in found]
    deltas, align = compare_rows(rows)
    teachers = teacher_scores(configs, grid.bases) or (previous or {}).get("teachers", {})
    return {
        "seeds": list(grid.seeds),
        "lrs": list(grid.lrs),
        "rows": rows,
        "deltas": deltas,
        "align_deltas": align,
        "teachers": teachers,
        "not_run": missing,
    }


def _label(row: dict[str, Any]) -> str:
    return f"{row['base']} {LABELS[row['variant']]}" + (CARRIED_MARK if "carried_over" in row else "")


def tuned_vision_markdown(res: dict[str, Any]) -> str:
    """Per row: val mean per lr, the chosen lr, val/test at it; then the deltas over tuned plain."""
    rows = [(_label(r), r) for r in res["rows"]]
    intro = (
        "Fashion-MNIST, the recipes of `opdf_vision.md` (10k-example subset, 6 epochs, teachers unchanged), "
        f"each row run at every lr of {res['lrs']} x seeds {res['seeds']}. `val @ lr`: validation accuracy "
        "(%), mean over seeds; the row's lr is the one with the best mean (validation only); val/test: mean "
        "± std over seeds at that lr, checkpoint selected on validation. Every row gets the same grid."
    )
    lines = ["# OPDF on Fashion-MNIST with tuned learning rates (vision)", "", intro, ""]
    for name, t in res.get("teachers", {}).items():
        lines.append(f"- teacher `{name}`: test {100 * t['test_acc']:.2f} %, val {100 * t['val_acc']:.2f} %")
    lines += [""] if res.get("teachers") else []
    lines += [tuned_table(rows, res["lrs"]), ""]
    edge = [label for label, r in rows if r["at_edge"]]
    if edge:
        lines += [f"Chosen at the grid's edge (a value beyond it may do better): {', '.join(edge)}.", ""]
    origins: dict[tuple, list[str]] = {}
    for r in res["rows"]:
        if "carried_over" in r:
            c = r["carried_over"]
            origins.setdefault((c["git_commit"], c["date"], tuple(c["grid"])), []).append(
                _label(r)[: -len(CARRIED_MARK)]
            )
    for (commit, date, run_grid), labels in origins.items():
        lines += [
            f"{CARRIED_MARK.strip()} {', '.join(labels)}: carried over from this table's results at commit "
            f"`{commit}` ({date}), run on the grid {list(run_grid)}; the selection was re-run on this grid's "
            "values (same choice). Their runs are no longer on disk.",
            "",
        ]
    lines += [f"## vs the tuned plain student of the same base (target: >= +{TARGET:.1f} point on test)", ""]
    lines += [delta_line(f"{d['base']} {LABELS[d['variant']]}", d) for d in res["deltas"]]
    if res.get("align_deltas"):
        lines += ["", "Alignment on minus off (both tuned, paired by seed):"]
        lines += [delta_line(d["base"], d) for d in res["align_deltas"]]
    lines += [
        "",
        "Intervals: paired bootstrap 95% over seeds; with 3 seeds they are narrow (seed noise only).",
    ]
    if res["not_run"]:
        lines += ["", "Not run (CPU budget): " + "; ".join(f"{k} ({v})" for k, v in res["not_run"].items())]
    return "\n".join(lines)


def plot_tuned_vision(res: dict[str, Any], out: str | Path) -> Path:
    """One panel per base: mean validation accuracy against the lr, one line per row."""
    panels: dict[str, list] = {}
    for r in res["rows"]:
        panels.setdefault(r["base"], []).append((_label(r), r))
    return plot_tuning(panels, out, "learning rate")
