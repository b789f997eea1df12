"""EAsT / EC table: baseline vs EAsT vs EC (FitNet, dCor, several d), mean ± std over seeds, + unseen sets.

Text pair: teacher all-MiniLM-L6-v2 (cached sentence embeddings), student ``text_cnn`` from scratch,
trained on VADER movie snippets; the exported students are also scored, without further training, on
VADER tweets and Amazon snippets (same binary label space). Checkpoints are selected on validation only.
Protocol: :mod:`kdforge.experiments.east_text_table`.

Setup: ``kdforge embed extract --dataset vader_movies --model minilm`` (or the CLI module) first.

Usage: ``python benchmarks/east_table.py --seeds 0 1 2 --ds 8 32`` (``--render`` re-renders the
markdown from the JSON) -> ``benchmarks/results/east_table.{json,md}`` and ``east_table.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from kdforge.experiments import east_protocol as east
from kdforge.experiments.east_text_table import TextTableGrid, run_table, runs_by_row
from kdforge.experiments.east_text_table import table_markdown as markdown
from kdforge.report.results import rerender_results, save_results

CONFIGS = Path(__file__).parents[1] / "configs" / "east"
RESULTS = Path(__file__).parent / "results"


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
    grid = TextTableGrid(args.seeds, args.ds, args.epochs, args.unseen, args.lam, not args.no_baseline)
    res = run_table(grid, CONFIGS, args.output_dir)
    print(save_results(args.out, res, markdown, vars(args), args.seeds))
    title = "VADER movies, MiniLM teacher, text-CNN student"
    east.plot_pairs({title: runs_by_row(res)}, args.ds, Path(args.out).with_suffix(".png"))


if __name__ == "__main__":
    main()
