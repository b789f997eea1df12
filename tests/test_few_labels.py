"""The few-labels data set: a seeded labelled part, an unlabelled pool marked -1, clear errors."""

from __future__ import annotations

import pytest
import torch

from kdforge.data import load_dataset
from kdforge.data._batches import TensorData
from kdforge.data.few_labels import mask_labels
from kdforge.errors import KdforgeError


def test_labelled_part_and_pool():
    full = load_dataset("digits")
    s = load_dataset("few_labels", base="digits", labelled=100, unlabelled=400, seed=0)
    y = s.train.tensors["y"]
    assert len(s.train) == 500 and (y[:100] >= 0).all() and (y[100:] == -1).all()
    assert s.num_classes == 10 and s.input_shape == (1, 8, 8)
    assert torch.equal(s.val.tensors["y"], full.val.tensors["y"])  # validation/test keep labels
    assert torch.equal(s.test.tensors["x"], full.test.tensors["x"])
    # every kept example is a real training example with its true label
    xs, ys = full.train.tensors["x"], full.train.tensors["y"]
    rows = {tuple(x.flatten().tolist()): int(t) for x, t in zip(xs, ys, strict=True)}
    for x, t in zip(s.train.tensors["x"][:100], y[:100], strict=True):
        assert rows[tuple(x.flatten().tolist())] == int(t)


def test_student_alone_sees_the_same_labelled_examples_only():
    with_pool = load_dataset("few_labels", base="digits", labelled=100, seed=3)
    alone = load_dataset("few_labels", base="digits", labelled=100, keep_unlabelled=False, seed=3)
    assert len(alone.train) == 100 and (alone.train.tensors["y"] >= 0).all()
    assert torch.equal(alone.train.tensors["x"], with_pool.train.tensors["x"][:100])
    assert len(with_pool.train) == len(load_dataset("digits", seed=3).train)  # pool = all the rest
    other_seed = load_dataset("few_labels", base="digits", labelled=100, keep_unlabelled=False, seed=4)
    assert not torch.equal(other_seed.train.tensors["y"], alone.train.tensors["y"])


@pytest.mark.parametrize(
    ("labelled", "unlabelled", "match"), [(0, None, "labelled=0"), (10, 10**6, "unlabelled=1000000")]
)
def test_bad_sizes_are_clear_errors(labelled, unlabelled, match):
    data = TensorData({"x": torch.zeros(50, 2), "y": torch.zeros(50, dtype=torch.long)})
    with pytest.raises(KdforgeError, match=match):
        mask_labels(data, labelled, unlabelled, True, 0)


def test_cannot_wrap_itself():
    with pytest.raises(KdforgeError, match="cannot wrap itself"):
        load_dataset("few_labels", base="few_labels")
