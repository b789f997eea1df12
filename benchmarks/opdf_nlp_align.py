"""OPDF alignment on/off on text where it can differ: a student NOT built from the aligned layers.

Usage::

    PYTHONPATH=src python benchmarks/opdf_nlp_align.py [--lambdas 0 1 10 100 1000] [--seeds 0 1 2]
    PYTHONPATH=src python benchmarks/opdf_nlp_align.py --collect  # results from finished runs only
    PYTHONPATH=src python benchmarks/opdf_nlp_align.py --render   # re-render the markdown from the JSON

In ``opdf_nlp.md`` the student is the fine-tuned teacher's layers 1, 3, 5 and the default map
aligns it with exactly those layers, so the alignment loss starts at 0 and on/off is inert by
construction. Here the student is made of layers 0, 2, 4 (``nlp_kd_opdf_shift.yaml``) and still
aligned with 1, 3, 5. ``lambda_align`` is swept (0 = off) x seeds; "on" is the best lambda > 0
chosen on validation, compared with off and OPDF (lambda chosen on validation, 0 included) with
plain KD of the same student (``nlp_kd_plain_shift.yaml``), paired by seed. Fine-tunes the teacher
(``nlp_teacher.yaml``) if its export is missing. Writes ``benchmarks/results/opdf_nlp_align.*``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from kdforge.config import load_recipe
from kdforge.experiments import make_trials, run_recipe, run_sweep
from kdforge.experiments.tuning import delta_line, split_finished, tune_row, tuned_delta, tuned_table
from kdforge.report.results import rerender_results, save_results
from kdforge.report.tables import mean_std

ROOT = Path(__file__).resolve().parents[1]
CONFIGS, RESULTS = ROOT / "configs" / "opdf", ROOT / "benchmarks" / "results" / "opdf_nlp_align.json"
LAM = "method.kwargs.lambda_align"


def sweep(recipe: str, grid: dict, seeds: list[int], train: bool) -> tuple[list[dict], list[str]]:
    trials = make_trials(CONFIGS / f"{recipe}.yaml", grid, seeds)
    if train:
        run_recipe(CONFIGS / "nlp_teacher.yaml")
        run_sweep(trials, trials[0].config.output_dir, progress=False)
    return split_finished(trials, trials[0].config.output_dir)


def run_grid(lambdas: list[float], seeds: list[int], train: bool) -> dict:
    plain, todo = sweep("nlp_kd_plain_shift", {"train.lr": [1e-4]}, seeds, train)
    opdf, todo_opdf = sweep("nlp_kd_opdf_shift", {LAM: lambdas}, seeds, train)
    res = {"seeds": seeds, "lambdas": lambdas, "not_run": todo + todo_opdf, "rows": {}, "deltas": {}}
    if todo or todo_opdf:
        return res  # the JSON names the unfinished runs
    rows = {
        "plain": tune_row(plain, "train.lr"),
        "opdf": tune_row(opdf, LAM),
        "off": tune_row([s for s in opdf if s["overrides"][LAM] == 0], LAM),
        "on": tune_row([s for s in opdf if s["overrides"][LAM] > 0], LAM),
    }
    res["rows"] = rows
    res["deltas"] = {
        "on_minus_off": tuned_delta(rows["on"], rows["off"], target=0.0),
        "opdf_minus_plain": tuned_delta(rows["opdf"], rows["plain"], target=1.0),
    }
    return res


def time_one() -> dict:
    """Time one ``nlp_kd_opdf_shift`` run (lambda 1, seed 0) against a stand-in teacher fine-tuned
    for 2 steps: its accuracy means nothing, the cost of a run does not depend on the weights."""
    teacher = CONFIGS / "nlp_teacher.yaml"
    stub = run_recipe(
        teacher, ["name=nlp_teacher_stub", "train.max_steps=2", "data.kwargs.test_fraction=0.1"]
    )
    weights = Path(load_recipe(teacher).output_dir) / "nlp_teacher_stub" / "student.safetensors"
    over = [f"teacher.checkpoint={weights}", f"student.kwargs.init_from={weights}"]
    trials = make_trials(
        CONFIGS / "nlp_kd_opdf_shift.yaml", {LAM: [1.0]}, [0], "timing_nlp_kd_opdf_shift", over
    )
    start = time.perf_counter()
    run = run_sweep(trials, Path(trials[0].config.output_dir) / "timing", progress=False)[0]
    wall = time.perf_counter() - start
    return {"trial": run["trial"], "train_time_s": run["train_time_s"], "wall_s": wall,
            "stub_teacher_train_time_s": stub["train_time_s"]}  # fmt: skip


def markdown(res: dict) -> str:
    """The lambda curve (validation), the chosen rows and the two paired deltas."""
    lines = ["# OPDF alignment on/off with a student not built from the aligned layers (NLP)", ""]
    lines += [
        "VADER movie snippets, the recipes of `opdf_nlp.md` (KD, 640 examples, 1 epoch, 32 tokens) but the "
        "student is the fine-tuned teacher's layers 0, 2, 4 while OPDF aligns it with layers 1, 3, 5. "
        f"Seeds {res['seeds']}; accuracy (%) of the checkpoint selected on validation; lambda chosen on "
        "validation.",
        "",
    ]
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
    if res["not_run"]:
        return "\n".join([*lines, f"Not finished ({len(res['not_run'])} runs): " + ", ".join(res["not_run"])])
    r = res["rows"]
    labels = {"opdf": "+OPDF (lambda on val)", "off": "+OPDF off (0)", "on": "+OPDF on (lambda > 0)"}
    lines += [tuned_table([(labels[k], r[k]) for k in labels], res["lambdas"], "lambda"), ""]
    plain = f"val {mean_std(r['plain']['val_acc'])}, test {mean_std(r['plain']['test_acc'])}"
    lines += [f"Plain KD, same student: {plain}.", ""]
    lines += [delta_line(name.replace("_", " "), d) for name, d in res["deltas"].items()]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 1.0, 10.0, 100.0, 1000.0])
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--collect", action="store_true", help="train nothing; report the finished runs")
    ap.add_argument("--render", action="store_true", help="re-render the markdown from the JSON only")
    ap.add_argument("--time-one", action="store_true", help="with --collect: time one run (stand-in teacher)")
    args = ap.parse_args()
    if args.render:
        print(rerender_results(args.out, markdown))
        return
    torch.set_num_threads(1)
    config = {"recipes": ["configs/opdf/nlp_kd_opdf_shift.yaml", "configs/opdf/nlp_kd_plain_shift.yaml"]}
    res = run_grid(args.lambdas, args.seeds, train=not args.collect)
    res["timing"] = time_one() if args.time_one else None
    print(save_results(args.out, res, markdown, config, args.seeds))


if __name__ == "__main__":
    main()
