"""OPDF alignment on/off on text with a student that does NOT start at the aligned layers.

In the grid of :mod:`kdforge.experiments.opdf_nlp` the student is the fine-tuned teacher's
layers 1, 3, 5 and the default layer map aligns it with exactly those layers: the alignment
loss starts at 0 and on/off is inert by construction. Here the student is made of layers
0, 2, 4 (``nlp_kd_opdf_shift.yaml``) and still aligned with 1, 3, 5, so the loss starts above
0. ``lambda_align`` is swept (0 = off) x seeds; "on" is the best lambda > 0 chosen on
validation and is compared with off, and OPDF (lambda chosen on validation, 0 included) with
plain KD of the same student (``nlp_kd_plain_shift.yaml``), paired by seed.

Example::

    res = run_align(Path("configs/opdf"), [0.0, 1.0, 10.0], [0, 1, 2], train=True)
    print(align_markdown(res))
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kdforge.config import load_recipe
from kdforge.experiments.opdf_nlp import TEACHER_RECIPE
from kdforge.experiments.scoring import teacher_scores
from kdforge.experiments.sweep import make_trials, run_recipe, run_sweep
from kdforge.experiments.tuning import delta_line, split_finished, tune_row, tuned_delta, tuned_table
from kdforge.report.tables import mean_std

LAMBDA_KEY = "method.kwargs.lambda_align"
OPDF_RECIPE, PLAIN_RECIPE = "nlp_kd_opdf_shift", "nlp_kd_plain_shift"
PLAIN_GRID = {"train.lr": [1e-4]}  # the recipes' own learning rate: one grid point
ON_MINUS_OFF_TARGET, OPDF_MINUS_PLAIN_TARGET = 0.0, 1.0  # points
ROW_LABELS = {"opdf": "+OPDF (lambda on val)", "off": "+OPDF off (0)", "on": "+OPDF on (lambda > 0)"}


def align_rows(plain: Sequence[dict[str, Any]], opdf: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The four tuned rows and the two paired deltas from finished runs.

    Args:
        plain: Plain KD's runs (a sweep over ``train.lr``, one value, every seed).
        opdf: OPDF's runs over ``lambda_align`` (0 and at least one value > 0) x the same seeds.

    Returns:
        ``rows`` (``plain``, ``opdf``: lambda chosen on validation, ``off``: lambda 0, ``on``: the
        best lambda > 0 on validation; each a :func:`tune_row` result) and ``deltas``
        (``on_minus_off`` and ``opdf_minus_plain``, :func:`tuned_delta` on test accuracy; "met" only
        when the interval's lower bound lies strictly above the target).
    """
    rows = {
        "plain": tune_row(plain, "train.lr"),
        "opdf": tune_row(opdf, LAMBDA_KEY),
        "off": tune_row([s for s in opdf if s["overrides"][LAMBDA_KEY] == 0], LAMBDA_KEY),
        "on": tune_row([s for s in opdf if s["overrides"][LAMBDA_KEY] > 0], LAMBDA_KEY),
    }
    deltas = {
        "on_minus_off": _strict(tuned_delta(rows["on"], rows["off"], target=ON_MINUS_OFF_TARGET)),
        "opdf_minus_plain": _strict(tuned_delta(rows["opdf"], rows["plain"], target=OPDF_MINUS_PLAIN_TARGET)),
    }
    return {"rows": rows, "deltas": deltas}


def _strict(delta: dict[str, Any]) -> dict[str, Any]:
    """``met`` only when the lower bound lies above the target: with a target of 0, a lower bound of
    exactly 0 (e.g. on and off scoring the same on every seed) is no gain."""
    if delta["verdict"] == "met" and delta["interval"]["low"] <= delta["target"]:
        return {**delta, "verdict": "not distinguishable"}
    return delta


