"""The EAsT / EC benchmark protocol (embeddings as teachers, embedding compression), as library code.

Per teacher/student pair: the student alone (baseline); then one loss weight ``lambda`` chosen on
*validation* (mean over the selection seeds) separately for each variant (EAsT-FitNet,
EAsT-dCor, and EC-FitNet / EC-dCor at one compressed dimension ``d``); EAsT rows then run with
their lambda and EC rows at every ``d`` with theirs, over all seeds. The verdict compares the EC
row chosen on validation with the baseline and both EAsT rows on test and on unseen sets.

A :class:`SettingRunner` trains each (row, lambda, d, seed) once (runs are reused from their run
directory, or from rows of an earlier results file trained with identical overrides) and scores
every exported student with a caller-given function (e.g. on unseen data sets).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from kdforge.engine.run import load_student
from kdforge.experiments.sweep import make_trials, run_sweep

VARIANTS = {  # row label -> overrides of the EC recipe
    "EAsT-FitNet": ["method.kwargs.compress=false", "method.kwargs.loss=fitnet"],
    "EAsT-dCor": ["method.kwargs.compress=false", "method.kwargs.loss=dcor"],
    "EC-FitNet": ["method.kwargs.compress=true", "method.kwargs.loss=fitnet"],
    "EC-dCor": ["method.kwargs.compress=true", "method.kwargs.loss=dcor"],
}
REFERENCES = ("baseline", "EAsT-FitNet", "EAsT-dCor")  # what the chosen EC row must beat


def percent(values: Sequence[float]) -> float:
    """Mean of fractions, in percent."""
    return 100 * statistics.mean(values)


@dataclass
class SettingRunner:
    """Runs one setting (recipe + overrides, lambda, d) over seeds, each (setting, seed) once.

    Attributes:
        pair: Name of the teacher/student pair (goes into run names and rows).
        configs: Directory of the recipes.
        output_dir: Where the runs are written.
        score: Extra columns for an exported student (e.g. ``{"unseen_acc": ...}``).
        every_run: Overrides for every run (e.g. ``data.subset=75``).
        teacher_runs: Overrides for the runs of ``ec_recipe`` only (e.g. ``method.kwargs.kd_weight=1``).
        ec_recipe: The EAsT/EC recipe (``teacher_runs`` apply to it).
        reuse: Rows of earlier results files; one with the same recipe, overrides and seed is
            taken instead of training again.
    """

    pair: str
    configs: Path
    output_dir: str
    score: Callable[[nn.Module], dict[str, float]]
    every_run: list[str] = field(default_factory=list)
    teacher_runs: list[str] = field(default_factory=list)
    ec_recipe: str = ""
    reuse: list[dict] = field(default_factory=list)
    done: dict[str, list[dict]] = field(default_factory=dict)

    def _reusable(self, recipe: str, overrides: list[str], seed: int) -> dict | None:
        def key(ov: list[str]) -> list[str]:
            return sorted(o for o in ov if not o.startswith(("name=", "output_dir=")))

        want = key([*overrides, f"seed={seed}"])
        return next((x for x in self.reuse if x["recipe"] == recipe and key(x["overrides"]) == want), None)

    def run(
        self,
        label: str,
        recipe: str,
        overrides: list[str],
        lam: float | None,
        d: int | None,
        seeds: list[int],
    ) -> list[dict]:
        """Rows of one setting for ``seeds`` (trained once per seed, then remembered)."""
        key = f"{label}|lam={lam}|d={d}"
        ov = list(overrides) + ([f"method.kwargs.lam={lam}"] if lam is not None else [])
        ov += [f"method.kwargs.d={d}"] if d is not None else []
        ov += self.every_run + (self.teacher_runs if recipe == self.ec_recipe else [])
        done = self.done.setdefault(key, [])
        for seed in seeds:
            if any(x["seed"] == seed for x in done):
                continue
            old = self._reusable(recipe, ov, seed)
            if old is not None:
                done.append(old)
                continue
            tag = "".join(
                f"_{o.split('=')[0].split('.')[-1]}{o.split('=')[-1]}"
                for o in self.every_run + self.teacher_runs
            )
            name = f"{self.pair}{tag}_{label}_lam{lam}_d{d}".replace("=", "")
            (trial,) = make_trials(self.configs / recipe, {}, [seed], name=name, extra_overrides=ov)
            (summary,) = run_sweep([trial], self.output_dir, progress=False)
            student = load_student(Path(self.output_dir) / trial.name / "student")
            row = {
                "pair": self.pair,
                "row": label,
                "lam": lam,
                "d": d,
                "recipe": recipe,
                "overrides": [*ov, f"seed={seed}"],
                "seed": seed,
                "val_acc": summary["val_acc"],
                "test_acc": summary["test_acc"],
                **self.score(student),
                "best_step": summary["best_step"],
                "train_time_s": summary["train_time_s"],
            }
            print(json.dumps(row), flush=True)
            done.append(row)
        return [x for x in done if x["seed"] in seeds]


def run_protocol(
    runner: SettingRunner,
    baseline_recipe: str,
    lams: list[float],
    ds: list[int],
    d_select: int,
    seeds: list[int],
    select_seeds: list[int] | None = None,
) -> dict[str, Any]:
    """All rows of one pair: baseline, lambda per variant chosen on validation, EC over ``ds``.

    Returns:
        ``table`` (row label -> per-seed rows), ``chosen_lam``, ``val_grid`` (variant -> lambda ->
        mean validation accuracy in percent over ``select_seeds``) and ``all_runs``.
    """
    select = select_seeds or seeds
    table = {"baseline": runner.run("baseline", baseline_recipe, [], None, None, seeds)}
    chosen, grid = {}, {}
    for label, overrides in VARIANTS.items():
        d = d_select if label.startswith("EC") else None
        runs = {lam: runner.run(label, runner.ec_recipe, overrides, lam, d, select) for lam in lams}
        grid[label] = {lam: percent([x["val_acc"] for x in rows]) for lam, rows in runs.items()}
        chosen[label] = max(lams, key=lambda lam, g=grid[label]: g[lam])
        if label.startswith("EAsT"):
            table[label] = runner.run(label, runner.ec_recipe, overrides, chosen[label], None, seeds)
        else:
            for dd in ds:
                table[f"{label} d={dd}"] = runner.run(
                    label, runner.ec_recipe, overrides, chosen[label], dd, seeds
                )
    return {"table": table, "chosen_lam": chosen, "val_grid": grid, "all_runs": runner.done}


def table_from_runs(
    runs: Sequence[dict], pair: str, chosen_lam: dict[str, Any], ds: Sequence[int], seeds: Sequence[int]
) -> dict[str, list[dict]]:
    """The table of :func:`run_protocol` rebuilt from a results file's rows (to re-render it)."""

    def rows(label: str, lam: Any, d: int | None) -> list[dict]:
        return [
            x
            for x in runs
            if x["pair"] == pair
            and x["row"] == label
            and x["lam"] == lam
            and x["d"] == d
            and x["seed"] in seeds
        ]

    table = {"baseline": rows("baseline", None, None)}
    for label in VARIANTS:
        lam = float(chosen_lam[label])
        if label.startswith("EAsT"):
            table[label] = rows(label, lam, None)
        else:
            table.update({f"{label} d={d}": rows(label, lam, d) for d in ds})
    return table


