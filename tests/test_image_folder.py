"""The ``image_folder`` adapter on folders of PNG/JPEG files generated in tmp_path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from kdforge.data import load_dataset
from kdforge.errors import KdforgeError

# class name -> mean grey level: the classes are separable by brightness
LEVELS = {"dark": 40, "mid": 120, "bright": 210}


def make_folder(root, per_class=10, size=(8, 8), mode="L", levels=LEVELS, suffix=".png", seed=0):
    """Write ``per_class`` noisy images per class under ``root/<class>/``; returns ``root``."""
    rng = np.random.default_rng(seed)
    for name, level in levels.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(level, 15, size), 0, 255).astype(np.uint8)
            img = Image.fromarray(pixels, "L")
            (img.convert(mode) if mode != "L" else img).save(root / name / f"{i:03d}{suffix}")
    return root


def test_unsplit_folder_carves_stratified_seeded_splits(tmp_path):
    make_folder(tmp_path)
    opts = {"root": str(tmp_path), "normalize": False}  # raw pixels: comparable across seeds
    splits = load_dataset("image_folder", **opts, test_size=0.2, val_size=3, seed=1)
    assert splits.class_names == ["bright", "dark", "mid"]
    assert splits.num_classes == 3 and splits.input_shape == (1, 8, 8)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (21, 3, 6)
    assert torch.bincount(splits.test.tensors["y"]).tolist() == [2, 2, 2]  # stratified
    assert torch.bincount(splits.val.tensors["y"]).tolist() == [1, 1, 1]
    # the test split depends on test_seed only; validation on the run seed
    other_seed = load_dataset("image_folder", **opts, test_size=0.2, val_size=3, seed=2)
    assert torch.equal(other_seed.test.tensors["x"], splits.test.tensors["x"])
    assert not torch.equal(other_seed.val.tensors["x"], splits.val.tensors["x"])
    other_test = load_dataset("image_folder", **opts, test_size=0.2, test_seed=5, seed=1)
    assert not torch.equal(other_test.test.tensors["x"], splits.test.tensors["x"])
    # labels follow brightness: "dark" (id 1) images are darker than "bright" (id 0) ones
    x, y = splits.train.tensors["x"], splits.train.tensors["y"]
    assert x[y == 1].mean() < x[y == 2].mean() < x[y == 0].mean()


def test_normalisation_uses_training_split_statistics_only(tmp_path):
    make_folder(tmp_path)
    raw = load_dataset("image_folder", root=str(tmp_path), normalize=False)
    assert float(raw.train.tensors["x"].min()) >= 0.0 and float(raw.train.tensors["x"].max()) <= 1.0
    norm = load_dataset("image_folder", root=str(tmp_path))
    mean, std = raw.train.tensors["x"].mean(), raw.train.tensors["x"].std()
    torch.testing.assert_close(norm.train.tensors["x"].mean(), torch.tensor(0.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(norm.train.tensors["x"].std(), torch.tensor(1.0), atol=1e-5, rtol=0)
    # the test images are standardised with the *training* statistics, not their own
    torch.testing.assert_close(norm.test.tensors["x"], (raw.test.tensors["x"] - mean) / std)
    fixed = load_dataset("image_folder", root=str(tmp_path), mean=[0.5], std=[0.25])
    torch.testing.assert_close(fixed.val.tensors["x"], (raw.val.tensors["x"] - 0.5) / 0.25)


def test_given_split_folders_rgb_resize_and_jpeg(tmp_path):
    make_folder(tmp_path / "train", per_class=4, size=(10, 12), mode="RGB", suffix=".jpg")
    make_folder(tmp_path / "test", per_class=2, size=(6, 6), mode="RGB", seed=1)
    (tmp_path / "train" / "dark" / "notes.txt").write_text("not an image: ignored")
    splits = load_dataset("image_folder", root=str(tmp_path), size=[8, 9], val_size=3)
    assert splits.input_shape == (3, 8, 9)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (9, 3, 6)
    assert splits.test.tensors["x"].shape == (6, 3, 8, 9)
    gray = load_dataset("image_folder", root=str(tmp_path), size=5, channels=1, val_size=3)
    assert gray.input_shape == (1, 5, 5)


def test_data_dir_and_classes_order(tmp_path):
    make_folder(tmp_path)
    splits = load_dataset("image_folder", data_dir=str(tmp_path), classes=["dark", "mid", "bright"])
    assert splits.class_names == ["dark", "mid", "bright"]
    x, y = splits.train.tensors["x"], splits.train.tensors["y"]
    assert x[y == 0].mean() < x[y == 1].mean() < x[y == 2].mean()


def _corrupt(root):
    make_folder(root)
    (root / "mid" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")


def _unseen_test_class(root):
    make_folder(root / "train", levels={"dark": 40, "mid": 120})
    make_folder(root / "test", levels={"dark": 40, "bright": 210})


@pytest.mark.parametrize(
    ("setup", "kwargs", "message"),
    [
        (lambda r: (make_folder(r), (r / "empty").mkdir()), {}, "class folder '.*empty' is empty"),
        (_corrupt, {}, r"cannot read image '.*bad\.png'"),
        (_unseen_test_class, {}, "test label 'bright' .* never occurs in the training split"),
        (lambda r: make_folder(r, per_class=1), {}, "too few examples to split"),
        (lambda r: make_folder(r, per_class=2), {"test_size": 6}, "too few examples to split"),
        (lambda r: make_folder(r / "test"), {}, "no train/ folder"),
        (lambda r: r.joinpath("x.png").write_bytes(b""), {}, "no class subfolders"),
        (
            lambda r: (make_folder(r, levels={"a": 9}), make_folder(r, levels={"b": 9}, size=(4, 4))),
            {},
            "differ in size",
        ),
        (make_folder, {"channels": 4}, "channels=4"),
        (make_folder, {"mean": [0.5, 0.5, 0.5]}, "mean has 3 values for 1-channel"),
        (make_folder, {"test_size": 1.5}, "test_size=1.5"),
        (make_folder, {"classes": ["dark", "mid"]}, "'bright' .* not in data.kwargs.classes"),
    ],
)
def test_bad_inputs_give_one_clear_error(tmp_path, setup, kwargs, message):
    setup(tmp_path)
    with pytest.raises(KdforgeError, match=message):
        load_dataset("image_folder", root=str(tmp_path), **kwargs)


def test_missing_root(tmp_path):
    with pytest.raises(KdforgeError, match="needs a folder"):
        load_dataset("image_folder")
    with pytest.raises(KdforgeError, match="does not exist"):
        load_dataset("image_folder", root=str(tmp_path / "nope"))


def test_kdforge_run_on_an_image_folder_records_labels(tmp_path):
    from test_cli import kd

    make_folder(tmp_path / "images", per_class=12)
    recipe = {
        "name": "imgs",
        "output_dir": str(tmp_path / "runs"),
        "data": {"name": "image_folder", "kwargs": {"root": str(tmp_path / "images")}, "batch_size": 8},
        "student": {"name": "mlp", "kwargs": {"hidden": [16]}},
        "method": {"name": "supervised"},
        "train": {"epochs": 3, "lr": 0.05},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    r = kd("run", path, "--no-progress")
    assert r.returncode == 0, r.stderr
    run_dir = tmp_path / "runs" / "imgs"
    assert json.loads((run_dir / "labels.json").read_text()) == {"class_names": ["bright", "dark", "mid"]}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["val_acc"] > 0.5 and summary["dataset"].startswith("image_folder:")
