"""The settings of ``kdforge distill`` (every default beside the code it configures) and their checks.

Only dataclasses and light checks live here, so that the CLI can read the defaults without
importing torch; the pipeline is :mod:`kdforge.distill`.
"""

from __future__ import annotations

import math
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
        head: how a head for the data's classes is fitted when the teacher has none (its output
            width is not the data's class count, or an ``hf:`` directory without a trained head
            for these classes): ``probe`` (linear probe on the frozen teacher) or ``finetune``
            (train the whole teacher with the new head).
        head_steps: optimizer steps of the head fitting; head_lr: its learning rate.
        data: registered data set name (``kdforge list datasets``); data_dir / data_kwargs: its
            options; val_size: validation examples carved from the training split.
        labelled: keep only this many training labels; the rest is an unlabelled pool that only
            distilled students see, labelled by the teacher (``None``: every label is used).
        unlabelled: size of that pool (``None``: every other training example).
        student: registered student model name; student_kwargs: its options.
        methods: distillation methods, each trained and tuned like the student alone.
        method_options: options per method (``{"fitnet": {"student_path": "net.1"}}``), checked
            against the method's options dataclass. A KD ``temperature`` or ``alpha`` given here
            is fixed instead of tuned over ``grid``.
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
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])
    steps: int = 1000
    batch_size: int = 64
    evaluations: int = 10
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    grid: TuningGrid = field(default_factory=TuningGrid)
    output_dir: str = "runs/distill"
    timing_batch: int = 256


def check_config(cfg: DistillConfig) -> None:
    """Refuse settings that cannot work before anything trains (one message with its fix)."""
    from kdforge.config import check_kwargs
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
    for name, options in cfg.method_options.items():
        if name not in cfg.methods:
            raise KdforgeError(
                f"options are given for method '{name}', which is not among the methods {cfg.methods}",
                f"add --method {name}, or drop its --method-option",
            )
        check_kwargs("method", name, options, METHODS.get(name).Config)  # unknown keys list the valid ones
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        raise KdforgeError(f"seeds must be distinct and not empty, got {cfg.seeds}", "e.g. --seed 0 --seed 1")


def parse_method_options(pairs: list[str], methods: list[str]) -> dict[str, dict[str, Any]]:
    """``--method-option`` values, ``KEY=VALUE`` or ``METHOD.KEY=VALUE``, as options per method.

    ``VALUE`` is read as YAML (``2``, ``0.5``, ``[64]``, ``net.1``). A plain ``KEY`` applies to
    every method in ``methods``; ``METHOD.KEY`` (``METHOD`` one of ``methods``) to that one.
    Keys and types are checked later, against each method's options (:func:`check_config`).

    Raises:
        KdforgeError: a value without ``=`` or without a key.
    """
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise KdforgeError(
                f"--method-option '{pair}' is not KEY=VALUE", "write e.g. --method-option temperature=4"
            )
        prefix, dot, rest = key.partition(".")
        targets, key = ([prefix], rest) if dot and prefix in methods else (methods, key)
        for method in targets:
            out.setdefault(method, {})[key] = yaml.safe_load(raw)
    return out


def kd_axes(cfg: DistillConfig, method: str) -> dict[str, list[float]]:
    """The KD options tuned for ``method`` over the grid: temperature and alpha, each unless fixed
    by ``method_options`` (empty for a method that is not in :data:`KD_GRID_METHODS`)."""
    if method not in KD_GRID_METHODS:
        return {}
    fixed = cfg.method_options.get(method, {})
    grid = {"temperature": cfg.grid.temperature, "alpha": cfg.grid.alpha}
    return {key: list(values) for key, values in grid.items() if key not in fixed}


def data_section(cfg: DistillConfig, keep_unlabelled: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"name": cfg.data, "data_dir": cfg.data_dir, "batch_size": cfg.batch_size}
    data["kwargs"] = dict(cfg.data_kwargs)
    if cfg.val_size is not None:
        data["val_size"] = cfg.val_size
    if cfg.labelled is not None:
        pool = {"labelled": cfg.labelled, "unlabelled": cfg.unlabelled, "keep_unlabelled": keep_unlabelled}
        data = {**data, "name": "few_labels", "kwargs": {"base": cfg.data, **data["kwargs"], **pool}}
    return data


def train_section(cfg: DistillConfig, steps: int, lr: float, train_size: int) -> dict[str, Any]:
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


def base_recipe(cfg: DistillConfig, name: str, keep_unlabelled: bool) -> dict[str, Any]:
    return {
        "name": name,
        "output_dir": str(Path(cfg.output_dir) / "runs"),
        "seed": cfg.seeds[0],
        "data": data_section(cfg, keep_unlabelled),
    }
