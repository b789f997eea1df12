"""A converged reference for the KT table: its test networks' small blocks trained to a plateau.

The KT table's reference (``trained small block``) is the pair set's small block, trained with the
short pair schedule. This protocol rebuilds only the table's test networks from their seeds
(:func:`~kdforge.methods.translation.pairs.regenerate_networks`; the pair set itself need not be on
disk), re-checks their 2-epoch accuracies against the table's, and trains each small block until
its validation accuracy plateaus (:mod:`kdforge.methods.translation.plateau`), keeping the
best-validation state; only that state is scored on the test images. :func:`merge_converged` adds
the result to a KT table (``ratio_converged`` and its network-bootstrap interval for every row).
"""

from __future__ import annotations

import json
import statistics as st
import time
from dataclasses import asdict
from pathlib import Path

import torch

from kdforge.errors import KdforgeError
from kdforge.experiments.kt_protocol import CONVERGED, TRAINED, table_markdown
from kdforge.methods.translation.evaluate import split_indices
from kdforge.methods.translation.grouped import small_accuracy
from kdforge.methods.translation.pairs import (
    PairConfig,
    initial_pairs,
    load_pair_data,
    pair_test_images,
    regenerate_networks,
)
from kdforge.methods.translation.plateau import PlateauRule, train_small_to_plateau
from kdforge.methods.translation.train import validation_images
from kdforge.report.provenance import provenance, write_results


def table_test_networks(table: dict) -> tuple[PairConfig, list[int], list[float]]:
    """A KT table's pair configuration, its test networks' positions and their stored 2-epoch accuracies."""
    config = table["provenance"]["config"]
    positions = split_indices(table["info"]["n_all"], config["val_frac"], config["test_frac"])[2]
    stored = table["rows"][TRAINED]["per_seed"][0]
    if len(positions) != len(stored):
        raise KdforgeError(
            f"the table's split has {len(positions)} test networks but its trained row {len(stored)}",
            "use a KT table written by benchmarks/kt_table.py (its info and provenance unchanged)",
        )
    return PairConfig.from_dict(config["manifest"]), list(positions), stored


