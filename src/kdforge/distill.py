"""``kdforge distill``: from a trained teacher and a data set to a smaller student and a report.

The steps, each resumable (a finished run is skipped when the command is run again):

1. If the teacher's output width differs from the data's class count, fit a head for the
   data's classes on the training split (linear probe, or fine-tuning the whole teacher).
2. Score the teacher once on validation and test.
3. Train the student alone and the student with each chosen method (default Hinton KD) over the
   same small grid of learning rates (and, for KD, temperatures and weights), for the same
   number of optimizer steps, on every seed. Each arm keeps the grid point with the best mean
   *validation* accuracy, so the distilled student is compared with a tuned baseline; the test
   split is only reported for the selected points.
4. Write the compression report (``report.md``, ``report.json``, ``report.png``) and the
   resolved recipe with every default (``distill.yaml``).

With ``labelled`` set, only that many training examples keep their labels: the student alone
and the teacher's head learn from them alone, while distilled students also see the rest of the
training split as an unlabelled pool that the teacher labels (soft targets only).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from kdforge.distill_config import (
    KD_GRID_METHODS,
    DistillConfig,
    TuningGrid,
    base_recipe,
    check_config,
    kd_axes,
    parse_method_options,
    train_section,
)
from kdforge.distill_teacher import (
    fit_teacher_head,
    head_fitting_reason,
    print_progress,
    resolve_teacher,
    score_teacher,
)

__all__ = [
    "KD_GRID_METHODS",
    "DistillConfig",
    "TuningGrid",
    "check_config",
    "distill",
    "fit_teacher_head",
    "head_fitting_reason",
    "make_arm_trials",
    "parse_method_options",
    "resolve_teacher",
    "score_teacher",
]


def saved_recipe(cfg: DistillConfig) -> dict[str, Any]:
    """``distill.yaml``: every setting of ``cfg``, plus ``method_options_resolved``: each method's
    options as its runs use them (defaults included; KD's temperature and alpha, unless fixed in
    ``method_options``, are tuned over ``grid`` instead)."""
    from kdforge.config import check_kwargs
    from kdforge.registry import METHODS

    resolved = {
        m: dataclasses.asdict(check_kwargs("method", m, cfg.method_options.get(m, {}), METHODS.get(m).Config))
        for m in cfg.methods
    }
    return {**dataclasses.asdict(cfg), "method_options_resolved": resolved}


def equal_budget_lrs(lrs: list[float], count: int) -> list[float]:
    """``count`` learning rates spread geometrically over the span of ``lrs`` (``lrs`` itself if
    ``count <= len(lrs)``).

    An arm without temperature/weight to tune (the student alone, FitNet...) gets as many grid
    points as a KD arm tries, as extra learning rates in the same range, so no arm is compared
    with a baseline tuned over fewer settings. One given lr spans a factor of 10 around it.
    """
    if count <= len(lrs):
        return list(lrs)
    low, high = (min(lrs), max(lrs)) if len(lrs) > 1 else (lrs[0] / 10**0.5, lrs[0] * 10**0.5)
    ratio = (high / low) ** (1 / (count - 1))
    return [float(f"{low * ratio**i:.4g}") for i in range(count)]


def _points(axes: dict[str, list]) -> int:
    return math.prod(len(v) for v in axes.values())


def make_arm_trials(cfg: DistillConfig, teacher: dict[str, Any]) -> dict[str, list]:
    """The trials of every arm: ``student_alone`` and one per method, each over the grid and seeds."""
    from kdforge.config import from_dict
    from kdforge.engine.run import load_splits
    from kdforge.experiments import make_trials

    student = {"name": cfg.student, "kwargs": dict(cfg.student_kwargs)}
    arms: dict[str, list] = {}
    for arm in ["student_alone", *cfg.methods]:
        alone = arm == "student_alone"
        recipe = {**base_recipe(cfg, arm, keep_unlabelled=not alone), "student": student}
        if alone:
            recipe["method"] = {"name": "supervised"}
        else:
            options = dict(cfg.method_options.get(arm, {}))
            recipe["method"], recipe["teacher"] = {"name": arm, "kwargs": options}, teacher
        train_size = len(load_splits(from_dict(recipe)).train)
        steps = cfg.grid.steps or [cfg.steps]
        recipe["train"] = train_section(cfg, max(steps), cfg.grid.lr[0], train_size)
        if arm in KD_GRID_METHODS:  # the frozen teacher's logits once, from disk, for every grid point
            recipe["train"]["teacher_cache"] = True
        axes = kd_axes(cfg, arm)  # KD's temperature and weight, unless fixed by a method option
        methods_points = max([_points(kd_axes(cfg, m)) for m in cfg.methods], default=1)
        own_points = max(1, methods_points // _points(axes))  # the same budget for every arm
        grid: dict[str, list] = {"train.lr": equal_budget_lrs(cfg.grid.lr, len(cfg.grid.lr) * own_points)}
        if cfg.grid.steps:
            grid["train.max_steps"] = list(cfg.grid.steps)
        grid.update({f"method.kwargs.{key}": values for key, values in axes.items()})
        arms[arm] = make_trials(from_dict(recipe), grid, cfg.seeds, name=arm)
    return arms


def _short(reference: str) -> str:
    """``teacher/student.safetensors`` for a long path; a model name as it is."""
    return "/".join(Path(reference).parts[-2:])


def _load_exported(run_dir: Path):
    from kdforge.engine.run import load_student

    return load_student(run_dir / "student.safetensors")


def distill(
    cfg: DistillConfig, progress: bool = True, say: Callable[[str], None] = print_progress
) -> dict[str, Any]:
    """Run the whole pipeline (see the module docstring); return selection, report and paths."""
    import torch
    from tqdm.auto import tqdm

    from kdforge.config import from_dict
    from kdforge.engine.run import load_splits
    from kdforge.experiments import run_sweep, select_best
    from kdforge.report.compression import ReportEntry, TimingConfig, build_report, write_compression_report
    from kdforge.report.provenance import provenance

    check_config(cfg)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "distill.yaml").write_text(yaml.safe_dump(saved_recipe(cfg), sort_keys=False))
    teacher, outputs = resolve_teacher(cfg)
    probe_run = from_dict({**base_recipe(cfg, "probe", False), "student": teacher})
    splits = load_splits(probe_run)
    reason = head_fitting_reason(teacher, outputs, splits.num_classes)
    if reason:  # never distil from an untrained head
        teacher = fit_teacher_head(cfg, teacher, outputs, progress, reason, say)
    scores = score_teacher(cfg, teacher)
    say(f"teacher: val {100 * scores['val_acc']:.2f}%, test {100 * scores['test_acc']:.2f}%")
    arms = make_arm_trials(cfg, teacher)
    total = sum(len(t) for t in arms.values())
    say(
        f"{total} student runs: {', '.join(f'{a} x{len(t)}' for a, t in arms.items())} "
        "(finished runs are skipped)"
    )
    selection: dict[str, Any] = {}
    bar = tqdm(
        total=total, desc="distill", unit="run", disable=None if progress else True, dynamic_ncols=True
    )
    log_lines = not sys.stderr.isatty()  # no bar to watch: one line per finished run instead
    done = 0  # counted here: a disabled bar (--no-progress) does not count
    for arm, trials in arms.items():
        summaries = []
        for trial in trials:  # one trial at a time: a bar over every run and a line per run
            summaries += run_sweep([trial], out / "runs", resume=True, progress=False)
            bar.update(1)
            done += 1
            if log_lines:
                say(f"run {done}/{total} {trial.name}: val {100 * summaries[-1]['val_acc']:.2f}%")
        best = select_best(summaries, metric="val_acc")[()]
        selection[arm] = {
            "overrides": best["overrides"],
            "val_acc": best["values"],
            "test_acc": [s["test_acc"] for s in best["summaries"]],
            "runs": [s["trial"] for s in best["summaries"]],
            "candidates": best["candidates"],
        }
        say(f"{arm}: selected {best['overrides']} (val {100 * best['mean']:.2f}%)")
    bar.close()
    (out / "selection.json").write_text(json.dumps(selection, indent=1))

    teacher_run = from_dict(
        {**base_recipe(cfg, "teacher", False), "student": teacher, "method": {"name": "supervised"}}
    )
    from kdforge.engine.run import build_method

    teacher_model = build_method(teacher_run, splits).student
    teacher_weights = teacher["checkpoint"]
    if teacher_weights is None:  # a reference that brings its own weights: measure them as saved
        from safetensors.torch import save_model

        teacher_weights = out / "teacher.safetensors"
        save_model(teacher_model, str(teacher_weights))
    entries = [
        ReportEntry(
            "teacher",
            teacher_model,
            Path(teacher_weights),
            [scores["test_acc"]],
            [scores["val_acc"]],
            "teacher",
        )
    ]
    for arm, sel in selection.items():
        run_dir = out / "runs" / sel["runs"][0]
        role = "student" if arm == "student_alone" else "distilled"
        entries.append(
            ReportEntry(
                arm.replace("_", " "),
                _load_exported(run_dir),
                run_dir / "student.safetensors",
                sel["test_acc"],
                sel["val_acc"],
                role,
                {"selected": sel["overrides"]},
            )
        )
    inputs = {k: v[: cfg.timing_batch] for k, v in splits.test.tensors.items() if k != "y"}
    say("timing every model for the report")
    with torch.no_grad():
        report = build_report(
            entries,
            inputs,
            TimingConfig(large_batch=cfg.timing_batch),
            title=f"kdforge distill: {cfg.student} from {_short(cfg.teacher)} on {splits.name}",
        )
    report["teacher_head"] = {"fitted": reason is not None, "reason": reason, "head": cfg.head}
    report["teacher_head"].update(steps=cfg.head_steps, lr=cfg.head_lr, model=teacher)
    report["provenance"] = provenance(dataclasses.asdict(cfg), list(cfg.seeds))
    paths = write_compression_report(report, out)
    return {"selection": selection, "report": report, "paths": paths, "teacher_scores": scores}
