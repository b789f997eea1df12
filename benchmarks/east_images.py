"""EAsT / EC on images: baseline vs EAsT vs EC (FitNet, dCor, several d), low-label students, + unseen set.

Teacher/data pairs (teachers trained once by ``benchmarks/east_image_teachers.py``, embeddings cached):

- ``digits_ae``: unsupervised teacher ``ae_fmnist`` (autoencoder on Fashion-MNIST images, no labels)
  -> CNN student on 150 labelled 8x8 digits.
- ``digits_coarse``: other-task teacher ``coarse_fmnist`` (Fashion-MNIST super-class classifier)
  -> the same digits student.
- ``fmnist_coarse``: ``coarse_fmnist`` -> CNN student on 1,000 labelled Fashion-MNIST images.

Protocol (:mod:`kdforge.experiments.east_protocol`): the baseline; lambda chosen on validation per
variant from ``--lams`` (EC at ``--d-select``); EC at every d of ``--ds``; checkpoints selected on
validation. Each exported student is also scored, with no further training, on the test split rotated
(±20°), translated (±10%) and noised (σ 0.15) by :func:`kdforge.data.vision.shifted_images`.

Usage: ``python benchmarks/east_images.py --pairs digits_ae digits_coarse fmnist_coarse``
-> ``benchmarks/results/east_images.{json,md,png}``; ``--probe`` / ``--regime``: linear probes on the
teacher embeddings / baseline validation accuracy vs label count; ``--render``: markdown from the JSON.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from kdforge.config import load_recipe
from kdforge.data import load_dataset
from kdforge.data._batches import TensorData
from kdforge.data.vision import shifted_images
from kdforge.experiments import east_protocol as east
from kdforge.experiments import make_trials, run_sweep
from kdforge.experiments.scoring import model_accuracy
from kdforge.report.results import rerender_results, save_results
from kdforge.report.tables import markdown_table, mean_std

CONFIGS = Path(__file__).parents[1] / "configs" / "east"
RESULTS = Path(__file__).parent / "results"
PAIRS = {  # pair -> (title, base dataset, baseline recipe, EC recipe); {labels}: labelled training examples
    "digits_ae": (
        "unsupervised AE (Fashion-MNIST images) -> digits, {labels} labels",
        "digits",
        "digits_baseline.yaml",
        "digits_ae_ec.yaml",
    ),
    "digits_coarse": (
        "FMNIST super-class classifier -> digits, {labels} labels",
        "digits",
        "digits_baseline.yaml",
        "digits_coarse_ec.yaml",
    ),
    "fmnist_coarse": (
        "FMNIST super-class classifier -> FMNIST 10 classes, {labels} labels",
        "fashion_mnist",
        "fmnist_baseline.yaml",
        "fmnist_coarse_ec.yaml",
    ),
}


def title(pair: str, overrides: list[str]) -> str:
    """The pair's title with the labelled-example count its runs used (the recipe's, or an override's)."""
    recipe = load_recipe(CONFIGS / PAIRS[pair][2], overrides)
    return PAIRS[pair][0].format(labels=f"{recipe.data.subset:,}")


def run_pairs(args: argparse.Namespace) -> dict:
    pairs, runs = {}, []
    for pair in args.pairs:
        _, base, baseline, ec = PAIRS[pair]
        test = load_dataset(base, seed=0).test.tensors
        unseen = TensorData({"x": shifted_images(test["x"], seed=0), "y": test["y"]})
        score = lambda student, unseen=unseen: {"unseen_acc": model_accuracy(student, unseen, 1000)}  # noqa: E731
        runner = east.SettingRunner(pair, CONFIGS, args.output_dir, score, args.set, args.set_teacher, ec)
        r = east.run_protocol(runner, baseline, args.lams, args.ds, args.d_select, args.seeds)
        pairs[pair] = {
            "chosen_lam": r["chosen_lam"],
            "val_grid": r["val_grid"],
            "verdict": east.verdict(r["table"]),
        }
        runs += [x for rows in r["all_runs"].values() for x in rows]
    return {"runs": runs, "pairs": pairs}


