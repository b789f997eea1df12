"""Why is a random-init small block so strong in the reference KT setting? Measured, not guessed.

Large networks are trained with a reference-like and with the fast schedule; for each, the small
block is scored between its frozen begin/last blocks with random init (with and without the
identity skip) and with all-zero weights and the skip (then *exactly* the identity: ``relu(h) = h``).
If random ~ identity, the random baseline's strength is structural.
"""

from __future__ import annotations

import statistics as st
import time
from dataclasses import asdict

import torch

from kdforge.methods.translation import grouped, networks
from kdforge.methods.translation.evaluate import random_small
from kdforge.methods.translation.pairs import PairConfig, Schedule, train_pairs

#: the table's columns (keys of a row's per-network accuracy lists)
COLUMNS = ("large network", "random, skip", "zero weights, skip (= identity)", "random, no skip")


def schedules(ref_epochs: int) -> dict[str, Schedule]:
    """The two large-network schedules compared (small blocks stay untrained: ``epochs_small=0``)."""
    return {
        f"reference-like: whole train split, {ref_epochs} epochs, lr 0.01": Schedule(
            train_subset=0, epochs_large=ref_epochs, epochs_small=0, lr=0.01
        ),
        "fast (our pair sets): 4096 images, 2 epochs, lr 0.05": Schedule(
            train_subset=4096, epochs_large=2, epochs_small=0, lr=0.05
        ),
    }


def score_small_blocks(
    nets: dict, spec: networks.BlockSpec, x: torch.Tensor, y: torch.Tensor, draws: int
) -> dict:
    """Accuracy of each network with random / zero (identity) / skip-less random small blocks."""
    p = {k: v for k, v in nets.items() if k.startswith(("begin.", "last."))}
    s = {k[6:]: v for k, v in nets.items() if k.startswith("stats.")}
    k = len(nets["seed"])
    out: dict[str, list[float]] = {"random, skip": [], "random, no skip": []}
    for d in range(draws):
        r = random_small(spec, k, 7000 + d)
        out["random, skip"] += grouped.accuracy({**p, **r}, s, x, y, "small", True).tolist()
        out["random, no skip"] += grouped.accuracy({**p, **r}, s, x, y, "small", False).tolist()
    zero = {n: torch.zeros_like(v) for n, v in random_small(spec, k, 0).items()}
    out["zero weights, skip (= identity)"] = grouped.accuracy({**p, **zero}, s, x, y, "small", True).tolist()
    out["large network"] = nets["acc_large"].tolist()
    return out


def measure_random_init(
    dataset: str, spec: networks.BlockSpec, train: dict, test: dict, k: int, ref_epochs: int, draws: int
) -> list[dict]:
    """One row per schedule: its ``k`` networks' seeds, training seconds and per-network accuracies."""
    rows = []
    for i, (name, sched) in enumerate(schedules(ref_epochs).items()):
        t = time.perf_counter()
        seeds = list(range(30_000 + 100 * i, 30_000 + 100 * i + k))
        nets = train_pairs(seeds, PairConfig(dataset, spec, sched), train, test)
        secs = time.perf_counter() - t
        scores = score_small_blocks(nets, spec, test["x"], test["y"], draws)
        rows.append({"schedule": name, "config": asdict(sched), "seeds": seeds, "seconds": secs, **scores})
        print(rows[-1]["schedule"], {c: st.mean(scores[c]) for c in COLUMNS}, flush=True)
    return rows


def random_init_markdown(results: dict) -> str:
    """The table, from the results JSON alone (settings from its provenance)."""
    c = results["provenance"]["config"]
    lines = []
    for row in results["rows"]:
        cells = " | ".join(
            f"{st.mean(row[col]):.3f} ± {st.stdev(row[col]) if len(row[col]) > 1 else 0:.3f}"
            for col in COLUMNS
        )
        lines.append(f"| {row['schedule']} | {len(row['seeds'])} | {cells} | {row['seconds'] / 60:.1f} min |")
    return "\n".join(
        [
            f"# KT: how strong is a random-init small block? ({c['dataset']}, full test split)",
            "",
            "Large nets: PyTorch-default init (uniform +-1/sqrt(fan_in) = kaiming_uniform(a=sqrt(5))),",
            f"SGD momentum 0.9, batch 128. Small block scored between each net's frozen begin/last; "
            f"random rows: {c['draws']} draws per net. mean ± std over nets x draws.",
            "",
            "| large-net schedule | nets | large net | random small, skip | zero small + skip (identity) "
            "| random small, no skip | train time |",
            "|---|---|---|---|---|---|---|",
            *lines,
        ]
    )
