import gzip
import os

import numpy as np
import pytest

from kdforge.data import load_dataset
from kdforge.data.idx import load_idx_dir, read_idx
from kdforge.data.vision import FASHION_MNIST_DIR
from kdforge.errors import KdforgeError


def write_idx(path, arr, gz=False):
    codes = {np.uint8: 0x08, np.int32: 0x0C, np.float32: 0x0D}
    arr = np.asarray(arr)
    header = bytes([0, 0, codes[arr.dtype.type], arr.ndim]) + b"".join(
        int(s).to_bytes(4, "big") for s in arr.shape
    )
    body = arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    data = header + body
    path.write_bytes(gzip.compress(data) if gz else data)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_roundtrip(tmp_path, gz, dtype):
    arr = (np.arange(2 * 3 * 4) * 7 % 251).reshape(2, 3, 4).astype(dtype)
    write_idx(tmp_path / "a", arr, gz)
    out = read_idx(tmp_path / "a")
    assert out.shape == arr.shape and np.array_equal(out, arr)


def test_bad_magic(tmp_path):
    (tmp_path / "x").write_bytes(b"\x12\x34\x08\x01" + b"\0" * 8)
    with pytest.raises(KdforgeError, match="bad magic number 12340801"):
        read_idx(tmp_path / "x")


def test_truncated(tmp_path):
    write_idx(tmp_path / "a", np.zeros((5, 4, 4), np.uint8))
    raw = (tmp_path / "a").read_bytes()
    (tmp_path / "a").write_bytes(raw[:-3])
    with pytest.raises(KdforgeError, match="truncated or corrupt"):
        read_idx(tmp_path / "a")
    (tmp_path / "g").write_bytes(gzip.compress(raw)[:-10])  # broken gzip stream
    with pytest.raises(KdforgeError, match="cannot read IDX"):
        read_idx(tmp_path / "g")


def make_idx_dir(d, n_train=40, n_test=10, size=6):
    rng = np.random.default_rng(0)
    d.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(
            d / f"{prefix}-images-idx3-ubyte", rng.integers(0, 255, (n, size, size), dtype=np.uint8), gz=True
        )
        write_idx(d / f"{prefix}-labels-idx1-ubyte", (np.arange(n) % 3).astype(np.uint8))
    return d


def test_idx_dir_dataset(tmp_path):
    d = make_idx_dir(tmp_path / "set")
    s = load_dataset("idx", data_dir=str(d), val_size=8, seed=1)
    assert (len(s.train), len(s.val), len(s.test)) == (32, 8, 10)
    assert s.num_classes == 3 and s.input_shape == (1, 6, 6)
    assert float(s.train.tensors["x"].max()) <= 1.0
    # validation split is a fixed function of the seed
    s2 = load_dataset("idx", data_dir=str(d), val_size=8, seed=1)
    assert s.val.tensors["x"].equal(s2.val.tensors["x"])


def test_missing_files_and_dir(tmp_path):
    d = make_idx_dir(tmp_path / "set")
    os.remove(d / "t10k-labels-idx1-ubyte")
    with pytest.raises(KdforgeError, match="lacks t10k-labels-idx1-ubyte"):
        load_idx_dir(d)
    with pytest.raises(KdforgeError, match="does not exist"):
        load_idx_dir(tmp_path / "nope")
    with pytest.raises(KdforgeError, match="not installed"):
        _fmnist_missing(tmp_path)


def _fmnist_missing(tmp_path):
    os.environ["KDFORGE_FASHION_MNIST"] = str(tmp_path / "absent")
    try:
        load_dataset("fashion_mnist")
    finally:
        del os.environ["KDFORGE_FASHION_MNIST"]


def test_mismatched_counts(tmp_path):
    d = make_idx_dir(tmp_path / "set")
    write_idx(d / "train-labels-idx1-ubyte", np.zeros(39, np.uint8))
    with pytest.raises(KdforgeError, match="do not match"):
        load_idx_dir(d)


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_real():
    s = load_dataset("fashion_mnist")
    assert (len(s.train), len(s.val), len(s.test)) == (55000, 5000, 10000)
    assert s.input_shape == (1, 28, 28) and s.num_classes == 10
    counts = np.bincount(s.test.tensors["y"].numpy())
    assert counts.tolist() == [1000] * 10  # the official test split is balanced
