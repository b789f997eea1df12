"""Shipped recipes re-checked: each recipe's student trained alone vs its distilled student.

Usage::

    PYTHONPATH=src python benchmarks/recipes_check.py [--seeds 0 1 2] [--recipes fmnist_kd.yaml ...]
    PYTHONPATH=src python benchmarks/recipes_check.py --render  # re-render the markdown from the JSON

Every recipe under ``configs/`` (but bases and ``kt/``) is declared in ``RECIPES``: a teacher (its
accuracy, its own seed), a student alone (3 seeds), or a distilling recipe and the teacher recipe
it reads; ``kdforge.experiments.recipes_check`` runs it and its student alone (same recipe,
``method: supervised``, no teacher) over the seeds. Runs are reused. Recipes not selected with
``--recipes`` are listed as not checked, with the reason in ``SKIPPED``. Writes
``benchmarks/results/recipes_check.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kdforge.config import load_recipe
from kdforge.experiments import run_recipe
from kdforge.experiments.recipes_check import (
    check_recipe,
    checkable_recipes,
    run_alone,
    single_row,
    skipped_row,
    tune_pair,
)
from kdforge.report.results import rerender_results, save_results
from kdforge.report.tables import interval_cell, markdown_table

ROOT = Path(__file__).resolve().parents[1]
CONFIGS, RESULTS = ROOT / "configs", ROOT / "benchmarks" / "results" / "recipes_check.json"
TEACHER, ALONE = "teacher", "alone"
OPDF_T, THESEUS_T, FM_T = "opdf/teacher.yaml", "opdf/teacher_theseus.yaml", "fmnist_teacher.yaml"
EMB = "cost: needs teacher embeddings cached first (east_image_teachers.py / kdforge embed extract)"
AUDIO = "added after this check ran: needs generated speech (kdforge data speech-words); see east_audio_words"
NLP = "cost: MiniLM teacher; one nlp_kd_plain run took 62-134 s, the teacher 750 s (opdf_nlp.json)"
RECIPES: dict[str, str] = {  # recipe -> teacher | alone | the teacher recipe it distils from
    "fmnist_teacher.yaml": TEACHER, "fmnist_student.yaml": ALONE,
    "fmnist_kd.yaml": FM_T, "fmnist_fitnet.yaml": FM_T,
    "east/digits_baseline.yaml": ALONE, "east/fmnist_baseline.yaml": ALONE, "east/vader_baseline.yaml": ALONE,
    "east/vader_amazon_baseline.yaml": ALONE, "east/vader_tweets_baseline.yaml": ALONE,
    **{f"east/{n}.yaml": EMB for n in ("digits_ae_ec", "digits_coarse_ec", "fmnist_coarse_ec")},
    **{f"east/{n}.yaml": EMB for n in ("vader_amazon_ec", "vader_ec_dcor", "vader_tweets_ec")},
    "opdf/teacher.yaml": TEACHER, "opdf/teacher_theseus.yaml": TEACHER, "opdf/nlp_teacher.yaml": NLP,
    **{f"opdf/{b}_{v}.yaml": THESEUS_T if b == "theseus" else OPDF_T
       for b in ("kd", "fitnet", "adkd", "theseus")
       for v in ("plain", "svd", "opdf", "opdf_noalign", "plain_lr3x")},
    **{f"opdf/nlp_{b}_{v}.yaml": NLP for b in ("kd", "adkd", "narrowkd", "theseus")
       for v in ("plain", "svd", "opdf", "opdf_noalign", "plain_lr3x")},
    "opdf/nlp_kd_opdf_shift.yaml": NLP, "opdf/nlp_kd_plain_shift.yaml": NLP,
    **{f"east_audio/{n}.yaml": AUDIO for n in ("words_baseline", "words_ec", "words_teacher_probe")},
}  # fmt: skip
TUNING = {  # recipe -> (student-alone grid, distilled grid): equal sizes, seed 0, chosen on validation
    "fmnist_fitnet.yaml": (
        {"train.lr": [0.002, 0.006]},
        {"train.lr": [0.002, 0.006]},
    ),
}
NOT_RUN = "time: not reached within this check's budget on the shared 2-core CPU"


def check(rel: str, seeds: list[int]) -> dict:
    kind, path = RECIPES[rel], CONFIGS / rel
    if kind == TEACHER:
        return single_row(rel, [run_recipe(path)], "teacher")
    if kind == ALONE:
        return single_row(rel, run_alone(load_recipe(path), seeds), "student alone")
    if not kind.endswith(".yaml"):
        return skipped_row(rel, kind)
    return check_recipe(path, seeds, teacher=CONFIGS / kind, label=rel)


def pm(side: dict, key: str) -> str:
    s = side[key]
    return f"{100 * s['mean']:.2f}" + (f" ± {100 * s['std']:.2f}" if len(s["values"]) > 1 else "")


def markdown(res: dict) -> str:
    head = ["recipe", "method", "params", "alone val %", "distilled val %", "alone test %",
            "distilled test %", "val delta [95% CI]", "verdict (val)"]  # fmt: skip
    cells, singles, skipped, notes = [], [], {}, []
    for r in res["rows"]:
        if r["kind"] == "distilled":
            a, d = r["alone"], r["distilled"]
            shown = f"{r['verdict']}: {r['claim']}" + (" (see note)" if r["note"] else "")
            delta = interval_cell(r["val_delta"])
            cells.append([r["recipe"], r["method"], f"{d['params']:,}", pm(a, "val_acc"), pm(d, "val_acc"),
                          pm(a, "test_acc"), pm(d, "test_acc"), delta, shown])  # fmt: skip
            notes += [f"- {r['recipe']}: {r['note']}"] if r["note"] else []
        elif r["kind"] == "not checked":
            skipped.setdefault(r["reason"], []).append(f"`{r['recipe']}`")
        else:
            a = r["alone"]
            singles.append([r["recipe"], r["kind"], f"{a['params']:,}", pm(a, "val_acc"), pm(a, "test_acc")])
    lines = ["# Shipped recipes: student alone vs distilled", "",
             f"Seeds {res['seeds']} (teachers: their recipe's seed). Student alone = the same recipe with "
             "`method: supervised` and no teacher, same schedule. Delta = distilled - alone validation "
             "accuracy, paired by seed (bootstrap 95% interval); verdict against 0.", "",
             markdown_table(head, cells), "", "Teachers and students trained alone:", "",
             markdown_table(["recipe", "role", "params", "val %", "test %"], singles)]  # fmt: skip
    lines += (
        ["", "Recipe notes (why distillation does not beat the student alone there):", *notes]
        if notes
        else []
    )
    lines += (
        ["", "Not checked:", *(f"- {why}: {', '.join(rs)}" for why, rs in skipped.items())] if skipped else []
    )
    checked = [r for r in res["rows"] if r["kind"] == "distilled"]
    ok = sum(r["ok"] for r in checked)
    lines[4:4] = [f"{ok} of {len(checked)} checked distilling recipes are not worse than their student alone "
                  "on validation (verdict not `missed`) or say why in the recipe.", ""]  # fmt: skip
    for rel, sides in res.get("tuning", {}).items():
        lines += [
            "",
            f"Tuning of {rel} (seed 0, validation accuracy %, same number of settings per side):",
            "",
        ]
        cells = [[side, json.dumps(c["overrides"]), f"{100 * c['mean']:.2f}"]
                 for side in ("alone", "distilled") for c in sides[side]["candidates"]]  # fmt: skip
        lines.append(markdown_table(["student", "setting", "val %"], cells))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES), help="recipes (under configs/) to run")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--no-tuning", action="store_true", help="leave TUNING out (its runs unfinished)")
    ap.add_argument("--render", action="store_true", help="re-render the markdown from the JSON only")
    args = ap.parse_args()
    if args.render:
        print(rerender_results(args.out, markdown))
        return
    missing = sorted(set(checkable_recipes(CONFIGS)) - set(RECIPES))
    if missing:
        raise SystemExit(f"recipes not declared in RECIPES: {missing}")
    tuning = {
        rel: tune_pair(CONFIGS / rel, *grids, seeds=[0], teacher=CONFIGS / RECIPES[rel])
        for rel, grids in TUNING.items()
        if rel in args.recipes and not args.no_tuning
    }
    runnable = {r for r, kind in RECIPES.items() if kind in (TEACHER, ALONE) or kind.endswith(".yaml")}
    chosen = set(args.recipes) | (set(RECIPES) - runnable)  # a declared reason is always reported
    rows = [check(r, args.seeds) if r in chosen else skipped_row(r, NOT_RUN) for r in RECIPES]
    res = {"seeds": args.seeds, "rows": rows, "tuning": tuning}
    print(save_results(args.out, res, markdown, {"recipes": args.recipes}, args.seeds))


if __name__ == "__main__":
    main()
