"""Image classification data sets: Fashion-MNIST (default), any IDX directory, 8x8 digits."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from kdforge.data._batches import TensorData
from kdforge.data.idx import load_idx_dir
from kdforge.errors import KdforgeError
from kdforge.registry import register_dataset

#: Where the Debian package ``dataset-fashion-mnist`` installs its files.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


@dataclass
class Splits:
    """Train / validation / test splits and what a model needs to know about them."""

    train: TensorData
    val: TensorData
    test: TensorData
    num_classes: int
    input_shape: tuple[int, ...]
    name: str = ""
    #: label names in id order (``class_names[i]`` is class ``i``), when the data name them;
    #: a run records them in ``labels.json`` so that predictions map back to labels
    class_names: list[str] | None = None


def split_train_val(
    x: torch.Tensor, y: torch.Tensor, val_size: int, seed: int, subset: int | None = None
) -> tuple[TensorData, TensorData]:
    """Carve a validation split from the training split with a fixed seed.

    The official test split is never touched here: it is for final numbers only.
    """
    n = len(x)
    if not 0 < val_size < n:
        raise KdforgeError(
            f"data.val_size={val_size} must be between 1 and {n - 1} for a train split of {n}",
            "choose a smaller data.val_size",
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(10_007 + seed))
    val_idx, train_idx = perm[:val_size], perm[val_size:]
    if subset is not None:
        train_idx = train_idx[:subset]
    return (
        TensorData({"x": x[train_idx], "y": y[train_idx]}),
        TensorData({"x": x[val_idx], "y": y[val_idx]}),
    )


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    # uint8 [N,H,W] -> float [N,1,H,W] in [0,1]; no further normalisation (as the references)
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)


def _from_idx(directory: str, name: str, val_size: int | None, seed: int, subset: int | None) -> Splits:
    raw = load_idx_dir(directory)
    xtr, ytr = _to_tensor(raw["train"][0]), torch.from_numpy(raw["train"][1])
    if val_size is None:  # 5,000 as for Fashion-MNIST, at most a tenth of a small directory
        val_size = max(1, min(5000, len(xtr) // 10))
    xte, yte = _to_tensor(raw["test"][0]), torch.from_numpy(raw["test"][1])
    train, val = split_train_val(xtr, ytr, val_size, seed, subset)
    num_classes = int(max(ytr.max(), yte.max())) + 1
    return Splits(train, val, TensorData({"x": xte, "y": yte}), num_classes, tuple(xtr.shape[1:]), name)


@register_dataset("fashion_mnist")
def fashion_mnist(
    data_dir: str | None = None, val_size: int = 5000, seed: int = 0, subset: int | None = None
) -> Splits:
    """Fashion-MNIST (Xiao et al. 2017): 60k train + 10k test 28x28 grey images, 10 classes.

    Installed by the Debian package ``dataset-fashion-mnist`` (``make data``), or
    read from ``data_dir`` / ``$KDFORGE_FASHION_MNIST``.
    """
    directory = data_dir or os.environ.get("KDFORGE_FASHION_MNIST", FASHION_MNIST_DIR)
    if not os.path.isdir(directory):
        raise KdforgeError(
            f"Fashion-MNIST is not installed ('{directory}' does not exist)",
            "run `make data` (apt-get install dataset-fashion-mnist, needs root) or pass "
            "data.data_dir=DIR with the four IDX files",
        )
    return _from_idx(directory, "fashion_mnist", val_size, seed, subset)


@register_dataset("idx")
def idx_dir(
    data_dir: str | None = None, val_size: int | None = None, seed: int = 0, subset: int | None = None
) -> Splits:
    """Any MNIST-format directory (MNIST, KMNIST, EMNIST, ...) given by ``data_dir``.

    ``val_size`` defaults to 5,000 images, or a tenth of the train split if that is smaller.
    """
    if data_dir is None:
        raise KdforgeError("dataset 'idx' needs a directory", "pass data.data_dir=DIR (or --data-dir)")
    return _from_idx(data_dir, f"idx:{data_dir}", val_size, seed, subset)


@register_dataset("digits")
def digits(
    data_dir: str | None = None,
    val_size: int = 300,
    seed: int = 0,
    subset: int | None = None,
    test_size: int = 400,
    test_seed: int = 1234,
) -> Splits:
    """scikit-learn's bundled 8x8 digits (1,797 images): for fast tests.

    Split 1,397 train / 400 test by default with a permutation drawn from ``test_seed`` (the
    same for every run seed); validation carved from train with the run seed.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    y = torch.from_numpy(d.target.astype(np.int64))
    if not 0 < test_size < len(x):
        raise KdforgeError(
            f"data.kwargs.test_size={test_size} must be between 1 and {len(x) - 1} "
            f"(digits has {len(x)} images)",
            "choose a smaller data.kwargs.test_size",
        )
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(test_seed))
    test_idx, train_idx = perm[:test_size], perm[test_size:]
    train, val = split_train_val(x[train_idx], y[train_idx], val_size, seed, subset)
    test = TensorData({"x": x[test_idx], "y": y[test_idx]})
    return Splits(train, val, test, 10, (1, 8, 8), "digits")


def shifted_images(
    x: torch.Tensor,
    seed: int = 0,
    max_degrees: float = 20.0,
    max_shift: float = 0.1,
    noise: float = 0.15,
) -> torch.Tensor:
    """A covariate-shifted copy of images ``[N, C, H, W]`` in [0, 1] (an unseen set, same labels).

    Each image is rotated by an angle uniform in ``±max_degrees``, translated by up to
    ``max_shift`` of its width/height (bilinear, zero fill), then Gaussian noise of standard
    deviation ``noise`` is added and the result clipped to [0, 1]. Deterministic given ``seed``.
    """
    g = torch.Generator().manual_seed(seed)
    n = len(x)
    angle = (torch.rand(n, generator=g) * 2 - 1) * max_degrees * torch.pi / 180
    shift = (torch.rand(n, 2, generator=g) * 2 - 1) * max_shift * 2  # affine_grid uses [-1, 1] coordinates
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    out = torch.nn.functional.grid_sample(
        x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    out = out + noise * torch.randn(out.shape, generator=g)
    return out.clamp(0.0, 1.0)