def alignment_trace(run_dir: str | Path) -> dict[str, float] | None:
    """The alignment loss ``L_align`` (unweighted) at a run's first and last log lines.

    The engine logs each loss term of the logged step already weighted (``lambda_align * L_align``);
    dividing by the run's ``lambda_align`` gives ``L_align``.

    Returns:
        ``lambda``, ``first`` and ``last`` (``None`` for a run that logged no alignment: lambda 0).
    """
    run_dir = Path(run_dir)
    lam = json.loads((run_dir / "trial.json").read_text())["overrides"][LAMBDA_KEY]
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    aligned = [r["align"] / lam for r in logged if "align" in r] if lam else []
    return {"lambda": lam, "first": aligned[0], "last": aligned[-1]} if aligned else None


def _sweep(
    configs: Path,
    recipe: str,
    grid: dict,
    seeds: Sequence[int],
    train: bool,
    override: Sequence[str],
    tag: str,
) -> tuple[list, list]:
    trials = make_trials(configs / f"{recipe}.yaml", grid, seeds, f"{recipe}{tag}", list(override))
    if train:
        run_sweep(trials, trials[0].config.output_dir, progress=False)
    return split_finished(trials, trials[0].config.output_dir)


def run_align(
    configs: Path,
    lambdas: Sequence[float],
    seeds: Sequence[int],
    train: bool,
    override: Sequence[str] = (),
    tag: str = "",
) -> dict[str, Any]:
    """Run (``train``) or collect the plain and OPDF sweeps and build the results.

    With ``train`` the teacher is fine-tuned first if its export is missing; finished runs are
    reused either way. Every arm runs on the same seeds; plain runs first, then OPDF lambda by lambda.

    Args:
        configs: The directory of the recipes.
        lambdas: The ``lambda_align`` grid (0 = off; at least one value > 0).
        seeds: Every arm runs once per seed.
        train: Run what is unfinished (else only collect).
        override: Dotted overrides for the OPDF runs only (e.g. ``method.kwargs.mpo_lr_scale=10``);
            plain KD, which has no MPO factors, is the same runs either way.
        tag: Suffix of the OPDF runs' names when ``override`` is given (``nlp_kd_opdf_shift<tag>-...``).

    Returns:
        ``seeds``, ``lambdas``, ``overrides``, ``not_run`` (unfinished runs; when any, nothing else
        is computed), ``trained_now`` (runs this call trained), ``wall_s`` (of this call),
        ``train_time_s`` (per finished run), ``alignment`` (per run with lambda > 0: its
        :func:`alignment_trace`), ``teacher`` (scored on the students' validation and test splits)
        and :func:`align_rows`'s ``rows`` and ``deltas``.
    """
    start = time.perf_counter()
    output_dir = Path(load_recipe(configs / f"{OPDF_RECIPE}.yaml").output_dir)
    before = {p.parent.name for p in output_dir.glob("*/summary.json")}
    if train:
        run_recipe(configs / TEACHER_RECIPE)
    plain, todo = _sweep(configs, PLAIN_RECIPE, PLAIN_GRID, seeds, train, (), "")
    opdf, todo_opdf = _sweep(configs, OPDF_RECIPE, {LAMBDA_KEY: list(lambdas)}, seeds, train, override, tag)
    res: dict[str, Any] = {"seeds": list(seeds), "lambdas": list(lambdas), "overrides": list(override)}
    res["not_run"] = todo + todo_opdf
    res["trained_now"] = [s["trial"] for s in plain + opdf if s["trial"] not in before]
    res["wall_s"] = time.perf_counter() - start
    if res["not_run"]:
        return {**res, "rows": {}, "deltas": {}}  # the JSON names the unfinished runs
    res["train_time_s"] = {s["trial"]: s["train_time_s"] for s in plain + opdf}
    res["alignment"] = {
        s["trial"]: alignment_trace(output_dir / s["trial"]) for s in opdf if s["overrides"][LAMBDA_KEY] > 0
    }
    teacher = run_recipe(configs / TEACHER_RECIPE)  # finished: its summary only
    scores = teacher_scores(load_recipe(configs / f"{OPDF_RECIPE}.yaml", ["seed=0"]))
    res["teacher"] = {"train_time_s": teacher["train_time_s"], **scores}
    return {**res, **align_rows(plain, opdf)}


