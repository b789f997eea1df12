"""EAsT / EC table: baseline vs EAsT vs EC (FitNet, dCor, several d), mean +- std over seeds, + unseen sets.

Text pair: teacher all-MiniLM-L6-v2 (cached sentence embeddings), student ``text_cnn`` from scratch,
trained on VADER movie snippets; the exported students are also scored, without further training, on
VADER tweets and Amazon snippets (same binary label space). Checkpoints are selected on validation only.

Setup: ``kdforge embed extract --dataset vader_movies --model minilm`` (or the CLI module) first.

Usage: ``python benchmarks/east_table.py --seeds 0 1 2 --ds 8 32``
-> ``benchmarks/results/east_table.{json,md}`` and ``east_table.png``.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from kdforge.config import load_recipe
from kdforge.data.text import vader_all
from kdforge.engine.run import load_student, run_experiment
from kdforge.report.provenance import provenance, write_results

CONFIGS = Path(__file__).parents[1] / "configs" / "east"
RESULTS = Path(__file__).parent / "results"


def rows_spec(
    ds: list[int], lam: float | None = None, baseline: bool = True
) -> list[tuple[str, str, list[str]]]:
    """(row label, recipe, overrides) for every table row (``lam`` overrides the recipes' lambda)."""
    rows = [
        ("baseline", "vader_baseline.yaml", []),
        ("EAsT-FitNet", "vader_ec_dcor.yaml", ["method.kwargs.compress=false", "method.kwargs.loss=fitnet"]),
        ("EAsT-dCor", "vader_ec_dcor.yaml", ["method.kwargs.compress=false", "method.kwargs.loss=dcor"]),
    ]
    for loss in ("fitnet", "dcor"):
        for d in ds:
            rows.append(
                (f"EC-{'FitNet' if loss == 'fitnet' else 'dCor'} d={d}", "vader_ec_dcor.yaml",
                 [f"method.kwargs.loss={loss}", f"method.kwargs.d={d}"])
            )  # fmt: skip
    if lam is not None:
        rows = [
            (lab, r, ov + [f"method.kwargs.lam={lam}"] if lab != "baseline" else ov) for lab, r, ov in rows
        ]
    return rows if baseline else rows[1:]


@torch.no_grad()
def accuracy(model: torch.nn.Module, data, batch_size: int = 512) -> float:
    """Accuracy of an exported student on a whole TensorData."""
    model.eval()
    t = data.tensors
    correct = 0
    for i in range(0, len(data), batch_size):
        logits = model(
            input_ids=t["input_ids"][i : i + batch_size],
            attention_mask=t["attention_mask"][i : i + batch_size],
        )
        correct += (logits.argmax(-1) == t["y"][i : i + batch_size]).sum().item()
    return correct / len(data)


def fmt(vals: list[float]) -> str:
    m = 100 * statistics.mean(vals)
    s = 100 * statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{m:.2f} ± {s:.2f}"


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
    args = p.parse_args()
    torch.set_num_threads(1)  # small models on a shared CPU: extra threads only add contention
    unseen = {d: vader_all(d) for d in args.unseen}
    results = []
    for label, recipe, overrides in rows_spec(args.ds, args.lam, not args.no_baseline):
        for seed in args.seeds:
            name = (
                label.replace(" ", "_").replace("=", "")
                + (f"_lam{args.lam}" if args.lam else "")
                + f"_s{seed}"
            )
            ov = [*overrides, f"seed={seed}", f"name={name}", f"output_dir={args.output_dir}",
                  f"train.epochs={args.epochs}"]  # fmt: skip
            cfg = load_recipe(CONFIGS / recipe, ov)
            summary = run_experiment(cfg, resume=False, progress=False)
            student = load_student(cfg.run_dir / "student")
            row = {"row": label, "recipe": recipe, "overrides": ov, "seed": seed,
                   "val_acc": summary["val_acc"],
                   "test_acc": summary["test_acc"], "best_step": summary["best_step"],
                   "train_time_s": summary["train_time_s"],
                   **{f"unseen_{d}": accuracy(student, data) for d, data in unseen.items()}}  # fmt: skip
            results.append(row)
            print(row, flush=True)
    labels = list(dict.fromkeys(r["row"] for r in results))
    cols = ["test_acc", *[f"unseen_{d}" for d in args.unseen]]
    md = [
        "# EAsT / EC on text: MiniLM sentence embeddings teach a small CNN (VADER movies)",
        "",
        f"Accuracy (%) mean ± std over seeds {args.seeds}; checkpoint selected on validation; "
        f"{args.epochs} epochs; lambda {args.lam or 'of the recipes (0.7)'}. "
        "Test = held-out 20% of VADER movie snippets; unseen = whole VADER "
        f"{' / '.join(args.unseen)} sets, no further training.",
        "",
        "| row | " + " | ".join(["test (movies)", *[f"unseen {d}" for d in args.unseen]]) + " |",
        "|---|" + "---|" * len(cols),
    ]
    table = {}
    for lab in labels:
        rs = [r for r in results if r["row"] == lab]
        table[lab] = {c: [r[c] for r in rs] for c in cols}
        md.append(f"| {lab} | " + " | ".join(fmt(table[lab][c]) for c in cols) + " |")
    write_results(
        args.out, {"runs": results, "provenance": provenance(vars(args), args.seeds)}, "\n".join(md)
    )
    plot(table, args.ds, Path(args.out).with_suffix(".png"))


def plot(table: dict, ds: list[int], out: Path) -> None:
    """Test accuracy vs d per loss, with baseline and EAsT as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for loss, color in (("FitNet", "C0"), ("dCor", "C1")):
        ms = [100 * statistics.mean(table[f"EC-{loss} d={d}"]["test_acc"]) for d in ds]
        ss = [100 * statistics.pstdev(table[f"EC-{loss} d={d}"]["test_acc"]) for d in ds]
        ax.errorbar(ds, ms, yerr=ss, marker="o", color=color, label=f"EC-{loss}", capsize=3)
        ax.axhline(100 * statistics.mean(table[f"EAsT-{loss}"]["test_acc"]), color=color, ls=":",
                   label=f"EAsT-{loss} (D=384)")  # fmt: skip
    if "baseline" in table:
        ax.axhline(100 * statistics.mean(table["baseline"]["test_acc"]), color="k", ls="--", label="baseline")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("compressed dimension d")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("VADER movies, MiniLM teacher, text-CNN student")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


if __name__ == "__main__":
    main()
