"""Every registered data set takes what the engine passes; every file adapter honours the Splits contract."""

from __future__ import annotations

import inspect
import json

import pytest
import torch

from kdforge.config import from_dict
from kdforge.engine.run import load_splits
from kdforge.registry import DATASETS, list_datasets

# what kdforge.engine.run.load_splits always passes to a data set
ENGINE_KWARGS = ("data_dir", "seed", "subset")


@pytest.mark.parametrize("name", list_datasets())
def test_every_dataset_takes_the_engine_kwargs_and_has_a_doc(name):
    loader = DATASETS.get(name)
    params = inspect.signature(loader).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    assert takes_any or all(k in params for k in ENGINE_KWARGS), f"{name} lacks one of {ENGINE_KWARGS}"
    assert (loader.__doc__ or "").strip()


def _images(tmp_path):
    from test_image_folder import make_folder

    return {"root": str(make_folder(tmp_path / "images", per_class=6))}


def _csv(tmp_path):
    from test_tabular_text import rows, write_csv

    return {"path": str(write_csv(tmp_path / "d.csv", ["text", "label"], rows(copies=2))), "max_len": 8}


def _jsonl(tmp_path):
    from test_tabular_text import rows

    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows(copies=2)))
    return {"path": str(path), "max_len": 8}


def _parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from test_tabular_text import rows

    pq.write_table(
        pa.table({"text": [t for t, _ in rows(2)], "label": [y for _, y in rows(2)]}), tmp_path / "d.pq"
    )
    return {"path": str(tmp_path / "d.pq"), "max_len": 8}


def _hf(tmp_path):
    datasets = pytest.importorskip("datasets")
    from test_tabular_text import rows

    data = {"text": [t for t, _ in rows(2)], "label": [y for _, y in rows(2)]}
    datasets.Dataset.from_dict(data).save_to_disk(tmp_path / "hf")
    return {"path": str(tmp_path / "hf"), "max_len": 8}


# file adapter -> writes tiny data under tmp_path and returns its data.kwargs
FILE_ADAPTERS = {
    "image_folder": _images,
    "csv": _csv,
    "jsonl": _jsonl,
    "parquet": _parquet,
    "hf_dataset": _hf,
}


@pytest.mark.parametrize("name", sorted(FILE_ADAPTERS))
@pytest.mark.parametrize("seed", [0, 1])
def test_file_adapter_splits_contract(tmp_path, name, seed):
    kwargs = FILE_ADAPTERS[name](tmp_path)
    recipe = {
        "name": "r",
        "output_dir": str(tmp_path),
        "seed": seed,
        "data": {"name": name, "kwargs": kwargs},
    }
    splits = load_splits(from_dict(recipe))
    assert splits.class_names is not None and len(splits.class_names) == splits.num_classes
    assert len(set(splits.class_names)) == splits.num_classes
    for data in (splits.train, splits.val, splits.test):
        assert len(data) > 0
        y = data.tensors["y"]
        assert y.dtype == torch.int64 and int(y.min()) >= 0 and int(y.max()) < splits.num_classes
        inputs = [v for k, v in data.tensors.items() if k != "y"]
        assert all(tuple(v.shape[1:]) == splits.input_shape for v in inputs)
    assert set(splits.train.tensors["y"].tolist()) == set(range(splits.num_classes))
    total = len(splits.train) + len(splits.val) + len(splits.test)
    assert total == (18 if name == "image_folder" else 20)  # every row in exactly one split
    again = load_splits(from_dict(recipe))  # a pure function of files, options and seed
    for a, b in zip(
        (splits.train, splits.val, splits.test), (again.train, again.val, again.test), strict=True
    ):
        assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
