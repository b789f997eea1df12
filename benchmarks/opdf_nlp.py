"""OPDF NLP grid: {KD, Theseus, AD-KD, narrow KD} x {plain, +SVD, +OPDF (+/- align)} x seeds, VADER movies.

Usage::

    PYTHONPATH=src python benchmarks/opdf_nlp.py [--seeds 0 1 2] [--bases kd theseus] [--variants plain ...]
    # the same recipes with more training data (runs named ..._sub1920-seedS):
    PYTHONPATH=src python benchmarks/opdf_nlp.py --variants plain opdf plain_lr3x \\
        --override data.subset=1920 train.eval_every_steps=30 --tag sub1920 \\
        --out benchmarks/results/opdf_nlp_sub1920.json
    PYTHONPATH=src python benchmarks/opdf_nlp.py --render --out ...  # re-render the markdown from the JSON

Fine-tunes the all-MiniLM-L6-v2 teacher once (``configs/opdf/nlp_teacher.yaml``) if its export is
missing, then runs every ``configs/opdf/nlp_<base>_<variant>.yaml`` once per seed, seed-major and
the 3x-lr controls last (an interrupted grid still covers every main variant), reusing finished
runs. One process: the frozen teacher's logits are computed once per example (``cache_teacher``).
Selection on validation; the teacher is scored on the students' test split; the exported,
collapsed student is timed against a plain one side by side. Writes ``benchmarks/results/opdf_nlp.*``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from kdforge.config import load_recipe
from kdforge.experiments import run_recipe, run_seeds
from kdforge.experiments.scoring import teacher_scores
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
CONFIGS, RESULTS = ROOT / "configs" / "opdf", ROOT / "benchmarks" / "results" / "opdf_nlp.json"
LABELS = {
    "plain": "plain",
    "svd": "+SVD",
    "opdf": "+OPDF",
    "opdf_noalign": "+OPDF w/o alignment",
    "plain_lr3x": "plain, 3x lr (control)",
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
TOKENS = torch.randint(1000, 20000, (8, 32), generator=torch.Generator().manual_seed(0))
TEXT_INPUTS = {"input_ids": TOKENS, "attention_mask": torch.ones_like(TOKENS)}  # for latency timing


def run_grid(bases: list[str], variants: list[str], seeds: list[int], override: list[str], tag: str) -> dict:
    teacher = run_recipe(CONFIGS / "nlp_teacher.yaml")
    grid = [(b, v) for b in bases for v in variants if (CONFIGS / f"nlp_{b}_{v}.yaml").is_file()]
    order = [g for g in grid if g[1] != "plain_lr3x"], [g for g in grid if g[1] == "plain_lr3x"]
    runs: dict[tuple[str, str], list[dict]] = {}
    for group in order:
        for seed in seeds:
            for base, variant in group:
                recipe, name = CONFIGS / f"nlp_{base}_{variant}.yaml", f"nlp_{base}_{variant}{tag}"
                runs.setdefault((base, variant), []).extend(run_seeds(recipe, [seed], name, override))
    rows = []
    for base, variant in grid:
        recipe = CONFIGS / f"nlp_{base}_{variant}.yaml"
        exported = (
            Path(load_recipe(recipe).output_dir) / runs[base, variant][0]["trial"] / "student.safetensors"
        )
        latency = exported_latency_ratio(exported, TEXT_INPUTS, blocks=9, per_block=10, warmup=3)
        rows.append(
            variant_row(
                base, variant, str(recipe.relative_to(ROOT)), runs[base, variant], latency_ratio=latency
            )
        )
    first = CONFIGS / f"nlp_{grid[0][0]}_{grid[0][1]}.yaml"
    subset = load_recipe(CONFIGS / "nlp_teacher.yaml").data.subset
    teacher = {**teacher, **teacher_scores(load_recipe(first, ["seed=0"])), "train_subset": subset}
    deltas = variant_deltas(
        rows, lambda v: v.startswith("opdf"), control="plain_lr3x", teacher_acc=teacher["test_acc"]
    )
    cfg = load_recipe(first, override)
    max_len = cfg.data.kwargs.get("max_len", 64)
    return dict(
        seeds=seeds,
        subset=cfg.data.subset,
        epochs=cfg.train.epochs,
        overrides=override,
        max_len=max_len,
        teacher=teacher,
        rows=rows,
        deltas=deltas,
    )


def markdown(res: dict) -> str:
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--bases", nargs="+", default=["kd"])
    ap.add_argument("--variants", nargs="+", default=list(LABELS))
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--override", nargs="*", default=[], help="dotted overrides for every student run")
    ap.add_argument("--tag", default="", help="run-name suffix for runs made with --override")
    ap.add_argument("--render", action="store_true", help="re-render the markdown from the JSON only")
    args = ap.parse_args()
    if args.render:
        print(rerender_results(args.out, markdown))
        return
    torch.set_num_threads(1)
    res = run_grid(args.bases, args.variants, args.seeds, args.override, f"_{args.tag}" if args.tag else "")
    config = {"recipes": sorted(str(p.relative_to(ROOT)) for p in CONFIGS.glob("nlp_*.yaml"))}
    print(save_results(args.out, res, markdown, config, args.seeds))


if __name__ == "__main__":
    main()
