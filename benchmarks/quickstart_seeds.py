"""The quickstart (few labels + unlabelled pool, teacher -> KD student) over several seeds.

Run: ``nice -n 5 python benchmarks/quickstart_seeds.py --seeds 0 1 2`` (``--render``: the markdown
from the JSON). Writes ``benchmarks/results/quickstart.{json,md}``: per seed the teacher, the tuned
student alone and the tuned KD student (each selected on its validation split; test only scored),
the paired KD gain in points, its bootstrap interval and verdict against the +1.0 target, and wall
times (each seed from scratch: teacher training included). Summary and table:
:mod:`kdforge.experiments.quickstart_seeds`.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

from kdforge.experiments.quickstart_seeds import seed_record, seeds_markdown, seeds_summary
from kdforge.quickstart import QuickstartSettings, quickstart
from kdforge.report.results import rerender_results, save_results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--out", default="benchmarks/results/quickstart.json")
    ap.add_argument("--render", action="store_true", help="re-render the markdown from the JSON only")
    args = ap.parse_args()
    if args.render:
        print(rerender_results(args.out, seeds_markdown))
        return
    per_seed = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            cpu0 = time.process_time()
            r = quickstart(tmp, args.dataset, None, seed, progress=False)
            per_seed.append(seed_record(seed, r, time.process_time() - cpu0))
            print(
                f"seed {seed}: KD gain {r['kd_gain_points']:+.2f} points, wall {r['wall_time_s']:.0f} s",
                flush=True,
            )
    options = {k: v for k, v in vars(args).items() if k != "render"}
    config = {"settings": dataclasses.asdict(QuickstartSettings()), **options}
    save_results(args.out, seeds_summary(per_seed), seeds_markdown, config, args.seeds)


if __name__ == "__main__":
    main()
