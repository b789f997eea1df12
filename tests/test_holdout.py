"""Stratified, seeded hold-out splits, label ordering, and the test-split options of the built-in sets."""

from __future__ import annotations

import pytest
import torch

from kdforge.data import load_dataset
from kdforge.data._holdout import holdout_count, sort_labels, stratified_holdout
from kdforge.data.text import text_splits
from kdforge.errors import KdforgeError


@pytest.mark.parametrize("size", [1, 7, 0.25, 0.5, 19])
@pytest.mark.parametrize("seed", [0, 3])
def test_stratified_holdout_properties(size, seed):
    y = torch.tensor([0] * 12 + [1] * 5 + [2] * 2 + [3] * 1)
    keep, held = stratified_holdout(y, size, seed, "test")
    count = holdout_count(size, len(y), "test")
    n_held = min(count, 16)  # at most n_c - 1 per class: 11 + 4 + 1 + 0
    assert len(held) == n_held and len(keep) == len(y) - n_held
    assert sorted(keep.tolist() + held.tolist()) == list(range(len(y)))  # a partition
    assert set(y[keep].tolist()) == {0, 1, 2, 3}  # every class keeps an example
    again = stratified_holdout(y, size, seed, "test")
    assert torch.equal(again[1], held)  # a pure function of (labels, size, seed)
    if count <= 16:  # proportional: the big class gives the most
        per_class = torch.bincount(y[held], minlength=4)
        assert per_class[0] >= per_class[1] >= per_class[2] >= per_class[3] == 0


def test_holdout_seed_changes_rows():
    y = torch.arange(40) % 2
    assert not torch.equal(stratified_holdout(y, 10, 0, "val")[1], stratified_holdout(y, 10, 1, "val")[1])


def test_holdout_count_and_errors():
    assert holdout_count(0.2, 50, "test") == 10 and holdout_count(7, 50, "test") == 7
    assert holdout_count(7.0, 50, "test") == 7
    for bad, message in [
        (50, "too few"),
        (0, "too few"),
        (-0.5, "neither"),
        (True, "not a number"),
        ("x", "not"),
    ]:
        with pytest.raises(KdforgeError, match=message):
            holdout_count(bad, 50, "test")


def test_sort_labels():
    assert sort_labels(["10", "2", "1", "2"]) == ["1", "2", "10"]
    assert sort_labels(["b", "10", "a"]) == ["10", "a", "b"]


def test_digits_test_split_size_and_seed_are_options():
    default = load_dataset("digits")
    assert len(default.test) == 400 and default.class_names is None
    small = load_dataset("digits", test_size=200, val_size=100)
    assert len(small.test) == 200 and len(small.train) == 1797 - 300
    assert torch.equal(small.test.tensors["x"], default.test.tensors["x"][:200])  # same permutation
    other = load_dataset("digits", test_seed=7)
    assert not torch.equal(other.test.tensors["x"], default.test.tensors["x"])
    with pytest.raises(KdforgeError, match="test_size=1797"):
        load_dataset("digits", test_size=1797)


def test_text_splits_test_seed_is_an_option():
    from test_text import _tokenizer

    texts = [f"good movie {i}" if i % 2 else f"bad movie {i}" for i in range(30)]
    y = torch.tensor([i % 2 for i in range(30)])

    def test_ids(**kw):
        splits = text_splits(texts, y, "t", 8, 3, 0, None, tokenizer=_tokenizer(), **kw)
        return splits.test.tensors["y"], splits.test.tensors["input_ids"]

    assert torch.equal(test_ids()[1], test_ids(test_seed=4321)[1])  # the default is unchanged
    assert not torch.equal(test_ids()[1], test_ids(test_seed=1)[1])
