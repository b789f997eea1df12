"""Shipped recipes re-checked: each recipe's student trained alone vs its distilled student.

Usage::

    PYTHONPATH=src python benchmarks/recipes_check.py [--seeds 0 1 2] [--recipes fmnist_kd.yaml ...]
    PYTHONPATH=src python benchmarks/recipes_check.py --render  # re-render the markdown from the JSON

Every recipe under ``configs/`` (but bases and ``kt/``) is planned by
``kdforge.experiments.recipes_plan``: a teacher (its own seed), a student alone (every seed),
or a distilling recipe, run with its teacher recipe first and its student alone (same recipe,
``method: supervised``, no teacher) over the seeds. ``--recipes`` runs those, in that order
(default: all but the costly ones the library declares); runs on disk are reused, and the
results file is written after each recipe. Rows of recipes not run now are carried over from
the results file (with where they were measured), or listed as not checked with the reason.
Writes ``benchmarks/results/recipes_check.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kdforge.experiments.recipes_check import check_plan, checkable_recipes, recipe_note, tune_pair
from kdforge.experiments.recipes_plan import TUNING, plan_recipes
from kdforge.experiments.recipes_table import latest_rows, merge_rows, recipes_markdown
from kdforge.report.results import rerender_results, save_results

ROOT = Path(__file__).resolve().parents[1]
CONFIGS, RESULTS = ROOT / "configs", ROOT / "benchmarks" / "results" / "recipes_check.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of every student")
    ap.add_argument("--recipes", nargs="*", default=None, help="recipes (under configs/) to run, in order")
    ap.add_argument("--out", default=str(RESULTS), help="results JSON (its rows are carried over)")
    ap.add_argument("--carry", nargs="*", default=[], help="more results JSONs whose newer rows are carried")
    ap.add_argument("--audio-data", default="data/speech-words", help="generated speech (east_audio)")
    ap.add_argument("--no-tuning", action="store_true", help="skip the declared tuning (TUNING)")
    ap.add_argument("--render", action="store_true", help="re-render the markdown from the JSON only")
    args = ap.parse_args()
    if args.render:
        print(rerender_results(args.out, recipes_markdown))
        return
    every = checkable_recipes(CONFIGS)
    plans = {p.rel: p for p in plan_recipes(CONFIGS, every, {"audio": args.audio_data})}
    chosen = args.recipes if args.recipes is not None else [r for r in every if plans[r].reason is None]
    unknown = sorted(set(chosen) - set(plans))
    if unknown:
        raise SystemExit(f"not a checkable recipe under configs/: {unknown}")
    out = Path(args.out)
    files = [json.loads(Path(f).read_text()) for f in [out] * out.is_file() + list(args.carry)]
    previous, tuning = latest_rows(files), dict(files[0].get("tuning", {}) if files else {})
    notes, new = {r: recipe_note(CONFIGS / r) for r in every}, {}
    for rel in [None, *chosen]:  # None: write the merged file once before running anything
        if rel in TUNING and not args.no_tuning:
            teacher = CONFIGS / plans[rel].teacher if plans[rel].teacher else None
            tuning[rel] = tune_pair(CONFIGS / rel, *TUNING[rel], seeds=[0], teacher=teacher)
        if rel is not None:
            new[rel] = check_plan(plans[rel], CONFIGS, args.seeds)
        rows = merge_rows(every, new, previous, {r: p.reason for r, p in plans.items()}, notes)
        res = {"seeds": args.seeds, "rows": rows, "tuning": tuning}
        config = {"recipes": chosen, "audio_data": args.audio_data}
        print(save_results(out, res, recipes_markdown, config, args.seeds).splitlines()[4], flush=True)


if __name__ == "__main__":
    main()