def time_one(configs: Path) -> dict[str, Any]:
    """Time one ``nlp_kd_opdf_shift`` run (lambda 1, seed 0) against a stand-in teacher fine-tuned
    for 2 steps: its accuracy means nothing, the cost of a run does not depend on the weights."""
    teacher = configs / TEACHER_RECIPE
    stub = run_recipe(
        teacher, ["name=nlp_teacher_stub", "train.max_steps=2", "data.kwargs.test_fraction=0.1"]
    )
    weights = Path(load_recipe(teacher).output_dir) / "nlp_teacher_stub" / "student.safetensors"
    over = [f"teacher.checkpoint={weights}", f"student.kwargs.init_from={weights}"]
    trials = make_trials(
        configs / f"{OPDF_RECIPE}.yaml", {LAMBDA_KEY: [1.0]}, [0], f"timing_{OPDF_RECIPE}", over
    )
    start = time.perf_counter()
    run = run_sweep(trials, Path(trials[0].config.output_dir) / "timing", progress=False)[0]
    wall = time.perf_counter() - start
    return {
        "trial": run["trial"],
        "train_time_s": run["train_time_s"],
        "wall_s": wall,
        "stub_teacher_train_time_s": stub["train_time_s"],
    }


def _cost_lines(res: dict[str, Any]) -> list[str]:
    lines = []
    if res.get("timing"):
        t = res["timing"]
        lines += [
            f"Cost of one run (`{t['trial']}`, against a stand-in teacher fine-tuned for 2 steps, on this "
            f"machine under its load then): {t['train_time_s']:.0f} s training, {t['wall_s']:.0f} s wall "
            "(model building, teacher logits, evaluation included).",
            "",
        ]
        if res["not_run"]:
            hours = len(res["not_run"]) * t["wall_s"] / 3600
            lines += [f"At that cost the unfinished runs need about {hours:.1f} h of one process.", ""]
    if res.get("train_time_s"):
        times = res["train_time_s"]
        arms = {"plain KD": [v for k, v in times.items() if k.startswith(PLAIN_RECIPE)]}
        arms["OPDF"] = [v for k, v in times.items() if k.startswith(OPDF_RECIPE)]
        spans = "; ".join(
            f"{a} {statistics.mean(v):.0f} s ({min(v):.0f}-{max(v):.0f})" for a, v in arms.items()
        )
        trained = (
            f"This invocation trained {len(res['trained_now'])} of them (the others had finished before) in "
            f"{res['wall_s']:.0f} s of wall time, a teacher fine-tune included if one ran."
            if res["trained_now"]
            else "Every run had finished before this invocation, which reused them."
        )
        lines += [
            f"Training time per run (1 torch thread, the machine in the footer): {spans}. {trained}",
            "",
        ]
    return lines


def _alignment_line(alignment: dict[str, dict[str, float] | None]) -> str:
    traces = [t for t in alignment.values() if t is not None]
    first = [t["first"] for t in traces]
    change = {}
    for t in traces:
        change.setdefault(t["lambda"], []).append(100 * (t["last"] - t["first"]) / t["first"])
    per_lambda = ", ".join(f"{lam:g}: {statistics.mean(v):+.2f} %" for lam, v in sorted(change.items()))
    return (
        f"Alignment loss L_align (unweighted) at the first log line of the {len(traces)} runs with "
        f"lambda > 0: {min(first):.5f}-{max(first):.5f}, above 0: the student does not start at the "
        "aligned layers (with layers 1, 3, 5 it starts at 0). Its change from the first to the last log "
        "line, mean over seeds, "
        f"per lambda: {per_lambda}."
    )


