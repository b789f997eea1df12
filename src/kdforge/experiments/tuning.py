"""Per-row tuning: each row of a comparison gets one hyper-parameter chosen on validation.

A *tuned row* is one recipe swept over a grid of one hyper-parameter (e.g. ``train.lr``) x
seeds; :func:`tune_row` picks the value with the best mean validation metric over seeds (the
test split is never consulted) and keeps every value's validation mean, so a table can show
how flat or peaked the choice was. :func:`tuned_delta` compares two tuned rows run on the same
seeds with a paired bootstrap interval and a verdict against a target. :func:`split_finished`
tells finished trials of a sweep from missing ones without running anything, so a results
file can be written from whatever finished and name what did not.

Example::

    trials = make_trials("configs/opdf/kd_plain.yaml", {"train.lr": [1e-3, 2e-3, 4e-3]}, [0, 1, 2])
    plain = tune_row(run_sweep(trials, "runs/opdf"), "train.lr")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kdforge.errors import KdforgeError
from kdforge.experiments.intervals import paired_bootstrap, verdict
from kdforge.experiments.selection import select_best
from kdforge.experiments.sweep import Trial, _finished


def tune_row(summaries: Sequence[dict[str, Any]], param: str, metric: str = "val_acc") -> dict[str, Any]:
    """The value of ``param`` with the best mean ``metric`` over seeds, and the chosen runs' scores.

    Args:
        summaries: One row's runs (as :func:`kdforge.experiments.run_sweep` returns them): every
            grid value of ``param`` on the same seeds; ``overrides`` holds ``param``.
        param: The swept grid key, e.g. ``"train.lr"``.
        metric: A validation metric (``test_*`` is refused by :func:`select_best`).

    Returns:
        ``grid`` (the values, ascending), ``val_mean`` / ``val_std`` (per grid value, same
        order, from ``metric``), ``chosen`` (the value selected on validation), ``at_edge``
        (whether it is the grid's first or last value: the grid may be too narrow), and for the
        chosen value: ``seeds``, ``val_acc``, ``test_acc``, ``train_time_s`` (per seed, in seed
        order), ``train_params`` and ``inference_params``.

    Raises:
        KdforgeError: when a run lacks ``param`` in its overrides, or the values were run on
            different seeds (see :func:`select_best`).
    """
    missing = [s.get("trial", s.get("name")) for s in summaries if param not in s.get("overrides", {})]
    if missing:
        raise KdforgeError(
            f"runs {missing[:3]} do not sweep '{param}' (not in their overrides)",
            f"pass the runs of a sweep over {{'{param}': [...]}}",
        )
    best = select_best(summaries, metric)[()]
    by_value = {c["overrides"][param]: c for c in best["candidates"]}
    grid = sorted(by_value)
    chosen = best["overrides"][param]
    runs = best["summaries"]
    return {
        "param": param,
        "grid": grid,
        "val_mean": [by_value[v]["mean"] for v in grid],
        "val_std": [by_value[v]["std"] for v in grid],
        "chosen": chosen,
        "at_edge": len(grid) > 1 and chosen in (grid[0], grid[-1]),
        "seeds": best["seeds"],
        "val_acc": best["values"],
        "test_acc": [float(r["test_acc"]) for r in runs],
        "train_time_s": [float(r.get("train_time_s", float("nan"))) for r in runs],
        "train_params": runs[0].get("train_params"),
        "inference_params": runs[0].get("student_params"),
    }


def tuned_delta(
    treated: dict[str, Any],
    reference: dict[str, Any],
    target: float = 1.0,
    key: str = "test_acc",
    scale: float = 100.0,
    **bootstrap: Any,
) -> dict[str, Any]:
    """``treated - reference`` on ``key``, paired by seed, with a bootstrap interval and a verdict.

    Args:
        treated: A :func:`tune_row` result (or any dict with ``seeds`` and ``key`` lists).
        reference: The row it is compared with, run on the same seeds.
        target: The gain to clear, in scaled units (1.0 = one point with ``scale=100``).
        key: The per-seed values compared (``test_acc``; ``val_acc`` is optimistic after selection).
        scale: Multiplies the values first (100: fractions to points).
        **bootstrap: Passed to :func:`paired_bootstrap` (``n_boot``, ``confidence``, ``seed``).

    Returns:
        ``interval`` (``mean``/``low``/``high``/``confidence``, scaled), ``target`` and
        ``verdict`` ("met" only when the interval's lower bound clears the target).

    Raises:
        KdforgeError: when the two rows were run on different seeds.
    """
    if list(treated["seeds"]) != list(reference["seeds"]):
        raise KdforgeError(
            f"rows run on different seeds ({treated['seeds']} vs {reference['seeds']}) cannot be paired",
            "run both rows on the same seeds",
        )
    interval = paired_bootstrap(
        [scale * v for v in treated[key]], [scale * v for v in reference[key]], **bootstrap
    )
    return {"interval": interval.to_dict(), "target": target, "verdict": verdict(interval, target)}


def split_finished(trials: Sequence[Trial], output_dir: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The summaries of the trials already finished in ``output_dir`` and the names of the rest.

    Nothing runs. A summary is returned as :func:`kdforge.experiments.run_sweep` would return it
    (``overrides``, ``trial`` and ``recipe`` added), in trial order.

    Raises:
        KdforgeError: when a trial's directory holds a finished run of another recipe.
    """
    done, missing = [], []
    for trial in trials:
        summary = _finished(trial, Path(output_dir) / trial.name)
        if summary is None:
            missing.append(trial.name)
        else:
            record = {"overrides": dict(trial.overrides), "trial": trial.name, "recipe": trial.recipe}
            done.append(dict(summary, **record))
    return done, missing
