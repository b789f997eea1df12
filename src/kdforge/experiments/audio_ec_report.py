"""Verdicts, markdown and figure of the audio EAsT / EC measurement (:mod:`kdforge.experiments.audio_ec`).

Every EC row (each d) gets its own paired interval against the baseline and both EAsT rows; the EC
row chosen on validation is also compared with the fine-tuned teacher, and its margin over the EAsT
row chosen on validation is what the words and voices tasks compare.
"""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np

from kdforge.experiments.audio_ec import AudioEcGrid, row_specs
from kdforge.experiments.intervals import paired_bootstrap_examples, verdict
from kdforge.report.provenance import write_results

COMPARED = ("baseline", "EAsT-FitNet", "EAsT-dCor")
SHORT = {"met": "met", "missed": "missed", "not distinguishable": "n.d."}


def mean_val(row: dict[str, Any]) -> float:
    """Mean validation accuracy over seeds (what every choice between rows uses)."""
    return statistics.mean(row["val_acc"])


def compare(rows: dict[str, dict], method: str, other: str, split: str, target: float) -> dict[str, Any]:
    """Paired (seeds x clips) bootstrap interval of ``method - other`` on ``split``, in points."""
    iv = paired_bootstrap_examples(rows[method][f"{split}_correct"], rows[other][f"{split}_correct"])
    return {**{k: 100 * v for k, v in iv.to_dict().items()}, "verdict": verdict(iv, target)}


def verdicts(rows: dict[str, dict], unseen: bool, target: float = 0.01) -> dict[str, Any]:
    """Every measured EC row against the baseline and both EAsT rows (test, and the unseen set).

    Returns:
        ``target_points``; ``per_row`` (EC row -> ``"vs <row> (<split>)"`` -> interval and verdict);
        ``ec_row`` (the EC row with the best mean validation accuracy, among those measured),
        ``east_row`` (the same for EAsT: EC's margin over it is what the two tasks compare),
        ``chosen`` (``ec_row`` against the baseline, both EAsT rows and the fine-tuned teacher) and
        ``target`` (:func:`overall` of the first three on test); ``None`` where rows are missing.
    """
    splits = ("test", "unseen") if unseen else ("test",)
    out: dict[str, Any] = {"target_points": 100 * target, "per_row": {}, "ec_row": None, "east_row": None}
    ec_rows = [k for k in rows if k.startswith("EC-")]
    for ec in ec_rows:
        out["per_row"][ec] = {
            f"vs {other} ({split})": compare(rows, ec, other, split, target)
            for other in COMPARED
            if other in rows
            for split in splits
        }
    east_rows = [k for k in rows if k.startswith("EAsT-")]
    if not ec_rows or "baseline" not in rows or not east_rows:
        return out
    out["ec_row"] = max(ec_rows, key=lambda k: mean_val(rows[k]))
    out["east_row"] = max(east_rows, key=lambda k: mean_val(rows[k]))
    others = [k for k in (*COMPARED, "teacher fine-tuned") if k in rows]
    out["chosen"] = {
        f"vs {other} ({split})": compare(rows, out["ec_row"], other, split, target)
        for other in others
        for split in splits
    }
    out["target"] = overall([out["chosen"].get(f"vs {k} (test)") for k in COMPARED])
    return out


def overall(comparisons: list[dict[str, Any] | None]) -> str:
    """The issue's target on test: ``met`` only when every comparison (baseline, both EAsT rows) is met,
    ``missed`` when any is missed, else ``not distinguishable`` (``not measured`` with a row missing)."""
    if any(c is None for c in comparisons):
        return "not measured"
    verdicts_ = [c["verdict"] for c in comparisons]
    if all(v == "met" for v in verdicts_):
        return "met"
    return "missed" if "missed" in verdicts_ else "not distinguishable"


def fmt(values: list[float]) -> str:
    """``mean ± std`` in percent (``-`` for no values)."""
    if not values:
        return "-"
    sd = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} ± {sd:.2f}"


def interval_text(iv: dict[str, Any], short: bool = False) -> str:
    """``+1.23 [-0.40, +2.90] -> not distinguishable`` (or the short cell form)."""
    body = f"{iv['mean']:+.2f} [{iv['low']:+.2f}, {iv['high']:+.2f}]"
    return f"{body} {SHORT[iv['verdict']]}" if short else f"{body} -> {iv['verdict']}"


def _chosen_text(row: dict[str, Any]) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in row["chosen"].items()) or "-"


def _among(block: dict[str, Any], planned: list[str], prefix: str) -> str:
    """Text like " among the measured EC rows (a, b)" when some planned rows of that kind are missing."""
    measured = [k for k in block["rows"] if k.startswith(prefix)]
    if all(k in measured for k in planned if k.startswith(prefix)):
        return ""
    return f" among the measured {prefix.rstrip('-')} rows ({', '.join(measured)})"


