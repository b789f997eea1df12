"""Pairs per hour: the KT pair pipeline vs a straightforward one-pair-at-a-time loop, side by side.

Rows (all in one run, same machine, same threads):
  1. reference loop + reference schedule (10+10 epochs, full train split, SGD lr 0.01 m 0.9, batch
     128): timed for ``--ref-steps`` steps per phase and extrapolated to the full step count;
  2. reference loop + our fast schedule: one whole pair, measured;
  3. our pipeline (vmapped K networks, cached begin activations, folded last BN) + fast schedule:
     one shard of K pairs, measured.
pairs/hour = 3600 / (wall seconds per pair). Writes benchmarks/results/kt_pairs.{json,md}.
"""

from __future__ import annotations

import argparse
import time

import torch

from kdforge.data import load_dataset
from kdforge.methods.translation.pairs import PairConfig, Schedule, reference_pair, train_pairs
from kdforge.report.provenance import provenance, write_results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--k", type=int, default=4, help="pairs trained at once by the pipeline")
    ap.add_argument("--ref-steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/kt_pairs.json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    sp = load_dataset(a.dataset)
    tr, te = sp.train.tensors, sp.test.tensors
    fast = PairConfig(a.dataset, schedule=Schedule())
    ref = PairConfig(a.dataset, schedule=Schedule.reference())
    rows = []

    t = time.perf_counter()
    r = reference_pair(10_000, ref, tr, te, max_steps=a.ref_steps)
    dt = time.perf_counter() - t
    full_steps = (len(tr["x"]) // 128) * 10
    sec = dt / (2 * a.ref_steps) * (2 * full_steps)
    rows.append(
        {
            "row": "one-at-a-time loop, reference schedule",
            "measured": False,
            "timed_steps": 2 * a.ref_steps,
            "timed_seconds": dt,
            "seconds_per_pair": sec,
            "pairs_per_hour": 3600 / sec,
            "note": f"extrapolated: {2 * a.ref_steps} timed steps -> {2 * full_steps}; acc not measured",
        }
    )
    t = time.perf_counter()
    r = reference_pair(10_001, fast, tr, te)
    sec = time.perf_counter() - t
    rows.append(
        {
            "row": "one-at-a-time loop, fast schedule",
            "measured": True,
            "seconds_per_pair": sec,
            "pairs_per_hour": 3600 / sec,
            "acc_large": r["acc_large"],
            "acc_small": r["acc_small"],
        }
    )
    t = time.perf_counter()
    out = train_pairs(list(range(20_000, 20_000 + a.k)), fast, tr, te)
    sec = (time.perf_counter() - t) / a.k
    rows.append(
        {
            "row": f"kdforge pipeline (vmap K={a.k}, cached begin, fast schedule)",
            "measured": True,
            "seconds_per_pair": sec,
            "pairs_per_hour": 3600 / sec,
            "acc_large": float(out["acc_large"].mean()),
            "acc_small": float(out["acc_small"].mean()),
            "acc_large_std": float(out["acc_large"].std()),
            "acc_small_std": float(out["acc_small"].std()),
        }
    )
    base = rows[0]["pairs_per_hour"]
    for row in rows:
        row["speedup_vs_reference"] = row["pairs_per_hour"] / base
    md = [
        "# KT pair generation: pairs per hour (CPU)",
        "",
        f"Data: {a.dataset}; fast schedule: {fast.schedule}; reference: {ref.schedule}; threads={a.threads}.",
        "Machine shared with other jobs during the run (load ~7 on 2 cores): absolute times are pessimistic,",
        "rows ran back to back in one process.",
        "",
        "| pipeline | pairs/hour | x vs reference | large acc | small acc | measured |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        md.append(
            f"| {row['row']} | {row['pairs_per_hour']:.1f} | {row['speedup_vs_reference']:.1f}x | "
            f"{row.get('acc_large', float('nan')):.3f} | {row.get('acc_small', float('nan')):.3f} | "
            f"{'yes' if row['measured'] else 'extrapolated'} |"
        )
    cfg = {
        "dataset": a.dataset,
        "k": a.k,
        "ref_steps": a.ref_steps,
        "threads": a.threads,
        "fast_schedule": vars(fast.schedule),
        "reference_schedule": vars(ref.schedule),
    }
    write_results(
        a.out, {"rows": rows, "provenance": provenance(cfg, seeds=[10_000, 10_001, 20_000])}, "\n".join(md)
    )
    print("\n".join(md))


if __name__ == "__main__":
    main()
