"""EAsT / EC table: baseline vs EAsT vs EC (FitNet, dCor, several d), mean ± std over seeds, + unseen sets.

Text pair: teacher all-MiniLM-L6-v2 (cached sentence embeddings), student ``text_cnn`` from scratch,
trained on VADER movie snippets; the exported students are also scored, without further training, on
VADER tweets and Amazon snippets (same binary label space). Checkpoints are selected on validation only.

Setup: ``kdforge embed extract --dataset vader_movies --model minilm`` (or the CLI module) first.

Usage: ``python benchmarks/east_table.py --seeds 0 1 2 --ds 8 32`` (``--render`` re-renders the
markdown from the JSON) -> ``benchmarks/results/east_table.{json,md}`` and ``east_table.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from kdforge.data.text import vader_all
from kdforge.engine.run import load_student
from kdforge.experiments import east_protocol as east
from kdforge.experiments import make_trials, run_sweep
from kdforge.experiments.scoring import model_accuracy
from kdforge.report.results import rerender_results, save_results
from kdforge.report.tables import markdown_table, mean_std

CONFIGS = Path(__file__).parents[1] / "configs" / "east"
RESULTS = Path(__file__).parent / "results"
EAST = ["method.kwargs.compress=false"]


def rows_spec(ds: list[int], lam: float | None, baseline: bool) -> list[tuple[str, str, list[str]]]:
    """(row label, recipe, overrides) for every table row (``lam`` overrides the recipes' lambda)."""
    rows = [("baseline", "vader_baseline.yaml", [])] if baseline else []
    losses = (("FitNet", "fitnet"), ("dCor", "dcor"))
    rows += [(f"EAsT-{name}", "vader_ec_dcor.yaml", [*EAST, f"method.kwargs.loss={n}"]) for name, n in losses]
    for name, loss in losses:
        for d in ds:
            overrides = [f"method.kwargs.loss={loss}", f"method.kwargs.d={d}"]
            rows.append((f"EC-{name} d={d}", "vader_ec_dcor.yaml", overrides))
    lam_over = [f"method.kwargs.lam={lam}"] if lam is not None else []
    return [(label, r, ov + (lam_over if label != "baseline" else [])) for label, r, ov in rows]


def run(args: argparse.Namespace) -> dict:
    unseen = {domain: vader_all(domain) for domain in args.unseen}
    runs = []
    for label, recipe, overrides in rows_spec(args.ds, args.lam, not args.no_baseline):
        name = label.replace(" ", "_").replace("=", "") + (f"_lam{args.lam}" if args.lam else "")
        extra = [*overrides, f"train.epochs={args.epochs}"]
        trials = make_trials(CONFIGS / recipe, {}, args.seeds, name=name, extra_overrides=extra)
        for trial, summary in zip(trials, run_sweep(trials, args.output_dir, progress=False), strict=True):
            student = load_student(Path(args.output_dir) / trial.name / "student")
            row = {"row": label, "recipe": recipe, "overrides": extra, "seed": trial.seed}
            row.update({k: summary[k] for k in ("val_acc", "test_acc", "best_step", "train_time_s")})
            row.update({f"unseen_{d}": model_accuracy(student, data) for d, data in unseen.items()})
            runs.append(row)
    return {"runs": runs}


def table(res: dict) -> dict[str, dict[str, list[float]]]:
    """Row label -> column -> per-seed values."""
    labels = list(dict.fromkeys(r["row"] for r in res["runs"]))
    cols = ["test_acc", *[k for k in res["runs"][0] if k.startswith("unseen_")]]
    return {lab: {c: [r[c] for r in res["runs"] if r["row"] == lab] for c in cols} for lab in labels}


def markdown(res: dict) -> str:
    args, rows = res["provenance"]["config"], table(res)
    header = ["row", "test (movies)", *[f"unseen {d}" for d in args["unseen"]]]
    intro = (
        f"Accuracy (%) mean ± std over seeds {args['seeds']}; checkpoint selected on validation; "
        f"{args['epochs']} epochs; lambda {args.get('lam') or 'of the recipes (0.7)'}. Test = held-out 20% "
        f"of VADER movie snippets; unseen = whole VADER {' / '.join(args['unseen'])} sets, no further "
        "training."
    )
    cells = [[lab, *[mean_std(values) for values in cols.values()]] for lab, cols in rows.items()]
    title = "# EAsT / EC on text: MiniLM sentence embeddings teach a small CNN (VADER movies)"
    return "\n".join([title, "", intro, "", markdown_table(header, cells)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--ds", type=int, nargs="+", default=[8, 32])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--unseen", nargs="+", default=["tweets", "amazon"])
    p.add_argument("--lam", type=float, default=None, help="override lambda of every EAsT/EC row")
    p.add_argument("--no-baseline", action="store_true", help="skip the baseline rows")
    p.add_argument("--output-dir", default="runs/east_table")
    p.add_argument("--out", default=str(RESULTS / "east_table.json"))
    p.add_argument("--render", action="store_true", help="re-render the markdown from the JSON only")
    args = p.parse_args()
    if args.render:
        print(rerender_results(args.out, markdown))
        return
    torch.set_num_threads(1)  # small models on a shared CPU: extra threads only add contention
    res = run(args)
    print(save_results(args.out, res, markdown, vars(args), args.seeds))
    rows = {
        label: [r for r in res["runs"] if r["row"] == label]
        for label in dict.fromkeys(r["row"] for r in res["runs"])
    }
    east.plot_pairs(
        {"VADER movies, MiniLM teacher, text-CNN student": rows}, args.ds, Path(args.out).with_suffix(".png")
    )


if __name__ == "__main__":
    main()
