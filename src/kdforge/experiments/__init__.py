"""Experiments as library code: sweeps over recipe x grid x seeds, selection on validation,
paired deltas with bootstrap intervals and verdicts against targets."""

from kdforge.experiments.intervals import Interval, paired_bootstrap, paired_bootstrap_examples, verdict
from kdforge.experiments.selection import select_best
from kdforge.experiments.sweep import (
    Trial,
    expand_grid,
    load_sweep,
    make_trials,
    run_recipe,
    run_seeds,
    run_sweep,
)

__all__ = [
    "Interval",
    "Trial",
    "expand_grid",
    "load_sweep",
    "make_trials",
    "paired_bootstrap",
    "paired_bootstrap_examples",
    "run_recipe",
    "run_seeds",
    "run_sweep",
    "select_best",
    "verdict",
]
