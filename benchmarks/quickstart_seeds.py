"""The quickstart comparison (teacher / student alone / student + KD) over several seeds.

Run: ``python benchmarks/quickstart_seeds.py --seeds 0 1 2 [--epochs 3]``
Writes ``benchmarks/results/quickstart.{json,md}``: test accuracy mean ± std over
seeds (each model selected on its validation split; the test split is only scored).
"""

from __future__ import annotations

import argparse
import tempfile

from kdforge.quickstart import quickstart, quickstart_recipes
from kdforge.report.provenance import provenance, write_results
from kdforge.report.tables import mean_std


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--out", default="benchmarks/results/quickstart.json")
    args = ap.parse_args()
    per_seed = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            r = quickstart(f"{tmp}/seed{seed}", args.dataset, None, args.epochs, seed, progress=False)
            print(f"seed {seed}\n{r['table']}\nwall {r['wall_time_s']:.0f}s", flush=True)
            per_seed.append(r)
    names = [s["name"] for s in per_seed[0]["summaries"]]
    rows = {}
    for i, name in enumerate(names):
        runs = [r["summaries"][i] for r in per_seed]
        rows[name] = {
            "params": runs[0]["student_params"],
            "val_acc": [s["val_acc"] for s in runs],
            "test_acc": [s["test_acc"] for s in runs],
            "train_time_s": [s["train_time_s"] for s in runs],
        }
    md = [
        f"# Quickstart: {args.dataset}, {args.epochs} epochs, seeds {args.seeds}",
        "",
        "| model | params | val acc % | test acc % | train time s (mean) |",
        "|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        md.append(
            f"| {name} | {r['params']:,} | {mean_std(r['val_acc'])} | {mean_std(r['test_acc'])} | "
            f"{sum(r['train_time_s']) / len(r['train_time_s']):.0f} |"
        )
    gain = [
        kd - alone
        for kd, alone in zip(rows["student_kd"]["test_acc"], rows["student_alone"]["test_acc"], strict=True)
    ]
    md += [
        "",
        f"KD gain over the student alone (paired by seed): {mean_std(gain)} points.",
        "Wall time per seed (all three models): "
        + ", ".join(f"{r['wall_time_s']:.0f}" for r in per_seed)
        + " s.",
    ]
    config = {
        "recipes": quickstart_recipes("<tmp>", {"name": args.dataset, "batch_size": 128}, args.epochs, 0),
        **vars(args),
    }
    write_results(
        args.out,
        {
            "rows": rows,
            "kd_gain": gain,
            "wall_time_s": [r["wall_time_s"] for r in per_seed],
            "provenance": provenance(config, args.seeds),
        },
        "\n".join(md),
    )


if __name__ == "__main__":
    main()
