"""Per-step overhead of kdforge's training engine vs a bare hand-written PyTorch KD loop.

Both do the same Hinton-KD step on the same data order; the two loops alternate over several
rounds in one process (the machine is shared and noisy), and the per-step time is the median
over the timed steps of each round. Protocol: :mod:`kdforge.experiments.engine_overhead`.

Run: ``python benchmarks/engine_overhead.py [--rounds 5 --steps 150]`` (``--render``: the markdown
from the JSON). Writes ``benchmarks/results/engine_overhead.{json,md}``.
"""

from __future__ import annotations

import argparse

from kdforge.experiments import engine_overhead as overhead
from kdforge.report.provenance import provenance, write_results
from kdforge.report.results import rerender_results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--out", default="benchmarks/results/engine_overhead.json")
    ap.add_argument("--render", action="store_true", help="re-render the markdown from the JSON only")
    args = ap.parse_args()
    if args.render:
        print(rerender_results(args.out, overhead.overhead_markdown))
        return
    config = {k: v for k, v in vars(args).items() if k != "render"}
    data = overhead.random_images(args.steps, args.batch_size)
    results = {}
    for setting in overhead.SETTINGS:
        results[setting] = overhead.measure_setting(data, setting, args.rounds, args.steps, args.batch_size)
        print(setting, f"engine/bare = {results[setting]['ratio_median']:.3f}")
    res = {"results": results, "provenance": provenance(config, [0])}
    write_results(args.out, res, overhead.overhead_markdown(res))


if __name__ == "__main__":
    main()