def regime_markdown(regime: str, block: dict[str, Any], unseen: bool, planned: list[str]) -> list[str]:
    """The table and verdict lines of one regime (labelled clips per class)."""
    n_test, n_unseen = block["n_test"], block["n_unseen"]
    head = f"| row | chosen on val | val acc % | test acc % ({n_test} clips) |"
    rule = "|---|---|---|---|"
    if unseen:
        head += f" real recordings acc % ({n_unseen} clips) |"
        rule += "---|"
    lines = [
        f"## {regime} labelled clips per class ({block['n_train']} training clips)",
        "",
        head + " train s |",
    ]
    lines.append(rule + "---|")
    for label, row in block["rows"].items():
        cells = [label, _chosen_text(row), fmt(row["val_acc"]), fmt(row["test_acc"])]
        cells += [fmt(row["unseen_acc"])] if unseen else []
        cells.append(f"{statistics.mean(row['train_time_s']):.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    missing = [k for k in planned if k not in block["rows"]]
    if missing:
        lines += [
            "",
            f"Not measured (CPU budget): {', '.join(missing)}. The verdicts below compare only the "
            "measured rows.",
        ]
    v = block["verdict"]
    target = v["target_points"]
    if v["per_row"]:
        keys = list(next(iter(v["per_row"].values())))
        lines += [
            "",
            f"Each EC row minus the compared row, points, 95% bootstrap interval over seeds x clips "
            f"(target +{target:.1f}: met only when the lower bound clears it; n.d. = not distinguishable):",
            "",
            "| EC row | " + " | ".join(keys) + " |",
            "|---|" + "---|" * len(keys),
        ]
        for ec, comps in v["per_row"].items():
            lines.append(f"| {ec} | " + " | ".join(interval_text(comps[k], short=True) for k in keys) + " |")
    if v["ec_row"] is not None:
        lines += [
            "",
            f"EC row chosen on validation{_among(block, planned, 'EC-')}: **{v['ec_row']}** "
            f"(EAsT row chosen alike{_among(block, planned, 'EAsT-')}: {v['east_row']}):",
            "",
        ]
        lines += [f"- {key}: {interval_text(iv)}" for key, iv in v["chosen"].items()]
        margin = v["chosen"][f"vs {v['east_row']} (test)"]
        lines += [
            "",
            f"Target (EC >= +{target:.1f} over the baseline and both EAsT rows on test): **{v['target']}**. "
            f"EC's margin over the EAsT row chosen on validation ({v['east_row']}): "
            f"{interval_text(margin)}.",
        ]
    return [*lines, ""]


def planned_rows(results: dict[str, Any]) -> list[str]:
    """The row labels the results' grid asks for, in run order."""
    return ["teacher probe", *row_specs(AudioEcGrid(**results["grid"]))]


def markdown(results: dict[str, Any]) -> str:
    """The results file's markdown (rebuilt byte for byte from the JSON)."""
    task, grid = results["task"], results["grid"]
    planned = planned_rows(results)
    data = results["data"]
    protocol = (
        f"Task: {task['title']}. {task['design']} "
        f"Data: `kdforge data speech-words` (seed {data['speech_words_options']['seed']}), "
        f"{data['split_text']}. "
        f"Teacher: GE2E speaker encoder (Resemblyzer 0.1.4 weights), utterance embedding (`encoder`, 256-d). "
        f"Seeds {grid['seeds']}. Every row chooses among {results['budget']} settings on validation "
        f"(mean over seeds; test only scored): baseline lr {grid['baseline_lrs']}; EAsT/EC lambda "
        f"{grid['lams']} (each d its own); teacher fine-tuned lr {grid['finetune_lrs']} "
        f"({grid['finetune_epochs']} epochs); KD-from-probe weight {grid['kd_weights']}; probe C "
        f"{grid['probe_cs']}. Students {grid['epochs']} epochs, checkpoint chosen on validation."
    )
    lines = [f"# EAsT / EC with a pre-trained speaker encoder: {task['name']}", "", protocol, ""]
    if results.get("note"):
        lines += [results["note"], ""]
    for regime, block in results["regimes"].items():
        lines += regime_markdown(regime, block, task["unseen"], planned)
    return "\n".join(lines)


def plot(results: dict[str, Any], path: str) -> None:
    """Test (and real-recording) accuracy per row, mean ± std over seeds, one panel per regime."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regimes = results["regimes"]
    fig, axes = plt.subplots(1, len(regimes), figsize=(7 * len(regimes), 4.5), squeeze=False)
    bars = [("test_acc", "test")] + ([("unseen_acc", "real recordings")] if results["task"]["unseen"] else [])
    width = 0.8 / len(bars)
    for ax, (regime, block) in zip(axes[0], regimes.items(), strict=True):
        labels = list(block["rows"])
        at = np.arange(len(labels))
        for i, (key, name) in enumerate(bars):
            vals = [block["rows"][k][key] for k in labels]
            means = [100 * statistics.mean(v) for v in vals]
            sds = [100 * statistics.stdev(v) if len(v) > 1 else 0.0 for v in vals]
            ax.bar(at + (i - (len(bars) - 1) / 2) * width, means, width, yerr=sds, label=name, capsize=2)
        ax.set_xticks(at, labels, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel("accuracy %")
        ax.set_title(f"{results['task']['name']}: {regime} clips per class ({block['n_test']} test clips)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(results: dict[str, Any], out: str, render_only: bool = False) -> None:
    """``OUT.json`` (verdicts added unless ``render_only``), ``OUT.md`` and ``OUT.png``."""
    if not render_only:
        for block in results["regimes"].values():
            block["verdict"] = verdicts(block["rows"], results["task"]["unseen"])
    write_results(f"{out}.json", results, markdown(results))
    plot(results, f"{out}.png")
