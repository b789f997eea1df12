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
    check_config,
    kd_axes,
    parse_method_options,
)
from kdforge.errors import KdforgeError

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


def _say(message: str) -> None:
    print(f"[distill] {message}", file=sys.stderr, flush=True)


def resolve_teacher(cfg: DistillConfig) -> tuple[dict[str, Any], int | None]:
    """The teacher as a recipe ``ModelConfig`` dict, and its output width (``None``: unknown)."""
    path = Path(cfg.teacher)
    if path.suffix == ".safetensors":
        spec_path = path.with_suffix(".json")
        if not path.is_file():
            raise KdforgeError(f"teacher weights '{path}' do not exist", "give the path of an exported model")
        if not spec_path.is_file():
            raise KdforgeError(
                f"'{spec_path}' (the model spec beside the teacher's weights) is missing",
                "pass a model exported by kdforge, or --teacher NAME --teacher-checkpoint FILE",
            )
        spec = json.loads(spec_path.read_text())
        model = {"name": spec["model"], "kwargs": spec.get("kwargs", {}), "checkpoint": str(path)}
        return model, cfg.teacher_outputs or spec.get("num_classes")
    from kdforge.models.reference import carries_weights

    if not cfg.teacher_checkpoint and carries_weights(cfg.teacher):  # hf:DIR, torchscript:, py:, FILE.py:
        model = {"name": cfg.teacher, "kwargs": dict(cfg.teacher_kwargs), "checkpoint": None}
        return model, cfg.teacher_outputs
    if not cfg.teacher_checkpoint:
        raise KdforgeError(
            f"teacher '{cfg.teacher}' is a model name without weights: distilling an untrained teacher "
            "teaches nothing",
            "pass --teacher-checkpoint FILE, or --teacher RUN/student.safetensors of a trained run",
        )
    model = {"name": cfg.teacher, "kwargs": dict(cfg.teacher_kwargs), "checkpoint": cfg.teacher_checkpoint}
    return model, cfg.teacher_outputs


def _data_section(cfg: DistillConfig, keep_unlabelled: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"name": cfg.data, "data_dir": cfg.data_dir, "batch_size": cfg.batch_size}
    data["kwargs"] = dict(cfg.data_kwargs)
    if cfg.val_size is not None:
        data["val_size"] = cfg.val_size
    if cfg.labelled is not None:
        pool = {"labelled": cfg.labelled, "unlabelled": cfg.unlabelled, "keep_unlabelled": keep_unlabelled}
        data = {**data, "name": "few_labels", "kwargs": {"base": cfg.data, **data["kwargs"], **pool}}
    return data


