"""EAsT / EC on images: baseline vs EAsT vs EC (FitNet, dCor, several d), low-label students, + unseen set.

Teacher/data pairs (teachers trained once by ``benchmarks/east_image_teachers.py``, embeddings cached):

- ``digits_ae``: unsupervised teacher ``ae_fmnist`` (autoencoder on Fashion-MNIST images, no labels)
  -> CNN student on 150 labelled 8x8 digits.
- ``digits_coarse``: other-task teacher ``coarse_fmnist`` (Fashion-MNIST super-class classifier)
  -> the same digits student.
- ``fmnist_coarse``: ``coarse_fmnist`` -> CNN student on 1,000 labelled Fashion-MNIST images
  (10 fine classes).

Protocol, per pair: the baseline; then lambda is chosen on *validation* (mean over seeds) separately
for EAsT-FitNet, EAsT-dCor, EC-FitNet and EC-dCor (EC at ``--d-select``) from ``--lams``; EC is then
run at every d of ``--ds`` with its chosen lambda. Checkpoints are selected on validation. Each
exported student is also scored, with no further training, on an unseen set with the same labels:
the test split rotated (±20°), translated (±10%) and noised (σ 0.15) by
:func:`kdforge.data.vision.shifted_images` (fixed seed). The verdict compares the EC row chosen on
validation (loss and d) with the baseline and with both EAsT rows on test.

Usage: ``python benchmarks/east_images.py --pairs digits_ae digits_coarse fmnist_coarse``
-> ``benchmarks/results/east_images.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from kdforge.config import load_recipe
from kdforge.data import load_dataset
from kdforge.data.vision import shifted_images
from kdforge.engine.run import load_student, run_experiment
from kdforge.report.provenance import provenance, write_results

CONFIGS = Path(__file__).parents[1] / "configs" / "east"
RESULTS = Path(__file__).parent / "results"

#: pair -> (title, base dataset, baseline recipe, EC recipe)
PAIRS = {
    "digits_ae": ("unsupervised AE (Fashion-MNIST images) -> digits, 150 labels", "digits",
                  "digits_baseline.yaml", "digits_ae_ec.yaml"),
    "digits_coarse": ("FMNIST super-class classifier -> digits, 150 labels", "digits",
                      "digits_baseline.yaml", "digits_coarse_ec.yaml"),
    "fmnist_coarse": ("FMNIST super-class classifier -> FMNIST 10 classes, 1,000 labels", "fashion_mnist",
                      "fmnist_baseline.yaml", "fmnist_coarse_ec.yaml"),
}  # fmt: skip
VARIANTS = {  # label -> overrides of the EC recipe
    "EAsT-FitNet": ["method.kwargs.compress=false", "method.kwargs.loss=fitnet"],
    "EAsT-dCor": ["method.kwargs.compress=false", "method.kwargs.loss=dcor"],
    "EC-FitNet": ["method.kwargs.compress=true", "method.kwargs.loss=fitnet"],
    "EC-dCor": ["method.kwargs.compress=true", "method.kwargs.loss=dcor"],
}


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Accuracy of an exported image classifier on ``(x, y)``."""
    model.eval()
    correct = sum(
        (model(x[i : i + batch_size]).argmax(-1) == y[i : i + batch_size]).sum().item()
        for i in range(0, len(x), batch_size)
    )
    return correct / len(x)


def mean(vals: list[float]) -> float:
    return 100 * statistics.mean(vals)


def fmt(vals: list[float]) -> str:
    s = 100 * statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{mean(vals):.2f} ± {s:.2f}"


