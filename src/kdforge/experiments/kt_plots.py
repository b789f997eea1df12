"""Plots of the Knowledge Translation benchmarks (PNG, next to their results files)."""

from __future__ import annotations

import statistics as st
from pathlib import Path
from types import ModuleType


def _pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the file-only Agg backend (imported when a plot is drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _per_network(per_seed: list[list[float]]) -> list[float]:
    return [st.mean(v) for v in zip(*per_seed, strict=True)]


def table_plots(results: dict, rows: list[str], out: Path) -> None:
    """``<stem>_scatter.png`` (per test network: row vs trained) and ``<stem>_curves.png`` (seed 0)."""
    plt = _pyplot()
    stem = out.stem.replace("kt_table", "kt")
    table = results["rows"]
    trained = table["trained small block (upper bound)"]["per_seed"][0]
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    for name in ["random init", *rows]:
        ax.scatter(trained, _per_network(table[name]["per_seed"]), label=name, s=14)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(
        xlabel="directly trained small block acc",
        ylabel="translated acc (mean over translator seeds)",
        title=f"{len(trained)} held-out test networks",
    )
    ax.legend(fontsize=6)
    fig.savefig(out.with_name(f"{stem}_scatter.png"), dpi=100, bbox_inches="tight")
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, hs in results["curves"].items():
        axes[0].plot(hs[0]["epoch"], hs[0]["loss"], label=name)
        axes[1].plot(hs[0]["epoch"], hs[0]["val_acc"], label=name)
    axes[1].axhline(table["random init"]["mean"], color="grey", ls=":", label="random init (test)")
    axes[1].axhline(st.mean(trained), color="black", ls=":", label="trained small (test)")
    axes[0].set(xlabel="epoch", ylabel="training loss (seed 0)", yscale="log")
    axes[1].set(xlabel="epoch", ylabel="validation-network acc (seed 0)")
    axes[1].legend(fontsize=6)
    fig.savefig(out.with_name(f"{stem}_curves.png"), dpi=100, bbox_inches="tight")
    plt.close(fig)


def _families(points: list[dict]) -> dict[str, list[dict]]:
    """One series per configuration (everything but the number of training networks)."""
    families: dict[str, list[dict]] = {}
    for p in points:
        fam = p.get("label", "").split(", ", 1)[1] if ", " in p.get("label", "") else ""
        if not p.get("label"):
            fam = ", ".join(
                x for x, on in (("channels aligned", p.get("align")), ("dropout", p.get("dropout"))) if on
            )
        families.setdefault(f"{fam or 'plain'}, {p['epochs']} epochs", []).append(p)
    return families


def scaling_curve(results: dict, points: list[dict], out: Path) -> None:
    """``<stem>.png``: test accuracy vs training networks, one line per configuration."""
    plt = _pyplot()
    ref, marks = results["reference"], "o^Ds*vPX"
    t_mean, r_mean = st.mean(ref["trained"]), st.mean(v for s in ref["random"] for v in s)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    xs = sorted({p["n_train"] for p in points})
    for i, (fam, series) in enumerate(_families(points).items()):
        ax.errorbar(
            [p["n_train"] for p in series],
            [p["mean"] for p in series],
            yerr=[p["seed_std"] for p in series],
            marker=marks[i % len(marks)],
            capsize=3,
            label=f"{fam} (± seed std)",
        )
    if c := results.get("control"):
        label = f"{c['n_train']} networks, {c['epochs']} epochs (same-steps control)"
        ax.errorbar(
            [c["n_train"]], [c["mean"]], yerr=[c["seed_std"]], marker="s", ls="none", capsize=3, label=label
        )
    ax.axhline(t_mean, color="black", ls=":", label="trained small block")
    ax.axhline(0.9 * t_mean, color="black", ls="--", lw=0.8, label="0.9 x trained (target)")
    ax.axhline(st.mean(ref["template"]), color="tab:green", ls=":", label="template only")
    ax.axhline(r_mean, color="grey", ls=":", label="random init")
    ax.set(
        xlabel="training networks (full pairs + large-only)",
        ylabel=f"test acc ({ref['n_test']} networks)",
        xlim=(min(xs) * 0.9, max(xs) * 1.1),
        ylim=(0, 1),
    )
    ax.set_xscale("log")
    ax.set_xticks(xs, [str(x) for x in xs], rotation=60, fontsize=7)
    ax.minorticks_off()
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.savefig(out.with_suffix(".png"), dpi=100, bbox_inches="tight")
    plt.close(fig)


def scaling_scatter(points: list[dict], ref: dict, out: Path) -> None:
    """``<stem>_scatter.png``: per test network, translated (mean over seeds) vs trained accuracy of the
    point the largest validation set selects (best mean validation accuracy among points using it),
    beside its validation curves."""
    plt = _pyplot()
    cand = [p for p in points if p.get("best_val_acc")]
    if not cand:
        return
    n_val = max(p.get("n_val", ref["n_val"]) for p in cand)
    best = max(
        (p for p in cand if p.get("n_val", ref["n_val"]) == n_val), key=lambda p: st.mean(p["best_val_acc"])
    )
    fig, axes = plt.subplots(1, 2 if best.get("curves") else 1, figsize=(9.4, 4.4), squeeze=False)
    ax = axes[0, 0]
    ax.scatter(ref["trained"], _per_network(best["per_seed"]), s=14, label="translated (mean of seeds)")
    if best.get("fresh_test") and "fresh_test" in ref:  # same translators, fresh test networks
        fresh = _per_network(best["fresh_test"]["per_seed"])
        ax.scatter(
            ref["fresh_test"]["trained"], fresh, s=8, alpha=0.6, label="translated, fresh test networks"
        )
    rnd = _per_network(ref["random"])
    ax.scatter(ref["trained"], rnd, s=10, marker="x", color="grey", label="random init")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8, label="= trained")
    ax.plot([0, 1], [0, 0.9], "k--", lw=0.6, label="0.9 x trained")
    ax.set(
        xlabel="trained small block (test acc)",
        ylabel="small block between own begin/last",
        xlim=(0, 1),
        ylim=(0, 1),
        title=f"{best['label'] if best.get('label') else best['n_train']}",
    )
    ax.title.set_fontsize(7)
    ax.legend(fontsize=7)
    if best.get("curves"):
        ax2 = axes[0, 1]
        for i, c in enumerate(best["curves"]):
            ax2.plot(c["epoch"], c["val_acc"], marker=".", label=f"seed {i}: validation-network acc")
            ax2.plot(c["epoch"], c["loss"], ls="--", color=ax2.lines[-1].get_color(), lw=0.8)
        ax2.set(xlabel="translator epoch", ylabel="val acc (solid) / training loss (dashed)")
        ax2.legend(fontsize=7)
    fig.savefig(out.with_name(out.stem + "_scatter.png"), dpi=100, bbox_inches="tight")
    plt.close(fig)
