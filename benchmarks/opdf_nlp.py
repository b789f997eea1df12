"""OPDF NLP grid: {KD, Theseus, AD-KD, narrow KD} x {plain, +SVD, +OPDF (+/- align)} x seeds, VADER movies.

Usage::

    PYTHONPATH=src python benchmarks/opdf_nlp.py [--seeds 0 1 2] [--bases kd theseus] [--variants plain ...]
    # the same recipes with more training data (runs named ..._sub1920-seedS):
    PYTHONPATH=src python benchmarks/opdf_nlp.py --variants plain opdf plain_lr3x \\
        --override data.subset=1920 train.eval_every_steps=30 --tag sub1920 \\
        --out benchmarks/results/opdf_nlp_sub1920.json
    PYTHONPATH=src python benchmarks/opdf_nlp.py --render --out ...  # re-render the markdown from the JSON

Fine-tunes the all-MiniLM-L6-v2 teacher once (``configs/opdf/nlp_teacher.yaml``) if its export is
missing, then runs every ``configs/opdf/nlp_<base>_<variant>.yaml`` once per seed, seed-major and
the 3x-lr controls last, reusing finished runs. The recipes set ``train.teacher_cache``: the frozen
teacher's logits are computed once and kept on disk. Selection on validation; the teacher is scored
on the students' test split; the exported, collapsed student is timed against a plain one side by
side. Protocol: :mod:`kdforge.experiments.opdf_nlp`. Writes ``benchmarks/results/opdf_nlp.*``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from kdforge.experiments.opdf_nlp import LABELS, grid_markdown, run_grid
from kdforge.report.results import rerender_results, save_results

ROOT = Path(__file__).resolve().parents[1]
CONFIGS, RESULTS = ROOT / "configs" / "opdf", ROOT / "benchmarks" / "results" / "opdf_nlp.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--bases", nargs="+", default=["kd"])
    ap.add_argument("--variants", nargs="+", default=list(LABELS))
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--override", nargs="*", default=[], help="dotted overrides for every student run")
    ap.add_argument("--tag", default="", help="run-name suffix for runs made with --override")
    ap.add_argument("--render", action="store_true", help="re-render the markdown from the JSON only")
    args = ap.parse_args()
    if args.render:
        print(rerender_results(args.out, grid_markdown))
        return
    torch.set_num_threads(1)
    tag = f"_{args.tag}" if args.tag else ""
    res = run_grid(CONFIGS, ROOT, args.bases, args.variants, args.seeds, args.override, tag)
    config = {"recipes": sorted(str(p.relative_to(ROOT)) for p in CONFIGS.glob("nlp_*.yaml"))}
    print(save_results(args.out, res, grid_markdown, config, args.seeds))


if __name__ == "__main__":
    main()
