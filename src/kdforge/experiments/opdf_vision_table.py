"""OPDF vision grid: base methods x {plain, +SVD, +OPDF (+/- alignment), plain 3x lr} over seeds.

:func:`run_grid` trains each base's teacher (when its export is missing), runs every
``<base>_<variant>.yaml`` recipe of a directory once per seed (selection on validation, finished
runs reused) and times each exported, collapsed student against a plain one side by side;
:func:`vision_markdown` renders the table and the deltas against the plain row from the
results dict alone. Hyper-parameters are the recipes' (not tuned per row).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kdforge.config import load_recipe
from kdforge.experiments.sweep import run_recipe, run_seeds
from kdforge.experiments.timing import exported_latency_ratio
from kdforge.experiments.variants import (
    delta_lines,
    difference_lines,
    variant_deltas,
    variant_row,
    variant_table,
)

LABELS = {  # variant -> row label, in table order
    "plain": "plain",
    "svd": "+SVD",
    "opdf": "+OPDF",
    "opdf_noalign": "+OPDF w/o alignment",
    "plain_lr3x": "plain, 3x lr (control)",
}
CONTROL = "plain_lr3x"
NOTES = {  # how a base method is set up in its recipes, printed under the table
    "adkd": "AD-KD attributes the raw input pixels (Integrated Gradients with 4 steps, the teacher's top-2 "
    "classes; the paper attributes token embeddings) on top of Hinton KD (T=4, alpha=0.9), beta=1.",
    "theseus": "Theseus: each of the 2 successors (and the head) starts from the teacher (first layer of its "
    "group of 2), replacement rate 0.5 -> 1 over the first half of training, then the student alone; task "
    "loss only. OPDF aligns successor 0 with teacher layer 0 (the only 784-input layer) and successor 1 "
    "with teacher layer 3 (l*r + r - 1).",
}
DEFAULT_TEACHER_ARCH = "MLP 784-1024-512-10"  # results files written before teachers named their arch
DEFAULT_STUDENT_ARCH = "MLP 784-64-10"


def mlp_label(recipe: str | Path) -> str:
    """``MLP 784-64-10`` for an MLP recipe (Fashion-MNIST in/out widths)."""
    return "MLP " + "-".join(str(w) for w in [784, *load_recipe(recipe).student.kwargs["hidden"], 10])


def run_grid(
    configs: Path,
    root: Path,
    bases: Sequence[str],
    variants: Sequence[str],
    seeds: list[int],
    teachers: Mapping[str, str],
) -> dict[str, Any]:
    """Run the grid (the recipes of ``configs`` that exist) and collect its rows and deltas.

    Args:
        configs: Directory of ``<base>_<variant>.yaml`` and teacher recipes.
        root: Rows name their recipe relative to it.
        bases: Base methods, in table order.
        variants: Variants of :data:`LABELS`, in table order; a missing recipe is skipped.
        seeds: Seeds of every row.
        teachers: Base -> teacher recipe name (default ``teacher``).
    """
    names = dict.fromkeys(teachers.get(b, "teacher") for b in bases)
    trained = {
        n: {**run_recipe(configs / f"{n}.yaml"), "arch": mlp_label(configs / f"{n}.yaml")} for n in names
    }
    rows = []
    for base, variant in [(b, v) for b in bases for v in variants if (configs / f"{b}_{v}.yaml").is_file()]:
        recipe = configs / f"{base}_{variant}.yaml"
        runs = run_seeds(recipe, seeds)
        exported = Path(load_recipe(recipe).output_dir) / runs[0]["trial"] / "student.safetensors"
        extra = {
            "student": mlp_label(recipe),
            "teacher": teachers.get(base, "teacher"),
            "latency_ratio": exported_latency_ratio(exported),
        }
        rows.append(variant_row(base, variant, str(recipe.relative_to(root)), runs, **extra))
    return {
        "seeds": seeds,
        "subset": load_recipe(configs / f"{bases[0]}_plain.yaml").data.subset,
        "teacher": trained.get("teacher"),
        "teachers": trained,
        "rows": rows,
        "deltas": variant_deltas(rows, lambda v: v.startswith("opdf"), control=CONTROL),
    }


def _teacher_row(name: str, teacher: dict[str, Any]) -> list[str]:
    return [
        f"teacher `{name}` ({teacher.get('arch', DEFAULT_TEACHER_ARCH)})",
        f"{100 * teacher['test_acc']:.2f}",
        f"{100 * teacher['val_acc']:.2f}",
        f"{teacher['train_params']:,}",
        f"{teacher['student_params']:,}",
        "-",
        f"{teacher['train_time_s']:.0f}",
    ]


def vision_markdown(res: dict[str, Any]) -> str:
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
        arch = teachers[name].get("arch", DEFAULT_TEACHER_ARCH)
        lines.append(
            f"- {base}: student {row.get('student', DEFAULT_STUDENT_ARCH)}, teacher `{name}` ({arch})"
        )
    notes = [NOTES[b] for b in bases if b in NOTES]
    lines += ["", *notes] if notes else []
    teacher_rows = [_teacher_row(n, t) for n, t in teachers.items()]
    lines += ["", variant_table(res["rows"], LABELS, teacher_rows)]
    lines += ["", "## OPDF vs the same base method (target: >= +1.0 point over plain)", ""]
    lines += delta_lines(res["deltas"], LABELS)
    lines += ["", "Alignment on minus off (same factorization, same seeds):"]
    lines += difference_lines(res["rows"], "opdf", "opdf_noalign")
    lines += ["", "Hyper-parameters (lr, lambda_align=1, mpo_lr_scale=1, epochs) were not tuned for any row."]
    return "\n".join(lines)
