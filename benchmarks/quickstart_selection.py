"""Validation-only selection of the quickstart's student learning rate and KD settings.

Trains the MLP student (hidden 32) alone and with Hinton KD from an already trained quickstart
teacher, 3 epochs on Fashion-MNIST, seed 0, and prints each run's *validation* accuracy (the test
split is never looked at here). The quickstart uses the best validation settings.

Run: ``python benchmarks/quickstart_selection.py --teacher runs/quickstart/teacher/student.safetensors``
"""

from __future__ import annotations

import argparse
import tempfile

from kdforge.config import from_dict
from kdforge.engine.run import run_experiment

GRID = [
    ("alone", 0.006, None),
    ("kd", 0.006, (4.0, 0.9)),
    ("kd", 0.006, (4.0, 0.5)),
    ("kd", 0.006, (2.0, 0.5)),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", required=True, help="exported quickstart teacher (student.safetensors)")
    args = ap.parse_args()
    teacher = {
        "name": "cnn",
        "kwargs": {"channels": [32, 64], "fc": 128, "global_pool": False},
        "checkpoint": args.teacher,
    }
    with tempfile.TemporaryDirectory() as tmp:
        for i, (kind, lr, kd) in enumerate(GRID):
            rec = {
                "name": f"s{i}",
                "output_dir": tmp,
                "data": {"name": "fashion_mnist", "batch_size": 128},
                "student": {"name": "mlp", "kwargs": {"hidden": [32]}},
                "train": {"epochs": 3, "lr": lr},
            }
            if kind == "alone":
                rec["method"] = {"name": "supervised"}
            else:
                rec["method"] = {"name": "kd", "kwargs": {"temperature": kd[0], "alpha": kd[1]}}
                rec["teacher"] = teacher
            s = run_experiment(from_dict(rec), progress=False)
            print(kind, lr, kd, "val", s["val_acc"], flush=True)


if __name__ == "__main__":
    main()