def verdict(table: dict[str, list[dict]], unseen: Sequence[str] = ("unseen_acc",)) -> dict[str, Any]:
    """The EC row with the best mean validation accuracy against the baseline and both EAsT rows.

    ``unseen`` names the unseen-set columns; "generalises better" means a higher mean over them
    than each reference row. "met" means >= 1.0 test point over each reference row (means).
    """
    ec = [k for k in table if k.startswith("EC")]
    best = max(ec, key=lambda k: percent([x["val_acc"] for x in table[k]]))
    test = {k: percent([x["test_acc"] for x in table[k]]) for k in table}
    unseen_mean = {k: statistics.mean(percent([x[c] for x in table[k]]) for c in unseen) for k in table}
    return {
        "ec_row_by_val": best,
        "test_gain_over": {k: test[best] - test[k] for k in REFERENCES},
        "unseen_gain_over": {k: unseen_mean[best] - unseen_mean[k] for k in REFERENCES},
        "met": all(test[best] - test[k] >= 1.0 for k in REFERENCES),
        "generalises_better": all(unseen_mean[best] > unseen_mean[k] for k in REFERENCES),
    }


def plot_pairs(tables: dict[str, dict[str, list[dict]]], ds: Sequence[int], out: Path) -> None:
    """Test accuracy vs d per loss (EC), EAsT and baseline as horizontal lines; one panel per pair.

    ``tables``: panel title -> row label (``baseline``, ``EAsT-FitNet``, ``EC-dCor d=16`` ...) ->
    per-seed rows with ``test_acc``; the baseline may be missing.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tables), figsize=(4.2 * len(tables), 3.6), squeeze=False)
    for ax, (pair, table) in zip(axes[0], tables.items(), strict=True):
        for loss, color in (("FitNet", "C0"), ("dCor", "C1")):
            accs = [[100 * x["test_acc"] for x in table[f"EC-{loss} d={d}"]] for d in ds]
            means, stds = [statistics.mean(a) for a in accs], [statistics.pstdev(a) for a in accs]
            ax.errorbar(ds, means, yerr=stds, marker="o", color=color, label=f"EC-{loss}", capsize=3)
            east = percent([x["test_acc"] for x in table[f"EAsT-{loss}"]])
            ax.axhline(east, color=color, ls=":", label=f"EAsT-{loss}")
        if "baseline" in table:
            ax.axhline(
                percent([x["test_acc"] for x in table["baseline"]]), color="k", ls="--", label="baseline"
            )
        ax.set_xscale("log", base=2)
        ax.set(xlabel="compressed dimension d", ylabel="test accuracy (%)")
        ax.set_title(pair, fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def probe_val_accuracy(cfg: Any, base: str, seed: int) -> tuple[int, float]:
    """Does the teacher hold more than the student? A linear probe, on validation only.

    Logistic regression on the standardised teacher embedding of the labelled training examples a
    ``with_teacher_emb`` recipe's run gets for ``seed``, scored on that run's validation split.

    Returns:
        (number of labelled training examples, validation accuracy).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from kdforge.data import load_dataset
    from kdforge.data.embeddings import attach, default_root, entry_dir
    from kdforge.data.embeddings import load as load_cache

    kw = {**cfg.data.kwargs, "seed": seed, "subset": cfg.data.subset, "val_size": cfg.data.val_size}
    splits = load_dataset("with_teacher_emb", **kw)
    train = splits.train.tensors
    emb, hashes, _ = load_cache(entry_dir(default_root(), base, "all", kw["model"]))
    val = attach(splits.val, emb, hashes).tensors  # the same cache, attached to validation
    scaler = StandardScaler().fit(train["teacher_emb"].numpy())
    clf = LogisticRegression(max_iter=2000).fit(
        scaler.transform(train["teacher_emb"].numpy()), train["y"].numpy()
    )
    return len(train["y"]), float(clf.score(scaler.transform(val["teacher_emb"].numpy()), val["y"].numpy()))
