"""From a recipe to a finished run directory.

``<output_dir>/<name>/`` receives ``config.yaml`` (resolved), ``metrics.jsonl``,
``checkpoints/``, the exported student (``student.safetensors`` + ``student.json``,
loadable without the teacher), ``summary.json`` and, when the data name their classes,
``labels.json`` (``{"class_names": [...]}``, class id = position), and when they record how
raw inputs were prepared, ``preprocessing.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from kdforge.config import RunConfig, save_config
from kdforge.data import Splits, load_dataset
from kdforge.data._batches import iter_batches
from kdforge.engine import checkpoint as ckpt
from kdforge.engine.lock import RunLock
from kdforge.engine.teacher_cache import attach_teacher_outputs
from kdforge.engine.trainer import Trainer, evaluate
from kdforge.errors import KdforgeError
from kdforge.io import load_weights, model_spec, save_model
from kdforge.methods._base import Method
from kdforge.models import build_model, check_num_classes, count_parameters, load_model
from kdforge.models.reference import carries_weights
from kdforge.registry import METHODS

load_student = load_model  # rebuild an exported student (the name scripts and the README use)


def load_splits(cfg: RunConfig) -> Splits:
    """Load the recipe's data set with its validation carve-out."""
    d = cfg.data
    kwargs = dict(d.kwargs, data_dir=d.data_dir, seed=cfg.seed, subset=d.subset)
    if d.val_size is not None:
        kwargs["val_size"] = d.val_size
    return load_dataset(d.name, **kwargs)


def build_method(cfg: RunConfig, splits: Splits) -> Method:
    """Build student, (loaded, frozen) teacher and the method named in the recipe."""
    method_cls = METHODS.get(cfg.method.name)
    torch.manual_seed(cfg.seed)
    student = build_model(cfg.student.name, splits.input_shape, splits.num_classes, **cfg.student.kwargs)
    if cfg.student.checkpoint:
        load_weights(student, cfg.student.checkpoint, "student")
    teacher = None
    if cfg.teacher is not None:
        teacher = build_model(cfg.teacher.name, splits.input_shape, splits.num_classes, **cfg.teacher.kwargs)
        if cfg.teacher.checkpoint:
            load_weights(teacher, cfg.teacher.checkpoint, "teacher")
        elif method_cls.needs_teacher and not carries_weights(cfg.teacher.name):
            raise KdforgeError(
                f"method '{cfg.method.name}' needs a trained teacher but teacher.checkpoint is unset",
                "set teacher.checkpoint to an exported model (student.safetensors of a run), or name a "
                "teacher that carries its weights (hf:DIR, torchscript:FILE)",
            )
    example = next(iter_batches(splits.train, min(8, len(splits.train))))
    inputs = {k: v for k, v in example.items() if k != "y"}
    check_num_classes(student, inputs, splits.num_classes, "student")
    if teacher is not None:
        check_num_classes(teacher, inputs, splits.num_classes, "teacher")
    return method_cls.build(student, teacher, cfg.method.kwargs, example)


def _prepare_run_dir(cfg: RunConfig) -> Path:
    run_dir = cfg.run_dir
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"  # per process: ranks probe at the same time
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise KdforgeError(
            f"cannot write to run directory '{run_dir}': {e.strerror or e}",
            "choose a writable output_dir (--output-dir or output_dir=...)",
        ) from None
    return run_dir


def run_experiment(
    cfg: RunConfig, resume: bool = False, progress: bool = True, callback=None
) -> dict[str, Any]:
    """Train, select on validation, score on test, export the student, write ``summary.json``.

    The run directory is locked for the whole run (one process per run directory; under
    ``accelerate launch`` the main process holds it).

    Raises:
        TrainingInterrupted: on SIGINT/SIGTERM, after a checkpoint of the current step.
    """
    if os.environ.get("RANK", "0") != "0":
        return _train_and_export(cfg, resume, progress, callback)
    with RunLock(cfg.run_dir):
        return _train_and_export(cfg, resume, progress, callback)


def _train_and_export(cfg: RunConfig, resume: bool, progress: bool, callback) -> dict[str, Any]:
    splits = load_splits(cfg)
    method = build_method(cfg, splits)  # checks every recipe key before the run directory is judged
    if not resume and ckpt.has_checkpoint(cfg.run_dir / "checkpoints"):
        raise KdforgeError(
            f"run directory '{cfg.run_dir}' already holds a checkpoint",
            "pass --resume to continue it, or choose another run name / output_dir (nothing was overwritten)",
        )
    splits = load_splits(cfg)
    method = build_method(cfg, splits)
    if cfg.train.teacher_cache:
        splits.train = attach_teacher_outputs(method, splits, cfg.method.name, progress=progress)
    run_dir = _prepare_run_dir(cfg)
    trainer = Trainer(method, splits.train, splits.val, cfg, run_dir, progress=progress, callback=callback)
    if trainer.acc.is_main_process and not resume:
        save_config(cfg, run_dir / "config.yaml")
    state = trainer.fit(resume=resume)
    trainer.load_best()
    dev = trainer.acc.device
    val = evaluate(method, splits.val, cfg.data.eval_batch_size, dev)
    test = evaluate(method, splits.test, cfg.data.eval_batch_size, dev)
    student = method.export()
    summary = {
        "name": cfg.name,
        "method": cfg.method.name,
        "seed": cfg.seed,
        "dataset": splits.name,
        "steps": state.step,
        "best_step": state.best_step,
        "stopped_early": state.stopped_early,
        "skipped_steps": state.skipped_steps,
        "val_acc": val["acc"],
        "val_loss": val["loss"],
        "test_acc": test["acc"],
        "test_loss": test["loss"],
        "student_params": count_parameters(student),
        "train_params": sum(p.numel() for p in method.trainable_parameters()),
        "teacher_params": count_parameters(method.teacher) if method.teacher is not None else None,
        "train_time_s": state.train_time_s,  # summed over resumes
        "processes": trainer.world,
        "fingerprint": cfg.fingerprint(),
    }
    if trainer.acc.is_main_process:
        spec = model_spec(cfg.student.name, cfg.student.kwargs, splits.input_shape, splits.num_classes)
        save_model(student, spec, run_dir / "student")
        if splits.class_names is not None:  # id -> label, so predictions map back
            (run_dir / "labels.json").write_text(json.dumps({"class_names": splits.class_names}, indent=1))
        if splits.preprocessing is not None:  # how to prepare new inputs for the exported student
            (run_dir / "preprocessing.json").write_text(json.dumps(splits.preprocessing, indent=1))
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    trainer.acc.wait_for_everyone()
    return summary
