"""The teacher of ``kdforge distill``: resolved from what the user gives, a head fitted for the
data's classes when it has none (never distil from an untrained head), scored once."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kdforge.distill_config import DistillConfig, base_recipe, data_section, train_section
from kdforge.errors import KdforgeError


def print_progress(message: str) -> None:
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

    say = say or print_progress
    student = _head_student(cfg, teacher, outputs)
    recipe = {
        **base_recipe(cfg, "teacher_head", keep_unlabelled=False),
        "student": student,
        "method": {"name": "supervised"},
    }
    recipe["output_dir"] = cfg.output_dir
    train_size = len(load_splits(from_dict(recipe)).train)
    recipe["train"] = train_section(cfg, cfg.head_steps, cfg.head_lr, train_size)
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
        {"teacher": teacher, "data": data_section(cfg, False), "seed": cfg.seeds[0]}, sort_keys=True
    )
    if path.is_file() and json.loads(path.read_text()).get("teacher") == key:
        return json.loads(path.read_text())
    run = from_dict(
        {**base_recipe(cfg, "teacher", False), "student": teacher, "method": {"name": "supervised"}}
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
