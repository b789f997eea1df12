"""OPDF vision grid: {KD, FitNet, AD-KD, Theseus} x {plain, +SVD, +OPDF (+/- align)} x seeds, Fashion-MNIST.

Usage::

    PYTHONPATH=src python benchmarks/opdf_vision.py [--seeds 0 1 2] [--bases kd fitnet adkd theseus]
    PYTHONPATH=src python benchmarks/opdf_vision.py --render  # re-render the markdown from the JSON

Trains each base's teacher (``configs/opdf/teacher.yaml``; Theseus: ``teacher_theseus.yaml``) if
its export is missing, then every ``configs/opdf/<base>_<variant>.yaml`` once per seed (selection
on validation, test accuracy of the selected checkpoint, finished runs reused) and times the
exported, collapsed student against a plain one side by side. Writes
``benchmarks/results/opdf_vision.{json,md}``. The alignment-weight sweep: ``opdf_align_sweep.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kdforge.config import load_recipe
from kdforge.experiments import run_recipe, run_seeds
from kdforge.experiments.timing import exported_latency_ratio
from kdforge.experiments.variants import (
    delta_lines,
    difference_lines,
    variant_deltas,
    variant_row,
    variant_table,
)
from kdforge.report.results import rerender_results, save_results

ROOT = Path(__file__).resolve().parents[1]
CONFIGS, RESULTS = ROOT / "configs" / "opdf", ROOT / "benchmarks" / "results" / "opdf_vision.json"
TEACHERS = {"theseus": "teacher_theseus"}  # base -> teacher recipe (default: teacher)
LABELS = {
    "plain": "plain",
    "svd": "+SVD",
    "opdf": "+OPDF",
    "opdf_noalign": "+OPDF w/o alignment",
    "plain_lr3x": "plain, 3x lr (control)",
}
NOTES = {  # how a base method is set up in its recipes, printed under the table
    "adkd": "AD-KD attributes the raw input pixels (Integrated Gradients with 4 steps, the teacher's top-2 "
    "classes; the paper attributes token embeddings) on top of Hinton KD (T=4, alpha=0.9), beta=1.",
    "theseus": "Theseus: each of the 2 successors (and the head) starts from the teacher (first layer of its "
    "group of 2), replacement rate 0.5 -> 1 over the first half of training, then the student alone; task "
    "loss only. OPDF aligns successor 0 with teacher layer 0 (the only 784-input layer) and successor 1 "
    "with teacher layer 3 (l*r + r - 1).",
}


def mlp(recipe: Path) -> str:
    """``MLP 784-64-10`` for an MLP recipe (Fashion-MNIST in/out widths)."""
    return "MLP " + "-".join(str(w) for w in [784, *load_recipe(recipe).student.kwargs["hidden"], 10])


def run_grid(bases: list[str], variants: list[str], seeds: list[int]) -> dict:
    names = dict.fromkeys(TEACHERS.get(b, "teacher") for b in bases)
    teachers = {n: {**run_recipe(CONFIGS / f"{n}.yaml"), "arch": mlp(CONFIGS / f"{n}.yaml")} for n in names}
    rows = []
    for base, variant in [(b, v) for b in bases for v in variants if (CONFIGS / f"{b}_{v}.yaml").is_file()]:
        recipe = CONFIGS / f"{base}_{variant}.yaml"
        runs = run_seeds(recipe, seeds)
        exported = Path(load_recipe(recipe).output_dir) / runs[0]["trial"] / "student.safetensors"
        latency = exported_latency_ratio(exported)
        extra = {"student": mlp(recipe), "teacher": TEACHERS.get(base, "teacher"), "latency_ratio": latency}
        rows.append(variant_row(base, variant, str(recipe.relative_to(ROOT)), runs, **extra))
    deltas = variant_deltas(rows, lambda v: v.startswith("opdf"), control="plain_lr3x")
    subset = load_recipe(CONFIGS / f"{bases[0]}_plain.yaml").data.subset
    return {
        "seeds": seeds,
        "subset": subset,
        "teacher": teachers.get("teacher"),
        "teachers": teachers,
        "rows": rows,
        "deltas": deltas,
    }


def markdown(res: dict) -> str:
    """The results table (teacher rows first, one row per base x variant) and the deltas."""
    teachers = res.get("teachers") or {"teacher": res["teacher"]}
    bases = list(dict.fromkeys(r["base"] for r in res["rows"]))
    intro = (
        f"Students train on a {res['subset']:,}-example training subset, teachers on the full training "
        "split. Test accuracy (%) of the checkpoint selected on validation, mean ± std over seeds "
        f"{res['seeds']}."
    )
    lines = ["# OPDF on Fashion-MNIST (vision)", "", intro, ""]
    for base in bases:
        row = next(r for r in res["rows"] if r["base"] == base)
        name = row.get("teacher", "teacher")
        arch = teachers[name].get("arch", "MLP 784-1024-512-10")
        lines.append(f"- {base}: student {row.get('student', 'MLP 784-64-10')}, teacher `{name}` ({arch})")
    notes = [NOTES[b] for b in bases if b in NOTES]
    lines += ["", *notes] if notes else []
    teacher_rows = [
        [
            f"teacher `{n}` ({t.get('arch', 'MLP 784-1024-512-10')})",
            f"{100 * t['test_acc']:.2f}",
            f"{100 * t['val_acc']:.2f}",
            f"{t['train_params']:,}",
            f"{t['student_params']:,}",
            "-",
            f"{t['train_time_s']:.0f}",
        ]
        for n, t in teachers.items()
    ]
    lines += ["", variant_table(res["rows"], LABELS, teacher_rows)]
    lines += ["", "## OPDF vs the same base method (target: >= +1.0 point over plain)", ""]
    lines += delta_lines(res["deltas"], LABELS)
    lines += ["", "Alignment on minus off (same factorization, same seeds):"]
    lines += difference_lines(res["rows"], "opdf", "opdf_noalign")
    lines += ["", "Hyper-parameters (lr, lambda_align=1, mpo_lr_scale=1, epochs) were not tuned for any row."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--bases", nargs="+", default=["kd", "fitnet"])
    ap.add_argument("--variants", nargs="+", default=list(LABELS))
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--render", action="store_true", help="re-render the markdown from the JSON only")
    args = ap.parse_args()
    if args.render:
        print(rerender_results(args.out, markdown))
        return
    config = {"recipes": sorted(str(p.relative_to(ROOT)) for p in CONFIGS.glob("*.yaml"))}
    print(
        save_results(args.out, run_grid(args.bases, args.variants, args.seeds), markdown, config, args.seeds)
    )


if __name__ == "__main__":
    main()
