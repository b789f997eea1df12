"""The quickstart (few labels + unlabelled pool, teacher -> KD student) over several seeds.

Run: ``nice -n 5 python benchmarks/quickstart_seeds.py --seeds 0 1 2``
Writes ``benchmarks/results/quickstart.{json,md}``: per seed the teacher, the tuned student alone
and the tuned KD student (each selected on its validation split; test only scored), the paired
KD gain in points, its bootstrap interval and verdict against the +1.0 target, and wall times
(each seed from scratch: teacher training included).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time

from kdforge.experiments import paired_bootstrap, verdict
from kdforge.quickstart import QuickstartSettings, quickstart
from kdforge.report.compression import format_accuracy
from kdforge.report.provenance import provenance, write_results

TARGET = 1.0  # points of test accuracy over the tuned student alone


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--out", default="benchmarks/results/quickstart.json")
    args = ap.parse_args()
    per_seed = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            cpu0 = time.process_time()
            r = quickstart(tmp, args.dataset, None, seed, progress=False)
            rows = {row["name"]: row for row in r["report"]["rows"]}
            per_seed.append(
                {
                    "seed": seed,
                    "kd_gain": r["kd_gain_points"],
                    "wall_time_s": r["wall_time_s"],
                    "teacher_time_s": r["teacher_time_s"],
                    "cpu_time_s": time.process_time() - cpu0,
                    "selected": {arm: sel["overrides"] for arm, sel in r["selection"].items()},
                    "rows": {
                        name: {
                            k: row[k] for k in ("params", "file_bytes", "latency_ms", "val_acc", "test_acc")
                        }
                        for name, row in rows.items()
                    },
                    "ratios_kd": rows["kd"]["ratios"],
                }
            )
            print(
                f"seed {seed}: KD gain {r['kd_gain_points']:+.2f} points, wall {r['wall_time_s']:.0f} s",
                flush=True,
            )
    settings = QuickstartSettings()
    gains = [s["kd_gain"] for s in per_seed]
    names = list(per_seed[0]["rows"])
    table = {n: {k: [s["rows"][n][k][0] for s in per_seed] for k in ("val_acc", "test_acc")} for n in names}
    interval = paired_bootstrap(table["kd"]["test_acc"], table["student alone"]["test_acc"])
    points = dataclasses.replace(
        interval, mean=interval.mean * 100, low=interval.low * 100, high=interval.high * 100
    )
    result = verdict(points, TARGET)
    md = [
        f"# Quickstart: {args.dataset}, {settings.labelled:,} labels + "
        f"{settings.unlabelled:,} unlabelled images, seeds {args.seeds}",
        "",
        "| model | params | val acc % | test acc % |",
        "|---|---|---|---|",
    ]
    for n in names:
        md.append(
            f"| {n} | {per_seed[0]['rows'][n]['params']:,} | {format_accuracy(table[n]['val_acc'])} | "
            f"{format_accuracy(table[n]['test_acc'])} |"
        )
    md += [
        "",
        "KD gain over the tuned student alone, paired by seed (test, points): "
        + ", ".join(f"{g:+.2f}" for g in gains)
        + f"; mean {statistics.fmean(gains):+.2f}, 95% bootstrap interval {points.format()}: "
        f"target +{TARGET:.1f} **{result}**.",
        "Selected on validation: " + "; ".join(f"seed {s['seed']}: {s['selected']}" for s in per_seed),
        "Wall time per seed (teacher training + both tuned arms + report): "
        + ", ".join(f"{s['wall_time_s']:.0f}" for s in per_seed)
        + " s; process CPU time "
        + ", ".join(f"{s['cpu_time_s']:.0f}" for s in per_seed)
        + " s.",
    ]
    config = {"settings": dataclasses.asdict(settings), **vars(args)}
    write_results(
        args.out,
        {
            "per_seed": per_seed,
            "table": table,
            "kd_gain": gains,
            "kd_gain_interval": points.to_dict(),
            "target": TARGET,
            "verdict": result,
            "wall_time_s": [s["wall_time_s"] for s in per_seed],
            "provenance": provenance(config, args.seeds),
        },
        "\n".join(md),
    )


if __name__ == "__main__":
    main()
