"""OPDF vision grid: {KD, FitNet, AD-KD, Theseus} x {plain, +SVD, +OPDF (+/- align)} x seeds, Fashion-MNIST.

Usage::

    PYTHONPATH=src python benchmarks/opdf_vision.py [--seeds 0 1 2] [--bases kd fitnet adkd theseus]
    PYTHONPATH=src python benchmarks/opdf_vision.py --render  # re-render the markdown from the JSON

Trains each base's teacher (``configs/opdf/teacher.yaml``; Theseus: ``teacher_theseus.yaml``) if
its export is missing, then every ``configs/opdf/<base>_<variant>.yaml`` once per seed (selection
on validation, test accuracy of the selected checkpoint, finished runs reused) and times the
exported, collapsed student against a plain one side by side. Writes
``benchmarks/results/opdf_vision.{json,md}``. The alignment-weight sweep: ``opdf_align_sweep.py``.
Protocol: :mod:`kdforge.experiments.opdf_vision_table`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kdforge.experiments.opdf_vision_table import LABELS, run_grid, vision_markdown
from kdforge.report.results import rerender_results, save_results

ROOT = Path(__file__).resolve().parents[1]
CONFIGS, RESULTS = ROOT / "configs" / "opdf", ROOT / "benchmarks" / "results" / "opdf_vision.json"
TEACHERS = {"theseus": "teacher_theseus"}  # base -> teacher recipe (default: teacher)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--bases", nargs="+", default=["kd", "fitnet"])
    ap.add_argument("--variants", nargs="+", default=list(LABELS))
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--render", action="store_true", help="re-render the markdown from the JSON only")
    args = ap.parse_args()
    if args.render:
        print(rerender_results(args.out, vision_markdown))
        return
    config = {"recipes": sorted(str(p.relative_to(ROOT)) for p in CONFIGS.glob("*.yaml"))}
    results = run_grid(CONFIGS, ROOT, args.bases, args.variants, args.seeds, TEACHERS)
    print(save_results(args.out, results, vision_markdown, config, args.seeds))


if __name__ == "__main__":
    main()
