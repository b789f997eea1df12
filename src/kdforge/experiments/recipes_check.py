"""Re-checking shipped recipes: the student trained alone vs the recipe's distilled student.

"Alone" is the same recipe with ``method.name: supervised``, no method kwargs and no teacher
(same data, student, seed and schedule). Both run over the same seeds; the distilled student
passes when its validation accuracy is not worse than alone's, judged by the paired bootstrap
interval of the validation difference (:func:`kdforge.experiments.verdict` against 0), or when
the recipe says why it is (a comment line starting with :data:`NOTE_PREFIX`).

Example::

    row = check_recipe("configs/fmnist_kd.yaml", seeds=[0, 1, 2])
    row["verdict"], row["val_delta"]
"""

from __future__ import annotations

import dataclasses
import datetime
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kdforge.config import MethodConfig, RunConfig, load_recipe
from kdforge.errors import KdforgeError
from kdforge.experiments.intervals import paired_bootstrap, verdict
from kdforge.experiments.recipes_plan import ALONE, TEACHER, RecipePlan
from kdforge.experiments.selection import select_best
from kdforge.experiments.sweep import expand_grid, make_trials, run_recipe, run_sweep
from kdforge.report.provenance import git_commit

NOTE_PREFIX = "# distilled vs alone:"  # a recipe comment saying why distillation does not pay there
SKIP_DIRS = ("kt",)  # Knowledge Translation recipes (another schema, no student-alone counterpart)


def checkable_recipes(configs_dir: str | Path) -> list[str]:
    """Every run recipe under ``configs_dir`` (relative POSIX paths, sorted).

    Bases (``_*.yaml``, only ever inherited) and the Knowledge Translation recipes
    (``kt/``) are left out.
    """
    root = Path(configs_dir)
    out = []
    for path in root.rglob("*.yaml"):
        rel = path.relative_to(root)
        if path.name.startswith("_") or rel.parts[0] in SKIP_DIRS:
            continue
        out.append(rel.as_posix())
    return sorted(out)


def recipe_note(recipe: str | Path) -> str | None:
    """The recipe's own reason why its distilled student may not beat the student alone.

    The text of the comment lines starting with :data:`NOTE_PREFIX` (continued by the
    ``#`` lines right after it), joined with spaces; ``None`` when there is none.
    """
    lines = Path(recipe).read_text().splitlines()
    for i, line in enumerate(lines):
        if line.lower().startswith(NOTE_PREFIX):
            parts = [line[len(NOTE_PREFIX) :].strip()]
            for nxt in lines[i + 1 :]:
                if not nxt.startswith("#") or nxt.lower().startswith(NOTE_PREFIX):
                    break
                parts.append(nxt.lstrip("#").strip())
            return " ".join(p for p in parts if p)
    return None


def alone_config(cfg: RunConfig) -> RunConfig:
    """The same recipe trained alone: supervised, no method kwargs, no teacher.

    Data that carries cached teacher embeddings (``with_teacher_emb``, EAsT's teacher) becomes
    its base data set with the same options and splits, and ``train.teacher_cache`` is off: a
    student alone never sees the teacher.
    """
    data = cfg.data
    if data.name == "with_teacher_emb":
        base = data.kwargs.get("base", "vader_movies")
        data = dataclasses.replace(data, name=base, kwargs=dict(data.kwargs.get("base_kwargs") or {}))
    train = dataclasses.replace(cfg.train, teacher_cache=False)
    return dataclasses.replace(
        cfg, data=data, train=train, method=MethodConfig("supervised", {}), teacher=None
    )


def _config_trials(cfg: RunConfig, grid: dict[str, list[Any]], seeds: Sequence[int], prefix: str) -> list:
    """:func:`make_trials` named ``<prefix>-<recipe fingerprint>-seed<S>``: a run is named by what it
    trains, so a tuning point and the check of the recipe it chose share their runs."""
    trials = make_trials(cfg, grid, seeds, name=prefix)
    for t in trials:
        t.name = f"{prefix}-{t.config.recipe_fingerprint()}-seed{t.seed}"
        t.config = dataclasses.replace(t.config, name=t.name)
    return trials


def run_alone(cfg: RunConfig, seeds: Sequence[int]) -> list[dict[str, Any]]:
    """Train the student of ``cfg`` alone once per seed (resumable).

    Runs are named ``alone-<recipe fingerprint>-seed<S>`` in ``cfg.output_dir``, so recipes
    whose alone version is the same (e.g. the variants of one student) share their runs.
    """
    return run_sweep(_config_trials(alone_config(cfg), {}, seeds, "alone"), cfg.output_dir, progress=False)


def _stats(values: Sequence[float]) -> dict[str, Any]:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"values": list(values), "mean": statistics.fmean(values), "std": std}


def _side(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "val_acc": _stats([r["val_acc"] for r in runs]),
        "test_acc": _stats([r["test_acc"] for r in runs]),
        "params": runs[0]["student_params"],
        "train_time_s": statistics.fmean(r["train_time_s"] for r in runs),
    }


