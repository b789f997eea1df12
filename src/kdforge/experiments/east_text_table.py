"""EAsT / EC table on VADER movie snippets: baseline vs EAsT vs EC (FitNet, dCor, several d), + unseen sets.

Teacher all-MiniLM-L6-v2 (cached sentence embeddings), student ``text_cnn`` from scratch. Every row
runs over the seeds with fixed lambda (the recipes' or one override); checkpoints are selected on
validation; the exported students are also scored, without further training, on whole VADER domains
(same binary label space).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdforge.data.text import vader_all
from kdforge.engine.run import load_student
from kdforge.experiments.scoring import model_accuracy
from kdforge.experiments.sweep import make_trials, run_sweep
from kdforge.report.tables import markdown_table, mean_std

EAST = ["method.kwargs.compress=false"]
BASELINE_RECIPE = "vader_baseline.yaml"
EC_RECIPE = "vader_ec_dcor.yaml"
SUMMARY_KEYS = ("val_acc", "test_acc", "best_step", "train_time_s")


@dataclass
class TextTableGrid:
    """What one table runs.

    Attributes:
        seeds: Seeds of every row.
        ds: Compressed dimensions of the EC rows.
        epochs: Training epochs of every run.
        unseen: VADER domains the students are also scored on.
        lam: Lambda of every EAsT/EC row (``None``: the recipes').
        baseline: Whether the baseline row runs.
    """

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    ds: list[int] = field(default_factory=lambda: [8, 32])
    epochs: int = 4
    unseen: list[str] = field(default_factory=lambda: ["tweets", "amazon"])
    lam: float | None = None
    baseline: bool = True


def rows_spec(ds: list[int], lam: float | None, baseline: bool) -> list[tuple[str, str, list[str]]]:
    """(row label, recipe, overrides) for every table row (``lam`` overrides the recipes' lambda)."""
    rows = [("baseline", BASELINE_RECIPE, [])] if baseline else []
    losses = (("FitNet", "fitnet"), ("dCor", "dcor"))
    rows += [(f"EAsT-{name}", EC_RECIPE, [*EAST, f"method.kwargs.loss={n}"]) for name, n in losses]
    for name, loss in losses:
        for d in ds:
            rows.append(
                (f"EC-{name} d={d}", EC_RECIPE, [f"method.kwargs.loss={loss}", f"method.kwargs.d={d}"])
            )
    lam_over = [f"method.kwargs.lam={lam}"] if lam is not None else []
    return [(label, r, ov + (lam_over if label != "baseline" else [])) for label, r, ov in rows]


def run_table(grid: TextTableGrid, configs: Path, output_dir: str) -> dict[str, Any]:
    """Train (or reuse from ``output_dir``) every row over the seeds: ``{"runs": [row per seed]}``."""
    unseen = {domain: vader_all(domain) for domain in grid.unseen}
    runs = []
    for label, recipe, overrides in rows_spec(grid.ds, grid.lam, grid.baseline):
        name = label.replace(" ", "_").replace("=", "") + (f"_lam{grid.lam}" if grid.lam else "")
        extra = [*overrides, f"train.epochs={grid.epochs}"]
        trials = make_trials(configs / recipe, {}, grid.seeds, name=name, extra_overrides=extra)
        for trial, summary in zip(trials, run_sweep(trials, output_dir, progress=False), strict=True):
            student = load_student(Path(output_dir) / trial.name / "student")
            row = {"row": label, "recipe": recipe, "overrides": extra, "seed": trial.seed}
            row.update({k: summary[k] for k in SUMMARY_KEYS})
            row.update({f"unseen_{d}": model_accuracy(student, data) for d, data in unseen.items()})
            runs.append(row)
    return {"runs": runs}


def runs_by_row(res: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Row label -> its runs (one per seed), in table order."""
    labels = dict.fromkeys(r["row"] for r in res["runs"])
    return {label: [r for r in res["runs"] if r["row"] == label] for label in labels}


def column_values(res: dict[str, Any]) -> dict[str, dict[str, list[float]]]:
    """Row label -> column (test accuracy, then each unseen domain) -> per-seed values."""
    cols = ["test_acc", *[k for k in res["runs"][0] if k.startswith("unseen_")]]
    return {label: {c: [r[c] for r in rows] for c in cols} for label, rows in runs_by_row(res).items()}


def table_markdown(res: dict[str, Any]) -> str:
    """The table, from a results dict alone."""
    args, rows = res["provenance"]["config"], column_values(res)
    header = ["row", "test (movies)", *[f"unseen {d}" for d in args["unseen"]]]
    intro = (
        f"Accuracy (%) mean ± std over seeds {args['seeds']}; checkpoint selected on validation; "
        f"{args['epochs']} epochs; lambda {args.get('lam') or 'of the recipes (0.7)'}. Test = held-out 20% "
        f"of VADER movie snippets; unseen = whole VADER {' / '.join(args['unseen'])} sets, no further "
        "training."
    )
    cells = [[lab, *[mean_std(values) for values in cols.values()]] for lab, cols in rows.items()]
    title = "# EAsT / EC on text: MiniLM sentence embeddings teach a small CNN (VADER movies)"
    return "\n".join([title, "", intro, "", markdown_table(header, cells)])
