"""Does OPDF's tensor alignment matter at any weight? ``<base>_opdf`` with ``lambda_align`` swept.

Usage::

    PYTHONPATH=src python benchmarks/opdf_align_sweep.py --bases kd --lambdas 0 1 100 10000 [--seeds 0 1 2]
    PYTHONPATH=src python benchmarks/opdf_align_sweep.py --render  # re-render the markdown from the JSON

Runs ``configs/opdf/<base>_opdf.yaml`` per lambda and seed (teachers as in ``opdf_vision.py``),
records test/validation accuracy and the logged alignment term (weighted, mean of the last 20
logged steps), so a null result can be told apart from a term too small to act; the best
lambda per base is chosen on validation. Writes ``benchmarks/results/opdf_align_sweep.{json,md}``.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from kdforge.config import load_recipe
from kdforge.engine.logger import read_metrics
from kdforge.experiments import run_recipe, run_seeds, select_best
from kdforge.report.results import rerender_results, save_results
from kdforge.report.tables import markdown_table, mean_std

ROOT = Path(__file__).resolve().parents[1]
CONFIGS, RESULTS = ROOT / "configs" / "opdf", ROOT / "benchmarks" / "results" / "opdf_align_sweep.json"
TEACHERS = {"theseus": "teacher_theseus"}  # base -> teacher recipe (default: teacher)


def sweep(bases: list[str], lambdas: list[float], seeds: list[int]) -> dict:
    rows, summaries = [], []
    for base in bases:
        run_recipe(CONFIGS / f"{TEACHERS.get(base, 'teacher')}.yaml")
        recipe = CONFIGS / f"{base}_opdf.yaml"
        for lam in lambdas:
            runs = run_seeds(recipe, seeds, f"{base}_opdf_lam{lam:g}", [f"method.kwargs.lambda_align={lam}"])
            logs = [read_metrics(Path(load_recipe(recipe).output_dir) / r["trial"]) for r in runs]
            align = [[m["align"] for m in log if "align" in m][-20:] for log in logs]
            rows.append(
                {
                    "base": base,
                    "lambda_align": lam,
                    "test_acc": [r["test_acc"] for r in runs],
                    "val_acc": [r["val_acc"] for r in runs],
                    "align_term": [statistics.mean(a) if a else 0.0 for a in align],
                }
            )
            summaries += [dict(r, base=base, overrides={"lambda_align": lam}) for r in runs]
    best = select_best(summaries, group_by=("base",))
    return {
        "seeds": seeds,
        "rows": rows,
        "best_on_val": {b: s["overrides"]["lambda_align"] for (b,), s in best.items()},
    }


def markdown(res: dict) -> str:
    """One row per (base, lambda); the lambda chosen on validation is marked."""
    rows = []
    for r in res["rows"]:
        best = " (best val)" if res["best_on_val"][r["base"]] == r["lambda_align"] else ""
        align = f"{statistics.mean(r['align_term']):.3g}"
        rows.append(
            [
                r["base"],
                f"{r['lambda_align']:g}{best}",
                mean_std(r["val_acc"]),
                mean_std(r["test_acc"]),
                align,
            ]
        )
    header = ["base", "lambda_align", "val acc (%)", "test acc (%)", "align term"]
    intro = (
        f"`<base>_opdf.yaml` with `method.kwargs.lambda_align` swept; seeds {res['seeds']}; accuracy (%) of "
        "the checkpoint selected on validation. `align term` = lambda x L_align, mean of the last 20 logged "
        "steps, averaged over seeds (0 when off). The best lambda per base is picked on validation."
    )
    title = "# OPDF tensor-alignment weight sweep (Fashion-MNIST, vision recipes)"
    return "\n".join([title, "", intro, "", markdown_table(header, rows)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 1.0, 100.0, 10000.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--bases", nargs="+", default=["kd"])
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--render", action="store_true", help="re-render the markdown from the JSON only")
    args = ap.parse_args()
    if args.render:
        print(rerender_results(args.out, markdown))
        return
    config = {"recipes": [f"configs/opdf/{b}_opdf.yaml" for b in args.bases], "lambdas": args.lambdas}
    print(save_results(args.out, sweep(args.bases, args.lambdas, args.seeds), markdown, config, args.seeds))


if __name__ == "__main__":
    main()
