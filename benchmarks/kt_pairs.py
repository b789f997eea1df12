"""Pairs per hour: the KT pair pipeline vs a straightforward one-pair-at-a-time loop, side by side.

Rows (all in one run, same machine, same threads, same 2000 test images for the stored accuracies):
  1. reference loop + reference schedule (10+10 epochs, full train split, SGD lr 0.01 m 0.9, batch
     128): timed for ``--ref-steps`` steps per phase and extrapolated to the full step count;
  2. reference loop + the fast schedule of our pair sets: one whole pair, measured;
  3. vmap engine (``torch.func.vmap`` over K networks, cached begin activations, folded last BN) +
     fast schedule: one group of ``--k-vmap`` pairs, measured;
  4. grouped engine (K networks as one grouped-conv network, same caches) + fast schedule: one group
     of ``--k`` pairs, measured.
pairs/hour = 3600 / (wall seconds per pair). Writes benchmarks/results/kt_pairs.{json,md}.
"""

from __future__ import annotations

import argparse
import time

import torch

from kdforge.data import load_dataset
from kdforge.methods.translation import networks
from kdforge.methods.translation.oracle import reference_pair, vmap_pairs
from kdforge.methods.translation.pairs import PairConfig, Schedule, train_pairs
from kdforge.report.provenance import provenance, write_results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--k", type=int, default=8, help="pairs trained at once by the grouped engine")
    ap.add_argument("--k-vmap", type=int, default=4, help="pairs trained at once by the vmap engine")
    ap.add_argument("--eval-images", type=int, default=2000, help="test images scored per pair")
    ap.add_argument("--no-skip", action="store_true", help="small block without the identity skip")
    ap.add_argument("--ref-steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/kt_pairs.json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    sp = load_dataset(a.dataset)
    tr = sp.train.tensors
    te = {k: v[: a.eval_images] for k, v in sp.test.tensors.items()}
    spec = networks.BlockSpec(small_skip=not a.no_skip)
    fast = PairConfig(a.dataset, spec, Schedule(train_subset=4096, epochs_large=2, epochs_small=2, lr=0.05))
    ref = PairConfig(a.dataset, spec, schedule=Schedule.reference())
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
    for engine, k, seed0 in (("vmap", a.k_vmap, 20_000), ("grouped", a.k, 30_000)):
        t = time.perf_counter()
        train = vmap_pairs if engine == "vmap" else train_pairs
        out = train(list(range(seed0, seed0 + k)), fast, tr, te)
        sec = (time.perf_counter() - t) / k
        rows.append(
            {
                "row": f"kdforge {engine} engine (K={k}, cached begin, folded last BN), fast schedule",
                "measured": True,
                "seconds_per_pair": sec,
                "pairs_per_hour": 3600 / sec,
                "acc_large": float(out["acc_large"].mean()),
                "acc_small": float(out["acc_small"].mean()),
                "acc_large_std": float(out["acc_large"].std()),
                "acc_small_std": float(out["acc_small"].std()),
            }
        )
        print(rows[-1], flush=True)
    base, loop = rows[0]["pairs_per_hour"], rows[1]["pairs_per_hour"]
    for row in rows:
        row["speedup_vs_reference"] = row["pairs_per_hour"] / base
        row["speedup_vs_loop_same_schedule"] = row["pairs_per_hour"] / loop if row is not rows[0] else None
    md = [
        "# KT pair generation: pairs per hour (CPU)",
        "",
        f"Data: {a.dataset}; fast schedule: {fast.schedule}; reference: {ref.schedule}; threads={a.threads}.",
        f"Small block skip: {spec.small_skip}. Accuracies on the first {a.eval_images} test images.",
        "Machine shared with other engineers' jobs during the run: absolute times are pessimistic;",
        "rows ran back to back in one process, so the ratios are the comparable figures.",
        "",
        "| pipeline | s/pair | pairs/hour | x vs reference | x vs loop, same schedule "
        "| large acc | small acc | measured |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        vs_loop = row["speedup_vs_loop_same_schedule"]
        md.append(
            f"| {row['row']} | {row['seconds_per_pair']:.1f} | {row['pairs_per_hour']:.1f} | "
            f"{row['speedup_vs_reference']:.1f}x | {'-' if vs_loop is None else f'{vs_loop:.2f}x'} | "
            f"{row.get('acc_large', float('nan')):.3f} | {row.get('acc_small', float('nan')):.3f} | "
            f"{'yes' if row['measured'] else 'extrapolated'} |"
        )
    cfg = {
        "dataset": a.dataset,
        "k": a.k,
        "k_vmap": a.k_vmap,
        "eval_images": a.eval_images,
        "spec": spec.to_dict(),
        "ref_steps": a.ref_steps,
        "threads": a.threads,
        "fast_schedule": vars(fast.schedule),
        "reference_schedule": vars(ref.schedule),
    }
    write_results(
        a.out,
        {"rows": rows, "provenance": provenance(cfg, seeds=[10_000, 10_001, 20_000, 30_000])},
        "\n".join(md),
    )
    print("\n".join(md))


if __name__ == "__main__":
    main()
