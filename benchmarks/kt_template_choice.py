"""KT template choice: the template pair chosen on validation images vs on the stored test accuracy.

Rebuilds the KT table's training and test networks from their seeds (the pair set need not be on
disk) and scores the template chosen either way on the same test networks, plain and channel-aligned
(:mod:`kdforge.experiments.kt_template_choice`). Writes benchmarks/results/kt_template_choice.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from kdforge.errors import KdforgeError
from kdforge.experiments.kt_converged import table_test_networks
from kdforge.experiments.kt_template_choice import measure_template_choice, template_markdown
from kdforge.methods.translation.evaluate import split_indices
from kdforge.report.results import rerender_results, save_results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--table", default="benchmarks/results/kt_table.json", help="the KT table (its split)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/kt_template_choice.json")
    ap.add_argument("--render", action="store_true", help="re-render the markdown from the JSON only")
    a = ap.parse_args()
    try:
        if a.render:
            return print(rerender_results(a.out, template_markdown))
        table = json.loads(Path(a.table).read_text())
        cfg, test, _ = table_test_networks(table)
    except KdforgeError as e:
        sys.exit(f"error: {e.cause}\nfix: {e.fix}")
    torch.set_num_threads(a.threads)
    c = table["provenance"]["config"]
    train = list(split_indices(table["info"]["n_all"], c["val_frac"], c["test_frac"])[0])
    results = measure_template_choice(cfg, train, test)
    config = {
        "table": a.table,
        "pairs": table["info"]["pairs"],
        "manifest": cfg.to_dict(),
        "threads": a.threads,
    }
    print(
        save_results(a.out, results, template_markdown, config, [cfg.network_seed(p) for p in train + test])
    )


if __name__ == "__main__":
    main()
