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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kdforge.errors import KdforgeError

#: methods whose temperature and weight are tuned besides the learning rate
KD_GRID_METHODS = ("kd",)


@dataclass
class TuningGrid:
    """The small grid tuned on validation, the same for the student alone and each method."""

    lr: list[float] = field(default_factory=lambda: [0.003, 0.01])
    temperature: list[float] = field(default_factory=lambda: [2.0, 4.0])  # KD only
    alpha: list[float] = field(default_factory=lambda: [0.9])  # KD only: weight of the soft targets
    steps: list[int] = field(default_factory=list)  # schedule lengths tried (empty: DistillConfig.steps)


@dataclass
class DistillConfig:
    """Everything ``kdforge distill`` does; saved as ``distill.yaml`` with every default.

    Attributes:
        teacher: an exported kdforge model (``.../student.safetensors`` with its ``.json`` spec
            beside it), or a registered model name / model reference (then ``teacher_checkpoint``).
        teacher_kwargs: builder options when ``teacher`` is a model name.
        teacher_checkpoint: weights file when ``teacher`` is a model name.
        teacher_outputs: width of the teacher's output when it is not the data's class count
            (read from the spec of an exported model).
        head: how a head for the data's classes is fitted when needed: ``probe`` (linear probe on
            the frozen teacher) or ``finetune`` (train the whole teacher with the new head).
        head_steps: optimizer steps of the head fitting; head_lr: its learning rate.
        data: registered data set name (``kdforge list datasets``); data_dir / data_kwargs: its
            options; val_size: validation examples carved from the training split.
        labelled: keep only this many training labels; the rest is an unlabelled pool that only
            distilled students see, labelled by the teacher (``None``: every label is used).
        unlabelled: size of that pool (``None``: every other training example).
        student: registered student model name; student_kwargs: its options.
        methods: distillation methods, each trained and tuned like the student alone.
        seeds: every grid point runs once per seed; selection uses the mean over seeds.
        steps: optimizer steps of every student run (the same budget for every arm); with
            ``grid.steps`` set, every arm tries those schedule lengths instead.
        batch_size: training batch size; evaluations: validation passes per run (best kept).
        optimizer: sgd | adam | adamw; weight_decay: its weight decay.
        grid: the tuned values (see :class:`TuningGrid`).
        output_dir: where runs, the recipe and the report are written.
        timing_batch: batch size of the report's throughput measurement.
    """

    teacher: str = ""
    teacher_kwargs: dict[str, Any] = field(default_factory=dict)
    teacher_checkpoint: str | None = None
    teacher_outputs: int | None = None
    head: str = "probe"
    head_steps: int = 500
    head_lr: float = 0.003
    data: str = "fashion_mnist"
    data_dir: str | None = None
    data_kwargs: dict[str, Any] = field(default_factory=dict)
    val_size: int | None = None
    labelled: int | None = None
    unlabelled: int | None = None
    student: str = "mlp"
    student_kwargs: dict[str, Any] = field(default_factory=lambda: {"hidden": [64]})
    methods: list[str] = field(default_factory=lambda: ["kd"])
    seeds: list[int] = field(default_factory=lambda: [0])
    steps: int = 1000
    batch_size: int = 64
    evaluations: int = 10
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    grid: TuningGrid = field(default_factory=TuningGrid)
    output_dir: str = "runs/distill"
    timing_batch: int = 256


def _say(message: str) -> None:
    print(f"[distill] {message}", file=sys.stderr, flush=True)


