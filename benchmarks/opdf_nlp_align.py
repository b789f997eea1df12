"""OPDF alignment on/off on text where it can differ: a student NOT built from the aligned layers.

Usage::

    PYTHONPATH=src python benchmarks/opdf_nlp_align.py [--lambdas 0 1 10 100 1000] [--seeds 0 1 2]
    PYTHONPATH=src python benchmarks/opdf_nlp_align.py --collect  # results from finished runs only
    PYTHONPATH=src python benchmarks/opdf_nlp_align.py --render   # the markdown and plot again from the JSON
    # OPDF's MPO factors at 10x the learning rate (runs nlp_kd_opdf_shift_mpolr10-...; plain KD reused):
    PYTHONPATH=src python benchmarks/opdf_nlp_align.py --override method.kwargs.mpo_lr_scale=10 \\
        --tag mpolr10 --out benchmarks/results/opdf_nlp_align_mpolr10.json

In ``opdf_nlp.md`` the student is the fine-tuned teacher's layers 1, 3, 5 and the default map
aligns it with exactly those layers, so the alignment loss starts at 0 and on/off is inert by
construction. Here the student is made of layers 0, 2, 4 (``nlp_kd_opdf_shift.yaml``) and still
aligned with 1, 3, 5. ``lambda_align`` is swept (0 = off) x seeds; "on" is the best lambda > 0
chosen on validation, compared with off and OPDF (lambda chosen on validation, 0 included) with
plain KD of the same student (``nlp_kd_plain_shift.yaml``), paired by seed. Fine-tunes the teacher
(``nlp_teacher.yaml``) if its export is missing. Protocol: :mod:`kdforge.experiments.opdf_nlp_align`.
Writes ``benchmarks/results/opdf_nlp_align.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from kdforge.experiments.opdf_nlp_align import (
    OPDF_RECIPE,
    PLAIN_RECIPE,
    align_markdown,
    plot_align,
    run_align,
    time_one,
)
from kdforge.report.results import rerender_results, save_results

ROOT = Path(__file__).resolve().parents[1]
CONFIGS, RESULTS = ROOT / "configs" / "opdf", ROOT / "benchmarks" / "results" / "opdf_nlp_align.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 1.0, 10.0, 100.0, 1000.0])
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--collect", action="store_true", help="train nothing; report the finished runs")
    ap.add_argument("--render", action="store_true", help="re-render the markdown from the JSON only")
    ap.add_argument("--time-one", action="store_true", help="with --collect: time one run (stand-in teacher)")
    ap.add_argument("--override", nargs="*", default=[], help="dotted overrides for the OPDF runs only")
    ap.add_argument("--tag", default="", help="OPDF run-name suffix for runs made with --override")
    args = ap.parse_args()
    if args.render:
        print(rerender_results(args.out, align_markdown))
    else:
        torch.set_num_threads(1)
        tag = f"_{args.tag}" if args.tag else ""
        res = run_align(CONFIGS, args.lambdas, args.seeds, not args.collect, args.override, tag)
        res["timing"] = time_one(CONFIGS) if args.time_one else None
        config = {"recipes": [f"configs/opdf/{r}.yaml" for r in (OPDF_RECIPE, PLAIN_RECIPE)]}
        print(save_results(args.out, res, align_markdown, config, args.seeds))
    res = json.loads(Path(args.out).read_text())
    if res["rows"]:
        print(plot_align(res, Path(args.out).with_suffix(".png")))


if __name__ == "__main__":
    main()
