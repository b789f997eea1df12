"""Selection on validation: the grid point with the best mean validation metric over seeds.

The test split is never consulted: a metric named ``test_*`` is refused, and the choice
depends only on the chosen validation metric, so changing any test value cannot change it.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from kdforge.errors import KdforgeError


def _canonical(overrides: dict[str, Any]) -> str:
    return json.dumps(overrides, sort_keys=True, default=str)


def _group_value(summary: dict[str, Any], key: str) -> Any:
    if key in summary:
        return summary[key]
    if key in summary.get("overrides", {}):
        return summary["overrides"][key]
    raise KdforgeError(
        f"group key '{key}' is neither a summary field nor a grid key of run '{summary.get('name')}'",
        f"group by one of: {', '.join(sorted(set(summary) | set(summary.get('overrides', {}))))}",
    )


def select_best(
    summaries: Sequence[dict[str, Any]],
    metric: str = "val_acc",
    group_by: Sequence[str] = (),
    higher_is_better: bool | None = None,
    require_same_seeds: bool = True,
) -> dict[tuple, dict[str, Any]]:
    """Per group, the grid point with the best mean of ``metric`` over seeds.

    Args:
        summaries: Run summaries with ``"overrides"`` (the grid point) and ``"seed"``, as
            returned by :func:`kdforge.experiments.run_sweep`.
        metric: A validation metric of the summaries (``val_acc``, ``val_loss`` ...).
        group_by: Summary fields (or grid keys) whose values form independent groups, e.g.
            ``("method",)``: each group gets its own best grid point. Empty: one group.
        higher_is_better: Direction of ``metric``; ``None`` means lower is better for names
            ending in ``loss`` and higher otherwise.
        require_same_seeds: Refuse to compare grid points of a group run on different seed
            sets (a mean over one lucky seed would beat a mean over three).

    Returns:
        ``{group: selection}`` with ``group`` the tuple of the ``group_by`` values (``()``
        without grouping) and ``selection`` a dict: ``overrides`` (the chosen grid point),
        ``mean`` and ``std`` of the metric (sample std; 0.0 for one seed), ``seeds``,
        ``values`` (per seed, in seed order), ``summaries`` (the chosen point's runs, in seed
        order) and ``candidates`` (every grid point's ``overrides``/``mean``/``std``/``n``,
        best first). Ties in the mean are broken by the lower std, then by the grid point's
        canonical JSON, so the result does not depend on the order of ``summaries``.

    Raises:
        KdforgeError: for a ``test_*`` metric, a summary without the metric, no summaries, or
            (with ``require_same_seeds``) grid points run on different seeds.
    """
    if metric.startswith("test"):
        raise KdforgeError(
            f"selection on '{metric}' would choose on the test split",
            "select on a validation metric (val_acc, val_loss) and only report test",
        )
    if not summaries:
        raise KdforgeError("no run summaries to select from", "run the sweep first (run_sweep)")
    if higher_is_better is None:
        higher_is_better = not metric.endswith("loss")
    points: dict[tuple, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for s in summaries:
        if metric not in s or s[metric] is None:
            raise KdforgeError(
                f"run '{s.get('name')}' has no '{metric}'",
                f"select on a metric every summary has: {', '.join(k for k in s if k.startswith('val'))}",
            )
        group = tuple(_group_value(s, k) for k in group_by)
        points[group][_canonical(s.get("overrides", {}))].append(s)
    out = {}
    for group, by_point in points.items():
        seed_sets = {key: sorted(r["seed"] for r in runs) for key, runs in by_point.items()}
        if require_same_seeds and len({tuple(v) for v in seed_sets.values()}) > 1:
            raise KdforgeError(
                f"grid points of group {group} were run on different seeds: "
                + "; ".join(f"{k} -> {v}" for k, v in seed_sets.items()),
                "finish the sweep so every grid point has the same seeds, or pass require_same_seeds=False",
            )
        candidates = []
        for key, runs in by_point.items():
            runs = sorted(runs, key=lambda r: r["seed"])
            values = [float(r[metric]) for r in runs]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            candidates.append(
                {
                    "overrides": dict(runs[0].get("overrides", {})),
                    "mean": statistics.fmean(values),
                    "std": std,
                    "n": len(values),
                    "_key": key,
                    "_runs": runs,
                    "_values": values,
                }
            )
        candidates = rank_candidates(candidates, higher_is_better)
        best = candidates[0]
        out[group] = {
            "overrides": best["overrides"],
            "mean": best["mean"],
            "std": best["std"],
            "seeds": [r["seed"] for r in best["_runs"]],
            "values": best["_values"],
            "summaries": best["_runs"],
            "candidates": [{k: c[k] for k in ("overrides", "mean", "std", "n")} for c in candidates],
        }
    return out


def rank_candidates(
    candidates: Sequence[dict[str, Any]], higher_is_better: bool = True
) -> list[dict[str, Any]]:
    """Grid points best first, by the rule of :func:`select_best`: mean, then the lower std, then
    the grid point's canonical JSON.

    Args:
        candidates: Dicts with ``overrides`` (the grid point), ``mean`` and ``std`` of a
            validation metric over seeds, e.g. a tuned row's per-value means re-ranked on a
            sub-grid without its runs.
        higher_is_better: Direction of the metric.
    """
    sign = -1.0 if higher_is_better else 1.0
    return sorted(candidates, key=lambda c: (sign * c["mean"], c["std"], _canonical(c["overrides"])))
