"""The "teacher fine-tuned" row of an EAsT / EC text table: the big model EC's small student is set against.

all-MiniLM-L6-v2 + a linear head, every weight fine-tuned (``configs/east/vader_tweets_teacher_ft.yaml``)
on the same training examples of each seed's split as the table's students; lr chosen on validation
(``--select-seeds``), then every seed at that lr, scored on the same test split and unseen VADER domains;
training time, parameters and inference time against the student recorded beside the accuracy
(:mod:`kdforge.experiments.east_text_finetune`). The row, its cost and a paired bootstrap of the
table's EC row against it are added to the committed table (``benchmarks/east_text.py``'s results
file); its other rows and provenance stay as they are.

Usage: ``python benchmarks/east_text_finetune.py --pair tweets`` -> ``benchmarks/results/east_text_tweets.*``
(``--lrs 1e-4``: one lr, chosen a priori; ``--render``: re-render the markdown from the JSON).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from kdforge.experiments.east_text_finetune import RECIPES, FinetuneGrid, run_finetune
from kdforge.experiments.east_text_pairs import PAIRS, add_finetune, pair_markdown
from kdforge.report.provenance import provenance, write_results
from kdforge.report.results import rerender_results

CONFIGS = Path(__file__).parents[1] / "configs" / "east"
RESULTS = Path(__file__).parent / "results"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pair", required=True, choices=list(RECIPES))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--lrs", type=float, nargs="+", default=[1e-4, 3e-4])
    p.add_argument("--select-seeds", type=int, nargs="+", default=[0], help="seeds for the lr choice")
    p.add_argument("--set", nargs="*", default=[], help="overrides of the fine-tuning recipe")
    p.add_argument("--output-dir", default="runs/east_text_finetune")
    p.add_argument("--out", default=None, help="default benchmarks/results/east_text_<pair>.json")
    p.add_argument("--render", action="store_true", help="re-render the markdown from the JSON only")
    args = p.parse_args()
    args.out = args.out or str(RESULTS / f"east_text_{args.pair}.json")
    if args.render:
        print(rerender_results(args.out, pair_markdown))
        return
    table = json.loads(Path(args.out).read_text())  # the table the row joins: read before hours of training
    torch.set_num_threads(1)  # as the table's students: one core of a shared CPU
    _, _, baseline, _, domains = PAIRS[args.pair]
    grid = FinetuneGrid(args.seeds, args.lrs, args.select_seeds, args.set)
    section = run_finetune(args.pair, grid, CONFIGS, args.output_dir, domains, baseline)
    section["provenance"] = provenance(vars(args), args.seeds)
    keep = Path(args.output_dir, f"teacher_finetuned_{args.pair}.json")  # the numbers, should the merge fail
    keep.parent.mkdir(parents=True, exist_ok=True)
    keep.write_text(json.dumps(section, indent=1))
    res = add_finetune(table, section)
    write_results(args.out, res, pair_markdown(res))
    print(pair_markdown(res))


if __name__ == "__main__":
    main()