def check_config(cfg: DistillConfig) -> None:
    """Refuse settings that cannot work before anything trains (one message with its fix)."""
    from kdforge.registry import DATASETS, METHODS

    if not cfg.teacher:
        raise KdforgeError("no teacher given", "pass --teacher PATH/student.safetensors (or a model name)")
    if cfg.head not in ("probe", "finetune"):
        raise KdforgeError(
            f"head '{cfg.head}' is not probe or finetune", "use --head probe or --head finetune"
        )
    DATASETS.get(cfg.data)  # unknown names list the nearest ones
    for name in cfg.methods:
        METHODS.get(name)
        if name == "supervised":
            raise KdforgeError(
                "'supervised' is the student-alone baseline", "it always runs; name KD methods"
            )
    for key, values in (
        ("lr", cfg.grid.lr),
        ("temperature", cfg.grid.temperature),
        ("alpha", cfg.grid.alpha),
    ):
        if not values or any(not isinstance(v, (int, float)) or v <= 0 for v in values):
            raise KdforgeError(
                f"grid {key} must be a non-empty list of positive numbers, got {values}", "fix it"
            )
    if any(not isinstance(n, int) or n < 1 for n in cfg.grid.steps):
        raise KdforgeError(f"grid steps must be positive integers, got {cfg.grid.steps}", "fix --grid-steps")
    if any(a > 1 for a in cfg.grid.alpha):
        raise KdforgeError(f"KD weights alpha must lie in (0, 1], got {cfg.grid.alpha}", "fix --alpha")
    for key in ("steps", "batch_size", "evaluations", "head_steps"):
        if getattr(cfg, key) < 1:
            raise KdforgeError(
                f"{key} must be at least 1, got {getattr(cfg, key)}", f"fix --{key.replace('_', '-')}"
            )
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        raise KdforgeError(f"seeds must be distinct and not empty, got {cfg.seeds}", "e.g. --seed 0 --seed 1")


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


def fit_teacher_head(
    cfg: DistillConfig, teacher: dict[str, Any], outputs: int, progress: bool
) -> dict[str, Any]:
    """Train a head for the data's classes on the teacher (training split only); return its model dict."""
    from kdforge.config import from_dict
    from kdforge.engine.run import load_splits, run_experiment

    body = {
        "name": teacher["name"],
        "kwargs": teacher["kwargs"],
        "outputs": outputs,
        "checkpoint": teacher["checkpoint"],
    }
    student = {"name": "with_head", "kwargs": {"body": body, "freeze_body": cfg.head == "probe"}}
    recipe = {
        **_base_recipe(cfg, "teacher_head", keep_unlabelled=False),
        "student": student,
        "method": {"name": "supervised"},
    }
    recipe["output_dir"] = cfg.output_dir
    run = from_dict(recipe)
    train_size = len(load_splits(run).train)
    run = from_dict({**recipe, "train": _train_section(cfg, cfg.head_steps, cfg.head_lr, train_size)})
    weights = run.run_dir / "student.safetensors"
    if (run.run_dir / "summary.json").is_file():
        _say(f"teacher head: reusing {weights}")
    else:
        _say(f"teacher outputs {outputs} values, the data has other classes: fitting a head ({cfg.head})")
        resume = (run.run_dir / "checkpoints" / "last.json").is_file()
        run_experiment(run, resume=resume, progress=progress)
    return {"name": "with_head", "kwargs": student["kwargs"], "checkpoint": str(weights)}


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
            recipe["method"], recipe["teacher"] = {"name": arm, "kwargs": {}}, teacher
        train_size = len(load_splits(from_dict(recipe)).train)
        steps = cfg.grid.steps or [cfg.steps]
        recipe["train"] = _train_section(cfg, max(steps), cfg.grid.lr[0], train_size)
        if arm in KD_GRID_METHODS:  # the frozen teacher's logits once, from disk, for every grid point
            recipe["train"]["teacher_cache"] = True
        methods_points = max(
            [len(cfg.grid.temperature) * len(cfg.grid.alpha) for m in cfg.methods if m in KD_GRID_METHODS],
            default=1,
        )
        own_points = 1 if arm in KD_GRID_METHODS else methods_points  # the same budget for every arm
        grid: dict[str, list] = {"train.lr": equal_budget_lrs(cfg.grid.lr, len(cfg.grid.lr) * own_points)}
        if cfg.grid.steps:
            grid["train.max_steps"] = list(cfg.grid.steps)
        if arm in KD_GRID_METHODS:
            grid["method.kwargs.temperature"] = list(cfg.grid.temperature)
            grid["method.kwargs.alpha"] = list(cfg.grid.alpha)
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
    (out / "distill.yaml").write_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
    teacher, outputs = resolve_teacher(cfg)
    probe_run = from_dict({**_base_recipe(cfg, "probe", False), "student": teacher})
    splits = load_splits(probe_run)
    if outputs is not None and outputs != splits.num_classes:
        teacher = fit_teacher_head(cfg, teacher, outputs, progress)
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
    report["provenance"] = provenance(dataclasses.asdict(cfg), list(cfg.seeds))
    paths = write_compression_report(report, out)
    return {"selection": selection, "report": report, "paths": paths, "teacher_scores": scores}
