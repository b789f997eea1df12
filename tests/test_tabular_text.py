"""The ``csv``, ``jsonl`` and ``parquet`` text adapters on small files written in tmp_path."""

from __future__ import annotations

import csv
import json
import sys

import pytest
import torch
import yaml

from kdforge.data import load_dataset
from kdforge.data.text import tokenize
from kdforge.errors import KdforgeError

POSITIVE = ["a very good movie", "good fun", "really good acting", "great and good", "good story"]
NEGATIVE = ["a bad movie", "bad acting", "really bad", "awful and bad", "bad story"]


def rows(copies=2):
    """``(text, label)`` rows: 10 * copies, half 'pos', half 'neg'."""
    out = []
    for i in range(copies):
        out += [(f"{t} {i}", "pos") for t in POSITIVE] + [(f"{t} {i}", "neg") for t in NEGATIVE]
    return out


def write_csv(path, header, table, **fmt):
    with path.open("w", newline="", encoding=fmt.pop("encoding", "utf-8")) as f:
        writer = csv.writer(f, **fmt)
        writer.writerow(header)
        writer.writerows(table)
    return path


def test_csv_string_labels_carved_splits_and_tokens(tmp_path):
    path = write_csv(
        tmp_path / "reviews.csv",
        ["id", "review", "sentiment"],
        [(i, t, y) for i, (t, y) in enumerate(rows())],
    )
    splits = load_dataset(
        "csv",
        path=str(path),
        text_column="review",
        label_column="sentiment",
        max_len=16,
        test_size=4,
        val_size=2,
    )
    assert splits.class_names == ["neg", "pos"] and splits.num_classes == 2
    assert splits.input_shape == (16,) and splits.name == f"csv:{path}"
    assert (len(splits.train), len(splits.val), len(splits.test)) == (14, 2, 4)
    assert torch.bincount(splits.test.tensors["y"]).tolist() == [2, 2]
    # the tokens are the VADER sets' tokenisation of the same texts
    expected = tokenize([t for t, _ in rows()], 16)
    all_ids = torch.cat([s.tensors["input_ids"] for s in (splits.train, splits.val, splits.test)])
    assert sorted(map(tuple, all_ids.tolist())) == sorted(map(tuple, expected["input_ids"].tolist()))
    for data in (splits.train, splits.val, splits.test):  # every row keeps its own label
        for ids, y in zip(data.tensors["input_ids"].tolist(), data.tensors["y"].tolist(), strict=True):
            row = expected["input_ids"].tolist().index(ids)
            assert splits.class_names[y] == rows()[row][1]


def test_csv_split_column_tsv_and_numeric_labels(tmp_path):
    table = [(t, str(10 if y == "pos" else 2), "train") for t, y in rows()]
    table += [
        ("good", "10", "dev"),
        ("bad", "2", "validation"),
        ("very good", "10", "test"),
        ("bad bad", "2", "Test"),
    ]
    path = write_csv(tmp_path / "d.tsv", ["text", "stars", "part"], table, delimiter="\t")
    splits = load_dataset("csv", path=str(path), label_column="stars", split_column="part", delimiter="\t")
    assert splits.class_names == ["2", "10"]  # numeric order, not text order
    assert (len(splits.train), len(splits.val), len(splits.test)) == (20, 2, 2)
    assert splits.val.tensors["y"].tolist() == [1, 0] and splits.test.tensors["y"].tolist() == [1, 0]


def test_jsonl_and_parquet(tmp_path):
    path = tmp_path / "d.jsonl"
    lines = [json.dumps({"text": t, "label": int(y == "pos"), "extra": {"a": 1}}) for t, y in rows()]
    path.write_text("\n".join(lines[:10]) + "\n\n" + "\n".join(lines[10:]) + "\n")
    splits = load_dataset("jsonl", path=str(path), test_size=0.2)
    assert splits.class_names == ["0", "1"] and len(splits.test) == 4
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"text": [t for t, _ in rows()], "label": [y for _, y in rows()]})
    pq.write_table(table, tmp_path / "d.parquet")
    splits = load_dataset("parquet", data_dir=str(tmp_path / "d.parquet"), test_size=0.2)
    assert splits.class_names == ["neg", "pos"] and len(splits.train) + len(splits.val) == 16


