"""The grid one EAsT / EC pair runs over, and the line that reports its lambda choice."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EastGrid:
    """What :func:`kdforge.experiments.east_protocol.run_protocol` runs for one pair.

    Attributes:
        seeds: Seeds of every table row.
        ds: Compressed dimensions of the EC rows.
        d_select: EC's d while lambda is chosen.
        lams: Lambda values chosen from, per variant, on validation.
        select_seeds: Seeds whose mean validation accuracy chooses lambda (``None``: ``seeds``).
        every_run: Overrides for every run (e.g. ``data.subset=75``).
        teacher_runs: Overrides for the EAsT/EC runs only.
    """

    seeds: list[int]
    ds: list[int]
    d_select: int
    lams: list[float]
    select_seeds: list[int] | None = None
    every_run: list[str] = field(default_factory=list)
    teacher_runs: list[str] = field(default_factory=list)


def lambda_grid_text(val_grid: dict[str, dict[str, float]]) -> str:
    """``variant: λ=0.3 81.20, λ=0.7 80.10; ...`` (validation accuracy per lambda, in percent)."""
    return "; ".join(
        f"{k}: " + ", ".join(f"λ={lam} {acc:.2f}" for lam, acc in g.items()) for k, g in val_grid.items()
    )