def markdown(res: dict) -> str:
    args = res["provenance"]["config"]
    sets, set_teacher = args.get("set") or [], args.get("set_teacher") or []
    md = [
        "# EAsT / EC on images: frozen image teachers' embeddings teach small CNNs trained from scratch",
        "",
        f"Accuracy (%) mean ± std over seeds {args['seeds']}. Checkpoint, lambda (from {args['lams']}, per "
        f"variant, EC at d={args['d_select']}) and the EC row of the verdict are chosen on validation only. "
        "Unseen = the test split rotated ±20°, shifted ±10% and noised (σ 0.15), no further training. "
        "Teachers: `benchmarks/east_image_teachers.py`; protocol: `benchmarks/east_images.py`"
        + (f"; every run overridden with `{' '.join(sets)}`" if sets else "")
        + (f"; EAsT/EC runs with `{' '.join(set_teacher)}`" if set_teacher else "")
        + ".",
        "",
    ]
    for pair, summary in res["pairs"].items():
        table = east.table_from_runs(res["runs"], pair, summary["chosen_lam"], args["ds"], args["seeds"])
        cells = [
            [
                label,
                "-" if rows[0]["lam"] is None else rows[0]["lam"],
                *[mean_std([x[c] for x in rows]) for c in ("val_acc", "test_acc", "unseen_acc")],
            ]
            for label, rows in table.items()
        ]
        heading = title(pair, sets) + (f" (overridden: {' '.join(sets)})" if sets else "")
        md += [
            f"## {pair}: {heading}",
            "",
            markdown_table(["row", "lambda", "val", "test", "unseen (shifted test)"], cells),
        ]
        md += [
            "",
            f"Validation accuracy of the lambda grid: {grid_text(summary['val_grid'])}.",
            "",
            verdict_text(summary["verdict"], "unseen gain", "unseen set") + ".",
            "",
        ]
    met = sum(p["verdict"]["met"] for p in res["pairs"].values())
    pairs = len(res["pairs"])
    md.append(f"**Overall: target met on {met} of {pairs} image pairs** (the issue asks for >= 2 pairs).")
    return "\n".join(md)


def grid_text(grid: dict) -> str:
    return "; ".join(
        f"{k}: " + ", ".join(f"λ={lam} {acc:.2f}" for lam, acc in g.items()) for k, g in grid.items()
    )


def verdict_text(v: dict, unseen_label: str, unseen_set: str) -> str:
    gains = ", ".join(f"{k} {g:+.2f}" for k, g in v["test_gain_over"].items())
    ugains = ", ".join(f"{k} {g:+.2f}" for k, g in v["unseen_gain_over"].items())
    return (
        f"Verdict: EC row chosen on validation = **{v['ec_row_by_val']}**; test gain over {gains}; "
        f"{unseen_label} over {ugains}. Target (>= 1.0 point over baseline and both EAsT rows) "
        f"**{'met' if v['met'] else 'missed'}** on this pair; {unseen_set} "
        f"**{'better' if v['generalises_better'] else 'not better than all three'}**"
    )


def label_regime(args: argparse.Namespace) -> dict:
    """Baseline *validation* accuracy vs the number of labelled examples (to choose the low-label regime)."""
    runs = []
    for recipe, counts in (
        ("digits_baseline.yaml", [75, 150, 300, 1097]),
        ("fmnist_baseline.yaml", [500, 1000, 2000]),
    ):
        for n in counts:
            trials = make_trials(
                CONFIGS / recipe, {}, args.seeds, f"regime_{recipe.split('_')[0]}_{n}", [f"data.subset={n}"]
            )
            for s in run_sweep(trials, args.output_dir, progress=False):
                runs.append(
                    {
                        "recipe": recipe,
                        "labels": n,
                        "seed": s["seed"],
                        "val_acc": s["val_acc"],
                        "train_time_s": s["train_time_s"],
                    }
                )
    return {"runs": runs}