class Runner:
    """Runs one recipe + overrides over seeds and scores the students on test and the unseen set."""

    def __init__(self, args: argparse.Namespace, pair: str) -> None:
        self.args, self.pair = args, pair
        _, base, self.base_recipe, self.ec_recipe = PAIRS[pair]
        test = load_dataset(base, seed=0).test.tensors
        self.unseen = (shifted_images(test["x"], seed=0), test["y"])
        self.done: dict[str, list[dict]] = {}  # key -> per-seed rows (reused across stages)
        self.reuse: list[dict] = []  # rows of an earlier results file (see ``reusable``)

    def score(self, student: torch.nn.Module) -> dict[str, float]:
        """Unseen-set columns of one exported student (here: the shifted test split)."""
        return {"unseen_acc": accuracy(student, *self.unseen)}

    def reusable(self, recipe: str, overrides: list[str], seed: int) -> dict | None:
        """A row of ``self.reuse`` trained with exactly this recipe, these overrides and this seed."""

        def same(ov: list[str]) -> list[str]:
            return sorted(o for o in ov if not o.startswith(("name=", "output_dir=")))

        want = same([*overrides, f"seed={seed}"])
        return next((x for x in self.reuse if x["recipe"] == recipe and same(x["overrides"]) == want), None)

    def run(
        self,
        label: str,
        recipe: str,
        overrides: list[str],
        lam: float | None,
        d: int | None,
        seeds: list[int] | None = None,
    ) -> list[dict]:
        """Rows of one setting for ``seeds`` (default all); each (setting, seed) is trained once."""
        key = f"{label}|lam={lam}|d={d}"
        ov = list(overrides) + ([f"method.kwargs.lam={lam}"] if lam is not None else [])
        ov += [f"method.kwargs.d={d}"] if d is not None else []
        ov += self.args.set  # e.g. data.subset=75 for another label regime
        ov += self.args.set_teacher if recipe == self.ec_recipe else []  # e.g. method.kwargs.kd_weight=1
        done = self.done.setdefault(key, [])
        for seed in seeds if seeds is not None else self.args.seeds:
            if any(x["seed"] == seed for x in done):
                continue
            old = self.reusable(recipe, ov, seed)
            if old is not None:
                done.append(old)
                continue
            tag = "".join(
                f"_{o.split('=')[0].split('.')[-1]}{o.split('=')[-1]}"
                for o in [*self.args.set, *self.args.set_teacher]
            )
            name = f"{self.pair}{tag}_{label}_lam{lam}_d{d}_s{seed}".replace("=", "")
            full = [*ov, f"seed={seed}", f"name={name}", f"output_dir={self.args.output_dir}"]
            cfg = load_recipe(CONFIGS / recipe, full)
            summary = run_experiment(cfg, resume=False, progress=False)
            student = load_student(cfg.run_dir / "student")
            row = {"pair": self.pair, "row": label, "lam": lam, "d": d, "recipe": recipe, "overrides": full,
                   "seed": seed, "val_acc": summary["val_acc"], "test_acc": summary["test_acc"],
                   **self.score(student), "best_step": summary["best_step"],
                   "train_time_s": summary["train_time_s"]}  # fmt: skip
            print(json.dumps(row), flush=True)
            done.append(row)
        want = seeds if seeds is not None else self.args.seeds
        return [x for x in done if x["seed"] in want]


def run_pair(args: argparse.Namespace, pair: str, runner: Runner | None = None) -> dict:
    """All rows of one pair: baseline, lambda selection on validation, EC over d.

    Lambda is chosen on the mean validation accuracy over ``args.select_seeds`` (default: all
    seeds); the table rows then use every seed (runs of the selection seeds are reused).
    """
    r = runner or Runner(args, pair)
    sel = getattr(args, "select_seeds", None) or args.seeds
    table: dict[str, list[dict]] = {"baseline": r.run("baseline", r.base_recipe, [], None, None)}
    chosen: dict[str, float] = {}
    grid: dict[str, dict[float, float]] = {}
    for label, ov in VARIANTS.items():
        d = args.d_select if label.startswith("EC") else None
        grid[label] = {
            lam: mean([x["val_acc"] for x in r.run(label, r.ec_recipe, ov, lam, d, sel)]) for lam in args.lams
        }
        chosen[label] = max(args.lams, key=lambda lam, g=grid[label]: g[lam])
        if label.startswith("EAsT"):
            table[label] = r.run(label, r.ec_recipe, ov, chosen[label], None)
        else:
            for dd in args.ds:
                table[f"{label} d={dd}"] = r.run(label, r.ec_recipe, ov, chosen[label], dd)
    return {"table": table, "chosen_lam": chosen, "val_grid": grid, "all_runs": r.done}


def verdict(table: dict[str, list[dict]], unseen: tuple[str, ...] = ("unseen_acc",)) -> dict:
    """The EC row with the best mean validation accuracy against the baseline and both EAsT rows (test).

    ``unseen`` names the unseen-set columns; "generalises better" means a higher mean over them than
    each of the three other rows.
    """
    ec = [k for k in table if k.startswith("EC")]
    best = max(ec, key=lambda k: mean([x["val_acc"] for x in table[k]]))
    m = {k: mean([x["test_acc"] for x in table[k]]) for k in table}
    u = {k: statistics.mean(mean([x[c] for x in table[k]]) for c in unseen) for k in table}
    others = ["baseline", "EAsT-FitNet", "EAsT-dCor"]
    return {
        "ec_row_by_val": best,
        "test_gain_over": {k: m[best] - m[k] for k in others},
        "unseen_gain_over": {k: u[best] - u[k] for k in others},
        "met": all(m[best] - m[k] >= 1.0 for k in others),
        "generalises_better": all(u[best] > u[k] for k in others),
    }


