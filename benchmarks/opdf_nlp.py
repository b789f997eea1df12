"""OPDF NLP grid: {KD, Theseus} x {plain, +SVD, +OPDF, +OPDF w/o alignment} x seeds on VADER movie snippets.

Usage::

    PYTHONPATH=src python benchmarks/opdf_nlp.py [--seeds 0 1 2] [--bases kd theseus] [--variants plain ...]
    # the same recipes with more training data (runs named ..._sub1920_sS):
    PYTHONPATH=src python benchmarks/opdf_nlp.py --variants plain opdf plain_lr3x \\
        --override data.subset=1920 train.eval_every_steps=30 --tag sub1920 \\
        --out benchmarks/results/opdf_nlp_sub1920.json

Fine-tunes the all-MiniLM-L6-v2 teacher once (``configs/opdf/nlp_teacher.yaml``) if its
export is missing, then runs every ``configs/opdf/nlp_<base>_<variant>.yaml`` recipe once
per seed through the engine, seed-major (every variant of seed 0 first), reusing finished
runs (``summary.json``). The recipes set ``train.teacher_cache``, so the frozen teacher's
logits are computed once per training pool and reused from disk by every later run.
Model selection uses the validation split only; the table reports the test accuracy of the
selected checkpoint. The teacher is scored on the students' test split here. The exported
(collapsed) student's latency is measured against a plain student side by side.
Writes ``benchmarks/results/opdf_nlp.{json,md}``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

from kdforge.config import load_recipe
from kdforge.engine.run import build_method, load_splits
from kdforge.engine.trainer import evaluate
from kdforge.report.provenance import provenance, write_results
from opdf_vision import _ms, _run, grid_row, latency_ratio, opdf_deltas  # shared with the vision grid

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "opdf"
RESULTS = ROOT / "benchmarks" / "results" / "opdf_nlp.json"
VARIANTS = ["plain", "svd", "opdf", "opdf_noalign", "plain_lr3x"]
NOTES = {  # how a base method is set up in its recipes, printed under the table's introduction
    "kd": "KD: Hinton KD (T=2, alpha=0.5) from the 6-layer teacher's logits.",
    "adkd": "AD-KD: Hinton KD (T=2, alpha=0.5) + beta=1 x attribution alignment, Integrated Gradients on the "
    "word-embedding output with 2 steps for the teacher's top-1 class (cut from the paper's settings to fit "
    "the CPU budget).",
    "narrowkd": "KD with the narrower student: hidden 192 (12 heads of 16, FFN 768), half the teacher's "
    "width, "
    "weight-selected from the fine-tuned teacher's layers 1, 3, 5 (every 2nd dim, models/bert_narrow.py); 3 "
    "epochs at lr 1e-3 (control 3e-3), chosen on seed-0 validation of the plain row "
    "(opdf_nlp_narrow_selection.md). OPDF aligns its 192-wide MPO tensors with the teacher's 384-wide ones "
    "(equal auxiliary shapes, the central tensor absorbs the width).",
    "theseus": "Theseus (the OPDF paper's own base): the 3 successors (the same 3-layer student) replace the "
    "frozen teacher's layer groups {0,1}, {2,3}, {4,5}, each with probability p = 0.5 -> 1 over the first "
    "half of training, then train alone; task loss only. OPDF aligns successor l with teacher layer 2l+1.",
}
LABELS = {
    "plain": "plain",
    "svd": "+SVD",
    "opdf": "+OPDF",
    "opdf_noalign": "+OPDF w/o alignment",
    "plain_lr3x": "plain, 3x lr (control)",
}


def teacher_on_student_split(recipe: Path) -> dict[str, float]:
    """The teacher's validation/test accuracy on the split a student recipe uses (seed 0)."""
    cfg = load_recipe(recipe, ["seed=0"])
    splits = load_splits(cfg)
    teacher = build_method(cfg, splits).teacher
    sup = _TeacherEval(teacher)
    bs = cfg.data.eval_batch_size
    return {
        "val_acc": evaluate(sup, splits.val, bs, torch.device("cpu"))["acc"],
        "test_acc": evaluate(sup, splits.test, bs, torch.device("cpu"))["acc"],
        "test_size": len(splits.test),
    }


class _TeacherEval(torch.nn.Module):
    """Adapter: the teacher as something :func:`evaluate` can score."""

    def __init__(self, teacher: torch.nn.Module) -> None:
        super().__init__()
        self.teacher = teacher

    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.teacher(**{k: v for k, v in batch.items() if k != "y"})


def text_inputs(batch: int = 8, tokens: int = 32) -> dict[str, torch.Tensor]:
    """A fixed batch of random token ids (no padding) for latency timing."""
    g = torch.Generator().manual_seed(0)
    return {
        "input_ids": torch.randint(1000, 20000, (batch, tokens), generator=g),
        "attention_mask": torch.ones(batch, tokens, dtype=torch.int64),
    }