def align_markdown(res: dict[str, Any]) -> str:
    """The lambda curve (validation), the chosen rows and the two paired deltas."""
    lines = ["# OPDF alignment on/off with a student not built from the aligned layers (NLP)", ""]
    lines += [
        "VADER movie snippets, the recipes of `opdf_nlp.md` (KD, 640 examples, 1 epoch, 32 tokens) but the "
        "student is the fine-tuned teacher's layers 0, 2, 4 while OPDF aligns it with layers 1, 3, 5. "
        f"Seeds {res['seeds']}; accuracy (%) of the checkpoint selected on validation; lambda chosen on "
        "validation." + (f" OPDF runs with `{' '.join(res['overrides'])}`." if res.get("overrides") else ""),
        "",
        *_cost_lines(res),
    ]
    if res["not_run"]:
        return "\n".join([*lines, f"Not finished ({len(res['not_run'])} runs): " + ", ".join(res["not_run"])])
    if res.get("alignment"):
        lines += [_alignment_line(res["alignment"]), ""]
    r = res["rows"]
    lines += [tuned_table([(ROW_LABELS[k], r[k]) for k in ROW_LABELS], res["lambdas"], "lambda"), ""]
    plain = f"val {mean_std(r['plain']['val_acc'])}, test {mean_std(r['plain']['test_acc'])}"
    lines += [f"Plain KD, same student: {plain}.", ""]
    if res.get("teacher"):
        t = res["teacher"]
        scores = f"val {100 * t['val_acc']:.2f}, test {100 * t['test_acc']:.2f}"
        lines += [f"Teacher (6 layers) on the same splits: {scores}.", ""]
    lines += ["Paired by seed, test accuracy, 95% bootstrap interval over seeds:"]
    lines += [delta_line(name.replace("_", " "), d) for name, d in res["deltas"].items()]
    return "\n".join(lines)


def plot_align(res: dict[str, Any], out: str | Path) -> Path:
    """A PNG of two panels against lambda_align: mean validation accuracy (± std over seeds; 0 =
    off) with plain KD of the same student as a band, and how much training moved L_align (%)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    row, plain = res["rows"]["opdf"], res["rows"]["plain"]
    x = list(range(len(row["grid"])))
    fig, (acc, moved) = plt.subplots(1, 2, figsize=(10, 3.8))
    mean, std = [100 * v for v in row["val_mean"]], [100 * v for v in row["val_std"]]
    acc.errorbar(x, mean, yerr=std, marker="o", capsize=3, label="KD + OPDF (layers 0, 2, 4)")
    p_mean, p_std = 100 * statistics.mean(plain["val_acc"]), 100 * statistics.stdev(plain["val_acc"])
    acc.axhline(p_mean, color="grey", linestyle="--", label="plain KD, same student")
    acc.axhspan(p_mean - p_std, p_mean + p_std, color="grey", alpha=0.15)
    acc.set(ylabel="val acc (%), mean ± std over seeds")
    acc.legend(fontsize=8)
    change: dict[float, list[float]] = {}
    for t in (t for t in res.get("alignment", {}).values() if t is not None):
        change.setdefault(t["lambda"], []).append(100 * (t["last"] - t["first"]) / t["first"])
    moved.plot(
        [row["grid"].index(lam) for lam in sorted(change)],
        [statistics.mean(change[k]) for k in sorted(change)],
        marker="o",
    )
    moved.set(ylabel="L_align change, first to last log (%)")
    for ax in (acc, moved):
        ax.set_xticks(x, [f"{v:g}" for v in row["grid"]])
        ax.set(xlabel="lambda_align (0 = alignment off)")
        ax.grid(alpha=0.3)
    extra = f", OPDF with {' '.join(res['overrides'])}" if res.get("overrides") else ""
    fig.suptitle(
        f"OPDF alignment, student not at the aligned layers (seeds {res['seeds']}{extra})", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)