def markdown(args: argparse.Namespace, res: dict[str, dict]) -> str:
    md = [
        "# EAsT / EC on images: frozen image teachers' embeddings teach small CNNs trained from scratch",
        "",
        f"Accuracy (%) mean ± std over seeds {args.seeds}. Checkpoint, lambda (from {args.lams}, per "
        f"variant, EC at d={args.d_select}) and the EC row of the verdict are chosen on validation only. "
        "Unseen = the test split rotated ±20°, shifted ±10% and noised (σ 0.15), no further training. "
        "Teachers: `benchmarks/east_image_teachers.py`; protocol: `benchmarks/east_images.py`"
        + (f"; every run overridden with `{' '.join(args.set)}`" if args.set else "")
        + (f"; EAsT/EC runs with `{' '.join(args.set_teacher)}`" if args.set_teacher else "")
        + ".",
        "",
    ]
    n_met = 0
    for pair, r in res.items():
        v = r["verdict"]
        n_met += v["met"]
        title = PAIRS[pair][0] + (f" (overridden: {' '.join(args.set)})" if args.set else "")
        md += [f"## {pair}: {title}", "", "| row | lambda | val | test | unseen (shifted test) |",
               "|---|---|---|---|---|"]  # fmt: skip
        for lab, rows in r["table"].items():
            lam = rows[0]["lam"]
            md.append(
                f"| {lab} | {'-' if lam is None else lam} | {fmt([x['val_acc'] for x in rows])} | "
                f"{fmt([x['test_acc'] for x in rows])} | {fmt([x['unseen_acc'] for x in rows])} |"
            )
        grid = "; ".join(
            f"{k}: " + ", ".join(f"λ={lam} {acc:.2f}" for lam, acc in g.items())
            for k, g in r["val_grid"].items()
        )
        gains = ", ".join(f"{k} {g:+.2f}" for k, g in v["test_gain_over"].items())
        ugains = ", ".join(f"{k} {g:+.2f}" for k, g in v["unseen_gain_over"].items())
        md += ["", f"Validation accuracy of the lambda grid: {grid}.", "",
               f"Verdict: EC row chosen on validation = **{v['ec_row_by_val']}**; test gain over {gains}; "
               f"unseen gain over {ugains}. Target (>= 1.0 point over baseline and both EAsT rows) "
               f"**{'met' if v['met'] else 'missed'}** on this pair; unseen set "
               f"**{'better' if v['generalises_better'] else 'not better than all three'}**.",
               ""]  # fmt: skip
    md.append(
        f"**Overall: target met on {n_met} of {len(res)} image pairs** (the issue asks for >= 2 pairs)."
    )
    return "\n".join(md)


