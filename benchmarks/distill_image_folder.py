"""`kdforge distill` on an image-folder export of Fashion-MNIST, as a user would run it (3 seeds).

1. Export PER_CLASS training and TEST_PER_CLASS test images per class as PNGs, one subfolder per
   class (train/<class>/, test/<class>/); validation is carved from train/ by `distill`.
2. Train a CNN teacher on the folder with `kdforge run`, then `kdforge distill` (CLI) an MLP
   student from it: student alone vs Hinton KD, each tuned on validation over the same grid.
3. Write benchmarks/results/distill_image_folder.{json,md,png}: the compression report plus the
   KD gain over the tuned student alone (paired by seed, bootstrap interval, verdict at +1 point).

Run: python benchmarks/distill_image_folder.py   (re-running skips finished runs)
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from kdforge.experiments.distill_results import write_results  # noqa: E402

FMNIST = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["tshirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
PER_CLASS, TEST_PER_CLASS = 400, 200  # 4,000 training PNGs (val carved from them), 2,000 test PNGs
WORK = Path("runs/bench_distill_image_folder")
SEEDS = [0, 1, 2]
TEACHER = f"""name: teacher
output_dir: {WORK.resolve()}
data: {{name: image_folder, data_dir: {(WORK / "images").resolve()}}}
student: {{name: cnn, kwargs: {{channels: [32, 64], fc: 128, global_pool: false}}}}
train: {{epochs: 20, lr: 0.003}}
"""
DISTILL = [
    *("--teacher", str(WORK / "teacher/student.safetensors"), "--data", "image_folder"),
    *("--data-dir", str(WORK / "images"), "--student-option", "hidden=[32]"),
    *[a for s in SEEDS for a in ("--seed", str(s))],
    *("--steps", "600", "--output-dir", str(WORK / "distill"), "--no-progress"),
]


def read_idx(name: str) -> np.ndarray:
    with gzip.open(FMNIST / name) as f:
        data = f.read()
    offset = 16 if "images" in name else 8
    array = np.frombuffer(data, np.uint8, offset=offset)
    return array.reshape(-1, 28, 28) if "images" in name else array


def export(split: str, prefix: str, per_class: int) -> None:
    images, labels = read_idx(f"{prefix}-images-idx3-ubyte.gz"), read_idx(f"{prefix}-labels-idx1-ubyte.gz")
    for c, name in enumerate(CLASSES):
        folder = WORK / "images" / split / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in np.flatnonzero(labels == c)[:per_class]:  # the first per_class of each class
            Image.fromarray(images[i]).save(folder / f"{i}.png")


def kdforge(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "kdforge.cli", *args], check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    if not (WORK / "images/test").is_dir():
        shutil.rmtree(WORK / "images", ignore_errors=True)
        export("train", "train", PER_CLASS)
        export("test", "t10k", TEST_PER_CLASS)
    if not (WORK / "teacher/summary.json").is_file():
        (WORK / "teacher.yaml").write_text(TEACHER)
        kdforge("run", str(WORK / "teacher.yaml"), "--no-progress")
    kdforge("distill", *DISTILL)
    write_results(
        "distill_image_folder",
        WORK / "distill",
        results_dir=Path(__file__).parent / "results",
        command=f"python benchmarks/distill_image_folder.py  (runs: kdforge distill {' '.join(DISTILL)})",
        data={
            "source": "Fashion-MNIST (Debian dataset-fashion-mnist) exported as PNG folders",
            "train_png": PER_CLASS * len(CLASSES),
            "test_png": TEST_PER_CLASS * len(CLASSES),
            "selection": "first images of each class in the IDX order; val carved from train/ per seed",
        },
        teacher_recipe=TEACHER,
    )


if __name__ == "__main__":
    main()
