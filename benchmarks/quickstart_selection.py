"""Validation-only choice of the quickstart's setting: how many labels the few-labels demo keeps.

For each candidate number of labelled images, runs the whole quickstart (teacher on the labelled
images, then the tuned student alone and tuned KD student) on seed 0 and records *validation*
accuracies only; the test split is never read here. The quickstart keeps the candidate with the
largest validation gain of KD over the student alone.

Run: ``nice -n 5 python benchmarks/quickstart_selection.py --labelled 500 1000``
Writes ``benchmarks/results/quickstart_selection.{json,md}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile

from kdforge.quickstart import QuickstartSettings, quickstart
from kdforge.report.provenance import provenance, write_results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labelled", type=int, nargs="+", default=[500, 1000])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/quickstart_selection.json")
    args = ap.parse_args()
    candidates = []
    with tempfile.TemporaryDirectory() as tmp:
        for labelled in args.labelled:
            settings = dataclasses.replace(QuickstartSettings(), labelled=labelled)
            r = quickstart(f"{tmp}/l{labelled}", "fashion_mnist", None, args.seed, False, settings)
            val = {arm: sel["val_acc"][0] for arm, sel in r["selection"].items()}
            val["teacher"] = r["teacher_scores"]["val_acc"]
            picked = {arm: sel["overrides"] for arm, sel in r["selection"].items()}
            candidates.append({"labelled": labelled, "val_acc": val, "selected": picked})
            print(labelled, val, flush=True)
    best = max(candidates, key=lambda c: c["val_acc"]["kd"] - c["val_acc"]["student_alone"])
    md = [
        f"# Quickstart setting chosen on validation (seed {args.seed}; test never read)",
        "",
        "| labelled images | teacher val % | student alone val % | KD val % | KD - alone (val, points) |",
        "|---|---|---|---|---|",
    ]
    for c in candidates:
        v = c["val_acc"]
        md.append(
            f"| {c['labelled']:,} | {100 * v['teacher']:.2f} | {100 * v['student_alone']:.2f} | "
            f"{100 * v['kd']:.2f} | {100 * (v['kd'] - v['student_alone']):+.2f} |"
        )
    md += ["", f"Chosen: {best['labelled']:,} labelled images (largest validation gain)."]
    config = {"settings": dataclasses.asdict(QuickstartSettings()), **vars(args)}
    write_results(
        args.out,
        {"candidates": candidates, "chosen": best["labelled"], "provenance": provenance(config, [args.seed])},
        "\n".join(md),
    )


if __name__ == "__main__":
    main()