def plot(res: dict[str, dict], ds: list[int], out: Path) -> None:
    """Test accuracy vs d per loss (EC), EAsT and baseline as horizontal lines; one panel per pair."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(res), figsize=(4.2 * len(res), 3.6), squeeze=False)
    for ax, (pair, r) in zip(axes[0], res.items(), strict=True):
        t = r["table"]
        for loss, color in (("FitNet", "C0"), ("dCor", "C1")):
            ms = [mean([x["test_acc"] for x in t[f"EC-{loss} d={d}"]]) for d in ds]
            ss = [100 * statistics.pstdev([x["test_acc"] for x in t[f"EC-{loss} d={d}"]]) for d in ds]
            ax.errorbar(ds, ms, yerr=ss, marker="o", color=color, label=f"EC-{loss}", capsize=3)
            ax.axhline(
                mean([x["test_acc"] for x in t[f"EAsT-{loss}"]]), color=color, ls=":", label=f"EAsT-{loss}"
            )
        ax.axhline(mean([x["test_acc"] for x in t["baseline"]]), color="k", ls="--", label="baseline")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("compressed dimension d")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(pair, fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def label_regime(args: argparse.Namespace) -> None:
    """Baseline *validation* accuracy vs the number of labelled examples (to choose the low-label regime)."""
    rows = []
    for recipe, counts in (("digits_baseline.yaml", [75, 150, 300, 1097]),
                           ("fmnist_baseline.yaml", [500, 1000, 2000])):  # fmt: skip
        for n in counts:
            for seed in args.seeds:
                name = f"regime_{recipe.split('_')[0]}_{n}_s{seed}"
                ov = [f"data.subset={n}", f"seed={seed}", f"name={name}", f"output_dir={args.output_dir}"]
                s = run_experiment(load_recipe(CONFIGS / recipe, ov), resume=False, progress=False)
                rows.append({"recipe": recipe, "labels": n, "seed": seed, "val_acc": s["val_acc"],
                             "train_time_s": s["train_time_s"]})  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
    md = ["# Low-label regime of the image students: baseline validation accuracy vs labelled examples", "",
          f"Validation only (test untouched); seeds {args.seeds}; recipes' other settings unchanged.", "",
          "| recipe | labelled train examples | val acc (%) |", "|---|---|---|"]  # fmt: skip
    for recipe, n in dict.fromkeys((r["recipe"], r["labels"]) for r in rows):
        vals = [r["val_acc"] for r in rows if (r["recipe"], r["labels"]) == (recipe, n)]
        md.append(f"| {recipe} | {n} | {fmt(vals)} |")
    out = Path(args.out).with_name("east_images_regime.json")
    write_results(out, {"runs": rows, "provenance": provenance(vars(args), args.seeds)}, "\n".join(md))


def probe_val_accuracy(cfg, base: str, seed: int) -> tuple[int, float]:
    """Logistic regression on the standardised teacher embedding of the run's labelled training
    examples (the students' carve-out for ``seed``), scored on its validation split.

    Returns:
        (number of labelled training examples, validation accuracy).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from kdforge.data.embeddings import attach, default_root, entry_dir
    from kdforge.data.embeddings import load as load_cache

    kw = {**cfg.data.kwargs, "seed": seed, "subset": cfg.data.subset, "val_size": cfg.data.val_size}
    sp = load_dataset("with_teacher_emb", **kw)
    tr = sp.train.tensors
    emb, hashes, _ = load_cache(entry_dir(default_root(), base, "all", kw["model"]))
    va = attach(sp.val, emb, hashes).tensors  # the same cache, attached to validation
    x_tr, x_va = tr["teacher_emb"].numpy(), va["teacher_emb"].numpy()
    scaler = StandardScaler().fit(x_tr)
    clf = LogisticRegression(max_iter=2000).fit(scaler.transform(x_tr), tr["y"].numpy())
    return len(tr["y"]), float(clf.score(scaler.transform(x_va), va["y"].numpy()))


def teacher_probe(args: argparse.Namespace) -> None:
    """How much target-task information each cached teacher embedding holds (validation only).

    A logistic-regression probe on the teacher embedding of each run's labelled training examples
    (the same carve-out as the students), scored on the validation split.
    """
    rows = []
    for pair in args.pairs:
        _, base, _, ec_recipe = PAIRS[pair]
        for seed in args.seeds:
            cfg = load_recipe(CONFIGS / ec_recipe, [*args.set, f"seed={seed}"])
            labels, acc = probe_val_accuracy(cfg, base, seed)
            rows.append({"pair": pair, "seed": seed, "labels": labels, "probe_val_acc": acc})
            print(json.dumps(rows[-1]), flush=True)
    md = ["# Linear probes on the cached image-teacher embeddings (validation accuracy)", "",
          "Logistic regression on the standardised teacher embedding of each seed's labelled training "
          "examples, scored on that seed's validation split (test untouched).", "",
          "| pair | labelled examples | probe val acc (%) |", "|---|---|---|"]  # fmt: skip
    for pair in args.pairs:
        rs = [r for r in rows if r["pair"] == pair]
        md.append(f"| {pair} | {rs[0]['labels']} | {fmt([r['probe_val_acc'] for r in rs])} |")
    write_results(args.out, {"runs": rows, "provenance": provenance(vars(args), args.seeds)}, "\n".join(md))


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
    args = p.parse_args()
    torch.set_num_threads(1)  # small models on a shared CPU
    if args.regime:
        return label_regime(args)
    if args.probe:
        return teacher_probe(args)
    res = {}
    for pair in args.pairs:
        r = run_pair(args, pair)
        r["verdict"] = verdict(r["table"])
        res[pair] = r
        print(json.dumps({"pair": pair, "chosen_lam": r["chosen_lam"], "verdict": r["verdict"]}), flush=True)
    runs = [x for r in res.values() for rows in r["all_runs"].values() for x in rows]
    summary = {p: {k: r[k] for k in ("chosen_lam", "val_grid", "verdict")} for p, r in res.items()}
    prov = provenance(vars(args), args.seeds)
    write_results(args.out, {"runs": runs, "pairs": summary, "provenance": prov}, markdown(args, res))
    plot(res, args.ds, Path(args.out).with_suffix(".png"))


if __name__ == "__main__":
    main()
