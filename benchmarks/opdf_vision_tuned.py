"""OPDF vision table with every row's learning rate chosen on validation from the same grid.

Usage: ``PYTHONPATH=src python benchmarks/opdf_vision_tuned.py [--bases kd fitnet] [--variants plain opdf]``,
``--collect`` (train nothing: results from the finished runs), ``--render`` (markdown/PNG from the JSON).

Each ``configs/opdf/<base>_<variant>.yaml`` runs once per lr of ``--lrs`` and seed (runs
``tuned_<base>_<variant>-lr=<lr>-seed<S>`` in the recipes' output_dir, resumable), teachers as in
``opdf_vision.py``. Per row the lr with the best mean validation accuracy over seeds is chosen
(``experiments.tuning.tune_row``); OPDF rows are compared with the tuned plain row of the same
base, paired by seed (bootstrap 95% interval, target +1.0 point). Rows whose grid did not finish
are listed as not run. Writes ``benchmarks/results/opdf_vision_tuned.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kdforge.config import load_recipe
from kdforge.experiments import make_trials, run_recipe, run_sweep
from kdforge.experiments.tuning import (
    delta_line,
    plot_tuning,
    split_finished,
    tune_row,
    tuned_delta,
    tuned_table,
)
from kdforge.report.results import rerender_results, save_results

ROOT = Path(__file__).resolve().parents[1]
CONFIGS, RESULTS = ROOT / "configs" / "opdf", ROOT / "benchmarks" / "results" / "opdf_vision_tuned.json"
TEACHERS = {"theseus": "teacher_theseus"}  # base -> teacher recipe (default: teacher)
LABELS = {"plain": "plain", "opdf": "+OPDF (MPO)", "svd": "+SVD", "opdf_noalign": "+OPDF w/o alignment"}
LRS = [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064]  # log2 grid from the recipes' lr (0.002)


def grid(base: str, variant: str, lrs: list[float], seeds: list[int]):
    recipe = CONFIGS / f"{base}_{variant}.yaml"
    return make_trials(recipe, {"train.lr": lrs}, seeds, f"tuned_{base}_{variant}")


def run_grid(bases: list[str], variants: list[str], lrs: list[float], seeds: list[int], train: bool) -> dict:
    order = [(b, v) for v in variants for b in bases]  # priority: variant-major (plain, opdf first)
    order = sorted(order, key=lambda bv: (variants.index(bv[1]) > 1, bases.index(bv[0])))
    rows, missing = [], {}
    for base, variant in order:
        trials = grid(base, variant, lrs, seeds)
        if train:
            run_recipe(CONFIGS / f"{TEACHERS.get(base, 'teacher')}.yaml")
            run_sweep(trials, trials[0].config.output_dir, progress=False)
        done, todo = split_finished(trials, trials[0].config.output_dir)
        if todo:
            missing[f"{base} {variant}"] = f"{len(todo)} of {len(trials)} runs unfinished"
            continue
        recipe = str((CONFIGS / f"{base}_{variant}.yaml").relative_to(ROOT))
        rows.append({"base": base, "variant": variant, "recipe": recipe, **tune_row(done, "train.lr")})
    by = {(r["base"], r["variant"]): r for r in rows}
    deltas = [
        {"base": b, "variant": v, **tuned_delta(r, by[b, "plain"])}
        for (b, v), r in by.items()
        if v != "plain" and (b, "plain") in by
    ]
    align = [
        {"base": b, **tuned_delta(r, by[b, "opdf_noalign"], target=0.0)}
        for (b, v), r in by.items()
        if v == "opdf" and (b, "opdf_noalign") in by
    ]
    res = {"seeds": seeds, "lrs": lrs, "rows": rows, "deltas": deltas, "align_deltas": align}
    res["teachers"] = {}  # re-trained from their unchanged recipes when runs/ lacks them
    for name in dict.fromkeys(TEACHERS.get(b, "teacher") for b in bases):
        summary = Path(load_recipe(CONFIGS / f"{name}.yaml").output_dir) / name / "summary.json"
        if summary.is_file():
            res["teachers"][name] = {k: json.loads(summary.read_text())[k] for k in ("val_acc", "test_acc")}
    return dict(res, not_run=missing)


def plot(res: dict, out: Path) -> None:
    panels: dict[str, list] = {}
    for r in res["rows"]:
        panels.setdefault(r["base"], []).append((LABELS[r["variant"]], r))
    plot_tuning(panels, out, "learning rate")


def markdown(res: dict) -> str:
    """Per row: val mean per lr, the chosen lr, val/test at it; then OPDF's deltas over tuned plain."""
    rows = [(f"{r['base']} {LABELS[r['variant']]}", r) for r in res["rows"]]
    intro = (
        "Fashion-MNIST, the recipes of `opdf_vision.md` (10k-example subset, 6 epochs, teachers unchanged), "
        f"each row run at every lr of {res['lrs']} x seeds {res['seeds']}. `val @ lr`: validation accuracy "
        "(%), mean over seeds; the row's lr is the one with the best mean (validation only); val/test: mean "
        "± std over seeds at that lr, checkpoint selected on validation. Every row gets the same grid."
    )
    lines = ["# OPDF on Fashion-MNIST with tuned learning rates (vision)", "", intro, ""]
    for name, t in res.get("teachers", {}).items():
        lines.append(f"- teacher `{name}`: test {100 * t['test_acc']:.2f} %, val {100 * t['val_acc']:.2f} %")
    lines += [""] if res.get("teachers") else []
    lines += [tuned_table(rows, res["lrs"]), ""]
    lines += ["## vs the tuned plain student of the same base (target: >= +1.0 point on test)", ""]
    lines += [delta_line(f"{d['base']} {LABELS[d['variant']]}", d) for d in res["deltas"]]
    if res.get("align_deltas"):
        lines += ["", "Alignment on minus off (both tuned, paired by seed):"]
        lines += [delta_line(d["base"], d) for d in res["align_deltas"]]
    lines += [
        "",
        "Intervals: paired bootstrap 95% over seeds; with 3 seeds they are narrow (seed noise only).",
    ]
    if res["not_run"]:
        lines += ["", "Not run (CPU budget): " + "; ".join(f"{k} ({v})" for k, v in res["not_run"].items())]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--bases", nargs="+", default=["kd", "fitnet", "adkd", "theseus"])
    ap.add_argument("--variants", nargs="+", default=list(LABELS))
    ap.add_argument("--lrs", type=float, nargs="+", default=LRS)
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--collect", action="store_true", help="train nothing; report the finished rows")
    ap.add_argument("--render", action="store_true", help="re-render the markdown from the JSON only")
    args = ap.parse_args()
    out = Path(args.out)
    if args.render:
        print(rerender_results(out, markdown))
    else:
        res = run_grid(args.bases, args.variants, args.lrs, args.seeds, train=not args.collect)
        config = {"recipes": [f"configs/opdf/{b}_{v}.yaml" for b in args.bases for v in args.variants]}
        print(save_results(out, res, markdown, config, args.seeds))
    plot(json.loads(out.read_text()), out.with_suffix(".png"))


if __name__ == "__main__":
    main()
