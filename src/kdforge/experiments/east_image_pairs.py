"""EAsT / EC on images: frozen image teachers' embeddings teach small CNNs trained from scratch.

Teacher/data pairs (teachers trained beforehand, embeddings cached):

- ``digits_ae``: unsupervised teacher ``ae_fmnist`` (autoencoder on Fashion-MNIST images, no labels)
  -> CNN student on labelled 8x8 digits.
- ``digits_coarse``: other-task teacher ``coarse_fmnist`` (Fashion-MNIST super-class classifier)
  -> the same digits student.
- ``fmnist_coarse``: ``coarse_fmnist`` -> CNN student on labelled Fashion-MNIST images.

The rows follow :func:`kdforge.experiments.east_protocol.run_protocol`; each exported student is
also scored, with no further training, on the test split rotated, translated and noised
(:func:`kdforge.data.vision.shifted_images`). Two checks beside the table: baseline validation
accuracy vs the label count (:func:`label_regime`) and linear probes on the teacher embeddings
(:func:`teacher_probe`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdforge.config import load_recipe
from kdforge.data import load_dataset
from kdforge.data._batches import TensorData
from kdforge.data.vision import shifted_images
from kdforge.experiments import east_protocol as east
from kdforge.experiments.east_grid import EastGrid, lambda_grid_text
from kdforge.experiments.scoring import model_accuracy
from kdforge.experiments.sweep import make_trials, run_sweep
from kdforge.report.tables import markdown_table, mean_std

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
#: baseline recipe -> labelled-example counts of :func:`label_regime`
REGIME_COUNTS = {"digits_baseline.yaml": [75, 150, 300, 1097], "fmnist_baseline.yaml": [500, 1000, 2000]}


def title(pair: str, overrides: list[str], configs: Path) -> str:
    """The pair's title with the labelled-example count its runs used (the recipe's, or an override's)."""
    recipe = load_recipe(configs / PAIRS[pair][2], overrides)
    return PAIRS[pair][0].format(labels=f"{recipe.data.subset:,}")


def run_pairs(pairs: list[str], grid: EastGrid, configs: Path, output_dir: str) -> dict[str, Any]:
    """Every row of every pair: ``runs`` (one per row, lambda, d and seed) and per pair its lambda choice
    and verdict (on the shifted test split as the unseen set)."""
    summaries, runs = {}, []
    for pair in pairs:
        _, base, baseline, ec = PAIRS[pair]
        test = load_dataset(base, seed=0).test.tensors
        unseen = TensorData({"x": shifted_images(test["x"], seed=0), "y": test["y"]})
        score = lambda student, unseen=unseen: {"unseen_acc": model_accuracy(student, unseen, 1000)}  # noqa: E731
        runner = east.SettingRunner(pair, configs, output_dir, score, grid.every_run, grid.teacher_runs, ec)
        r = east.run_protocol(
            runner, baseline, grid.lams, grid.ds, grid.d_select, grid.seeds, grid.select_seeds
        )
        summaries[pair] = {
            "chosen_lam": r["chosen_lam"],
            "val_grid": r["val_grid"],
            "verdict": east.verdict(r["table"]),
        }
        runs += [x for rows in r["all_runs"].values() for x in rows]
    return {"runs": runs, "pairs": summaries}


def pair_tables(res: dict[str, Any], ds: list[int], seeds: list[int]) -> dict[str, dict[str, list[dict]]]:
    """Pair -> row label -> per-seed runs, rebuilt from a results dict (e.g. to plot)."""
    return {
        p: east.table_from_runs(res["runs"], p, s["chosen_lam"], ds, seeds) for p, s in res["pairs"].items()
    }


def verdict_text(v: dict[str, Any], unseen_label: str, unseen_set: str) -> str:
    """The verdict sentence of one pair (without its final full stop)."""
    gains = ", ".join(f"{k} {g:+.2f}" for k, g in v["test_gain_over"].items())
    ugains = ", ".join(f"{k} {g:+.2f}" for k, g in v["unseen_gain_over"].items())
    return (
        f"Verdict: EC row chosen on validation = **{v['ec_row_by_val']}**; test gain over {gains}; "
        f"{unseen_label} over {ugains}. Target (>= 1.0 point over baseline and both EAsT rows) "
        f"**{'met' if v['met'] else 'missed'}** on this pair; {unseen_set} "
        f"**{'better' if v['generalises_better'] else 'not better than all three'}**"
    )


def pairs_markdown(res: dict[str, Any], configs: Path) -> str:
    """Per pair its table, lambda grid and verdict, then the overall count, from a results dict
    (``configs``: where the pairs' recipes are, for the label counts in the headings)."""
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
    columns = ("val_acc", "test_acc", "unseen_acc")
    for pair, table in pair_tables(res, args["ds"], args["seeds"]).items():
        summary = res["pairs"][pair]
        cells = [
            [
                label,
                "-" if rows[0]["lam"] is None else rows[0]["lam"],
                *[mean_std([x[c] for x in rows]) for c in columns],
            ]
            for label, rows in table.items()
        ]
        heading = title(pair, sets, configs) + (f" (overridden: {' '.join(sets)})" if sets else "")
        md += [
            f"## {pair}: {heading}",
            "",
            markdown_table(["row", "lambda", "val", "test", "unseen (shifted test)"], cells),
            "",
            f"Validation accuracy of the lambda grid: {lambda_grid_text(summary['val_grid'])}.",
            "",
            verdict_text(summary["verdict"], "unseen gain", "unseen set") + ".",
            "",
        ]
    met, pairs = sum(p["verdict"]["met"] for p in res["pairs"].values()), len(res["pairs"])
    md.append(f"**Overall: target met on {met} of {pairs} image pairs** (the issue asks for >= 2 pairs).")
    return "\n".join(md)


def label_regime(seeds: list[int], configs: Path, output_dir: str) -> dict[str, Any]:
    """Baseline *validation* accuracy vs the number of labelled examples (to choose the low-label regime)."""
    runs = []
    for recipe, counts in REGIME_COUNTS.items():
        for n in counts:
            name = f"regime_{recipe.split('_')[0]}_{n}"
            trials = make_trials(configs / recipe, {}, seeds, name, [f"data.subset={n}"])
            for s in run_sweep(trials, output_dir, progress=False):
                keep = {"seed": s["seed"], "val_acc": s["val_acc"], "train_time_s": s["train_time_s"]}
                runs.append({"recipe": recipe, "labels": n, **keep})
    return {"runs": runs}


def regime_markdown(res: dict[str, Any]) -> str:
    """The label-count table, from a results dict alone."""
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


def teacher_probe(pairs: list[str], seeds: list[int], every_run: list[str], configs: Path) -> dict[str, Any]:
    """How much target-task information each cached teacher embedding holds (validation only)."""
    runs = []
    for pair in pairs:
        _, base, _, ec_recipe = PAIRS[pair]
        for seed in seeds:
            cfg = load_recipe(configs / ec_recipe, [*every_run, f"seed={seed}"])
            labels, acc = east.probe_val_accuracy(cfg, base, seed)
            runs.append({"pair": pair, "seed": seed, "labels": labels, "probe_val_acc": acc})
    return {"runs": runs}


def probe_markdown(res: dict[str, Any]) -> str:
    """The probe table, from a results dict alone."""
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
