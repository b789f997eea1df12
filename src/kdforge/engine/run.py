"""From a recipe to a finished run directory.

``<output_dir>/<name>/`` receives ``config.yaml`` (resolved), ``metrics.jsonl``,
``checkpoints/``, the exported student (``student.safetensors`` + ``student.json``,
loadable without the teacher), ``summary.json`` and, when the data name their classes,
``labels.json`` (``{"class_names": [...]}``, class id = position).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from kdforge.config import ModelConfig, RunConfig, save_config
from kdforge.data import Splits, load_dataset
from kdforge.data._batches import iter_batches
from kdforge.engine import checkpoint as ckpt
from kdforge.engine.trainer import Trainer, evaluate
from kdforge.errors import KdforgeError
from kdforge.layers.overparam import refuse_overparameterized
from kdforge.methods._base import Method
from kdforge.models import build_model, count_parameters
from kdforge.registry import METHODS


def load_splits(cfg: RunConfig) -> Splits:
    """Load the recipe's data set with its validation carve-out."""
    d = cfg.data
    kwargs = dict(d.kwargs, data_dir=d.data_dir, seed=cfg.seed, subset=d.subset)
    if d.val_size is not None:
        kwargs["val_size"] = d.val_size
    return load_dataset(d.name, **kwargs)


def export_model(model: nn.Module, mc: ModelConfig, splits: Splits, path: Path) -> None:
    """Save a model as ``<path>.safetensors`` + ``<path>.json`` (builder name and kwargs)."""
    spec = {
        "model": mc.name,
        "kwargs": mc.kwargs,
        "input_shape": list(splits.input_shape),
        "num_classes": splits.num_classes,
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".safetensors.tmp")
    save_file(state, str(tmp))
    os.replace(tmp, path.with_suffix(".safetensors"))
    path.with_suffix(".json").write_text(json.dumps(spec, indent=1))


def load_model_weights(model: nn.Module, path: str | Path, role: str) -> nn.Module:
    """Load an exported ``.safetensors`` into ``model`` with clear shape errors.

    An over-parameterized (MPO/SVD) checkpoint for a plain model is refused with its own
    message (collapse first) rather than as a generic mismatch.
    """
    path = Path(path)
    if not path.is_file():
        raise KdforgeError(
            f"{role} checkpoint '{path}' does not exist",
            f"train the {role} first (e.g. `kdforge quickstart`) or fix {role}.checkpoint",
        )
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise KdforgeError(f"{role} checkpoint '{path}' is corrupt: {e}", "re-export it") from None
    own = model.state_dict()
    refuse_overparameterized(own, state, f"{role} checkpoint '{path}'")
    bad = [k for k in own if k not in state or state[k].shape != own[k].shape]
    if bad or set(state) - set(own):
        raise KdforgeError(
            f"{role} checkpoint '{path}' does not fit the {role} architecture "
            f"(mismatching/missing: {bad[:4]}, unexpected: {sorted(set(state) - set(own))[:4]})",
            f"make {role}.name/kwargs match the model that wrote the checkpoint",
        )
    model.load_state_dict(state)
    return model


def load_student(path: str | Path) -> nn.Module:
    """Rebuild an exported model from ``student.safetensors`` + ``student.json`` (no teacher needed)."""
    path = Path(path)
    spec_path = path.with_suffix(".json")
    if not spec_path.is_file():
        raise KdforgeError(
            f"'{spec_path}' (the model spec beside the weights) is missing",
            "export models with kdforge so both files exist",
        )
    spec = json.loads(spec_path.read_text())
    model = build_model(spec["model"], tuple(spec["input_shape"]), spec["num_classes"], **spec["kwargs"])
    return load_model_weights(model, path.with_suffix(".safetensors"), "model")


def build_method(cfg: RunConfig, splits: Splits) -> Method:
    """Build student, (loaded, frozen) teacher and the method named in the recipe."""
    method_cls = METHODS.get(cfg.method.name)
    torch.manual_seed(cfg.seed)
    student = build_model(cfg.student.name, splits.input_shape, splits.num_classes, **cfg.student.kwargs)
    if cfg.student.checkpoint:
        load_model_weights(student, cfg.student.checkpoint, "student")
    teacher = None
    if cfg.teacher is not None:
        teacher = build_model(cfg.teacher.name, splits.input_shape, splits.num_classes, **cfg.teacher.kwargs)
        if cfg.teacher.checkpoint:
            load_model_weights(teacher, cfg.teacher.checkpoint, "teacher")
        elif method_cls.needs_teacher:
            raise KdforgeError(
                f"method '{cfg.method.name}' needs a trained teacher but teacher.checkpoint is unset",
                "set teacher.checkpoint to an exported model (student.safetensors of a run)",
            )
    example = next(iter_batches(splits.train, min(8, len(splits.train))))
    return method_cls.build(student, teacher, cfg.method.kwargs, example)


def _prepare_run_dir(cfg: RunConfig) -> Path:
    run_dir = cfg.run_dir
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
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
    """Train, select on validation, score on test, export the student, write ``summary.json``."""
    if not resume and ckpt.has_checkpoint(cfg.run_dir / "checkpoints"):
        raise KdforgeError(
            f"run directory '{cfg.run_dir}' already holds a checkpoint",
            "pass --resume to continue it, or choose another run name / output_dir (nothing was overwritten)",
        )
    splits = load_splits(cfg)
    method = build_method(cfg, splits)
    run_dir = _prepare_run_dir(cfg)
    trainer = Trainer(method, splits.train, splits.val, cfg, run_dir, progress=progress, callback=callback)
    if trainer.acc.is_main_process and not resume:
        save_config(cfg, run_dir / "config.yaml")
    t0 = time.perf_counter()
    state = trainer.fit(resume=resume)
    train_time = time.perf_counter() - t0
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
        "val_acc": val["acc"],
        "val_loss": val["loss"],
        "test_acc": test["acc"],
        "test_loss": test["loss"],
        "student_params": count_parameters(student),
        "train_params": sum(p.numel() for p in method.trainable_parameters()),
        "teacher_params": count_parameters(method.teacher) if method.teacher is not None else None,
        "train_time_s": train_time,
        "processes": trainer.world,
        "fingerprint": cfg.fingerprint(),
    }
    if trainer.acc.is_main_process:
        export_model(student, cfg.student, splits, run_dir / "student")
        if splits.class_names is not None:  # id -> label, so predictions map back
            (run_dir / "labels.json").write_text(json.dumps({"class_names": splits.class_names}, indent=1))
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    trainer.acc.wait_for_everyone()
    return summary