def measure_converged(
    cfg: PairConfig, positions: list[int], stored: list[float], rule: PlateauRule, splits=None
) -> dict:
    """Rebuild the networks at ``positions``, re-check their 2-epoch blocks, train them to a plateau.

    Args:
        cfg: The pair set's configuration (its manifest).
        positions: The networks' positions in the pair set.
        stored: Their stored 2-epoch small-block accuracies, in the same order.
        rule: When a small block counts as converged (decided on validation images only).

    Returns:
        ``{"networks": [per network: position, seed, stored / regenerated 2-epoch, converged test
        accuracy, best epoch, epochs trained, best validation accuracy, validation curve, whether
        the plateau run passed through the 2-epoch block exactly], "rule", "seconds"}``.
    """
    splits = splits or load_pair_data(cfg.dataset)
    train, test = splits.train.tensors, pair_test_images(splits, cfg)
    val, skip, size = validation_images(splits, rule.val_images), cfg.spec.small_skip, cfg.shard_size
    rows, secs = [], {"regenerate": 0.0, "plateau": 0.0}
    for shard in sorted({p // size for p in positions}):
        group = [p for p in positions if p // size == shard]
        t0 = time.perf_counter()
        nets = regenerate_networks(cfg, group, splits)
        t1 = time.perf_counter()
        init = initial_pairs([cfg.network_seed(p) for p in group], cfg, train).small
        run = train_small_to_plateau(
            nets, init, (train["x"], train["y"]), val, cfg.schedule, skip, rule, cfg.schedule.epochs_small
        )
        acc = small_accuracy(nets, run.small, test["x"], test["y"], skip).tolist()
        secs["regenerate"] += t1 - t0
        secs["plateau"] += time.perf_counter() - t1
        for j, p in enumerate(group):
            extends = all(torch.equal(v[j], nets[k][j]) for k, v in (run.at_epoch or {}).items())
            rows.append({
                "position": p,
                "seed": cfg.network_seed(p),
                "stored_2epoch": stored[positions.index(p)],
                "regenerated_2epoch": float(nets["acc_small"][j]),
                "regenerated_large": float(nets["acc_large"][j]),
                "converged": acc[j],
                "best_epoch": run.best_epoch[j],
                "epochs": run.epochs[j],
                "best_val_acc": run.best_val_acc[j],
                "val_curve": run.val_curves[j],
                "extends_2epoch_exactly": bool(run.at_epoch) and extends,
            })  # fmt: skip
        print(f"shard {shard}: converged {st.mean(acc[: len(group)]):.3f}", flush=True)
    return {"networks": rows, "rule": asdict(rule), "seconds": secs}


def converged_summary(results: dict) -> dict:
    """Means and the stored-vs-regenerated check of :func:`measure_converged`'s networks."""
    nets = results["networks"]
    diff = [n["regenerated_2epoch"] - n["stored_2epoch"] for n in nets]
    return {
        "n": len(nets),
        "stored_2epoch": st.mean(n["stored_2epoch"] for n in nets),
        "regenerated_2epoch": st.mean(n["regenerated_2epoch"] for n in nets),
        "converged": st.mean(n["converged"] for n in nets),
        "converged_std": st.stdev(n["converged"] for n in nets),
        "uplift": st.mean(n["converged"] for n in nets) / st.mean(n["regenerated_2epoch"] for n in nets),
        "identical_2epoch": sum(abs(d) < 1e-6 for d in diff),
        "max_abs_diff_2epoch": max(abs(d) for d in diff),
        "mean_diff_2epoch": st.mean(diff),
        "epochs_mean": st.mean(n["epochs"] for n in nets),
        "epochs_max": max(n["epochs"] for n in nets),
        "at_cap": sum(n["epochs"] == results["rule"]["max_epochs"] for n in nets),
        "best_epoch_range": [min(n["best_epoch"] for n in nets), max(n["best_epoch"] for n in nets)],
        "extends_2epoch_exactly": sum(n["extends_2epoch_exactly"] for n in nets),
    }


def converged_markdown(results: dict) -> str:
    """The markdown of a converged-reference results file (its numbers only, from its JSON)."""
    s, r, c = converged_summary(results), results["rule"], results["provenance"]["config"]
    secs = results["seconds"]
    md = [
        "# KT converged reference: the test networks' small blocks trained to a validation plateau",
        "",
        f"The {s['n']} test networks of `{c['table']}` (pair set `{c['pairs']}`, positions "
        f"{results['networks'][0]['position']}-{results['networks'][-1]['position']}) rebuilt from their "
        "seeds with the pair schedule (each shard trained whole, as `make-pairs` trains it). Each small "
        "block then continues the pair schedule (same start, optimiser, lr, batch size, images and data "
        f"order) between its network's frozen begin/last blocks: after every epoch it is scored on the first "
        f"{r['val_images']} validation images (held out from training); it stops after {r['patience']} "
        f"epochs in a row without a new best, or after {r['max_epochs']} epochs, and keeps its "
        "best-validation state, which alone is scored on the first 2000 test images.",
        "",
        f"- 2-epoch small blocks: stored {s['stored_2epoch']:.4f}, regenerated {s['regenerated_2epoch']:.4f} "
        f"(identical on {s['identical_2epoch']} of {s['n']} networks; max |diff| "
        f"{s['max_abs_diff_2epoch']:.4f}, mean diff {s['mean_diff_2epoch']:+.4f}). Where they differ, the "
        "rebuilt networks are twins of the stored ones (same seed, initial weights, images, data order "
        "and schedule), not copies: this training amplifies rounding differences into points of "
        "accuracy (the same seeds trained in a group of another size, by the vmap oracle or with 2 "
        "threads end elsewhere too), and the stored set was made by an uncommitted working tree on "
        "another machine image, whose exact arithmetic cannot be replayed here.",
        f"- converged: **{s['converged']:.4f} ± {s['converged_std']:.4f}** (x{s['uplift']:.3f} the "
        f"regenerated 2-epoch blocks); epochs trained {s['epochs_mean']:.1f} on average (max "
        f"{s['epochs_max']}), best epoch {s['best_epoch_range'][0]}-{s['best_epoch_range'][1]}; "
        f"{s['at_cap']} of {s['n']} networks stopped by the {r['max_epochs']}-epoch cap rather than "
        "a plateau",
        f"- every plateau run passed through its 2-epoch block exactly: {s['extends_2epoch_exactly']} "
        f"of {s['n']}",
        f"- wall time: regenerating {secs['regenerate'] / 60:.1f} min, plateau training + scoring "
        f"{secs['plateau'] / 60:.1f} min ({c['threads']} torch thread(s), one process, shared 2-core CPU)",
        "",
        "| position | seed | stored 2-epoch | regenerated 2-epoch | converged | best epoch | epochs "
        "| best val |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in results["networks"]:
        md.append(
            f"| {n['position']} | {n['seed']} | {n['stored_2epoch']:.4f} | {n['regenerated_2epoch']:.4f} | "
            f"{n['converged']:.4f} | {n['best_epoch']} | {n['epochs']} | {n['best_val_acc']:.4f} |"
        )
    return "\n".join(md)


def merge_converged(table: dict, converged: dict, source: str, merge_record: dict) -> None:
    """Add a converged reference to a KT table (in place): ``converged`` facts and the reference row.

    Every row then gets ``ratio_converged`` and ``ratio_converged_ci`` when the table is rendered
    (:func:`kdforge.experiments.kt_protocol.table_rows`).

    The table's trained row must equal the converged file's stored 2-epoch accuracies (the table
    scored the pair set the converged file rebuilt) or its regenerated ones (the table scored a
    regenerated pair set: the very networks the converged reference trained on; recorded as
    ``paired_with: "regenerated"``).

    Raises:
        KdforgeError: when the converged file scored other test networks than the table.
    """
    _, positions, trained = table_test_networks(table)
    nets = converged["networks"]
    same = {k: [n[f"{k}_2epoch"] for n in nets] == trained for k in ("stored", "regenerated")}
    if [n["position"] for n in nets] != positions or not any(same.values()):
        raise KdforgeError(
            f"{source} measured other test networks than the table",
            "run benchmarks/kt_converged_reference.py on this table",
        )
    s, p = converged_summary(converged), converged["provenance"]
    table["converged"] = {
        "source": source,
        "per_network": [n["converged"] for n in nets],
        "regenerated_2epoch": [n["regenerated_2epoch"] for n in nets],
        "summary": s,
        "rule": converged["rule"],
        "command": p["command"],
        "date": p["date"],
        "git_commit": p["git_commit"],
        "merge": merge_record,
    }
    if not same["stored"]:
        table["converged"]["paired_with"] = "regenerated"
    rows = table["rows"]
    rows.pop(CONVERGED, None)
    rows[CONVERGED] = {
        "per_seed": [table["converged"]["per_network"]],
        "train_seconds": None,
        "epochs": f"{min(n['epochs'] for n in nets)}-{max(n['epochs'] for n in nets)}",
        "n_train": "-",
        "generation": f"{converged['seconds']['regenerate'] / 60:.1f} min ({len(nets)} networks rebuilt)",
    }


def merge_converged_file(out: str | Path, source: str) -> str:
    """Add the converged reference file ``source`` to the KT table file ``out`` (no training).

    The table's JSON and markdown are rewritten; afterwards ``kt_table.py --render`` rebuilds the
    markdown from the JSON alone. Returns the markdown.
    """
    out = Path(out)
    table, converged = json.loads(out.read_text()), json.loads(Path(source).read_text())
    merge_converged(table, converged, source, provenance({"converged": source}))
    write_results(out, table, table_markdown(table))
    return table_markdown(table)
