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
from kdforge.experiments.selection import rank_candidates, select_best
from kdforge.experiments.sweep import Trial, _finished
from kdforge.report.tables import markdown_table, mean_std


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


def restrict_row(row: dict[str, Any], grid: Sequence[Any]) -> dict[str, Any]:
    """A :func:`tune_row` result as if only the values of ``grid`` had been run.

    The selection is re-run on the row's per-value validation means and stds (the rule of
    :func:`kdforge.experiments.selection.select_best`: best mean, then lower std). A row keeps
    the per-seed scores of its chosen value only, so the restriction is possible only when the
    choice does not change: e.g. a row measured over a wider grid carried into a table whose
    grid is a subset of it.

    Args:
        row: A :func:`tune_row` result (``param``, ``grid``, ``val_mean``, ``val_std``, ``chosen``).
        grid: The values to keep; each must be one of the row's.

    Returns:
        The row with ``grid``, ``val_mean``, ``val_std`` and ``at_edge`` for the kept values
        (ascending); every other key unchanged.

    Raises:
        KdforgeError: when a value of ``grid`` was not run in the row, or the restricted grid
            would choose another value than the row did (its per-seed scores are not kept).
    """
    means = {v: (m, s) for v, m, s in zip(row["grid"], row["val_mean"], row["val_std"], strict=True)}
    absent = [v for v in grid if v not in means]
    if absent:
        raise KdforgeError(
            f"row was run at {row['grid']}, not at {absent}", "restrict it to values it was run at"
        )
    kept = sorted(set(grid))
    param = row["param"]
    ranked = rank_candidates(
        [{"overrides": {param: v}, "mean": means[v][0], "std": means[v][1]} for v in kept]
    )
    chosen = ranked[0]["overrides"][param]
    if chosen != row["chosen"]:
        raise KdforgeError(
            f"on {kept} the selection chooses {param}={chosen}, not the row's {row['chosen']}; "
            "the row keeps per-seed scores only at its own choice",
            "re-run the row on the new grid instead of restricting it",
        )
    return dict(
        row,
        grid=kept,
        val_mean=[means[v][0] for v in kept],
        val_std=[means[v][1] for v in kept],
        at_edge=len(kept) > 1 and chosen in (kept[0], kept[-1]),
    )


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
            record = {
                "overrides": dict(trial.overrides),
                "trial": trial.name,
                "recipe": trial.recipe,
                "recipe_fingerprint": trial.config.recipe_fingerprint(),  # as run_sweep adds it
            }
            done.append(dict(summary, **record))
    return done, missing


def delta_line(label: str, delta: dict[str, Any], unit: str = "points") -> str:
    """``- kd +OPDF: +1.23 points [+0.40, +2.05] (target +1.0) -> **met**`` for a :func:`tuned_delta`."""
    i = delta["interval"]
    ci = f"{i['mean']:+.2f} {unit} [{i['low']:+.2f}, {i['high']:+.2f}]"
    return f"- {label}: {ci} (target {delta['target']:+.1f}) -> **{delta['verdict']}**"


def tuned_table(rows: Sequence[tuple[str, dict[str, Any]]], grid: Sequence[Any], name: str = "lr") -> str:
    """Markdown: per row the mean validation accuracy at each grid value, the chosen value (marked
    when at the grid's edge) and validation/test mean ± std at it.

    Args:
        rows: ``(label, tune_row result)`` pairs.
        grid: The column values ("-" where a row did not run one).
        name: The hyper-parameter's short name for the headers.
    """
    head = ["row", *[f"val @ {v:g}" for v in grid], f"chosen {name}", "val acc (%)", "test acc (%)"]
    cells = []
    for label, r in rows:
        per_value = dict(zip(r["grid"], r["val_mean"], strict=True))
        chosen = f"{r['chosen']:g}" + (" (grid edge)" if r["at_edge"] else "")
        cells.append(
            [label, *[f"{100 * per_value[v]:.2f}" if v in per_value else "-" for v in grid]]
            + [chosen, mean_std(r["val_acc"]), mean_std(r["test_acc"])]
        )
    return markdown_table(head, cells)


def plot_tuning(panels: dict[str, list[tuple[str, dict[str, Any]]]], out: str | Path, xlabel: str) -> Path:
    """A PNG with one panel per key of ``panels``: mean validation accuracy against the grid value
    (log axis) for each ``(label, tune_row result)`` of the panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    for ax, (title, rows) in zip(axes[0], panels.items(), strict=True):
        for label, r in rows:
            ax.plot(r["grid"], [100 * v for v in r["val_mean"]], marker="o", label=label)
        ax.set(xscale="log", xlabel=xlabel, ylabel="val acc (%), mean over seeds", title=title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)
