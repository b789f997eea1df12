"""Pairs per hour: the KT pair pipeline vs a straightforward one-pair-at-a-time loop, side by side.

Rows (one process, same machine and threads, the same test images for the stored accuracies):
the reference loop with the reference schedule (timed for ``ref_steps`` steps per phase and
extrapolated), the reference loop with the fast schedule of our pair sets (one pair), and the vmap
and grouped engines with the fast schedule (one group of K pairs each).
``pairs/hour = 3600 / (wall seconds per pair)``.
"""

from __future__ import annotations

import time

from kdforge.methods.translation import networks
from kdforge.methods.translation.oracle import reference_pair, vmap_pairs
from kdforge.methods.translation.pairs import PairConfig, Schedule, train_pairs

#: the schedule of our pair sets
FAST = Schedule(train_subset=4096, epochs_large=2, epochs_small=2, lr=0.05)
#: seeds of the measured pairs (reference loop twice, then the vmap and the grouped engine's first)
SEEDS = [10_000, 10_001, 20_000, 30_000]


def _extrapolated_reference(cfg: PairConfig, train: dict, test: dict, ref_steps: int) -> dict:
    t = time.perf_counter()
    reference_pair(SEEDS[0], cfg, train, test, max_steps=ref_steps)
    dt = time.perf_counter() - t
    full_steps = (len(train["x"]) // cfg.schedule.batch_size) * cfg.schedule.epochs_large
    sec = dt / (2 * ref_steps) * (2 * full_steps)
    return {
        "row": "one-at-a-time loop, reference schedule",
        "measured": False,
        "timed_steps": 2 * ref_steps,
        "timed_seconds": dt,
        "seconds_per_pair": sec,
        "pairs_per_hour": 3600 / sec,
        "note": f"extrapolated: {2 * ref_steps} timed steps -> {2 * full_steps}; acc not measured",
    }


def measure_pair_speed(
    dataset: str, spec: networks.BlockSpec, train: dict, test: dict, k: int, k_vmap: int, ref_steps: int
) -> list[dict]:
    """The four rows, with speed-ups over the reference and over the loop on the same schedule."""
    fast, ref = PairConfig(dataset, spec, FAST), PairConfig(dataset, spec, schedule=Schedule.reference())
    rows = [_extrapolated_reference(ref, train, test, ref_steps)]
    t = time.perf_counter()
    r = reference_pair(SEEDS[1], fast, train, test)
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
    for engine, n, seed0 in (("vmap", k_vmap, SEEDS[2]), ("grouped", k, SEEDS[3])):
        t = time.perf_counter()
        out = (vmap_pairs if engine == "vmap" else train_pairs)(
            list(range(seed0, seed0 + n)), fast, train, test
        )
        sec = (time.perf_counter() - t) / n
        rows.append(
            {
                "row": f"kdforge {engine} engine (K={n}, cached begin, folded last BN), fast schedule",
                "measured": True,
                "seconds_per_pair": sec,
                "pairs_per_hour": 3600 / sec,
                **{f"acc_{p}": float(out[f"acc_{p}"].mean()) for p in ("large", "small")},
                **{f"acc_{p}_std": float(out[f"acc_{p}"].std()) for p in ("large", "small")},
            }
        )
        print(rows[-1], flush=True)
    base, loop = rows[0]["pairs_per_hour"], rows[1]["pairs_per_hour"]
    for row in rows:
        row["speedup_vs_reference"] = row["pairs_per_hour"] / base
        row["speedup_vs_loop_same_schedule"] = row["pairs_per_hour"] / loop if row is not rows[0] else None
    return rows


def pair_speed_markdown(results: dict) -> str:
    """The pairs-per-hour table, from the results JSON alone (settings from its provenance)."""
    c = results["provenance"]["config"]
    fast, ref = Schedule(**c["fast_schedule"]), Schedule(**c["reference_schedule"])
    md = [
        "# KT pair generation: pairs per hour (CPU)",
        "",
        f"Data: {c['dataset']}; fast schedule: {fast}; reference: {ref}; threads={c['threads']}.",
        f"Small block skip: {c['spec']['small_skip']}. "
        f"Accuracies on the first {c['eval_images']} test images.",
        "Machine shared with other engineers' jobs during the run: absolute times are pessimistic;",
        "rows ran back to back in one process, so the ratios are the comparable figures.",
        "",
        "| pipeline | s/pair | pairs/hour | x vs reference | x vs loop, same schedule "
        "| large acc | small acc | measured |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        vs_loop = row["speedup_vs_loop_same_schedule"]
        md.append(
            f"| {row['row']} | {row['seconds_per_pair']:.1f} | {row['pairs_per_hour']:.1f} | "
            f"{row['speedup_vs_reference']:.1f}x | {'-' if vs_loop is None else f'{vs_loop:.2f}x'} | "
            f"{row.get('acc_large', float('nan')):.3f} | {row.get('acc_small', float('nan')):.3f} | "
            f"{'yes' if row['measured'] else 'extrapolated'} |"
        )
    return "\n".join(md)
