"""One KD recipe trained in fp32, bf16 and fp16: final metrics side by side, with a tolerance check.

A Hinton-KD MLP student (64 hidden) of an MLP teacher (256 hidden, trained first in
float32) on the 8x8 digits, the same seed and data order in every precision. The mixed
precision runs must end within the stated tolerance of the float32 run:

* validation and test accuracy within ``--acc-tol`` (default 0.02: 8 of 400 test images);
* validation cross-entropy within ``--loss-tol`` (default 0.01).

Mixed precision changes rounding from the first step on, so the runs are not identical.
On the CPU (seeds 0 and 1, when this was written) bf16 and fp16 ended within 0.0025 of
fp32's accuracy and 1e-4 of its loss, while fp32 runs with different seeds differ by 0.03
in validation accuracy: the tolerances sit between rounding noise and a real change.
Exit status: 0 agree, 1 disagree, 2 the requested device is missing.

Run: ``scripts/gpu_check.sh`` (CUDA; writes ``benchmarks/results/gpu_check.{json,md}``) or
``python benchmarks/precision_check.py --device cpu --quick`` (a smoke run of the same code).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from kdforge.config import from_dict
from kdforge.engine.run import run_experiment
from kdforge.report.provenance import provenance, write_results

PRECISIONS = ("no", "bf16", "fp16")
LABELS = {"no": "fp32", "bf16": "bf16", "fp16": "fp16"}


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
    """Markdown table: one column per precision."""
    rows = [
        "| metric | " + " | ".join(LABELS[p] for p in PRECISIONS) + " |",
        "|---|" + "---|" * len(PRECISIONS),
    ]
    for key in ("val_acc", "test_acc", "val_loss", "skipped_steps", "steps", "train_time_s"):
        cells = [
            f"{runs[p][key]:.4f}" if isinstance(runs[p][key], float) else str(runs[p][key])
            for p in PRECISIONS
        ]
        rows.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> int:
    """Parse arguments, train the teacher and the three students, print, check, write."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="300 examples, one epoch each (a smoke run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--acc-tol", type=float, default=0.02)
    parser.add_argument("--loss-tol", type=float, default=0.01)
    parser.add_argument("--out", type=Path, default=None, help="results JSON (+ .md beside it)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "error: no CUDA GPU is visible to torch\n  fix: run on a CUDA machine, or --device cpu",
            file=sys.stderr,
        )
        return 2
    if args.device == "cpu" and torch.cuda.is_available():
        print("error: a GPU is visible\n  fix: set CUDA_VISIBLE_DEVICES= for a CPU run", file=sys.stderr)
        return 2
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        teacher, student = recipes(Path(tmp), args.quick, args.seed)
        run_experiment(from_dict(teacher), progress=False)
        for precision in PRECISIONS:
            rec = {**student, "name": f"kd_{precision}"}
            rec["train"] = {**student["train"], "mixed_precision": precision}
            t0 = time.perf_counter()
            summary = run_experiment(from_dict(rec), progress=False)
            runs[precision] = {**summary, "train_time_s": time.perf_counter() - t0}
    text = table(runs)
    bad = compare(runs, args.acc_tol, args.loss_tol)
    verdict = "AGREE" if not bad else "DISAGREE"
    tol = f"accuracy within {args.acc_tol}, validation loss within {args.loss_tol} of fp32"
    print(text)
    print(f"\n{verdict}: {tol}" + "".join(f"\n  {b}" for b in bad))
    if args.out is not None:
        device = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
        results = {
            "device": device,
            "tolerance": {"acc": args.acc_tol, "val_loss": args.loss_tol},
            "agree": not bad,
            "disagreements": bad,
            "runs": {LABELS[p]: runs[p] for p in PRECISIONS},
            "provenance": provenance(student, [args.seed]),
        }
        write_results(
            args.out, results, f"# Mixed precision check ({device})\n\n{text}\n\n{verdict}: {tol}\n"
        )
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
