"""Reader for MNIST-format IDX files (raw or gzip), with validation.

Format (LeCun et al.): 4-byte magic ``0x00 0x00 <dtype> <ndim>``, then ``ndim``
big-endian uint32 sizes, then the data. Used by MNIST, Fashion-MNIST, KMNIST,
EMNIST.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from kdforge.errors import KdforgeError

_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

#: The four files of an MNIST-format directory: split -> (images, labels) basenames.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (``.gz`` or raw) into a numpy array.

    Raises:
        KdforgeError: on a wrong magic number, an unknown dtype code, or a file
            whose length does not match its header (truncated or padded).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as e:
        raise KdforgeError(
            f"cannot read IDX file '{path}': {e}", "re-install or re-download the data set"
        ) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise KdforgeError(
            f"'{path}' is not an IDX file (bad magic number {raw[:4].hex() or 'empty'})",
            "point --data-dir at a directory of MNIST-format IDX files",
        )
    dtype, ndim = _DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise KdforgeError(f"IDX file '{path}' is truncated inside its header", "re-install the data")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise KdforgeError(
            f"IDX file '{path}' has {len(raw)} bytes but its header {shape} needs {expected} "
            "(truncated or corrupt)",
            "re-install or re-download the data set",
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(directory: Path, base: str) -> Path | None:
    for name in (
        base,
        base + ".gz",
        base.replace("-idx", ".idx"),
        base.replace("-idx", ".idx") + ".gz",
    ):
        if (directory / name).is_file():
            return directory / name
    return None


def load_idx_dir(directory: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Load the train and test splits of an MNIST-format directory.

    Returns:
        ``{"train": (images uint8 [N,H,W], labels int64 [N]), "test": (...)}``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise KdforgeError(
            f"data directory '{directory}' does not exist",
            "install the data (`make data` installs Fashion-MNIST) or pass --data-dir / "
            "data.data_dir=DIR pointing at the four MNIST-format IDX files",
        )
    out = {}
    for split, (img_base, lab_base) in IDX_FILES.items():
        paths = [_find(directory, b) for b in (img_base, lab_base)]
        missing = [b for b, p in zip((img_base, lab_base), paths, strict=True) if p is None]
        if missing:
            raise KdforgeError(
                f"data directory '{directory}' lacks {', '.join(missing)} (.gz or raw)",
                "an MNIST-format directory needs train/t10k images and labels IDX files",
            )
        images, labels = read_idx(paths[0]), read_idx(paths[1])
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise KdforgeError(
                f"{split} split in '{directory}': images {images.shape} and labels {labels.shape} "
                "do not match",
                "the images file must be [N,H,W] and the labels file [N]",
            )
        out[split] = (images.astype(np.uint8), labels.astype(np.int64))
    return out
