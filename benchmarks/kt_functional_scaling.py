"""Learning curve of the functional KT objective: test accuracy vs number of training networks.

The functional objective needs no small-block targets, so extra *large-only* networks (made with
``make-pairs --epochs-small 0``, about half the cost of a full pair) are added to the training
networks of a full pair set. Validation and test networks are the full pair set's (same split as
``kt_table.py``); the checkpoint is chosen on validation networks only, test networks are reported.
Points of one family share the translator settings and epochs (so more networks also means more
steps; the 80-epoch run on 135 networks from ``kt_table_functional80.json`` is the same-steps
control); a point trained for other epochs names them in its key and label.

Each invocation measures the given ``--extra-counts`` and merges them into ``--out`` (points from
earlier invocations are kept), then re-renders the table and the PNGs from all points. A point can be
imported from an earlier table (``--import-row``) when the pair set was regenerated with the same
command: the test networks' trained and template accuracies are compared first. ``--extra-test``
scores every point on fresh test networks too (pooled, with a network-bootstrap 95% CI). The
protocol is :mod:`kdforge.experiments.kt_scaling` / ``kt_scaling_run``; ``--render`` re-renders the
markdown from the JSON only. Writes benchmarks/results/kt_functional_scaling.{json,md,png}.
"""

from __future__ import annotations

import sys

import torch

from kdforge.errors import KdforgeError
from kdforge.experiments.kt_scaling import scaling_markdown
from kdforge.experiments.kt_scaling_run import ScalingSettings, run_and_save, settings_parser
from kdforge.report.results import rerender_results


def main() -> None:
    ap = settings_parser(__doc__)
    ap.add_argument("--render", action="store_true", help="re-render the markdown from the JSON only")
    args = vars(ap.parse_args())
    settings = ScalingSettings(**{k: v for k, v in args.items() if k != "render"})
    try:
        if args["render"]:
            return print(rerender_results(settings.out, scaling_markdown))
        torch.set_num_threads(settings.threads)
        print(run_and_save(settings, " ".join(["kt_functional_scaling.py", *sys.argv[1:]])))
    except KdforgeError as e:
        sys.exit(f"error: {e.cause}\nfix: {e.fix}")


if __name__ == "__main__":
    main()
