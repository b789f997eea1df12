"""Start-up time of ``kdforge --help`` and ``kdforge list`` beside bare Python start-up.

Each round runs every command once, in an order rotated from round to round, so the
commands share the machine's load (this CPU is shared and noisy); the figure per
command is the median wall time over the rounds, beside the child's CPU time.
``python -c "import torch"`` is timed alongside as the cost the lazy imports avoid.
Target: ``kdforge --help`` within 0.3 s (wall) of ``python -c pass``.
Protocol: :mod:`kdforge.experiments.cli_startup`.

Run: ``python benchmarks/cli_startup.py [--rounds 21]`` (``--render``: the markdown from the JSON)
Writes ``benchmarks/results/cli_startup.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys

from kdforge.experiments import cli_startup
from kdforge.report.provenance import provenance, write_results
from kdforge.report.results import rerender_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--out", default="benchmarks/results/cli_startup.json")
    parser.add_argument("--render", action="store_true", help="re-render the markdown from the JSON only")
    args = parser.parse_args()
    if args.render:
        print(rerender_results(args.out, cli_startup.startup_markdown))
        return
    cmds = cli_startup.commands()
    wall, cpu = cli_startup.measure(cmds, args.rounds)
    results = cli_startup.startup_results(wall, cpu, cmds[cli_startup.HELP][:-1])
    results["provenance"] = provenance(
        config={"rounds": args.rounds, "order": "rotated each round", "statistic": "median"},
        command=" ".join(["python", *sys.argv]),
    )
    md = cli_startup.startup_markdown(results)
    write_results(args.out, results, md)
    print(md)


if __name__ == "__main__":
    main()
