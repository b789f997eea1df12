"""Training-curve plots (PNG) from runs' ``metrics.jsonl``."""

from __future__ import annotations

from pathlib import Path

from kdforge.engine.logger import read_metrics


def plot_curves(run_dirs: list[str | Path], out: str | Path) -> Path:
    """Plot training loss and validation accuracy against step for each run; write a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for rd in run_dirs:
        rows = read_metrics(rd)
        label = Path(rd).name
        tr = [r for r in rows if "loss" in r]
        ev = [r for r in rows if "val_acc" in r]
        ax_loss.plot([r["step"] for r in tr], [r["loss"] for r in tr], label=label)
        ax_acc.plot([r["step"] for r in ev], [r["val_acc"] for r in ev], marker="o", label=label)
    ax_loss.set(xlabel="step", ylabel="training loss (sum of terms)", title="training loss")
    ax_acc.set(xlabel="step", ylabel="validation accuracy", title="validation accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