def test_parquet_without_pyarrow(tmp_path, monkeypatch):
    (tmp_path / "d.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(KdforgeError, match=r"needs pyarrow.*\n.*kdforge\[parquet\]"):
        load_dataset("parquet", path=str(tmp_path / "d.parquet"))


def test_encoding_and_errors_options(tmp_path):
    table = [("café très bon", "pos"), ("pas bon", "neg")] * 5
    path = write_csv(tmp_path / "latin.csv", ["text", "label"], table, encoding="latin-1")
    with pytest.raises(KdforgeError, match="not valid utf-8 text near line 2") as err:
        load_dataset("csv", path=str(path))
    assert "encoding" in err.value.fix and "errors=replace" in err.value.fix
    latin = load_dataset("csv", path=str(path), encoding="latin-1", test_size=2, max_len=8)
    replaced = load_dataset("csv", path=str(path), errors="replace", test_size=2, max_len=8)
    assert latin.class_names == replaced.class_names == ["neg", "pos"]
    # decoded correctly, "café" tokenises as the UTF-8 text would
    utf8 = write_csv(tmp_path / "utf8.csv", ["text", "label"], table, encoding="utf-8-sig")  # with a BOM
    assert torch.equal(
        load_dataset("csv", path=str(utf8), test_size=2, max_len=8).test.tensors["input_ids"],
        latin.test.tensors["input_ids"],
    )
    with pytest.raises(KdforgeError, match="unknown encoding"):
        load_dataset("csv", path=str(path), encoding="no-such-codec")


def _csv(tmp_path, header=("text", "label"), table=None, name="d.csv"):
    return write_csv(tmp_path / name, list(header), rows() if table is None else table)


@pytest.mark.parametrize(
    ("make", "kwargs", "message"),
    [
        (lambda p: _csv(p), {"text_column": "review"}, r"no column 'review' \(its columns: text, label\)"),
        (lambda p: _csv(p), {"label_column": "y"}, "no column 'y'"),
        (lambda p: _csv(p), {"split_column": "part"}, "no column 'part'"),
        (
            lambda p: _csv(
                p, ("text", "label", "part"), [(t, y, "train") for t, y in rows()] + [("x", "meh", "test")]
            ),
            {"split_column": "part"},
            r"test label 'meh' \(d\.csv:22\) never occurs in the training split",
        ),
        (
            lambda p: _csv(
                p, ("text", "label", "part"), [(t, y, "train") for t, y in rows()] + [("x", "pos", "holdout")]
            ),
            {"split_column": "part"},
            "split value 'holdout'",
        ),
        (lambda p: _csv(p, table=[("good", "pos"), ("bad", "neg")]), {}, "too few examples to split"),
        (lambda p: _csv(p, table=[*rows(), ("no label", "")]), {}, r"d\.csv:22 has an empty label"),
        (lambda p: _csv(p, table=[*rows(), ("a", "b", "c")]), {}, r"d\.csv:22 has 3 fields"),
        (lambda p: (p / "d.csv").write_text(""), {}, "is empty"),
        (lambda p: _csv(p), {"classes": ["pos"]}, "'neg' .* not in data.kwargs.classes"),
    ],
)
def test_bad_csv_gives_one_clear_error(tmp_path, make, kwargs, message):
    make(tmp_path)
    with pytest.raises(KdforgeError, match=message):
        load_dataset("csv", path=str(tmp_path / "d.csv"), **kwargs)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "a", "label": 1}\n{"text": "b", "label": \n', r"d\.jsonl:2 is not valid JSON"),
        ("[1, 2]\n", "not a JSON object"),
    ],
)
def test_bad_jsonl(tmp_path, content, message):
    (tmp_path / "d.jsonl").write_text(content)
    with pytest.raises(KdforgeError, match=message):
        load_dataset("jsonl", path=str(tmp_path / "d.jsonl"))


@pytest.mark.parametrize("name", ["csv", "jsonl", "parquet"])
def test_missing_file(tmp_path, name):
    with pytest.raises(KdforgeError, match="needs a file"):
        load_dataset(name)
    with pytest.raises(KdforgeError, match="does not exist"):
        load_dataset(name, path=str(tmp_path / f"nope.{name}"))


def test_kdforge_run_on_a_csv_records_labels(tmp_path):
    from test_cli import kd

    path = _csv(tmp_path, table=rows(copies=4))
    recipe = {
        "name": "reviews",
        "output_dir": str(tmp_path / "runs"),
        "data": {"name": "csv", "kwargs": {"path": str(path), "max_len": 8}, "batch_size": 8},
        "student": {"name": "text_cnn", "kwargs": {"emb": 8, "channels": [8], "kernel": 3}},
        "method": {"name": "supervised"},
        "train": {"epochs": 2, "lr": 0.01},
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    r = kd("run", tmp_path / "recipe.yaml", "--no-progress", "data.kwargs.test_size=8")
    assert r.returncode == 0, r.stderr
    run_dir = tmp_path / "runs" / "reviews"
    assert json.loads((run_dir / "labels.json").read_text()) == {"class_names": ["neg", "pos"]}
    assert json.loads((run_dir / "summary.json").read_text())["dataset"] == f"csv:{path}"
