"""MPO speed benchmark: the markdown tables, from the results dict alone.

The results come from :mod:`kdforge.experiments.mpo_speed`: decomposition times (ours vs
tensorly), one MPO layer's training step over the dense layer's per forward mode, and the vision
and NLP students' step and collapsed-latency ratios.
"""

from __future__ import annotations

import statistics
from typing import Any

from kdforge.report.tables import markdown_table


def mpo_speed_markdown(res: dict[str, Any]) -> str:
    """The results as markdown tables, from a results dict alone."""
    nan = float("nan")
    lines = ["# MPO speed", "", "## Decomposition (untruncated, n=5, float32, 1 thread)", ""]
    decomposition = [
        [
            f"{r['shape'][0]}x{r['shape'][1]}",
            f"{r['row_factors']} / {r['col_factors']}",
            f"{r['ours_s']:.3f}",
            f"{r.get('tensorly_s', nan):.3f}",
            f"{r.get('tensorly_over_ours', nan):.2f}",
            f"{r['ours_rel_err']:.1e}",
        ]
        for r in res["decomposition"]
    ]
    headers = [
        "shape",
        "factors (rows / cols)",
        "ours (s)",
        "tensorly (s)",
        "tensorly / ours",
        "rel. err ours",
    ]
    lines += [markdown_table(headers, decomposition)]
    lines += ["", "## Training step (fwd+bwd+SGD) of one MPO layer / dense layer (target <= 1.5x)", ""]

    def times(v: float | None) -> str:
        return "skipped" if v is None else f"{v:.2f}x"

    steps = [
        [
            f"{r['shape'][0]}x{r['shape'][1]}",
            r["batch_rows"],
            f"{r['mpo_params'] / r['dense_params']:.2f}",
            times(r["contract_ratio"]),
            times(r.get("sequential_ratio")),
            f"{times(r['auto_ratio'])} ({r['auto_picks']})",
        ]
        for r in res["train_step"]
    ]
    headers = ["shape", "rows", "MPO / dense params", "contract", "sequential", "auto (picks)"]
    lines += [markdown_table(headers, steps)]
    s = res["student"]
    lines += [
        "",
        f"## Vision student: {s['model']}",
        "",
        f"- parameters: plain {s['plain_params']:,}, training {s['train_time_params']:,}, "
        f"collapsed {s['collapsed_params']:,}",
        f"- training step ratio MPO / plain (interleaved, fastest of each): {s['train_step_ratio']:.2f}x; "
        f"pairs min / median / max {s['pair_ratios'][0]:.2f} / {statistics.median(s['pair_ratios']):.2f} / "
        f"{s['pair_ratios'][-1]:.2f}; floor (contraction / dense multiply-adds of the MPO layer) "
        f"+{s['contraction_macs_over_linear']:.2f}",
        f"- inference latency collapsed / plain: {s['latency_ratio_collapsed_vs_plain']:.3f} "
        f"(plain {s['latency_plain_ms']:.3f} ms per batch of 256)",
    ]
    if res.get("bert_student"):
        lines += ["", *_bert_section(res["bert_student"], res["provenance"]["machine"]["cpu_count"])]
    return "\n".join(lines)


def _bert_section(bert: list[dict], cpu_count: int) -> list[str]:
    b0 = bert[0]
    rows = [
        [
            f"{b['batch']}x{b['seq']}",
            f"{b['plain_step_s']:.2f}",
            f"{b['mpo_step_s']:.2f}",
            f"{b['train_step_ratio']:.2f}x",
            f"{b['pair_ratios'][0]:.2f} / {b['median_pair_ratio']:.2f} / {b['pair_ratios'][-1]:.2f}",
            b["verdict"],
            f"+{b['contraction_macs_over_linear']:.2f}",
            f"{b['latency_ratio_collapsed_vs_plain']:.3f}",
        ]
        for b in bert
    ]
    headers = [
        "batch x tokens",
        "plain step (s)",
        "MPO step (s)",
        "step ratio, fastest",
        "pairs min / median / max",
        "verdict",
        "floor",
        "latency collapsed / plain",
    ]
    return [
        f"## NLP student: {b0['model']}",
        "",
        f"Parameters: plain {b0['plain_params']:,} ({b0['plain_trainable']:,} trainable), training "
        f"{b0['train_time_trainable']:,} trainable, collapsed {b0['collapsed_params']:,}. "
        "Cross-entropy + AdamW step; plain and MPO steps alternate, fastest of each counts "
        f"(load average at the end: {b0['load_average'][0]:.1f} on {cpu_count} cores).",
        "",
        f"Target: MPO step <= {b0['target']}x plain; verdict over the interleaved pairs' ratios (met: all "
        "clear it; not distinguishable: they straddle it). Floor: multiply-adds of contracting the "
        "cores over those of the same layers' dense matmuls (fwd+bwd), the least extra work of an "
        "exact MPO step.",
        "",
        markdown_table(headers, rows),
    ]