def _train_section(cfg: DistillConfig, steps: int, lr: float, train_size: int) -> dict[str, Any]:
    per_epoch = max(1, train_size // cfg.batch_size)
    return {
        "epochs": math.ceil(steps / per_epoch),
        "max_steps": steps,
        "lr": lr,
        "optimizer": cfg.optimizer,
        "weight_decay": cfg.weight_decay,
        "schedule": "cosine",
        "eval_every_steps": max(1, steps // cfg.evaluations),
    }


def _base_recipe(cfg: DistillConfig, name: str, keep_unlabelled: bool) -> dict[str, Any]:
    return {
        "name": name,
        "output_dir": str(Path(cfg.output_dir) / "runs"),
        "seed": cfg.seeds[0],
        "data": _data_section(cfg, keep_unlabelled),
    }


def head_fitting_reason(teacher: dict[str, Any], outputs: int | None, num_classes: int) -> str | None:
    """Why the teacher needs a head fitted for the data's ``num_classes`` (``None``: it has one).

    A teacher needs one when its output width (``outputs``, when known) is not the class count,
    or when it is an ``hf:DIR`` reference without its own weights file whose built model would
    carry a new, untrained head (an encoder, ``head: new``) or a head for other classes.
    """
    from kdforge.models.hf_dir import hf_head_classes

    name = teacher["name"]
    if name.startswith("hf:") and not teacher.get("checkpoint"):
        classes = hf_head_classes(name[3:], teacher["kwargs"].get("head", "auto"))
        if classes is None:
            return f"'{name}' has no trained classification head (an encoder, or head: new)"
        if classes != num_classes:
            return f"the classification head of '{name}' has {classes} classes, the data {num_classes}"
        return None
    if outputs is not None and outputs != num_classes:
        return f"the teacher outputs {outputs} values, the data has {num_classes} classes"
    return None


def _head_student(cfg: DistillConfig, teacher: dict[str, Any], outputs: int | None) -> dict[str, Any]:
    """The model the head fitting trains: an ``hf:`` encoder with a new head (its encoder frozen
    for a probe), or any other teacher as the body of :func:`kdforge.models.headed.with_head`."""
    probe = cfg.head == "probe"
    if teacher["name"].startswith("hf:") and not teacher.get("checkpoint"):
        kwargs = {**teacher["kwargs"], "head": "new", "freeze_encoder": probe}
        return {"name": teacher["name"], "kwargs": kwargs}
    if outputs is None:
        raise KdforgeError(
            f"the width of the output of teacher '{teacher['name']}' is unknown, so no head can go on it",
            "pass --teacher-outputs N (its output width)",
        )
    body = {"name": teacher["name"], "kwargs": teacher["kwargs"], "outputs": outputs}
    body["checkpoint"] = teacher["checkpoint"]
    return {"name": "with_head", "kwargs": {"body": body, "freeze_body": probe}}


def fit_teacher_head(
    cfg: DistillConfig,
    teacher: dict[str, Any],
    outputs: int | None,
    progress: bool,
    reason: str = "the teacher has no head for the data's classes",
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train a head for the data's classes on the teacher (training split only); return its model dict.

    The run (``teacher_head-<recipe fingerprint>-seed<S>`` in ``output_dir``) is named by what it
    trains, so a changed ``head``, ``head_steps`` or ``head_lr`` trains anew; a finished one is
    reused.
    """
    from kdforge.config import from_dict
    from kdforge.engine.run import load_splits, run_experiment

    say = say or _say
    student = _head_student(cfg, teacher, outputs)
    recipe = {
        **_base_recipe(cfg, "teacher_head", keep_unlabelled=False),
        "student": student,
        "method": {"name": "supervised"},
    }
    recipe["output_dir"] = cfg.output_dir
    train_size = len(load_splits(from_dict(recipe)).train)
    recipe["train"] = _train_section(cfg, cfg.head_steps, cfg.head_lr, train_size)
    recipe["name"] = f"teacher_head-{from_dict(recipe).recipe_fingerprint()}-seed{cfg.seeds[0]}"
    run = from_dict(recipe)
    weights = run.run_dir / "student.safetensors"
    if (run.run_dir / "summary.json").is_file():
        say(f"teacher head: reusing {weights}")
    else:
        say(f"{reason}: fitting a head ({cfg.head}, {cfg.head_steps} steps, lr {cfg.head_lr})")
        resume = (run.run_dir / "checkpoints" / "last.json").is_file()
        run_experiment(run, resume=resume, progress=progress)
    return {"name": student["name"], "kwargs": student["kwargs"], "checkpoint": str(weights)}


def score_teacher(cfg: DistillConfig, teacher: dict[str, Any]) -> dict[str, float]:
    """Validation and test accuracy of the teacher (cached in ``teacher_scores.json``)."""
    from kdforge.config import from_dict
    from kdforge.engine.run import build_method, load_splits
    from kdforge.engine.trainer import evaluate

    path = Path(cfg.output_dir) / "teacher_scores.json"
    # the scores depend on the teacher and on the splits (data settings and the first seed)
    key = json.dumps(
        {"teacher": teacher, "data": _data_section(cfg, False), "seed": cfg.seeds[0]}, sort_keys=True
    )
    if path.is_file() and json.loads(path.read_text()).get("teacher") == key:
        return json.loads(path.read_text())
    run = from_dict(
        {**_base_recipe(cfg, "teacher", False), "student": teacher, "method": {"name": "supervised"}}
    )
    splits = load_splits(run)
    method = build_method(run, splits)
    device = next(method.parameters()).device
    scores = {
        "teacher": key,
        "val_acc": evaluate(method, splits.val, 1000, device)["acc"],
        "test_acc": evaluate(method, splits.test, 1000, device)["acc"],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(scores, indent=1))
    return scores


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
        recipe = {**_base_recipe(cfg, arm, keep_unlabelled=not alone), "student": student}
        if alone:
            recipe["method"] = {"name": "supervised"}
        else:
            options = dict(cfg.method_options.get(arm, {}))
            recipe["method"], recipe["teacher"] = {"name": arm, "kwargs": options}, teacher
        train_size = len(load_splits(from_dict(recipe)).train)
        steps = cfg.grid.steps or [cfg.steps]
        recipe["train"] = _train_section(cfg, max(steps), cfg.grid.lr[0], train_size)
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


def distill(cfg: DistillConfig, progress: bool = True, say: Callable[[str], None] = _say) -> dict[str, Any]:
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
    probe_run = from_dict({**_base_recipe(cfg, "probe", False), "student": teacher})
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
        {**_base_recipe(cfg, "teacher", False), "student": teacher, "method": {"name": "supervised"}}
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
