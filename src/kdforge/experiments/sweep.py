"""Sweeps: one recipe x a grid of overrides x seeds, run through the engine, resumable.

A sweep is a list of :class:`Trial` s. Each trial is one engine run in its own directory
``<output_dir>/<trial.name>/``. Running a sweep again skips every trial whose directory
already holds a ``summary.json`` of the same recipe and continues a half-finished one from
its last checkpoint, so a killed sweep loses at most the steps since the last checkpoint.

Example::

    trials = make_trials("configs/fmnist_kd.yaml", {"train.lr": [1e-3, 3e-3]}, seeds=[0, 1, 2])
    summaries = run_sweep(trials, "runs/kd_sweep")
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from kdforge.config import RunConfig, apply_overrides, from_dict, load_recipe, save_config, set_dotted
from kdforge.engine import checkpoint as ckpt
from kdforge.engine.run import run_experiment
from kdforge.errors import KdforgeError
from kdforge.report.tables import load_summary

TRIAL_FILE = "trial.json"  # written into each trial's run directory: name, recipe, overrides, seed


@dataclass
class Trial:
    """One run of a sweep.

    Attributes:
        name: Run directory name, unique within the sweep's ``output_dir``.
        config: The fully resolved recipe (overrides and seed already applied; ``config.name``
            is ``name``).
        overrides: The grid point, e.g. ``{"train.lr": 0.01, "method.kwargs.temperature": 4}``.
        seed: The run seed (also ``config.seed``).
        recipe: Name of the recipe the trial was made from (groups the trials of one sweep).
    """

    name: str
    config: RunConfig
    overrides: dict[str, Any]
    seed: int
    recipe: str = field(default="")


def expand_grid(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """All combinations of a grid's values (cartesian product), in a stable order.

    The order is that of the keys as given, the last key varying fastest; an empty grid
    gives one empty grid point.

    Raises:
        KdforgeError: when a key's values are not a non-empty list.
    """
    for key, values in grid.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise KdforgeError(
                f"grid key '{key}' must map to a non-empty list of values, got {values!r}",
                f"write e.g. {{'{key}': [value1, value2]}}",
            )
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(grid[k] for k in keys))]


def _slug_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "x".join(_slug_value(v) for v in value)
    text = json.dumps(value) if isinstance(value, (dict, bool)) or value is None else str(value)
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_") or "_"


def _point_label(point: dict[str, Any]) -> str:
    """``lr=0.01_temperature=4``: the last component of each key unless two keys share it."""
    last = Counter(k.split(".")[-1] for k in point)
    parts = []
    for key, value in point.items():
        label = key.split(".")[-1] if last[key.split(".")[-1]] == 1 else key
        parts.append(f"{label}={_slug_value(value)}")
    return "_".join(parts)


def _short_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


def make_trials(
    recipe: str | Path | RunConfig,
    grid: dict[str, list[Any]],
    seeds: Sequence[int],
    name: str | None = None,
    extra_overrides: Sequence[str] = (),
) -> list[Trial]:
    """Build the trials of a sweep: every grid point of ``grid`` once per seed.

    Args:
        recipe: A YAML recipe path or an already built :class:`RunConfig`.
        grid: Dotted config keys mapped to the values to try (see :func:`expand_grid`).
        seeds: Run seeds; each grid point runs once per seed.
        name: Sweep name, the prefix of every run directory (default: the recipe's ``name``).
        extra_overrides: ``key=value`` overrides applied to the recipe before the grid
            (e.g. ``data.data_dir=...``), the same for every trial.

    Returns:
        Trials ordered grid point by grid point, seeds innermost. Names are
        ``<name>-<grid point>-seed<seed>``; a grid point whose label would collide with
        another's gets a short hash appended.

    Raises:
        KdforgeError: for an empty seed list, a ``seed`` grid key, duplicate seeds, or a grid
            point that does not make a valid recipe (the message names the key).
    """
    if not seeds:
        raise KdforgeError("a sweep needs at least one seed", "pass seeds, e.g. [0, 1, 2]")
    if len(set(seeds)) != len(seeds):
        raise KdforgeError(f"duplicate seeds {list(seeds)}", "list each seed once")
    if "seed" in grid:
        raise KdforgeError("'seed' is not a grid key", "pass seeds through the seeds argument")
    if isinstance(recipe, RunConfig):
        base = apply_overrides(recipe.to_dict(), list(extra_overrides))
    else:
        base = load_recipe(recipe, list(extra_overrides)).to_dict()
    sweep_name = name or base["name"]
    points = expand_grid(grid)
    labels = [_point_label(p) for p in points]
    counts = Counter(labels)
    trials = []
    for point, label in zip(points, labels, strict=True):
        if counts[label] > 1:
            label = f"{label}_{_short_hash(point)}"
        for seed in seeds:
            trial_name = "-".join(part for part in (sweep_name, label, f"seed{seed}") if part)
            data = json.loads(json.dumps(base))
            for key, value in point.items():
                set_dotted(data, key, value)
            data["seed"], data["name"] = int(seed), trial_name
            trials.append(Trial(trial_name, from_dict(data), dict(point), int(seed), sweep_name))
    return trials


def _finished(trial: Trial, run_dir: Path) -> dict[str, Any] | None:
    """The summary of a finished run of exactly this trial, ``None`` if unfinished.

    Raises:
        KdforgeError: when the directory holds a finished run of another recipe.
    """
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        return None
    summary = json.loads(summary_path.read_text())
    try:
        done = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        done = None  # no readable record of the run's length: treated as another recipe's run
    want = trial.config.to_dict()
    trained = done.get("train") if isinstance(done, dict) else None
    same_length = isinstance(trained, dict) and all(
        trained.get(k) == want["train"][k] for k in ("epochs", "max_steps")
    )
    if not trial.config.matches_fingerprint(summary.get("fingerprint")) or not same_length:
        raise KdforgeError(
            f"'{run_dir}' holds a finished run of a different recipe than trial '{trial.name}' "
            "(config fingerprint or train.epochs/max_steps differ); it was left untouched",
            "give the sweep another output_dir, or delete that run directory to re-run the trial",
        )
    return summary


def run_sweep(
    trials: Sequence[Trial], output_dir: str | Path, resume: bool = True, progress: bool = True
) -> list[dict[str, Any]]:
    """Run every trial through :func:`kdforge.engine.run.run_experiment`, one after another.

    Args:
        trials: From :func:`make_trials` (names must be unique).
        output_dir: Each trial writes ``<output_dir>/<trial.name>/``.
        resume: Skip trials whose run directory holds a ``summary.json`` of the same recipe
            (same config fingerprint and length) and continue half-finished ones from their
            last checkpoint. ``False`` refuses any existing run directory's checkpoint instead.
        progress: Show a progress bar over trials.

    Returns:
        Each trial's summary (see ``run_experiment``) with ``"overrides"``, ``"trial"``, ``"recipe"``
        and ``"recipe_fingerprint"`` (equal for the seeds of one grid point, so
        :func:`kdforge.report.tables.summaries_table` gives one row per grid point) added, in trial order.

    Raises:
        KdforgeError: for duplicate trial names, a run directory holding another recipe's
            run, or any failing run (finished trials stay on disk and are skipped next time).
    """
    dupes = [n for n, c in Counter(t.name for t in trials).items() if c > 1]
    if dupes:
        raise KdforgeError(f"duplicate trial names {dupes[:3]}", "give each trial its own name")
    output_dir = Path(output_dir)
    results = []
    bar = tqdm(trials, desc="sweep", unit="run", disable=None if progress else True, dynamic_ncols=True)
    for trial in bar:
        cfg = dataclasses.replace(trial.config, name=trial.name, output_dir=str(output_dir))
        run_dir = cfg.run_dir
        summary = _finished(trial, run_dir) if resume else None
        if summary is None:
            bar.set_postfix_str(trial.name, refresh=False)
            partial = resume and ckpt.has_checkpoint(run_dir / "checkpoints")
            summary = run_experiment(cfg, resume=partial, progress=False)
            save_config(cfg, run_dir / "config.yaml")  # a resumed run may have been extended
        record = {
            "trial": trial.name,
            "recipe": trial.recipe,
            "overrides": trial.overrides,
            "seed": trial.seed,
        }
        (run_dir / TRIAL_FILE).write_text(json.dumps(record, indent=1, default=str))
        extra = {"trial": trial.name, "recipe": trial.recipe, "recipe_fingerprint": cfg.recipe_fingerprint()}
        results.append(dict(summary, overrides=dict(trial.overrides), **extra))
    return results


def all_finished(trials: Sequence[Trial], output_dir: str | Path) -> bool:
    """Whether every trial has a finished run of exactly its recipe in ``output_dir`` (nothing is run).

    Raises:
        KdforgeError: when a run directory holds a finished run of another recipe (as :func:`run_sweep`).
    """
    output_dir = Path(output_dir)
    dirs = [dataclasses.replace(t.config, name=t.name, output_dir=str(output_dir)).run_dir for t in trials]
    return all(_finished(t, d) is not None for t, d in zip(trials, dirs, strict=True))


def load_sweep(output_dir: str | Path) -> list[dict[str, Any]]:
    """Read back the finished trials of a sweep directory (as :func:`run_sweep` returned them).

    Run directories without ``summary.json`` (unfinished) are left out; the order is by name.
    """
    out = []
    for trial_path in sorted(Path(output_dir).glob(f"*/{TRIAL_FILE}")):
        summary_path = trial_path.parent / "summary.json"
        if summary_path.is_file():
            record = json.loads(trial_path.read_text())
            summary = load_summary(trial_path.parent)  # adds the recipe fingerprint from config.yaml
            out.append(
                dict(summary, overrides=record["overrides"], trial=record["trial"], recipe=record["recipe"])
            )
    return out


def run_recipe(recipe: str | Path, overrides: Sequence[str] = (), progress: bool = False) -> dict[str, Any]:
    """Run one recipe under its own ``name`` in its ``output_dir`` (skipped when finished, resumed
    when half-finished), e.g. a teacher whose export other recipes name by path."""
    cfg = load_recipe(recipe, list(overrides))
    return run_sweep([Trial(cfg.name, cfg, {}, cfg.seed, cfg.name)], cfg.output_dir, progress=progress)[0]


def run_seeds(
    recipe: str | Path, seeds: Sequence[int], name: str | None = None, overrides: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Run one recipe once per seed in its ``output_dir`` (runs ``<name>-seed<S>``, resumable)."""
    trials = make_trials(recipe, {}, seeds, name=name, extra_overrides=overrides)
    return run_sweep(trials, trials[0].config.output_dir, progress=False)
