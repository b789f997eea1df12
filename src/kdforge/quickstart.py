"""``kdforge quickstart``: distillation where it pays, few labels plus an unlabelled pool.

The setting, common in practice: 500 labelled Fashion-MNIST images and 20,000 unlabelled
ones. A CNN teacher is trained on the labelled images (once; later runs reuse it). Then
``kdforge distill`` trains a small MLP student alone on the labelled images and with Hinton KD,
which also learns from the teacher's soft targets on the unlabelled pool; both arms are tuned
over the same learning rates and schedule lengths (KD also over the temperature) on validation,
and the test split is only scored. The settings below were chosen on validation only
(``benchmarks/quickstart_selection.py``).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdforge.distill import DistillConfig, TuningGrid, distill


@dataclass
class QuickstartSettings:
    """The quickstart's setting (defaults beside the code they configure)."""

    labelled: int = 500  # training images that keep their label
    unlabelled: int = 20000  # unlabelled pool the teacher labels for the distilled student
    val_size: int = 1000  # labelled validation images (selection only)
    teacher: dict[str, Any] = field(
        default_factory=lambda: {
            "name": "cnn",
            "kwargs": {"channels": [32, 64], "fc": 128, "global_pool": False},
        }
    )
    teacher_steps: int = 300  # validation accuracy is flat after ~300 steps on 500 images
    teacher_lr: float = 0.002
    student_kwargs: dict[str, Any] = field(default_factory=lambda: {"hidden": [64]})
    steps: int = 1500  # longest student schedule (grid.steps lists those tried by both arms)
    batch_size: int = 64
    grid: TuningGrid = field(
        default_factory=lambda: TuningGrid(
            lr=[0.003, 0.01], temperature=[2.0, 4.0], alpha=[0.9], steps=[500, 1500]
        )
    )


def _data(dataset: str, data_dir: str | None, s: QuickstartSettings) -> dict[str, Any]:
    kwargs = {"base": dataset, "labelled": s.labelled, "unlabelled": s.unlabelled, "keep_unlabelled": False}
    return {
        "name": "few_labels",
        "data_dir": data_dir,
        "val_size": s.val_size,
        "batch_size": s.batch_size,
        "kwargs": kwargs,
    }


def teacher_recipe(
    output_dir: str, dataset: str, data_dir: str | None, seed: int, s: QuickstartSettings
) -> dict[str, Any]:
    """The teacher's recipe: the CNN trained on the labelled images only."""
    return {
        "name": f"teacher-seed{seed}",
        "output_dir": output_dir,
        "seed": seed,
        "data": _data(dataset, data_dir, s),
        "student": s.teacher,
        "method": {"name": "supervised"},
        "train": {
            "epochs": 10**6,
            "max_steps": s.teacher_steps,
            "lr": s.teacher_lr,
            "eval_every_steps": max(1, s.teacher_steps // 6),
        },
    }


def distill_config(
    output_dir: str, dataset: str, data_dir: str | None, seed: int, s: QuickstartSettings
) -> DistillConfig:
    """The ``kdforge distill`` settings of the quickstart for one seed."""
    return DistillConfig(
        teacher=str(Path(output_dir) / f"teacher-seed{seed}" / "student.safetensors"),
        data=dataset,
        data_dir=data_dir,
        val_size=s.val_size,
        labelled=s.labelled,
        unlabelled=s.unlabelled,
        student="mlp",
        student_kwargs=dict(s.student_kwargs),
        methods=["kd"],
        seeds=[seed],
        steps=s.steps,
        batch_size=s.batch_size,
        grid=dataclasses.replace(s.grid),
        output_dir=str(Path(output_dir) / f"distill-seed{seed}"),
    )


def quickstart(
    output_dir: str = "runs/quickstart",
    dataset: str = "fashion_mnist",
    data_dir: str | None = None,
    seed: int = 0,
    progress: bool = True,
    settings: QuickstartSettings | None = None,
) -> dict[str, Any]:
    """Train (or reuse) the teacher, run ``distill``; return its result, the KD gain and wall time.

    Finished runs are reused, so a second call (or a call after Ctrl-C) continues where it stopped.
    """
    from kdforge.config import from_dict
    from kdforge.engine.run import run_experiment

    s = settings or QuickstartSettings()
    t0 = time.perf_counter()
    teacher = from_dict(teacher_recipe(output_dir, dataset, data_dir, seed, s))
    if not (teacher.run_dir / "summary.json").is_file():
        print(f"[quickstart] training the teacher on {s.labelled} labelled images (once)", flush=True)
        resume = (teacher.run_dir / "checkpoints" / "last.json").is_file()
        run_experiment(teacher, resume=resume, progress=progress)
    teacher_time = time.perf_counter() - t0
    result = distill(distill_config(output_dir, dataset, data_dir, seed, s), progress=progress)
    sel = result["selection"]
    gain = 100 * (sel["kd"]["test_acc"][0] - sel["student_alone"]["test_acc"][0])
    return {
        **result,
        "kd_gain_points": gain,
        "teacher_time_s": teacher_time,
        "wall_time_s": time.perf_counter() - t0,
    }
