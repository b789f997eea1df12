"""Teacher-output cache on the first quickstart's setting: what a KD step costs with and without it.

Measured side by side in one process (the machine is shared and noisy):

* rounds (:func:`measure_rounds`): the student alone, KD (teacher run on every batch) and KD
  reading a warm cache each run a short block of engine steps, in rotating order; per-step wall
  and process-CPU times come from the engine's step callback, warm-up excluded, and each
  block gives its medians. Ratios are paired within a round (:func:`cache_results`);
* step by step (:func:`interleaved_steps`): the student alone and KD + cache take turns;
* the fill (one pass of the teacher over the pool, from a cold cache directory) and a warm read;
* :func:`identical_check`: KD with and without the cache ends with the same metrics and weights.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kdforge.config import from_dict
from kdforge.data import Splits
from kdforge.data._batches import TensorData, iter_batches
from kdforge.engine.run import build_method, load_splits, load_student, run_experiment
from kdforge.engine.teacher_cache import attach_teacher_outputs
from kdforge.engine.trainer import Trainer

WARMUP = 10  # untimed steps at the start of every timed block
BLOCK = 100  # interleaved steps per paired ratio
BATCH_SIZE = 128
KINDS = ("student", "kd", "kd_cached")
METRICS = ("val_acc", "val_loss", "test_acc", "test_loss")
TARGET = 1.2  # kd_cached_over_student


def recipes(output_dir: str, data: dict) -> list[dict]:
    """Teacher, student alone and KD recipes (the first quickstart's; lr and T, alpha chosen there)."""
    teacher = {"name": "cnn", "kwargs": {"channels": [32, 64], "fc": 128, "global_pool": False}}
    student = {"name": "mlp", "kwargs": {"hidden": [32]}}
    train = {"epochs": 1, "lr": 0.002, "optimizer": "adamw", "schedule": "cosine"}
    base = {"output_dir": output_dir, "seed": 0, "data": data, "train": train}
    students = {**base, "train": {**train, "lr": 0.006}}
    kd = {"name": "kd", "kwargs": {"temperature": 2.0, "alpha": 0.5}}
    checkpoint = str(Path(output_dir) / "teacher" / "student.safetensors")
    return [
        {**base, "name": "teacher", "student": teacher, "method": {"name": "supervised"}},
        {**students, "name": "student_alone", "student": student, "method": {"name": "supervised"}},
        {
            **students,
            "name": "student_kd",
            "student": student,
            "method": kd,
            "teacher": {**teacher, "checkpoint": checkpoint},
        },
    ]


def with_train(recipe: dict, root: Path, name: str, **train: Any) -> dict:
    """``recipe`` renamed to ``name`` under ``root``, with ``train`` keys overridden."""
    return {**recipe, "name": name, "output_dir": str(root), "train": {**recipe["train"], **train}}


def time_steps(
    recipe: dict, splits: Splits, train_data: TensorData, steps: int, root: Path
) -> tuple[list[float], list[float]]:
    """Per-step wall and process-CPU times of ``steps`` engine steps (warm-up dropped), no evaluation."""
    cfg = from_dict(with_train(recipe, root, "timing", max_steps=steps, log_every_steps=10**6))
    method = build_method(cfg, splits)
    stamps: list[tuple[float, float]] = []
    trainer = Trainer(
        method,
        train_data,
        splits.val,
        cfg,
        cfg.run_dir,
        progress=False,
        callback=lambda _step, _values: stamps.append((time.perf_counter(), time.process_time())),
    )
    trainer.eval_every = trainer.ckpt_every = steps + 1  # time training steps only
    trainer.fit()
    pairs = list(zip(stamps[WARMUP - 1 : -1], stamps[WARMUP:], strict=True))
    return [b[0] - a[0] for a, b in pairs], [b[1] - a[1] for a, b in pairs]


def measure_rounds(
    setups: dict[str, tuple[dict, TensorData]], splits: Splits, rounds: int, steps: int, root: Path
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per round and configuration of :data:`KINDS`, the median wall and CPU seconds per step.

    Each round runs every configuration for ``steps`` steps (the first :data:`WARMUP` untimed),
    the first to go rotating from round to round.
    """
    wall: dict[str, list[float]] = {k: [] for k in KINDS}
    cpu: dict[str, list[float]] = {k: [] for k in KINDS}
    for r in range(rounds):
        for kind in KINDS[r % 3 :] + KINDS[: r % 3]:
            recipe, train_data = setups[kind]
            with tempfile.TemporaryDirectory(dir=root) as run_root:
                step_wall, step_cpu = time_steps(recipe, splits, train_data, steps, Path(run_root))
            wall[kind].append(statistics.median(step_wall))
            cpu[kind].append(statistics.median(step_cpu))
            ms_wall, ms_cpu = 1e3 * wall[kind][-1], 1e3 * cpu[kind][-1]
            print(f"round {r} {kind}: {ms_wall:.2f} ms/step wall, {ms_cpu:.2f} ms CPU", flush=True)
    return wall, cpu


def _endless_batches(data: TensorData) -> Iterator[dict]:
    return (
        b
        for epoch in range(10**6)
        for b in iter_batches(data, BATCH_SIZE, seed=0, epoch=epoch, drop_last=True)
    )


def interleaved_steps(
    setups: dict[str, tuple[dict, TensorData]], splits: Splits, steps: int, root: Path, block: int = BLOCK
) -> dict[str, list[float]]:
    """Student alone and KD + cache taking turns step by step: paired ratios per block of steps.

    Each step is a batch gather plus :meth:`Trainer._train_step` (what ``fit`` does per step
    besides logging), timed in wall and process-CPU time; who goes first alternates. Load bursts
    of the shared machine then hit both alike. Returns, per block of ``block`` steps, the
    ratio of the two configurations' median step times (``wall`` and ``cpu``).
    """
    trainers, batches = {}, {}
    for kind in ("student", "kd_cached"):
        recipe, data = setups[kind]
        cfg = from_dict(with_train(recipe, root, f"interleaved_{kind}", max_steps=WARMUP + steps))
        trainers[kind] = Trainer(
            build_method(cfg, splits), data, splits.val, cfg, cfg.run_dir, progress=False
        )
        trainers[kind].method.train()
        batches[kind] = _endless_batches(data)
    times: dict[str, list[tuple[float, float]]] = {"student": [], "kd_cached": []}
    for i in range(WARMUP + steps):
        for kind in ("student", "kd_cached") if i % 2 else ("kd_cached", "student"):
            t, c = time.perf_counter(), time.process_time()
            trainers[kind]._train_step(next(batches[kind]))
            times[kind].append((time.perf_counter() - t, time.process_time() - c))
    out: dict[str, list[float]] = {"wall": [], "cpu": []}
    for start in range(WARMUP, WARMUP + steps - block + 1, block):
        for j, key in enumerate(("wall", "cpu")):
            med = {k: statistics.median(x[j] for x in v[start : start + block]) for k, v in times.items()}
            out[key].append(med["kd_cached"] / med["student"])
    return out


def identical_check(kd_recipe: dict, root: Path, steps: int) -> dict:
    """KD for ``steps`` steps with and without the cache: metrics and student weights compared."""
    out = {}
    for cached in (False, True):
        name = "kd_cached" if cached else "kd"
        rec = with_train(kd_recipe, root, name, max_steps=steps, teacher_cache=cached)
        summary = run_experiment(from_dict(rec), progress=False)
        out[name] = {k: summary[k] for k in (*METRICS, "steps", "train_time_s")}
    a = load_student(root / "kd" / "student")
    b = load_student(root / "kd_cached" / "student")
    same_weights = all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    diffs = {k: abs(out["kd"][k] - out["kd_cached"][k]) for k in METRICS}
    out.update(
        max_abs_metric_diff=max(diffs.values()),
        identical=max(diffs.values()) <= 1e-6,
        same_student_weights=same_weights,
    )
    return out


@dataclass
class CacheMeasurements:
    """What one benchmark run measured (seconds), before ratios are taken: see :func:`measure`."""

    round_wall: dict[str, list[float]]  # kind -> median wall seconds per step, one per round
    round_cpu: dict[str, list[float]]  # kind -> median CPU seconds per step, one per round
    interleaved: dict[str, list[float]]  # wall/cpu -> block ratios (:func:`interleaved_steps`)
    interleaved_steps: int
    fill_s: float
    warm_attach_s: float
    check: dict  # :func:`identical_check`
    teacher_steps: int
    teacher_val_acc: float
    train_size: int
    val_size: int
    steps: int  # per configuration and round, warm-up included
    recipes: list[dict]
    wall_time_s: float


@contextlib.contextmanager
def _cold_cache(directory: Path) -> Iterator[None]:
    """``KDFORGE_CACHE`` points at ``directory`` (empty: the fill is really timed), then is restored."""
    old = os.environ.get("KDFORGE_CACHE")
    os.environ["KDFORGE_CACHE"] = str(directory)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("KDFORGE_CACHE", None)
        else:
            os.environ["KDFORGE_CACHE"] = old


def measure(
    rounds: int, steps: int, teacher_steps: int, check_steps: int, interleaved: int, data_dir: str | None
) -> CacheMeasurements:
    """The whole benchmark, in a temporary directory with a cold teacher-output cache.

    Trains the teacher briefly, times filling the cache and reading it warm, then the rounds
    (:func:`measure_rounds`), the step-by-step turns (:func:`interleaved_steps`) and the
    :func:`identical_check`.

    Args:
        rounds: Rounds over the three configurations.
        steps: Steps per configuration and round (the first :data:`WARMUP` untimed).
        teacher_steps: Training steps of the teacher (step times do not depend on its weights).
        check_steps: KD steps with and without the cache before comparing them.
        interleaved: Steps per configuration taking turns (one ratio per :data:`BLOCK`).
        data_dir: Fashion-MNIST's directory (``None``: the data set's default).
    """
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, _cold_cache(Path(tmp) / "cache"):
        root = Path(tmp)
        data = {"name": "fashion_mnist", "data_dir": data_dir, "batch_size": BATCH_SIZE}
        teacher_rec, student_rec, kd_rec = recipes(str(root / "runs"), data)
        teacher_cfg = from_dict(with_train(teacher_rec, root / "runs", "teacher", max_steps=teacher_steps))
        teacher = run_experiment(teacher_cfg, progress=False)
        kd_cfg = from_dict(kd_rec)
        splits = load_splits(kd_cfg)
        t0 = time.perf_counter()
        cached_train = attach_teacher_outputs(build_method(kd_cfg, splits), splits, "kd", progress=False)
        fill_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        attach_teacher_outputs(build_method(kd_cfg, splits), splits, "kd", progress=False)
        warm_attach_s = time.perf_counter() - t0
        setups = {
            "student": (student_rec, splits.train),
            "kd": (kd_rec, splits.train),
            "kd_cached": (kd_rec, cached_train),
        }
        wall, cpu = measure_rounds(setups, splits, rounds, steps, root)
        inter = interleaved_steps(setups, splits, interleaved, root / "interleaved")
        check = identical_check(kd_rec, root / "check", check_steps)
    return CacheMeasurements(
        round_wall=wall,
        round_cpu=cpu,
        interleaved=inter,
        interleaved_steps=interleaved,
        fill_s=fill_s,
        warm_attach_s=warm_attach_s,
        check=check,
        teacher_steps=teacher_steps,
        teacher_val_acc=teacher["val_acc"],
        train_size=len(splits.train),
        val_size=len(splits.val),
        steps=steps,
        recipes=[teacher_rec, student_rec, kd_rec],
        wall_time_s=time.perf_counter() - t_start,
    )
