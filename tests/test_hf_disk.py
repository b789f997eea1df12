"""The ``hf_dataset`` adapter on Hugging Face datasets saved to tmp_path (never the Hub)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from kdforge.data import load_dataset
from kdforge.data.text import tokenize
from kdforge.errors import KdforgeError

datasets = pytest.importorskip("datasets")

TEXTS = ["a very good movie", "bad acting", "good fun", "really bad", "great and good", "awful"] * 4
STARS = [1, 0, 1, 0, 1, 0] * 4


def test_saved_dataset_dict_with_class_label(tmp_path):
    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    train = datasets.Dataset.from_dict({"sentence": TEXTS, "label": STARS}, features=features)
    test = datasets.Dataset.from_dict({"sentence": ["good", "bad"], "label": [1, 0]}, features=features)
    datasets.DatasetDict({"train": train, "test": test, "unsupervised": test}).save_to_disk(tmp_path / "ds")
    splits = load_dataset(
        "hf_dataset", path=str(tmp_path / "ds"), text_column="sentence", max_len=8, val_size=4
    )
    assert splits.class_names == ["neg", "pos"]  # the ClassLabel's names and order
    assert (len(splits.train), len(splits.val), len(splits.test)) == (20, 4, 2)
    assert splits.test.tensors["y"].tolist() == [1, 0]
    assert torch.equal(splits.test.tensors["input_ids"], tokenize(["good", "bad"], 8)["input_ids"])


def test_saved_image_dataset_uses_image_options(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (6, 5, 3), dtype=np.uint8)) for _ in range(20)]
    features = datasets.Features({"img": datasets.Image(), "label": datasets.Value("string")})
    data = {"img": images, "label": ["cat", "dog"] * 10}
    datasets.Dataset.from_dict(data, features=features).save_to_disk(tmp_path / "imgs")
    splits = load_dataset("hf_dataset", data_dir=str(tmp_path / "imgs"), size=4, test_size=4, val_size=2)
    assert splits.input_shape == (3, 4, 4) and splits.class_names == ["cat", "dog"]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (14, 2, 4)
    torch.testing.assert_close(
        splits.train.tensors["x"].mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0
    )


def test_local_files(tmp_path):
    (tmp_path / "train.jsonl").write_text(
        "".join(f'{{"text": "{t}", "label": "{y}"}}\n' for t, y in zip(TEXTS, STARS, strict=True))
    )
    (tmp_path / "test.jsonl").write_text('{"text": "good", "label": "1"}\n{"text": "meh", "label": "2"}\n')
    files = {"train": str(tmp_path / "train.jsonl")}
    splits = load_dataset("hf_dataset", data_files=files, test_size=4, data_dir=None)
    assert splits.class_names == ["0", "1"] and len(splits.test) == 4
    files["test"] = str(tmp_path / "test.jsonl")
    with pytest.raises(KdforgeError, match="test label '2' .* never occurs in the training split"):
        load_dataset("hf_dataset", data_files=files)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "needs exactly one of path"),
        ({"path": "nope"}, "does not exist"),
        ({"path": "."}, "not a dataset written by save_to_disk"),
        ({"data_files": "d.txt"}, "one type among"),
        (
            {"data_files": "d.jsonl", "text_column": "review"},
            r"no column 'review' \(its columns: text, label\)",
        ),
    ],
)
def test_bad_inputs(tmp_path, monkeypatch, kwargs, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.txt").write_text("x")
    (tmp_path / "d.jsonl").write_text('{"text": "a", "label": 1}\n' * 10)
    with pytest.raises(KdforgeError, match=message):
        load_dataset("hf_dataset", **kwargs)


def test_without_the_datasets_library(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(
        KdforgeError, match=r"needs the Hugging Face 'datasets' library.*\n.*kdforge\[datasets\]"
    ):
        load_dataset("hf_dataset", path=".")