def markdown(res: dict) -> str:
    """The results table (one row per base method x variant, teacher row first)."""
    t = res["teacher"]
    lines = [
        "# OPDF on VADER movie snippets (NLP)",
        "",
        f"Teacher: all-MiniLM-L6-v2 + linear head on the mean-pooled tokens, fine-tuned once "
        f"({t['train_subset']:,} examples, 1 epoch). Student (unless a note below says otherwise): 3-layer "
        f"MiniLM of the same width made of the fine-tuned teacher's layers 1, 3, 5, trained on a "
        f"{res['subset']:,}-example subset for "
        f"{res['epochs']} epoch(s); sequences cut at {res['max_len']} tokens; word embeddings frozen for "
        f"every model. Test: {t['test_size']:,} held-out snippets. Test accuracy (%) of the checkpoint "
        f"selected on validation, mean ± std over seeds {res['seeds']}.",
        "",
        *[f"- {NOTES[b]}" for b in dict.fromkeys(r["base"] for r in res["rows"]) if b in NOTES],
        "",
        "| method | test acc (%) | val acc (%) | train-time params | inference params | latency vs plain "
        "| train time (s) |",
        "|---|---|---|---|---|---|---|",
        f"| teacher (6 layers) | {100 * t['test_acc']:.2f} | {100 * t['val_acc']:.2f} | "
        f"{t['train_params']:,} | {t['student_params']:,} | - | {t['train_time_s']:.0f} |",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['base']} {LABELS[r['variant']]} | {_ms(r['test_acc'])} | {_ms(r['val_acc'])} | "
            f"{r['train_params']:,} | {r['inference_params']:,} | {r['latency_ratio']:.2f} | "
            f"{statistics.mean(r['train_time_s']):.0f} |"
        )
    lines += [
        "",
        "Train-time params count the optimizer's parameters (frozen word embeddings excluded); "
        "inference params count every parameter of the exported, collapsed student.",
        "",
        "## OPDF vs the same base method (target: >= +1.0 point over plain)",
        "",
    ]
    for d in res["deltas"]:
        verdict = "met" if d["delta_points"] >= 1.0 else "**missed**"
        line = f"- {d['base']} {LABELS[d['variant']]}: {d['delta_points']:+.2f} points vs plain ({verdict})"
        if d.get("delta_vs_control") is not None:
            line += f"; {d['delta_vs_control']:+.2f} vs the plain 3x-lr control"
        line += f"; {d['delta_vs_teacher']:+.2f} vs the teacher"
        lines.append(line)
    acc = {(r["base"], r["variant"]): 100 * statistics.mean(r["test_acc"]) for r in res["rows"]}
    both = sorted({b for b, _ in acc if (b, "opdf") in acc and (b, "opdf_noalign") in acc})
    if both:
        lines += ["", "Alignment on minus off (same factorization, same seeds):"]
    for base in both:
        lines.append(f"- {base}: {acc[base, 'opdf'] - acc[base, 'opdf_noalign']:+.2f} points")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--bases", nargs="+", default=["kd"])
    ap.add_argument("--variants", nargs="+", default=VARIANTS)
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument(
        "--override",
        nargs="*",
        default=[],
        help="dotted overrides for every student run, e.g. data.subset=1920",
    )
    ap.add_argument("--tag", default="", help="run-name suffix for runs made with --override")
    args = ap.parse_args()
    tag = f"_{args.tag}" if args.tag else ""
    torch.set_num_threads(1)
    teacher = _run(CONFIGS / "nlp_teacher.yaml", [])
    teacher_cfg = load_recipe(CONFIGS / "nlp_teacher.yaml")
    recipes = [
        (base, variant, CONFIGS / f"nlp_{base}_{variant}.yaml")
        for base in args.bases
        for variant in args.variants
        if (CONFIGS / f"nlp_{base}_{variant}.yaml").is_file()
    ]
    runs: dict[tuple[str, str], list[dict]] = {}
    # seed-major, controls last: an interrupted grid still covers every main variant
    main_first = [r for r in recipes if r[1] != "plain_lr3x"], [r for r in recipes if r[1] == "plain_lr3x"]
    for group in main_first:
        for s in args.seeds:
            for base, variant, recipe in group:
                runs.setdefault((base, variant), []).append(
                    _run(recipe, [*args.override, f"seed={s}", f"name=nlp_{base}_{variant}{tag}_s{s}"])
                )
    rows = []
    for base, variant, recipe in recipes:
        done = runs[base, variant]
        out_dir = load_recipe(
            recipe, [*args.override, f"name=nlp_{base}_{variant}{tag}_s{args.seeds[0]}"]
        ).run_dir
        rows.append(
            grid_row(
                base,
                variant,
                recipe,
                done,
                latency_ratio=latency_ratio(
                    out_dir / "student.safetensors", text_inputs(), blocks=9, per_block=10, warmup=3
                ),
            )
        )
    first = recipes[0][2]
    t_eval = teacher_on_student_split(first)
    teacher_row = {**teacher, **t_eval, "train_subset": teacher_cfg.data.subset}
    deltas = opdf_deltas(rows, teacher_row["test_acc"])
    fcfg = load_recipe(first, args.override)
    res = {
        "seeds": args.seeds,
        "subset": fcfg.data.subset,
        "epochs": fcfg.train.epochs,
        "max_len": fcfg.data.kwargs.get("max_len", 64),
        "overrides": args.override,
        "teacher": teacher_row,
        "rows": rows,
        "deltas": deltas,
    }
    cfg = {"recipes": sorted(str(p.relative_to(ROOT)) for p in CONFIGS.glob("nlp_*.yaml"))}
    res["provenance"] = provenance(cfg, seeds=args.seeds, command=" ".join(["python", *sys.argv]))
    write_results(args.out, res, markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
