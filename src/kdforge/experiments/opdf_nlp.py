"""OPDF on text: {base method} x {plain, +SVD, +OPDF (+/- alignment), 3x-lr control} x seeds.

The grid of ``benchmarks/opdf_nlp.py`` on VADER movie snippets: the all-MiniLM-L6-v2 teacher is
fine-tuned once (``nlp_teacher.yaml``; skipped when its export exists), then every
``nlp_<base>_<variant>.yaml`` recipe of the grid runs once per seed, seed-major with the 3x-lr
controls last (an interrupted grid still covers every main variant), reusing finished runs.
Runs are selected on validation; the teacher is scored on the students' test split; each
exported, collapsed student is timed against a plain one side by side.

Example::

    res = run_grid(Path("configs/opdf"), Path("."), ["kd"], list(LABELS), [0, 1, 2])
    print(grid_markdown(res))
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from kdforge.config import load_recipe
from kdforge.experiments.scoring import teacher_scores
from kdforge.experiments.sweep import run_recipe, run_seeds
from kdforge.experiments.timing import exported_latency_ratio
from kdforge.experiments.variants import (
    delta_lines,
    difference_lines,
    variant_deltas,
    variant_row,
    variant_table,
)

TEACHER_RECIPE = "nlp_teacher.yaml"
CONTROL = "plain_lr3x"  # run after every other variant of every seed
LABELS = {
    "plain": "plain",
    "svd": "+SVD",
    "opdf": "+OPDF",
    "opdf_noalign": "+OPDF w/o alignment",
    CONTROL: "plain, 3x lr (control)",
}
NOTES = {  # how a base method is set up in its recipes, printed under the table's introduction
    "kd": "KD: Hinton KD (T=2, alpha=0.5) from the 6-layer teacher's logits.",
    "adkd": "AD-KD: Hinton KD (T=2, alpha=0.5) + beta=1 x attribution alignment, Integrated Gradients on the "
    "word-embedding output with 2 steps for the teacher's top-1 class (cut from the paper's settings to fit "
    "the CPU budget).",
    "narrowkd": "KD with the narrower student: hidden 192 (12 heads of 16, FFN 768), half the teacher's "
    "width, weight-selected from the fine-tuned teacher's layers 1, 3, 5 (every 2nd dim, "
    "models/bert_narrow.py); 3 epochs at lr 1e-3 (control 3e-3), chosen on seed-0 validation of the plain "
    "row (opdf_nlp_narrow_selection.md). OPDF aligns its 192-wide MPO tensors with the teacher's 384-wide "
    "ones (equal auxiliary shapes, the central tensor absorbs the width).",
    "theseus": "Theseus (the OPDF paper's own base): the 3 successors (the same 3-layer student) replace the "
    "frozen teacher's layer groups {0,1}, {2,3}, {4,5}, each with probability p = 0.5 -> 1 over the first "
    "half of training, then train alone; task loss only. OPDF aligns successor l with teacher layer 2l+1.",
}
LATENCY_TIMING = {"blocks": 9, "per_block": 10, "warmup": 3}


def latency_inputs() -> dict[str, torch.Tensor]:
    """The fixed batch the exported students are timed on: 8 sequences of 32 token ids."""
    tokens = torch.randint(1000, 20000, (8, 32), generator=torch.Generator().manual_seed(0))
    return {"input_ids": tokens, "attention_mask": torch.ones_like(tokens)}


def grid_cells(configs: Path, bases: Sequence[str], variants: Sequence[str]) -> list[tuple[str, str]]:
    """The ``(base, variant)`` pairs whose recipe ``nlp_<base>_<variant>.yaml`` exists, base-major."""
    return [(b, v) for b in bases for v in variants if (configs / f"nlp_{b}_{v}.yaml").is_file()]


def run_order(cells: Sequence[tuple[str, str]], seeds: Sequence[int]) -> list[tuple[int, str, str]]:
    """``(seed, base, variant)`` in running order: seed-major, the 3x-lr controls after every other
    variant of every seed, so an interrupted grid still covers every main variant."""
    groups = [c for c in cells if c[1] != CONTROL], [c for c in cells if c[1] == CONTROL]
    return [(seed, base, variant) for group in groups for seed in seeds for base, variant in group]


def run_grid(
    configs: Path,
    root: Path,
    bases: Sequence[str],
    variants: Sequence[str],
    seeds: Sequence[int],
    override: Sequence[str] = (),
    tag: str = "",
) -> dict[str, Any]:
    """Fine-tune the teacher if needed, run the grid's recipes over ``seeds`` and build its results.

    Args:
        configs: The directory of the ``nlp_*.yaml`` recipes.
        root: Recipe paths are recorded relative to it.
        bases, variants: The grid (missing recipes are left out).
        seeds: Every recipe runs once per seed.
        override: Dotted overrides for every student run (not the teacher).
        tag: Run-name suffix (``_sub1920``) for runs made with ``override``.

    Returns:
        ``seeds``, ``subset``, ``epochs``, ``overrides``, ``max_len``, ``teacher`` (its run summary,
        its scores on the students' splits, ``train_subset``), ``rows`` (:func:`variant_row` per
        recipe, with ``latency_ratio``) and ``deltas`` (:func:`variant_deltas` of the OPDF variants).
    """
    teacher = run_recipe(configs / TEACHER_RECIPE)
    cells = grid_cells(configs, bases, variants)
    runs: dict[tuple[str, str], list[dict]] = {}
    for seed, base, variant in run_order(cells, seeds):
        recipe, name = configs / f"nlp_{base}_{variant}.yaml", f"nlp_{base}_{variant}{tag}"
        runs.setdefault((base, variant), []).extend(run_seeds(recipe, [seed], name, list(override)))
    rows = []
    for base, variant in cells:
        recipe = configs / f"nlp_{base}_{variant}.yaml"
        exported = (
            Path(load_recipe(recipe).output_dir) / runs[base, variant][0]["trial"] / "student.safetensors"
        )
        latency = exported_latency_ratio(exported, latency_inputs(), **LATENCY_TIMING)
        rows.append(
            variant_row(
                base, variant, str(recipe.relative_to(root)), runs[base, variant], latency_ratio=latency
            )
        )
    first = configs / f"nlp_{cells[0][0]}_{cells[0][1]}.yaml"
    subset = load_recipe(configs / TEACHER_RECIPE).data.subset
    teacher = {**teacher, **teacher_scores(load_recipe(first, ["seed=0"])), "train_subset": subset}
    deltas = variant_deltas(
        rows, lambda v: v.startswith("opdf"), control=CONTROL, teacher_acc=teacher["test_acc"]
    )
    cfg = load_recipe(first, list(override))
    return {
        "seeds": list(seeds),
        "subset": cfg.data.subset,
        "epochs": cfg.train.epochs,
        "overrides": list(override),
        "max_len": cfg.data.kwargs.get("max_len", 64),
        "teacher": teacher,
        "rows": rows,
        "deltas": deltas,
    }


def grid_markdown(res: dict[str, Any]) -> str:
    """The results table (teacher row first, one row per base x variant) and the deltas."""
    t = res["teacher"]
    intro = (
        "Teacher: all-MiniLM-L6-v2 + linear head on the mean-pooled tokens, fine-tuned once "
        f"({t['train_subset']:,} examples, 1 epoch). Student (unless a note below says otherwise): 3-layer "
        "MiniLM of the same width made of the fine-tuned teacher's layers 1, 3, 5, trained on a "
        f"{res['subset']:,}-example subset for {res['epochs']} epoch(s); sequences cut at {res['max_len']} "
        f"tokens; word embeddings frozen for every model. Test: {t['test_size']:,} held-out snippets. Test "
        f"accuracy (%) of the checkpoint selected on validation, mean ± std over seeds {res['seeds']}."
    )
    notes = [f"- {NOTES[b]}" for b in dict.fromkeys(r["base"] for r in res["rows"]) if b in NOTES]
    teacher_row = ["teacher (6 layers)", f"{100 * t['test_acc']:.2f}", f"{100 * t['val_acc']:.2f}"]
    teacher_row += [f"{t['train_params']:,}", f"{t['student_params']:,}", "-", f"{t['train_time_s']:.0f}"]
    lines = ["# OPDF on VADER movie snippets (NLP)", "", intro, "", *notes, ""]
    lines += [variant_table(res["rows"], LABELS, [teacher_row]), ""]
    lines += [
        "Train-time params count the optimizer's parameters (frozen word embeddings excluded); "
        "inference params count every parameter of the exported, collapsed student.",
        "",
    ]
    lines += ["## OPDF vs the same base method (target: >= +1.0 point over plain)", ""]
    lines += delta_lines(res["deltas"], LABELS)
    alignment = difference_lines(res["rows"], "opdf", "opdf_noalign")
    lines += ["", "Alignment on minus off (same factorization, same seeds):", *alignment] if alignment else []
    return "\n".join(lines)
