"""The teacher fine-tuned, beside EC: what the big model reaches on the same examples, and at what cost.

EC trains a small student from a *frozen* teacher embedding. The obvious alternative is to
fine-tune the teacher itself (all-MiniLM-L6-v2 plus a linear head, every weight trained) on the
same labelled examples. This module runs that row for an EAsT / EC text pair through the engine
(recipe ``configs/east/vader_<pair>_teacher_ft.yaml``: the pair's data splits, so each seed sees
the same training, validation and test examples as the table's students), chooses the learning
rate on validation only (seeds ``select_seeds``; a single lr is "not tuned"), scores the chosen
runs on the pair's unseen VADER domains, and measures the cost beside the accuracy: training wall
time per seed, parameters, and inference time on the test split side by side with the student.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from kdforge.config import load_recipe
from kdforge.data._batches import TensorData
from kdforge.data.text import vader_all
from kdforge.engine.run import load_splits, load_student
from kdforge.experiments.intervals import Interval, paired_bootstrap
from kdforge.experiments.scoring import length_sorted_accuracy
from kdforge.experiments.sweep import make_trials, run_sweep
from kdforge.models import build_model
from kdforge.models.mlp import count_parameters
from kdforge.report.tables import mean_std

RECIPES = {"tweets": "vader_tweets_teacher_ft.yaml"}  # pair -> fine-tuning recipe under configs/east
ROW = "teacher fine-tuned"
TIMING_REPEATS = 3  # inference timings per model; the median is kept


@dataclass
class FinetuneGrid:
    """What :func:`run_finetune` runs.

    Attributes:
        seeds: Seeds of the table row.
        lrs: Learning rates chosen from on validation (one value: chosen a priori, not tuned).
        select_seeds: Seeds whose mean validation accuracy chooses the lr.
        overrides: Overrides of the fine-tuning recipe for every run (e.g. ``train.epochs=2``).
    """

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    lrs: list[float] = field(default_factory=lambda: [1e-4, 3e-4])
    select_seeds: list[int] = field(default_factory=lambda: [0])
    overrides: list[str] = field(default_factory=list)


def choose_lr(val_acc: dict[float, list[float]]) -> float:
    """The lr with the highest mean validation accuracy (the first listed wins a tie)."""
    return max(val_acc, key=lambda lr: statistics.mean(val_acc[lr]))


def timed_accuracy(model: nn.Module, data: TensorData, repeats: int = 1) -> tuple[float, float]:
    """(accuracy, median wall seconds of ``repeats`` length-sorted passes over ``data``)."""
    times, acc = [], 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        acc = length_sorted_accuracy(model, data)
        times.append(time.perf_counter() - start)
    return acc, statistics.median(times)


def run_finetune(
    pair: str,
    grid: FinetuneGrid,
    configs: Path,
    output_dir: str,
    unseen: Sequence[str],
    student_recipe: str,
    train: Callable[[Path, float, int, list[str], str], tuple[dict, nn.Module]] | None = None,
) -> dict[str, Any]:
    """Fine-tune the teacher over ``grid``: the lr on validation, then every seed at that lr.

    Args:
        pair: The EAsT / EC pair (a key of :data:`RECIPES`).
        grid: Seeds, lrs and selection seeds.
        configs: Directory of the recipes.
        output_dir: Where the runs are written (finished runs are reused from there).
        unseen: VADER domains the chosen runs are also scored on.
        student_recipe: The table's student recipe (e.g. ``vader_tweets_baseline.yaml``): its
            model is timed on its own test split beside the fine-tuned teacher.
        train: ``(recipe, lr, seed, overrides, output_dir) -> (summary, exported model)``;
            default :func:`train_run` (through the engine).

    Returns:
        The results section: ``config``, ``val_grid`` (lr -> mean validation %), ``chosen_lr``,
        ``tuned``, ``runs`` (one per (lr, seed) trained; the chosen lr's carry ``unseen_*``)
        and ``cost`` (parameters and side-by-side inference time against the student).
    """
    train = train or train_run
    recipe = configs / RECIPES[pair]
    cfg = load_recipe(recipe, grid.overrides)
    runs, models = [], {}

    def run(lr: float, seed: int) -> dict[str, Any]:
        done = next((x for x in runs if x["lr"] == lr and x["seed"] == seed), None)
        if done is None:
            summary, models[(lr, seed)] = train(recipe, lr, seed, grid.overrides, output_dir)
            keys = ("val_acc", "test_acc", "best_step", "steps", "train_time_s", "student_params")
            done = {"row": ROW, "lr": lr, "seed": seed, **{k: summary[k] for k in keys}}
            runs.append(done)
        return done

    val = {lr: [run(lr, s)["val_acc"] for s in grid.select_seeds] for lr in grid.lrs}
    chosen = choose_lr(val)
    max_len = cfg.data.kwargs.get("max_len", 64)
    unseen_data = {d: vader_all(d, max_len=max_len) for d in unseen}
    for seed in grid.seeds:
        row = run(chosen, seed)
        start = time.perf_counter()
        for d, data in unseen_data.items():
            row[f"unseen_{d}"] = length_sorted_accuracy(models[(chosen, seed)], data)
        row["unseen_score_s"] = time.perf_counter() - start
    splits = load_splits(cfg)
    cost = inference_cost(models[(chosen, grid.seeds[0])], splits.test, configs / student_recipe)
    return {
        "config": {
            "recipe": RECIPES[pair],
            "train_examples": len(splits.train),
            "max_len": max_len,
            "epochs": cfg.train.epochs,
            "batch_size": cfg.data.batch_size,
            "eval_every_steps": cfg.train.eval_every_steps,
            "lrs": grid.lrs,
            "select_seeds": grid.select_seeds,
            "seeds": grid.seeds,
            "overrides": grid.overrides,
        },
        "val_grid": {str(lr): 100 * statistics.mean(v) for lr, v in val.items()},
        "chosen_lr": chosen,
        "tuned": len(grid.lrs) > 1,
        "runs": runs,
        "cost": cost,
    }


def train_run(
    recipe: Path, lr: float, seed: int, overrides: list[str], output_dir: str
) -> tuple[dict, nn.Module]:
    """One fine-tuning run through the engine (reused when its run directory is finished)."""
    name = f"{recipe.stem}_lr{lr}"
    (trial,) = make_trials(recipe, {}, [seed], name=name, extra_overrides=[*overrides, f"train.lr={lr}"])
    (summary,) = run_sweep([trial], output_dir, progress=False)
    return summary, load_student(Path(output_dir) / trial.name / "student")


def inference_cost(teacher: nn.Module, teacher_test: TensorData, student_recipe: Path) -> dict[str, Any]:
    """Parameters and test-split inference seconds of the fine-tuned teacher and the table's student.

    Both are timed in this process, one after the other (median of :data:`TIMING_REPEATS`
    length-sorted passes), each on the test split as it reads it in the table (its own
    ``max_len``). The student is built fresh from its recipe: its cost does not depend on weights.
    """
    student_cfg = load_recipe(student_recipe)
    student_splits = load_splits(student_cfg)
    student = build_model(
        student_cfg.student.name,
        student_splits.input_shape,
        student_splits.num_classes,
        **student_cfg.student.kwargs,
    )
    _, teacher_s = timed_accuracy(teacher, teacher_test, TIMING_REPEATS)
    _, student_s = timed_accuracy(student, student_splits.test, TIMING_REPEATS)
    return {
        "teacher_params": count_parameters(teacher),
        "student_params": count_parameters(student),
        "student": student_cfg.student.name,
        "test_examples": len(teacher_test),
        "teacher_infer_s": teacher_s,
        "student_infer_s": student_s,
    }


def versus_ec(
    ec_rows: Sequence[dict], ft_rows: Sequence[dict], unseen_cols: Sequence[str]
) -> dict[str, dict[str, float]]:
    """EC row minus the fine-tuned teacher, paired by seed: test and unseen-mean accuracy intervals.

    Rows of both lists are matched on ``seed``; 95% percentile bootstrap over the seeds
    (:func:`kdforge.experiments.intervals.paired_bootstrap`: seed variation only).
    """
    ft = {x["seed"]: x for x in ft_rows}
    pairs = [(x, ft[x["seed"]]) for x in ec_rows if x["seed"] in ft]

    def unseen_mean(x: dict) -> float:
        return statistics.mean(x[c] for c in unseen_cols)

    test = paired_bootstrap([e["test_acc"] for e, _ in pairs], [f["test_acc"] for _, f in pairs])
    unseen = paired_bootstrap([unseen_mean(e) for e, _ in pairs], [unseen_mean(f) for _, f in pairs])
    return {"test": test.to_dict(), "unseen_mean": unseen.to_dict(), "seeds": [e["seed"] for e, _ in pairs]}


def chosen_runs(section: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs of the chosen lr (the table row), in seed order."""
    seeds = section["config"]["seeds"]
    rows = [x for x in section["runs"] if x["lr"] == section["chosen_lr"] and x["seed"] in seeds]
    return sorted(rows, key=lambda x: x["seed"])


def finetune_text(section: dict[str, Any], ec_row: str, student_train_s: Sequence[float]) -> str:
    """The paragraphs under the table: how the row was trained, its cost, EC against it, its provenance."""
    c, cost, rows = section["config"], section["cost"], chosen_runs(section)
    grid = ", ".join(f"lr={lr} {acc:.2f}" for lr, acc in section["val_grid"].items())
    lr_text = (
        f"lr chosen from {c['lrs']} on the mean validation accuracy of seeds {c['select_seeds']} "
        f"({grid}): **{section['chosen_lr']}**"
        if section["tuned"]
        else f"lr {section['chosen_lr']} chosen a priori (**not tuned**; validation {grid})"
    )
    over = f"; overrides `{' '.join(c['overrides'])}`" if c["overrides"] else ""
    params = f"{cost['teacher_params']:,} parameters vs {cost['student_params']:,}"
    times = f"{cost['teacher_infer_s']:.2f} s vs {cost['student_infer_s']:.3f} s"
    v, prov = section["versus_ec"], section["provenance"]
    test, unseen = Interval(**v["test"]).format(100), Interval(**v["unseen_mean"]).format(100)
    machine = f"{prov['machine']['processor']} x{prov['machine']['cpu_count']}"
    return "\n\n".join(
        [
            f"Row *{ROW}*: all-MiniLM-L6-v2 + a linear head, every weight trained (AdamW, linear "
            f"schedule) on the same {c['train_examples']:,} training examples of each seed's split, "
            f"{c['epochs']} epoch{'s' if c['epochs'] != 1 else ''} of batch {c['batch_size']}, "
            f"sequences cut at {c['max_len']} tokens "
            f"(unseen sets too), checkpoint chosen on validation every {c['eval_every_steps']} steps; "
            f"{lr_text}{over}. Recipe `configs/east/{c['recipe']}`.",
            f"Cost per seed: training {mean_std([x['train_time_s'] for x in rows], 1.0, 0)} s wall "
            f"(text-CNN baseline {mean_std(list(student_train_s), 1.0, 0)} s, recorded in its own runs; "
            f"1 thread each); {params} for the `{cost['student']}` student "
            f"({cost['teacher_params'] / cost['student_params']:.0f}x); inference on the "
            f"{cost['test_examples']} test texts {times} "
            f"({cost['teacher_infer_s'] / cost['student_infer_s']:.0f}x, side by side, median of "
            f"{TIMING_REPEATS}).",
            f"{ec_row} vs {ROW} (EC minus fine-tuned, points, paired by seed {v['seeds']}, 95% "
            f"bootstrap over the seeds): test {test}; unseen mean {unseen}.",
            f"<sub>{ROW}: command `{prov['command']}` · date: {prov['date']} · commit: "
            f"{prov['git_commit']} · machine: {machine} · torch {prov['versions'].get('torch')}</sub>",
        ]
    )
