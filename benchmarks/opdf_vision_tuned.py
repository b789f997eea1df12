"""OPDF vision table with every row's learning rate chosen on validation from the same grid.

Usage: ``PYTHONPATH=src python benchmarks/opdf_vision_tuned.py [--bases kd fitnet] [--variants plain opdf]``,
``--collect`` (train nothing: results from the finished runs), ``--render`` (markdown/PNG from the JSON).

Each ``configs/opdf/<base>_<variant>.yaml`` runs once per lr of ``--lrs`` and seed (runs
``tuned_<base>_<variant>-lr=<lr>-seed<S>`` in the recipes' output_dir, resumable); the teachers
are trained first when missing. Per row the lr with the best mean validation accuracy over seeds
is chosen; every other variant is compared with the tuned plain row of its base, paired by seed
(bootstrap 95% interval, target +1.0 point). Rows of the results file already at ``--out`` whose
runs are not on disk are carried over (restricted to ``--lrs``, selection re-run, where they were
measured recorded) and not re-run; rows whose grid did not finish are listed as not run.
Protocol: ``kdforge.experiments.opdf_vision_tuned``.
Writes ``benchmarks/results/opdf_vision_tuned.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kdforge.experiments.opdf_vision_tuned import (
    BASES,
    LABELS,
    LRS,
    TunedVisionGrid,
    plot_tuned_vision,
    run_table,
    tuned_vision_markdown,
)
from kdforge.report.results import rerender_results, save_results

ROOT = Path(__file__).resolve().parents[1]
CONFIGS, RESULTS = ROOT / "configs" / "opdf", ROOT / "benchmarks" / "results" / "opdf_vision_tuned.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--bases", nargs="+", default=BASES)
    ap.add_argument("--variants", nargs="+", default=list(LABELS))
    ap.add_argument("--lrs", type=float, nargs="+", default=LRS)
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--collect", action="store_true", help="train nothing; report the finished rows")
    ap.add_argument("--render", action="store_true", help="re-render the markdown from the JSON only")
    args = ap.parse_args()
    out = Path(args.out)
    if args.render:
        print(rerender_results(out, tuned_vision_markdown))
    else:
        grid = TunedVisionGrid(args.bases, args.variants, args.lrs, args.seeds)
        previous = json.loads(out.read_text()) if out.is_file() else None
        res = run_table(grid, CONFIGS, ROOT, train=not args.collect, previous=previous)
        config = {"recipes": grid.recipes(), "lrs": grid.lrs}
        print(save_results(out, res, tuned_vision_markdown, config, args.seeds))
    plot_tuned_vision(json.loads(out.read_text()), out.with_suffix(".png"))


if __name__ == "__main__":
    main()
