"""KT converged reference: the KT table's test networks, their small blocks trained to a plateau.

Rebuilds the table's test networks from their seeds (the pair set need not be on disk), re-checks
their 2-epoch small blocks against the table's, then trains each small block on until its
validation accuracy plateaus and scores the best-validation state on the test images
(:mod:`kdforge.experiments.kt_converged`). Writes benchmarks/results/kt_converged_reference.{json,md};
``python benchmarks/kt_table.py --converged <that JSON>`` then adds the reference to the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from kdforge.errors import KdforgeError
from kdforge.experiments.kt_converged import converged_markdown, measure_converged, table_test_networks
from kdforge.methods.translation.plateau import PlateauRule
from kdforge.report.results import rerender_results, save_results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--table", default="benchmarks/results/kt_table.json", help="the KT table (its test networks)"
    )
    ap.add_argument("--max-epochs", type=int, default=PlateauRule.max_epochs)
    ap.add_argument("--patience", type=int, default=PlateauRule.patience, help="epochs without a new best")
    ap.add_argument("--val-images", type=int, default=PlateauRule.val_images, help="validation images scored")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/kt_converged_reference.json")
    ap.add_argument("--render", action="store_true", help="re-render the markdown from the JSON only")
    a = ap.parse_args()
    try:
        if a.render:
            return print(rerender_results(a.out, converged_markdown))
        table = json.loads(Path(a.table).read_text())
        cfg, positions, stored = table_test_networks(table)
    except KdforgeError as e:
        sys.exit(f"error: {e.cause}\nfix: {e.fix}")
    torch.set_num_threads(a.threads)
    rule = PlateauRule(a.max_epochs, a.patience, a.val_images)
    results = measure_converged(cfg, positions, stored, rule)
    config = {
        "table": a.table,
        "pairs": table["info"]["pairs"],
        "manifest": cfg.to_dict(),
        "threads": a.threads,
    }
    seeds = [cfg.network_seed(p) for p in positions]
    print(save_results(a.out, results, converged_markdown, config | {"rule": results["rule"]}, seeds))


if __name__ == "__main__":
    main()
