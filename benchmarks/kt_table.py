"""KT quality table: translated vs random-init vs trained small blocks on held-out test networks.

Networks of a pair set are split by seed order into train / validation (checkpoint selection) /
test (reported only). Every translator row is trained with ``--seeds`` seeds; the targets
(translated >= 2x random init and >= 0.9 x the directly trained small block, "met" only when the
network-bootstrap interval's lower bound clears 0.9) are checked per row
(:mod:`kdforge.experiments.kt_protocol`). ``--merge-scaling F --point K`` adds a point of
kt_functional_scaling.json as a row; ``--converged F`` adds a converged reference (a
kt_converged_reference.json: every row gets its ratio, interval and verdict against it);
``--render`` re-renders the markdown from the JSON only.
Writes benchmarks/results/kt_table.{json,md}, kt_scatter.png and kt_curves.png (``--out`` stem).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from kdforge.errors import KdforgeError
from kdforge.experiments import kt_runs
from kdforge.experiments.kt_converged import merge_converged_file
from kdforge.experiments.kt_plots import table_plots
from kdforge.experiments.kt_protocol import merge_scaling_file, table_markdown
from kdforge.methods.translation.augment import Augment
from kdforge.methods.translation.evaluate import TEST_FRACTION, VAL_FRACTION
from kdforge.report.results import rerender_results, save_results

FUNCTIONAL = {"mse_weight": 0.0, "func_weight": 1.0, "template": True}
ROWS = {
    "translated (MSE, Mixer)": {},
    "MSE + masking (p=0.1, input)": {"augment": Augment(mask_p=0.1)},
    "MSE + noise (sigma=0.1, input)": {"augment": Augment(noise_sigma=0.1)},
    "MSE, attention": {"kind": "attention"},
    "MSE, MLP": {"kind": "mlp"},
    "functional (CE+KL), Mixer": FUNCTIONAL,
    # control: KL:CE = 2:1, the weight the pre-fix KL had at 32 images / 16 networks per step
    "functional, KL weighted as before the fix (kd 2/3)": {**FUNCTIONAL, "kd_weight": 2 / 3},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", default="runs/kt_pairs_fmnist")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--dim", type=int, default=48)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--test-images", type=int, default=2000, help="first N images of the test split")
    ap.add_argument("--val-frac", type=float, default=VAL_FRACTION, help="share of networks for validation")
    ap.add_argument("--test-frac", type=float, default=TEST_FRACTION, help="share of networks for test")
    ap.add_argument("--batch-size", type=int, default=32, help="networks per translator step")
    ap.add_argument("--func-epochs", type=int, default=None, help="epochs of functional rows")
    ap.add_argument("--img-batch", type=int, default=64, help="images per network per functional step")
    ap.add_argument("--bank", type=int, default=512, help="training images per network (functional)")
    ap.add_argument("--evals", type=int, default=20, help="validation evaluations per training run")
    ap.add_argument("--rows", nargs="*", default=None, help="subset of row names to run")
    ap.add_argument("--out", default="benchmarks/results/kt_table.json")
    ap.add_argument("--merge-scaling", default=None, help="kt_functional_scaling JSON: add a point as a row")
    ap.add_argument("--point", default=None, help="key of the point to add (e.g. 311+align)")
    ap.add_argument(
        "--converged", default=None, help="kt_converged_reference JSON: add the converged reference"
    )
    ap.add_argument("--render", action="store_true", help="re-render the markdown from the JSON only")
    a = ap.parse_args()
    try:
        if a.render:
            return print(rerender_results(a.out, table_markdown))
        if a.merge_scaling:
            return print(merge_scaling_file(a.out, a.merge_scaling, a.point))
        if a.converged:
            return print(merge_converged_file(a.out, a.converged))
    except KdforgeError as e:
        sys.exit(f"error: {e.cause}\nfix: {e.fix}")
    torch.set_num_threads(a.threads)
    split = kt_runs.load_split(a.pairs, a.test_images, a.data_dir, a.val_frac, a.test_frac)
    rows = {k: v for k, v in ROWS.items() if a.rows is None or k in a.rows}
    results = kt_runs.run_table(split, rows, vars(a))
    keys = ("pairs", "epochs", "dim", "depth", "val_frac", "test_frac", "batch_size", "func_epochs")
    cfg = {k: getattr(a, k) for k in (*keys, "img_batch", "bank", "test_images", "evals")}
    cfg |= {"manifest": split.manifest, "rows": {k: json.dumps(v, default=str) for k, v in rows.items()}}
    cfg["generation_seconds"] = results["info"]["generation_seconds"]
    print(save_results(a.out, results, table_markdown, cfg, a.seeds))
    table_plots(results, list(rows), Path(a.out))


if __name__ == "__main__":
    main()
