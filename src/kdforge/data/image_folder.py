"""Your own images: one subfolder per class (``image_folder``), read with Pillow.

Layout, either unsplit (test and validation are carved out, stratified and seeded)::

    ROOT/cat/001.png  ROOT/cat/002.jpg  ...  ROOT/dog/001.png ...

or with the user's own splits (``train/`` required, a missing ``val/`` or ``test/`` is
carved out of ``train/``)::

    ROOT/train/cat/*.png  ROOT/val/cat/*.png  ROOT/test/cat/*.png ...

Class ids follow the sorted class-folder names of the training split (numerically when
every name is an integer); a run records them in ``labels.json``. Images are converted
to grayscale or RGB, optionally resized, scaled to [0, 1] and then standardised per
channel with the mean and standard deviation of the *training split only* (or with
given statistics, e.g. those a pre-trained teacher expects).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from kdforge.data._holdout import Part, assemble_splits
from kdforge.data.vision import Splits
from kdforge.errors import KdforgeError
from kdforge.registry import register_dataset

#: File suffixes read as images (case-insensitive); other files in class folders are ignored.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
#: Folder names recognised as a given split (first-level subfolders of the root).
SPLIT_FOLDERS = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation", "dev"),
    "test": ("test", "testing"),
}
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def class_folders(folder: Path) -> dict[str, list[Path]]:
    """``{class name: sorted image files}`` for the class subfolders of ``folder``.

    Raises:
        KdforgeError: no class subfolders, or a class folder without images.
    """
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subdirs:
        raise KdforgeError(
            f"'{folder}' has no class subfolders",
            "put the images of each class in their own subfolder: ROOT/<class>/<image>.png",
        )
    found = {}
    for sub in subdirs:
        files = sorted(
            p
            for p in sub.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
        if not files:
            raise KdforgeError(
                f"class folder '{sub}' is empty (no {', '.join(IMAGE_SUFFIXES)} files)",
                "add images to it or remove the folder",
            )
        found[sub.name] = files
    return found


def as_gray_or_rgb(img):
    """A decoded PIL image converted to ``L`` when its mode is grayscale, else to ``RGB``."""
    return img.convert("L" if img.mode in _GRAY_MODES else "RGB")


def read_image(path: Path):
    """Open and decode one image with Pillow, converted to ``L`` (grayscale) or ``RGB``.

    Raises:
        KdforgeError: the file cannot be decoded (named).
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            return as_gray_or_rgb(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise KdforgeError(
            f"cannot read image '{path}': {e}", "replace or delete the file (or re-save it as PNG)"
        ) from None


def _size(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(hw) != 2 or not all(isinstance(v, int) and v > 0 for v in hw):
        raise KdforgeError(
            f"data.kwargs.size={size!r} is not a positive size", "give one int (square) or [height, width]"
        )
    return hw  # type: ignore[return-value]


def images_to_uint8(images: Sequence, names: Sequence[str], size, channels: int | None) -> torch.Tensor:
    """Stack PIL images into ``uint8 [N, C, H, W]``, converted to ``channels`` and resized to ``size``.

    Args:
        images: PIL images in mode ``L`` or ``RGB``.
        names: one name per image (file path), used in errors.
        size: ``(height, width)``; ``None``: every image must already have the same size.
        channels: 1 (grayscale) or 3 (RGB); ``None``: 1 when every image is grayscale, else 3.

    Raises:
        KdforgeError: bad ``channels``, or images of different sizes without ``size``.
    """
    from PIL import Image

    if channels is None:
        channels = 1 if all(img.mode == "L" for img in images) else 3
    if channels not in (1, 3):
        raise KdforgeError(f"data.kwargs.channels={channels!r}", "use 1 (grayscale) or 3 (RGB)")
    hw = _size(size)
    arrays = []
    for img, name in zip(images, names, strict=True):
        img = img.convert("L" if channels == 1 else "RGB")
        if hw is not None and img.size != (hw[1], hw[0]):
            img = img.resize((hw[1], hw[0]), Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
        if arrays and arr.shape != arrays[0].shape:
            raise KdforgeError(
                f"images differ in size: '{names[0]}' is {arrays[0].shape[1]}x{arrays[0].shape[0]}, "
                f"'{name}' is {arr.shape[1]}x{arr.shape[0]} (width x height)",
                "set data.kwargs.size=[height, width] (or one int) to resize every image",
            )
        arrays.append(arr)
    stacked = np.stack(arrays)
    stacked = stacked[:, None] if channels == 1 else stacked.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(stacked))


def scale_and_normalise(
    splits: Splits, normalize: bool, mean: Sequence[float] | None, std: Sequence[float] | None
) -> Splits:
    """Scale uint8 images to [0, 1]; standardise with ``mean``/``std`` or the training split's statistics.

    The statistics are per channel over every pixel of the training split only, so nothing
    of the validation or test images leaks into training.

    Raises:
        KdforgeError: ``mean``/``std`` of the wrong length, a zero ``std``, or given without
            ``normalize``.
    """
    for data in (splits.train, splits.val, splits.test):
        data.tensors["x"] = data.tensors["x"].float() / 255.0
    channels = splits.input_shape[0]
    if not normalize:
        if mean is not None or std is not None:
            raise KdforgeError(
                "data.kwargs.mean/std are given but data.kwargs.normalize is false",
                "drop mean/std or set normalize: true",
            )
        return splits
    x = splits.train.tensors["x"]
    mean_t = torch.tensor(mean, dtype=torch.float32) if mean is not None else x.mean(dim=(0, 2, 3))
    std_t = torch.tensor(std, dtype=torch.float32) if std is not None else x.std(dim=(0, 2, 3))
    for key, value in (("mean", mean_t), ("std", std_t)):
        if value.shape != (channels,):
            raise KdforgeError(
                f"data.kwargs.{key} has {value.numel()} values for {channels}-channel images",
                f"give one {key} per channel",
            )
    if mean is None and std is None:  # a constant channel: centre it, leave its scale
        std_t = torch.where(std_t > 1e-6, std_t, torch.ones_like(std_t))
    elif bool((std_t <= 0).any()):
        raise KdforgeError(f"data.kwargs.std={list(std or [])} has a value <= 0", "give positive std values")
    for data in (splits.train, splits.val, splits.test):
        data.tensors["x"] = (data.tensors["x"] - mean_t[:, None, None]) / std_t[:, None, None]
    return splits


def _read_part(folder: Path, root: Path) -> tuple[list, list[str], list[str]]:
    images, labels, sources = [], [], []
    for label, files in class_folders(folder).items():
        for path in files:
            images.append(read_image(path))
            labels.append(label)
            sources.append(str(path.relative_to(root)))
    return images, labels, sources


def _given_splits(root: Path) -> dict[str, Path]:
    found = {}
    for split, names in SPLIT_FOLDERS.items():
        dirs = [root / n for n in names if (root / n).is_dir()]
        if len(dirs) > 1:
            raise KdforgeError(
                f"'{root}' has two folders for the {split} split: {', '.join(d.name for d in dirs)}",
                "keep one of them",
            )
        if dirs:
            found[split] = dirs[0]
    if found and "train" not in found:
        raise KdforgeError(
            f"'{root}' has {', '.join(d.name + '/' for d in found.values())} but no train/ folder",
            "add ROOT/train/<class>/..., or put the class folders directly under ROOT",
        )
    return found


@register_dataset("image_folder")
def image_folder(
    root: str | None = None,
    data_dir: str | None = None,
    size: int | list[int] | None = None,
    channels: int | None = None,
    normalize: bool = True,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    classes: list[str] | None = None,
    val_size: int | float | None = None,
    test_size: int | float = 0.2,
    test_seed: int = 0,
    seed: int = 0,
    subset: int | None = None,
) -> Splits:
    """Your own images, one subfolder per class (optional train/ val/ test/ folders); Pillow formats.

    Args:
        root: the folder (``data_dir`` / ``--data-dir`` is used when ``root`` is unset).
        size: resize every image to ``[height, width]`` (one int: square); ``None``: all
            images must share one size.
        channels: 1 (grayscale) or 3 (RGB); ``None``: 1 if every image is grayscale.
        normalize: standardise per channel (statistics of the training split unless
            ``mean``/``std`` are given); ``False``: pixels in [0, 1].
        mean, std: fixed per-channel statistics, e.g. the ones a pre-trained teacher expects.
        classes: class names in id order (e.g. the order of a teacher's head); ``None``:
            the sorted training class folders.
        val_size, test_size: rows (int) or fraction (float) carved from training when the
            folder gives no val/ or test/ split; ``val_size=None`` means a tenth.
        test_seed: draws the carved test split (the same for every run seed).
        seed: the run seed; draws the carved validation split.
        subset: keep only this many training images.
    """
    folder = root or data_dir
    if folder is None:
        raise KdforgeError(
            "dataset 'image_folder' needs a folder", "set data.kwargs.root=DIR (or pass --data-dir DIR)"
        )
    base = Path(folder).expanduser()
    if not base.is_dir():
        raise KdforgeError(f"image folder '{base}' does not exist", "fix data.kwargs.root")
    read = {split: _read_part(path, base) for split, path in _given_splits(base).items()}
    if not read:
        read = {"train": _read_part(base, base)}
    names = [s for _, _, sources in read.values() for s in sources]
    images = [img for imgs, _, _ in read.values() for img in imgs]
    x = images_to_uint8(images, names, size, channels)
    parts, start = {}, 0
    for split, (imgs, labels, sources) in read.items():
        parts[split] = Part({"x": x[start : start + len(imgs)]}, labels, sources)
        start += len(imgs)
    splits = assemble_splits(
        parts,
        name=f"image_folder:{base}",
        input_shape=tuple(x.shape[1:]),
        classes=classes,
        val_size=val_size,
        test_size=test_size,
        seed=seed,
        test_seed=test_seed,
        subset=subset,
    )
    return scale_and_normalise(splits, normalize, mean, std)