def markdown_regime(res: dict) -> str:
    runs, seeds = res["runs"], res["provenance"]["config"]["seeds"]
    keys = dict.fromkeys((r["recipe"], r["labels"]) for r in runs)
    cells = [
        [rec, n, mean_std([r["val_acc"] for r in runs if (r["recipe"], r["labels"]) == (rec, n)])]
        for rec, n in keys
    ]
    return "\n".join(
        [
            "# Low-label regime of the image students: baseline validation accuracy vs labelled examples",
            "",
            f"Validation only (test untouched); seeds {seeds}; recipes' other settings unchanged.",
            "",
            markdown_table(["recipe", "labelled train examples", "val acc (%)"], cells),
        ]
    )


def teacher_probe(args: argparse.Namespace) -> dict:
    """How much target-task information each cached teacher embedding holds (validation only)."""
    runs = []
    for pair in args.pairs:
        _, base, _, ec_recipe = PAIRS[pair]
        for seed in args.seeds:
            cfg = load_recipe(CONFIGS / ec_recipe, [*args.set, f"seed={seed}"])
            labels, acc = east.probe_val_accuracy(cfg, base, seed)
            runs.append({"pair": pair, "seed": seed, "labels": labels, "probe_val_acc": acc})
    return {"runs": runs}


def markdown_probe(res: dict) -> str:
    runs, pairs = res["runs"], list(dict.fromkeys(r["pair"] for r in res["runs"]))
    cells = [
        [
            p,
            next(r["labels"] for r in runs if r["pair"] == p),
            mean_std([r["probe_val_acc"] for r in runs if r["pair"] == p]),
        ]
        for p in pairs
    ]
    return "\n".join(
        [
            "# Linear probes on the cached image-teacher embeddings (validation accuracy)",
            "",
            "Logistic regression on the standardised teacher embedding of each seed's labelled training "
            "examples, scored on that seed's validation split (test untouched).",
            "",
            markdown_table(["pair", "labelled examples", "probe val acc (%)"], cells),
        ]
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--ds", type=int, nargs="+", default=[8, 16, 32, 64])
    p.add_argument("--d-select", type=int, default=16, help="EC's d while lambda is chosen")
    p.add_argument("--lams", type=float, nargs="+", default=[0.3, 0.7])
    p.add_argument("--output-dir", default="runs/east_images")
    p.add_argument("--out", default=str(RESULTS / "east_images.json"))
    p.add_argument("--set", nargs="*", default=[], help="overrides for every run, e.g. data.subset=75")
    p.add_argument("--set-teacher", nargs="*", default=[], help="overrides for the EAsT/EC runs only")
    p.add_argument("--probe", action="store_true", help="only linear probes on the teacher embeddings")
    p.add_argument("--regime", action="store_true", help="only the label-count check of the baselines")
    p.add_argument("--render", action="store_true", help="re-render the markdown from the JSON only")
    args = p.parse_args()
    mode = "regime" if args.regime else "probe" if args.probe else "table"
    render = {"regime": markdown_regime, "probe": markdown_probe, "table": markdown}[mode]
    out = Path(args.out).with_name("east_images_regime.json") if args.regime else Path(args.out)
    if args.render:
        print(rerender_results(out, render))
        return
    torch.set_num_threads(1)  # small models on a shared CPU
    res = {"regime": label_regime, "probe": teacher_probe, "table": run_pairs}[mode](args)
    print(save_results(out, res, render, vars(args), args.seeds))
    if mode == "table":
        tables = {
            p: east.table_from_runs(res["runs"], p, s["chosen_lam"], args.ds, args.seeds)
            for p, s in res["pairs"].items()
        }
        east.plot_pairs(tables, args.ds, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