def check_row(
    recipe: str,
    alone: Sequence[dict[str, Any]],
    distilled: Sequence[dict[str, Any]],
    method: str,
    note: str | None = None,
    **bootstrap: Any,
) -> dict[str, Any]:
    """One row of the check from finished runs (summaries paired by seed, in the same order).

    Returns:
        ``alone`` and ``distilled`` (val/test mean, std, per-seed values; params; mean train
        time), ``val_delta`` / ``test_delta`` (paired bootstrap intervals of distilled minus
        alone, fractions), ``verdict`` of the validation interval against 0 (``met``, ``not
        distinguishable``, ``missed``), ``claim`` (``"distilled >= alone on validation"`` when
        the mean validation difference is >= 0, else ``"distilled < alone on validation"``),
        ``ok`` (the verdict is not ``missed``, or the recipe gives a ``note``) and ``note``.
    """
    if [r["seed"] for r in alone] != [r["seed"] for r in distilled]:
        raise ValueError("alone and distilled runs must list the same seeds in the same order")
    val = paired_bootstrap([r["val_acc"] for r in distilled], [r["val_acc"] for r in alone], **bootstrap)
    test = paired_bootstrap([r["test_acc"] for r in distilled], [r["test_acc"] for r in alone], **bootstrap)
    shown = verdict(val, 0.0)
    return {
        "recipe": recipe,
        "kind": "distilled",
        "method": method,
        "seeds": [r["seed"] for r in alone],
        "alone": _side(alone),
        "distilled": _side(distilled),
        "val_delta": val.to_dict(),
        "test_delta": test.to_dict(),
        "verdict": shown,
        "claim": f"distilled {'>=' if val.mean >= 0 else '<'} alone on validation",
        "ok": shown != "missed" or note is not None,
        "note": note,
    }


def check_recipe(
    recipe: str | Path,
    seeds: Sequence[int],
    teacher: str | Path | None = None,
    label: str | None = None,
    overrides: Sequence[str] = (),
    **bootstrap: Any,
) -> dict[str, Any]:
    """Run (or reuse) a distilling recipe and its student alone over ``seeds``; :func:`check_row`.

    Args:
        recipe: The distilling recipe.
        seeds: Run seeds (the distilled runs are ``<name>-<recipe fingerprint>-seed<S>`` in the
            recipe's output_dir).
        teacher: The recipe whose export the teacher checkpoint names; run first (once, its own
            seed) when given and not finished.
        label: The recipe as printed (default: the path as given).
        overrides: dotted overrides applied to the recipe (e.g. where its data lies).
    """
    if teacher is not None:
        run_recipe(teacher)
    cfg = load_recipe(recipe, list(overrides))
    distilled = run_sweep(_config_trials(cfg, {}, seeds, cfg.name), cfg.output_dir, progress=False)
    alone = run_alone(cfg, seeds)
    return check_row(
        label or str(recipe), alone, distilled, cfg.method.name, recipe_note(recipe), **bootstrap
    )


def single_row(recipe: str, runs: Sequence[dict[str, Any]], kind: str) -> dict[str, Any]:
    """A recipe without a distilled counterpart (a teacher, or a student trained alone)."""
    return {"recipe": recipe, "kind": kind, "seeds": [r["seed"] for r in runs], "alone": _side(runs)}


def skipped_row(recipe: str, reason: str) -> dict[str, Any]:
    """A declared recipe that was not checked, and why."""
    return {"recipe": recipe, "kind": "not checked", "reason": reason}


def check_plan(plan: RecipePlan, configs_dir: str | Path, seeds: Sequence[int]) -> dict[str, Any]:
    """Run (or reuse) one planned recipe and return its row, ``measured`` here and now.

    A teacher runs once (its recipe's seed), a student alone once per seed, a distilling recipe
    with its student alone (:func:`check_recipe`, its teacher recipe first).
    """
    root = Path(configs_dir)
    path = root / plan.rel
    if plan.role == TEACHER:
        row = single_row(plan.rel, [run_recipe(path, plan.overrides)], "teacher")
    elif plan.role == ALONE:
        row = single_row(plan.rel, run_alone(load_recipe(path, plan.overrides), seeds), "student alone")
    else:
        teacher = root / plan.teacher if plan.teacher else None
        row = check_recipe(path, seeds, teacher=teacher, label=plan.rel, overrides=plan.overrides)
    when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {**row, "measured": {"commit": git_commit(), "date": when}}


def tune_pair(
    recipe: str | Path,
    alone_grid: dict[str, list[Any]],
    distilled_grid: dict[str, list[Any]],
    seeds: Sequence[int],
    teacher: str | Path | None = None,
) -> dict[str, Any]:
    """Choose a recipe's settings on validation, with the same budget for the student alone.

    Both grids must have the same number of points (the student alone gets as many tries as
    the distilled student); each point runs once per seed, the best mean validation accuracy
    wins (:func:`kdforge.experiments.select_best`; test accuracy is never read).

    Returns:
        ``{"alone": ..., "distilled": ...}``, each the chosen ``overrides``, its validation
        ``mean`` and every ``candidates`` row (overrides, mean, std, n), best first.

    Raises:
        KdforgeError: when the grids differ in size.
    """
    n_alone, n_distilled = len(expand_grid(alone_grid)), len(expand_grid(distilled_grid))
    if n_alone != n_distilled:
        raise KdforgeError(
            f"unequal tuning budgets: {n_alone} settings for the student alone, {n_distilled} distilled",
            "give both grids the same number of points",
        )
    if teacher is not None:
        run_recipe(teacher)
    cfg = load_recipe(recipe)
    sweeps = {
        "alone": _config_trials(alone_config(cfg), alone_grid, seeds, "alone"),
        "distilled": _config_trials(cfg, distilled_grid, seeds, cfg.name),
    }
    out = {}
    for side, trials in sweeps.items():
        best = select_best(run_sweep(trials, cfg.output_dir, progress=False), metric="val_acc")[()]
        out[side] = {k: best[k] for k in ("overrides", "mean", "candidates")}
    return out
