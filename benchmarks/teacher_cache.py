"""Teacher-output cache on the quickstart setting: what KD costs per step with and without it.

The first quickstart's models and data (CNN teacher, MLP student with hidden width 32 (25k
parameters), all of Fashion-MNIST's training split, batch 128; kept so that the figures stay
comparable with earlier runs after the quickstart moved to few labels). Measured side by side
in one process, the configurations alternating over rounds (the machine is shared and noisy):

* ``student``: the student trained alone (``supervised``);
* ``kd``: Hinton KD, the teacher run on every batch;
* ``kd_cached``: Hinton KD reading a warm teacher-output cache (``train.teacher_cache``);
* ``fill``: filling the cache (one pass of the teacher over the training pool, before the first
  epoch), timed from a cold cache directory.

Ratios are paired within each round, then the median over rounds is reported; the student and
KD + cache also take turns step by step (``--interleaved-steps``). Then KD runs ``--check-steps``
steps with and without the cache and the two must end with identical metrics (to 1e-6) and
identical student weights. Step times do not depend on the teacher's weights, so the teacher is
trained only briefly (``--teacher-steps``). Protocol: :mod:`kdforge.experiments.teacher_cache_bench`.

Run: ``nice -n 5 python benchmarks/teacher_cache.py [--rounds 10 --steps 40 --teacher-steps 100]``
(``--render``: the markdown from the JSON). Writes ``benchmarks/results/teacher_cache.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from kdforge.experiments.teacher_cache_bench import measure
from kdforge.experiments.teacher_cache_table import cache_markdown, cache_results
from kdforge.report.provenance import provenance, write_results
from kdforge.report.results import rerender_results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--steps", type=int, default=40, help="steps per configuration and round (10 warm-up)")
    ap.add_argument("--teacher-steps", type=int, default=100)
    ap.add_argument("--check-steps", type=int, default=200)
    ap.add_argument(
        "--interleaved-steps", type=int, default=3000, help="per configuration, student vs KD + cache"
    )
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default="benchmarks/results/teacher_cache.json")
    ap.add_argument("--render", action="store_true", help="re-render the markdown from the JSON only")
    args = ap.parse_args()
    if args.render:
        print(rerender_results(args.out, cache_markdown))
        return
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    measured = measure(
        args.rounds, args.steps, args.teacher_steps, args.check_steps, args.interleaved_steps, args.data_dir
    )
    results = cache_results(measured)
    config = {
        k: getattr(args, k) for k in ("rounds", "steps", "teacher_steps", "check_steps", "interleaved_steps")
    }
    results["provenance"] = provenance(
        config={**config, "recipes": measured.recipes},
        seeds=[0],
        command="python " + " ".join(sys.argv),  # as invoked (nice or not is not visible here)
    )
    write_results(args.out, results, cache_markdown(results))
    print(cache_markdown(results))


if __name__ == "__main__":
    main()
