"""EAsT / EC on text pairs where the frozen MiniLM teacher should know more than a small student.

Teacher: all-MiniLM-L6-v2 (trained for sentence similarity, a dissimilar source task), its cached
mean-pooled sentence embedding (D = 384). Student: ``text_cnn`` trained from scratch on one small VADER
domain; the other VADER domains (same binary sentiment labels) are unseen sets, scored without further
training. Pairs:

- ``tweets``: train on VADER tweets (4,200 rows); unseen movies, Amazon, NYT.
- ``amazon``: train on VADER Amazon review snippets (3,708 rows); unseen tweets, movies, NYT.

Protocol (:mod:`kdforge.experiments.east_text_pairs`, on :mod:`kdforge.experiments.east_protocol`): a
logistic-regression probe on the teacher embedding of the training split, scored on validation, checks
that the teacher holds more than the student baseline. Then the baseline; lambda per variant (EC at
``--d-select``) chosen on the mean validation accuracy over ``--select-seeds``; EC at every d of
``--ds``; every row over ``--seeds``.

Setup: ``kdforge embed extract --dataset vader_tweets --model minilm`` (and ``vader_amazon``).

Usage: ``python benchmarks/east_text.py --pair tweets`` -> ``benchmarks/results/east_text_tweets.*``
(JSON, markdown, PNG; ``--render``: re-render the markdown from the JSON).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from kdforge.experiments import east_protocol as east
from kdforge.experiments.east_grid import EastGrid
from kdforge.experiments.east_text_pairs import PAIRS, probe_rows, run_pair
from kdforge.experiments.east_text_pairs import pair_markdown as markdown
from kdforge.report.results import rerender_results, save_results

CONFIGS = Path(__file__).parents[1] / "configs" / "east"
RESULTS = Path(__file__).parent / "results"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pair", required=True, choices=list(PAIRS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--select-seeds", type=int, nargs="+", default=[0], help="seeds for the lambda choice")
    p.add_argument("--ds", type=int, nargs="+", default=[8, 32, 128])
    p.add_argument("--d-select", type=int, default=32, help="EC's d while lambda is chosen")
    p.add_argument("--lams", type=float, nargs="+", default=[0.1, 0.3, 0.5])
    p.add_argument("--output-dir", default="runs/east_text")
    p.add_argument("--out", default=None, help="default benchmarks/results/east_text_<pair>.json")
    p.add_argument("--set", nargs="*", default=[], help="overrides for every run, e.g. train.epochs=8")
    p.add_argument("--set-teacher", nargs="*", default=[], help="overrides for the EAsT/EC runs only")
    p.add_argument("--reuse", nargs="*", default=[], help="results files whose identical runs are reused")
    p.add_argument("--probe", action="store_true", help="only the linear probe on the teacher embedding")
    p.add_argument("--render", action="store_true", help="re-render the markdown from the JSON only")
    args = p.parse_args()
    args.out = args.out or str(RESULTS / f"east_text_{args.pair}.json")
    if args.render:
        print(rerender_results(args.out, markdown))
        return
    torch.set_num_threads(1)  # small models on a shared CPU
    if args.probe:
        print(json.dumps(probe_rows(args.pair, CONFIGS, args.seeds), indent=1))
        return
    grid = EastGrid(
        args.seeds, args.ds, args.d_select, args.lams, args.select_seeds, args.set, args.set_teacher
    )
    res = run_pair(args.pair, grid, CONFIGS, args.output_dir, args.reuse)
    print(save_results(args.out, res, markdown, vars(args), args.seeds))
    table = east.table_from_runs(res["runs"], args.pair, res["pair"]["chosen_lam"], args.ds, args.seeds)
    east.plot_pairs({args.pair: table}, args.ds, Path(args.out).with_suffix(".png"))


if __name__ == "__main__":
    main()
