"""One KD recipe trained in fp32, bf16 and fp16: the recipes, the runs, the tolerance check, the table.

A Hinton-KD MLP student (64 hidden) of an MLP teacher (256 hidden, trained first in float32) on
the 8x8 digits, the same seed and data order in every precision. The mixed-precision runs must
end within a tolerance of the float32 run (accuracies and validation cross-entropy).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kdforge.config import from_dict
from kdforge.engine.run import run_experiment

PRECISIONS = ("no", "bf16", "fp16")
LABELS = {"no": "fp32", "bf16": "bf16", "fp16": "fp16"}
TABLE_KEYS = ("val_acc", "test_acc", "val_loss", "skipped_steps", "steps", "train_time_s")


def recipes(root: Path, quick: bool, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(teacher recipe, KD student recipe without precision) on the digits under ``root``."""
    data = {"name": "digits", "batch_size": 64, "eval_batch_size": 500, **({"subset": 300} if quick else {})}
    teacher = {
        "name": "teacher",
        "output_dir": str(root),
        "seed": seed,
        "data": data,
        "student": {"name": "mlp", "kwargs": {"hidden": [256]}},
        "method": {"name": "supervised"},
        "train": {"epochs": 1 if quick else 10, "lr": 0.003},
    }
    student = {
        **teacher,
        "name": "kd",
        "student": {"name": "mlp", "kwargs": {"hidden": [64]}},
        "teacher": {
            "name": "mlp",
            "kwargs": {"hidden": [256]},
            "checkpoint": str(root / "teacher" / "student.safetensors"),
        },
        "method": {"name": "kd", "kwargs": {"temperature": 4.0, "alpha": 0.5}},
        "train": {"epochs": 1 if quick else 10, "lr": 0.003},
    }
    return teacher, student


def run_precisions(teacher: dict[str, Any], student: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Train the teacher, then the student once per precision: precision -> summary + ``train_time_s``."""
    run_experiment(from_dict(teacher), progress=False)
    runs = {}
    for precision in PRECISIONS:
        rec = {
            **student,
            "name": f"kd_{precision}",
            "train": {**student["train"], "mixed_precision": precision},
        }
        t0 = time.perf_counter()
        summary = run_experiment(from_dict(rec), progress=False)
        runs[precision] = {**summary, "train_time_s": time.perf_counter() - t0}
    return runs


def compare(runs: dict[str, dict[str, Any]], acc_tol: float, loss_tol: float) -> list[str]:
    """Disagreements of the mixed-precision runs with the fp32 run (empty: all agree)."""
    ref, bad = runs["no"], []
    for precision in PRECISIONS[1:]:
        run = runs[precision]
        for key, tol in (("val_acc", acc_tol), ("test_acc", acc_tol), ("val_loss", loss_tol)):
            if not abs(run[key] - ref[key]) <= tol:
                bad.append(
                    f"{LABELS[precision]} {key} {run[key]:.4f} vs fp32 {ref[key]:.4f} (tolerance {tol})"
                )
    return bad


def table(runs: dict[str, dict[str, Any]]) -> str:
    """Markdown table, one column per precision (``runs`` keyed by precision or by its label)."""
    columns = [runs[p] if p in runs else runs[LABELS[p]] for p in PRECISIONS]
    rows = [
        "| metric | " + " | ".join(LABELS[p] for p in PRECISIONS) + " |",
        "|---|" + "---|" * len(PRECISIONS),
    ]
    for key in TABLE_KEYS:
        cells = [f"{run[key]:.4f}" if isinstance(run[key], float) else str(run[key]) for run in columns]
        rows.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def verdict_line(agree: bool, acc_tol: float, loss_tol: float) -> str:
    """``AGREE: ...`` or ``DISAGREE: ...`` with the tolerances."""
    tol = f"accuracy within {acc_tol}, validation loss within {loss_tol} of fp32"
    return f"{'AGREE' if agree else 'DISAGREE'}: {tol}"


def precision_results(runs: dict[str, dict[str, Any]], device: str, acc_tol: float, loss_tol: float) -> dict:
    """The results file's body (without provenance)."""
    bad = compare(runs, acc_tol, loss_tol)
    return {
        "device": device,
        "tolerance": {"acc": acc_tol, "val_loss": loss_tol},
        "agree": not bad,
        "disagreements": bad,
        "runs": {LABELS[p]: runs[p] for p in PRECISIONS},
    }


def precision_markdown(res: dict[str, Any]) -> str:
    """The results file's markdown, from a results dict alone."""
    tol = res["tolerance"]
    line = verdict_line(res["agree"], tol["acc"], tol["val_loss"])
    return f"# Mixed precision check ({res['device']})\n\n{table(res['runs'])}\n\n{line}\n"
